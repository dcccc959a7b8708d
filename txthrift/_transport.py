"""
A Thrift C{TTransport} whose messages go out through a Twisted protocol.

Generated C{py:twisted} clients write a call into a transport and then
C{flush()} it; here the flush hands the whole message to a function, such
as L{ThriftMessageProtocol.sendMessage}, which frames and writes it on the
reactor's connection.

Owned here: only the C{TTransport} surface generated code writes into.  It
knows nothing of framing, connections or the reactor: where a message goes
is the function's business.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import Any

from thrift.transport.TTransport import TTransportBase

__all__ = ["CallbackTransport", "MessageSenderTransport"]


class MessageSenderTransport(TTransportBase):
    """
    Collects writes; each C{flush()} sends what was written as one message.
    """

    def __init__(self) -> None:
        self._buffer = BytesIO()

    def isOpen(self) -> bool:
        return True

    def write(self, buf: bytes) -> None:
        self._buffer.write(buf)

    def flush(self) -> Any:
        message = self._buffer.getvalue()
        self._buffer = BytesIO()
        return self.sendMessage(message)

    def sendMessage(self, message: bytes) -> Any:
        raise NotImplementedError


class CallbackTransport(MessageSenderTransport):
    """
    Sends each flushed message by calling C{func(message)}.
    """

    def __init__(self, func: Callable[[bytes], Any]) -> None:
        super().__init__()
        self.func = func

    def sendMessage(self, message: bytes) -> Any:
        return self.func(message)
