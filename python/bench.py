#!/usr/bin/env python3
"""Measure the sockbus Python client, and what a Python user would pick
instead for the same job on the same machine.

Rows (each publisher, subscriber, requester and responder is a process of
its own, with its own connection):

- thru: 1 publisher -> 1 subscriber, 128 B messages, msgs/s measured at
  the subscriber from its first message to its last. Every row is
  lossless by construction: the subscriber acknowledges on the bus every
  WINDOW/4 messages, and the publisher never runs more than WINDOW
  messages ahead of the last acknowledgement, so no queue overflows. Each
  payload carries a sequence number; the subscriber checks that every one
  arrived, in order, and a row with loss fails the run.
- rtt: request/reply round trips, one in flight, after warm-up;
  p50/p90/p99 over every sample (nearest rank), in microseconds. The C
  client's row is `sockbus bench rtt -T unix` against the same broker.

Clients: the sockbus Python client, blocking and asyncio, over the
broker's Unix socket; paho-mqtt (QoS 0) against mosquitto, and redis-py
pub/sub against redis-server, each on a private server on a free loopback
port, when the Debian packages are installed (mosquitto and
python3-paho-mqtt, redis-server and python3-redis), skipped with the
reason otherwise. Every server is started on a temporary socket or port
and stopped by this script.

    python3 python/bench.py                 # every row, 3 runs
    python3 python/bench.py --tiny          # a few messages, sockbus rows only
    python3 python/bench.py --help

Compare ratios within one run: absolute numbers move with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # the package from the source tree

SEQ = struct.Struct("<Q")
READY_S = 10.0
ROLE_TIMEOUT_S = 300.0

# ---- small tools -------------------------------------------------------------------


def fmt_rate(r: Optional[float]) -> str:
    if r is None:
        return "-"
    if r >= 1e6:
        return f"{r / 1e6:.2f}M"
    if r >= 1e3:
        return f"{r / 1e3:.1f}k"
    return f"{r:.0f}"


def percentile(sorted_samples: List[float], p: float) -> float:
    """Nearest rank."""
    if not sorted_samples:
        return float("nan")
    k = max(1, min(len(sorted_samples), int(-(-p * len(sorted_samples) // 100))))
    return sorted_samples[k - 1]


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_accepts(family: int, address: Any, proc: subprocess.Popen, what: str) -> None:
    end = time.monotonic() + READY_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.connect(address)
            return
        except OSError:
            pass
        finally:
            s.close()
        if time.monotonic() > end:
            raise RuntimeError(f"{what} did not accept connections within {READY_S} s")
        time.sleep(0.01)


def stop(proc: Optional[subprocess.Popen]) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def find_binary(env: str, built: str, name: str) -> Optional[str]:
    path = os.environ.get(env)
    if path:
        return path
    guess = os.path.join(REPO, "build", built)
    if os.path.exists(guess):
        return guess
    return shutil.which(name)


# ---- the roles: each runs in a process of its own -----------------------------------
#
# A role prints "ready" once it is subscribed (a subscriber or responder),
# then one line of JSON with its result.


def _ready() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()


def _result(**kw: Any) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


class _Check:
    """The subscriber's bookkeeping: sequence numbers in order, and the
    times of the first and last message."""

    __slots__ = ("n", "got", "bad", "first", "last")

    def __init__(self, n: int) -> None:
        self.n = n
        self.got = 0
        self.bad = 0
        self.first = 0.0
        self.last = 0.0

    def report(self, **extra: Any) -> None:
        span = self.last - self.first
        rate = (self.got - 1) / span if self.got > 1 and span > 0 else None
        _result(received=self.got, out_of_order=self.bad, rate=rate, **extra)


def role_sb_sub(a: Dict[str, Any]) -> None:
    import sockbus
    n, ack_every = a["n"], a["ack_every"]
    unpack = SEQ.unpack_from
    clock = time.perf_counter
    with sockbus.connect(a["endpoint"], name="bench-sub") as bus:
        sub = bus.subscribe("bench.data")
        bus.flush()
        _ready()
        c = _Check(n)
        nxt = sub.next
        while c.got < n:
            msg = nxt(timeout=a.get("timeout", 30.0))
            if unpack(msg.data)[0] != c.got:
                c.bad += 1
            c.got += 1
            if c.got % ack_every == 0:
                bus.publish("bench.ack", SEQ.pack(c.got))
            if c.got == 1:
                c.first = clock()
        c.last = clock()
        bus.publish("bench.ack", SEQ.pack(c.got))
        bus.flush()
        c.report(dropped=bus.take_dropped())


def role_sb_pub(a: Dict[str, Any]) -> None:
    import sockbus
    n, size, window = a["n"], a["size"], a["window"]
    tail = bytes(size - 8)
    pack = SEQ.pack
    unpack = SEQ.unpack_from
    with sockbus.connect(a["endpoint"], name="bench-pub") as bus:
        acks = bus.subscribe("bench.ack")
        bus.flush()
        publish = bus.publish
        acked = 0
        i = 0
        while i < n:
            stop_at = min(n, acked + window)
            while i < stop_at:
                publish("bench.data", pack(i) + tail)
                i += 1
            if i < n:
                # a window ahead: wait for the subscriber
                acked = max(acked, unpack(acks.next(timeout=30.0).data)[0])
                while acks.pending:
                    acked = max(acked, unpack(acks.next(timeout=0).data)[0])
        bus.flush(timeout=30.0)
        _result(published=n)


def role_sb_aio_sub(a: Dict[str, Any]) -> None:
    import sockbus.aio

    async def main() -> None:
        n, ack_every = a["n"], a["ack_every"]
        unpack = SEQ.unpack_from
        clock = time.perf_counter
        async with sockbus.aio.connect(a["endpoint"], name="bench-sub") as bus:
            sub = await bus.subscribe("bench.data")
            await bus.flush()
            _ready()
            c = _Check(n)
            nxt = sub.next
            while c.got < n:
                msg = await nxt(timeout=a.get("timeout", 30.0))
                if unpack(msg.data)[0] != c.got:
                    c.bad += 1
                c.got += 1
                if c.got % ack_every == 0:
                    await bus.publish("bench.ack", SEQ.pack(c.got))
                if c.got == 1:
                    c.first = clock()
            c.last = clock()
            await bus.publish("bench.ack", SEQ.pack(c.got))
            await bus.flush()
            c.report(dropped=bus.take_dropped())

    asyncio.run(main())


def role_sb_aio_pub(a: Dict[str, Any]) -> None:
    import sockbus.aio

    async def main() -> None:
        n, size, window = a["n"], a["size"], a["window"]
        tail = bytes(size - 8)
        pack = SEQ.pack
        unpack = SEQ.unpack_from
        async with sockbus.aio.connect(a["endpoint"], name="bench-pub") as bus:
            acks = await bus.subscribe("bench.ack")
            await bus.flush()
            publish = bus.publish
            acked = 0
            i = 0
            while i < n:
                stop_at = min(n, acked + window)
                while i < stop_at:
                    await publish("bench.data", pack(i) + tail)
                    i += 1
                if i < n:
                    acked = max(acked, unpack((await acks.next(timeout=30.0)).data)[0])
                    while acks.pending:
                        acked = max(acked, unpack((await acks.next(timeout=0)).data)[0])
            await bus.flush(timeout=30.0)
            _result(published=n)

    asyncio.run(main())


def role_sb_responder(a: Dict[str, Any]) -> None:
    import sockbus
    with sockbus.connect(a["endpoint"], name="bench-responder") as bus:
        sub = bus.subscribe("bench.rtt")
        bus.flush()
        _ready()
        publish = bus.publish
        try:
            for msg in sub:
                publish(msg.reply, msg.data)
        except sockbus.ConnectionClosed:
            pass


def _rtt_result(samples: List[float]) -> None:
    samples.sort()
    _result(samples=len(samples), p50=percentile(samples, 50), p90=percentile(samples, 90),
            p99=percentile(samples, 99))


def role_sb_requester(a: Dict[str, Any]) -> None:
    import sockbus
    payload = bytes(a["size"])
    clock = time.perf_counter
    with sockbus.connect(a["endpoint"], name="bench-requester") as bus:
        request = bus.request
        for _ in range(a["warmup"]):
            request("bench.rtt", payload, timeout=10.0)
        samples = []
        for _ in range(a["n"]):
            t = clock()
            request("bench.rtt", payload, timeout=10.0)
            samples.append((clock() - t) * 1e6)
    _rtt_result(samples)


def role_sb_aio_responder(a: Dict[str, Any]) -> None:
    import sockbus.aio

    async def main() -> None:
        async with sockbus.aio.connect(a["endpoint"], name="bench-responder") as bus:
            sub = await bus.subscribe("bench.rtt")
            await bus.flush()
            _ready()
            async for msg in sub:
                await bus.publish(msg.reply, msg.data)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


def role_sb_aio_requester(a: Dict[str, Any]) -> None:
    import sockbus.aio

    async def main() -> None:
        payload = bytes(a["size"])
        clock = time.perf_counter
        async with sockbus.aio.connect(a["endpoint"], name="bench-requester") as bus:
            request = bus.request
            for _ in range(a["warmup"]):
                await request("bench.rtt", payload, timeout=10.0)
            samples = []
            for _ in range(a["n"]):
                t = clock()
                await request("bench.rtt", payload, timeout=10.0)
                samples.append((clock() - t) * 1e6)
        _rtt_result(samples)

    asyncio.run(main())


# paho-mqtt (the 1.x API, Debian's python3-paho-mqtt 1.6), QoS 0, the
# network loop in paho's own thread (loop_start(), the usual way).


def _mqtt_client(a: Dict[str, Any], name: str) -> Any:
    import paho.mqtt.client as mqtt
    c = mqtt.Client(client_id=f"{name}-{os.getpid()}", clean_session=True)
    subscribed = threading.Event()
    c.on_subscribe = lambda *_: subscribed.set()
    c.connect("127.0.0.1", a["port"])
    c.loop_start()
    c._bench_subscribed = subscribed  # type: ignore[attr-defined]
    return c


def role_mqtt_sub(a: Dict[str, Any]) -> None:
    n, ack_every = a["n"], a["ack_every"]
    c_ = _Check(n)
    done = threading.Event()
    unpack = SEQ.unpack_from
    clock = time.perf_counter
    client = _mqtt_client(a, "bench-sub")

    def on_message(cl: Any, _u: Any, msg: Any) -> None:
        if unpack(msg.payload)[0] != c_.got:
            c_.bad += 1
        c_.got += 1
        if c_.got == 1:
            c_.first = clock()
        if c_.got % ack_every == 0 or c_.got == n:
            cl.publish("bench/ack", SEQ.pack(c_.got), qos=0)
        if c_.got == n:
            c_.last = clock()
            done.set()

    client.on_message = on_message
    client.subscribe("bench/data", qos=0)
    client._bench_subscribed.wait(READY_S)
    _ready()
    done.wait(ROLE_TIMEOUT_S)
    client.loop_stop()
    client.disconnect()
    c_.report()


class _Acks:
    """The publisher's view of the subscriber's acknowledgements."""

    def __init__(self) -> None:
        self.acked = 0
        self.cond = threading.Condition()

    def update(self, value: int) -> None:
        with self.cond:
            if value > self.acked:
                self.acked = value
                self.cond.notify_all()

    def wait_past(self, value: int) -> int:
        with self.cond:
            if not self.cond.wait_for(lambda: self.acked > value, 30.0):
                raise TimeoutError("no acknowledgement from the subscriber within 30 s")
            return self.acked


def role_mqtt_pub(a: Dict[str, Any]) -> None:
    n, size, window = a["n"], a["size"], a["window"]
    tail = bytes(size - 8)
    pack = SEQ.pack
    acks = _Acks()
    client = _mqtt_client(a, "bench-pub")
    client.on_message = lambda _c, _u, msg: acks.update(SEQ.unpack_from(msg.payload)[0])
    client.subscribe("bench/ack", qos=0)
    client._bench_subscribed.wait(READY_S)
    publish = client.publish
    acked = 0
    i = 0
    while i < n:
        stop_at = min(n, acked + window)
        while i < stop_at:
            publish("bench/data", pack(i) + tail, qos=0)
            i += 1
        if i < n:
            acked = acks.wait_past(acked)
    acks.wait_past(n - 1)  # the subscriber has them all
    client.loop_stop()
    client.disconnect()
    _result(published=n)


def role_mqtt_responder(a: Dict[str, Any]) -> None:
    client = _mqtt_client(a, "bench-responder")
    client.on_message = lambda cl, _u, msg: cl.publish("bench/rtt/reply", msg.payload, qos=0)
    client.subscribe("bench/rtt", qos=0)
    client._bench_subscribed.wait(READY_S)
    _ready()
    threading.Event().wait(ROLE_TIMEOUT_S)  # until terminated


def role_mqtt_requester(a: Dict[str, Any]) -> None:
    payload = bytes(a["size"])
    got = threading.Event()
    client = _mqtt_client(a, "bench-requester")
    client.on_message = lambda *_: got.set()
    client.subscribe("bench/rtt/reply", qos=0)
    client._bench_subscribed.wait(READY_S)
    clock = time.perf_counter
    samples = []
    for k in range(a["warmup"] + a["n"]):
        got.clear()
        t = clock()
        client.publish("bench/rtt", payload, qos=0)
        if not got.wait(10.0):
            raise TimeoutError("no reply within 10 s")
        if k >= a["warmup"]:
            samples.append((clock() - t) * 1e6)
    client.loop_stop()
    client.disconnect()
    _rtt_result(samples)


# redis-py (Debian's python3-redis): PUBLISH in pipelines of PIPELINE
# commands (a plain publish() waits for each answer); the subscriber
# reads with get_message().

REDIS_PIPELINE = 100


def _redis_subscribe(r: Any, channel: str) -> Any:
    """A pubsub on `channel`, once the server has confirmed it."""
    p = r.pubsub()
    p.subscribe(channel)
    end = time.monotonic() + READY_S
    while True:
        msg = p.get_message(timeout=max(0.0, end - time.monotonic()))
        if msg is not None and msg["type"] == "subscribe":
            return p
        if time.monotonic() > end:
            raise TimeoutError(f"redis did not confirm the subscription to {channel}")


def role_redis_sub(a: Dict[str, Any]) -> None:
    import redis
    n, ack_every = a["n"], a["ack_every"]
    r = redis.Redis(host="127.0.0.1", port=a["port"])
    p = _redis_subscribe(r, "bench.data")
    _ready()
    c = _Check(n)
    unpack = SEQ.unpack_from
    clock = time.perf_counter
    for msg in p.listen():
        if unpack(msg["data"])[0] != c.got:
            c.bad += 1
        c.got += 1
        if c.got == 1:
            c.first = clock()
        if c.got % ack_every == 0:
            r.publish("bench.ack", SEQ.pack(c.got))
        if c.got == n:
            break
    c.last = clock()
    r.publish("bench.ack", SEQ.pack(c.got))
    p.close()
    c.report()


def role_redis_pub(a: Dict[str, Any]) -> None:
    import redis
    n, size, window = a["n"], a["size"], a["window"]
    tail = bytes(size - 8)
    pack = SEQ.pack
    r = redis.Redis(host="127.0.0.1", port=a["port"])
    p = _redis_subscribe(r, "bench.ack")
    pipe = r.pipeline(transaction=False)
    acked = 0
    i = 0

    def wait_ack(after: int) -> int:
        best = after
        while True:
            msg = p.get_message(timeout=30.0)
            if msg is None:
                raise TimeoutError("no acknowledgement from the subscriber within 30 s")
            best = max(best, SEQ.unpack_from(msg["data"])[0])
            if best > after:
                return best

    while i < n:
        stop_at = min(n, acked + window)
        while i < stop_at:
            pipe.publish("bench.data", pack(i) + tail)
            i += 1
            if len(pipe) >= REDIS_PIPELINE:
                pipe.execute()
        if len(pipe):
            pipe.execute()
        if i < n:
            acked = wait_ack(acked)
    p.close()
    _result(published=n)


def role_redis_responder(a: Dict[str, Any]) -> None:
    import redis
    r = redis.Redis(host="127.0.0.1", port=a["port"])
    p = _redis_subscribe(r, "bench.rtt")
    _ready()
    publish = r.publish
    for msg in p.listen():
        publish("bench.rtt.reply", msg["data"])


def role_redis_requester(a: Dict[str, Any]) -> None:
    import redis
    payload = bytes(a["size"])
    r = redis.Redis(host="127.0.0.1", port=a["port"])
    p = _redis_subscribe(r, "bench.rtt.reply")
    clock = time.perf_counter
    samples = []
    for k in range(a["warmup"] + a["n"]):
        t = clock()
        r.publish("bench.rtt", payload)
        if p.get_message(timeout=10.0) is None:
            raise TimeoutError("no reply within 10 s")
        if k >= a["warmup"]:
            samples.append((clock() - t) * 1e6)
    _rtt_result(samples)


ROLES = {name[len("role_"):]: fn for name, fn in globals().items() if name.startswith("role_")}

# ---- servers -----------------------------------------------------------------------


class Servers:
    """The private brokers: sockbusd on a temporary Unix socket, mosquitto
    and redis-server on free loopback ports. Each is started on first use;
    all are stopped by close()."""

    def __init__(self, sockbusd: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="sockbus-pybench-")
        self.sockbusd = sockbusd
        self.procs: Dict[str, subprocess.Popen] = {}
        self.where: Dict[str, Any] = {}

    def _start(self, key: str, name: str, argv: List[str], family: int, address: Any) -> None:
        """Run a server, its output in DIR/<name>.log, until it accepts on
        `address`; self.where[key] is then that address (a port for TCP)."""
        with open(os.path.join(self.dir, name + ".log"), "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.procs[key] = proc
        wait_accepts(family, address, proc, os.path.basename(argv[0]))
        self.where[key] = address if family == socket.AF_UNIX else address[1]

    def sockbus(self) -> str:
        if "sockbus" not in self.where:
            path = os.path.join(self.dir, "bus.sock")
            self._start("sockbus", "sockbusd", [self.sockbusd, "--socket", path], socket.AF_UNIX,
                        path)
        return self.where["sockbus"]

    def mosquitto(self) -> int:
        if "mqtt" not in self.where:
            port = free_port()
            conf = os.path.join(self.dir, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        f"log_dest stderr\nlog_type error\n")
            self._start("mqtt", "mosquitto", [shutil.which("mosquitto") or "mosquitto", "-c", conf],
                        socket.AF_INET, ("127.0.0.1", port))
        return self.where["mqtt"]

    def redis(self) -> int:
        if "redis" not in self.where:
            port = free_port()
            self._start("redis", "redis",
                        [shutil.which("redis-server") or "redis-server", "--port", str(port),
                         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                         self.dir], socket.AF_INET, ("127.0.0.1", port))
        return self.where["redis"]

    def close(self) -> None:
        for proc in self.procs.values():
            stop(proc)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- running rows -------------------------------------------------------------------


class Role:
    def __init__(self, role: str, args: Dict[str, Any], python: str) -> None:
        self.role = role
        self.proc = subprocess.Popen([python, os.path.abspath(__file__), "--role", role,
                                      json.dumps(args)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait_ready(self) -> None:
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.proc.wait(10)
            raise RuntimeError(f"{self.role} did not start: {self.proc.stderr.read().decode()}")

    def result(self) -> Dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=ROLE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise RuntimeError(f"{self.role} did not finish within {ROLE_TIMEOUT_S} s")
        if self.proc.returncode != 0:
            raise RuntimeError(f"{self.role} failed ({self.proc.returncode}): "
                               f"{err.decode().strip().splitlines()[-1:]}")
        return json.loads(out.decode().strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            # SIGTERM: a shell that starts this script in the background
            # has it, and so its roles, ignore SIGINT
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def run_thru(prefix: str, conn: Dict[str, Any], n: int, size: int, window: int,
             python: str) -> Dict[str, Any]:
    args = dict(conn, n=n, size=size, window=window, ack_every=max(1, window // 4))
    sub = Role(prefix + "_sub", args, python)
    try:
        sub.wait_ready()
        pub = Role(prefix + "_pub", args, python)
        try:
            pub.result()
        finally:
            pub.kill()
        res = sub.result()
    finally:
        sub.kill()
    loss = n - res["received"] + res.get("dropped", 0)
    return dict(rate=res["rate"], loss=loss, out_of_order=res["out_of_order"])


def run_rtt(prefix: str, conn: Dict[str, Any], n: int, size: int, warmup: int,
            python: str) -> Dict[str, Any]:
    args = dict(conn, n=n, size=size, warmup=warmup)
    resp = Role(prefix + "_responder", args, python)
    try:
        resp.wait_ready()
        req = Role(prefix + "_requester", args, python)
        try:
            res = req.result()
        finally:
            req.kill()
    finally:
        resp.kill()
    return res


def run_c_rtt(sockbus_cli: str, endpoint: str, duration: float) -> Dict[str, Any]:
    r = subprocess.run([sockbus_cli, "bench", "rtt", "-T", "unix", "-s", endpoint, "--json", "-q",
                        "-d", str(duration)], capture_output=True, timeout=ROLE_TIMEOUT_S)
    if r.returncode != 0:
        raise RuntimeError(f"sockbus bench failed: {r.stderr.decode().strip()}")
    row = json.loads(r.stdout)["rows"][0]["rtt_us"]
    return dict(samples=row["samples"], p50=row["p50"], p90=row["p90"], p99=row["p99"])


# name, workload, client family, what it runs (role prefix, or "c")
PLAN = [
    ("sockbus sync", "thru", "sockbus", "sb"),
    ("sockbus asyncio", "thru", "sockbus", "sb_aio"),
    ("paho-mqtt QoS 0 / mosquitto", "thru", "mqtt", "mqtt"),
    ("redis-py / redis-server", "thru", "redis", "redis"),
    ("sockbus sync", "rtt", "sockbus", "sb"),
    ("sockbus asyncio", "rtt", "sockbus", "sb_aio"),
    ("C libsockbus", "rtt", "c", "c"),
    ("paho-mqtt QoS 0 / mosquitto", "rtt", "mqtt", "mqtt"),
    ("redis-py / redis-server", "rtt", "redis", "redis"),
]

TRANSPORT = {"sockbus": "unix", "c": "unix", "mqtt": "tcp", "redis": "tcp"}


def unavailable(family: str, python: str) -> Optional[str]:
    """Why a family of rows cannot run here (None: it can)."""

    def has_module(mod: str) -> bool:
        return subprocess.run([python, "-c", f"import {mod}"], capture_output=True).returncode == 0

    if family == "mqtt":
        if not shutil.which("mosquitto"):
            return "mosquitto is not installed (apt-get install mosquitto)"
        if not has_module("paho.mqtt.client"):
            return f"paho-mqtt is not importable by {python} (apt-get install python3-paho-mqtt)"
    if family == "redis":
        if not shutil.which("redis-server"):
            return "redis-server is not installed (apt-get install redis-server)"
        if not has_module("redis"):
            return f"redis-py is not importable by {python} (apt-get install python3-redis)"
    return None


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        description="Measure the sockbus Python client against the C client, paho-mqtt with "
                    "mosquitto and redis-py with redis-server, on private servers.")
    ap.add_argument("-n", "--count", type=int, default=200_000,
                    help="messages per thru row (default 200000)")
    ap.add_argument("--rtt-count", type=int, default=10_000,
                    help="round trips per rtt row, after --warmup (default 10000)")
    ap.add_argument("--warmup", type=int, default=1000, help="warm-up round trips (default 1000)")
    ap.add_argument("-z", "--size", type=int, default=128, help="payload bytes (default 128)")
    ap.add_argument("--window", type=int, default=8192,
                    help="most messages a publisher may be ahead of the subscriber's last "
                         "acknowledgement (default 8192)")
    ap.add_argument("-r", "--runs", type=int, default=3,
                    help="runs of the whole plan, rows interleaved; rates show the median "
                         "(default 3)")
    ap.add_argument("--only", default="sockbus,c,mqtt,redis",
                    help="client families to run: any of sockbus, c, mqtt, redis")
    ap.add_argument("--tiny", action="store_true",
                    help="a smoke run: few messages, one run, sockbus rows only")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--sockbusd", help="the broker to start (default: build/ of this tree, "
                                       "$SOCKBUSD, else PATH)")
    ap.add_argument("--sockbus", help="the sockbus command, for the C rtt row (same rule)")
    ap.add_argument("--role", nargs=2, help=argparse.SUPPRESS)
    opt = ap.parse_args(argv)

    if opt.role:
        ROLES[opt.role[0]](json.loads(opt.role[1]))
        return 0

    if opt.tiny:
        opt.count, opt.rtt_count, opt.warmup, opt.runs = 2000, 200, 50, 1
        opt.window = min(opt.window, 500)
        opt.only = "sockbus,c"
    if opt.size < 8:
        ap.error("--size must be at least 8 (each payload carries a sequence number)")
    families = [f.strip() for f in opt.only.split(",") if f.strip()]
    for f in families:
        if f not in TRANSPORT:
            ap.error(f"--only: unknown client family {f!r} (sockbus, c, mqtt, redis)")

    sockbusd = opt.sockbusd or find_binary("SOCKBUSD", "broker/sockbusd", "sockbusd")
    sockbus_cli = opt.sockbus or find_binary("SOCKBUS", "tools/sockbus/sockbus", "sockbus")
    if not sockbusd:
        print("bench.py: no sockbusd found: build the tree (meson compile -C build), pass "
              "--sockbusd, or set SOCKBUSD", file=sys.stderr)
        return 2
    python = sys.executable
    skipped: Dict[str, str] = {}
    for f in families:
        why = unavailable(f, python)
        if f == "c" and not sockbus_cli:
            why = "no sockbus command found (--sockbus, $SOCKBUS)"
        if why:
            skipped[f] = why

    plan = [p for p in PLAN if p[2] in families and p[2] not in skipped]
    samples: Dict[int, List[Dict[str, Any]]] = {i: [] for i in range(len(plan))}
    errors: Dict[int, str] = {}
    servers = Servers(sockbusd)
    try:
        for run in range(opt.runs):
            for i, (name, workload, family, prefix) in enumerate(plan):
                if i in errors:
                    continue
                try:
                    if family in ("sockbus", "c"):
                        conn: Dict[str, Any] = dict(endpoint=servers.sockbus())
                    elif family == "mqtt":
                        conn = dict(port=servers.mosquitto())
                    else:
                        conn = dict(port=servers.redis())
                    if workload == "thru":
                        res = run_thru(prefix, conn, opt.count, opt.size, opt.window, python)
                    elif family == "c":
                        res = run_c_rtt(sockbus_cli, conn["endpoint"],
                                        0.2 if opt.tiny else 1.0)
                    else:
                        res = run_rtt(prefix, conn, opt.rtt_count, opt.size, opt.warmup, python)
                    samples[i].append(res)
                except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
                    errors[i] = str(e)
                if not opt.json and sys.stderr.isatty():
                    print(f"\rrun {run + 1}/{opt.runs}: {name} {workload}   ", end="",
                          file=sys.stderr, flush=True)
        if not opt.json and sys.stderr.isatty():
            print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    finally:
        servers.close()

    rows = []
    for i, (name, workload, family, _prefix) in enumerate(plan):
        got = samples[i]
        row: Dict[str, Any] = dict(client=name, workload=workload, transport=TRANSPORT[family],
                                   size=opt.size, runs=len(got))
        if i in errors:
            row["error"] = errors[i]
        if workload == "thru" and got:
            rates = [g["rate"] for g in got if g["rate"]]
            row.update(rate=statistics.median(rates) if rates else None,
                       rate_min=min(rates, default=None), rate_max=max(rates, default=None),
                       loss=sum(g["loss"] for g in got),
                       out_of_order=sum(g["out_of_order"] for g in got), messages=opt.count)
        elif got:
            # medians of the per-run percentiles
            for k in ("p50", "p90", "p99"):
                row[k] = statistics.median(g[k] for g in got)
            row["samples"] = sum(g["samples"] for g in got)
        rows.append(row)

    ratios = compute_ratios(rows)
    failed = bool(errors) or any(r.get("loss") or r.get("out_of_order") for r in rows)
    if opt.json:
        print(json.dumps(dict(rows=rows, ratios=ratios, skipped=skipped,
                              python=sys.version.split()[0], runs=opt.runs, count=opt.count,
                              rtt_count=opt.rtt_count, window=opt.window), indent=1))
    else:
        print_table(rows, ratios, skipped, opt)
    return 1 if failed else 0


def _row(rows: List[Dict[str, Any]], client: str, workload: str) -> Optional[Dict[str, Any]]:
    for r in rows:
        if r["client"] == client and r["workload"] == workload and "error" not in r:
            return r
    return None


def compute_ratios(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []

    def add(what: str, value: Optional[float], target: str, ok: Optional[bool]) -> None:
        out.append(dict(what=what, value=value, target=target, ok=ok))

    sync = _row(rows, "sockbus sync", "thru")
    aio = _row(rows, "sockbus asyncio", "thru")
    if sync and sync.get("rate"):
        add("sockbus sync thru msgs/s", sync["rate"], ">= 300k", sync["rate"] >= 300_000)
    if sync and aio and sync.get("rate") and aio.get("rate"):
        v = sync["rate"] / aio["rate"]
        add("sockbus sync / asyncio thru msgs/s", v, "<= 2", v <= 2)
    c = _row(rows, "C libsockbus", "rtt")
    for name in ("sockbus sync", "sockbus asyncio"):
        r = _row(rows, name, "rtt")
        if c and r:
            v = r["p50"] / c["p50"]
            add(f"{name} / C rtt p50", v, "<= 3" if name == "sockbus sync" else "",
                v <= 3 if name == "sockbus sync" else None)
    for other in ("paho-mqtt QoS 0 / mosquitto", "redis-py / redis-server"):
        o = _row(rows, other, "thru")
        if sync and o and sync.get("rate") and o.get("rate"):
            add(f"sockbus sync / {other} thru msgs/s", sync["rate"] / o["rate"], "", None)
        if aio and o and aio.get("rate") and o.get("rate"):
            add(f"sockbus asyncio / {other} thru msgs/s", aio["rate"] / o["rate"], "", None)
        r = _row(rows, "sockbus sync", "rtt")
        o = _row(rows, other, "rtt")
        if r and o:
            add(f"{other} / sockbus sync rtt p50", o["p50"] / r["p50"], "", None)
    return out


def print_table(rows: List[Dict[str, Any]], ratios: List[Dict[str, Any]],
                skipped: Dict[str, str], opt: argparse.Namespace) -> None:
    print(f"Python {sys.version.split()[0]}; {opt.runs} run(s), rows interleaved; thru: "
          f"{opt.count} messages per run, window {opt.window}, msgs/s at the subscriber "
          f"(median [min-max]); rtt: {opt.rtt_count} round trips per run after {opt.warmup} "
          f"warm-up, microseconds (median of the runs' percentiles; C: `sockbus bench rtt`)")
    print()
    head = (f"{'client':<29} {'workload':<8} {'transport':<9} {'size':>6} "
            f"{'msgs/s':>22} {'loss':>5} {'p50':>7} {'p90':>7} {'p99':>7}")
    print(head)
    for r in rows:
        size = f"{r['size']} B"
        if "error" in r and not r["runs"]:
            print(f"{r['client']:<29} {r['workload']:<8} {r['transport']:<9} {size:>6}  "
                  f"FAILED: {r['error']}")
            continue
        if r["workload"] == "thru":
            rate = (f"{fmt_rate(r['rate'])} [{fmt_rate(r['rate_min'])}-{fmt_rate(r['rate_max'])}]"
                    if r.get("rate") else "-")
            loss = str(r["loss"] + r["out_of_order"])
            lat = f"{'-':>7} {'-':>7} {'-':>7}"
        else:
            rate, loss = "-", "-"
            lat = f"{r['p50']:>7.1f} {r['p90']:>7.1f} {r['p99']:>7.1f}"
        print(f"{r['client']:<29} {r['workload']:<8} {r['transport']:<9} {size:>6} {rate:>22} "
              f"{loss:>5} {lat}")
        if "error" in r:
            print(f"  FAILED in a later run: {r['error']}")
    for fam, why in skipped.items():
        print(f"skipped {fam}: {why}")
    if ratios:
        print()
        print("ratios (of medians; targets where set):")
        for q in ratios:
            v = q["value"]
            val = fmt_rate(v) if v >= 1000 else f"{v:.2f}x"
            verdict = "" if q["ok"] is None else ("ok" if q["ok"] else "MISSED")
            print(f"  {q['what']:<58} {val:>8}  {('target ' + q['target']) if q['target'] else '':<12} "
                  f"{verdict}")


if __name__ == "__main__":
    sys.exit(main())
