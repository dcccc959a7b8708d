"""
The connections of a L{txthrift.web.ThriftSite}: each reads the plain
requests Thrift clients send itself (L{readHead}) and hands their bodies to
the site's resource, answers pipelined calls at once and writes their answers
in the order the requests came; everything else it leaves to C{twisted.web},
whose requests (L{ThriftRequest}) are refused while they arrive when over
the limit.  Both are timed from their first byte, held to the site's budget
while their bodies arrive, and kept from reading on while answers wait.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    ISSLTransport,
)
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from zope.interface import implementer

from ._budget import PartialBudget
from ._codec import CONTENT_TYPES as _CODEC_CONTENT_TYPES
from ._context import Origin, originOf
from ._framing import peerText
from ._httphead import NOT_PLAIN, Head, readHead
from ._limits import Limits
from ._twistedinternals import WatchedRequest

__all__ = ["CONTENT_TYPES", "TEXT", "Channel", "ChannelSite", "PlainResource", "ThriftRequest",
           "refusal"]

log = Logger(namespace="txthrift.web")

#: The C{Content-Type} of a reply in each protocol (L{txthrift._codec.CONTENT_TYPES}).
CONTENT_TYPES: Final = {protocol: media.encode("ascii")
                        for protocol, media in _CODEC_CONTENT_TYPES.items()}
TEXT: Final = b"text/plain; charset=utf-8"
#: Seconds a connection whose request was refused (413, 408) keeps reading,
#: and dropping, what its client still sends, so that the client reads the
#: answer instead of a reset; then it is cut off.
_REFUSED_GRACE = 10.0


class PlainResource(TypingProtocol):
    """
    What a L{Channel} hands the plain requests it reads to (a
    L{txthrift.web.ThriftResource}).
    """

    def answer(self, exchange: Any, body: bytes | None) -> None:
        """
        Answer one request's body through C{exchange}, now or later.
        """


class ChannelSite(TypingProtocol):
    """
    What a L{Channel} needs of its site (a L{txthrift.web.ThriftSite}).
    """

    limits: Limits
    partialBudget: PartialBudget | None
    reactor: Any
    connections: set[http.HTTPChannel]
    thriftResource: PlainResource | None
    plainRequestLine: bytes | None

    def dateLine(self) -> bytes:
        """
        The C{Date} header of an answer now.
        """

    def channelGone(self, channel: http.HTTPChannel) -> None:
        """
        C{channel} has closed.
        """


def refusal(transport: Any, code: int, why: str) -> bytes:
    """
    Log that a request got C{code} for C{why}: the text of its answer.
    """
    log.info("refused an HTTP request from {peer}: {code} {why}",
             peer=peerText(transport), code=code, why=why)
    return (why + "\n").encode()


class ThriftRequest(WatchedRequest):
    """
    A request of a L{ThriftSite}: its body refused (C{413}) once it is over
    the site's C{max_frame_size}, by its declared length or as it comes;
    the whole request timed by its connection (L{Channel}).
    """

    channel: Any
    _received = 0

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        # A Thrift body is no form: twisted.web need not parse one as such.
        kwargs.setdefault("parsePOSTFormSubmission", False)
        super().__init__(channel, *args, **kwargs)
        self._most: int = channel.site.limits.max_frame_size
        channel.requestBegun()

    def bodyComing(self, length: int | None) -> bool:
        if length is not None and length > self._most:
            self._tooBig()
            return False
        return True

    def bodyPiece(self, data: bytes) -> bool:
        self._received += len(data)
        if self._received > self._most:
            self._tooBig()
            return False
        budget = self.channel.site.partialBudget
        if budget is not None:
            budget.hold(self.channel, self._received, False)
        return True

    def bodyEnded(self) -> None:
        budget = self.channel.site.partialBudget
        if budget is not None and self._received:
            budget.hold(self.channel, 0, True)
        self.channel.requestWhole()

    def _tooBig(self) -> None:
        self.channel.refuse(http.REQUEST_ENTITY_TOO_LARGE,
                            f"the request body is over {self._most} bytes (max_frame_size)")


class Answer:
    """
    The way back to its client of a request its L{Channel} read itself:
    its answer, once known, waits for the answers of the requests before it
    on the connection.
    """

    __slots__ = ("after", "channel", "close", "data", "headers", "lost")

    def __init__(self, channel: Channel, headers: dict[str, str], close: bool) -> None:
        self.channel = channel
        self.headers = headers
        self.close = close
        #: The answer's bytes, once known.
        self.data: bytes | None = None
        #: What to do once they are written (close the connection).
        self.after: Callable[[], None] | None = None
        self.lost: Callable[[], None] | None = None

    def origin(self, service: str) -> Origin:
        return originOf(self.channel.transport, service, headers=self.headers)

    def thrift(self, protocol: str, reply: bytes) -> None:
        channel = self.channel
        self.data = b"".join((_OK_HEADS[protocol], channel.factory.dateLine(),
                              _CLOSE if self.close else b"",
                              b"Content-Length: %d\r\n\r\n" % len(reply), reply))
        channel.answered()

    def plain(self, code: int, why: str) -> None:
        channel = self.channel
        self.data = plainAnswer(code, refusal(channel.transport, code, why), self.close)
        channel.answered()

    def whenGone(self, lost: Callable[[], None]) -> None:
        self.lost = lost


#: The head of a reply in each protocol, but its length, date and closing.
_OK_HEADS: Final = {protocol: b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\n" % media
                    for protocol, media in CONTENT_TYPES.items()}
_CLOSE: Final = b"Connection: close\r\n"


def plainAnswer(code: int, body: bytes, close: bool) -> bytes:
    """
    A whole answer of C{code} with C{body} as text.
    """
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sContent-Length: %d\r\n\r\n%s" % (
        code, http.RESPONSES.get(code, b""), TEXT, _CLOSE if close else b"", len(body), body)


def _cancelled(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


def _abort(transport: Any) -> None:
    transport.abortConnection()


@implementer(IHalfCloseableProtocol)
class Channel(http.HTTPChannel):
    """
    An HTTP/1.1 connection its L{ThriftSite} knows of while it is open,
    timing each request from its first byte to its body's last: one that
    takes over C{partial_timeout} is refused (C{408}), as a TCP connection
    is closed for a message slow to come.

    Where the site serves a L{ThriftResource} at one path, the channel reads
    the plain requests Thrift clients send (L{readHead}) itself and hands
    their bodies to the resource: C{twisted.web}'s request machinery costs
    several times a small call.  Up to C{max_pending} such requests are
    answered at once, their answers written in the order the requests came.
    From the first request that is not one of those on, C{twisted.web}
    reads the connection, once every answer before it is written.
    """

    factory: ChannelSite
    _partialTimer: IDelayedCall | None = None
    _cutOff: IDelayedCall | None = None
    _endedCall: IDelayedCall | None = None
    _host: IAddress | None = None
    _budgetPaused = False
    _refused = False
    #: The request line of the requests read here; None once twisted.web
    #: reads the connection.
    _plainLine: bytes | None = None
    #: What was read of requests not yet whole, or not yet handed on.
    _held = b""
    #: Bytes that twisted.web reads once every answer before them is out.
    _handOver: bytes | None = None
    #: Whether nothing more is read: a request asked to close, or was refused.
    _closing = False
    #: Whether reading is paused until fewer requests are in flight.
    _full = False
    #: Whether requests are being read: answers wait until they all are.
    _reading = False
    #: Bytes of a body not yet whole held in the site's budget.
    _bodyHeld = 0
    #: Whether the client has said it sends nothing more (a half-close).
    _readEnded = False
    #: Whether the transport's buffer is full (twisted.web's producer calls).
    _writeBlocked = False
    #: The head of the request whose body is arriving, its pieces so far,
    #: and their length.
    _bodyHead: Head | None = None
    _body: list[bytes] | None = None
    _bodyHave = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.connections.add(self)
        self._plainLine = self.factory.plainRequestLine
        self._answers: deque[Answer] = deque()

    def getHost(self) -> IAddress:
        # Every request asks (twisted.web's Request.__init__), and the
        # transport would ask the system (getsockname) each time.
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def dataReceived(self, data: bytes) -> None:
        if self._plainLine is None:
            if self._handOver is not None:
                # Still waiting for answers due before it: read no more.
                self._handOver += data
                self.transport.pauseProducing()  # type: ignore[union-attr]
                return
            # With no request under way, these bytes begin one.
            if not self.requests:
                self.requestBegun()
            super().dataReceived(data)
            return
        self.resetTimeout()
        if self._closing:
            return
        body = self._body
        if body is None:
            self._held += data
        else:
            # A body arriving is kept in pieces, joined once when whole.
            body.append(data)
            self._bodyHave += len(data)
            head = self._bodyHead
            assert head is not None
            if self._bodyHave < head.length:
                self._holdBody(self._bodyHave)
                if self._mustWait():
                    self.transport.pauseProducing()  # type: ignore[union-attr]
                return
            self._body = None
            self._held = b"".join(body)
        self._readHeld()
        if self._mustWait() and not self.transport.disconnecting:  # type: ignore[union-attr]
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def _holdBody(self, size: int) -> None:
        """
        Hold C{size} bytes of a body still arriving in the site's budget, as
        twisted.web's requests do (L{ThriftRequest}); none once it is whole.
        """
        budget = self.factory.partialBudget
        if budget is not None and (size or self._bodyHeld):
            budget.hold(self, size, not size)
        self._bodyHeld = size

    def _readHeld(self) -> None:
        """
        Read and answer the whole requests held, keeping the rest.
        """
        held, self._held = self._held, b""
        self._reading = True
        try:
            position, taken = self._readRequests(held)
        finally:
            self._reading = False
        if self._plainLine is not None:
            self._held = rest = held[position:]
            self._holdBody(self._bodyHave if self._body is not None else 0)
            arriving = (bool(rest) or self._body is not None) and self._mayRead()
            if taken or not arriving:
                self.requestWhole()
            if arriving:
                # A request begun: timed from the read that began it.
                self.requestBegun()
        self.answered()
        if (self._plainLine is not None and not self._closing and not self._full
                and len(self._answers) >= self.factory.limits.max_pending):
            # Calls in flight enough: what comes next stays in the kernel.
            self._full = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def _mustWait(self) -> bool:
        """
        Whether this connection must read no more for now: too many calls
        in flight, answers not written as fast as they come, bodies over
        the budget, or a hand-over waiting.
        """
        return (self._full or self._budgetPaused or self._writeBlocked
                or self._handOver is not None)

    def _mayRead(self) -> bool:
        """
        Whether nothing keeps this connection from reading on.
        """
        return not (self._closing or self._mustWait())

    def _readRequests(self, held: bytes) -> tuple[int, int]:
        """
        Read and answer the whole requests in C{held} until one is not whole,
        is not a plain one, too many are in flight, or answers cannot be
        written as fast as they come.

        @return: where what is not read begins, and how many requests were.
        """
        site = self.factory
        line = self._plainLine
        assert line is not None
        most, mostPending = site.limits.max_frame_size, site.limits.max_pending
        answers = self._answers
        position, size, taken = 0, len(held), 0
        arrived = self._bodyHead
        if arrived is not None:
            # The body that was arriving is whole: it begins what is held.
            self._bodyHead = None
            position, taken = arrived.length, 1
            if self._take(arrived, held, 0):
                return size, taken
        while position < size and not self._writeBlocked:
            if len(answers) >= mostPending:
                self._flush()
                if len(answers) >= mostPending:
                    self._full = True
                    self.transport.pauseProducing()  # type: ignore[union-attr]
                    break
            head = readHead(held, position, line)
            if type(head) is int:
                if head == NOT_PLAIN:
                    self._leaveToWeb(held[position:])
                    return size, taken
                break
            assert isinstance(head, Head)
            if head.length > most:
                self.refuse(http.REQUEST_ENTITY_TOO_LARGE,
                            f"the request body is over {most} bytes (max_frame_size)")
                return size, taken
            end = head.end + head.length
            if end > size:
                self._bodyHead, self._body = head, [held[head.end:]]
                self._bodyHave = size - head.end
                return size, taken
            taken += 1
            if self._take(head, held, head.end):
                return size, taken
            position = end
        return position, taken

    def _take(self, head: Head, held: bytes, start: int) -> bool:
        """
        Hand the request of C{head}, its body at C{start} in C{held}, to the
        resource: whether it is the last this connection reads.
        """
        answer = Answer(self, head.headers, head.close)
        self._answers.append(answer)
        if head.close:
            self._closing = True
            answer.after = self.loseConnection
        resource = self.factory.thriftResource
        assert resource is not None
        resource.answer(answer, held[start:start + head.length])
        return head.close

    def answered(self) -> None:
        """
        An answer is known: write those that are next, then read on if
        reading waited for room.
        """
        if self._reading:
            return
        if self._flush() and self._endedCall is not None:
            self._armEnded()
        if self._answers:
            self._readOn()
        elif self._handOver is not None:
            data, self._handOver = self._handOver, None
            if self._refused:
                return  # Refused while it waited: nothing more is read.
            self.transport.resumeProducing()  # type: ignore[union-attr]
            self.dataReceived(data)
            if self._readEnded:
                self._endForWeb()
        elif self._plainLine is not None:
            if not self._readEnded:
                self.resetTimeout()  # Idle from now, with no call in flight.
                self._readOn()
            elif not self.transport.disconnecting:  # type: ignore[union-attr]
                self.loseConnection()

    def _readOn(self) -> None:
        """
        Read on what is held, and from the socket, if reading waited for
        room among the calls in flight and there is some now.
        """
        if (self._full and self._plainLine is not None
                and len(self._answers) < self.factory.limits.max_pending):
            self._full = False
            if self._mayRead():
                self.transport.resumeProducing()  # type: ignore[union-attr]
                if self._body is None:  # Else its bytes still come.
                    self._readHeld()

    def pauseProducing(self) -> None:
        # The transport's buffer is full: answers wait, and so do requests.
        self._writeBlocked = True
        super().pauseProducing()

    def resumeProducing(self) -> None:
        # twisted.web's own state follows the transport's buffer too (it
        # reads it once a request is left to it).
        self._writeBlocked = False
        super().resumeProducing()
        if self._plainLine is None:
            return
        transport: Any = self.transport
        if not self._mayRead():
            if not transport.disconnecting:
                transport.pauseProducing()
        elif self._held and not self._reading and self._body is None:
            self._readHeld()

    def _flush(self) -> bool:
        """
        Write the answers that are next: whether there were any.
        """
        answers, ready = self._answers, []
        after = None
        while answers and answers[0].data is not None:
            answer = answers.popleft()
            ready.append(answer.data)
            after = answer.after
            if after is not None:
                break
        transport = self.transport
        if ready and transport is not None:
            transport.writeSequence(ready)  # type: ignore[arg-type]
            if after is not None:
                after()
        return bool(ready)

    def _leaveToWeb(self, data: bytes) -> None:
        """
        Leave the connection to C{twisted.web} from C{data} on, once every
        answer before it is written: until then, it is not timed (the wait
        is the server's), and nothing more is read.
        """
        self._plainLine = None
        self._holdBody(0)
        if self._answers:
            self.requestWhole()
            self._handOver = data
            self.transport.pauseProducing()  # type: ignore[union-attr]
        else:
            self.dataReceived(data)

    def readConnectionLost(self) -> None:
        """
        The client sends nothing more (it half-closed): it still gets the
        answers to what it sent, then the connection is closed.
        """
        self._readEnded = True
        # A request not whole now never will be: nothing waits for it.
        arriving = self._partialTimer is not None or self._refused
        self.requestWhole()
        self._armEnded()
        if self._plainLine is not None:
            self._closing = True
            self.answered()
        elif self._handOver is None:
            if arriving:
                self.loseConnection()
            else:
                self._endForWeb()

    def _armEnded(self) -> None:
        """
        Give the answers still due to a client that sends no more another
        C{half_closed_timeout}: it may have gone altogether, which only an
        answer refused would tell, and nobody else would stop its calls.
        """
        _cancelled(self._endedCall)
        timeout = self.factory.limits.half_closed_timeout
        if timeout is not None:
            self._endedCall = self.factory.reactor.callLater(timeout, self._abandon, timeout)

    def _abandon(self, timeout: float) -> None:
        self._endedCall = None
        log.info("closing an HTTP connection from {peer}: it sent no more requests, and its"
                 " calls gave no answer within {timeout}s (half_closed_timeout)",
                 peer=peerText(self.transport), timeout=timeout)
        _abort(self.transport)

    def _endForWeb(self) -> None:
        """
        Close once twisted.web has answered every request it has read.

        Not at once: twisted.web may be part-way through the requests of one
        read (answering one, and so calling L{requestDone}, before reading
        the next); after this turn, whatever it has read is under way.
        """
        self.factory.reactor.callLater(0, self._closeIfAnswered)

    def _closeIfAnswered(self) -> None:
        transport: Any = self.transport
        if not self.requests and transport is not None and not transport.disconnecting:
            self.loseConnection()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self._readEnded:
            # A client that sends no more: close once all it sent is answered,
            # each answer within half_closed_timeout of the one before.
            self._armEnded()
            self._endForWeb()

    def writeConnectionLost(self) -> None:
        """
        Nothing: this end never half-closes but to close (L{refuse}).
        """

    def timeoutConnection(self) -> None:
        if self._answers:
            self.setTimeout(self.timeOut)  # Not idle: calls are in flight.
        else:
            super().timeoutConnection()

    def requestBegun(self) -> None:
        """
        A request has begun (its first byte, or its request line: one that
        follows another in the same read begins without a read of its own):
        time it, unless it is timed already.
        """
        if self._partialTimer is None and self._cutOff is None:
            timeout = self.factory.limits.partial_timeout
            if timeout is not None:
                self._partialTimer = self.factory.reactor.callLater(timeout, self._tooSlow,
                                                                    timeout)

    def requestWhole(self) -> None:
        """
        The request under way has come whole: no longer timed.
        """
        if self._partialTimer is not None:
            _cancelled(self._partialTimer)
            self._partialTimer = None

    def _tooSlow(self, timeout: float) -> None:
        self._partialTimer = None
        if self.requests:
            self.requests[-1].refused = True  # What still comes of it is dropped.
        self.refuse(http.REQUEST_TIMEOUT,
                    f"the request did not arrive whole within {timeout:g}s (partial_timeout)")

    # BudgetHolder: a body read as it comes holds part of the site's budget.
    def pauseForBudget(self) -> None:
        transport: Any = self.transport
        self._budgetPaused = True
        transport.pauseProducing()

    def resumeForBudget(self) -> None:
        transport: Any = self.transport
        if self._budgetPaused and transport is not None:
            self._budgetPaused = False
            if self._plainLine is None or self._mayRead():
                transport.resumeProducing()

    def _releaseBudget(self) -> None:
        budget = self.factory.partialBudget
        if budget is not None:
            budget.release(self)

    def refuse(self, code: int, why: str) -> None:
        """
        Answer C{code} and close, before a request is whole: no request can
        write a response yet, so this writes one on the connection itself
        (as C{twisted.web} does for a bad request), after the answers still
        due before it; its client gets it even while still sending, since
        what it sends is read and dropped for a grace period before the
        connection is cut.
        """
        self.requestWhole()
        self._releaseBudget()  # What still comes is dropped, not held.
        transport: Any = self.transport
        if transport is None or self._refused or transport.disconnecting:
            return  # Closing already: nothing more is written.
        self._refused = self._closing = True
        self.persistent = False
        data = plainAnswer(code, refusal(transport, code, why), True)
        if self._answers:
            answer = Answer(self, {}, True)
            answer.data, answer.after = data, self._cutOffLater
            self._answers.append(answer)
            self.answered()
        else:
            transport.write(data)
            self._cutOffLater()

    def _cutOffLater(self) -> None:
        """
        Stop writing, and cut the connection off after a grace period.
        """
        transport: Any = self.transport
        if transport is None:
            return
        self._cutOff = self.factory.reactor.callLater(_REFUSED_GRACE, _abort, transport)
        halfClose = getattr(transport, "loseWriteConnection", None)
        if halfClose is None or ISSLTransport.providedBy(transport):
            # Beneath TLS, the TCP connection's would cut TLS short.
            self.loseConnection()
        else:
            halfClose()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.requestWhole()
        self._releaseBudget()
        _cancelled(self._cutOff)
        _cancelled(self._endedCall)
        self._cutOff = self._endedCall = None
        answers, self._answers = self._answers, deque()
        for answer in answers:
            if answer.data is None and answer.lost is not None:
                answer.lost()
        super().connectionLost(reason)
        self.factory.channelGone(self)
