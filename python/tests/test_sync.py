"""The blocking client against a real broker: every call of the API."""

import json
import os
import threading

import pytest

import sockbus
from conftest import IO_S


def test_connect_says_hello_and_learns_the_welcome(broker):
    with sockbus.connect(broker.socket, name="py-test", echo=True, timeout=5.0) as bus:
        assert bus.state == sockbus.CONNECTED
        assert bus.endpoint == broker.socket
        assert bus.client_id >= 1
        assert bus.max_frame == 1114112
        assert bus.inbox_prefix == f"_INBOX.{bus.client_id}."
        assert bus.server_version
        assert bus.broker_pid == broker.pid
        assert bus.broker_uid == os.geteuid()
        clients = json.loads(bus.request("$SYS.CLIENTS", timeout=IO_S).data)["clients"]
        assert [c["name"] for c in clients] == ["py-test"]
    assert bus.state == sockbus.CLOSED


def test_unix_url_and_environment_endpoints(broker, monkeypatch):
    with sockbus.connect("unix://" + broker.socket) as bus:
        assert bus.endpoint == broker.socket
    monkeypatch.setenv("SOCKBUS_SOCKET", broker.socket)
    with sockbus.connect() as bus:
        assert bus.broker_pid == broker.pid


def test_default_path_under_xdg_runtime_dir(make_broker, monkeypatch):
    b = make_broker(socket_name="sockbus.sock")
    monkeypatch.setenv("XDG_RUNTIME_DIR", b.dir)
    with sockbus.connect() as bus:  # a default path: checked, and ours
        assert bus.endpoint == os.path.join(b.dir, "sockbus.sock")
        assert bus.broker_uid == os.geteuid()


def test_tcp_endpoint(make_broker):
    b = make_broker(["--tcp", "127.0.0.1:0"])
    with open(b.log) as f:
        port = int(f.read().split("tcp port ")[1].split()[0])
    with sockbus.connect(f"tcp://127.0.0.1:{port}") as bus:
        assert bus.broker_pid is None
        sub = bus.subscribe("t.>")
        bus.publish("t.x", b"over tcp")
        bus.flush()
        assert sub.next(IO_S).data == b"over tcp"


def test_publish_subscribe_wildcards(bus):
    star = bus.subscribe("sensors.*.temp")
    full = bus.subscribe("sensors.>")
    exact = bus.subscribe("sensors.kitchen.temp")
    bus.publish("sensors.kitchen.temp", b"21.5")
    bus.publish("sensors.kitchen.hum", b"40")
    bus.publish("sensors.x.y.temp", b"deep")
    bus.flush()
    m = star.next(IO_S)
    assert (m.subject, m.data, m.sid, m.reply, m.headers, m.retained, m.sender, m.fds) == (
        "sensors.kitchen.temp", b"21.5", star.sid, None, b"", False, None, ())
    assert [x.data for x in (full.next(IO_S), full.next(IO_S), full.next(IO_S))] == [
        b"21.5", b"40", b"deep"]
    assert exact.next(IO_S).data == b"21.5"
    for s in (star, full, exact):
        with pytest.raises(TimeoutError):
            s.next(0)


def test_data_types_and_empty_payload(bus):
    sub = bus.subscribe("d")
    bus.publish("d", "text é")
    bus.publish("d", bytearray(b"ba"))
    bus.publish("d", memoryview(b"mv"))
    bus.publish("d")
    bus.flush()
    assert [sub.next(IO_S).data for _ in range(4)] == ["text é".encode(), b"ba", b"mv", b""]


def test_iteration_ends_with_the_subscription(bus):
    sub = bus.subscribe("it")
    sub.unsubscribe(max_msgs=3)  # three more messages, then it ends
    for i in range(5):
        bus.publish("it", b"%d" % i)
    bus.flush()
    assert [m.data for m in sub] == [b"0", b"1", b"2"]
    with pytest.raises(sockbus.SubscriptionEnded):
        sub.next(0)


def test_unsubscribe_now_and_after_a_count(bus):
    now = bus.subscribe("u")
    later = bus.subscribe("u")
    later.unsubscribe(max_msgs=2)
    now.unsubscribe()
    for i in range(4):
        bus.publish("u", b"%d" % i)
    bus.flush()
    with pytest.raises(sockbus.SubscriptionEnded):
        now.next(0)
    assert [later.next(IO_S).data for _ in range(2)] == [b"0", b"1"]
    with pytest.raises(sockbus.SubscriptionEnded):
        later.next(0)
    stats = json.loads(bus.request("$SYS.STATS", timeout=IO_S).data)
    assert stats["subscriptions"] == 1  # the inbox only


def test_subscription_context_manager(bus):
    with bus.subscribe("cm") as sub:
        bus.publish("cm", b"x")
        bus.flush()
        assert sub.next(IO_S).data == b"x"
    bus.publish("cm", b"y")
    bus.flush()
    with pytest.raises(sockbus.SubscriptionEnded):
        sub.next(0)


def test_queue_group_shares_the_work(broker):
    with sockbus.connect(broker.socket) as a, sockbus.connect(broker.socket) as b, \
            sockbus.connect(broker.socket) as pub:
        sa = a.subscribe("jobs", queue="workers")
        sb = b.subscribe("jobs", queue="workers")
        plain = b.subscribe("jobs")
        assert (sa.queue, plain.queue) == ("workers", None)
        a.flush()
        b.flush()
        for i in range(10):
            pub.publish("jobs", b"%d" % i)
        pub.flush()
        # each message reaches one member of the group, and the plain
        # subscription as usual
        assert [plain.next(IO_S).data for _ in range(10)] == [b"%d" % i for i in range(10)]
        got = {}
        for name, s in (("a", sa), ("b", sb)):
            got[name] = []
            while True:
                try:
                    got[name].append(s.next(0.2).data)
                except TimeoutError:
                    break
        assert sorted(got["a"] + got["b"]) == sorted(b"%d" % i for i in range(10))
        assert len(got["a"]) == len(got["b"]) == 5  # round robin


def test_request_reply_between_connections(broker):
    with sockbus.connect(broker.socket) as server, sockbus.connect(broker.socket) as client:
        svc = server.subscribe("math.double")
        svc.unsubscribe(max_msgs=3)  # the service answers three requests
        server.flush()

        def serve():
            for req in svc:
                server.publish(req.reply, b"%d" % (2 * int(req.data)), headers=req.headers)
            server.flush()

        t = threading.Thread(target=serve)
        t.start()
        for n in (1, 21, 1000):
            answer = client.request("math.double", b"%d" % n, timeout=IO_S, headers=b"h")
            assert answer.data == b"%d" % (2 * n)
            assert answer.headers == b"h"
            assert answer.subject.startswith(client.inbox_prefix)
        t.join(IO_S)
        assert not t.is_alive()


def test_no_responders_at_once(bus):
    with pytest.raises(sockbus.NoResponders) as e:
        bus.request("nobody.home", b"", timeout=30.0)
    assert e.value.subject == "nobody.home"
    assert "no responders for nobody.home" in str(e.value)


def test_request_timeout(bus):
    bus.subscribe("silent")
    with pytest.raises(TimeoutError):
        bus.request("silent", b"?", timeout=0.2)
    # a late reply to a request that timed out is dropped, not handed out
    bus.flush()


def test_retained_values(bus):
    bus.publish("config.mode", b"eco", retain=True)
    bus.flush()
    sub = bus.subscribe("config.>")
    m = sub.next(IO_S)
    assert (m.subject, m.data, m.retained) == ("config.mode", b"eco", True)
    bus.publish("config.mode", b"", retain=True)  # deletes it, delivered live
    bus.flush()
    live = sub.next(IO_S)
    assert (live.data, live.retained) == (b"", False)
    again = bus.subscribe("config.>")
    bus.flush()
    with pytest.raises(TimeoutError):
        again.next(0)


def test_headers_are_opaque_bytes(bus):
    sub = bus.subscribe("h")
    blob = bytes(range(256)) * 10
    bus.publish("h", b"payload", headers=blob, reply="h.reply")
    bus.flush()
    m = sub.next(IO_S)
    assert (m.headers, m.data, m.reply) == (blob, b"payload", "h.reply")


def test_flush_is_a_barrier(broker):
    with sockbus.connect(broker.socket) as pub, sockbus.connect(broker.socket) as sub_conn:
        sub = sub_conn.subscribe("b.>")
        sub_conn.flush()
        for i in range(1000):
            pub.publish("b.x", b"%d" % i)
        pub.flush()
        # everything published before the flush is queued to the subscriber
        assert [sub.next(IO_S).data for _ in range(1000)] == [b"%d" % i for i in range(1000)]


def test_echo_off(broker):
    with sockbus.connect(broker.socket, echo=False) as bus:
        sub = bus.subscribe("e")
        bus.publish("e", b"mine")
        bus.flush()
        with pytest.raises(TimeoutError):
            sub.next(0)


def test_dropped_is_counted(make_broker):
    # A subscriber that does not read while a publisher sends more than
    # its queue holds loses messages, and is told how many.
    b = make_broker(["--max-frame", "4096", "--max-pending", "65536"])
    with sockbus.connect(b.socket) as pub, sockbus.connect(b.socket) as slow:
        sub = slow.subscribe("flood")
        slow.flush()
        n = 20000
        for _ in range(n):
            pub.publish("flood", b"x" * 100)
        pub.flush()
        received = 0
        dropped = 0
        while received + dropped < n:
            try:
                sub.next(IO_S)
                received += 1
            except TimeoutError:
                break
            dropped += slow.take_dropped()
        dropped += slow.take_dropped()
        assert dropped > 0
        assert received + dropped == n
        assert slow.take_dropped() == 0


def test_sys_requests(bus):
    stats = json.loads(bus.request("$SYS.STATS", timeout=IO_S).data)
    assert stats["connections"] == 1
    page = json.loads(bus.request("$SYS.CLIENTS", b'{"offset":0,"limit":5}', timeout=IO_S).data)
    assert page["total"] == 1 and page["more"] is False


def test_max_payload(make_broker):
    b = make_broker(["--max-frame", "4096"])
    with sockbus.connect(b.socket) as bus:
        assert bus.max_frame == 4096
        room = bus.max_payload("big")
        assert room == 4096 - 16 - 3
        sub = bus.subscribe("big")
        bus.publish("big", b"z" * room)
        bus.flush()
        assert len(sub.next(IO_S).data) == room


def test_one_message_per_matching_subscription(bus):
    a = bus.subscribe("t.*")
    b = bus.subscribe("t.>")
    bus.publish("t.x", b"1")
    bus.flush()
    assert a.next(IO_S).sid == a.sid
    assert b.next(IO_S).sid == b.sid


def test_close_is_idempotent_and_final(broker):
    bus = sockbus.connect(broker.socket)
    sub = bus.subscribe("c")
    bus.publish("c", b"before close")
    bus.close()
    bus.close()
    assert bus.state == sockbus.CLOSED
    with pytest.raises(sockbus.ConnectionClosed):
        bus.publish("c", b"after")
    with pytest.raises(sockbus.ConnectionClosed):
        bus.flush()
    with pytest.raises(sockbus.ConnectionClosed):
        bus.subscribe("c")
    with pytest.raises(sockbus.SubscriptionEnded):
        sub.next(0)
    # what was buffered left before the close
    with sockbus.connect(broker.socket) as other:
        stats = json.loads(other.request("$SYS.STATS", timeout=IO_S).data)
        assert stats["msgs_in"] >= 1


def test_large_messages_and_many_subjects(bus):
    sub = bus.subscribe("big.>")
    big = os.urandom(1024 * 1024)
    bus.publish("big.one", big)
    for i in range(5000):  # more subjects than the encoded-subject cache keeps
        bus.publish(f"big.n{i}", b"%d" % i)
    bus.flush()
    assert sub.next(IO_S).data == big
    for i in range(5000):
        m = sub.next(IO_S)
        assert (m.subject, m.data) == (f"big.n{i}", b"%d" % i)
