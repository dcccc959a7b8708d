"""
Getting replies onto the wire with as few system calls as can be.

A Twisted TCP transport buffers each write and asks the reactor to say when
its socket is writable; the reactor's next turn then sends, and stops asking.
For a connection answering a few small requests at a time that is two poller
updates and one more event per turn, around a single C{send}: more than the
requests themselves cost.

So what a connection has to send during one turn of the reactor waits for
the start of the next turn (where everything every connection had to send
goes out together, so that peers get whole batches), and goes straight onto
the socket when the transport has nothing of its own still buffered.  Only
what the kernel does not take goes through the transport's buffer, with its
flow control.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from twisted.internet import tcp
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["atNextTurn", "canSendDirectly", "send"]

log = Logger(namespace="txthrift.writing")

#: The most L{send} writes on a socket itself: what a Twisted TCP transport
#: sends in one go.
_DIRECT_LIMIT = getattr(tcp.Connection, "SEND_LIMIT", 128 * 1024)


def canSendDirectly(transport: object) -> bool:
    """
    Whether L{send} can write on C{transport}'s socket itself: a TCP (or
    UNIX) connection of Twisted's own reactors.  TLS and anything else goes
    through C{write}.
    """
    return isinstance(transport, tcp.Connection)


def send(transport: Any, data: bytes) -> None:
    """
    Write C{data} on C{transport}, straight onto its socket if nothing is
    waiting in the transport's buffer.
    """
    # Twisted keeps what write() buffered in dataBuffer and _tempDataBuffer
    # (counted in _tempDataLen); when both are empty, nothing of ours can be
    # overtaken.  An attribute missing (another Twisted) means write().
    # Past what the transport sends at once (SEND_LIMIT), its own buffer
    # slices without copying, which beats sending the head here and copying
    # the rest into it.
    if (len(data) <= _DIRECT_LIMIT and getattr(transport, "_tempDataLen", None) == 0
            and not transport.dataBuffer and transport.connected
            and not transport.disconnecting and not transport.TLS):
        sent = transport.writeSomeData(data)
        if type(sent) is int and sent >= 0:
            if sent < len(data):
                transport.write(data[sent:])
            return
        # An error: write() lets the transport find it, and close.
    transport.write(data)


class _Turn:
    """
    The sends asked for during one turn of a reactor, made at the start of
    its next turn.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiting: list[Callable[[], None]] = []

    def add(self, sender: Callable[[], None]) -> None:
        if not self._waiting:
            self._clock.callLater(0, self._run)
        self._waiting.append(sender)

    def _run(self) -> None:
        waiting, self._waiting = self._waiting, []
        for sender in waiting:
            try:
                sender()
            except Exception:  # pragma: no cover - senders only hand bytes on
                log.failure("sending failed")


_turns: WeakKeyDictionary[IReactorTime, _Turn] = WeakKeyDictionary()


def atNextTurn(clock: IReactorTime, sender: Callable[[], None]) -> None:
    """
    Call C{sender} at the start of C{clock}'s next turn, with every other
    sender asked for until then.
    """
    turn = _turns.get(clock)
    if turn is None:
        turn = _turns[clock] = _Turn(clock)
    turn.add(sender)
