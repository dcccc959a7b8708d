"""
A Thrift handler hosted as a Twisted application service: L{ThriftService},
and L{thriftService} to make one (in a C{.tac} file, or for the C{twistd
thrift} plugin).

The service listens on one or more endpoints, logs one line saying what it
serves where, and on shutdown stops listening, lets the calls in flight
finish (for up to C{shutdown_timeout} seconds), then closes its
connections: each step waits for an event (the factory falling idle, the
thread pool's last call ending, the last connection going), bounded by a
timeout, never by polling.  With C{threads}, a blocking handler's methods
run in a thread pool (L{txthrift._threads}), so the reactor never waits for
them.

This module knows nothing of command lines, dotted names or worker
processes; it is their building block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from types import ModuleType
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ._hosting import PortSpec, addressOf, parseEndpoint
from ._limits import Limits, defaultReactor
from ._server import ServerFactory
from ._service import resolve
from ._threads import Threads, threaded
from ._twistedinternals import forgetStopSignal
from ._version import __version__

__all__ = ["CannotListen", "ThriftService", "announce", "listenOn", "stoppedCleanly",
           "thriftService", "within"]

log = Logger(namespace="txthrift.appservice")

DEFAULT_PORT = "tcp:9090"
DEFAULT_SHUTDOWN_TIMEOUT = 10.0

#: How long closed connections get to send their last replies before they
#: are aborted, on top of the shutdown timeout.
_CLOSE_GRACE = 2.0


class CannotListen(SystemExit, Exception):
    """
    A service could not listen on one of its endpoints.

    It is an C{Exception}, so that whoever handles start-up failures sees it
    (twistd removes its pidfile and tells a daemon's parent); it is a
    C{SystemExit}, so that a program that lets it through, twistd included,
    ends with its one-line message and status 1 rather than a traceback.
    Nothing else in twistd does both for a service that cannot start.
    """


def listenOn(endpoints: Sequence[tuple[str, IStreamServerEndpoint]],
             factory: IProtocolFactory) -> Deferred[list[IListeningPort]]:
    """
    Listen on every endpoint, or on none.

    @param endpoints: (description for messages, endpoint) pairs.
    @return: a Deferred firing with the ports in the endpoints' order, or
        failing with L{CannotListen} naming the first endpoint that failed
        (the others then stop listening).  Cancelling it cancels the
        attempts still under way.
    """
    attempts = [maybeDeferred(endpoint.listen, factory) for _, endpoint in endpoints]

    def listened(results: list[tuple[bool, Any]]) -> list[IListeningPort]:
        ports = [result for ok, result in results if ok]
        for (description, _), (ok, result) in zip(endpoints, results):
            if not ok:
                for port in ports:
                    port.stopListening()
                # No log line: under twistd, stderr is the log already.
                raise CannotListen(f"{_cause(result)} on {description}")
        return ports

    return DeferredList(attempts, consumeErrors=True).addCallback(listened)


def _cause(failure: Failure) -> str:
    """
    Why listening failed, as short as it says it: daemonizing, twistd
    passes on only the first 100 bytes of the exception, its class's dotted
    name included, so the cause comes first (C{Address already in use}).
    """
    error = failure.value
    reason = getattr(error, "socketError", None)
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    if reason is not None:
        return " ".join(str(reason).split()) or type(reason).__name__
    return failure.getErrorMessage()


def announce(served: str, addresses: Sequence[str], *, transport: str, protocol: str,
             limits: Limits, threads: int, shutdownTimeout: float,
             workers: int | None = None) -> None:
    """
    Log the one line that says what is served where, and how.
    """
    settings = (
        "Serving {served} on {where} (transport={transport} protocol={protocol}"
        " max_frame_size={limits[max_frame_size]} max_pending={limits[max_pending]}"
        " idle_timeout={limits[idle_timeout]} call_timeout={limits[call_timeout]}"
        " threads={threads} shutdown_timeout={shutdownTimeout}")
    if workers is not None:
        settings += " workers={workers}"
    log.info(settings + " txthrift={version})",
             served=served, where=", ".join(addresses), addresses=list(addresses),
             transport=transport, protocol=protocol, limits=asdict(limits), threads=threads,
             shutdownTimeout=shutdownTimeout, workers=workers, version=__version__)


async def within(clock: IReactorTime, seconds: float, event: Deferred[Any]) -> bool:
    """
    Whether C{event} fires within C{seconds}; if it does not, it is
    cancelled.
    """
    try:
        await event.addTimeout(seconds, clock)
    except defer.TimeoutError:
        return False
    return True


def stoppedCleanly(reactor: Any) -> None:
    """
    A signal stopped the reactor and every call in flight got its reply.

    twistd ends a process stopped by a signal by raising that signal again,
    so that it dies of it; a graceful stop is a success, so it exits 0.
    """
    forgetStopSignal(reactor)


class ThriftService(Service):
    """
    Serves one L{ServerFactory} on some endpoints while running.

    @ivar factory: the factory every endpoint serves.
    @ivar ports: the listening ports, once listening.
    @ivar shutdownTimeout: seconds L{stopService} waits for calls in flight.
    @ivar gaveUp: whether this service stopped the reactor because it could
        not go on (an endpoint failed to listen after start-up).
    """

    def __init__(self, reactor: Any, endpoints: Sequence[tuple[str, IStreamServerEndpoint]],
                 factory: ServerFactory, *, threads: Threads | None = None,
                 shutdownTimeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
                 served: str = "Thrift") -> None:
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self._endpoints = list(endpoints)
        self.factory = factory
        self.ports: list[IListeningPort] = []
        self.shutdownTimeout = shutdownTimeout
        self._threads = threads
        self._served = served
        self._listening: Deferred[Any] | None = None
        self.gaveUp = False

    def privilegedStartService(self) -> None:
        """
        Listen, before twistd sheds its privileges (so ports below 1024 work).

        @raise CannotListen: when an endpoint cannot listen.
        """
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        """
        Start the thread pool, and listen unless already listening.

        @raise CannotListen: when an endpoint cannot listen.
        """
        super().startService()
        if self._threads is not None:
            self._threads.start()
        if self._listening is None:
            self._listen()

    def _listen(self) -> None:
        listening = listenOn(self._endpoints, self.factory).addCallback(self._listened)
        self._listening = listening
        if listening.called:
            # Every endpoint Twisted ships listens at once: fail at once too.
            failed: list[Failure] = []
            listening.addErrback(failed.append)
            if failed:
                self._listening = None
                failed[0].raiseException()
        else:
            listening.addErrback(self._failedLater)

    def _listened(self, ports: list[IListeningPort]) -> list[IListeningPort]:
        self.ports = ports
        factory = self.factory
        announce(self._served, [addressOf(port.getHost(), isinstance(endpoint, SSL4ServerEndpoint))
                                for (_, endpoint), port in zip(self._endpoints, ports)],
                 transport=factory.transport, protocol=factory.protocolName,
                 limits=factory.limits, threads=self._threads.size if self._threads else 0,
                 shutdownTimeout=self.shutdownTimeout)
        return ports

    def _failedLater(self, failure: Failure) -> None:
        # An endpoint that listens asynchronously failed after start-up: the
        # process would not serve on it, so it stops.
        if not self.running:
            return  # Stopping cancelled the attempt.
        if failure.check(CannotListen):
            # Says all there is to say: no traceback.
            log.critical("stopping: {error}", error=failure.getErrorMessage())
        else:
            log.failure("stopping: {error}", failure, error=failure.getErrorMessage())
        self.gaveUp = True
        self._reactor.callWhenRunning(self._stopReactor)

    def _stopReactor(self) -> None:
        if self._reactor.running:
            self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, let the calls in flight finish (for up to
        C{shutdownTimeout} seconds), then close every connection.

        @return: a Deferred firing when all that is done.
        """
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self._stopListening()
        drained = await self._drain()
        connections = len(self.factory.connections)
        closed = await self._close()
        if self._threads is not None:
            self._threads.stop()
        if drained and closed:
            stoppedCleanly(self._reactor)
        log.info("Stopped serving {served}; closed {count} connection(s)",
                 served=self._served, count=connections)

    async def _stopListening(self) -> None:
        listening, self._listening = self._listening, None
        if listening is not None and not listening.called:
            listening.cancel()
        ports, self.ports = self.ports, []
        await DeferredList([maybeDeferred(port.stopListening) for port in ports],
                           consumeErrors=True)

    def _busy(self) -> int:
        calls = sum(connection.inFlight for connection in self.factory.connections)
        if self._threads is not None:
            calls = max(calls, self._threads.busy)
        return calls

    async def _drain(self) -> bool:
        """
        Wait up to C{shutdownTimeout} seconds for the calls in flight.

        @return: whether they all ended in time.
        """
        busy = self._busy()
        if not busy:
            return True
        log.info("Stopped listening; waiting up to {timeout}s for {calls} call(s) in flight",
                 timeout=self.shutdownTimeout, calls=busy)
        if await within(self._clock, self.shutdownTimeout, Deferred.fromCoroutine(self._idle())):
            return True
        log.emit(LogLevel.warn, "{calls} call(s) still in flight after {timeout}s; closing anyway",
                 calls=self._busy(), timeout=self.shutdownTimeout)
        return False

    async def _idle(self) -> None:
        """
        Fires once no call runs on a connection nor in the thread pool.
        """
        while True:
            await self.factory.whenIdle()
            if self._threads is not None:
                await self._threads.whenIdle()
            if not self._busy():
                return

    async def _close(self) -> bool:
        """
        Close every connection, letting it send what is written first; a
        peer that does not read its replies gets L{_CLOSE_GRACE} seconds,
        then is cut off.

        @return: whether every connection closed without being cut off.
        """
        for connection in list(self.factory.connections):
            # The protocol, not its transport, closes: replies it has batched
            # for the reactor's next turn go out first.
            connection.close()
        if await within(self._clock, _CLOSE_GRACE, self.factory.whenDisconnected()):
            return True
        for connection in list(self.factory.connections):
            abort = getattr(connection.transport, "abortConnection", None)
            if abort is not None:
                abort()
        # An aborted connection is gone at the reactor's next turn.
        await within(self._clock, _CLOSE_GRACE, self.factory.whenDisconnected())
        return False


def _portSpecs(port: PortSpec | Sequence[PortSpec]) -> list[PortSpec]:
    if isinstance(port, (str, int)) or IStreamServerEndpoint.providedBy(port):
        return [port]
    specs = list(port)
    if not specs:
        raise ValueError("no port to listen on")
    return specs


def _checkNumbers(threads: int, shutdownTimeout: float) -> None:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be a non-negative integer, not {threads!r}")
    if not shutdownTimeout >= 0:
        raise ValueError(f"shutdown_timeout must be 0 or more seconds, not {shutdownTimeout!r}")


def thriftService(handler: object, *, port: PortSpec | Sequence[PortSpec] = DEFAULT_PORT,
                  service: ModuleType | None = None, transport: str = "auto",
                  protocol: str = "auto", threads: int = 0,
                  shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT, reactor: Any = None,
                  **limits: Any) -> ThriftService:
    """
    A service serving a Thrift handler, for a C{.tac} file or any
    C{MultiService}:

        application = service.Application("calculator")
        thriftService(CalculatorHandler(), port="tcp:9090").setServiceParent(application)

    @param handler: what L{txthrift.serve} accepts: a handler object, a
        processor, or a mapping of service names to either (multiplexed).
    @param port: where to listen: an endpoint description, a port number,
        an endpoint, or a sequence of those to listen on each.
    @param service: the generated service module, when it cannot be found
        from the handler's C{Iface}.
    @param transport: C{"framed"}, C{"buffered"} or C{"auto"}.
    @param protocol: C{"binary"}, C{"compact"}, C{"json"} or C{"auto"}.
    @param threads: when positive, the handler blocks: its plain methods
        run in a pool of this many threads while the service runs (its
        C{async def} and C{inlineCallbacks} ones in the reactor).  What
        runs where is decided by a method's definition, not by what it
        returns: a plain C{def} returning a Deferred runs in the pool too
        (its Deferred is then waited for in the reactor), so it must not
        touch the reactor; make it C{async def}, or decorate it with
        C{inlineCallbacks}, to run it in the reactor.  A plain generated
        processor runs its whole C{process} in the pool; a C{py:twisted}
        one runs in the reactor with its handler's plain methods in the
        pool; a C{TMultiplexedProcessor} runs in the reactor with each of
        its processors threaded by its kind.  A call cancelled (its
        connection lost, its C{call_timeout} past) before a thread takes
        it up never runs; one already running cannot be stopped.
    @param shutdown_timeout: seconds stopping waits for calls in flight.
    @param reactor: the reactor (an C{IReactorTime} for the shutdown
        timeout too); the global one when omitted.
    @param limits: keywords of L{Limits}.
    @raise TypeError: for a handler whose service cannot be found, or an
        unknown limit.
    @raise ValueError: for a bad port, transport, protocol, number or limit.
    """
    if reactor is None:
        reactor = defaultReactor()
    _checkNumbers(threads, shutdown_timeout)
    endpoints = [parseEndpoint(reactor, spec) for spec in _portSpecs(port)]
    served = resolve(handler, service)
    pool = Threads(reactor, threads) if threads else None
    factory = ServerFactory(threaded(served, pool) if pool is not None else served,
                            transport=transport, protocol=protocol,
                            limits=Limits.from_keywords(**limits), clock=reactor)
    return ThriftService(reactor, endpoints, factory, threads=pool,
                         shutdownTimeout=shutdown_timeout, served=served.name)
