"""sockbus for asyncio: the names of the blocking client, awaitable.

    import sockbus.aio
    async with sockbus.aio.connect() as bus:
        sub = await bus.subscribe("demo.>")
        await bus.publish("demo.x", b"hi")
        async for msg in sub:
            ...

The socket is watched with the loop's add_reader(): whatever arrives is
read at once and handed to the subscriptions it belongs to, waking the
tasks that wait for them. Output is batched as in the blocking client: a
publish appends to one buffer, which is written once per loop iteration
(call_soon), or at once when it passes the threshold, then publish()
waits until the socket takes it (backpressure). Reconnecting runs as a
task of its own; the tasks waiting on subscriptions keep waiting across
it. A connection belongs to the loop that made it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Iterable, List, Optional, Set

from . import _wire
from ._core import (INTEREST_SUBJECT, RECONNECT_BUFFER, SUBSCRIBE_EVENT, SubscriptionBase,
                    _Core, _Request, _Sub, check_subject, event_matches, interest_count)
from ._core import deadline as _deadline
from ._types import (CLOSED, CONNECTED, DISCONNECTED, RECONNECTED, BrokerError, ConnectError,
                     ConnectionClosed, Error, InvalidSubject, Message, MessageTooLarge,
                     NoResponders, Sender, StateChange, SubscriptionEnded, UntrustedBroker)

__all__ = [
    "connect", "Connection", "Subscription", "Message", "Sender", "StateChange", "Error",
    "BrokerError", "NoResponders", "ConnectionClosed", "ConnectError", "UntrustedBroker",
    "InvalidSubject", "MessageTooLarge", "SubscriptionEnded", "CONNECTED", "DISCONNECTED",
    "RECONNECTED", "CLOSED",
]

_pack_u32 = _wire.U32.pack
_monotonic = time.monotonic


def _left(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else deadline - _monotonic()


# What a timed-out wait leaves in its future.
_EXPIRED = object()


def _expire(fut: "asyncio.Future[Any]") -> None:
    if not fut.done():
        fut.set_result(_EXPIRED)


async def _wait(fut: "asyncio.Future[Any]", deadline: Optional[float]) -> bool:
    """Wait for a future until the deadline; False on timeout. A plain
    future gets a timer that completes it with _EXPIRED: unlike
    asyncio.wait_for(), that wakes the waiting task in the iteration that
    completes the future, not one later (a request's round trip)."""
    if deadline is None or fut.done():
        await fut
        return True
    left = deadline - _monotonic()
    if left <= 0:
        return False
    if isinstance(fut, asyncio.Task):
        try:
            await asyncio.wait_for(fut, left)
        except asyncio.TimeoutError:
            return False
        return True
    timer = fut.get_loop().call_later(left, _expire, fut)
    try:
        await fut
    finally:
        timer.cancel()
    return fut.result() is not _EXPIRED


class Subscription(SubscriptionBase):
    """Messages on a pattern: `await sub.next(timeout)` or `async for`."""

    _KIND = "aio.Subscription"
    _conn: "Connection"

    async def next(self, timeout: Optional[float] = None) -> Message:
        """The next message, waiting at most `timeout` seconds (None: as
        long as it takes). Raises as sockbus.Subscription.next()."""
        msgs = self._sub.msgs
        if msgs:
            return msgs.popleft()
        return await self._conn._next(self._sub, timeout)

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Message:
        msgs = self._sub.msgs
        if msgs:
            return msgs.popleft()
        try:
            return await self._conn._next(self._sub, None)
        except SubscriptionEnded:
            raise StopAsyncIteration from None

    async def unsubscribe(self, max_msgs: int = 0) -> None:
        """End the subscription now, or after max_msgs more messages."""
        self._conn._unsubscribe(self._sub, max_msgs)

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._conn._state != CLOSED:
            await self.unsubscribe()


class Connection(_Core):
    """A connection to a sockbusd broker, for asyncio (see connect())."""

    def __init__(self, endpoint: Optional[str] = None, name: Optional[str] = None,
                 echo: bool = True, timeout: Optional[float] = 5.0, *, reconnect: bool = True,
                 reconnect_max: Optional[float] = None, reconnect_buffer: int = RECONNECT_BUFFER,
                 on_state: Optional[Callable[[StateChange], Any]] = None) -> None:
        self._init_core(endpoint, name, echo, timeout, reconnect, reconnect_max, reconnect_buffer,
                        on_state)
        self._loop = asyncio.get_running_loop()
        self._fd = -1
        self._writing = False  # the writer callback is armed
        self._write_soon = False  # a write is scheduled for this iteration
        self._waiting: Set[_Sub] = set()
        self._drains: List["asyncio.Future[Any]"] = []
        self._flushes: List[Any] = []  # [token, future]
        self._hs_future: Optional["asyncio.Future[Any]"] = None
        self._up = asyncio.Event()
        self._reconnector: Optional["asyncio.Task[Any]"] = None

    async def _start(self) -> None:
        try:
            await self._establish(_deadline(self._timeout))
        except ConnectError:
            self._shut(None)
            raise
        except (OSError, Error, TimeoutError, asyncio.TimeoutError) as e:
            self._shut(None)
            if isinstance(e, asyncio.TimeoutError):
                e = TimeoutError("no answer")
            raise self._connect_error(e) from None

    # ---- connecting -------------------------------------------------------------

    async def _establish(self, deadline: Optional[float]) -> None:
        sock = self._new_socket()
        sock.setblocking(False)
        try:
            await asyncio.wait_for(self._loop.sock_connect(sock, self._ep.address),
                                   _left(deadline))
            self._begin(sock)
        except BaseException:
            sock.close()
            raise
        self._fd = sock.fileno()
        self._hs_future = self._loop.create_future()
        self._loop.add_reader(self._fd, self._on_readable)
        try:
            answered = await _wait(self._hs_future, deadline)
        finally:
            self._hs_future = None
        if not answered or self._hs_error is not None or not self._welcomed:
            err = self._hs_error or (ConnectionClosed(
                f"the broker at {self.endpoint} closed the connection during the handshake")
                if answered else TimeoutError(f"no WELCOME from {self.endpoint}"))
            self._abandon()
            raise err
        self._resume()
        self._up.set()
        self._kick()

    def _unwatch(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._fd = -1
        self._writing = False
        self._wake_drains()

    def _disconnected(self) -> None:
        self._up.clear()
        self._reconnector = self._loop.create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        while self._state == DISCONNECTED:
            await asyncio.sleep(max(0.0, self._next_attempt - _monotonic()))
            if self._state != DISCONNECTED:
                return
            try:
                await self._establish(_deadline(self._timeout))
            except (OSError, Error, TimeoutError, asyncio.TimeoutError) as e:
                self._attempt_failed(e)

    # ---- events from the loop -----------------------------------------------------

    def _on_readable(self) -> None:
        if self._sock is None:
            return
        self._read()
        if self._hs_future is not None:
            if (self._welcomed or self._hs_error is not None or self._sock is None) and \
                    not self._hs_future.done():
                self._hs_future.set_result(None)
            return
        if self._waiting:
            for sub in self._waiting:
                if (sub.msgs or sub.ended) and not sub.waiter.done():
                    sub.waiter.set_result(None)

    def _kick(self) -> None:
        """Write at the end of this loop iteration, so that everything
        published meanwhile goes out in one write."""
        if not self._write_soon and not self._writing:
            self._write_soon = True
            self._loop.call_soon(self._write_now)

    def _write_now(self) -> None:
        self._write_soon = False
        if self._sock is None or self._state != CONNECTED:
            return
        if not self._write_some() and self._sock is not None and not self._writing:
            self._writing = True
            self._loop.add_writer(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        if self._write_some() and self._fd >= 0:
            self._loop.remove_writer(self._fd)
            self._writing = False
            self._wake_drains()

    def _wake_drains(self) -> None:
        drains, self._drains = self._drains, []
        for fut in drains:
            if not fut.done():
                fut.set_result(None)

    async def _drain(self) -> None:
        """Write now; if the socket is full, wait until it has taken
        everything (backpressure on the publisher)."""
        while self._state == CONNECTED and self._sock is not None and not self._write_some():
            if not self._writing:
                self._writing = True
                self._loop.add_writer(self._fd, self._on_writable)
            fut = self._loop.create_future()
            self._drains.append(fut)
            await fut

    def _request_done(self, req: _Request) -> None:
        if req.waiter is not None and not req.waiter.done():
            req.waiter.set_result(None)

    def _pong(self) -> None:
        keep = []
        for entry in self._flushes:
            if self._pong_received(entry[0]):
                if not entry[1].done():
                    entry[1].set_result(True)
            else:
                keep.append(entry)
        self._flushes = keep

    def _flushes_lost(self, err: BaseException) -> None:
        flushes, self._flushes = self._flushes, []
        for _token, fut in flushes:
            if not fut.done():
                fut.set_result(False)

    def _sub_ended(self, sub: _Sub) -> None:
        if sub.waiter is not None and not sub.waiter.done():
            sub.waiter.set_result(None)

    def _shut(self, err: Optional[BaseException]) -> None:
        super()._shut(err)
        self._up.set()  # wake whoever waits for the connection: it is closed
        if self._reconnector is not None and self._reconnector is not asyncio.current_task():
            self._reconnector.cancel()

    async def _await_connection(self, deadline: Optional[float], what: str) -> None:
        if self._state == CONNECTED:
            return
        self._check_open()
        if not await _wait(self._loop.create_task(self._up.wait()), deadline):
            raise TimeoutError(f"cannot {what}: the connection to {self.endpoint} is lost and "
                               f"did not come back in time")
        self._check_open()

    async def _next(self, sub: _Sub, timeout: Optional[float]) -> Message:
        deadline = _deadline(timeout)
        msgs = sub.msgs
        while not msgs:
            if sub.ended:
                raise self._ended(sub)
            fut = self._loop.create_future()
            sub.waiter = fut
            self._waiting.add(sub)
            try:
                if not await _wait(fut, deadline):
                    raise TimeoutError(f"no message on {sub.pattern!r} within {timeout} s")
            finally:
                sub.waiter = None
                self._waiting.discard(sub)
        return msgs.popleft()

    # ---- the API ---------------------------------------------------------------

    async def publish(self, subject: str, data: Any = b"", reply: Optional[str] = None,
                      headers: Optional[bytes] = None, retain: bool = False,
                      fds: Iterable[Any] = ()) -> None:
        """As sockbus.Connection.publish(). Returns once the message is
        buffered; waits only when the buffer is full and the socket does not
        take more."""
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
                        await self._drain()
                    elif not self._write_soon:
                        self._kick()
                    return
        self._check_open()
        size = self._encode_pub(subject, data, reply, headers, retain, fds)
        if self._held_while_lost(subject, size):
            return
        if len(self._wbuf) >= self._wlimit:
            await self._drain()
        else:
            self._kick()

    async def subscribe(self, pattern: str, queue: Optional[str] = None, sender: bool = False,
                        lossless: bool = False) -> Subscription:
        """As sockbus.Connection.subscribe()."""
        sub = Subscription(self, self._new_sub(pattern, queue, sender, lossless))
        self._kick()
        return sub

    def _unsubscribe(self, sub: _Sub, max_msgs: int) -> None:
        if self._state == CLOSED or sub.ended:
            return
        super()._unsubscribe(sub, max_msgs)
        self._kick()

    async def flush(self, timeout: Optional[float] = 5.0) -> None:
        """As sockbus.Connection.flush()."""
        deadline = _deadline(timeout)
        self._check_open()
        await self._await_connection(deadline, "flush")
        token = self._ping()
        fut = self._loop.create_future()
        self._flushes.append([token, fut])
        self._kick()
        if not await _wait(fut, deadline):
            raise TimeoutError(f"the broker at {self.endpoint} did not confirm the flush within "
                               f"{timeout} s")
        if not fut.result():
            raise ConnectionClosed(f"lost the connection to {self.endpoint} before the broker "
                                   f"confirmed the flush; what was published before it may be "
                                   f"lost")
        self._take_pending_error()

    async def request(self, subject: str, data: Any = b"", timeout: Optional[float] = 5.0,
                      headers: Optional[bytes] = None) -> Message:
        """As sockbus.Connection.request()."""
        deadline = _deadline(timeout)
        self._check_open()
        await self._await_connection(deadline, f"send a request on {subject!r}")
        req = self._new_request(subject, data, headers)
        req.waiter = self._loop.create_future()
        # At once, not at the end of the iteration: a request waits for
        # its answer, so its latency is worth a write of its own.
        self._write_now()
        try:
            await _wait(req.waiter, deadline)
        finally:
            self._requests.pop(req.token, None)
        if not req.done:
            raise TimeoutError(f"no reply to the request on {subject!r} within {timeout} s")
        if req.error is not None:
            raise req.error
        return req.reply  # type: ignore[return-value]

    async def interest(self, subject: str, timeout: Optional[float] = 5.0) -> int:
        """As sockbus.Connection.interest()."""
        check_subject(subject)
        reply = await self.request(INTEREST_SUBJECT, subject.encode(), timeout=timeout)
        return interest_count(reply)

    async def wait_for_interest(self, subject: str, timeout: Optional[float] = None) -> None:
        """As sockbus.Connection.wait_for_interest()."""
        deadline = _deadline(timeout)
        check_subject(subject)
        events = await self.subscribe(SUBSCRIBE_EVENT)
        try:
            await self.flush(5.0 if deadline is None else _left(deadline))
            left = _left(deadline)
            if await self.interest(subject, 5.0 if left is None else left) > 0:
                return
            while True:
                try:
                    event = await events.next(_left(deadline))
                except TimeoutError:
                    raise TimeoutError(f"nobody subscribed to {subject!r} within {timeout} s") \
                        from None
                if event_matches(event, subject):
                    return
        finally:
            await events.unsubscribe()

    async def close(self) -> None:
        """Write what is buffered (waiting at most the connection's timeout)
        and close."""
        if self._state == CLOSED:
            return
        if self._state == CONNECTED and self._sock is not None:
            try:
                await asyncio.wait_for(self._drain(), self._timeout)
            except asyncio.TimeoutError:
                pass
        self._shut(None)

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<sockbus.aio.Connection {self.endpoint} {self._state} client_id={self.client_id}>"


class _Connecting:
    """What connect() returns: await it for a Connection, or use it with
    `async with` (which closes the connection at the end)."""

    def __init__(self, args: tuple, kwargs: dict) -> None:
        self._args = args
        self._kwargs = kwargs
        self._conn: Optional[Connection] = None

    async def _open(self) -> Connection:
        conn = Connection(*self._args, **self._kwargs)
        await conn._start()
        return conn

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._open().__await__()

    async def __aenter__(self) -> Connection:
        self._conn = await self._open()
        return self._conn

    async def __aexit__(self, *exc: Any) -> None:
        if self._conn is not None:
            await self._conn.close()


def connect(endpoint: Optional[str] = None, name: Optional[str] = None, echo: bool = True,
            timeout: Optional[float] = 5.0, *, reconnect: bool = True,
            reconnect_max: Optional[float] = None, reconnect_buffer: int = RECONNECT_BUFFER,
            on_state: Optional[Callable[[StateChange], Any]] = None) -> _Connecting:
    """Connect to a broker: `bus = await sockbus.aio.connect(...)` or
    `async with sockbus.aio.connect(...) as bus`. The arguments are those
    of sockbus.connect(); on_state is called from the loop."""
    return _Connecting((endpoint, name, echo, timeout), dict(
        reconnect=reconnect, reconnect_max=reconnect_max, reconnect_buffer=reconnect_buffer,
        on_state=on_state))
