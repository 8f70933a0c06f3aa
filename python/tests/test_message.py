"""The messages the hot path of the reader builds slot by slot, without
Message.__init__: every slot is set, to what __init__ would set."""

import sockbus
from sockbus._types import Message

from conftest import IO_S


def as_init_would(msg):
    return Message(msg.subject, msg.data, msg.reply, msg.headers, msg.sid, msg.flags)


def test_every_slot_of_a_received_message_is_set(bus):
    sub = bus.subscribe("m.>")
    bus.publish("m.plain", b"x")
    bus.publish("m.reply", b"y", reply="back.here", headers=b"k: v")
    bus.publish("m.empty", b"")
    bus.flush()
    for _ in range(3):
        msg = sub.next(timeout=IO_S)
        for slot in Message.__slots__:
            getattr(msg, slot)  # AttributeError when the reader left one out
        ref = as_init_would(msg)
        assert all(getattr(msg, s) == getattr(ref, s) for s in Message.__slots__), msg
        assert type(msg) is Message and type(msg.data) is bytes
        assert msg.sender is None and msg.fds == () and not msg.retained
    assert repr(msg) == "Message(subject='m.empty', data=b'', sid=%d)" % sub.sid


def test_reply_and_headers_come_through(bus):
    sub = bus.subscribe("m.one")
    bus.publish("m.one", b"body", reply="back.here", headers=b"k: v")
    bus.flush()
    msg = sub.next(timeout=IO_S)
    assert (msg.subject, msg.data, msg.reply, msg.headers) == ("m.one", b"body", "back.here",
                                                                b"k: v")
    assert isinstance(msg, Message) and sockbus.Message is Message
