"""The sockbus wire format, subject rules and endpoint rule (docs/protocol.md).

Everything here is pure: no socket is touched. The frame header is 16
bytes, little-endian: size (u32), op (u8), flags (u8), subject_len (u16),
reply_len (u16), header_len (u16), sid (u32), followed by subject, reply,
headers and payload back to back ("Framing" in docs/protocol.md).
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple, Optional, Tuple

# ---- frame format ----------------------------------------------------------

HEADER = struct.Struct("<IBBHHHI")
HEADER_SIZE = 16
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
# The meta block of a MSG with flag META: client_id, pid, uid, gid,
# transport, 0, nfds, reserved.
META = struct.Struct("<QIIIBBHQ")
META_SIZE = 32

PROTOCOL_VERSION = 1
MAX_FRAME_DEFAULT = 1114112  # 1 MiB + 64 KiB, until WELCOME says otherwise
SUBJECT_MAX = 1024

OP_HELLO = 0x01
OP_WELCOME = 0x02
OP_PUB = 0x10
OP_SUB = 0x11
OP_UNSUB = 0x12
OP_MSG = 0x20
OP_DROPPED = 0x21
OP_PING = 0x30
OP_PONG = 0x31
OP_ERR = 0x3F

PUB_RETAIN = 0x01
PUB_FDS = 0x02
SUB_SENDER = 0x01
SUB_LOSSLESS = 0x02
MSG_NO_RESPONDERS = 0x01
MSG_RETAINED = 0x02
MSG_META = 0x04

# At most this many descriptors travel with one message (the broker's
# max_fds_per_msg is at most 253).
FDS_MAX = 253

ERR_PROTOCOL = 1
ERR_TOO_LARGE = 2
ERR_SUBJECT = 3
ERR_PERMISSION = 4
ERR_LIMIT = 5
ERR_SLOW_CONSUMER = 6
ERR_SID = 7
ERR_HELLO_REQUIRED = 8
ERR_SHUTDOWN = 9
ERR_VERSION = 10
ERR_REQUEST = 11

# Codes after which the broker closes the connection ("Errors").
FATAL_CODES = frozenset(
    (ERR_PROTOCOL, ERR_TOO_LARGE, ERR_SLOW_CONSUMER, ERR_HELLO_REQUIRED, ERR_SHUTDOWN, ERR_VERSION)
)
# Fatal codes worth a reconnect: the broker went away (9) or timed our
# HELLO out (8). After 1, 2 or 10 a new connection would fail the same way;
# after 6 (a lossless subscriber cut as a slow consumer) the application
# must learn that it lost messages, which a reconnect would hide: the
# connection ends, as libsockbus does.
RECONNECTABLE_CODES = frozenset((ERR_HELLO_REQUIRED, ERR_SHUTDOWN))

ERROR_NAMES = {
    ERR_PROTOCOL: "protocol violation",
    ERR_TOO_LARGE: "frame too large",
    ERR_SUBJECT: "invalid subject or pattern",
    ERR_PERMISSION: "permission denied",
    ERR_LIMIT: "limit reached",
    ERR_SLOW_CONSUMER: "slow consumer",
    ERR_SID: "unknown, reused or zero sid",
    ERR_HELLO_REQUIRED: "HELLO required",
    ERR_SHUTDOWN: "broker shutting down",
    ERR_VERSION: "unsupported protocol version",
    ERR_REQUEST: "invalid request",
}


def encode(op: int, flags: int = 0, sid: int = 0, subject: bytes = b"", reply: bytes = b"",
           headers: bytes = b"", payload: bytes = b"") -> bytes:
    """One whole frame (not for the publish fast path, which caches)."""
    size = HEADER_SIZE + len(subject) + len(reply) + len(headers) + len(payload)
    return b"".join(
        (HEADER.pack(size, op, flags, len(subject), len(reply), len(headers), sid), subject, reply,
         headers, payload))


# ---- subjects (docs/protocol.md, "Subjects and patterns") -------------------

# A token byte: 0x21..0x7E other than '.', '*' and '>'.
_TOKEN_BYTES = bytes(b for b in range(0x21, 0x7F) if b not in b".*>")


def _tokens(text: object) -> Optional[list]:
    if not isinstance(text, str):
        return None
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    if not 1 <= len(raw) <= SUBJECT_MAX:
        return None
    return raw.split(b".")


def subject_valid(subject: object) -> bool:
    """A publishable subject: 1 to 1024 bytes of dot-separated tokens, no
    wildcards."""
    tokens = _tokens(subject)
    if tokens is None:
        return False
    for t in tokens:
        if not t or t.translate(None, _TOKEN_BYTES):
            return False
    return True


def pattern_valid(pattern: object) -> bool:
    """A subscription pattern: a subject whose tokens may be '*', and whose
    last token may be '>'."""
    tokens = _tokens(pattern)
    if tokens is None:
        return False
    last = len(tokens) - 1
    for i, t in enumerate(tokens):
        if t == b"*" or (t == b">" and i == last):
            continue
        if not t or t.translate(None, _TOKEN_BYTES):
            return False
    return True


def pattern_match(pattern: str, subject: str) -> bool:
    """Does a valid pattern match a valid subject? (The broker decides what
    is delivered; this is for applications that sort messages.)"""
    p = pattern.split(".")
    s = subject.split(".")
    if p[0] in ("*", ">") and s[0].startswith("$"):
        return False
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


# ---- endpoints (the endpoint rule of docs/protocol.md and security.md) -----

SYSTEM_SOCKET = "/run/sockbus/sockbus.sock"
_SUN_PATH_MAX = 108


class Endpoint(NamedTuple):
    """Where to connect: `kind` is "unix" or "tcp"; `address` a path or a
    (host, port) pair; `text` how to name it to a person; `check` whether
    whoever serves it must be us or root (a default path)."""

    kind: str
    address: object
    text: str
    check: bool


def parse_tcp(hostport: str) -> Tuple[str, int]:
    """Split "HOST:PORT" (or "[v6]:PORT"); ValueError when malformed."""
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"'{hostport}' is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"'{hostport}': an IPv6 host needs brackets, [::1]:PORT")
    if not host or "[" in host or "]" in host:
        raise ValueError(f"'{hostport}' is not HOST:PORT")
    return host, int(port)


def resolve_endpoint(endpoint: Optional[str] = None) -> Endpoint:
    """The endpoint a client uses: `endpoint` when given, else
    $SOCKBUS_SOCKET, else $XDG_RUNTIME_DIR/sockbus.sock, else
    /tmp/sockbus-<uid>.sock (empty values count as unset). The first two
    are named explicitly and trusted as named; the last two are checked.
    "tcp://HOST:PORT" is TCP, "unix://PATH" a path. ValueError when the
    endpoint cannot be used."""
    explicit = endpoint or os.environ.get("SOCKBUS_SOCKET") or ""
    if explicit:
        text, check = explicit, False
    elif os.environ.get("XDG_RUNTIME_DIR"):
        text, check = os.path.join(os.environ["XDG_RUNTIME_DIR"], "sockbus.sock"), True
    else:
        text, check = f"/tmp/sockbus-{os.getuid()}.sock", True
    if text.startswith("tcp://"):
        return Endpoint("tcp", parse_tcp(text[len("tcp://"):]), text, False)
    path = text[len("unix://"):] if text.startswith("unix://") else text
    if not path:
        raise ValueError(f"endpoint '{text}' names no socket path")
    if len(os.fsencode(path)) >= _SUN_PATH_MAX:
        raise ValueError(f"socket path '{path}' is too long: a Unix socket path must be shorter "
                         f"than {_SUN_PATH_MAX} bytes")
    return Endpoint("unix", path, path, check)


# ---- text a peer sent ---------------------------------------------------------


def escape(raw: bytes) -> str:
    """Bytes a peer chose, made safe to print on one line: valid UTF-8 is
    kept, control characters, backslashes and ill-formed bytes become \\xNN."""
    out = []
    text = raw.decode("utf-8", "surrogateescape")
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # an ill-formed byte
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or o == 0x7F or 0x80 <= o <= 0x9F or ch == "\\":
            out.append("".join(f"\\x{b:02x}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)
