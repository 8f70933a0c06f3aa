"""asyncio: how a call waits. A request leaves at once (not at the end
of the loop iteration); timed waits end with TimeoutError and leave the
connection as it was; a late reply is ignored; a cancelled wait leaves
its subscription working."""

import asyncio

import pytest

import sockbus
import sockbus.aio
from conftest import IO_S, run


def test_a_request_is_written_before_the_task_yields(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as bus:
            svc = await bus.subscribe("svc.now")
            await bus.flush()
            task = asyncio.ensure_future(bus.request("svc.now", b"q", timeout=IO_S))
            await asyncio.sleep(0)  # the task runs up to its wait
            assert not task.done()
            assert not bus._has_output(), "the request is still in the output buffer"
            req = await svc.next(IO_S)
            await bus.publish(req.reply, b"a")
            assert (await task).data == b"a"

    run(body())


def test_timeouts_then_late_replies_are_ignored(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as bus, \
                sockbus.aio.connect(broker.socket) as svc_conn:
            svc = await svc_conn.subscribe("svc.slow")
            await svc_conn.flush()
            with pytest.raises(TimeoutError):
                await bus.request("svc.slow", b"1", timeout=0.05)
            late = await svc.next(IO_S)
            await svc_conn.publish(late.reply, b"late")
            await svc_conn.flush()
            second = asyncio.ensure_future(bus.request("svc.slow", b"2", timeout=IO_S))
            req = await svc.next(IO_S)
            assert req.data == b"2"
            await svc_conn.publish(req.reply, b"on time")
            assert (await second).data == b"on time"

            sub = await bus.subscribe("quiet")
            await bus.flush()
            with pytest.raises(TimeoutError):
                await sub.next(0.05)
            await bus.publish("quiet", b"now")
            assert (await sub.next(IO_S)).data == b"now"
            with pytest.raises(TimeoutError):
                await sub.next(0.0)

    run(body())


def test_a_cancelled_wait_leaves_the_subscription_working(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as bus:
            sub = await bus.subscribe("c.>")
            await bus.flush()
            waiting = asyncio.ensure_future(sub.next(IO_S))
            await asyncio.sleep(0.01)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await bus.publish("c.x", b"after")
            assert (await sub.next(IO_S)).data == b"after"

    run(body())
