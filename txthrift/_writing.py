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
flow control.  A big batch (a big reply) goes out at once, its pieces
gathered onto the socket by one system call as they are: the transport
would send it C{SEND_LIMIT} (128 KiB) bytes per turn of the reactor, after
a copy to join them.

Owned here: the turn.  Sending on a socket beside its transport reaches into
Twisted (L{txthrift._twistedinternals}, where L{send}, L{sendParts} and
L{canSendDirectly} live).  Knows nothing of messages, framing or Thrift.
"""

from __future__ import annotations

from collections.abc import Callable
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ._twistedinternals import canSendDirectly, send, sendParts

__all__ = ["atNextTurn", "canSendDirectly", "send", "sendParts"]

log = Logger(namespace="txthrift.writing")


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
