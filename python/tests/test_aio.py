"""The asyncio client against a real broker: every call of the API."""

import asyncio
import json
import os

import pytest

import sockbus
import sockbus.aio
from conftest import IO_S, run


def test_connect_as_context_manager_and_awaitable(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket, name="py-aio", echo=True,
                                       timeout=5.0) as bus:
            assert bus.state == sockbus.CONNECTED
            assert bus.client_id >= 1 and bus.max_frame == 1114112
            assert bus.inbox_prefix == f"_INBOX.{bus.client_id}."
            assert bus.broker_pid == broker.pid and bus.broker_uid == os.geteuid()
            reply = await bus.request("$SYS.CLIENTS", timeout=IO_S)
            assert [c["name"] for c in json.loads(reply.data)["clients"]] == ["py-aio"]
        assert bus.state == sockbus.CLOSED
        bus2 = await sockbus.aio.connect(broker.socket)
        assert bus2.state == sockbus.CONNECTED
        await bus2.close()
        await bus2.close()
        assert bus2.state == sockbus.CLOSED

    run(body())


def test_publish_subscribe_wildcards(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as bus:
            star = await bus.subscribe("sensors.*.temp")
            full = await bus.subscribe("sensors.>")
            await bus.publish("sensors.kitchen.temp", b"21.5")
            await bus.publish("sensors.kitchen.hum", "40")
            await bus.flush()
            m = await star.next(IO_S)
            assert (m.subject, m.data, m.sid, m.reply, m.headers, m.retained) == (
                "sensors.kitchen.temp", b"21.5", star.sid, None, b"", False)
            assert [(await full.next(IO_S)).data for _ in range(2)] == [b"21.5", b"40"]
            with pytest.raises(TimeoutError):
                await star.next(0.05)

    run(body())


def test_async_for_ends_with_the_subscription(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as bus:
            sub = await bus.subscribe("it")
            await sub.unsubscribe(max_msgs=3)
            for i in range(5):
                await bus.publish("it", b"%d" % i)
            got = [m.data async for m in sub]
            assert got == [b"0", b"1", b"2"]
            with pytest.raises(sockbus.SubscriptionEnded):
                await sub.next(0)

    run(body())


def test_waiting_task_wakes_on_a_message(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as bus:
            sub = await bus.subscribe("w")
            waiter = asyncio.ensure_future(sub.next(IO_S))
            await asyncio.sleep(0)
            async with sockbus.aio.connect(broker.socket) as other:
                await other.publish("w", b"wake")
                await other.flush()
            assert (await waiter).data == b"wake"

    run(body())


def test_unsubscribe_and_context_manager(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as bus:
            async with await bus.subscribe("cm") as sub:
                await bus.publish("cm", b"x")
                assert (await sub.next(IO_S)).data == b"x"
            now = await bus.subscribe("u")
            await now.unsubscribe()
            await bus.publish("cm", b"y")
            await bus.publish("u", b"y")
            await bus.flush()
            for s in (sub, now):
                with pytest.raises(sockbus.SubscriptionEnded):
                    await s.next(0)

    run(body())


def test_queue_group(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as a, \
                sockbus.aio.connect(broker.socket) as b:
            sa = await a.subscribe("jobs", queue="workers")
            sb = await b.subscribe("jobs", queue="workers")
            await a.flush()
            await b.flush()
            for i in range(10):
                await a.publish("jobs", b"%d" % i)
            await a.flush()
            got = {"a": [], "b": []}
            for name, s in (("a", sa), ("b", sb)):
                while True:
                    try:
                        got[name].append((await s.next(0.2)).data)
                    except TimeoutError:
                        break
            assert sorted(got["a"] + got["b"]) == sorted(b"%d" % i for i in range(10))
            assert len(got["a"]) == len(got["b"]) == 5

    run(body())


def test_request_reply_and_no_responders(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as bus:
            svc = await bus.subscribe("math.double")

            async def serve():
                async for req in svc:
                    await bus.publish(req.reply, b"%d" % (2 * int(req.data)),
                                      headers=req.headers)

            task = asyncio.ensure_future(serve())
            answers = await asyncio.gather(*(
                bus.request("math.double", b"%d" % n, timeout=IO_S, headers=b"h%d" % n)
                for n in range(20)))
            assert [a.data for a in answers] == [b"%d" % (2 * n) for n in range(20)]
            assert [a.headers for a in answers] == [b"h%d" % n for n in range(20)]
            task.cancel()
            with pytest.raises(sockbus.NoResponders):
                await bus.request("nobody.home", timeout=30.0)
            await bus.subscribe("silent")
            with pytest.raises(TimeoutError):
                await bus.request("silent", timeout=0.2)

    run(body())


def test_retained_headers_echo_and_flush(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket, echo=False) as quiet, \
                sockbus.aio.connect(broker.socket) as bus:
            await bus.publish("config.mode", b"eco", retain=True)
            await bus.flush()
            sub = await bus.subscribe("config.>")
            m = await sub.next(IO_S)
            assert (m.subject, m.data, m.retained) == ("config.mode", b"eco", True)
            await bus.publish("config.x", b"p", headers=b"\x00hdr", reply="r.x")
            m = await sub.next(IO_S)
            assert (m.headers, m.reply, m.retained) == (b"\x00hdr", "r.x", False)
            mine = await quiet.subscribe("e")
            await quiet.publish("e", b"mine")
            await quiet.flush()
            with pytest.raises(TimeoutError):
                await mine.next(0)

    run(body())


def test_dropped_is_counted(make_broker):
    b = make_broker(["--max-frame", "4096", "--max-pending", "65536"])

    async def body():
        async with sockbus.aio.connect(b.socket) as slow:
            sub = await slow.subscribe("flood")
            await slow.flush()
            n = 20000
            # A blocking publisher in this very thread: while it runs, the
            # loop does not, so the subscriber reads nothing and the broker
            # drops what does not fit its queue.
            with sockbus.connect(b.socket) as pub:
                for _ in range(n):
                    pub.publish("flood", b"x" * 100)
                pub.flush()
            received = dropped = 0
            while received + dropped < n:
                try:
                    await sub.next(IO_S)
                    received += 1
                except TimeoutError:
                    break
                dropped += slow.take_dropped()
            dropped += slow.take_dropped()
            assert dropped > 0 and received + dropped == n

    run(body())


def test_errors(make_broker):
    b = make_broker(["--max-frame", "4096"])

    async def body():
        async with sockbus.aio.connect(b.socket) as bus:
            with pytest.raises(sockbus.InvalidSubject):
                await bus.publish("a..b", b"")
            with pytest.raises(sockbus.InvalidSubject):
                await bus.subscribe("a.>.b")
            with pytest.raises(sockbus.MessageTooLarge):
                await bus.publish("big", b"x" * 4096)
            await bus.publish("$SYS.NOPE", b"")
            with pytest.raises(sockbus.BrokerError) as e:
                await bus.flush()
            assert (e.value.code, e.value.subject) == (4, "$SYS.NOPE")
            with pytest.raises(sockbus.BrokerError) as e:
                await bus.request("$SYS.CLIENTS", b"{bad", timeout=IO_S)
            assert e.value.code == 11
        with pytest.raises(sockbus.ConnectionClosed):
            await bus.publish("x", b"")
        with pytest.raises(sockbus.ConnectError) as e:
            await sockbus.aio.connect(os.path.join(b.dir, "nobody.sock"))
        assert os.path.join(b.dir, "nobody.sock") in str(e.value)

    run(body())


def test_large_stream_in_order(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as pub, \
                sockbus.aio.connect(broker.socket) as sub_conn:
            sub = await sub_conn.subscribe("big.>")
            await sub_conn.flush()
            big = os.urandom(512 * 1024)
            await pub.publish("big.one", big)
            for i in range(2000):
                await pub.publish("big.n", b"%d" % i)
            await pub.flush()
            assert (await sub.next(IO_S)).data == big
            for i in range(2000):
                assert (await sub.next(IO_S)).data == b"%d" % i

    run(body())
