"""sockbus: a client for the sockbus local message bus (sockbusd).

    import sockbus
    with sockbus.connect() as bus:
        sub = bus.subscribe("demo.>")
        bus.publish("demo.x", b"hi")
        bus.flush()
        print(sub.next(timeout=5.0).data)

The blocking client is here; sockbus.aio has the same names for asyncio.
Pure Python, standard library only; it speaks the protocol of
docs/protocol.md itself.
"""

from ._sync import Connection, Subscription, connect
from ._types import (CLOSED, CONNECTED, DISCONNECTED, RECONNECTED, BrokerError, ConnectError,
                     ConnectionClosed, Error, InvalidSubject, Message, MessageTooLarge,
                     NoResponders, Sender, StateChange, SubscriptionEnded, UntrustedBroker)
from ._wire import SYSTEM_SOCKET, pattern_match, pattern_valid, subject_valid

__version__ = "0.1.0"

__all__ = [
    "connect", "Connection", "Subscription", "Message", "Sender", "StateChange",
    "Error", "BrokerError", "NoResponders", "ConnectionClosed", "ConnectError",
    "UntrustedBroker", "InvalidSubject", "MessageTooLarge", "SubscriptionEnded",
    "CONNECTED", "DISCONNECTED", "RECONNECTED", "CLOSED", "SYSTEM_SOCKET",
    "subject_valid", "pattern_valid", "pattern_match",
]
