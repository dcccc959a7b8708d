"""
Thrift over HTTP, served by C{twisted.web}: L{ThriftResource}, one Thrift
message per C{POST} body answered with one message, and L{ThriftSite}, the
C{Site} that refuses a body over the limit while it arrives and knows its
connections, for a graceful stop.

A request goes the way a TCP one does: its protocol told from its first
byte by the framing layer's detection, decoded by a shared L{Codec},
answered by the same dispatcher (L{txthrift._dispatch}), under the same
C{call_timeout}; a request whose client goes cancels its handler's work.
What HTTP adds is only the envelope: status codes for what is not a Thrift
call at all, and a content type per protocol.
"""

from __future__ import annotations

from functools import partial
from types import ModuleType
from typing import Any, Final

from thrift.protocol.TProtocol import TProtocolBase
from thrift.Thrift import TApplicationException, TMessageType
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, ISSLTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Site

from ._budget import budgetFor
from ._codec import CONTENT_TYPES as _CODEC_CONTENT_TYPES
from ._codec import Codec
from ._context import Origin, callingFrom, doneCalling, originOf
from ._dispatch import (
    Cancelling,
    Dispatcher,
    Outcome,
    Reply,
    dispatchLarge,
    exceptionReply,
    makeDispatcher,
)
from ._framing import PROTOCOLS, checkChoice, detectFramer, peerText
from ._limits import Limits, defaultReactor
from ._observing import ICallObserver
from ._scanning import FrameError, largeMessageSizes
from ._service import shortName
from ._twistedinternals import WatchedRequest
from ._waiters import Waiters

__all__ = ["CONTENT_TYPES", "ThriftResource", "ThriftSite", "mounted"]

log = Logger(namespace="txthrift.web")

#: The C{Content-Type} of a reply in each protocol (L{txthrift._codec.CONTENT_TYPES}).
CONTENT_TYPES: Final = {protocol: media.encode("ascii")
                        for protocol, media in _CODEC_CONTENT_TYPES.items()}

_CALL, _ONEWAY = TMessageType.CALL, TMessageType.ONEWAY
_TEXT = b"text/plain; charset=utf-8"
#: The most characters of a peer-chosen text (a method name, a decoder's
#: complaint) an error answer or log line repeats.
_MOST_SHOWN = 200
#: Seconds a connection whose request was refused (413, 408) keeps reading,
#: and dropping, what its client still sends, so that the client reads the
#: answer instead of a reset; then it is cut off.
_REFUSED_GRACE = 10.0


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MOST_SHOWN else text[:_MOST_SHOWN] + "..."


def _originOf(request: Any, service: str) -> Origin:
    """
    Where a request's call comes from, its headers included (names in
    lower case, repeated ones joined by commas as HTTP allows).
    """
    headers = {name.decode("latin-1").lower(): b", ".join(values).decode("latin-1")
               for name, values in request.requestHeaders.getAllRawHeaders()}
    return originOf(request.transport, service, headers=headers)


def _plain(request: Any, code: int, why: str) -> bytes:
    """
    Answer C{request} with C{code} and C{why} as text (a request that is no
    Thrift call: no Thrift reply can say so).
    """
    log.info("refused an HTTP request from {peer}: {code} {why}",
             peer=peerText(getattr(request, "transport", None)), code=code, why=why)
    body = (why + "\n").encode()
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", _TEXT)
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return body


def _body(request: Any, most: int) -> bytes | None:
    """
    The request's body, or C{None} if it is over C{most} bytes (only
    C{most + 1} of them are read).
    """
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    data: bytes = content.read(most + 1)
    return data if len(data) <= most else None


class _Call:
    """
    One request whose reply a handler is still computing.
    """

    __slots__ = ("codec", "mtype", "name", "request", "seqid", "started", "timer")

    def __init__(self, request: Any, codec: Codec, name: str, mtype: int, seqid: int,
                 started: object) -> None:
        # None for a oneway call, answered already.
        self.request = request
        #: What the observer gave back for it, if one watches.
        self.started = started
        self.codec = codec
        self.name = name
        self.mtype = mtype
        self.seqid = seqid
        self.timer: IDelayedCall | None = None

    def stopTimer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()


class ThriftResource(Resource):
    """
    Serves a Thrift handler over HTTP: each C{POST} body is one Thrift
    message (binary, compact or JSON, told from its first byte, or fixed),
    answered with the reply as the body of a C{200}, its C{Content-Type}
    that of its protocol (L{CONTENT_TYPES}); a oneway call gets a C{200}
    with an empty body at once.  Mounted anywhere in a C{Site}
    (C{putChild}), or returned by a klein route; it answers its own path
    and any below it.

    What is not a Thrift call gets a plain-text answer instead: a method
    other than C{POST}, C{405} (with C{Allow: POST}); a body over
    C{max_frame_size}, C{413} (L{ThriftSite} refuses it before reading it
    whole; another C{Site} reads it first); a body that is empty or starts
    no Thrift message, or whose message header cannot be read, or that is
    not a call, C{400}.  A call whose header could be read gets a Thrift
    reply whatever else is wrong with it (undecodable arguments, an unknown
    method, a handler failing, C{call_timeout}): a
    C{TApplicationException}, as on TCP.  A request whose client goes
    before its reply cancels the handler's work on it.

    @ivar limits: the L{Limits} requests are held to; of them, HTTP uses
        C{max_frame_size}, C{max_string_length}, C{max_container_length},
        C{max_depth} and C{call_timeout} here, and L{ThriftSite}
        C{partial_timeout} and C{idle_timeout}.
    """

    isLeaf = True

    def __init__(self, handler: object, *, service: ModuleType | None = None,
                 protocol: str = "auto", clock: IReactorTime | None = None,
                 observer: ICallObserver | None = None, **limits: Any) -> None:
        """
        @param handler: what L{txthrift.serve} takes: a handler object, a
            processor, or a mapping of service names to either (multiplexed,
            for clients using Apache's C{TMultiplexedProtocol}).
        @param service: the generated service module, when it cannot be
            found from the handler's C{Iface}.
        @param protocol: C{"binary"}, C{"compact"}, C{"json"}, or C{"auto"}
            to tell each request's from its first byte.
        @param clock: the reactor's time, for C{call_timeout}; the global
            reactor when omitted.
        @param limits: keywords of L{Limits}.
        @raise TypeError: for a handler whose service cannot be found, or an
            unknown limit.
        @raise ValueError: for an unknown protocol or a bad limit.
        """
        super().__init__()
        #: Told of each call (as a server's observer is; HTTP has no
        #: connections of its own to tell of).
        self.observer = observer
        # Asked once, as a server connection asks it: not per request.
        self._dispatched = getattr(observer, "dispatched", None)
        self.dispatcher: Dispatcher = makeDispatcher(handler, service)
        self.protocolName = checkChoice("protocol", protocol, PROTOCOLS)
        self.limits = Limits.from_keywords(**limits)
        self.clock: IReactorTime = clock or defaultReactor()
        self._codecs: dict[str, Codec] = {}
        # The protocol a body's first byte says, as the framing layer's
        # detection tells it; only bytes that say one are kept.
        self._detected: dict[int, str] = {}
        # (depth walked from, slow path from) for each protocol's bodies.
        self._sizes: dict[str, tuple[int, int]] = {}
        self._calls: dict[Deferred[bytes | None], _Call] = {}
        self._idleWaiters = Waiters()

    @property
    def inFlight(self) -> int:
        """
        Calls whose reply a handler is still computing (oneway ones
        included, though answered), as a graceful stop waits for.
        """
        return len(self._calls)

    def whenIdle(self) -> Deferred[None]:
        """
        Wait until no call is in flight.

        @return: a Deferred of its own for each caller, firing with C{None}
            then (at once if none is now); cancelling it stops only that wait.
        """
        return self._idleWaiters.wait(not self._calls)

    def render(self, request: Any) -> bytes | int:
        if request.method != b"POST":
            request.setHeader(b"Allow", b"POST")
            return _plain(request, http.NOT_ALLOWED,
                          f"Thrift over HTTP takes POST, not {_shown(repr(request.method))}")
        most = self.limits.max_frame_size
        body = _body(request, most)
        if body is None:
            return _plain(request, http.REQUEST_ENTITY_TOO_LARGE,
                          f"the request body is over {most} bytes (max_frame_size)")
        return self._answer(request, body)

    def _answer(self, request: Any, body: bytes) -> bytes | int:
        try:
            protocol = self._protocolOf(body)
        except FrameError as error:
            return _plain(request, http.BAD_REQUEST, f"not a Thrift message: {_shown(str(error))}")
        codec = self._codec(protocol)
        try:
            iprot, name, mtype, seqid = codec.readHeader(body)
        except Exception as error:
            return _plain(request, http.BAD_REQUEST,
                          f"unreadable Thrift message header: {_shown(str(error))}")
        if mtype != _CALL and mtype != _ONEWAY:
            return _plain(request, http.BAD_REQUEST,
                          f"message type {mtype} of {shortName(name)!r} is not a call")
        served = getattr(self.dispatcher, "serviceName", "")
        call = (_originOf(request, served), name, seqid,
                None if self.limits.call_timeout is None
                else self.clock.seconds() + self.limits.call_timeout, None)
        observer = self.observer
        started = None if observer is None else observer.callStarted(call, len(body))
        token = callingFrom(call)
        try:
            reply = self._dispatch(body, codec, iprot, name, mtype, seqid)
        finally:
            doneCalling(token)
            if self._dispatched is not None:
                self._dispatched(started)
        if isinstance(reply, Deferred):
            # A oneway caller is answered now, its work still in flight.
            self._await(None if mtype == _ONEWAY else request, reply, codec, name, mtype, seqid,
                        started)
            return _thrift(request, protocol, b"") if mtype == _ONEWAY else NOT_DONE_YET
        if observer is not None:
            observer.callEnded(started, "oneway" if mtype == _ONEWAY else Outcome.last,
                               len(reply or b""))
        return _thrift(request, protocol, reply or b"")

    def _protocolOf(self, body: bytes) -> str:
        """
        The protocol of a body, as the framing layer detects an unframed
        stream's from its first byte.

        @raise FrameError: for an empty body, or one starting no message of
            the protocols allowed.
        """
        if not body:
            raise FrameError("the request body is empty")
        known = self._detected.get(body[0])
        if known is None:
            framer = detectFramer(body[:1], "buffered", self.protocolName, self.limits)
            assert framer is not None  # One byte tells an unframed stream.
            known = self._detected[body[0]] = framer.protocol
        return known

    def _codec(self, protocol: str) -> Codec:
        codec = self._codecs.get(protocol)
        if codec is None:
            codec = self._codecs[protocol] = Codec(protocol, self.limits)
        return codec

    def _dispatch(self, body: bytes, codec: Codec, iprot: TProtocolBase, name: str,
                  mtype: int, seqid: int) -> Reply:
        """
        Dispatch as a TCP connection does a framed message: a big body is
        walked for its depth first (unless its decoder checks it) and
        decoded with the garbage collector held off.
        """
        sizes = self._sizes.get(codec.protocol)
        if sizes is None:
            # A body is a whole message of known length, as a frame is.
            sizes = self._sizes[codec.protocol] = largeMessageSizes(
                "framed", codec.protocol, self.limits, codec.checksDepth)
        depthFrom, largeFrom = sizes
        if len(body) < largeFrom:
            return self._dispatchNow(codec, iprot, name, mtype, seqid)
        return dispatchLarge(partial(self._dispatchNow, codec, iprot, name, mtype, seqid), body,
                             depthFrom, codec, self.limits, name, mtype, seqid)

    def _dispatchNow(self, codec: Codec, iprot: TProtocolBase, name: str, mtype: int,
                     seqid: int) -> Reply:
        try:
            return self.dispatcher.dispatch(codec, iprot, name, mtype, seqid)
        except Exception:  # pragma: no cover - dispatchers do not raise
            log.failure("dispatching {name} failed", name=shortName(name))
            return exceptionReply(codec, shortName(name), mtype, seqid,
                                   TApplicationException.INTERNAL_ERROR, "Internal error")

    def _await(self, request: Any, reply: Deferred[bytes | None], codec: Codec, name: str,
               mtype: int, seqid: int, started: object = None) -> None:
        call = _Call(request, codec, name, mtype, seqid, started)
        timeout = self.limits.call_timeout
        if timeout is not None:
            call.timer = self.clock.callLater(timeout, self._timedOut, reply, timeout)
        self._calls[reply] = call
        if request is not None:
            request.notifyFinish().addErrback(self._lost, reply)
        reply.addCallbacks(self._replied, self._unanswered, callbackArgs=(reply,),
                           errbackArgs=(reply,))

    def _replied(self, answer: bytes | None, reply: Deferred[bytes | None]) -> None:
        call = self._calls.pop(reply, None)
        if call is None:
            return  # Answered already (timed out), or its client went.
        call.stopTimer()
        self._ended(call, Outcome.last, answer)
        if call.request is not None:
            _thrift(call.request, call.codec.protocol, answer or b"", finish=True)
        self._maybeIdle()

    def _unanswered(self, failure: Failure, reply: Deferred[bytes | None]) -> None:
        # Dispatchers turn failures into replies; one that could not (its
        # reply would not encode, say) still gets the caller an answer.
        call = self._calls.get(reply)
        if call is None:
            return
        if not Cancelling.active:
            log.failure("replying to {name} failed", failure, name=shortName(call.name))
        self._replied(exceptionReply(call.codec, call.name, call.mtype, call.seqid,
                                     TApplicationException.INTERNAL_ERROR,
                                     f"Internal error processing {call.name}"), reply)

    def _timedOut(self, reply: Deferred[bytes | None], timeout: float) -> None:
        # Answered now, whatever the handler does with its cancellation.
        call = self._calls.pop(reply, None)
        if call is None:  # pragma: no cover - the timer is stopped first
            return
        call.timer = None
        name = call.name
        log.warn("{name} got no answer from its handler within {timeout}s; cancelled",
                 name=shortName(name), timeout=timeout)
        answer = exceptionReply(
            call.codec, name, call.mtype, call.seqid, TApplicationException.INTERNAL_ERROR,
            f"{name} did not finish within {timeout} seconds on the server")
        self._ended(call, "timeout", answer)
        if call.request is not None:
            _thrift(call.request, call.codec.protocol, answer or b"", finish=True)
        Cancelling.cancel(reply)
        self._maybeIdle()

    def _ended(self, call: _Call, outcome: str, answer: bytes | None) -> None:
        if self.observer is not None:
            self.observer.callEnded(call.started, "oneway" if call.mtype == _ONEWAY else outcome,
                                    len(answer or b""))

    def _lost(self, failure: Failure, reply: Deferred[bytes | None]) -> None:
        """
        The client went before its reply: nobody waits for the work any more.
        """
        call = self._calls.pop(reply, None)
        if call is not None:
            self._ended(call, "cancelled", None)
            call.stopTimer()
            Cancelling.cancel(reply)
            self._maybeIdle()

    def _maybeIdle(self) -> None:
        if not self._calls and self._idleWaiters:
            self._idleWaiters.fire()


def _thrift(request: Any, protocol: str, reply: bytes, finish: bool = False) -> bytes:
    """
    Answer C{request} with a Thrift reply (empty for oneway); with
    C{finish}, write it and finish the request, as a reply that came later
    must be.
    """
    request.setResponseCode(http.OK)
    request.setHeader(b"Content-Type", CONTENT_TYPES[protocol])
    request.setHeader(b"Content-Length", b"%d" % len(reply))
    if finish:
        if reply:
            request.write(reply)
        request.finish()
    return reply


def mounted(resource: IResource, path: str = "/") -> IResource:
    """
    A root resource serving C{resource} at C{path} (C{"/"}: it is the
    root), for a C{Site}.

    @raise ValueError: for a path that does not start with C{/}.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"an HTTP path starts with /, not {path!r}")
    root = resource
    for segment in reversed([part for part in path.split("/") if part]):
        parent = _Branch()
        parent.putChild(segment.encode(), root)
        root = parent
    return root


class _Branch(Resource):
    """
    A path segment above the resource served: nothing else is there.
    """

    def getChild(self, path: bytes, request: Any) -> IResource:
        return notFound()


class _ThriftRequest(WatchedRequest):
    """
    A request of a L{ThriftSite}: its body refused (C{413}) once it is over
    the site's C{max_frame_size}, by its declared length or as it comes;
    the whole request timed by its connection (L{_Channel}).
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


def _cancelled(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


def _abort(transport: Any) -> None:
    transport.abortConnection()


class _Channel(http.HTTPChannel):
    """
    An HTTP/1.1 connection its L{ThriftSite} knows of while it is open,
    timing each request from its first byte to its body's last: one that
    takes over C{partial_timeout} is refused (C{408}), as a TCP connection
    is closed for a message slow to come.
    """

    factory: ThriftSite
    _partialTimer: IDelayedCall | None = None
    _cutOff: IDelayedCall | None = None
    _host: IAddress | None = None
    _budgetPaused = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.connections.add(self)

    def getHost(self) -> IAddress:
        # Every request asks (twisted.web's Request.__init__), and the
        # transport would ask the system (getsockname) each time.
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def dataReceived(self, data: bytes) -> None:
        # With no request under way, these bytes begin one.
        if not self.requests:
            self.requestBegun()
        super().dataReceived(data)

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
            transport.resumeProducing()

    def _releaseBudget(self) -> None:
        budget = self.factory.partialBudget
        if budget is not None:
            budget.release(self)

    def refuse(self, code: int, why: str) -> None:
        """
        Answer C{code} and close, before a request is whole: no request can
        write a response yet, so this writes one on the connection itself
        (as C{twisted.web} does for a bad request); its client gets it even
        while still sending, since what it sends is read and dropped for a
        grace period before the connection is cut.
        """
        self.requestWhole()
        self._releaseBudget()  # What still comes is dropped, not held.
        transport = self.transport
        if transport is None or self._cutOff is not None:
            return
        log.info("refused an HTTP request from {peer}: {code} {why}", peer=peerText(transport),
                 code=code, why=why)
        body = (why + "\n").encode()
        phrase = http.RESPONSES.get(code, b"")
        transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                        b"Connection: close\r\n\r\n%s" % (code, phrase, _TEXT, len(body), body))
        self.persistent = False
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
        self._cutOff = None
        super().connectionLost(reason)
        self.factory._gone(self)


class ThriftSite(Site):
    """
    A C{Site} for Thrift over HTTP (what L{txthrift.serve} and C{twistd
    thrift --http-port} listen with): a body over C{max_frame_size} is
    answered C{413} and the connection closed before it is read whole (by
    its C{Content-Length}, or by counting a chunked one); a request that
    takes over C{partial_timeout} to arrive is answered C{408} and its
    connection closed; a connection idle for C{idle_timeout} (when set;
    never otherwise, as on TCP) is closed.  No access log: as on TCP,
    calls are not logged one by one.  Bodies are held in memory, bounded by
    C{max_frame_size} each and by C{partial_budget} together while they
    arrive (past it, connections reading more wait, as on TCP).  HTTP/1.1
    only.

    @ivar limits: the limits above.
    @ivar connections: the open HTTP connections.
    """

    noisy = False
    requestFactory = _ThriftRequest
    protocol = _Channel  # type: ignore[assignment]

    def __init__(self, resource: IResource, *, path: str = "/", limits: Limits | None = None,
                 reactor: Any = None) -> None:
        """
        @param resource: the resource to serve, a L{ThriftResource} or any
            other (a klein app's C{resource()}, a tree of them).
        @param path: where C{resource} is served (L{mounted}).
        @param limits: the limits above; by default a L{ThriftResource}'s own.
        @param reactor: the reactor, for time and timeouts; the global one
            when omitted.
        """
        if limits is None:
            limits = resource.limits if isinstance(resource, ThriftResource) else Limits()
        self.limits = limits
        # No idle_timeout: never, as on TCP (twisted.web's default is 12
        # hours, and a timer set again around every request).
        super().__init__(mounted(resource, path), reactor=reactor or defaultReactor(),
                         timeout=limits.idle_timeout)
        self.connections: set[http.HTTPChannel] = set()
        self._goneWaiters = Waiters()
        #: Bytes of bodies arriving, over all connections (C{partial_budget}).
        self.partialBudget = budgetFor(limits)

    def log(self, request: Any) -> None:
        """
        No access log line per request.
        """

    def whenDisconnected(self) -> Deferred[None]:
        """
        Wait until no connection is open.

        @return: a Deferred of its own for each caller, firing with C{None}
            then (at once if none is open now); cancelling it stops only that
            wait.
        """
        return self._goneWaiters.wait(not self.connections)

    def closeConnections(self) -> None:
        """
        Close every connection once what is written to it has gone.
        """
        for channel in list(self.connections):
            channel.loseConnection()

    def abortConnections(self) -> None:
        """
        Cut every connection off at once.
        """
        for channel in list(self.connections):
            transport: Any = channel.transport
            if transport is not None:
                transport.abortConnection()

    def _gone(self, channel: http.HTTPChannel) -> None:
        self.connections.discard(channel)
        if not self.connections:
            self._goneWaiters.fire()
