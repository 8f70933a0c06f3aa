"""python/bench.py in its smoke mode (--tiny: a few messages, the sockbus
rows only), so that the benchmark keeps running as the client changes.
Nothing here checks a speed: only that every row ran, lost nothing, and
reported numbers."""

import json
import os
import subprocess
import sys

import pytest

from conftest import sockbus_path, sockbusd_path

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(os.path.dirname(HERE), "bench.py")

sys.path.insert(0, os.path.dirname(HERE))
import bench  # noqa: E402


def run_bench(*args):
    env = dict(os.environ, SOCKBUSD=os.path.abspath(sockbusd_path()),
               SOCKBUS=os.path.abspath(sockbus_path()))
    return subprocess.run([sys.executable, BENCH, *args], capture_output=True, timeout=300,
                          env=env, cwd="/")


def test_tiny_run_reports_every_sockbus_row():
    r = run_bench("--tiny", "--json")
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    out = json.loads(r.stdout)
    rows = {(row["client"], row["workload"]): row for row in out["rows"]}
    assert set(rows) == {("sockbus sync", "thru"), ("sockbus asyncio", "thru"),
                         ("sockbus sync", "rtt"), ("sockbus asyncio", "rtt"),
                         ("C libsockbus", "rtt")}
    for (client, workload), row in rows.items():
        assert "error" not in row, row
        assert row["runs"] == 1
        if workload == "thru":
            assert row["loss"] == 0 and row["out_of_order"] == 0, row
            assert row["rate"] > 0
        else:
            assert 0 < row["p50"] <= row["p90"] <= row["p99"], row
    whats = {q["what"] for q in out["ratios"]}
    assert {"sockbus sync thru msgs/s", "sockbus sync / asyncio thru msgs/s",
            "sockbus sync / C rtt p50"} <= whats


def test_tiny_table_names_the_targets():
    r = run_bench("--tiny", "--only", "sockbus")
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    text = r.stdout.decode()
    assert "sockbus sync" in text and "target >= 300k" in text


def test_unknown_family_is_refused():
    r = run_bench("--only", "zeromq")
    assert r.returncode == 2 and b"unknown client family" in r.stderr


def test_a_lost_message_fails_the_row():
    """The loss check works: a subscriber that expects more messages than
    are published never sees them, and the row counts the difference."""
    env = dict(os.environ, SOCKBUSD=sockbusd_path())
    servers = bench.Servers(env["SOCKBUSD"])
    try:
        endpoint = servers.sockbus()
        args = dict(endpoint=endpoint, n=100, size=16, window=1000, ack_every=10, timeout=1.0)
        sub = bench.Role("sb_sub", dict(args, n=100), sys.executable)
        try:
            sub.wait_ready()
            pub = bench.Role("sb_pub", dict(args, n=60), sys.executable)
            try:
                assert pub.result()["published"] == 60
            finally:
                pub.kill()
            # The subscriber waits 1 s for the 61st message, then fails.
            with pytest.raises(RuntimeError, match="TimeoutError"):
                sub.result()
        finally:
            sub.kill()
    finally:
        servers.close()


def test_percentile_is_nearest_rank():
    s = [float(i) for i in range(1, 101)]
    assert bench.percentile(s, 50) == 50.0
    assert bench.percentile(s, 90) == 90.0
    assert bench.percentile(s, 99) == 99.0
    assert bench.percentile([7.0], 99) == 7.0
