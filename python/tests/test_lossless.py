"""Lossless subscriptions against a real broker (docs/protocol.md,
Lossless subscriptions): subscribe(..., lossless=True) receives every
message of a publisher faster than it reads, in order and with nothing
dropped, while the publisher is held back; one that stops reading is cut
with ERR 6 (slow consumer) after lossless_stall_ms, and the publisher goes
on. The blocking and the asyncio client alike."""

import asyncio
import json
import subprocess
import threading
import time

import pytest

import sockbus
import sockbus.aio
from conftest import IO_S, run, sockbus_path

# A small queue, so that a few MiB overflow it many times over.
SMALL = ["--max-frame", "65536", "--max-pending", "262144"]
SIZE = 1024
COUNT = 4096  # 4 MiB


def lines(count: int) -> bytes:
    """`count` lines for `sockbus pub`: each a number, padded to SIZE."""
    return b"".join(b"%08d" % i + b"." * (SIZE - 8) + b"\n" for i in range(count))


def start_pub(socket: str, subject: str, count: int) -> subprocess.Popen:
    """`sockbus pub` of `count` lines in the background: it blocks while the
    broker holds it back."""
    p = subprocess.Popen([sockbus_path(), "pub", "-s", socket, subject], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # The lines fit no pipe: fed from a thread, so that the test goes on
    # while the publisher is held back.
    def feed():
        try:
            p.stdin.write(lines(count))
            p.stdin.close()
        except BrokenPipeError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    return p


def stats(bus) -> dict:
    return json.loads(bus.request("$SYS.STATS", timeout=IO_S).data)


def test_slow_lossless_reader_gets_everything(make_broker):
    b = make_broker(SMALL + ["--lossless-stall-ms", "60000"])
    with sockbus.connect(b.socket, reconnect=False) as bus:
        sub = bus.subscribe("ll.>", lossless=True)
        bus.flush()
        pub = start_pub(b.socket, "ll.data", COUNT)
        for i in range(COUNT):
            m = sub.next(30.0)
            assert int(m.data[:8]) == i, f"message {int(m.data[:8])} arrived as {i}"
            assert len(m.data) == SIZE
            if i % 64 == 0:
                time.sleep(0.002)  # slower than the publisher
            if i == 256:
                time.sleep(0.5)  # the publisher fills the queue meanwhile
        assert pub.wait(IO_S) == 0, pub.stderr.read()
        pub.stderr.close()
        bus.flush()
        assert bus.take_dropped() == 0
        s = stats(bus)
        assert s["dropped"] == 0
        assert s["stalls"] > 0, "the publisher was never held back: the test did not test"


def test_stopped_lossless_reader_is_cut(make_broker):
    b = make_broker(SMALL + ["--lossless-stall-ms", "500"])
    with sockbus.connect(b.socket, reconnect=False) as probe, \
            sockbus.connect(b.socket, reconnect=False) as bus:
        sub = bus.subscribe("st.>", lossless=True)
        bus.flush()
        start = time.monotonic()
        pub = start_pub(b.socket, "st.data", COUNT)
        # Nobody reads `bus` meanwhile: the publisher is held, then the
        # stall bound cuts the subscriber and the publisher finishes.
        assert pub.wait(60) == 0, pub.stderr.read()
        pub.stderr.close()
        assert time.monotonic() - start >= 0.45
        got = 0
        # Then the connection is closed (no reconnect), because of ERR 6.
        with pytest.raises(sockbus.ConnectionClosed) as err:
            while True:
                sub.next(IO_S)
                got += 1
        cause = err.value.__cause__
        assert isinstance(cause, sockbus.BrokerError), err.value
        assert cause.code == 6 and cause.fatal, cause
        assert "slow consumer" in str(err.value)
        assert got < COUNT
        s = stats(probe)
        assert s["slow_consumers"] == 1
        assert s["stalls"] >= 1


def test_a_reconnecting_client_cut_as_slow_consumer_ends(make_broker):
    """ERR 6 tells a lossless subscriber that it lost messages: a client
    that reconnects by default ends anyway, as libsockbus does, rather than
    hide the loss behind a new connection."""
    b = make_broker(SMALL + ["--lossless-stall-ms", "500"])
    states = []
    with sockbus.connect(b.socket, on_state=lambda ev: states.append(ev.state)) as bus:
        sub = bus.subscribe("st.>", lossless=True)
        bus.flush()
        pub = start_pub(b.socket, "st.data", COUNT)
        assert pub.wait(60) == 0, pub.stderr.read()
        pub.stderr.close()
        with pytest.raises(sockbus.ConnectionClosed) as err:
            while True:
                sub.next(IO_S)
        assert err.value.__cause__.code == 6, err.value
        assert sockbus.DISCONNECTED not in states, states


def test_aio_lossless(make_broker):
    b = make_broker(SMALL + ["--lossless-stall-ms", "60000"])

    async def body():
        bus = await sockbus.aio.connect(b.socket, reconnect=False)
        try:
            sub = await bus.subscribe("aio.>", lossless=True)
            await bus.flush()
            pub = start_pub(b.socket, "aio.x", COUNT)
            # The asyncio client reads whatever arrives at once (into its
            # own memory): its queue in the broker fills only while its
            # loop does not run. So the loop is held from before the first
            # message until the broker says it holds the publisher
            # (bounded); a fast publisher would otherwise be read out whole
            # before the first message is handled.
            with sockbus.connect(b.socket, reconnect=False) as probe:
                until = time.monotonic() + 20
                while stats(probe)["stalls"] == 0 and time.monotonic() < until:
                    time.sleep(0.01)
            for i in range(COUNT):
                m = await sub.next(30.0)
                assert int(m.data[:8]) == i
                if i % 64 == 0:
                    await asyncio.sleep(0.002)
            assert await asyncio.get_running_loop().run_in_executor(None, pub.wait, IO_S) == 0
            pub.stderr.close()
            s = json.loads((await bus.request("$SYS.STATS", timeout=IO_S)).data)
            assert s["dropped"] == 0 and s["stalls"] > 0
        finally:
            await bus.close()

    run(body())


def test_client_objects_say_lossless(make_broker):
    b = make_broker()
    with sockbus.connect(b.socket, name="ll", reconnect=False) as bus:
        bus.subscribe("a", lossless=True)
        bus.subscribe("b")
        bus.flush()
        clients = json.loads(bus.request("$SYS.CLIENTS", timeout=IO_S).data)["clients"]
        me = [c for c in clients if c["name"] == "ll"][0]
        assert me["lossless"] == 1
        assert me["paused"] is False
