"""
What txthrift takes from inside Twisted that its interfaces do not give,
all of it here, each guarded by C{tests/test_internals.py}.  Knows nothing
of txthrift.

Tested with Twisted 26.10.0 (C{setup.cfg} allows up to the next major
release, and says why no older one); its guards also passed with 23.10.0.
What is relied on, why, and what happens without it:

  - C{FileDescriptor._tempDataLen} and C{FileDescriptor.dataBuffer}: how
    many bytes C{write()} left in a transport's buffers, which no interface
    tells.  L{send} and L{sendParts} write on the socket itself only when
    both are empty, so that nothing they send can overtake what waits there;
    that saves the reactor a poller update and a writable event per reply,
    and for a big one a turn of the reactor per C{SEND_LIMIT} bytes and a
    copy (see L{txthrift._writing}).  Should a Twisted lack them,
    L{canSendDirectly} is false and every reply goes through
    C{transport.write()}.

  - C{tcp.Connection.TLS}, documented as the flag saying a connection's
    C{write()} goes through TLS (its C{getHandle()} is then the TLS
    connection, not the socket).  L{send} writes through C{write()} then.

  - C{FileDescriptor.SEND_LIMIT}: the most the transport sends in one go
    (128 KiB where it is missing), and so the most L{send} does.

  - C{ReactorBase._exitSignal}: the signal that stopped the reactor, which
    twistd raises again once the reactor has stopped, so that the process
    dies of it.  L{forgetStopSignal} clears it after a graceful stop, which
    is a success (exit status 0).  No interface says it, and taking over
    SIGTERM and SIGINT instead would change them for the whole process (a
    test runner's Ctrl-C included) from a mere service.  Should a Twisted
    lack it, the process dies of the signal, as it would without us.

  - C{twisted.web.http.Request.gotLength}, C{handleContentChunk} and
    C{requestReceived}: what C{HTTPChannel} calls on a request as its body
    arrives (documented as the channel's interface to requests, "not
    intended for users").  L{WatchedRequest} overrides them so that a body
    over its limit is refused as it comes, before it is read whole, and
    one refused is never processed; and it takes an C{Expect} header away
    from a request refused up front, which the channel reads afterwards to
    decide whether to send C{100 Continue}.  Should a Twisted call them
    otherwise, C{tests/test_internals.py} fails; L{txthrift.web} still
    refuses an oversized body (after reading it) with the same answer.
    L{txthrift._webchannel} also reads C{HTTPChannel.requests} (the
    requests under way, to time each from its first byte, and to close a
    half-closed connection once they are answered) and sets C{persistent}
    (to close after a refusal), attributes the channel keeps undocumented;
    guarded the same way.

The socket itself comes from C{getHandle()} (L{ITCPTransport}).
"""

from __future__ import annotations

import signal
import socket
from io import BytesIO
from typing import Any, Final, cast

from twisted.internet import abstract, tcp
from twisted.web import server

__all__ = ["WatchedRequest", "canSendDirectly", "forgetStopSignal", "send", "sendParts"]

#: The most L{send} writes on a socket itself: what a Twisted TCP transport
#: sends in one go.
_DIRECT_LIMIT: Final[int] = getattr(abstract.FileDescriptor, "SEND_LIMIT", 128 * 1024)

#: The most pieces L{sendParts} gathers in one system call (POSIX allows no
#: fewer than 16), and whether this platform's sockets can (not Windows).
_MOST_PARTS: Final = 16
_GATHERS: Final = hasattr(socket.socket, "sendmsg")


def _buffersAsExpected() -> bool:
    """
    Whether a new transport counts its buffered bytes where L{send} looks.
    """
    probe = abstract.FileDescriptor(reactor=cast(Any, object()))
    return getattr(probe, "_tempDataLen", None) == 0 and getattr(probe, "dataBuffer", None) == b""


_buffersKnown: bool = _buffersAsExpected()


def canSendDirectly(transport: object) -> bool:
    """
    Whether L{send} can write on C{transport}'s socket itself: a TCP (or
    UNIX) connection of Twisted's own reactors, whose buffers it can see.
    """
    return _buffersKnown and isinstance(transport, tcp.Connection)


def _idleSocket(transport: Any) -> Any:
    """
    The socket beneath C{transport} if nothing written to the transport
    still waits in its buffers (so that nothing written on the socket now can
    overtake it), else C{None}.
    """
    # Twisted keeps what write() buffered in dataBuffer and _tempDataBuffer
    # (counted in _tempDataLen); when both are empty, nothing of ours can be
    # overtaken.  An attribute missing (not a TCP transport) means write().
    if (getattr(transport, "_tempDataLen", None) == 0 and not transport.dataBuffer
            and transport.connected and not transport.disconnecting and not transport.TLS):
        return transport.getHandle()
    return None


def send(transport: Any, data: bytes) -> None:
    """
    Write C{data} on C{transport}, straight onto its socket if nothing is
    waiting in the transport's buffer.
    """
    # Past what the transport sends at once (SEND_LIMIT), its own buffer
    # slices without copying, which beats sending the head here and copying
    # the rest into it: L{sendParts} is for big writes.
    sock = _idleSocket(transport) if len(data) <= _DIRECT_LIMIT else None
    if sock is not None:
        try:
            sent = sock.send(data)
        except OSError:
            # Would block, or broken: write() buffers it, and the transport
            # finds out which when it next writes.
            sent = 0
        if sent < len(data):
            transport.write(data[sent:])
        return
    transport.write(data)


def sendParts(transport: Any, parts: list[bytes]) -> None:
    """
    Write C{parts} on C{transport}, one after the other, as L{send} does
    C{b"".join(parts)}, but with no limit on their size: gathered straight
    onto its socket (as much as it takes) without joining them first, where
    nothing waits in the transport's buffer; what the socket does not take
    goes through the transport, which copies only that.
    """
    if len(parts) > _MOST_PARTS:
        parts = [b"".join(parts)]
    sock = _idleSocket(transport) if _GATHERS else None
    if sock is None:
        transport.writeSequence(parts)
        return
    try:
        sent = sock.sendmsg(parts)
    except OSError:
        sent = 0  # As for send.
    for index, part in enumerate(parts):
        if sent < len(part):
            transport.writeSequence([part[sent:] if sent else part, *parts[index + 1 :]])
            return
        sent -= len(part)


def forgetStopSignal(reactor: object) -> None:
    """
    Let twistd exit 0 after a graceful stop that SIGTERM or SIGINT asked
    for, instead of raising the signal again.
    """
    if getattr(reactor, "_exitSignal", None) in (signal.SIGTERM, signal.SIGINT):
        reactor._exitSignal = None  # type: ignore[attr-defined]


class WatchedRequest(server.Request):
    """
    A C{twisted.web} request told of its body as it arrives: L{bodyComing}
    once its headers are in, L{bodyPiece} for each piece, L{bodyEnded} once
    it is whole, before it is processed.  Either of the first two may
    refuse it (answering it some other way): the rest of its body is then
    dropped as it comes, and it is never processed.  The body is held in
    memory (C{twisted.web} puts one over 100 kB in a temporary file): a
    subclass bounds it.
    """

    refused = False

    def bodyComing(self, length: int | None) -> bool:
        """
        The headers are in; the body declares C{length} bytes (C{None}:
        chunked).  Return whether to read it.
        """
        return True

    def bodyPiece(self, data: bytes) -> bool:
        """
        A piece of the body came.  Return whether to keep reading it.
        """
        return True

    def bodyEnded(self) -> None:
        """
        The whole request is in, and is about to be processed.
        """

    def gotLength(self, length: int | None) -> None:
        self.content = BytesIO()
        if self.refused or not self.bodyComing(length):
            self.refused = True
            # Read by the channel after this returns: a refused body is not
            # asked for.
            self.requestHeaders.removeHeader(b"Expect")

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        if not self.bodyPiece(data):
            self.refused = True
            return
        content: Any = self.content
        content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.refused:
            return
        self.bodyEnded()
        super().requestReceived(command, path, version)
