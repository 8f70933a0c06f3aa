"""The client side of the format, without a broker: subject rules, the
endpoint rule, escaping, and, against a scripted peer on a Unix socket,
what sockbusd does not do yet (sender credentials, lossless
subscriptions, file descriptors): the SUB flags, the FDS publish with its
SCM_RIGHTS, the META block of a MSG and the descriptors that come with it."""

import array
import json
import os
import socket
import struct
import threading

import pytest

import sockbus
from sockbus import _wire
from conftest import IO_S

HDR = struct.Struct("<IBBHHHI")


def test_subject_rules():
    for ok in ("a", "a.b", "sensors.kitchen.temp", "$SYS.STATS", "_INBOX.1.2", "a-b_c~!", "x" * 1024):
        assert sockbus.subject_valid(ok), ok
    for bad in ("", ".", "a.", ".a", "a..b", "a b", "a*", "a.*", "a.>", "a\tb", "é", "x" * 1025,
                None, b"a"):
        assert not sockbus.subject_valid(bad), bad
    for ok in ("*", ">", "a.*", "a.>", "*.x", "a.*.c.>", "$SYS.>"):
        assert sockbus.pattern_valid(ok), ok
    for bad in ("", "a.>.b", ">.a", "a*", "a.b*", "a..b", "a. b"):
        assert not sockbus.pattern_valid(bad), bad


@pytest.mark.parametrize("pattern,subject,match", [
    ("a.b", "a.b", True), ("a.b", "a", False), ("a.b", "a.b.c", False),
    ("a.*", "a.b", True), ("a.*", "a.$b", True), ("a.*", "a.b.c", False),
    ("a.>", "a.b", True), ("a.>", "a.b.c", True), ("a.>", "a", False),
    ("*.x", "a.x", True), ("*.x", "$X.x", False), (">", "a.b.c", True),
    (">", "$SYS.STATS", False), ("$SYS.>", "$SYS.STATS", True), ("$SYS.>", "SYS.STATS", False),
])
def test_pattern_match_table(pattern, subject, match):
    # the table of docs/protocol.md, "Subjects and patterns"
    assert sockbus.pattern_match(pattern, subject) is match


def test_endpoint_rule(monkeypatch):
    monkeypatch.delenv("SOCKBUS_SOCKET", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    ep = _wire.resolve_endpoint()
    assert ep == ("unix", f"/tmp/sockbus-{os.getuid()}.sock", f"/tmp/sockbus-{os.getuid()}.sock",
                  True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "")  # empty counts as unset
    assert _wire.resolve_endpoint().address == f"/tmp/sockbus-{os.getuid()}.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/7")
    assert _wire.resolve_endpoint() == ("unix", "/run/user/7/sockbus.sock",
                                        "/run/user/7/sockbus.sock", True)
    monkeypatch.setenv("SOCKBUS_SOCKET", "/srv/bus.sock")
    assert _wire.resolve_endpoint() == ("unix", "/srv/bus.sock", "/srv/bus.sock", False)
    assert _wire.resolve_endpoint("unix:///x/y.sock") == ("unix", "/x/y.sock", "/x/y.sock", False)
    assert _wire.resolve_endpoint("tcp://127.0.0.1:7447").address == ("127.0.0.1", 7447)
    assert _wire.resolve_endpoint("tcp://[::1]:7447").address == ("::1", 7447)
    for bad in ("tcp://::1:7447", "tcp://host", "tcp://:80", "tcp://h:0", "tcp://h:99999",
                "unix://", "/" + "x" * 108):
        with pytest.raises(ValueError):
            _wire.resolve_endpoint(bad)
    assert sockbus.SYSTEM_SOCKET == "/run/sockbus/sockbus.sock"


def test_escape():
    assert _wire.escape(b"plain text") == "plain text"
    assert _wire.escape("héllo".encode()) == "héllo"
    assert _wire.escape(b"a\n\xff\\b\x7f") == "a\\x0a\\xff\\x5cb\\x7f"
    assert _wire.escape("\u0085".encode()) == "\\xc2\\x85"


class Peer:
    """A scripted broker on a Unix socket: it welcomes one client, then
    the test reads its frames and writes to it."""

    def __init__(self, directory, max_frame=1114112):
        self.path = os.path.join(directory, "peer.sock")
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen()
        self.srv.settimeout(IO_S)
        self.conn = None
        self.fds = []
        self.max_frame = max_frame
        self.thread = threading.Thread(target=self._welcome)
        self.thread.start()

    def _welcome(self):
        self.conn, _ = self.srv.accept()
        self.conn.settimeout(IO_S)
        op, flags, sid, parts = self.frame()
        assert op == _wire.OP_HELLO and json.loads(parts[3])["protocol"] == 1
        w = json.dumps({"protocol": 1, "server": "peer", "version": "0", "client_id": 9,
                        "max_frame": self.max_frame, "inbox_prefix": "_INBOX.9."}).encode()
        self.conn.sendall(_wire.encode(_wire.OP_WELCOME, payload=w))

    def ready(self):
        self.thread.join(IO_S)

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            data, anc, _flags, _addr = self.conn.recvmsg(n - len(buf), socket.CMSG_SPACE(64 * 4))
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(raw[:len(raw) - len(raw) % 4])
                    self.fds.extend(a)
            assert data, "the client closed"
            buf += data
        return buf

    def frame(self):
        hdr = self._recv(16)
        size, op, flags, sl, rl, hl, sid = HDR.unpack(hdr)
        body = self._recv(size - 16)
        parts = (body[:sl], body[sl:sl + rl], body[sl + rl:sl + rl + hl], body[sl + rl + hl:])
        return op, flags, sid, parts

    def close(self):
        for fd in self.fds:
            os.close(fd)
        if self.conn is not None:
            self.conn.close()
        self.srv.close()


@pytest.fixture
def peer(tmpdir_short):
    p = Peer(tmpdir_short)
    yield p
    p.close()


def test_subscription_flags(peer):
    with sockbus.connect(peer.path, reconnect=False) as bus:
        peer.ready()
        plain = bus.subscribe("a")
        both = bus.subscribe("b.>", queue="g", sender=True, lossless=True)
        bus._write_out()
        assert peer.frame() == (_wire.OP_SUB, 0, plain.sid, (b"a", b"", b"", b""))
        assert peer.frame() == (_wire.OP_SUB, 0x03, both.sid, (b"b.>", b"g", b"", b""))
        bus.subscribe("c", sender=True)
        bus._write_out()
        assert peer.frame()[:2] == (_wire.OP_SUB, 0x01)


def test_publish_with_file_descriptors(peer, tmp_path):
    f = open(tmp_path / "shared.txt", "w+")
    r, w = os.pipe()
    try:
        with sockbus.connect(peer.path, reconnect=False) as bus:
            peer.ready()
            bus.publish("before", b"0")
            bus.publish("with.fds", b"payload", fds=[f, r])
            bus.publish("after", b"1")
            bus._write_out()
            assert peer.frame() == (_wire.OP_PUB, 0, 0, (b"before", b"", b"", b"0"))
            # flag FDS, sid = their count, the descriptors with its bytes
            assert peer.frame() == (_wire.OP_PUB, _wire.PUB_FDS, 2,
                                    (b"with.fds", b"", b"", b"payload"))
            assert len(peer.fds) == 2
            assert os.fstat(peer.fds[0]).st_ino == os.fstat(f.fileno()).st_ino
            assert os.fstat(peer.fds[1]).st_ino == os.fstat(r).st_ino
            assert peer.frame() == (_wire.OP_PUB, 0, 0, (b"after", b"", b"", b"1"))
            with pytest.raises(ValueError):
                bus.publish("x", b"", fds=[r], retain=True)
            with pytest.raises(ValueError):
                bus.publish("x", b"", fds=[r] * 254)
        # the caller keeps its own descriptors
        os.fstat(r)
    finally:
        f.close()
        os.close(r)
        os.close(w)


def test_message_with_meta_block_and_descriptors(peer, tmp_path):
    path = tmp_path / "passed.txt"
    path.write_text("through the bus")
    with sockbus.connect(peer.path, reconnect=False) as bus:
        peer.ready()
        sub = bus.subscribe("m.>", sender=True)
        bus._write_out()
        peer.frame()
        meta = _wire.META.pack(77, 4242, 1000, 100, 1, 0, 1, 0)
        body = b"m.x" + b"hdr" + meta + b"data"
        msg = HDR.pack(16 + len(body), _wire.OP_MSG, _wire.MSG_META, 3, 0, 3, sub.sid) + body
        fd = os.open(path, os.O_RDONLY)
        peer.conn.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                   array.array("i", [fd]).tobytes())])
        os.close(fd)
        plain = HDR.pack(16 + 5, _wire.OP_MSG, 0, 3, 0, 0, sub.sid) + b"m.y" + b"ok"
        peer.conn.sendall(plain)
        m = sub.next(IO_S)
        assert (m.subject, m.headers, m.data) == ("m.x", b"hdr", b"data")
        assert m.sender == sockbus.Sender(pid=4242, uid=1000, gid=100, client_id=77)
        assert len(m.fds) == 1
        with os.fdopen(m.fds[0]) as passed:  # the message's descriptor is ours
            assert passed.read() == "through the bus"
        m2 = sub.next(IO_S)
        assert (m2.data, m2.sender, m2.fds) == (b"ok", None, ())


def test_a_peer_that_breaks_the_format_is_left(tmpdir_short):
    peer = Peer(tmpdir_short, max_frame=4096)
    try:
        with sockbus.connect(peer.path, reconnect=True) as bus:
            peer.ready()
            sub = bus.subscribe("x")
            peer.conn.sendall(HDR.pack(1 << 20, _wire.OP_MSG, 0, 0, 0, 0, 1))
            with pytest.raises(sockbus.ConnectionClosed) as e:
                sub.next(IO_S)
            assert "broke the protocol" in str(e.value)
            assert bus.state == sockbus.CLOSED  # no point in reconnecting
    finally:
        peer.close()
