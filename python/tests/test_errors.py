"""Error paths: no broker, permission denied, invalid subjects, frames too
large, no responders, timeouts, a broker of another user, a connection
that is gone."""

import json
import os
import signal

import pytest

import sockbus
from conftest import IO_S, Broker


def test_no_broker(tmpdir_short):
    path = os.path.join(tmpdir_short, "nobody.sock")
    with pytest.raises(sockbus.ConnectError) as e:
        sockbus.connect(path, timeout=1.0)
    msg = str(e.value)
    assert path in msg and "sockbusd --socket" in msg and "\n" not in msg
    assert e.value.endpoint == path
    assert isinstance(e.value, sockbus.ConnectionClosed)
    with pytest.raises(sockbus.ConnectError) as e:
        sockbus.connect("tcp://127.0.0.1:1", timeout=1.0)
    assert "tcp://127.0.0.1:1" in str(e.value)


def test_bad_endpoints():
    with pytest.raises(sockbus.ConnectError):
        sockbus.connect("tcp://nohostport")
    with pytest.raises(sockbus.ConnectError) as e:
        sockbus.connect("/tmp/" + "x" * 200)
    assert "too long" in str(e.value)


def test_broker_that_never_answers(tmpdir_short):
    # A socket that accepts but never says WELCOME: the timeout holds.
    import socket
    path = os.path.join(tmpdir_short, "mute.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen()
    try:
        with pytest.raises(sockbus.ConnectError) as e:
            sockbus.connect(path, timeout=0.3)
        assert "no answer within 0.3 s" in str(e.value)
    finally:
        srv.close()


ACL = {"acl": [{"default": True, "publish": ["ok.>", "_INBOX.>"], "subscribe": ["ok.>"]}]}


@pytest.fixture
def acl_broker(make_broker, tmpdir_short):
    cfg = os.path.join(tmpdir_short, "acl.json")
    with open(cfg, "w") as f:
        json.dump(ACL, f)
    return make_broker(["--config", cfg])


def test_permission_denied(acl_broker):
    with sockbus.connect(acl_broker.socket) as bus:
        allowed = bus.subscribe("ok.>")
        denied = bus.subscribe("secret.>")
        with pytest.raises(sockbus.BrokerError) as e:
            bus.flush()
        assert (e.value.code, e.value.subject) == (4, "secret.>")
        assert "permission denied" in e.value.text and not e.value.fatal
        # the refused subscription says so; the other one works
        with pytest.raises(sockbus.BrokerError) as e:
            denied.next(0)
        assert e.value.code == 4
        bus.publish("secret.x", b"no")
        with pytest.raises(sockbus.BrokerError) as e:
            bus.flush()
        assert (e.value.code, e.value.subject) == (4, "secret.x")
        # a refused request fails at once, not at its timeout
        with pytest.raises(sockbus.BrokerError) as e:
            bus.request("secret.svc", b"", timeout=60)
        assert e.value.code == 4
        # being non-fatal, the request's refusal is also the next flush's
        bus.publish("ok.x", b"yes")
        with pytest.raises(sockbus.BrokerError) as e:
            bus.flush()
        assert e.value.subject == "secret.svc"
        bus.flush()
        assert allowed.next(IO_S).data == b"yes"
        assert bus.state == sockbus.CONNECTED


def test_invalid_subjects_are_refused_before_sending(bus):
    for subject in ("", "a..b", ".a", "a.", "a b", "a.*", "a.>", "a\x01b", "é", "x" * 1025):
        with pytest.raises(sockbus.InvalidSubject):
            bus.publish(subject, b"")
        with pytest.raises(ValueError):  # InvalidSubject is a ValueError too
            bus.request(subject, b"", timeout=1)
    for pattern in ("", "a.>.b", "a*", ">.a", "a..b"):
        with pytest.raises(sockbus.InvalidSubject):
            bus.subscribe(pattern)
    with pytest.raises(sockbus.InvalidSubject):
        bus.subscribe("ok", queue="bad queue")
    with pytest.raises(sockbus.InvalidSubject):
        bus.publish("ok", b"", reply="bad reply")
    bus.flush()  # nothing reached the broker: no error pending
    stats = json.loads(bus.request("$SYS.STATS", timeout=IO_S).data)
    assert stats["msgs_in"] == 1  # this request only


def test_broker_refusals_are_broker_errors(bus):
    bus.publish("$SYS.NOPE", b"")
    with pytest.raises(sockbus.BrokerError) as e:
        bus.flush()
    assert (e.value.code, e.value.subject) == (4, "$SYS.NOPE")
    bus.publish("ok", b"", reply="$SYS.EVENT.CONNECT")
    with pytest.raises(sockbus.BrokerError) as e:
        bus.flush()
    assert e.value.code == 4
    with pytest.raises(sockbus.BrokerError) as e:
        bus.request("$SYS.CLIENTS", b'{"limit":"x"}', timeout=IO_S)
    assert (e.value.code, e.value.subject) == (11, "$SYS.CLIENTS")
    assert "broker error 11 (invalid request)" in str(e.value)


def test_too_large(make_broker):
    b = make_broker(["--max-frame", "4096"])
    with sockbus.connect(b.socket) as bus:
        with pytest.raises(sockbus.MessageTooLarge) as e:
            bus.publish("big", b"x" * 4078)
        assert "4096" in str(e.value)
        with pytest.raises(sockbus.MessageTooLarge):
            bus.publish("big", b"x" * 4000, headers=b"h" * 100)
        with pytest.raises(sockbus.MessageTooLarge):
            bus.request("big", b"x" * 4090, timeout=1)
        with pytest.raises(sockbus.MessageTooLarge):
            bus.publish("big", b"", headers=b"h" * 70000)
        bus.publish("big", b"x" * 4077)  # exactly max_frame
        bus.flush()
        assert bus.state == sockbus.CONNECTED


def test_timeouts(bus):
    sub = bus.subscribe("quiet")
    with pytest.raises(TimeoutError):
        sub.next(0.1)
    with pytest.raises(TimeoutError):
        bus.request("quiet", b"", timeout=0.1)


def test_flush_times_out_on_a_stopped_broker(broker):
    with sockbus.connect(broker.socket) as bus:
        broker.signal(signal.SIGSTOP)
        try:
            with pytest.raises(TimeoutError):
                bus.flush(0.2)
        finally:
            broker.signal(signal.SIGCONT)
        bus.flush(IO_S)


def test_without_reconnect_a_lost_broker_is_final(broker):
    events = []
    bus = sockbus.connect(broker.socket, reconnect=False, on_state=events.append)
    sub = bus.subscribe("x")
    broker.stop()
    with pytest.raises(sockbus.ConnectionClosed) as e:
        sub.next(IO_S)
    assert "broker error 9" in str(e.value) or "closed" in str(e.value)
    assert bus.state == sockbus.CLOSED
    assert [ev.state for ev in events] == [sockbus.CLOSED]
    with pytest.raises(sockbus.ConnectionClosed):
        bus.publish("x", b"")
    with pytest.raises(sockbus.ConnectionClosed):
        bus.request("x", b"", timeout=1)
    bus.close()


def test_untrusted_broker_on_a_default_path(make_broker, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip(f"needs root, to run a broker as another user (uid {os.geteuid()} here)")
    nobody = 65534
    b = make_broker(["--mode", "0666"], start=False, socket_name="sockbus.sock")
    os.chown(b.dir, nobody, nobody)
    b.start(user=nobody)
    monkeypatch.setenv("XDG_RUNTIME_DIR", b.dir)
    with pytest.raises(sockbus.UntrustedBroker) as e:
        sockbus.connect()
    msg = str(e.value)
    assert b.socket in msg and "uid 65534" in msg and "\n" not in msg
    assert (e.value.uid, e.value.pid) == (nobody, b.pid)
    # named explicitly, it is trusted as named
    with sockbus.connect(b.socket) as bus:
        assert bus.broker_uid == nobody
    monkeypatch.setenv("SOCKBUS_SOCKET", b.socket)
    with sockbus.connect() as bus:
        assert bus.broker_uid == nobody
        stats = json.loads(bus.request("$SYS.STATS", timeout=IO_S).data)
        assert stats["connections"] == 1
