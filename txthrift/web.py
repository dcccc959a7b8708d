"""
Thrift over HTTP, served by C{twisted.web}: L{ThriftResource}, one Thrift
message per C{POST} body answered with one message, and L{ThriftSite}, the
C{Site} that refuses a body over the limit while it arrives and knows its
connections, for a graceful stop (its connections, which read the plain
requests Thrift clients send themselves, are L{txthrift._webchannel}'s).

A request goes the way a TCP one does: its protocol told from its first
byte by the framing layer's detection, decoded by a shared L{Codec},
answered by the same dispatcher (L{txthrift._dispatch}), under the same
C{call_timeout}; a request whose client goes cancels its handler's work.
What HTTP adds is only the envelope: status codes for what is not a Thrift
call at all, and a content type per protocol.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Any
from typing import Protocol as TypingProtocol

from thrift.protocol.TProtocol import TProtocolBase
from thrift.Thrift import TApplicationException, TMessageType
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Site

from ._budget import budgetFor
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
from ._framing import PROTOCOLS, checkChoice, detectFramer
from ._limits import Limits, defaultReactor
from ._observing import ICallObserver
from ._scanning import FrameError, largeMessageSizes
from ._service import shortName
from ._waiters import Waiters
from ._webchannel import CONTENT_TYPES, TEXT, Channel, ThriftRequest, refusal

__all__ = ["CONTENT_TYPES", "ThriftResource", "ThriftSite", "mounted"]

log = Logger(namespace="txthrift.web")


_CALL, _ONEWAY = TMessageType.CALL, TMessageType.ONEWAY
#: The most characters of a peer-chosen text (a method name, a decoder's
#: complaint) an error answer or log line repeats.
_MOST_SHOWN = 200
#: A path whose plain requests a connection reads itself: one needing no
#: escapes, which a request names in one way only.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@/-]*")


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
    body = refusal(getattr(request, "transport", None), code, why)
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", TEXT)
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


class _Exchange(TypingProtocol):
    """
    One request's way back to its client: a C{twisted.web} request's
    (L{_WebExchange}), or that of a request its connection read itself
    (L{txthrift._webchannel.Answer}), so that both are answered by the same
    code.
    """

    def origin(self, service: str) -> Origin:
        """
        Where the request comes from, its headers included.
        """

    def thrift(self, protocol: str, reply: bytes) -> None:
        """
        Answer C{200} with a Thrift reply (empty for oneway).
        """

    def plain(self, code: int, why: str) -> None:
        """
        Answer C{code} with C{why} as text: the request is no Thrift call.
        """

    def whenGone(self, lost: Callable[[], None]) -> None:
        """
        Call C{lost} should the client go before its answer.
        """


class _WebExchange:
    """
    A C{twisted.web} request's way back to its client.
    """

    __slots__ = ("request",)

    def __init__(self, request: Any) -> None:
        self.request = request

    def origin(self, service: str) -> Origin:
        return _originOf(self.request, service)

    def thrift(self, protocol: str, reply: bytes) -> None:
        _thrift(self.request, protocol, reply, finish=True)

    def plain(self, code: int, why: str) -> None:
        request = self.request
        request.write(_plain(request, code, why))
        request.finish()

    def whenGone(self, lost: Callable[[], None]) -> None:
        self.request.notifyFinish().addErrback(lambda failure: lost())


class _Call:
    """
    One request whose reply a handler is still computing.
    """

    __slots__ = ("codec", "exchange", "mtype", "name", "seqid", "started", "timer")

    def __init__(self, exchange: _Exchange | None, codec: Codec, name: str, mtype: int,
                 seqid: int, started: object) -> None:
        # None for a oneway call, answered already.
        self.exchange = exchange
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
        self._served: str = getattr(self.dispatcher, "serviceName", "")
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

    def render(self, request: Any) -> int:
        exchange = _WebExchange(request)
        if request.method != b"POST":
            request.setHeader(b"Allow", b"POST")
            exchange.plain(http.NOT_ALLOWED,
                           f"Thrift over HTTP takes POST, not {_shown(repr(request.method))}")
        else:
            self.answer(exchange, _body(request, self.limits.max_frame_size))
        return NOT_DONE_YET

    def answer(self, exchange: _Exchange, body: bytes | None) -> None:
        """
        Answer one request's body through C{exchange}, now or once its
        handler's reply comes.

        @param body: the body, or C{None} for one over C{max_frame_size}.
        """
        most = self.limits.max_frame_size
        if body is None or len(body) > most:
            exchange.plain(http.REQUEST_ENTITY_TOO_LARGE,
                           f"the request body is over {most} bytes (max_frame_size)")
            return
        try:
            protocol = self._protocolOf(body)
        except FrameError as error:
            exchange.plain(http.BAD_REQUEST, f"not a Thrift message: {_shown(str(error))}")
            return
        codec = self._codec(protocol)
        try:
            iprot, name, mtype, seqid = codec.readHeader(body)
        except Exception as error:
            exchange.plain(http.BAD_REQUEST,
                           f"unreadable Thrift message header: {_shown(str(error))}")
            return
        if mtype != _CALL and mtype != _ONEWAY:
            exchange.plain(http.BAD_REQUEST,
                           f"message type {mtype} of {shortName(name)!r} is not a call")
            return
        call = (exchange.origin(self._served), name, seqid,
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
            self._await(None if mtype == _ONEWAY else exchange, reply, codec, name, mtype, seqid,
                        started)
            if mtype == _ONEWAY:
                exchange.thrift(protocol, b"")
            return
        if observer is not None:
            observer.callEnded(started, "oneway" if mtype == _ONEWAY else Outcome.last,
                               len(reply or b""))
        exchange.thrift(protocol, reply or b"")

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

    def _await(self, exchange: _Exchange | None, reply: Deferred[bytes | None], codec: Codec,
               name: str, mtype: int, seqid: int, started: object = None) -> None:
        call = _Call(exchange, codec, name, mtype, seqid, started)
        timeout = self.limits.call_timeout
        if timeout is not None:
            call.timer = self.clock.callLater(timeout, self._timedOut, reply, timeout)
        self._calls[reply] = call
        if exchange is not None:
            exchange.whenGone(partial(self._lost, reply))
        reply.addCallbacks(self._replied, self._unanswered, callbackArgs=(reply,),
                           errbackArgs=(reply,))

    def _replied(self, answer: bytes | None, reply: Deferred[bytes | None]) -> None:
        call = self._calls.pop(reply, None)
        if call is None:
            return  # Answered already (timed out), or its client went.
        call.stopTimer()
        self._ended(call, Outcome.last, answer)
        if call.exchange is not None:
            call.exchange.thrift(call.codec.protocol, answer or b"")
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
        if call.exchange is not None:
            call.exchange.thrift(call.codec.protocol, answer or b"")
        Cancelling.cancel(reply)
        self._maybeIdle()

    def _ended(self, call: _Call, outcome: str, answer: bytes | None) -> None:
        if self.observer is not None:
            self.observer.callEnded(call.started, "oneway" if call.mtype == _ONEWAY else outcome,
                                    len(answer or b""))

    def _lost(self, reply: Deferred[bytes | None]) -> None:
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
    requestFactory = ThriftRequest
    protocol = Channel  # type: ignore[assignment]

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
        #: The resource whose plain requests a connection reads itself, and
        #: their request line (L{Channel}); None where it reads none.
        self.thriftResource: ThriftResource | None = None
        self.plainRequestLine: bytes | None = None
        target = "/" + "/".join(part for part in path.split("/") if part)
        if isinstance(resource, ThriftResource) and _PLAIN_PATH.fullmatch(target):
            self.thriftResource = resource
            self.plainRequestLine = b"POST %s HTTP/1.1" % target.encode("ascii")
        self._dateSecond = -1
        self._dateLine = b""

    def dateLine(self) -> bytes:
        """
        The C{Date} header of an answer now, made once a second.
        """
        second = int(self.reactor.seconds())
        if second != self._dateSecond:
            self._dateSecond = second
            self._dateLine = b"Date: %s\r\n" % http.datetimeToString(second)
        return self._dateLine

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

    def channelGone(self, channel: http.HTTPChannel) -> None:
        self.connections.discard(channel)
        if not self.connections:
            self._goneWaiters.fire()
