"""
Dispatch: turning one decoded request into its reply.

A L{Dispatcher} takes a request whose header has been read and answers it
with the encoded reply, C{None} (oneway), or a Deferred of either; it never
raises.  Here are the three kinds (a handler object, any Thrift processor,
several services multiplexed on one port), the mapping of a handler's
outcome to a reply (declared exceptions, L{TApplicationException}s, and
internal errors that leak nothing), and L{makeDispatcher}, which picks one.

Nothing here knows of connections, framing, limits on them or time: what a
reply is for, when it goes out and what happens to a call nobody waits for
any more are L{txthrift._server}'s business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import CoroutineType, ModuleType
from typing import Any, Union
from typing import Protocol as TypingProtocol

from thrift.protocol.TProtocol import TProtocolBase, TProtocolException
from thrift.Thrift import TApplicationException, TMessageType
from thrift.TMultiplexedProcessor import TMultiplexedProcessor
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._codec import Codec, withStoredHeader
from ._limits import Limits
from ._nogc import BIG_MESSAGE, noCollections
from ._scanning import DepthError, checkDepth
from ._service import Method, describe, resolve, shortName
from ._thriftinternals import processorParts

__all__ = ["Cancelling", "Dispatcher", "Outcome", "Reply", "dispatchLarge", "exceptionReply",
           "makeDispatcher", "processorService"]

log = Logger(namespace="txthrift.server")

#: What a dispatcher answers: the encoded reply, C{None} for no reply
#: (oneway), or a Deferred firing with either.
Reply = Union[bytes, None, "Deferred[bytes | None]"]


class Dispatcher(TypingProtocol):
    """
    Turns one request into its reply; never raises.

    @ivar serviceName: the service answering names without a C{"Service:"}
        part, as L{txthrift.currentCall} tells a handler.
    """

    serviceName: str

    def dispatch(self, codec: Codec, iprot: TProtocolBase, name: str, mtype: int,
                 seqid: int) -> Reply: ...


_ASYNC = (Deferred, CoroutineType)
_REPLY = TMessageType.REPLY
_PLAIN = frozenset((str, bytes, int, float, bool, type(None), list, dict, set, tuple))


#: Longer names than this name no method: processors are not asked.
_LONGEST_NAME = 1024


def dispatchLarge(dispatch: Callable[[], Reply], message: bytes, depthFrom: int,
                  codec: Codec, limits: Limits, name: str, mtype: int, seqid: int) -> Reply:
    """
    Dispatch a whole request big enough (from L{largeMessageSizes}) to be
    walked for its depth first, from C{depthFrom} bytes (an answer saying why
    if it nests too deep), or to be decoded with the garbage collector held
    off: the same for a TCP connection's messages and for HTTP bodies.

    @param dispatch: decodes and dispatches the request.
    """
    if len(message) >= depthFrom:
        try:
            checkDepth(message, codec.protocol, limits)
        except DepthError as error:
            shown = shortName(name)
            log.warn("bad arguments for {name}: {error}", name=shown, error=error)
            return exceptionReply(codec, shown, mtype, seqid,
                                  TApplicationException.PROTOCOL_ERROR,
                                  f"cannot decode the arguments of {shown}: {error}")
    if len(message) < BIG_MESSAGE:
        return dispatch()
    with noCollections:
        return dispatch()


class Outcome:
    """
    What became of the request dispatched last, for whoever watches calls
    (metrics, access logs): set as its reply is made, and read at once by
    the connection that sends it (the reactor runs one thing at a time, and
    nothing runs between a reply made and its sending).
    """

    last = "ok"


#: The outcome of each kind of L{TApplicationException} a server answers with.
_KINDS = {TApplicationException.UNKNOWN_METHOD: "unknown_method",
          TApplicationException.PROTOCOL_ERROR: "protocol_error"}


def exceptionReply(codec: Codec, name: str, mtype: int, seqid: int, kind: int,
                   message: str) -> bytes | None:
    """
    The L{TApplicationException} reply of type C{kind} to a request, or
    C{None} for a oneway one (nobody to tell).
    """
    Outcome.last = _KINDS.get(kind, "internal_error")
    if mtype == TMessageType.ONEWAY:
        return None
    return codec.encodeException(name, seqid, kind, message)


class Cancelling:
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
        self.serviceName = self.service.name
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
            return exceptionReply(codec, shown, mtype, seqid,
                                   TApplicationException.UNKNOWN_METHOD,
                                   f"Unknown function {shown}")
        method, function, getArgs, spread = target
        args = method.args()
        try:
            codec.readBody(iprot, args)
        except Exception as error:
            log.warn("bad arguments for {name}: {error}", name=name, error=error)
            return exceptionReply(codec, name, mtype, seqid,
                                   TApplicationException.PROTOCOL_ERROR,
                                   f"cannot decode the arguments of {name}: {error}")
        try:
            value = function(*getArgs(args)) if spread else function(getArgs(args))
        except Exception:
            return self._failed(Failure(), codec, method, seqid)
        kind = type(value)
        # Plain values are told apart by type first: isinstance against
        # Deferred (an ABC subclass) is the slow path.
        if kind not in _PLAIN and (kind is Deferred or kind is CoroutineType
                                   or isinstance(value, _ASYNC)):
            if not isinstance(value, Deferred):
                value = Deferred.fromCoroutine(value)
            return value.addCallbacks(self._succeeded, self._failed,
                                      callbackArgs=(codec, method, seqid),
                                      errbackArgs=(codec, method, seqid))
        # Answered at once: no Deferred on this, the common path.
        return self._succeeded(value, codec, method, seqid)

    def _succeeded(self, value: object, codec: Codec, method: Method, seqid: int) -> bytes | None:
        if Outcome.last != "ok":  # Read first: setting a class attribute costs more.
            Outcome.last = "ok"
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
            reply = (codec.kept.get(method) or self._encoder(codec, method))(seqid, result)
        except Exception:
            log.failure("cannot encode the result of {service}.{name}",
                        service=self.service.name, name=method.name)
            Outcome.last = "internal_error"
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
            Outcome.last = "internal_error"
            return codec.encodeException(
                method.name, seqid, TApplicationException.INTERNAL_ERROR,
                f"the result of {method.name} is larger than the server's max_frame_size")
        return reply

    @staticmethod
    def _encoder(codec: Codec, method: Method) -> Callable[[int, Any], bytes]:
        """
        What encodes C{method}'s replies in C{codec}, kept by the codec.
        """
        assert method.result is not None
        encoder = codec.kept[method] = codec.encoder(method.name, _REPLY, method.result)
        return encoder

    def _failed(self, failure: Failure, codec: Codec, method: Method, seqid: int) -> bytes | None:
        error = failure.value
        name = method.name
        Outcome.last = "internal_error"
        if method.result is None:
            if not Cancelling.active:
                log.failure("oneway {service}.{name} failed", failure,
                            service=self.service.name, name=name)
            return None
        for field, declared in method.exceptions:
            if isinstance(error, declared):
                result = method.result()
                setattr(result, field, error)
                Outcome.last = "declared_exception"
                return self._encodeError(codec, name, TMessageType.REPLY, seqid, result, error)
        if isinstance(error, TApplicationException):
            return self._encodeError(codec, name, TMessageType.EXCEPTION, seqid, error, error)
        if not Cancelling.active:
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
            Outcome.last = "internal_error"
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
        self.serviceName = processorService(processor)

    def dispatch(self, codec: Codec, iprot: TProtocolBase, name: str, mtype: int,
                 seqid: int) -> Reply:
        if len(name) > _LONGEST_NAME:
            # No service has such a method, and the processor would echo
            # the name back whole.
            shown = shortName(name)
            log.warn("no method {name}", name=shown)
            return exceptionReply(codec, shown, mtype, seqid,
                                   TApplicationException.UNKNOWN_METHOD,
                                   f"Unknown function {shown}")
        if not _serves(self._processor, name):
            # Answered as the processor would, but seen to be unknown (a
            # name no metric may be labelled with).
            log.warn("no method {name}", name=shortName(name))
            return exceptionReply(codec, name, mtype, seqid, TApplicationException.UNKNOWN_METHOD,
                                  f"Unknown function {name}")
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
        # A processor writes its reply itself: a declared exception it
        # answers with counts as an answer.
        Outcome.last = "ok"
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
            return exceptionReply(codec, shortName(name), mtype, seqid,
                                   TApplicationException.PROTOCOL_ERROR, why)
        if not Cancelling.active:
            log.failure("processing {name} failed", failure, name=shortName(name))
        return exceptionReply(codec, name, mtype, seqid, TApplicationException.INTERNAL_ERROR,
                               f"Internal error processing {name}")


def _serves(processor: object, name: str) -> bool:
    """
    Whether C{processor} has a method C{name}, as far as it tells: a
    generated processor's table says; a C{TMultiplexedProcessor} asks the
    processor of the service named (when it has none, it refuses the call
    itself); any other processor is trusted to answer.
    """
    if isinstance(processor, TMultiplexedProcessor):
        service, separator, method = name.partition(":")
        inner = processor.services.get(service) if separator else processor.defaultProcessor
        return inner is None or _serves(inner, method if separator else name)
    parts = processorParts(processor)
    return parts is None or name in parts[0]


def processorService(processor: object) -> str:
    """
    The name of the service a processor serves, as far as it tells: a
    generated C{Processor} is in the module named after its service; a
    C{TMultiplexedProcessor}'s calls name theirs, but for its default one.
    """
    if isinstance(processor, TMultiplexedProcessor):
        default = processor.defaultProcessor
        return "" if default is None else processorService(default)
    kind = type(processor)
    if kind.__name__ == "Processor":
        return kind.__module__.rpartition(".")[2]
    return kind.__name__


class _MultiplexedDispatcher:
    """
    Several services on one connection, named as Apache's
    C{TMultiplexedProtocol} names them: C{"Service:method"}.  A service
    registered under C{""} answers names without a service part.
    """

    SEPARATOR = ":"

    def __init__(self, services: Mapping[str, Dispatcher]) -> None:
        self._services = dict(services)
        default = self._services.get("")
        self.serviceName = default.serviceName if default is not None else ""

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
            return exceptionReply(codec, shortName(method), mtype, seqid,
                                   TApplicationException.UNKNOWN_METHOD, why)
        return target.dispatch(codec, iprot, method, mtype, seqid)


def makeDispatcher(handler: object, service: ModuleType | None = None) -> Dispatcher:
    """
    The dispatcher serving C{handler}.

    @param handler: what L{resolve} takes: a handler object, a processor
        (anything with C{process(iprot, oprot)}), a mapping of service name
        to either (or to a C{(handler, service)} pair) for a multiplexed
        port, or a L{Served} already resolved.
    @param service: the generated service module of a handler object; found
        from the handler's C{Iface} when omitted.
    @raise TypeError: when the service cannot be found.
    """
    served = resolve(handler, service)
    if served.kind == "multiplexed":
        return _MultiplexedDispatcher({name: makeDispatcher(inner)
                                       for name, inner in served.services})
    if served.kind == "processor":
        return _ProcessorDispatcher(served.target)
    assert served.module is not None
    return _HandlerDispatcher(served.target, served.module)
