"""The Python client and the C library, through the `sockbus` command
(libsockbus): messages both ways, requests both ways, and a 100,000
message stream that arrives whole and in order."""

import asyncio
import subprocess
import threading

import pytest

import sockbus
import sockbus.aio
from conftest import IO_S, run, run_cli, sockbus_path


def subscribed(bus, cli_proc, subject):
    """Publish numbered probes until the background `sockbus sub` prints
    one: then it is subscribed, and everything published after that
    arrives after the probes."""
    for i in range(1000):
        probe = b"<probe-%d>" % i
        bus.publish(subject, probe)
        bus.flush()
        if probe in cli_proc.read(0.02):
            return
    raise AssertionError(f"sockbus sub never printed a probe: {cli_proc.out!r}")


def test_c_publisher_to_python_subscriber(bus, broker):
    sub = bus.subscribe("c2py.>")
    bus.flush()
    r = run_cli(["pub", "-s", broker.socket, "c2py.lines"], input=b"one\ntwo\n\nlast")
    assert r.returncode == 0, r.stderr
    r = run_cli(["pub", "-s", broker.socket, "--retain", "c2py.kept", "stored"])
    assert r.returncode == 0, r.stderr
    got = [sub.next(IO_S) for _ in range(5)]
    assert [(m.subject, m.data) for m in got] == [
        ("c2py.lines", b"one"), ("c2py.lines", b"two"), ("c2py.lines", b""),
        ("c2py.lines", b"last"), ("c2py.kept", b"stored")]
    late = bus.subscribe("c2py.kept")
    m = late.next(IO_S)
    assert (m.data, m.retained) == (b"stored", True)


def test_python_publisher_to_c_subscriber(bus, broker, cli):
    proc = cli(["sub", "-s", broker.socket, "--json", "py2c.>"])
    subscribed(bus, proc, "py2c.probe")
    bus.publish("py2c.a", b"hello from python")
    bus.publish("py2c.b", b"\xff\x00binary", reply="py2c.reply")
    bus.publish("py2c.end", b"<end>")
    bus.flush()
    out = proc.wait_output(b"<end>")
    lines = [line for line in out.splitlines() if b"probe" not in line]
    assert lines[0] == b'{"subject":"py2c.a","payload":"hello from python"}'
    assert b'"reply":"py2c.reply"' in lines[1] and b'"payload_base64"' in lines[1]


def test_c_responder_answers_python(bus, broker, cli):
    cli(["reply", "-s", broker.socket, "svc.upper", "--", "tr", "a-z", "A-Z"])
    for _ in range(1000):  # until `sockbus reply` has subscribed
        try:
            answer = bus.request("svc.upper", b"shout", timeout=IO_S)
            break
        except sockbus.NoResponders:
            bus.flush()
    else:
        raise AssertionError("sockbus reply never answered")
    assert answer.data == b"SHOUT"
    assert bus.request("svc.upper", b"again", timeout=IO_S).data == b"AGAIN"


def test_python_responder_answers_c(broker):
    with sockbus.connect(broker.socket) as server:
        svc = server.subscribe("svc.py")
        svc.unsubscribe(max_msgs=2)
        server.flush()

        def serve():
            for req in svc:
                server.publish(req.reply, b"py says: " + req.data)
            server.flush()

        t = threading.Thread(target=serve)
        t.start()
        for word in (b"one", b"two"):
            r = run_cli(["req", "-s", broker.socket, "svc.py", word.decode()])
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"py says: " + word + b"\n"
        t.join(IO_S)
        assert not t.is_alive()
    r = run_cli(["req", "-s", broker.socket, "svc.py", "three"])
    assert r.returncode == 1 and b"no responders" in r.stderr


def test_aio_responder_answers_c(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as bus:
            svc = await bus.subscribe("svc.aio")
            await bus.flush()

            async def serve():
                async for req in svc:
                    await bus.publish(req.reply, req.data[::-1])

            task = asyncio.ensure_future(serve())
            proc = await asyncio.create_subprocess_exec(
                sockbus_path(), "req", "-s", broker.socket, "svc.aio", "abc",
                stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), IO_S)
            assert proc.returncode == 0 and out == b"cba\n"
            task.cancel()

    run(body())


N_STREAM = 100_000


def test_c_stream_of_100000_to_python(bus, broker):
    """`sockbus pub` sends 100,000 numbered lines; the Python subscriber
    gets them all, in order. The broker drops for a subscriber that falls
    more than max_pending behind, so this one reads while the command
    writes (it is a separate process); a loss would show as DROPPED."""
    sub = bus.subscribe("stream")
    bus.flush()
    proc = subprocess.Popen([sockbus_path(), "pub", "-s", broker.socket, "stream"],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    # feed it in steps, each after the subscriber has caught up, so the
    # stream stays within the broker's queue for one reader
    step = 10_000
    got = 0
    for start in range(0, N_STREAM, step):
        proc.stdin.write(b"".join(b"%d\n" % i for i in range(start, start + step)))
        proc.stdin.flush()
        for i in range(start, start + step):
            m = sub.next(IO_S)
            assert m.data == b"%d" % i, f"message {i} out of order: {m.data!r}"
            got += 1
    proc.stdin.close()
    assert proc.wait(IO_S) == 0, proc.stderr.read()
    proc.stderr.close()
    assert got == N_STREAM and bus.take_dropped() == 0


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_python_stream_of_100000_in_order(broker, flavour):
    """A Python publisher to a Python subscriber, 100,000 messages, each
    numbered: all arrive, in order, none dropped. The publisher stays
    within a window of the subscriber (the broker drops for a reader that
    falls more than max_pending behind)."""
    window = 20_000
    done = threading.Semaphore(0)
    errors = []

    with sockbus.connect(broker.socket) as sub_conn:
        sub = sub_conn.subscribe("seq")
        sub_conn.flush()

        def publish_sync():
            with sockbus.connect(broker.socket) as pub:
                for i in range(N_STREAM):
                    if i >= window:
                        done.acquire()
                    pub.publish("seq", b"%d" % i)
                    if i % 1000 == 999:
                        pub.flush()
                pub.flush()

        async def publish_aio():
            async with sockbus.aio.connect(broker.socket) as pub:
                for i in range(N_STREAM):
                    if i >= window:
                        while not done.acquire(blocking=False):
                            await asyncio.sleep(0.001)
                    await pub.publish("seq", b"%d" % i)
                    if i % 1000 == 999:
                        await pub.flush()
                await pub.flush()

        def publisher():
            try:
                if flavour == "sync":
                    publish_sync()
                else:
                    asyncio.run(publish_aio())
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=publisher)
        t.start()
        for i in range(N_STREAM):
            m = sub.next(IO_S)
            assert m.data == b"%d" % i, f"message {i} out of order: {m.data!r}"
            done.release()
        t.join(IO_S)
        assert not errors, errors
        assert sub_conn.take_dropped() == 0
