"""The blocking client: sockbus.connect() and its Connection and
Subscription.

Nothing runs in the background. A call that waits (Subscription.next(),
flush(), request()) writes what is buffered, then poll()s the socket and
reads whatever arrives, handing messages to the subscriptions they belong
to, until what it waits for is there or its timeout passes. So a
connection is used from one thread at a time (or one per thread); for
concurrency, use sockbus.aio.

Reconnecting happens in the same calls: one that finds the connection
lost dials again once the backoff allows (a waiting call keeps trying
until its timeout; publish() and subscribe() try at most once and
otherwise buffer).
"""

from __future__ import annotations

import math
import select
import time
from typing import Any, Callable, Iterable, Iterator, Optional

from . import _wire
from ._core import (INTEREST_SUBJECT, RECONNECT_BUFFER, SUBSCRIBE_EVENT, SubscriptionBase,
                    _Core, _Sub, check_subject, event_matches, interest_count)
from ._core import deadline as _deadline
from ._types import (CLOSED, CONNECTED, DISCONNECTED, ConnectError, ConnectionClosed, Error, Message,
                     StateChange, SubscriptionEnded)

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLLINPUT = select.POLLIN | select.POLLHUP | select.POLLERR
_pack_u32 = _wire.U32.pack
_monotonic = time.monotonic


class Subscription(SubscriptionBase):
    """Messages on a pattern. Take them with next() or by iterating; end it
    with unsubscribe() (or use it as a context manager)."""

    _conn: "Connection"

    def next(self, timeout: Optional[float] = None) -> Message:
        """The next message, waiting at most `timeout` seconds (None:
        as long as it takes; 0: do not wait). Raises TimeoutError,
        SubscriptionEnded when the subscription has ended and has nothing
        left, BrokerError when the broker refused it, ConnectionClosed
        when the connection is gone for good."""
        msgs = self._sub.msgs
        if msgs:
            return msgs.popleft()
        return self._conn._next(self._sub, timeout)

    def __iter__(self) -> Iterator[Message]:
        """Every message, waiting as long as it takes; ends when the
        subscription ends (unsubscribe(), max_msgs reached, connection
        closed by the application)."""
        sub = self._sub
        msgs = sub.msgs
        pop = msgs.popleft
        conn = self._conn
        while True:
            while msgs:
                yield pop()
            try:
                msg = conn._next(sub, None)
            except SubscriptionEnded:
                return
            yield msg

    def unsubscribe(self, max_msgs: int = 0) -> None:
        """End the subscription now, or (max_msgs > 0) after that many more
        messages. Messages already received stay available to next()."""
        self._conn._unsubscribe(self._sub, max_msgs)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._conn._state != CLOSED:
            self.unsubscribe()


class Connection(_Core):
    """A connection to a sockbusd broker (see connect())."""

    def __init__(self, endpoint: Optional[str] = None, name: Optional[str] = None,
                 echo: bool = True, timeout: Optional[float] = 5.0, *, reconnect: bool = True,
                 reconnect_max: Optional[float] = None, reconnect_buffer: int = RECONNECT_BUFFER,
                 on_state: Optional[Callable[[StateChange], Any]] = None) -> None:
        self._init_core(endpoint, name, echo, timeout, reconnect, reconnect_max, reconnect_buffer,
                        on_state)
        self._poll = select.poll()
        self._polled = -1  # fd registered with _poll
        self._polled_events = 0
        self._flush_epoch = 0
        try:
            self._establish(_deadline(timeout))
        except ConnectError:
            self._shut(None)
            raise
        except (OSError, Error, TimeoutError) as e:
            self._shut(None)
            raise self._connect_error(e) from None

    # ---- connecting -------------------------------------------------------------

    def _establish(self, deadline: Optional[float]) -> None:
        """Dial, check, say HELLO and wait for WELCOME, then replay."""
        sock = self._new_socket()
        try:
            sock.settimeout(None if deadline is None else max(0.001, deadline - _monotonic()))
            sock.connect(self._ep.address)
            self._begin(sock)
        except BaseException:
            sock.close()
            raise
        fd = sock.fileno()
        self._poll.register(fd, _POLLIN)
        self._polled = fd
        self._polled_events = _POLLIN
        while not self._welcomed and self._hs_error is None and self._sock is not None:
            left = None if deadline is None else deadline - _monotonic()
            if left is not None and left <= 0:
                self._abandon()
                raise TimeoutError(f"no WELCOME from {self.endpoint}")
            if self._wait(_POLLIN, left):
                self._read()
        if self._hs_error is not None or not self._welcomed:
            err = self._hs_error or ConnectionClosed(f"the broker at {self.endpoint} closed the "
                                                     f"connection during the handshake")
            self._abandon()
            raise err
        self._resume()

    def _try_reconnect(self) -> bool:
        """One attempt, if the backoff allows it now."""
        if _monotonic() < self._next_attempt:
            return False
        try:
            self._establish(_deadline(self._timeout))
        except (OSError, Error, TimeoutError) as e:
            self._attempt_failed(e)
            return False
        return True

    def _unwatch(self) -> None:
        if self._polled >= 0:
            self._poll.unregister(self._polled)
            self._polled = -1

    def _flushes_lost(self, err: BaseException) -> None:
        self._flush_epoch += 1

    # ---- waiting ---------------------------------------------------------------

    def _wait(self, events: int, timeout: Optional[float]) -> int:
        """poll() the socket; the events that came (0: timeout)."""
        if events != self._polled_events:
            self._poll.modify(self._polled, events)
            self._polled_events = events
        ms = -1 if timeout is None else max(0, math.ceil(timeout * 1000))
        ready = self._poll.poll(ms)
        return ready[0][1] if ready else 0

    def _pump(self, done: Callable[[], Any], deadline: Optional[float]) -> bool:
        """Do I/O until done() is true (True) or the deadline passes
        (False); reconnects on the way. Raises ConnectionClosed once the
        connection is closed for good."""
        while True:
            if done():
                return True
            state = self._state
            if state == CLOSED:
                raise self._closed()
            if state == DISCONNECTED:
                if self._try_reconnect() or self._state == CLOSED:
                    continue
                now = _monotonic()
                wake = self._next_attempt
                if deadline is not None:
                    if now >= deadline:
                        return False
                    wake = min(wake, deadline)
                time.sleep(max(0.0, wake - now))  # the backoff, bounded by the deadline
                continue
            if len(self._wbuf) > self._woff:
                self._write_some()
                if self._sock is None:
                    continue
            left = None if deadline is None else deadline - _monotonic()
            events = _POLLIN | _POLLOUT if len(self._wbuf) > self._woff else _POLLIN
            revents = self._wait(events, left)
            if revents & _POLLOUT:
                self._write_some()
            if revents & _POLLINPUT and self._sock is not None:
                self._read()
            elif not revents and left is not None and left <= 0:
                return bool(done())

    def _write_out(self) -> None:
        """Write everything buffered, waiting for the socket and reading
        meanwhile (a broker stops reading a client that leaves its own
        replies unread, so a writer that never read could wait for ever)."""
        while not self._write_some():
            revents = self._wait(_POLLIN | _POLLOUT, None)
            if revents & _POLLINPUT:
                self._read()
            if self._sock is None:
                return

    def _connected(self) -> bool:
        return self._state == CONNECTED

    def _await_connection(self, deadline: Optional[float], what: str) -> None:
        if self._state != CONNECTED and not self._pump(self._connected, deadline):
            raise TimeoutError(f"cannot {what}: the connection to {self.endpoint} is lost and "
                               f"did not come back in time")

    def _next(self, sub: _Sub, timeout: Optional[float]) -> Message:
        msgs = sub.msgs
        if not msgs and not sub.ended:
            self._pump(lambda: msgs or sub.ended, _deadline(timeout))
        if msgs:
            return msgs.popleft()
        if sub.ended:
            raise self._ended(sub)
        raise TimeoutError(f"no message on {sub.pattern!r} within {timeout} s")

    # ---- the API ---------------------------------------------------------------

    def publish(self, subject: str, data: Any = b"", reply: Optional[str] = None,
                headers: Optional[bytes] = None, retain: bool = False, fds: Iterable[Any] = ()) -> None:
        """Publish `data` (bytes; a str is sent as UTF-8) on `subject`.
        `reply`: a reply subject for the receivers; `headers`: an opaque
        block passed on verbatim; `retain`: also store it as the subject's
        last value (empty data deletes it); `fds`: file descriptors (ints
        or objects with fileno()) to pass along, over a Unix socket (the
        caller keeps its own). Buffered: it leaves with the next batch
        (flush() to wait until the broker has it). While the connection is
        lost it waits in the reconnect buffer. Raises InvalidSubject,
        MessageTooLarge, ConnectionClosed."""
        if data.__class__ is bytes and reply is None and headers is None and not retain and not fds:
            entry = self._prefixes.get(subject)
            if entry is not None:
                size = entry[1] + len(data)
                if size <= self.max_frame and self._wlimit:
                    w = self._wbuf
                    w += _pack_u32(size)
                    w += entry[0]
                    w += data
                    if len(w) >= self._wlimit:
                        self._write_out()
                    return
        self._publish_slow(subject, data, reply, headers, retain, fds)

    def _publish_slow(self, subject: str, data: Any, reply: Optional[str], headers: Any,
                      retain: bool, fds: Any) -> None:
        self._check_open()
        if self._state == DISCONNECTED:
            self._try_reconnect()
        size = self._encode_pub(subject, data, reply, headers, retain, fds)
        if self._held_while_lost(subject, size):
            return
        if len(self._wbuf) >= self._wlimit or self._wfds:
            self._write_out()

    def subscribe(self, pattern: str, queue: Optional[str] = None, sender: bool = False,
                  lossless: bool = False) -> Subscription:
        """Subscribe to `pattern` ('*' one token, '>' last for the rest),
        in queue group `queue` if given (each message goes to one member).
        `sender`: messages carry who sent them (Message.sender);
        `lossless`: the broker never drops for it, it slows the publishers
        instead. The broker's answer is not awaited: a refusal is raised by
        the next flush() and by this subscription's next()."""
        if self._state == DISCONNECTED:
            self._try_reconnect()
        return Subscription(self, self._new_sub(pattern, queue, sender, lossless))

    def flush(self, timeout: Optional[float] = 5.0) -> None:
        """Write everything buffered and wait until the broker has
        processed it (a PING/PONG barrier): every publish before it has
        been routed to its subscribers. Raises the first BrokerError the
        broker sent since the last flush (a refused publish or
        subscription), TimeoutError, or ConnectionClosed when the
        connection was lost before the broker confirmed (what was sent may
        be lost; the connection itself reconnects)."""
        deadline = _deadline(timeout)
        self._check_open()
        self._await_connection(deadline, "flush")
        token = self._ping()
        epoch = self._flush_epoch
        done = self._pump(lambda: self._flush_epoch != epoch or self._pong_received(token),
                          deadline)
        if self._flush_epoch != epoch:
            raise ConnectionClosed(f"lost the connection to {self.endpoint} before the broker "
                                   f"confirmed the flush; what was published before it may be "
                                   f"lost")
        if not done:
            raise TimeoutError(f"the broker at {self.endpoint} did not confirm the flush within "
                               f"{timeout} s")
        self._take_pending_error()

    def request(self, subject: str, data: Any = b"", timeout: Optional[float] = 5.0,
                headers: Optional[bytes] = None) -> Message:
        """Publish a request on `subject` and wait for the first reply.
        Raises NoResponders at once when nobody subscribes to `subject`,
        TimeoutError, BrokerError when the broker refused it,
        ConnectionClosed when the connection was lost meanwhile."""
        deadline = _deadline(timeout)
        self._check_open()
        self._await_connection(deadline, f"send a request on {subject!r}")
        req = self._new_request(subject, data, headers)
        try:
            self._pump(lambda: req.done, deadline)
        finally:
            self._requests.pop(req.token, None)
        if not req.done:
            raise TimeoutError(f"no reply to the request on {subject!r} within {timeout} s")
        if req.error is not None:
            raise req.error
        return req.reply  # type: ignore[return-value]

    def interest(self, subject: str, timeout: Optional[float] = 5.0) -> int:
        """How many subscriptions a publish on `subject` would reach now
        ($SYS.INTEREST): each matching plain subscription once, each
        matching queue group once. Raises InvalidSubject for a pattern,
        TimeoutError, BrokerError when the broker refused the question."""
        check_subject(subject)
        return interest_count(self.request(INTEREST_SUBJECT, subject.encode(), timeout=timeout))

    def wait_for_interest(self, subject: str, timeout: Optional[float] = None) -> None:
        """Return as soon as a publish on `subject` would reach at least one
        subscription, now or later (as `sockbus wait`): between starting a
        service and using it. Subscribes to $SYS.EVENT.SUBSCRIBE first,
        then asks $SYS.INTEREST, so that nothing made in between is missed.
        Raises TimeoutError after `timeout` seconds (None: no limit)."""
        deadline = _deadline(timeout)
        check_subject(subject)
        with self.subscribe(SUBSCRIBE_EVENT) as events:
            self.flush(5.0 if deadline is None else max(0.0, deadline - _monotonic()))
            left = None if deadline is None else max(0.0, deadline - _monotonic())
            if self.interest(subject, 5.0 if left is None else left) > 0:
                return
            while True:
                left = None if deadline is None else max(0.0, deadline - _monotonic())
                try:
                    event = events.next(left)
                except TimeoutError:
                    raise TimeoutError(f"nobody subscribed to {subject!r} within {timeout} s") \
                        from None
                if event_matches(event, subject):
                    return

    def close(self) -> None:
        """Write what is buffered (waiting at most the connection's timeout
        for the socket) and close. Subscriptions end; their messages
        already received can still be taken."""
        if self._state == CLOSED:
            return
        if self._state == CONNECTED and self._sock is not None:
            deadline = _deadline(self._timeout)
            while not self._write_some() and self._sock is not None:
                left = None if deadline is None else deadline - _monotonic()
                if left is not None and left <= 0:
                    break
                if self._wait(_POLLIN | _POLLOUT, left) & _POLLINPUT:
                    self._read()
        self._shut(None)

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._sock is not None:
                self._sock.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<sockbus.Connection {self.endpoint} {self._state} client_id={self.client_id}>"


def connect(endpoint: Optional[str] = None, name: Optional[str] = None, echo: bool = True,
            timeout: Optional[float] = 5.0, *, reconnect: bool = True,
            reconnect_max: Optional[float] = None, reconnect_buffer: int = RECONNECT_BUFFER,
            on_state: Optional[Callable[[StateChange], Any]] = None) -> Connection:
    """Connect to a broker and say HELLO; returns a Connection (also a
    context manager that closes it).

    endpoint: a socket path, "unix://PATH" or "tcp://HOST:PORT"; None:
    $SOCKBUS_SOCKET, else $XDG_RUNTIME_DIR/sockbus.sock, else
    /tmp/sockbus-<uid>.sock. On those last two, the default paths, a
    broker run by another user (neither us nor root) is refused
    (UntrustedBroker); an endpoint named here or in $SOCKBUS_SOCKET is
    trusted as named.
    name: shown by the broker ($SYS.CLIENTS). echo: receive our own
    publishes. timeout: seconds for connecting and the handshake (None:
    no limit).
    reconnect: when the broker goes away, reconnect with a backoff (10 ms
    doubling to 1 s, with jitter), replay the subscriptions and send what
    was published meanwhile (up to reconnect_buffer bytes);
    reconnect_max: give up after this many seconds without a broker
    (None: never). on_state: called with a StateChange on DISCONNECTED,
    RECONNECTED and CLOSED (after a loss).

    Raises ConnectError (UntrustedBroker) when no broker can be reached."""
    return Connection(endpoint, name, echo, timeout, reconnect=reconnect,
                      reconnect_max=reconnect_max, reconnect_buffer=reconnect_buffer,
                      on_state=on_state)
