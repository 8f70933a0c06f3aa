"""What the API hands out: messages, the sender of a message, state
changes, and the exceptions. Shared by the blocking and asyncio clients."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

from . import _wire

# Connection states (Connection.state, StateChange.state).
CONNECTED = "connected"
DISCONNECTED = "disconnected"
RECONNECTED = "reconnected"
CLOSED = "closed"


class Error(Exception):
    """Base class of every error this package raises."""


class BrokerError(Error):
    """The broker refused something (an ERR frame): `code` is the error
    code of docs/protocol.md ("Errors"), `subject` the subject or pattern it
    names ("" if none), `text` the broker's words (escaped for printing)."""

    def __init__(self, code: int, subject: str, text: str) -> None:
        self.code = code
        self.subject = subject
        self.text = text
        name = _wire.ERROR_NAMES.get(code, "unknown error")
        super().__init__(f"broker error {code} ({name}): {text}" if text else
                         f"broker error {code} ({name})")

    @property
    def fatal(self) -> bool:
        """Did the broker close the connection after it?"""
        return self.code in _wire.FATAL_CODES


class NoResponders(Error):
    """A request reached no subscription: nobody serves `subject`."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"no responders for {subject}")


class ConnectionClosed(Error):
    """The connection is gone: closed by the application, lost while a
    request or flush was in flight, lost for good (reconnect off, or
    reconnect_max reached), or the broker could not be reached at all
    (ConnectError)."""


class ConnectError(ConnectionClosed):
    """connect() could not reach a broker; the message names the endpoint
    and what to try."""

    def __init__(self, message: str, endpoint: str) -> None:
        self.endpoint = endpoint
        super().__init__(message)


class UntrustedBroker(ConnectError):
    """A socket on a default path is served by another user (neither us nor
    root): refused before anything was sent. Name the endpoint explicitly
    to trust it."""

    def __init__(self, message: str, endpoint: str, uid: int, pid: int) -> None:
        self.uid = uid
        self.pid = pid
        super().__init__(message, endpoint)


class InvalidSubject(Error, ValueError):
    """A subject, pattern, reply subject or queue group that breaks the
    subject rules; nothing was sent."""


class MessageTooLarge(Error, ValueError):
    """A frame larger than the broker's max_frame; nothing was sent."""


class SubscriptionEnded(Error):
    """Subscription.next() on a subscription that has ended (unsubscribed,
    its max_msgs reached, or its connection closed by the application) and
    has no message left."""


class Sender(NamedTuple):
    """Who published a message, as the kernel said when it connected (the
    meta block of docs/protocol.md; subscribe with sender=True)."""

    pid: int
    uid: int
    gid: int
    client_id: int


class Message:
    """A received message. `data` and `headers` are bytes (headers b"" when
    none), `reply` the reply subject or None, `sid` the subscription that
    matched, `retained` whether it is a stored value replayed to a new
    subscription, `sender` a Sender or None, `fds` the file descriptors that
    came with it (they belong to the application, which closes them)."""

    __slots__ = ("subject", "data", "reply", "headers", "sid", "flags", "sender", "fds")

    subject: str
    data: bytes
    reply: Optional[str]
    headers: bytes
    sid: int
    flags: int
    sender: Optional[Sender]
    fds: Tuple[int, ...]

    def __init__(self, subject: str, data: bytes, reply: Optional[str], headers: bytes, sid: int,
                 flags: int = 0, sender: Optional[Sender] = None, fds: Tuple[int, ...] = ()) -> None:
        self.subject = subject
        self.data = data
        self.reply = reply
        self.headers = headers
        self.sid = sid
        self.flags = flags
        self.sender = sender
        self.fds = fds

    @property
    def retained(self) -> bool:
        """A retained value replayed to a new subscription."""
        return bool(self.flags & _wire.MSG_RETAINED)

    def __repr__(self) -> str:
        extra = ", retained=True" if self.retained else ""
        if self.reply:
            extra += f", reply={self.reply!r}"
        return f"Message(subject={self.subject!r}, data={self.data!r}, sid={self.sid}{extra})"


class StateChange(NamedTuple):
    """What the state callback receives. `state` is DISCONNECTED,
    RECONNECTED or CLOSED; `lost_at` the time (time.time()) the connection
    was lost, `back_at` the time it was back (RECONNECTED only), `error`
    why it was lost or closed (None for a close by the application).
    Messages published by others during the gap were not received: how
    many is not knowable, so the gap itself is what is reported."""

    state: str
    lost_at: Optional[float]
    back_at: Optional[float]
    error: Optional[BaseException]
