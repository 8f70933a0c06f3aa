"""Who listens, from Python: interest() ($SYS.INTEREST) and
wait_for_interest() (as `sockbus wait`), blocking and asyncio; and text
mode (a client that speaks lines) reaching a Python subscriber."""

import socket
import threading
import time

import pytest

import sockbus
import sockbus.aio
from conftest import IO_S, run


def test_interest_counts_subscriptions_and_groups(broker):
    with sockbus.connect(broker.socket) as bus, sockbus.connect(broker.socket) as other:
        assert bus.interest("jobs.resize") == 0
        other.subscribe("jobs.*")
        other.subscribe("jobs.resize", queue="workers")
        other.subscribe("jobs.resize", queue="workers")
        other.flush()
        assert bus.interest("jobs.resize") == 2  # one plain, one group
        assert bus.interest("jobs.other") == 1
        with pytest.raises(sockbus.InvalidSubject):
            bus.interest("jobs.*")


def test_wait_for_interest_now_later_or_timeout(broker):
    with sockbus.connect(broker.socket) as bus, sockbus.connect(broker.socket) as svc:
        with pytest.raises(TimeoutError):
            bus.wait_for_interest("svc.time", timeout=0.2)

        def late():
            time.sleep(0.2)
            svc.subscribe("svc.>")
            svc.flush()

        t = threading.Thread(target=late)
        t.start()
        start = time.monotonic()
        bus.wait_for_interest("svc.time", timeout=IO_S)
        assert time.monotonic() - start < IO_S
        t.join()
        bus.wait_for_interest("svc.time", timeout=IO_S)  # at once now
        assert bus.request("$SYS.STATS", timeout=IO_S).data  # the connection goes on


def test_aio_interest_and_wait(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as bus:
            assert await bus.interest("a.b") == 0
            with pytest.raises(TimeoutError):
                await bus.wait_for_interest("a.b", timeout=0.2)
            async with sockbus.aio.connect(broker.socket) as svc:
                waiter = asyncio_task(bus.wait_for_interest("a.b", timeout=IO_S))
                await svc.subscribe("a.>")
                await svc.flush()
                await waiter
                assert await bus.interest("a.b") == 1

    run(body())


def asyncio_task(coro):
    import asyncio
    return asyncio.ensure_future(coro)


def test_a_text_client_reaches_a_python_subscriber(broker):
    with sockbus.connect(broker.socket) as bus:
        sub = bus.subscribe("from.text")
        bus.flush()
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(broker.socket)
            s.sendall(b"PUB from.text hello from a line\r\nQUIT\r\n")
            got = b""
            while not got.endswith(b"+OK\r\n+OK\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            assert got == b"+OK\r\n+OK\r\n"
        assert sub.next(IO_S).data == b"hello from a line"
