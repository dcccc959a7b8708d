"""
The server side of a connection: L{ServerProtocol} takes requests off one
connection and puts their replies back on it; L{ServerFactory} builds them
for one handler, processor or mapping of them and knows when none is busy.

Owned here: what a connection does with its requests in time -- how many
run at once (backpressure), call, idle and half-closed timeouts, a peer that
stops sending or reading, replies in the order they are ready, each call
ending in exactly one outcome.  Turning one request into its reply is the
L{Dispatcher}'s (L{txthrift._dispatch}); nothing here knows of handlers,
processors or services, nor of the byte layout beneath the framing.
"""

from __future__ import annotations

import select
import socket
from collections import deque
from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Any, ClassVar

from thrift.protocol.TProtocol import TProtocolBase
from thrift.Thrift import TApplicationException, TMessageType
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
    ISystemHandle,
)
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

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
from ._framing import (
    PROTOCOLS,
    TRANSPORTS,
    NamedLogger,
    ThriftMessageProtocol,
    checkChoice,
    checkFraming,
    peerText,
)
from ._header import Envelope, ServerHeaders
from ._limits import Limits, defaultReactor
from ._observing import ICallObserver, refusalKind
from ._scanning import FrameError, largeMessageSizes
from ._service import shortName
from ._tls import tlsFailure
from ._waiters import Waiters

__all__ = ["ServerFactory", "ServerProtocol"]

log = Logger(namespace="txthrift.server")

_CALL, _ONEWAY = TMessageType.CALL, TMessageType.ONEWAY

#: What select.poll reports once a peer's stream has ended, where it can
#: tell (Linux), even with bytes still unread in front of the end.
_PEER_HUNG_UP: int | None = getattr(select, "POLLRDHUP", None)
_PEER_FAILED: int = getattr(select, "POLLHUP", 0) | getattr(select, "POLLERR", 0)
#: Seconds between two looks at the end of the stream of a connection whose
#: reading is paused for our own backlog.
_PROBE_INTERVAL = 1.0

#: Seconds a closing connection's peer has to take what we still send it,
#: when no idle_timeout says otherwise.
_CLOSE_GRACE = 10.0


@implementer(IPushProducer, IHalfCloseableProtocol)
class ServerProtocol(ThriftMessageProtocol):
    """
    One server connection: requests in, replies out, each with its request's
    seqid, many at once.

    Every request ends in exactly one of: its reply, a logged oneway
    failure, or this connection closing; its slot in C{max_pending} is
    released whichever it is.

    Reading pauses while C{max_pending} requests are in flight, or while the
    peer is not reading its replies, so a connection's memory stays bounded.
    A peer that shuts down its sending side still gets every reply, each
    within C{half_closed_timeout} of the one before, then the connection
    closes; one that goes cancels the handlers' work on its calls.

    A subclass may see each request as it arrives by overriding
    L{messageReceived} (requests held for room are later processed by
    L{_processRequest}, which does not go through the override), and choose
    its codec with L{_makeCodec}.

    @ivar dispatcher: what answers this connection's requests.
    """

    log: ClassVar[Logger] = NamedLogger(namespace="txthrift.server")
    factory: ServerFactory
    dispatcher: Dispatcher
    #: Who the peer proved to be, where something before the first request
    #: (SASL) told; else its TLS certificate's common name says.
    identity: str | None = None
    _origin: Origin | None = None
    #: The codec of a THeader connection, which opens its frames.
    _headers: ServerHeaders | None = None
    #: Who watches this connection's calls (its factory's observer), and
    #: its optional dispatched().
    _observer: Any = None
    _dispatched: Any = None
    # What largeMessageSizes says, set by _sizes at the first request (0
    # until then).
    _depthFloor = 0
    _largeFrom = 0

    def __init__(self, dispatcher: Dispatcher | None, clock: IReactorTime,
                 transport: str = "auto", protocol: str = "auto",
                 limits: Limits | None = None) -> None:
        """
        @param dispatcher: what answers the requests; C{None} from a subclass
            that sets L{dispatcher} itself before the connection is made
            (from its factory, say).
        """
        super().__init__(transport, protocol, limits)
        if dispatcher is not None:
            self.dispatcher = dispatcher
        self._clock = clock
        self._codec: Codec | None = None
        # The calls whose reply is being computed, each with its timeout.
        self._calls: dict[Deferred[bytes | None], IDelayedCall | None] = {}
        # Timed-out calls whose handlers carry on, ignoring the cancellation.
        self._lingering: set[Deferred[bytes | None]] = set()
        self._queue: deque[bytes] = deque()
        # What the observer gave back for each call in _calls, and whether
        # it is oneway.
        self._observed: dict[Deferred[bytes | None], tuple[object, bool]] = {}
        # On THeader, the seqid and envelope of each call in _calls.
        self._envelopes: dict[Deferred[bytes | None], tuple[int, list[Envelope | None]]] = {}
        self._readPaused = False
        self._readClosed = False
        self._draining = False
        self._writePaused = False
        self._idleCall: IDelayedCall | None = None
        self._abortCall: IDelayedCall | None = None
        # When the peer's stream ended (or was seen to), with calls to answer.
        self._ended: float | None = None
        self._endedCall: IDelayedCall | None = None
        self._probeCall: IDelayedCall | None = None
        # Read per message, so kept at hand, on the instance (a class
        # attribute read through an instance is Python's slower path).
        self._headers = self._observer = self._dispatched = None
        self._idleTimeout = self.limits.idle_timeout
        self._callTimeout = self.limits.call_timeout
        self._maxPending = self.limits.max_pending
        # Told when this connection's last call ends (see ServerFactory.whenIdle).
        self._idleWatch: ServerFactory | None = None
        self.connected = False

    @property
    def inFlight(self) -> int:
        """
        Requests whose reply is still being computed.
        """
        return len(self._calls)

    @property
    def queued(self) -> int:
        """
        Requests read but held until there is room for them.
        """
        return len(self._queue)

    def connectionMade(self) -> None:
        self.connected = True
        connections = self._connections()
        if connections is not None:
            connections.add(self)
        factory = getattr(self, "factory", None)
        if isinstance(factory, ServerFactory):
            self._idleWatch = factory
            self._observer = factory.observer
            if self._observer is not None:
                self._dispatched = getattr(self._observer, "dispatched", None)
                self._observer.connectionOpened()
        transport: Any = self.transport
        transport.registerProducer(self, True)
        self._armIdle()
        if self.framer is not None:
            self.framingDetected()

    def framingDetected(self) -> None:
        codec = self._codec = self._makeCodec()
        if self.transportName == "header":
            # Each request comes in a THeader frame, each reply goes in one.
            framer: Any = self.framer
            codec = self._codec = self._headers = ServerHeaders(
                codec, self.limits, inFrames=framer.prefixed)

    def _makeCodec(self) -> Codec:
        """
        The codec of this connection's requests and replies, made once its
        protocol is known: the factory's, shared by its connections, where
        it has one.  A subclass may make its own (with other protocol
        factories, say).
        """
        shared = getattr(getattr(self, "factory", None), "codec", None)
        if shared is not None:
            codec: Codec = shared(self.protocolName)
            return codec
        return Codec(self.protocolName, self.limits)

    def messageReceived(self, message: bytes) -> None:
        """
        Process one request: now, or once there is room for it.
        """
        if self._idleTimeout is not None:
            self._armIdle()
        if (len(self._calls) >= self._maxPending or self._writePaused
                or (self._lingering and len(self._lingering) > self._maxPending)):
            # Full, or the peer is not reading its replies: hold the request.
            self._queue.append(message)
            self._updateReading()
            return
        codec = self._codec
        assert codec is not None
        try:
            iprot, name, mtype, seqid = codec.readHeader(message)
        except Exception as error:
            self._unreadable(error)
            return
        if mtype != _CALL and mtype != _ONEWAY:
            self._refuse(f"message type {mtype} of {shortName(name)!r} is not a call")
            return
        # The handler learns of its call through currentCall(); on THeader,
        # the envelope of its request (or of its reply, once the handler
        # sets reply headers) travels with it.
        headers = self._headers
        envelope = None if headers is None else [headers.envelope]
        call = (self._origin or self._makeOrigin(), name, seqid,
                None if self._callTimeout is None else self._clock.seconds() + self._callTimeout,
                envelope)
        observer = self._observer
        started = None if observer is None else observer.callStarted(call, len(message))
        token = callingFrom(call)
        try:
            if len(message) < self._largeFrom:
                reply = self.dispatcher.dispatch(codec, iprot, name, mtype, seqid)
            else:
                reply = self._dispatchLarge(message if headers is None else headers.payload,
                                            codec, iprot, name, mtype, seqid)
        except Exception:  # pragma: no cover - dispatchers do not raise
            reply = self._dispatchFailed(codec, name, mtype, seqid)
        finally:
            doneCalling(token)
            if self._dispatched is not None:
                self._dispatched(started)
        if type(reply) is bytes:
            self.sendMessage(reply if headers is None else
                             headers.seal(reply, seqid, envelope[0] if envelope else None))
        elif isinstance(reply, Deferred):
            if envelope is not None:
                self._envelopes[reply] = (seqid, envelope)
            if observer is not None:
                self._observed[reply] = (started, mtype == _ONEWAY)
            self._await(reply, codec, name, mtype, seqid)
            return
        if observer is not None:
            observer.callEnded(started, "oneway" if mtype == _ONEWAY else Outcome.last,
                               0 if reply is None else len(reply))

    def _seal(self, reply: bytes, seqid: int, envelope: list[Envelope | None]) -> bytes:
        headers = self._headers
        assert headers is not None
        return headers.seal(reply, seqid, envelope[0])

    def _makeOrigin(self) -> Origin:
        """
        Where this connection's calls come from, told once, at its first
        request (a TLS handshake is over by then, and SASL has said who the
        peer is).  A subclass whose transport hides the peer tells its own.
        """
        served = getattr(self.dispatcher, "serviceName", "")  # a dispatcher of one's own may lack it
        origin = self._origin = originOf(self.transport, served, identity=self.identity)
        return origin

    #: L{messageReceived} as defined here, without what a subclass's override
    #: does on arrival: how queued requests are processed, and how such an
    #: override hands a request on.
    _processRequest = messageReceived

    def _unreadable(self, error: Exception) -> None:
        if isinstance(error, FrameError):  # what THeader's frame says around it
            self._refuse(str(error))
        else:
            self._refuse(f"unreadable message header: {error}")

    def frameError(self, reason: str) -> None:
        if self._observer is not None:
            self._observer.refused(refusalKind(reason))
        super().frameError(reason)

    def _refuse(self, reason: str) -> None:
        # What is queued came after this message: none of it is answered.
        self._queue.clear()
        self.frameError(reason)

    def _sizes(self, codec: Codec) -> None:
        """
        Decide, at the first request (once the framing and codec are known),
        from what size requests are walked for depth, and from what size
        they go through L{_dispatchLarge} at all.
        """
        self._depthFloor, self._largeFrom = largeMessageSizes(
            self.transportName, self.protocolName, self.limits, codec.checksDepth)

    def _dispatch(self, codec: Codec, iprot: TProtocolBase, name: str, mtype: int,
                  seqid: int) -> Reply:
        try:
            return self.dispatcher.dispatch(codec, iprot, name, mtype, seqid)
        except Exception:  # pragma: no cover - dispatchers do not raise
            return self._dispatchFailed(codec, name, mtype, seqid)

    def _dispatchFailed(self, codec: Codec, name: str, mtype: int, seqid: int) -> Reply:
        log.failure("dispatching {name} failed", name=shortName(name))
        return exceptionReply(codec, shortName(name), mtype, seqid,
                               TApplicationException.INTERNAL_ERROR, "Internal error")

    def _dispatchLarge(self, message: bytes, codec: Codec, iprot: TProtocolBase, name: str,
                       mtype: int, seqid: int) -> Reply:
        if self._largeFrom == 0:
            self._sizes(codec)
            if len(message) < self._largeFrom:
                return self._dispatch(codec, iprot, name, mtype, seqid)
        return dispatchLarge(partial(self._dispatch, codec, iprot, name, mtype, seqid), message,
                             self._depthFloor, codec, self.limits, name, mtype, seqid)

    def _await(self, reply: Deferred[bytes | None], codec: Codec, name: str, mtype: int,
               seqid: int) -> None:
        timeout = self._callTimeout
        timer = None
        if timeout is not None:
            timer = self._clock.callLater(timeout, self._timedOut, reply, codec, name, mtype,
                                          seqid, timeout)
        self._calls[reply] = timer
        reply.addCallbacks(self._replied, self._unanswered, callbackArgs=(reply,),
                           errbackArgs=(reply, codec, name, mtype, seqid))

    def _timedOut(self, reply: Deferred[bytes | None], codec: Codec, name: str, mtype: int,
                  seqid: int, timeout: float) -> None:
        # Answered now, whatever the handler does with its cancellation (it
        # may go on, ignoring it): the caller and the slot wait no longer.
        # Work that goes on all the same is counted apart: past max_pending
        # of it, reading pauses until some ends.
        self._calls.pop(reply, None)
        self._lingering.add(reply)
        log.warn("{name} got no answer from its handler within {timeout}s; cancelled",
                 name=shortName(name), timeout=timeout)
        self._send(exceptionReply(
            codec, name, mtype, seqid, TApplicationException.INTERNAL_ERROR,
            f"{name} did not finish within {timeout} seconds on the server"), reply, "timeout")
        Cancelling.cancel(reply)
        self._maybeIdle()

    def _unanswered(self, failure: Failure, reply: Deferred[bytes | None], codec: Codec,
                    name: str, mtype: int, seqid: int) -> None:
        # Dispatchers turn failures into replies; one that could not (its
        # reply would not encode, say) still gets the caller an answer.
        if reply not in self._calls:
            self._workEnded(reply)  # Answered already (timed out), or the connection went.
            return
        if not Cancelling.active:
            log.failure("replying to {name} failed", failure, name=shortName(name))
        try:
            answer = exceptionReply(codec, name, mtype, seqid,
                                     TApplicationException.INTERNAL_ERROR,
                                     f"Internal error processing {name}")
        except Exception:  # pragma: no cover - a name and a string always encode
            log.failure("cannot answer {name}; closing the connection", name=shortName(name))
            answer = None
            if self.transport is not None:
                self.transport.loseConnection()
        self._replied(answer, reply)

    def _replied(self, answer: bytes | None, reply: Deferred[bytes | None]) -> None:
        if reply not in self._calls:
            self._workEnded(reply)  # Answered already (timed out), or the connection went.
            return
        timer = self._calls.pop(reply)
        if timer is not None and timer.active():
            timer.cancel()
        self._send(answer, reply)
        if not self._calls and self._idleWatch is not None and self._idleWatch._idleWaiters:
            self._maybeIdle()

    def _maybeIdle(self) -> None:
        """
        Tell the factory if no call of this connection awaits its answer.
        """
        watch = self._idleWatch
        if watch is not None and watch._idleWaiters and not self._calls:
            watch._connectionIdle()

    def _workEnded(self, reply: Deferred[bytes | None]) -> None:
        """
        A timed-out call's work has ended at last: room for more.
        """
        if reply in self._lingering:
            self._lingering.discard(reply)
            if self.connected:
                self._drain()

    def _observedEnd(self, reply: Deferred[bytes | None], outcome: str | None,
                     answer: bytes | None) -> None:
        """
        Tell the observer a call given up on or answered later has ended:
        as C{outcome} says, or as its dispatcher said just now.
        """
        observed = self._observed.pop(reply, None)
        if observed is not None and self._observer is not None:
            started, oneway = observed
            self._observer.callEnded(started, "oneway" if oneway else outcome or Outcome.last,
                                     0 if answer is None else len(answer))

    def _send(self, answer: bytes | None, reply: Deferred[bytes | None],
              outcome: str | None = None) -> None:
        """
        Send the answer of the call C{reply} stood for, if it has one, and
        make room for the next.

        @param outcome: the call's, when its dispatcher did not say it.
        """
        if self._envelopes:
            sealing = self._envelopes.pop(reply, None)
            if sealing is not None and answer is not None:
                answer = self._seal(answer, *sealing)
        if self._observed:
            self._observedEnd(reply, outcome, answer)
        # A reply for a peer that has gone is dropped without fuss.
        if answer is not None and self.connected:
            self.sendMessage(answer)
        if self._ended is not None:
            # A peer that has stopped sending still takes replies: it gets
            # another half_closed_timeout for the next one.
            self._armEnded()
        self._armIdle()
        self._drain()

    def _drain(self) -> None:
        """
        Process queued requests while there is room.

        Re-entry (a queued request answered by an already-fired Deferred
        replies inside the loop) returns at once: the loop below goes on, so
        the stack stays flat however long the queue.
        """
        if self._draining:
            return
        self._draining = True
        try:
            while (self._queue and len(self._calls) < self._maxPending
                   and len(self._lingering) <= self._maxPending
                   and not self._writePaused and self.connected):
                self._processRequest(self._queue.popleft())
        finally:
            self._draining = False
        self._updateReading()
        if self._readClosed and not self._calls and not self._queue:
            self.close()

    def _updateReading(self) -> None:
        transport: Any = self.transport
        if not self.connected or self._readClosed or getattr(transport, "disconnecting", False):
            return  # Closing: what it reads no longer matters.
        pause = self._writePaused or bool(self._queue)
        if pause != self._readPaused:
            self._readPaused = pause
            if pause:
                transport.pauseProducing()
                self._armProbe()
            elif not self._budgetPaused:
                transport.resumeProducing()

    def _pausedElsewhere(self) -> bool:
        return self._readPaused

    def _peerNotReading(self) -> bool:
        return self._writePaused

    # IPushProducer: the transport tells us when its write buffer fills.
    def pauseProducing(self) -> None:
        self._writePaused = True
        self._updateReading()

    def resumeProducing(self) -> None:
        self._writePaused = False
        self._drain()

    def stopProducing(self) -> None:
        pass

    # IHalfCloseableProtocol: a peer that has sent all its requests (Apache's
    # blocking clients can shut down their sending side) still gets every
    # reply; then we close.  Its end of the stream looks the same as a peer
    # that has gone altogether, which only a reply it refuses would tell: if
    # no reply comes for half_closed_timeout, its calls are cancelled and
    # the connection dropped.
    def readConnectionLost(self) -> None:
        self._readClosed = True
        if not self._calls and not self._queue:
            self.close()
        else:
            self._peerEnded()

    def writeConnectionLost(self) -> None:
        # The peer takes no more replies: nothing is left to do here.
        self._abort()

    def _peerEnded(self) -> None:
        """
        The peer sends no more: what it sent is still answered, each reply
        within C{half_closed_timeout} of the one before.
        """
        if self._ended is None:
            self._ended = self._clock.seconds()
            self._armEnded()

    def _armEnded(self) -> None:
        timeout = self.limits.half_closed_timeout
        if timeout is not None and self.connected:
            self._endedCall = _rearmed(self._clock, self._endedCall, timeout, self._abandon)

    def _abandon(self) -> None:
        self._endedCall = None
        log.info("closing Thrift connection from {peer}: it sent no more requests, and"
                 " {calls} call(s) gave no reply within {timeout}s (half_closed_timeout)",
                 peer=peerText(self.transport),
                 calls=len(self._calls) + len(self._queue),
                 timeout=self.limits.half_closed_timeout)
        self._abort()

    def _armProbe(self) -> None:
        """
        While reading is paused for our own backlog, the end of the peer's
        stream cannot be read: ask the kernel now and then whether it came
        (a peer that closed with calls in flight is then dealt with as one
        that shut down its sending side).
        """
        if _PEER_HUNG_UP is None or self._ended is not None:
            return
        if self._probeCall is None or not self._probeCall.active():
            self._probeCall = self._clock.callLater(_PROBE_INTERVAL, self._probe)

    def _probe(self) -> None:
        self._probeCall = None
        if not self.connected or self._ended is not None or not self._readPaused:
            return
        seen = _streamEnd(self.transport)
        if seen & _PEER_FAILED:
            self._abort()  # Reset: nothing more can be sent either.
        elif seen:
            self._peerEnded()
        else:
            self._armProbe()

    def close(self) -> None:
        """
        Close once what is written has been sent; a peer that does not take
        it is cut off after a grace period.
        """
        if not self.connected or self.transport is None:
            return
        # Replies waiting for the reactor's next turn go to the transport
        # first, or closing would drop them.
        self._writeOut()
        self.transport.loseConnection()
        self._armAbort()

    def _armAbort(self) -> None:
        if self.connected and self._abortCall is None:
            grace = self._idleTimeout if self._idleTimeout is not None else _CLOSE_GRACE
            self._abortCall = self._clock.callLater(grace, self._abort)

    def _abort(self) -> None:
        self._abortCall = None
        transport: Any = self.transport
        if self.connected and transport is not None:
            abort = getattr(transport, "abortConnection", None)
            if abort is not None:
                abort()
            else:  # pragma: no cover - every Twisted stream transport has it
                transport.loseConnection()

    def _abortLater(self, clock: IReactorTime) -> None:
        pass  # _closeRefused has seen to it.

    def _closeRefused(self) -> None:
        if not self._calls and not self._queue:
            super()._closeRefused()
            self._armAbort()
            return
        # The whole requests that came before the bad bytes are answered
        # first; nothing more is read.
        self._readClosed = True
        transport: Any = self.transport
        if transport is not None:
            transport.pauseProducing()
        self._peerEnded()

    def _armIdle(self) -> None:
        timeout = self._idleTimeout
        if timeout is not None and self.connected:
            self._idleCall = _rearmed(self._clock, self._idleCall, timeout, self._idle)

    def _idle(self) -> None:
        if self._calls:
            self._armIdle()
            return
        transport: Any = self.transport
        log.info("closing idle Thrift connection from {peer} after {timeout}s",
                 peer=peerText(transport), timeout=self._idleTimeout)
        if self._observer is not None:
            self._observer.refused("idle_timeout")
        self.close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.connected = False
        refused = tlsFailure(reason)
        if refused is not None:
            # Before any request, TLS refused the peer (no certificate, or
            # one not verified): its own logs rarely say so.
            log.warn("{what} TLS from {peer}: {why}", peer=peerText(self.transport),
                     what="refused" if self._origin is None else "lost", why=refused)
        self._queue.clear()
        for delayed in (self._idleCall, self._abortCall, self._endedCall, self._probeCall):
            if delayed is not None and delayed.active():
                delayed.cancel()
        self._abortCall = self._endedCall = self._probeCall = None
        # Nobody is left to answer: the handlers may stop working on it.
        self._lingering.clear()
        self._envelopes.clear()
        calls, self._calls = self._calls, {}
        for reply, timer in calls.items():
            if timer is not None and timer.active():
                timer.cancel()
            if self._observed:
                self._observedEnd(reply, "cancelled", None)
            Cancelling.cancel(reply)
        if self._observer is not None:
            self._observed.clear()
            self._observer.connectionClosed()
        connections = self._connections()
        if connections is not None:
            connections.discard(self)
            gone = getattr(self.factory, "_goneWaiters", None)
            if gone and not connections:
                gone.fire()
        self._maybeIdle()

    def _connections(self) -> set[ServerProtocol] | None:
        # Factories other than ours (Apache-style ones) need not track them.
        return getattr(getattr(self, "factory", None), "connections", None)


def _rearmed(clock: IReactorTime, call: IDelayedCall | None, delay: float,
             function: Callable[[], None]) -> IDelayedCall:
    """
    C{call} put off to C{delay} seconds from now, or a new one if it has run.
    """
    if call is not None and call.active():
        call.reset(delay)
        return call
    return clock.callLater(delay, function)


def _streamEnd(transport: Any) -> int:
    """
    What the kernel knows of the end of the peer's stream on
    C{transport}'s socket, ahead of the bytes still unread: C{POLLRDHUP}
    once it has ended, with C{POLLHUP} or C{POLLERR} where the connection
    was reset; 0 for nothing (or no socket to ask).
    """
    assert _PEER_HUNG_UP is not None
    sock = _socketOf(transport)
    if sock is None:
        return 0
    try:
        poller = select.poll()
        poller.register(sock.fileno(), _PEER_HUNG_UP)
        return sum(events for _, events in poller.poll(0))
    except (OSError, ValueError):
        return 0


def _socketOf(transport: Any) -> socket.socket | None:
    """
    The socket beneath C{transport}, as its L{ISystemHandle} gives it: the
    TCP or UNIX transport's own, or, through wrappers whose handle is not a
    socket (TLS: an C{OpenSSL.SSL.Connection}), the one of the transport
    they wrap.
    """
    for _ in range(4):
        if ISystemHandle.providedBy(transport):
            try:
                handle = transport.getHandle()
            except AttributeError:  # closed: its socket is gone
                return None
            if isinstance(handle, socket.socket):
                return handle
        transport = getattr(transport, "transport", None)
        if transport is None:
            return None
    return None


class ServerFactory(Factory):
    """
    Builds L{ServerProtocol}s for one handler, processor or mapping of them.

    @ivar connections: the connections open now.
    """

    protocol = ServerProtocol  # type: ignore[assignment]
    # Starting and stopping are logged once, by whoever hosts us.
    noisy = False

    def __init__(self, handler: object, *, service: ModuleType | None = None,
                 transport: str = "auto", protocol: str = "auto",
                 limits: Limits | None = None, clock: IReactorTime | None = None,
                 observer: ICallObserver | None = None) -> None:
        """
        @param observer: told of the connections, calls and refusals.
        """
        self.dispatcher = makeDispatcher(handler, service)
        self.observer = observer
        self.transport = checkChoice("transport", transport, TRANSPORTS)
        self.protocolName = checkChoice("protocol", protocol, PROTOCOLS)
        checkFraming(transport, protocol)
        self.limits = limits or Limits()
        self.clock: IReactorTime = clock or defaultReactor()
        self.connections: set[ServerProtocol] = set()
        #: What the connections' partial messages may hold together.
        self.partialBudget = budgetFor(self.limits)
        self._codecs: dict[str, Codec] = {}
        self._idleWaiters = Waiters()
        self._goneWaiters = Waiters()

    def whenIdle(self) -> Deferred[None]:
        """
        Wait until every call on this factory's connections has its answer,
        as a graceful stop must before closing them.  A handler that carries
        on past its C{call_timeout} has been answered (with the timeout) and
        does not count; nor do requests queued for room, not begun yet; a
        connection that goes takes its calls with it.

        @return: a Deferred of its own for each caller, firing with C{None}
            then (at once if no call awaits its answer now); cancelling it
            stops only that wait.
        """
        return self._idleWaiters.wait(self._idle())

    def whenDisconnected(self) -> Deferred[None]:
        """
        Wait until this factory has no connection left, as a graceful stop
        must after closing them.

        @return: a Deferred of its own for each caller, firing with C{None}
            then (at once if none is open now); cancelling it stops only
            that wait.
        """
        return self._goneWaiters.wait(not self.connections)

    def _idle(self) -> bool:
        return not any(c._calls for c in self.connections)

    def _connectionIdle(self) -> None:
        """
        One connection has no call left awaiting its answer: fire the
        waiters if no other has either.
        """
        if self._idleWaiters and self._idle():
            self._idleWaiters.fire()

    def codec(self, protocol: str) -> Codec:
        """
        The codec every connection of this factory speaking C{protocol} shares.
        """
        codec = self._codecs.get(protocol)
        if codec is None:
            codec = self._codecs[protocol] = Codec(protocol, self.limits)
        return codec

    def buildProtocol(self, addr: Any) -> ServerProtocol:  # type: ignore[override]
        proto = ServerProtocol(self.dispatcher, self.clock, self.transport, self.protocolName,
                               self.limits)
        proto.factory = self
        return proto
