"""
The client side: calls pipelined on one connection, matched to their
replies by seqid, with timeouts, cancellation and clear failures.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar

from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TTransportException
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._codec import Codec
from ._framing import ThriftMessageProtocol
from ._limits import Limits, defaultReactor
from ._service import Method, ServiceSpec, describe

__all__ = ["CallTimeout", "Client", "ClientFactory", "ClientProtocol"]

log = Logger(namespace="txthrift.client")

_MAX_SEQID = 0x7FFFFFFF


class CallTimeout(TTransportException):
    """
    A call got no reply in time.  Its late reply, if one comes, is dropped.
    """

    def __init__(self, message: str) -> None:
        super().__init__(TTransportException.TIMED_OUT, message)


class _Call:
    __slots__ = ("deferred", "method", "timer")

    def __init__(self, deferred: Deferred[Any], method: Method,
                 timer: IDelayedCall | None) -> None:
        self.deferred = deferred
        self.method = method
        self.timer = timer


class ClientProtocol(ThriftMessageProtocol):
    """
    The client end of one connection.

    Every call gets its own seqid (wrapping before the i32 overflows and
    skipping ids still in use), so replies may come in any order.
    """

    def __init__(self, clock: IReactorTime, transport: str = "framed",
                 protocol: str = "binary", limits: Limits | None = None) -> None:
        if transport == "auto" or protocol == "auto":
            raise ValueError("a client must choose its transport and protocol; 'auto' is"
                             " for servers")
        super().__init__(transport, protocol, limits)
        self._clock = clock
        self._codec = Codec(protocol, self.limits)
        self._pending: dict[int, _Call] = {}
        self._seqid = 0
        self._lostReason: Failure | None = None
        self._closeWaiters: list[Deferred[None]] = []

    @property
    def pending(self) -> int:
        """
        How many calls await their reply.
        """
        return len(self._pending)

    def call(self, method: Method, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
             timeout: float | None) -> Deferred[Any]:
        """
        Send one call.

        @param name: the name on the wire (C{"Service:method"} when multiplexed).
        @return: a Deferred firing with the result, failing with the declared
            exception, a L{TApplicationException}, a L{CallTimeout}, or a
            L{TTransportException} when the connection is or gets lost.
            Cancelling it forgets the call.
        @raise TypeError: for arguments the method does not take.
        """
        argsStruct = method.args(*args, **kwargs)
        if self._lostReason is not None or self.transport is None:
            return fail(self._notConnected())
        seqid = self._seqid
        while True:
            seqid = seqid % _MAX_SEQID + 1
            if seqid not in self._pending:
                break
        self._seqid = seqid
        try:
            message = self._codec.encode(
                name, TMessageType.ONEWAY if method.oneway else TMessageType.CALL, seqid,
                argsStruct)
        except Exception:
            return fail()
        if method.oneway:
            self.sendMessage(message)
            return succeed(None)
        deferred: Deferred[Any] = Deferred(lambda d: self._forget(seqid))
        timer = None
        if timeout is not None:
            timer = self._clock.callLater(timeout, self._timedOut, seqid, name, timeout)
        self._pending[seqid] = _Call(deferred, method, timer)
        self.sendMessage(message)
        return deferred

    def _notConnected(self) -> TTransportException:
        reason = self._lostReason
        if self.refusal is not None:
            # Say what was wrong, not just that the connection closed.
            why = f"the server's reply was refused: {self.refusal}"
        else:
            why = reason.getErrorMessage() if reason is not None else "not connected"
        return TTransportException(TTransportException.NOT_OPEN,
                                   f"Thrift connection is closed: {why}")

    def _forget(self, seqid: int) -> None:
        call = self._pending.pop(seqid, None)
        if call is not None and call.timer is not None and call.timer.active():
            call.timer.cancel()

    def _timedOut(self, seqid: int, name: str, timeout: float) -> None:
        call = self._pending.pop(seqid, None)
        if call is not None:
            call.deferred.errback(CallTimeout(f"{name} got no reply within {timeout} seconds"))

    def messageReceived(self, message: bytes) -> None:
        try:
            iprot, name, mtype, seqid = self._codec.readHeader(message)
        except Exception as error:
            self.frameError(f"unreadable reply header: {error}")
            return
        call = self._pending.pop(seqid, None)
        if call is None:
            # Late replies to timed-out or cancelled calls land here too.
            log.info("dropping a reply to {name} with no pending call (seqid {seqid})",
                     name=name, seqid=seqid)
            return
        if call.timer is not None and call.timer.active():
            call.timer.cancel()
        method = call.method
        try:
            if mtype == TMessageType.EXCEPTION:
                remote = TApplicationException()
                self._codec.readBody(iprot, remote)
                outcome: Any = Failure(remote)
            elif mtype == TMessageType.REPLY and method.result is not None:
                outcome = self._result(self._codec, method, iprot)
            else:
                raise ValueError(f"message type {mtype} is not a reply")
        except Exception as error:
            call.deferred.errback(TApplicationException(
                TApplicationException.PROTOCOL_ERROR,
                f"malformed reply to {method.name}: {error}"))
            self.frameError(f"malformed reply to {method.name}: {error}")
            return
        if isinstance(outcome, Failure):
            call.deferred.errback(outcome)
        else:
            call.deferred.callback(outcome)

    @staticmethod
    def _result(codec: Codec, method: Method, iprot: Any) -> Any:
        assert method.result is not None
        result = method.result()
        codec.readBody(iprot, result)
        for field, _ in method.exceptions:
            error = getattr(result, field)
            if error is not None:
                return Failure(error)
        if not method.returnsValue:
            return None
        if result.success is None:
            return Failure(TApplicationException(TApplicationException.MISSING_RESULT,
                                                 f"{method.name} failed: unknown result"))
        return result.success

    def close(self) -> Deferred[None]:
        """
        Close the connection; pending calls fail.

        @return: a Deferred firing once the connection is closed.
        """
        if self._lostReason is not None or self.transport is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._closeWaiters.append(waiter)
        self.transport.loseConnection()
        return waiter

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self._lostReason = reason
        pending, self._pending = self._pending, {}
        for call in pending.values():
            if call.timer is not None and call.timer.active():
                call.timer.cancel()
            call.deferred.errback(self._notConnected())
        waiters, self._closeWaiters = self._closeWaiters, []
        for waiter in waiters:
            waiter.callback(None)


class Client:
    """
    Calls a service's methods over a L{ClientProtocol}; subclassed per
    service, with one method per service method (inherited ones included),
    each returning a Deferred.

    A call takes the service method's arguments and, unless the method has
    an argument of that name, C{timeout=} seconds overriding the client's
    default for that call (C{None}: wait for ever).
    """

    service: ClassVar[ServiceSpec]
    _classes: ClassVar[dict[ModuleType, type[Client]]] = {}

    def __init__(self, protocol: ClientProtocol, *, timeout: float | None = None,
                 service_name: str | None = None) -> None:
        self.protocol = protocol
        self.timeout = timeout
        self._prefix = f"{service_name}:" if service_name else ""

    @classmethod
    def forService(cls, service: ModuleType) -> type[Client]:
        """
        The L{Client} subclass for a generated service module.
        """
        sub = cls._classes.get(service)
        if sub is None:
            spec = describe(service)
            namespace: dict[str, Any] = {"service": spec, "__doc__": f"A client of {spec.name}."}
            for method in spec.methods.values():
                namespace[method.name] = _clientMethod(method, spec.name)
            sub = cls._classes[service] = type(f"{spec.name}Client", (cls,), namespace)
        return sub

    def close(self) -> Deferred[None]:
        """
        Close the connection (if a service method is called C{close}, reach
        this as C{Client.close(client)}).

        @return: a Deferred firing once it is closed.
        """
        return self.protocol.close()


_UNSET: Any = object()


def _clientMethod(method: Method, serviceName: str) -> Callable[..., Deferred[Any]]:
    name = method.name
    ownTimeout = "timeout" in method.argNames

    def call(self: Client, *args: Any, **kwargs: Any) -> Deferred[Any]:
        timeout = self.timeout
        if not ownTimeout and "timeout" in kwargs:
            timeout = kwargs.pop("timeout")
        return self.protocol.call(method, self._prefix + name, args, kwargs, timeout)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = (f"Call {serviceName}.{name}({', '.join(method.argNames)})"
                    f"{' (oneway: fires once sent)' if method.oneway else ''}.")
    return call


class ClientFactory(Factory):
    """
    Builds L{ClientProtocol}s, each with its L{Client} as C{protocol.client}.
    """

    noisy = False

    def __init__(self, service: ModuleType, *, transport: str = "framed",
                 protocol: str = "binary", limits: Limits | None = None,
                 timeout: float | None = None, service_name: str | None = None,
                 clock: IReactorTime | None = None) -> None:
        self.clientClass = Client.forService(service)
        self.transport = transport
        self.protocolName = protocol
        self.limits = limits or Limits()
        self.timeout = timeout
        self.serviceName = service_name
        self.clock: IReactorTime = clock or defaultReactor()
        # Fail here, not at connection time, on a bad choice.
        ClientProtocol(self.clock, transport, protocol, self.limits)

    def buildProtocol(self, addr: Any) -> ClientProtocol:
        proto = ClientProtocol(self.clock, self.transport, self.protocolName, self.limits)
        proto.factory = self
        proto.client = self.clientClass(proto, timeout=self.timeout,  # type: ignore[attr-defined]
                                        service_name=self.serviceName)
        return proto
