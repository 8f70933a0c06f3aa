"""The connection state both clients share: buffers, framing, routing of
what arrives, subscriptions, requests, and what survives a lost broker.

Output: frames are appended to one bytearray, `_wbuf`, and leave in
batches: when it passes `_wlimit`, on flush(), and before any call waits
for input (the blocking client), or once per event-loop iteration (the
asyncio client). Bytes before `_woff` have been written; the buffer is
cleared when all of it is written, so a frame is never copied twice.
Publishes on a subject already seen reuse the encoded header tail of
that subject (`_prefixes`): a publish is three bytearray appends.

Input: one preallocated bytearray, `_rbuf`, read into with recv_into()
(recvmsg_into() on a Unix socket, where descriptors may come along).
`_parse()` walks the complete frames with struct.unpack_from() and turns
each MSG into a Message, appended to its subscription's deque; control
frames (PONG, ERR, DROPPED, WELCOME) update the state. Then the unused
tail is moved to the front only when the free space runs low.

Losing the broker (end of file, a reset, a fatal ERR): the publishes that
were not written in full are kept (they go out after the replay), the
other frames dropped, requests and flushes in flight fail with
ConnectionClosed, and the connection is DISCONNECTED until a reconnect
says HELLO again and replays every live subscription (`_resume()`). The
flavours decide when to dial and how to wait; this class never blocks.
"""

from __future__ import annotations

import collections
import json
import os
import random
import socket
import struct
import time
from array import array
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from . import _wire
from ._types import (CLOSED, CONNECTED, DISCONNECTED, RECONNECTED, BrokerError, ConnectError,
                     ConnectionClosed, Error, InvalidSubject, Message, MessageTooLarge, NoResponders,
                     Sender, StateChange, SubscriptionEnded, UntrustedBroker)

_HEADER = _wire.HEADER
_unpack_header = _HEADER.unpack_from
_pack_u32 = _wire.U32.pack
_OP_MSG = _wire.OP_MSG
_MSG_META = _wire.MSG_META
_MSG_NO_RESPONDERS = _wire.MSG_NO_RESPONDERS
# A Message made without calling its __init__: the hot loop of _parse()
# sets every slot itself, which costs about half as much per message.
_new_message = object.__new__

# Output is written once this much is buffered.
WBUF_FLUSH = 64 * 1024
# Read buffer; it grows to hold the largest frame seen.
RBUF_SIZE = 256 * 1024
# Read into the buffer only when at least this much is free at its end.
RBUF_MIN_FREE = 64 * 1024
# Publishes buffered while disconnected, by default.
RECONNECT_BUFFER = 8 * 1024 * 1024
# Reconnect backoff: from 10 ms doubling to 1 s, with jitter.
BACKOFF_MIN = 0.010
BACKOFF_MAX = 1.0
# Cached encoded subjects, forgotten all at once past this many.
PREFIX_CACHE_MAX = 4096
# Room for the descriptors that can come with one read: the broker sends
# at most 253 per message, a reader holds at most twice its limit.
_ANCILLARY_SIZE = socket.CMSG_SPACE(4 * 2 * _wire.FDS_MAX)


def _serial_ge(a: int, b: int) -> bool:
    """a >= b for 32-bit tokens that wrap."""
    return ((a - b) & 0xFFFFFFFF) < 0x80000000


def deadline(timeout: Optional[float]) -> Optional[float]:
    """The monotonic time a wait of `timeout` seconds ends (None: never)."""
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def check_subject(subject: str) -> None:
    """Raise InvalidSubject unless `subject` is a subject (not a pattern)."""
    if not _wire.subject_valid(subject):
        raise InvalidSubject(f"invalid subject {subject!r}")


class _Sub:
    """A live subscription as the connection sees it: what to replay, and
    the messages that have arrived for it and not been taken."""

    __slots__ = ("sid", "pattern", "queue", "flags", "max_msgs", "received", "msgs", "ended",
                 "error", "confirm", "waiter")

    def __init__(self, sid: int, pattern: str, queue: Optional[str], flags: int) -> None:
        self.sid = sid
        self.pattern = pattern
        self.queue = queue
        self.flags = flags
        self.max_msgs = 0  # auto-unsubscribe after this many (0: never)
        self.received = 0
        self.msgs: Deque[Message] = collections.deque()
        self.ended = False
        self.error: Optional[BaseException] = None
        # The token of the first PING after the SUB: a PONG for it means
        # the broker accepted the SUB (an ERR for it comes before).
        self.confirm = 0
        self.waiter: Any = None  # asyncio: a future to wake


class SubscriptionBase:
    """What the blocking and asyncio Subscription share: the view of a
    _Sub. The flavours add how to wait for its messages."""

    _KIND = "Subscription"

    def __init__(self, conn: Any, sub: _Sub) -> None:
        self._conn = conn
        self._sub = sub

    @property
    def sid(self) -> int:
        """The subscription id, as in Message.sid."""
        return self._sub.sid

    @property
    def pattern(self) -> str:
        return self._sub.pattern

    @property
    def queue(self) -> Optional[str]:
        """The queue group, or None."""
        return self._sub.queue

    @property
    def pending(self) -> int:
        """Messages received and not yet taken."""
        return len(self._sub.msgs)

    def __repr__(self) -> str:
        return f"<{self._KIND} sid={self.sid} pattern={self.pattern!r} queue={self.queue!r}>"


class _Request:
    __slots__ = ("token", "subject", "reply", "error", "done", "waiter")

    def __init__(self, token: int, subject: str) -> None:
        self.token = token
        self.subject = subject
        self.reply: Optional[Message] = None
        self.error: Optional[BaseException] = None
        self.done = False
        self.waiter: Any = None


class _Core:
    """State and framing shared by sockbus.Connection and
    sockbus.aio.Connection."""

    def _init_core(self, endpoint: Optional[str], name: Optional[str], echo: bool,
                   timeout: Optional[float], reconnect: bool, reconnect_max: Optional[float],
                   reconnect_buffer: int, on_state: Optional[Callable[[StateChange], Any]]) -> None:
        try:
            self._ep = _wire.resolve_endpoint(endpoint)
        except ValueError as e:
            raise ConnectError(f"cannot use endpoint: {e}", endpoint or "") from None
        self._name = name
        self._echo = echo
        self._timeout = timeout
        self._reconnect = reconnect
        self._reconnect_max = reconnect_max
        self._reconnect_buffer = reconnect_buffer
        self._on_state = on_state

        self._sock: Optional[socket.socket] = None
        self._state = CONNECTED
        self._closed_error: Optional[BaseException] = None
        self._welcomed = False
        self._hs_error: Optional[BaseException] = None
        self.broker_pid: Optional[int] = None
        self.broker_uid: Optional[int] = None
        self.client_id = 0
        self.max_frame = _wire.MAX_FRAME_DEFAULT
        self.max_pending = 0
        self.server_version = ""
        self.inbox_prefix = ""

        self._wbuf = bytearray()
        self._woff = 0
        self._wlimit = WBUF_FLUSH
        self._wfds: List[List[Any]] = []  # [offset in _wbuf, fds] of PUBs with descriptors
        self._prefixes: Dict[str, Tuple[bytes, int]] = {}

        self._rbuf = bytearray(RBUF_SIZE)
        self._rview = memoryview(self._rbuf)
        self._rhead = 0
        self._rtail = 0
        self._rfds: Deque[int] = collections.deque()

        self._subs: Dict[int, _Sub] = {}
        self._next_sid = 1
        self._inbox_sid = 0
        self._requests: Dict[int, _Request] = {}
        self._next_token = 0
        self._ping_sent = 0
        self._pong_seen = 0
        self._pending_error: Optional[BrokerError] = None
        self._dropped = 0

        self._lost_at: Optional[float] = None  # time.time() of the loss
        self._lost_mono = 0.0
        self._backoff = BACKOFF_MIN
        self._next_attempt = 0.0

    # ---- what the application may read -------------------------------------

    @property
    def endpoint(self) -> str:
        """The endpoint: a socket path, or tcp://HOST:PORT."""
        return self._ep.text

    @property
    def state(self) -> str:
        """CONNECTED, DISCONNECTED (waiting to reconnect) or CLOSED."""
        return self._state

    def max_payload(self, subject: str, reply: Optional[str] = None,
                    headers: Optional[bytes] = None) -> int:
        """The largest payload a publish with these subject, reply and
        headers may carry on this connection (0 if they alone do not fit)."""
        used = _wire.HEADER_SIZE + len(subject.encode()) + len((reply or "").encode()) + len(
            headers or b"")
        return max(0, self.max_frame - used)

    def take_dropped(self) -> int:
        """How many messages the broker dropped for this connection (it was
        too slow to read them) since the last call; resets the count."""
        n = self._dropped
        self._dropped = 0
        return n

    # ---- encoding -----------------------------------------------------------

    def _prefix(self, subject: str) -> Tuple[bytes, int]:
        """The cached header tail (everything after `size`) of a PUB on
        `subject` with no reply, headers or flags, and its size before the
        payload."""
        entry = self._prefixes.get(subject)
        if entry is None:
            if not _wire.subject_valid(subject):
                raise InvalidSubject(f"cannot publish on {subject!r}: not a valid subject "
                                     f"(dot-separated tokens of printable ASCII, no spaces or "
                                     f"wildcards, at most {_wire.SUBJECT_MAX} bytes)")
            raw = subject.encode("ascii")
            if len(self._prefixes) >= PREFIX_CACHE_MAX:
                self._prefixes.clear()
            head = _HEADER.pack(0, _wire.OP_PUB, 0, len(raw), 0, 0, 0)
            entry = (head[4:] + raw, _wire.HEADER_SIZE + len(raw))
            self._prefixes[subject] = entry
        return entry

    def _encode_pub(self, subject: str, data: Any, reply: Optional[str], headers: Any,
                    retain: bool, fds: Any) -> int:
        """Append a PUB to the output; returns its size. Validates
        everything first: on an error nothing is appended."""
        if data.__class__ is not bytes:
            data = data.encode() if isinstance(data, str) else memoryview(data).cast("B")
        if reply is None and not headers and not retain and not fds:
            tail, base = self._prefix(subject)
            size = base + len(data)
            self._check_size(size, subject)
            w = self._wbuf
            w += _pack_u32(size)
            w += tail
            w += data
            return size
        if not _wire.subject_valid(subject):
            self._prefix(subject)  # raises the error
        raw_reply = b""
        if reply is not None and reply != "":
            if not _wire.subject_valid(reply):
                raise InvalidSubject(f"cannot publish on {subject!r} with reply subject "
                                     f"{reply!r}: not a valid subject")
            raw_reply = reply.encode("ascii")
        raw_headers = bytes(headers) if headers else b""
        if len(raw_headers) > 0xFFFF:
            raise MessageTooLarge(f"cannot publish on {subject!r}: {len(raw_headers)} bytes of "
                                  f"headers, the format allows at most 65535")
        flags = _wire.PUB_RETAIN if retain else 0
        nfds = 0
        if fds:
            fds = [f if isinstance(f, int) else f.fileno() for f in fds]
            nfds = len(fds)
            if self._ep.kind != "unix":
                raise ValueError(f"cannot publish on {subject!r} with file descriptors: they "
                                 f"travel over a Unix socket only, not {self.endpoint}")
            if retain:
                raise ValueError(f"cannot publish on {subject!r}: a retained message cannot "
                                 f"carry file descriptors")
            if nfds > _wire.FDS_MAX:
                raise ValueError(f"cannot publish on {subject!r}: {nfds} file descriptors, at "
                                 f"most {_wire.FDS_MAX} travel with one message")
            flags |= _wire.PUB_FDS
        raw_subject = subject.encode("ascii")
        size = _wire.HEADER_SIZE + len(raw_subject) + len(raw_reply) + len(raw_headers) + len(data)
        self._check_size(size, subject)
        if nfds:
            # The descriptors go with the sendmsg() whose data begins with
            # this frame's first byte; keep duplicates, so the caller may
            # close its own at once.
            self._wfds.append([len(self._wbuf), [os.dup(f) for f in fds]])
        w = self._wbuf
        w += _HEADER.pack(size, _wire.OP_PUB, flags, len(raw_subject), len(raw_reply),
                          len(raw_headers), nfds)
        w += raw_subject
        w += raw_reply
        w += raw_headers
        w += data
        return size

    def _check_size(self, size: int, subject: str) -> None:
        if size > self.max_frame:
            raise MessageTooLarge(f"cannot publish on {subject!r}: the frame would be {size} bytes, "
                                  f"more than the broker's max_frame of {self.max_frame} (see "
                                  f"max_payload())")

    def _unpublish(self, size: int) -> None:
        """Take back the frame just appended (the reconnect buffer is full)."""
        del self._wbuf[len(self._wbuf) - size:]
        if self._wfds and self._wfds[-1][0] == len(self._wbuf):
            for fd in self._wfds.pop()[1]:
                os.close(fd)

    def _new_sub(self, pattern: str, queue: Optional[str], sender: bool, lossless: bool) -> _Sub:
        if not _wire.pattern_valid(pattern):
            raise InvalidSubject(f"cannot subscribe to {pattern!r}: not a valid pattern (tokens "
                                 f"of printable ASCII separated by dots; '*' for one token, '>' "
                                 f"last for the rest)")
        if queue is not None and queue != "" and not _wire.subject_valid(queue):
            raise InvalidSubject(f"cannot subscribe to {pattern!r} in queue group {queue!r}: "
                                 f"not a valid queue group name (the subject rules)")
        self._check_open()
        sid = self._next_sid
        self._next_sid += 1
        flags = (_wire.SUB_SENDER if sender else 0) | (_wire.SUB_LOSSLESS if lossless else 0)
        sub = _Sub(sid, pattern, queue or None, flags)
        self._subs[sid] = sub
        if self._sock is not None:
            self._send_sub(sub, self._wbuf)
        return sub

    def _send_sub(self, sub: _Sub, out: bytearray) -> None:
        queue = (sub.queue or "").encode("ascii")
        out += _wire.encode(_wire.OP_SUB, sub.flags, sub.sid, sub.pattern.encode("ascii"), queue)
        if sub.max_msgs:
            out += _wire.encode(_wire.OP_UNSUB, 0, sub.sid,
                                payload=_pack_u32(sub.max_msgs - sub.received))
        sub.confirm = (self._ping_sent + 1) & 0xFFFFFFFF or 1

    def _end_sub(self, sub: _Sub, max_msgs: int = 0) -> None:
        """Unsubscribe now (max_msgs 0) or after max_msgs more messages."""
        if sub.ended:
            return
        if max_msgs > 0:
            sub.max_msgs = sub.received + max_msgs
        if self._sock is not None:
            self._wbuf += _wire.encode(_wire.OP_UNSUB, 0, sub.sid,
                                       payload=_pack_u32(max_msgs) if max_msgs > 0 else b"")
        if max_msgs <= 0:
            self._finish_sub(sub)

    def _finish_sub(self, sub: _Sub, error: Optional[BaseException] = None) -> None:
        sub.ended = True
        if error is not None and sub.error is None:
            sub.error = error
        self._subs.pop(sub.sid, None)
        self._sub_ended(sub)

    def _ping(self) -> int:
        token = (self._ping_sent + 1) & 0xFFFFFFFF or 1
        self._ping_sent = token
        self._wbuf += _HEADER.pack(16, _wire.OP_PING, 0, 0, 0, 0, token)
        return token

    def _pong_received(self, token: int) -> bool:
        return _serial_ge(self._pong_seen, token)

    def _new_request(self, subject: str, data: Any, headers: Any) -> _Request:
        """Publish a request with a reply subject in our inbox; the caller
        waits for req.done."""
        if self._inbox_sid == 0:
            if not self.inbox_prefix:
                raise ConnectionClosed(f"the broker at {self.endpoint} gave no inbox prefix")
            sub = _Sub(self._next_sid, self.inbox_prefix + ">", None, 0)
            self._next_sid += 1
            self._send_sub(sub, self._wbuf)
            self._inbox_sid = sub.sid
        self._next_token = (self._next_token + 1) & 0xFFFFFFFF or 1
        req = _Request(self._next_token, subject)
        self._encode_pub(subject, data, self.inbox_prefix + str(req.token), headers, False, ())
        self._requests[req.token] = req
        return req

    def _unsubscribe(self, sub: _Sub, max_msgs: int) -> None:
        if self._state == CLOSED or sub.ended:
            return
        self._end_sub(sub, max_msgs)

    @staticmethod
    def _ended(sub: _Sub) -> BaseException:
        """What a wait on a subscription that has ended and has nothing
        left raises."""
        if sub.error is not None:
            return sub.error
        return SubscriptionEnded(f"the subscription to {sub.pattern!r} has ended")

    def _held_while_lost(self, subject: str, size: int) -> bool:
        """After a publish of `size` bytes was encoded: True when the
        connection is lost and the publish waits in the reconnect buffer;
        raises ConnectionClosed (and takes it back) when that is full."""
        if self._state == CONNECTED:
            return False
        if len(self._wbuf) > self._reconnect_buffer:
            self._unpublish(size)
            raise ConnectionClosed(f"cannot publish on {subject!r}: the connection to "
                                   f"{self.endpoint} is lost and the reconnect buffer "
                                   f"({self._reconnect_buffer} bytes) is full")
        return True

    def _check_open(self) -> None:
        if self._state == CLOSED:
            raise self._closed()

    def _closed(self) -> ConnectionClosed:
        err = self._closed_error
        if isinstance(err, ConnectionClosed):
            return err
        e = ConnectionClosed(f"the connection to {self.endpoint} is closed" +
                             (f": {err}" if err is not None else ""))
        e.__cause__ = err
        return e

    # ---- the handshake --------------------------------------------------------

    def _new_socket(self) -> socket.socket:
        if self._ep.kind == "tcp":
            host, port = self._ep.address
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        return sock

    def _connect_error(self, err: BaseException) -> ConnectError:
        """One line: what failed, on which endpoint, what to try."""
        where = self.endpoint
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        if isinstance(err, BrokerError):
            e = ConnectError(f"the broker at {where} refused the connection: {err.text} "
                             f"({_wire.ERROR_NAMES.get(err.code, 'error')})", where)
        elif isinstance(err, TimeoutError) or isinstance(err, socket.timeout):
            e = ConnectError(f"cannot connect to {where}: no answer within {self._timeout} s; is "
                             f"the broker overloaded or stopped?", where)
        elif self._ep.kind == "tcp":
            host, port = self._ep.address
            e = ConnectError(f"cannot connect to {where}: {why}; is sockbusd listening there? "
                             f"start it with 'sockbusd --tcp {host}:{port}'", where)
        elif not self._ep.check:
            e = ConnectError(f"cannot connect to {where}: {why}; is sockbusd running? start it "
                             f"with 'sockbusd --socket {where}' (or pass another endpoint)", where)
        else:
            e = ConnectError(f"cannot connect to {where}: {why}; is sockbusd running? start it "
                             f"with 'sockbusd' (or pass endpoint= / set SOCKBUS_SOCKET)", where)
        e.__cause__ = err
        return e

    def _check_broker(self, sock: socket.socket) -> None:
        """Learn who serves a Unix socket (SO_PEERCRED) and, on a default
        path, refuse a broker that is neither us nor root: anyone who can
        write to the directory (anyone, in /tmp) may have bound it first.
        Runs before anything is sent."""
        if self._ep.kind != "unix":
            self.broker_pid = self.broker_uid = None
            return
        try:
            pid, uid, _gid = struct.unpack("3i", sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        except OSError:
            if self._ep.check:
                raise
            return
        self.broker_pid, self.broker_uid = pid, uid
        if not self._ep.check or uid in (0, os.getuid(), os.geteuid()):
            return
        path = self.endpoint
        raise UntrustedBroker(
            f"refusing the broker at {path}: its socket is served by uid {uid} (pid {pid}), not "
            f"by you (uid {os.getuid()}) or root, so another user may be posing as your broker; "
            f"if you trust it, name it explicitly (SOCKBUS_SOCKET={path}, or endpoint=), "
            f"otherwise start your own on a private socket (with XDG_RUNTIME_DIR set)", path, uid,
            pid)

    def _hello(self) -> bytes:
        hello: Dict[str, Any] = {"protocol": _wire.PROTOCOL_VERSION}
        if self._name is not None:
            hello["name"] = self._name
        hello["echo"] = bool(self._echo)
        return _wire.encode(_wire.OP_HELLO, payload=json.dumps(hello).encode())

    def _begin(self, sock: socket.socket) -> None:
        """A new connected socket: check who serves it, send HELLO. The
        flavour then waits until `_welcomed` or `_hs_error`."""
        self._check_broker(sock)
        sock.setblocking(False)
        self._sock = sock
        self._welcomed = False
        self._hs_error = None
        self._rhead = self._rtail = 0
        self._rfds.clear()
        hello = self._hello()
        # A new socket's buffer takes the small HELLO at once.
        if sock.send(hello) != len(hello):
            raise ConnectionClosed(f"cannot send HELLO to {self.endpoint}")

    def _abandon(self) -> None:
        """A handshake that failed: close its socket."""
        if self._sock is not None:
            self._unwatch()
            self._sock.close()
            self._sock = None
        self._close_rfds()

    def _resume(self) -> None:
        """WELCOME has arrived: replay every live subscription (its sid,
        pattern, queue group, flags and remaining auto-unsubscribe count),
        then what was published meanwhile."""
        replay = bytearray()
        for sub in self._subs.values():
            self._send_sub(sub, replay)
        if replay:
            for entry in self._wfds:
                entry[0] += len(replay)
            replay += self._wbuf
            self._wbuf = replay
        self._woff = 0
        if self.max_frame < self._largest_pub():
            self._drop_oversized()
        self._wlimit = WBUF_FLUSH
        was_lost = self._state == DISCONNECTED
        self._state = CONNECTED
        self._backoff = BACKOFF_MIN
        if was_lost:
            self._report(RECONNECTED, None, time.time())

    def _on_welcome(self, payload: bytes) -> None:
        if self._welcomed:
            return  # only the first one counts
        try:
            w = json.loads(payload)
        except ValueError:
            w = None
        if not isinstance(w, dict):
            self._hs_error = ConnectionClosed(f"the broker at {self.endpoint} sent a malformed "
                                              f"WELCOME")
            return
        self.client_id = int(w.get("client_id", 0))
        mf = w.get("max_frame")
        if isinstance(mf, int) and _wire.HEADER_SIZE <= mf <= 0xFFFFFFFF:
            self.max_frame = mf
        self.max_pending = int(w.get("max_pending", 0) or 0)
        self.server_version = str(w.get("version", ""))
        self.inbox_prefix = str(w.get("inbox_prefix", ""))
        self._welcomed = True

    # ---- output -------------------------------------------------------------

    def _has_output(self) -> bool:
        return len(self._wbuf) > self._woff

    def _write_some(self) -> bool:
        """Write what the socket takes now; True when nothing is left.
        A lost connection is handled (`_lost`) and counts as written."""
        sock = self._sock
        w = self._wbuf
        while self._woff < len(w):
            start = self._woff
            try:
                if self._wfds:
                    n = self._send_with_fds(sock, start)
                elif start == 0:
                    n = sock.send(w, socket.MSG_NOSIGNAL)
                else:
                    n = sock.send(memoryview(w)[start:], socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as e:
                self._lost(e)
                return True
            self._woff = start + n
        w.clear()
        self._woff = 0
        return True

    def _send_with_fds(self, sock: Any, start: int) -> int:
        first = self._wfds[0]
        if first[0] == start:
            # The frame that carries descriptors starts here: send them with
            # its first bytes, up to the next such frame.
            end = self._wfds[1][0] if len(self._wfds) > 1 else len(self._wbuf)
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", first[1]).tobytes())]
            n = sock.sendmsg([memoryview(self._wbuf)[start:end]], anc, socket.MSG_NOSIGNAL)
            self._wfds.pop(0)
            for fd in first[1]:
                os.close(fd)  # the kernel holds its own references now
            return n
        return sock.send(memoryview(self._wbuf)[start:first[0]], socket.MSG_NOSIGNAL)

    def _frames(self, buf: bytearray):
        """(offset, size, op) of each whole frame in an output buffer."""
        pos = 0
        end = len(buf)
        while end - pos >= _wire.HEADER_SIZE:
            size, op = _HEADER.unpack_from(buf, pos)[:2]
            yield pos, size, op
            pos += size

    def _largest_pub(self) -> int:
        return max((size for _o, size, op in self._frames(self._wbuf) if op == _wire.OP_PUB),
                   default=0)

    def _drop_oversized(self) -> None:
        """The broker came back with a smaller max_frame: publishes that no
        longer fit are dropped (they would be a fatal error), and the next
        flush() says so."""
        self._keep_frames(lambda off, size, op: op != _wire.OP_PUB or size <= self.max_frame)
        if self._pending_error is None:
            self._pending_error = BrokerError(_wire.ERR_TOO_LARGE, "",
                                              f"publishes larger than the new max_frame "
                                              f"({self.max_frame}) were dropped on reconnect")

    def _keep_frames(self, keep: Callable[[int, int, int], bool]) -> None:
        out = bytearray()
        fds_at = {entry[0]: entry[1] for entry in self._wfds}
        new_fds: List[List[Any]] = []
        for off, size, op in self._frames(self._wbuf):
            fds = fds_at.pop(off, None)
            if keep(off, size, op):
                if fds is not None:
                    new_fds.append([len(out), fds])
                out += self._wbuf[off:off + size]
            elif fds is not None:
                for fd in fds:
                    os.close(fd)
        for fds in fds_at.values():
            for fd in fds:
                os.close(fd)
        self._wbuf = out
        self._wfds = new_fds
        self._woff = 0

    # ---- input --------------------------------------------------------------

    def _read(self) -> int:
        """Read what the socket has, without blocking, and handle every
        complete frame. Returns the bytes read (0: nothing there, -1: the
        connection was lost)."""
        cap = len(self._rbuf)
        if cap - self._rtail < RBUF_MIN_FREE:
            self._make_room()
            cap = len(self._rbuf)
        sock = self._sock
        try:
            if self._ep.kind == "unix":
                n, anc, mflags, _ = sock.recvmsg_into([self._rview[self._rtail:]],
                                                      _ANCILLARY_SIZE, socket.MSG_CMSG_CLOEXEC)
                if anc:
                    self._take_fds(anc, mflags)
            else:
                n = sock.recv_into(self._rview[self._rtail:])
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as e:
            self._lost(e)
            return -1
        if n == 0:
            self._lost(ConnectionClosed(f"the broker at {self.endpoint} closed the connection"))
            return -1
        self._rtail += n
        self._parse()
        return n

    def _make_room(self) -> None:
        """Move the unhandled bytes to the front, and grow the buffer when
        the frame being received does not fit."""
        head, tail = self._rhead, self._rtail
        need = tail - head + RBUF_MIN_FREE
        if tail - head >= 4:
            need = max(need, _wire.U32.unpack_from(self._rbuf, head)[0] + RBUF_MIN_FREE)
        if need > len(self._rbuf):
            self._rview.release()
            grown = bytearray(max(need, 2 * len(self._rbuf)))
            grown[:tail - head] = self._rbuf[head:tail]
            self._rbuf = grown
            self._rview = memoryview(grown)
        elif head > 0:
            self._rbuf[:tail - head] = self._rbuf[head:tail]
        self._rhead = 0
        self._rtail = tail - head

    def _take_fds(self, anc: list, mflags: int) -> None:
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array("i")
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
                self._rfds.extend(fds)
        if mflags & socket.MSG_CTRUNC or len(self._rfds) > 4 * _wire.FDS_MAX:
            self._close_rfds()
            self._lost(ConnectionClosed(f"the broker at {self.endpoint} sent more file "
                                        f"descriptors than a message may carry"))

    def _close_rfds(self) -> None:
        while self._rfds:
            try:
                os.close(self._rfds.popleft())
            except OSError:
                pass

    def _protocol_error(self, what: str) -> None:
        self._lost(ConnectionClosed(f"the broker at {self.endpoint} broke the protocol: {what}"),
                   reconnect=False)

    def _parse(self) -> None:
        """Handle every complete frame in the read buffer. The hot loop:
        one unpack_from() per frame, MSGs go straight to their deque.
        A Message without a meta block is filled in here slot by slot
        (every slot of Message: test_message.py checks that none is left out)."""
        buf = self._rbuf
        pos = self._rhead
        end = self._rtail
        subs = self._subs
        inbox = self._inbox_sid
        limit = self.max_frame + _wire.META_SIZE
        unpack = _unpack_header
        while end - pos >= 16:
            size, op, flags, sl, rl, hl, sid = unpack(buf, pos)
            if size > end - pos:
                if size > limit:
                    self._protocol_error(f"a frame of {size} bytes, over max_frame")
                    return
                break
            nxt = pos + size
            if size < 16 or sl + rl + hl > size - 16:
                self._protocol_error("a frame whose lengths overrun it")
                return
            if op == _OP_MSG:
                p = pos + 16
                subject = buf[p:p + sl].decode("latin-1")
                p += sl
                reply = buf[p:p + rl].decode("latin-1") if rl else None
                p += rl
                if hl:
                    headers = bytes(buf[p:p + hl])
                    p += hl
                else:
                    headers = b""
                if flags & _MSG_META:
                    sender, fds = self._meta(buf, p, nxt)
                    p += 32
                    msg = Message(subject, bytes(buf[p:nxt]), reply, headers, sid, flags, sender,
                                  fds)
                else:
                    msg = _new_message(Message)
                    msg.subject = subject
                    msg.data = bytes(buf[p:nxt])
                    msg.reply = reply
                    msg.headers = headers
                    msg.sid = sid
                    msg.flags = flags
                    msg.sender = None
                    msg.fds = ()
                sub = subs.get(sid)
                if sub is not None and sid != inbox:
                    sub.msgs.append(msg)
                    if sub.max_msgs:
                        sub.received += 1
                        if sub.received >= sub.max_msgs:
                            self._finish_sub(sub)
                elif sid == inbox or flags & _MSG_NO_RESPONDERS:
                    self._reply(msg)
                else:
                    self._close_fds(msg.fds)  # a subscription ended meanwhile
            elif op == _wire.OP_PONG:
                self._pong_seen = sid
                self._pong()
            elif op == _wire.OP_DROPPED:
                if size - 16 - sl - rl - hl >= 8:
                    self._dropped += _wire.U64.unpack_from(buf, pos + 16 + sl + rl + hl)[0]
            elif op == _wire.OP_ERR:
                p = pos + 16
                self._rhead = nxt
                self._on_err(sid, bytes(buf[p:p + sl]), bytes(buf[p + sl + rl + hl:nxt]))
                if self._sock is None or self._rhead != nxt:
                    return  # a fatal error closed the connection
                subs = self._subs
            elif op == _wire.OP_WELCOME:
                self._on_welcome(bytes(buf[pos + 16 + sl + rl + hl:nxt]))
                inbox = self._inbox_sid
            pos = nxt
        if pos == end:
            self._rhead = self._rtail = 0
        else:
            self._rhead = pos

    def _meta(self, buf: bytearray, p: int, end: int) -> Tuple[Optional[Sender], Tuple[int, ...]]:
        if end - p < _wire.META_SIZE:
            return None, ()
        client_id, pid, uid, gid, _transport, _z, nfds, _r = _wire.META.unpack_from(buf, p)
        fds: Tuple[int, ...] = ()
        if nfds:
            take = min(nfds, len(self._rfds))
            fds = tuple(self._rfds.popleft() for _ in range(take))
        return Sender(pid, uid, gid, client_id), fds

    @staticmethod
    def _close_fds(fds: Tuple[int, ...]) -> None:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def _reply(self, msg: Message) -> None:
        """A message on our inbox: the reply to one request in flight."""
        prefix = self.inbox_prefix
        req = None
        if prefix and msg.subject.startswith(prefix):
            token = msg.subject[len(prefix):]
            if token.isdigit():
                req = self._requests.get(int(token))
        if req is None or req.done:
            self._close_fds(msg.fds)  # late (timed out) or not ours
            return
        if msg.flags & _MSG_NO_RESPONDERS:
            req.error = NoResponders(req.subject)
        else:
            req.reply = msg
        req.done = True
        self._request_done(req)

    def _on_err(self, code: int, subject: bytes, text: bytes) -> None:
        subj = subject[:_wire.SUBJECT_MAX].decode("utf-8", "replace")
        err = BrokerError(code, subj, _wire.escape(text[:255]))
        if not self._welcomed:
            # Any ERR before WELCOME ends the handshake.
            self._hs_error = err
            return
        if code in _wire.FATAL_CODES:
            self._lost(err, reconnect=code in _wire.RECONNECTABLE_CODES)
            return
        # An ERR naming a request in flight fails it now (the oldest).
        for req in self._requests.values():
            if not req.done and req.subject == subj:
                req.error = err
                req.done = True
                self._request_done(req)
                break
        # One naming the pattern of a subscription the broker has not yet
        # confirmed is that subscription's refusal.
        if b"subscribe" in text:
            for sub in list(self._subs.values()):
                if sub.pattern == subj and not self._pong_received(sub.confirm):
                    self._finish_sub(sub, err)
                    break
        if self._pending_error is None:
            self._pending_error = err

    def _take_pending_error(self) -> None:
        err = self._pending_error
        if err is not None:
            self._pending_error = None
            raise err

    # ---- losing the broker and getting it back ---------------------------------

    def _lost(self, err: BaseException, reconnect: bool = True) -> None:
        """The connection is gone. Keep the publishes not written in full,
        fail requests and flushes in flight, and wait to reconnect (or
        close, when reconnecting is off or pointless)."""
        if self._sock is None:
            return
        if not self._welcomed:
            # A handshake in progress: its caller decides.
            if self._hs_error is None:
                self._hs_error = err
            self._abandon()
            return
        self._abandon()
        self._lost_at = time.time()
        self._lost_mono = time.monotonic()
        self._welcomed = False
        woff = self._woff
        self._keep_frames(lambda off, size, op: op == _wire.OP_PUB and off + size > woff)
        self._inbox_sid = 0
        lost = ConnectionClosed(f"lost the connection to {self.endpoint}: {err}")
        lost.__cause__ = err
        for req in self._requests.values():
            if not req.done:
                req.error = lost
                req.done = True
                self._request_done(req)
        self._flushes_lost(lost)
        if self._reconnect and reconnect:
            self._state = DISCONNECTED
            self._wlimit = 0  # every publish takes the slow path now
            self._next_attempt = self._lost_mono + self._jitter()
            self._report(DISCONNECTED, self._lost_at, None, err)
            self._disconnected()
        else:
            self._shut(err)

    def _jitter(self) -> float:
        delay = self._backoff * random.uniform(0.5, 1.0)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        return delay

    def _attempt_failed(self, err: BaseException) -> None:
        """A reconnect attempt failed: wait longer, or give up."""
        self._abandon()
        now = time.monotonic()
        if isinstance(err, BrokerError) and err.code not in (_wire.ERR_LIMIT, _wire.ERR_SHUTDOWN,
                                                             _wire.ERR_HELLO_REQUIRED):
            self._shut(err)  # it will refuse us again: protocol or version
        elif self._reconnect_max is not None and now - self._lost_mono >= self._reconnect_max:
            e = ConnectionClosed(f"lost the connection to {self.endpoint} and could not "
                                 f"reconnect within {self._reconnect_max} s: {err}")
            e.__cause__ = err
            self._shut(e)
        else:
            self._next_attempt = now + self._jitter()

    def _give_up_at(self) -> Optional[float]:
        if self._reconnect_max is None:
            return None
        return self._lost_mono + self._reconnect_max

    def _shut(self, err: Optional[BaseException]) -> None:
        """Closed for good: everything waiting learns it."""
        if self._state == CLOSED:
            return
        self._abandon()
        self._state = CLOSED
        self._closed_error = err
        self._wlimit = 0
        for fds in [entry[1] for entry in self._wfds]:
            self._close_fds(tuple(fds))
        self._wfds = []
        closed = self._closed()
        for req in self._requests.values():
            if not req.done:
                req.error = closed
                req.done = True
                self._request_done(req)
        self._flushes_lost(closed)
        for sub in list(self._subs.values()):
            self._finish_sub(sub, closed if err is not None else None)
        if err is not None:
            self._report(CLOSED, self._lost_at, None, err)

    def _report(self, state: str, lost_at: Optional[float], back_at: Optional[float],
                err: Optional[BaseException] = None) -> None:
        if self._on_state is not None:
            self._on_state(StateChange(state, lost_at if lost_at is not None else self._lost_at,
                                       back_at, err))

    # ---- what the flavours fill in ---------------------------------------------

    def _unwatch(self) -> None:
        """Stop watching the socket (asyncio)."""

    def _disconnected(self) -> None:
        """The connection was lost and will be retried."""

    def _request_done(self, req: _Request) -> None:
        """A request has its answer or error."""

    def _pong(self) -> None:
        """A PONG arrived."""

    def _flushes_lost(self, err: BaseException) -> None:
        """Flushes in flight will never see their PONG."""

    def _sub_ended(self, sub: _Sub) -> None:
        """A subscription ended (its waiter may need waking)."""


# ---- who listens (docs/protocol.md, Who listens) --------------------------------

INTEREST_SUBJECT = "$SYS.INTEREST"
SUBSCRIBE_EVENT = "$SYS.EVENT.SUBSCRIBE"


def interest_count(reply: Message) -> int:
    """The count of a $SYS.INTEREST answer."""
    try:
        n = json.loads(reply.data)["subscriptions"]
    except (ValueError, KeyError, TypeError):
        n = None
    if not isinstance(n, int) or isinstance(n, bool):
        raise Error(f"the broker answered {INTEREST_SUBJECT} with no count: {reply.data[:80]!r}")
    return n


def event_matches(event: Message, subject: str) -> bool:
    """Does the subscription a $SYS.EVENT.SUBSCRIBE announces reach
    `subject`?"""
    try:
        pattern = json.loads(event.data)["pattern"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(pattern, str) and _wire.pattern_match(pattern, subject)
