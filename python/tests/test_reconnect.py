"""Reconnect: the broker goes away (SIGTERM: ERR 9 then close; SIGKILL:
end of file; a socket that refuses for a while) and comes back on the
same path; subscribers and responders serve again without any action,
with their subscriptions replayed (sid, pattern, queue group, remaining
auto-unsubscribe count), publishes made meanwhile delivered, requests in
flight failed, and the gap reported."""

import asyncio
import json
import signal
import threading
import time

import pytest

import sockbus
import sockbus.aio
from conftest import IO_S, run

# How long a client may take to serve again once the broker is back: the
# backoff is at most 1 s, so this is 1 s plus room for a loaded machine.
BACK_S = 5.0


def take_broker_away(broker, how):
    if how == "sigterm":
        broker.stop()
    else:
        broker.kill()


class Served:
    """A subscriber and a responder, each on its own connection in its own
    thread, as an application would run them."""

    def __init__(self, socket_path):
        self.events = []
        self.sub_conn = sockbus.connect(socket_path, name="subscriber",
                                        on_state=self.events.append)
        self.rep_conn = sockbus.connect(socket_path, name="responder")
        self.sub = self.sub_conn.subscribe("a.>")
        self.svc = self.rep_conn.subscribe("svc", queue="q")
        self.sub_conn.flush()
        self.rep_conn.flush()
        self.received = []
        self.errors = []
        self.stop = False
        self.threads = [threading.Thread(target=self._subscriber),
                        threading.Thread(target=self._responder)]
        for t in self.threads:
            t.start()

    def _subscriber(self):
        try:
            while not self.stop:
                try:
                    self.received.append(self.sub.next(0.05).data)
                except TimeoutError:
                    pass
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)

    def _responder(self):
        try:
            while not self.stop:
                try:
                    req = self.svc.next(0.05)
                except TimeoutError:
                    continue
                self.rep_conn.publish(req.reply, b"re:" + req.data)
        except Exception as e:  # noqa: BLE001
            self.errors.append(e)

    def close(self):
        self.stop = True
        for t in self.threads:
            t.join(IO_S)
        self.sub_conn.close()
        self.rep_conn.close()
        assert not self.errors, self.errors


def resync(conn):
    """Make an idle blocking connection notice the loss and reconnect: its
    first flush may learn of the loss (ConnectionClosed), the next waits
    for the reconnect and the replay."""
    for _ in range(2):
        try:
            conn.flush(IO_S)
            return
        except sockbus.ConnectionClosed:
            continue
    conn.flush(IO_S)


def serving_again(socket_path, served, tag):
    """Publish and request until both the subscriber and the responder
    answer; returns how long it took."""
    t0 = time.monotonic()
    with sockbus.connect(socket_path, reconnect=False) as probe:
        while tag not in served.received:
            assert time.monotonic() - t0 < BACK_S, f"the subscriber did not come back: " \
                                                   f"{served.received[-3:]}"
            probe.publish("a.probe", tag)
            probe.flush(IO_S)
            time.sleep(0.01)
        while True:
            try:
                assert probe.request("svc", tag, timeout=IO_S).data == b"re:" + tag
                break
            except sockbus.NoResponders:
                assert time.monotonic() - t0 < BACK_S, "the responder did not come back"
                time.sleep(0.01)
    return time.monotonic() - t0


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_subscriber_and_responder_serve_again(broker, how):
    served = Served(broker.socket)
    try:
        assert serving_again(broker.socket, served, b"before") < BACK_S
        take_broker_away(broker, how)
        broker.start()
        took = serving_again(broker.socket, served, b"after")
        assert took < BACK_S
        states = [e.state for e in served.events]
        assert states == [sockbus.DISCONNECTED, sockbus.RECONNECTED]
        lost, back = served.events
        assert lost.lost_at <= back.back_at and back.lost_at == lost.lost_at
        assert lost.error is not None and back.error is None
        # the same subscriptions, by sid: nothing extra was made
        with sockbus.connect(broker.socket) as asker:
            stats = json.loads(asker.request("$SYS.STATS", timeout=IO_S).data)
        # a.> and svc, replayed once each, and the asker's own inbox
        assert stats["subscriptions"] == 3
    finally:
        served.close()


def test_a_socket_that_refuses_for_a_while(broker):
    served = Served(broker.socket)
    try:
        broker.kill()  # the socket file stays: connections are refused
        time.sleep(1.5)  # several attempts fail meanwhile (the point of the test)
        broker.start()
        assert serving_again(broker.socket, served, b"later") < BACK_S
    finally:
        served.close()


def test_publishes_while_disconnected_are_sent_after_the_replay(broker):
    events = []
    pub = sockbus.connect(broker.socket, on_state=events.append)
    sub_conn = sockbus.connect(broker.socket)
    sub = sub_conn.subscribe("q.>")
    sub_conn.flush()
    broker.kill()
    with pytest.raises(sockbus.ConnectionClosed):
        pub.flush(IO_S)  # the broker went away before confirming
    assert pub.state == sockbus.DISCONNECTED
    for i in range(100):
        pub.publish("q.x", b"%d" % i)
    broker.start()
    resync(sub_conn)  # the subscriber is back, its subscription in place
    pub.flush(IO_S)  # reconnects, replays, sends what was buffered
    assert [sub.next(IO_S).data for _ in range(100)] == [b"%d" % i for i in range(100)]
    assert [e.state for e in events] == [sockbus.DISCONNECTED, sockbus.RECONNECTED]
    pub.close()
    sub_conn.close()


def test_publishes_not_yet_written_when_the_broker_went_away_are_kept(broker):
    # Publishes still in the client's buffer when the broker died were
    # never sent: they go out after the reconnect, in order.
    pub = sockbus.connect(broker.socket)
    sub_conn = sockbus.connect(broker.socket)
    sub = sub_conn.subscribe("k")
    sub_conn.flush()
    pub.flush()
    broker.kill()
    for i in range(100):  # buffered, not written: the loss is not known yet
        pub.publish("k", b"%d" % i)
    assert pub.state == sockbus.CONNECTED
    broker.start()
    resync(sub_conn)
    resync(pub)
    assert [sub.next(IO_S).data for _ in range(100)] == [b"%d" % i for i in range(100)]
    pub.close()
    sub_conn.close()


def test_replay_keeps_sid_queue_group_and_remaining_count(broker):
    with sockbus.connect(broker.socket) as a, sockbus.connect(broker.socket) as b:
        qa = a.subscribe("jobs", queue="w")
        qb = b.subscribe("jobs", queue="w")
        counted = a.subscribe("five")
        counted.unsubscribe(max_msgs=5)
        a.publish("five", b"1")
        a.publish("five", b"2")
        a.flush()
        assert [counted.next(IO_S).data for _ in range(2)] == [b"1", b"2"]
        broker.kill()
        broker.start()
        resync(a)
        resync(b)
        with sockbus.connect(broker.socket) as pub:
            for i in range(10):
                pub.publish("jobs", b"%d" % i)
                pub.publish("five", b"%d" % (10 + i))
            pub.flush()
        got = []
        for s in (qa, qb):
            while True:
                try:
                    m = s.next(0.3)
                except TimeoutError:
                    break
                assert m.sid == s.sid
                got.append(m.data)
        assert sorted(got) == sorted(b"%d" % i for i in range(10))  # each to one member
        assert [counted.next(IO_S).data for _ in range(3)] == [b"10", b"11", b"12"]
        with pytest.raises(sockbus.SubscriptionEnded):
            counted.next(0.2)
        # the broker ended it too: it was replayed with its remaining count
        with sockbus.connect(broker.socket) as asker:
            clients = json.loads(asker.request("$SYS.CLIENTS", timeout=IO_S).data)["clients"]
        assert [c["subscriptions"] for c in clients if c["id"] == a.client_id] == [1]


def test_request_in_flight_fails(broker):
    with sockbus.connect(broker.socket) as requester, \
            sockbus.connect(broker.socket) as silent:
        svc = silent.subscribe("slow.svc")
        silent.flush()

        def kill_when_asked():
            svc.next(IO_S)  # the request has reached the broker
            broker.kill()

        t = threading.Thread(target=kill_when_asked)
        t.start()
        t0 = time.monotonic()
        with pytest.raises(sockbus.ConnectionClosed):
            requester.request("slow.svc", b"?", timeout=60)
        assert time.monotonic() - t0 < 30  # failed, not timed out
        t.join(IO_S)
        broker.start()


def test_reconnect_buffer_is_bounded(broker):
    pub = sockbus.connect(broker.socket, reconnect_buffer=1000)
    broker.kill()
    with pytest.raises(sockbus.ConnectionClosed):
        pub.flush(IO_S)
    pub.publish("r", b"a" * 600)
    with pytest.raises(sockbus.ConnectionClosed) as e:
        pub.publish("r", b"b" * 600)
    assert "reconnect buffer" in str(e.value)
    broker.start()
    with sockbus.connect(broker.socket) as sub_conn:
        sub = sub_conn.subscribe("r")
        sub_conn.flush()
        pub.flush(IO_S)
        assert sub.next(IO_S).data == b"a" * 600
        with pytest.raises(TimeoutError):
            sub.next(0.2)
    pub.close()


def test_reconnect_max_gives_up(broker):
    events = []
    bus = sockbus.connect(broker.socket, reconnect_max=0.3, on_state=events.append)
    sub = bus.subscribe("x")
    broker.stop()
    t0 = time.monotonic()
    with pytest.raises(sockbus.ConnectionClosed) as e:
        sub.next(IO_S)
    assert time.monotonic() - t0 < IO_S
    assert "within 0.3 s" in str(e.value)
    assert bus.state == sockbus.CLOSED
    assert [ev.state for ev in events] == [sockbus.DISCONNECTED, sockbus.CLOSED]
    with pytest.raises(sockbus.ConnectionClosed):
        bus.publish("x", b"")
    broker.start()
    bus.close()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_aio_subscriber_and_responder_serve_again(broker, how):
    async def body():
        events = []
        async with sockbus.aio.connect(broker.socket, on_state=events.append) as bus:
            sub = await bus.subscribe("a.>")
            svc = await bus.subscribe("svc")
            received = []

            async def subscriber():
                async for m in sub:
                    received.append(m.data)

            async def responder():
                async for req in svc:
                    await bus.publish(req.reply, b"re:" + req.data)

            tasks = [asyncio.ensure_future(subscriber()), asyncio.ensure_future(responder())]
            await bus.flush()
            take_broker_away(broker, how)
            broker.start()
            t0 = time.monotonic()
            async with sockbus.aio.connect(broker.socket, reconnect=False) as probe:
                while b"after" not in received:
                    assert time.monotonic() - t0 < BACK_S, "the subscriber did not come back"
                    await probe.publish("a.x", b"after")
                    await probe.flush()
                    await asyncio.sleep(0.01)
                while True:
                    try:
                        r = await probe.request("svc", b"q", timeout=IO_S)
                        break
                    except sockbus.NoResponders:
                        assert time.monotonic() - t0 < BACK_S, "the responder did not come back"
                        await asyncio.sleep(0.01)
                assert r.data == b"re:q"
            assert [e.state for e in events] == [sockbus.DISCONNECTED, sockbus.RECONNECTED]
            for t in tasks:
                t.cancel()

    run(body())


def test_aio_request_in_flight_fails_and_buffer_is_sent(broker):
    async def body():
        async with sockbus.aio.connect(broker.socket) as bus, \
                sockbus.aio.connect(broker.socket) as silent:
            svc = await silent.subscribe("slow")
            watch = await bus.subscribe("w")
            await silent.flush()
            asking = asyncio.ensure_future(bus.request("slow", b"?", timeout=60))
            await svc.next(IO_S)  # the request reached the broker
            broker.kill()
            with pytest.raises(sockbus.ConnectionClosed):
                await asyncio.wait_for(asking, 30)
            await bus.publish("w", b"while away")
            assert bus.state == sockbus.DISCONNECTED
            broker.start()
            # reconnects on its own: the subscription and the buffered
            # publish come back with it
            assert (await watch.next(BACK_S)).data == b"while away"
            assert bus.state == sockbus.CONNECTED

    run(body())


def test_aio_reconnect_max_gives_up(broker):
    async def body():
        bus = await sockbus.aio.connect(broker.socket, reconnect_max=0.3)
        sub = await bus.subscribe("x")
        broker.stop()
        with pytest.raises(sockbus.ConnectionClosed):
            await sub.next(IO_S)
        assert bus.state == sockbus.CLOSED
        with pytest.raises(sockbus.ConnectionClosed):
            await bus.flush()
        broker.start()
        await bus.close()

    run(body())
