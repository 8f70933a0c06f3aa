"""What only a Unix socket carries, against a real broker: who sent a
message (the meta block) and file descriptors, through the Python client
and interoperating with raw sockets (socket.send_fds / recv_fds)."""

import os
import socket
import struct

import sockbus
from conftest import IO_S

HEADER = struct.Struct("<IBBHHHI")
PUB, MSG, HELLO, WELCOME, PING, PONG = 0x10, 0x20, 0x01, 0x02, 0x30, 0x31
PUB_FDS, SUB_SENDER, MSG_META = 0x02, 0x01, 0x04


def test_the_sender_is_the_kernels_word(broker):
    with sockbus.connect(broker.socket) as sub, sockbus.connect(broker.socket) as pub:
        who = sub.subscribe("who.>", sender=True)
        plain = sub.subscribe("who.>")
        sub.flush()
        pub.publish("who.x", b"hi", headers=b"h:1")
        pub.flush()
        m = who.next(IO_S)
        assert (m.data, m.headers) == (b"hi", b"h:1")
        assert m.sender == sockbus.Sender(pid=os.getpid(), uid=os.getuid(), gid=os.getgid(),
                                          client_id=pub.client_id)
        m = plain.next(IO_S)
        assert (m.data, m.sender) == (b"hi", None)


def test_the_brokers_own_answers_carry_the_broker(broker):
    with sockbus.connect(broker.socket) as bus:
        sub = bus.subscribe("answer.>", sender=True)
        bus.publish("$SYS.STATS", b"", reply="answer.stats")
        m = sub.next(IO_S)
        assert m.sender.pid == broker.pid and m.sender.client_id == 0


def test_fds_go_to_every_unix_subscriber(broker):
    with sockbus.connect(broker.socket) as a, sockbus.connect(broker.socket) as b, \
            sockbus.connect(broker.socket) as pub:
        subs = [a.subscribe("fd.x"), b.subscribe("fd.x", sender=True)]
        a.flush()
        b.flush()
        r, w = os.pipe()
        try:
            pub.publish("fd.x", b"a pipe", fds=[w])
            pub.flush()
            for sub in subs:
                m = sub.next(IO_S)
                assert m.data == b"a pipe" and len(m.fds) == 1
                assert os.fstat(m.fds[0]).st_ino == os.fstat(w).st_ino
                os.write(m.fds[0], b"!")
                assert os.read(r, 1) == b"!"
                os.close(m.fds[0])  # the application's to close
        finally:
            os.close(r)
            os.close(w)


def _raw_hello(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    hello = b'{"protocol":1}'
    s.sendall(HEADER.pack(16 + len(hello), HELLO, 0, 0, 0, 0, 0) + hello)
    head = s.recv(16, socket.MSG_WAITALL)
    size, op = HEADER.unpack(head)[:2]
    assert op == WELCOME
    s.recv(size - 16, socket.MSG_WAITALL)
    return s


def test_raw_send_fds_reaches_the_python_client(broker):
    """socket.send_fds() with a PUB frame, as the protocol says: the
    descriptors ride on the frame's first byte."""
    with sockbus.connect(broker.socket) as bus:
        sub = bus.subscribe("raw.fd")
        bus.flush()
        raw = _raw_hello(broker.socket)
        with open(__file__, "rb") as f:
            body = b"raw.fd" + b"x"
            frame = HEADER.pack(16 + len(body), PUB, PUB_FDS, 6, 0, 0, 1) + body
            socket.send_fds(raw, [frame], [f.fileno()])
            m = sub.next(IO_S)
            assert len(m.fds) == 1
            assert os.fstat(m.fds[0]).st_ino == os.fstat(f.fileno()).st_ino
            os.close(m.fds[0])
        raw.close()


def test_python_fds_reach_a_raw_recv_fds(broker):
    """A raw subscriber with SENDER reads the MSG with socket.recv_fds():
    the meta block says nfds, and the descriptors come with the MSG."""
    raw = _raw_hello(broker.socket)
    raw.sendall(HEADER.pack(16 + 5, 0x11, SUB_SENDER, 5, 0, 0, 9) + b"raw.x")
    raw.sendall(HEADER.pack(16, PING, 0, 0, 0, 0, 1))
    assert HEADER.unpack(raw.recv(16, socket.MSG_WAITALL))[1] == PONG
    with sockbus.connect(broker.socket) as pub:
        r, w = os.pipe()
        try:
            pub.publish("raw.x", b"data", fds=[r, w])
            pub.flush()
            data, fds, _flags, _addr = socket.recv_fds(raw, 4096, 4)
            size, op, flags, sl, rl, hl, sid = HEADER.unpack_from(data)
            assert (op, sid, size, len(data)) == (MSG, 9, 16 + 5 + 32 + 4, size)
            assert flags & MSG_META
            client_id, pid, uid, gid, transport, _z, nfds, _r = struct.unpack_from(
                "<QIIIBBHQ", data, 16 + sl)
            assert (client_id, pid, uid, transport, nfds) == (pub.client_id, os.getpid(),
                                                               os.getuid(), 1, 2)
            assert data[16 + sl + 32:] == b"data"
            assert len(fds) == 2
            assert [os.fstat(fd).st_ino for fd in fds] == [os.fstat(r).st_ino, os.fstat(w).st_ino]
            for fd in fds:
                os.close(fd)
        finally:
            os.close(r)
            os.close(w)
    raw.close()
