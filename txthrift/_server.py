"""
The server side: dispatching requests to handlers or processors, mapping
their outcomes to replies, and keeping each connection within its limits.
"""

from __future__ import annotations

import select
import socket
from collections import deque
from collections.abc import Callable, Mapping
from types import CoroutineType, ModuleType
from typing import Any, Union
from typing import Protocol as TypingProtocol

from thrift.protocol.TProtocol import TProtocolBase, TProtocolException
from thrift.Thrift import TApplicationException, TMessageType
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._codec import Codec, withStoredHeader
from ._framing import (
    PROTOCOLS,
    TRANSPORTS,
    DepthError,
    ThriftMessageProtocol,
    checkChoice,
    checkDepth,
    largeMessageSizes,
)
from ._limits import Limits, defaultReactor
from ._nogc import BIG_MESSAGE, noCollections
from ._service import Method, describe, serviceOf, shortName

__all__ = ["Dispatcher", "ServerFactory", "ServerProtocol", "makeDispatcher"]

log = Logger(namespace="txthrift.server")

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

#: What a dispatcher answers: the encoded reply, C{None} for no reply
#: (oneway), or a Deferred firing with either.
Reply = Union[bytes, None, "Deferred[bytes | None]"]


class Dispatcher(TypingProtocol):
    """
    Turns one request into its reply; never raises.
    """

    def dispatch(self, codec: Codec, iprot: TProtocolBase, name: str, mtype: int,
                 seqid: int) -> Reply: ...


_ASYNC = (Deferred, CoroutineType)
_CALL, _ONEWAY, _REPLY = TMessageType.CALL, TMessageType.ONEWAY, TMessageType.REPLY
_PLAIN = frozenset((str, bytes, int, float, bool, type(None), list, dict, set, tuple))


#: Longer names than this name no method: processors are not asked.
_LONGEST_NAME = 1024


def _exceptionReply(codec: Codec, name: str, mtype: int, seqid: int, kind: int,
                    message: str) -> bytes | None:
    if mtype == TMessageType.ONEWAY:
        return None
    return codec.encodeException(name, seqid, kind, message)


class _Cancelling:
    """
    Whether txthrift itself is cancelling a handler's Deferred right now (a
    call timed out, or its connection went), as opposed to a handler that
    raised or returned L{CancelledError} of its own accord: only ours may go
    unlogged.  The reactor runs one thing at a time, so one flag serves.
    """

    active = False

    @classmethod
    def cancel(cls, deferred: Deferred[Any]) -> None:
        cls.active = True
        try:
            deferred.cancel()
        finally:
            cls.active = False


class _HandlerDispatcher:
    """
    Calls handler methods for a generated service, whatever they return: a
    value, a Deferred, or a coroutine.
    """

    def __init__(self, handler: object, service: ModuleType) -> None:
        self._handler = handler
        self.service = describe(service)
        # Bound once, by name, for what the handler implements (other names
        # are unknown methods): the method, the handler's function, and how
        # to get the function's arguments out of the args struct.
        self._targets = {
            name: (method, getattr(handler, name), *method.argGetter)
            for name, method in self.service.methods.items() if hasattr(handler, name)
        }
        self._results: dict[Method, Any] = {}

    def dispatch(self, codec: Codec, iprot: TProtocolBase, name: str, mtype: int,
                 seqid: int) -> Reply:
        target = self._targets.get(name)
        if target is None:
            shown = shortName(name)
            log.warn("no method {name} in {service}", name=shown, service=self.service.name)
            return _exceptionReply(codec, shown, mtype, seqid,
                                   TApplicationException.UNKNOWN_METHOD,
                                   f"Unknown function {shown}")
        method, function, getArgs, spread = target
        args = method.args()
        try:
            codec.readBody(iprot, args)
        except Exception as error:
            log.warn("bad arguments for {name}: {error}", name=name, error=error)
            return _exceptionReply(codec, name, mtype, seqid,
                                   TApplicationException.PROTOCOL_ERROR,
                                   f"cannot decode the arguments of {name}: {error}")
        try:
            value = function(*getArgs(args)) if spread else function(getArgs(args))
        except Exception:
            return self._failed(Failure(), codec, method, seqid)
        kind = type(value)
        # Plain values are told apart by type first: isinstance against
        # Deferred (an ABC subclass) is the slow path.
        if kind is Deferred or kind is CoroutineType or (
                kind not in _PLAIN and isinstance(value, _ASYNC)):
            if not isinstance(value, Deferred):
                value = Deferred.fromCoroutine(value)
            return value.addCallbacks(self._succeeded, self._failed,
                                      callbackArgs=(codec, method, seqid),
                                      errbackArgs=(codec, method, seqid))
        # Answered at once: no Deferred on this, the common path.
        return self._succeeded(value, codec, method, seqid)

    def _succeeded(self, value: object, codec: Codec, method: Method, seqid: int) -> bytes | None:
        if method.result is None:
            return None
        # One result struct per method serves every success: it is only
        # read, by the encoder, before its value is dropped again.
        result = self._results.get(method)
        if result is None:
            result = self._results[method] = method.result()
        keep = method.returnsValue
        if keep:
            result.success = value
        try:
            reply = codec.encode(method.name, _REPLY, seqid, result)
        except Exception:
            log.failure("cannot encode the result of {service}.{name}",
                        service=self.service.name, name=method.name)
            return codec.encodeException(method.name, seqid,
                                         TApplicationException.INTERNAL_ERROR,
                                         f"Internal error encoding the result of {method.name}")
        finally:
            if keep:
                result.success = None
        if len(reply) > codec.maxMessage:
            # No peer within the same limits could read it.
            log.warn("the result of {name} is {size} bytes, over max_frame_size",
                     name=method.name, size=len(reply))
            return codec.encodeException(
                method.name, seqid, TApplicationException.INTERNAL_ERROR,
                f"the result of {method.name} is larger than the server's max_frame_size")
        return reply

    def _failed(self, failure: Failure, codec: Codec, method: Method, seqid: int) -> bytes | None:
        error = failure.value
        name = method.name
        if method.result is None:
            if not _Cancelling.active:
                log.failure("oneway {service}.{name} failed", failure,
                            service=self.service.name, name=name)
            return None
        for field, declared in method.exceptions:
            if isinstance(error, declared):
                result = method.result()
                setattr(result, field, error)
                return self._encodeError(codec, name, TMessageType.REPLY, seqid, result, error)
        if isinstance(error, TApplicationException):
            return self._encodeError(codec, name, TMessageType.EXCEPTION, seqid, error, error)
        if not _Cancelling.active:
            log.failure("{service}.{name} failed", failure, service=self.service.name,
                        name=name)
        # The peer learns that it failed, not how: details stay in our log.
        return codec.encodeException(name, seqid, TApplicationException.INTERNAL_ERROR,
                                     f"Internal error processing {name}")


    def _encodeError(self, codec: Codec, name: str, mtype: int, seqid: int, body: Any,
                     error: object) -> bytes:
        """
        The reply carrying an exception the caller may see; one that does
        not encode (a field of the wrong type) becomes an internal error.
        """
        try:
            return codec.encode(name, mtype, seqid, body)
        except Exception:
            log.failure("cannot encode {error!r}, raised by {service}.{name}",
                        error=error, service=self.service.name, name=name)
            return codec.encodeException(name, seqid, TApplicationException.INTERNAL_ERROR,
                                         f"Internal error encoding the exception of {name}")


class _ProcessorDispatcher:
    """
    Runs any Thrift processor: Apache's generated ones (synchronous, or
    Deferred-returning from C{py:twisted}), C{TMultiplexedProcessor}, or one
    of the user's own.
    """

    def __init__(self, processor: Any) -> None:
        self._processor = processor

    def dispatch(self, codec: Codec, iprot: TProtocolBase, name: str, mtype: int,
                 seqid: int) -> Reply:
        if len(name) > _LONGEST_NAME:
            # No service has such a method, and the processor would echo
            # the name back whole.
            shown = shortName(name)
            log.warn("no method {name}", name=shown)
            return _exceptionReply(codec, shown, mtype, seqid,
                                   TApplicationException.UNKNOWN_METHOD,
                                   f"Unknown function {shown}")
        # We have read the header already; the processor reads it again, and
        # may read the rest later (from a thread): it gets input of its own.
        iprot = withStoredHeader(codec.detach(iprot), (name, mtype, seqid))
        oprot = codec.replyWriter()
        try:
            outcome = self._processor.process(iprot, oprot)
        except Exception:
            return self._failed(Failure(), codec, name, mtype, seqid)
        if isinstance(outcome, Deferred):
            return outcome.addCallbacks(
                lambda _: self._written(oprot, mtype), self._failed,
                errbackArgs=(codec, name, mtype, seqid))
        return self._written(oprot, mtype)

    @staticmethod
    def _written(oprot: TProtocolBase, mtype: int) -> bytes | None:
        if mtype == TMessageType.ONEWAY:
            return None
        return oprot.trans.getvalue() or None

    @staticmethod
    def _failed(failure: Failure, codec: Codec, name: str, mtype: int,
                seqid: int) -> bytes | None:
        error = failure.value
        if isinstance(error, TProtocolException):
            # The request itself was at fault (bad arguments, unknown
            # service under TMultiplexedProcessor): say so.
            why = shortName(str(error))
            log.warn("cannot process {name}: {error}", name=shortName(name), error=why)
            return _exceptionReply(codec, shortName(name), mtype, seqid,
                                   TApplicationException.PROTOCOL_ERROR, why)
        if not _Cancelling.active:
            log.failure("processing {name} failed", failure, name=shortName(name))
        return _exceptionReply(codec, name, mtype, seqid, TApplicationException.INTERNAL_ERROR,
                               f"Internal error processing {name}")


class _MultiplexedDispatcher:
    """
    Several services on one connection, named as Apache's
    C{TMultiplexedProtocol} names them: C{"Service:method"}.  A service
    registered under C{""} answers names without a service part.
    """

    SEPARATOR = ":"

    def __init__(self, services: Mapping[str, Dispatcher]) -> None:
        self._services = dict(services)

    def dispatch(self, codec: Codec, iprot: TProtocolBase, name: str, mtype: int,
                 seqid: int) -> Reply:
        service, separator, method = name.partition(self.SEPARATOR)
        if not separator:
            service, method = "", name
        target = self._services.get(service)
        if target is None:
            service, name = shortName(service), shortName(name)
            log.warn("no service named {service!r} for {name}", service=service, name=name)
            why = (f"unknown service {service!r}" if separator
                   else f"{name!r} names no service; use a multiplexed client")
            return _exceptionReply(codec, shortName(method), mtype, seqid,
                                   TApplicationException.UNKNOWN_METHOD, why)
        return target.dispatch(codec, iprot, method, mtype, seqid)


def makeDispatcher(handler: object, service: ModuleType | None = None) -> Dispatcher:
    """
    The dispatcher serving C{handler}.

    @param handler: a handler object, a processor (anything with
        C{process(iprot, oprot)}), or a mapping of service name to either
        (or to a C{(handler, service)} pair) for a multiplexed port.
    @param service: the generated service module of a handler object; found
        from the handler's C{Iface} when omitted.
    @raise TypeError: when the service cannot be found.
    """
    if isinstance(handler, Mapping):
        if service is not None:
            raise TypeError("service= goes with one handler; a mapping names each service")
        services: dict[str, Dispatcher] = {}
        for name, value in handler.items():
            services[name] = (makeDispatcher(*value) if isinstance(value, tuple)
                              else makeDispatcher(value))
        return _MultiplexedDispatcher(services)
    if service is None:
        if callable(getattr(handler, "process", None)):
            return _ProcessorDispatcher(handler)
        service = serviceOf(handler)
        if service is None:
            raise TypeError(
                f"cannot tell which Thrift service {handler!r} implements: pass service="
                "(the generated module), subclass its Iface, or declare @implementer(Iface)")
    return _HandlerDispatcher(handler, service)


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
    """

    factory: ServerFactory
    # What largeMessageSizes says, set by _sizes at the first request (0
    # until then).
    _depthFloor = 0
    _largeFrom = 0

    def __init__(self, dispatcher: Dispatcher, clock: IReactorTime, transport: str = "auto",
                 protocol: str = "auto", limits: Limits | None = None) -> None:
        super().__init__(transport, protocol, limits)
        self._dispatcher = dispatcher
        self._clock = clock
        self._codec: Codec | None = None
        # The calls whose reply is being computed, each with its timeout.
        self._calls: dict[Deferred[bytes | None], IDelayedCall | None] = {}
        # Timed-out calls whose handlers carry on, ignoring the cancellation.
        self._lingering: set[Deferred[bytes | None]] = set()
        self._queue: deque[bytes] = deque()
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
        # Read per message, so kept at hand.
        self._idleTimeout = self.limits.idle_timeout
        self._callTimeout = self.limits.call_timeout
        self._maxPending = self.limits.max_pending
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
        transport: Any = self.transport
        transport.registerProducer(self, True)
        self._armIdle()
        if self.framer is not None:
            self.framingDetected()

    def framingDetected(self) -> None:
        factory = getattr(self, "factory", None)
        if factory is not None:
            self._codec = factory.codec(self.protocolName)
        else:
            self._codec = Codec(self.protocolName, self.limits)

    def messageReceived(self, message: bytes) -> None:
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
            self._refuse(f"unreadable message header: {error}")
            return
        if mtype != _CALL and mtype != _ONEWAY:
            self._refuse(f"message type {mtype} of {shortName(name)!r} is not a call")
            return
        if len(message) < self._largeFrom:
            try:
                reply = self._dispatcher.dispatch(codec, iprot, name, mtype, seqid)
            except Exception:  # pragma: no cover - dispatchers do not raise
                reply = self._dispatchFailed(codec, name, mtype, seqid)
        else:
            reply = self._dispatchLarge(message, codec, iprot, name, mtype, seqid)
        if type(reply) is bytes:
            self.sendMessage(reply)
        elif isinstance(reply, Deferred):
            self._await(reply, codec, name, mtype, seqid)

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
            return self._dispatcher.dispatch(codec, iprot, name, mtype, seqid)
        except Exception:  # pragma: no cover - dispatchers do not raise
            return self._dispatchFailed(codec, name, mtype, seqid)

    def _dispatchFailed(self, codec: Codec, name: str, mtype: int, seqid: int) -> Reply:
        log.failure("dispatching {name} failed", name=shortName(name))
        return _exceptionReply(codec, shortName(name), mtype, seqid,
                               TApplicationException.INTERNAL_ERROR, "Internal error")

    def _dispatchLarge(self, message: bytes, codec: Codec, iprot: TProtocolBase, name: str,
                       mtype: int, seqid: int) -> Reply:
        if self._largeFrom == 0:
            self._sizes(codec)
            if len(message) < self._largeFrom:
                return self._dispatch(codec, iprot, name, mtype, seqid)
        if len(message) >= self._depthFloor:
            try:
                checkDepth(message, self.protocolName, self.limits)
            except DepthError as error:
                shown = shortName(name)
                log.warn("bad arguments for {name}: {error}", name=shown, error=error)
                return _exceptionReply(codec, shown, mtype, seqid,
                                       TApplicationException.PROTOCOL_ERROR,
                                       f"cannot decode the arguments of {shown}: {error}")
        if len(message) < BIG_MESSAGE:
            return self._dispatch(codec, iprot, name, mtype, seqid)
        with noCollections:
            return self._dispatch(codec, iprot, name, mtype, seqid)

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
        self._send(_exceptionReply(
            codec, name, mtype, seqid, TApplicationException.INTERNAL_ERROR,
            f"{name} did not finish within {timeout} seconds on the server"))
        _Cancelling.cancel(reply)

    def _unanswered(self, failure: Failure, reply: Deferred[bytes | None], codec: Codec,
                    name: str, mtype: int, seqid: int) -> None:
        # Dispatchers turn failures into replies; one that could not (its
        # reply would not encode, say) still gets the caller an answer.
        if reply not in self._calls:
            self._workEnded(reply)  # Answered already (timed out), or the connection went.
            return
        if not _Cancelling.active:
            log.failure("replying to {name} failed", failure, name=shortName(name))
        try:
            answer = _exceptionReply(codec, name, mtype, seqid,
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
        self._send(answer)

    def _workEnded(self, reply: Deferred[bytes | None]) -> None:
        """
        A timed-out call's work has ended at last: room for more.
        """
        if reply in self._lingering:
            self._lingering.discard(reply)
            if self.connected:
                self._drain()

    def _send(self, answer: bytes | None) -> None:
        """
        Send a call's answer, if it has one, and make room for the next.
        """
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
                self.messageReceived(self._queue.popleft())
        finally:
            self._draining = False
        self._updateReading()
        if self._readClosed and not self._calls and not self._queue:
            self._close()

    def _updateReading(self) -> None:
        if not self.connected or self._readClosed:
            return
        pause = self._writePaused or bool(self._queue)
        if pause != self._readPaused:
            self._readPaused = pause
            transport: Any = self.transport
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
            self._close()
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
                 peer=self.transport.getPeer() if self.transport is not None else "?",
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

    def _close(self) -> None:
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
                 peer=transport.getPeer(), timeout=self._idleTimeout)
        self._close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.connected = False
        self._queue.clear()
        for delayed in (self._idleCall, self._abortCall, self._endedCall, self._probeCall):
            if delayed is not None and delayed.active():
                delayed.cancel()
        self._abortCall = self._endedCall = self._probeCall = None
        # Nobody is left to answer: the handlers may stop working on it.
        self._lingering.clear()
        calls, self._calls = self._calls, {}
        for reply, timer in calls.items():
            if timer is not None and timer.active():
                timer.cancel()
            _Cancelling.cancel(reply)
        connections = self._connections()
        if connections is not None:
            connections.discard(self)

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
    # Through any wrapping (TLS) to the TCP or UNIX transport beneath.
    for _ in range(4):
        if isinstance(getattr(transport, "socket", None), socket.socket):
            break
        transport = getattr(transport, "transport", None)
    else:
        return 0
    try:
        poller = select.poll()
        poller.register(transport.socket.fileno(), _PEER_HUNG_UP)
        return sum(events for _, events in poller.poll(0))
    except (OSError, ValueError):
        return 0


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
                 limits: Limits | None = None, clock: IReactorTime | None = None) -> None:
        self.dispatcher = makeDispatcher(handler, service)
        self.transport = checkChoice("transport", transport, TRANSPORTS)
        self.protocolName = checkChoice("protocol", protocol, PROTOCOLS)
        self.limits = limits or Limits()
        self.clock: IReactorTime = clock or defaultReactor()
        self.connections: set[ServerProtocol] = set()
        self._codecs: dict[str, Codec] = {}

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
