"""
A Thrift handler hosted as a Twisted application service: L{ThriftService},
and L{thriftService} to make one (in a C{.tac} file, or for the C{twistd
thrift} plugin).

The service listens on one or more endpoints of each kind (Thrift over
TCP, HTTP, WebSocket: a L{Listener} each), logs one line saying what it
serves where, and on shutdown stops listening, lets the calls in flight
finish (for up to C{shutdown_timeout} seconds), then closes its
connections: each step waits for an event (every kind falling idle, the
thread pool's last call ending, the last connection going), bounded by a
timeout, never by polling.  With C{threads}, a blocking handler's methods
run in a thread pool (L{txthrift._threads}), so the reactor never waits for
them.

This module knows nothing of command lines, dotted names or worker
processes; it is their building block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ._accesslog import AccessLog, openAccessLog
from ._hosting import PortSpec, addressOf, parseEndpoint
from ._limits import Limits, defaultReactor
from ._observing import observing
from ._sasl import serverFactory
from ._server import ServerFactory
from ._service import Served, resolve
from ._threads import Threads, threaded
from ._tls import PREFIX as MUTUAL_TLS
from ._tls import requiringClientCertificates
from ._twistedinternals import forgetStopSignal
from ._version import __version__
from .metrics import Metrics
from .web import ThriftResource, ThriftSite

__all__ = ["KINDS", "CannotListen", "Drain", "Listener", "ThriftService", "announce",
           "describeAddress", "listenOn", "listeners", "stoppedCleanly", "thriftService",
           "within"]

log = Logger(namespace="txthrift.appservice")

DEFAULT_PORT = "tcp:9090"
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
DEFAULT_HTTP_PATH = "/"

#: The kinds of port a service listens on: Thrift on a byte stream (TCP,
#: UNIX, TLS), Thrift over HTTP, Thrift over WebSocket.
KINDS = ("thrift", "http", "websocket")

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
             factory: IProtocolFactory | Sequence[IProtocolFactory]
             ) -> Deferred[list[IListeningPort]]:
    """
    Listen on every endpoint, or on none.

    @param endpoints: (description for messages, endpoint) pairs.
    @param factory: what every endpoint serves, or one factory per endpoint.
    @return: a Deferred firing with the ports in the endpoints' order, or
        failing with L{CannotListen} naming the first endpoint that failed
        (the others then stop listening).  Cancelling it cancels the
        attempts still under way.
    """
    factories = (list(factory) if isinstance(factory, Sequence)
                 else [factory] * len(endpoints))
    attempts = [maybeDeferred(endpoint.listen, serving)
                for (_, endpoint), serving in zip(endpoints, factories)]

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


class Drain(TypingProtocol):
    """
    What a graceful stop needs of the connections of one kind of port.
    """

    def busy(self) -> int:
        """
        Calls whose answer is still being computed.
        """

    def whenIdle(self) -> Deferred[None]:
        """
        A Deferred of its own, fired once no call is busy.
        """

    def connectionCount(self) -> int: ...

    def closeConnections(self) -> None:
        """
        Close every connection once what is written to it has gone.
        """

    def abortConnections(self) -> None: ...

    def whenDisconnected(self) -> Deferred[None]:
        """
        A Deferred of its own, fired once no connection is open.
        """


class _FactoryDrain:
    """
    The connections of a L{ServerFactory}: Thrift over TCP, or over
    WebSocket (one L{txthrift.ServerProtocol} per WebSocket).
    """

    def __init__(self, factory: ServerFactory) -> None:
        self._factory = factory

    def busy(self) -> int:
        return sum(connection.inFlight for connection in self._factory.connections)

    def whenIdle(self) -> Deferred[None]:
        return self._factory.whenIdle()

    def connectionCount(self) -> int:
        return len(self._factory.connections)

    def closeConnections(self) -> None:
        for connection in list(self._factory.connections):
            # The protocol, not its transport, closes: replies it has batched
            # for the reactor's next turn go out first.
            connection.close()

    def abortConnections(self) -> None:
        for connection in list(self._factory.connections):
            abort = getattr(connection.transport, "abortConnection", None)
            if abort is not None:
                abort()

    def whenDisconnected(self) -> Deferred[None]:
        return self._factory.whenDisconnected()


class _SiteDrain:
    """
    The HTTP connections of a L{ThriftSite}, and the calls of its
    L{ThriftResource}.
    """

    def __init__(self, site: ThriftSite, resource: ThriftResource) -> None:
        self._site = site
        self._resource = resource

    def busy(self) -> int:
        return self._resource.inFlight

    def whenIdle(self) -> Deferred[None]:
        return self._resource.whenIdle()

    def connectionCount(self) -> int:
        return len(self._site.connections)

    def closeConnections(self) -> None:
        self._site.closeConnections()

    def abortConnections(self) -> None:
        self._site.abortConnections()

    def whenDisconnected(self) -> Deferred[None]:
        return self._site.whenDisconnected()


@dataclass
class Listener:
    """
    One kind of port a L{ThriftService} listens on: its endpoints, the
    factory they serve, and what draining its connections takes.

    @ivar kind: one of L{KINDS}, for the startup line.
    @ivar path: where HTTP is served, for the startup line.
    """

    kind: str
    endpoints: list[tuple[str, IStreamServerEndpoint]]
    factory: IProtocolFactory
    drain: Drain
    path: str = DEFAULT_HTTP_PATH
    ports: list[IListeningPort] = field(default_factory=list)


#: The URL schemes of each kind of port but plain Thrift: (without TLS, with).
_SCHEMES = {"http": ("http", "https"), "websocket": ("ws", "wss")}


def describeAddress(kind: str, host: IAddress, tls: bool = False, path: str = "/") -> str:
    """
    Where a port of C{kind} really listens, for the startup line: endpoint
    syntax for Thrift (L{addressOf}), a URL for HTTP and WebSocket.
    """
    if kind not in _SCHEMES:
        return addressOf(host, tls)
    scheme = _SCHEMES[kind][tls]
    if isinstance(host, IPv6Address):
        return f"{scheme}://[{host.host}]:{host.port}{path}"
    if isinstance(host, IPv4Address):
        return f"{scheme}://{host.host}:{host.port}{path}"
    return f"{scheme} on {addressOf(host)} at {path}"


def _shown(listener: Listener, description: str, endpoint: IStreamServerEndpoint,
           port: IListeningPort) -> str:
    """
    Where a listening port is, for the startup line, saying whether it
    requires client certificates.
    """
    mutual = description.startswith(f"{MUTUAL_TLS}:")
    shown = describeAddress(listener.kind, port.getHost(),
                            mutual or isinstance(endpoint, SSL4ServerEndpoint), listener.path)
    return f"{shown} (client certificates required)" if mutual else shown


class ThriftService(Service):
    """
    Serves Thrift on some endpoints while running: a L{ServerFactory} on
    the TCP (UNIX, TLS) ones, and whatever other L{Listener}s it is given
    (HTTP, WebSocket) on theirs.

    @ivar factory: the factory every Thrift (TCP) endpoint serves.
    @ivar ports: the listening ports, once listening, of every kind.
    @ivar metricsPort: where C{metrics_port} listens, once it does.
    @ivar shutdownTimeout: seconds L{stopService} waits for calls in flight.
    @ivar gaveUp: whether this service stopped the reactor because it could
        not go on (an endpoint failed to listen after start-up).
    @ivar closeWhenStopped: called once stopping has closed every
        connection (an access log's C{close}, to write its last lines).
    """

    def __init__(self, reactor: Any, endpoints: Sequence[tuple[str, IStreamServerEndpoint]],
                 factory: ServerFactory, *, threads: Threads | None = None,
                 shutdownTimeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
                 served: str = "Thrift", listeners: Sequence[Listener] = ()) -> None:
        """
        @param endpoints: where C{factory} (Thrift on a byte stream) listens.
        @param listeners: the other kinds of port, and where.
        """
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self.factory = factory
        self._listeners = [Listener("thrift", list(endpoints), factory, _FactoryDrain(factory)),
                           *listeners]
        self.ports: list[IListeningPort] = []
        self.shutdownTimeout = shutdownTimeout
        self._threads = threads
        self._served = served
        self._listening: Deferred[Any] | None = None
        self.gaveUp = False
        self.closeWhenStopped: list[Callable[[], object]] = []
        self._metricsAt: tuple[tuple[str, IStreamServerEndpoint], Any] | None = None
        self.metricsPort: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        """
        Listen, before twistd sheds its privileges (so ports below 1024 work).

        @raise CannotListen: when an endpoint cannot listen.
        """
        super().privilegedStartService()
        self._listen()

    def serveMetrics(self, endpoint: tuple[str, IStreamServerEndpoint], metrics: Metrics) -> None:
        """
        Serve C{metrics} (a L{txthrift.metrics.Metrics}) with C{/healthz} and
        C{/readyz} on C{endpoint} (description, endpoint) once started; its
        port outlives the drain (C{/readyz} answers 503 from the moment
        stopping begins) and closes last.
        """
        from twisted.web.server import Site

        from .metrics import metricsResource

        site = Site(metricsResource(metrics, ready=lambda: bool(self.running and self.ports)))
        self._metricsAt = (endpoint, site)

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
        if self._metricsAt is not None:
            (_, endpoint), site = self._metricsAt
            endpoint.listen(site).addCallbacks(self._metricsListening, self._failedLater)

    def _metricsListening(self, port: IListeningPort) -> None:
        self.metricsPort = port
        log.info("metrics, /healthz and /readyz on {where}",
                 where=describeAddress("http", port.getHost()))
        self.closeWhenStopped.append(port.stopListening)

    def _listen(self) -> None:
        endpoints = [pair for listener in self._listeners for pair in listener.endpoints]
        factories = [listener.factory for listener in self._listeners
                     for _ in listener.endpoints]
        listening = listenOn(endpoints, factories).addCallback(self._listened)
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
        addresses = []
        left = iter(ports)
        for listener in self._listeners:
            listener.ports = [next(left) for _ in listener.endpoints]
            addresses += [_shown(listener, description, endpoint, port)
                          for (description, endpoint), port in zip(listener.endpoints,
                                                                   listener.ports)]
        factory = self.factory
        announce(self._served, addresses,
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
        connections = sum(listener.drain.connectionCount() for listener in self._listeners)
        closed = await self._close()
        if self._threads is not None:
            self._threads.stop()
        for close in self.closeWhenStopped:
            close()
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
        calls = sum(listener.drain.busy() for listener in self._listeners)
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
            for listener in self._listeners:
                await listener.drain.whenIdle()
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
        drains = [listener.drain for listener in self._listeners]
        for drain in drains:
            drain.closeConnections()
        if await within(self._clock, _CLOSE_GRACE, _all([d.whenDisconnected() for d in drains])):
            return True
        for drain in drains:
            drain.abortConnections()
        # An aborted connection is gone at the reactor's next turn.
        await within(self._clock, _CLOSE_GRACE, _all([d.whenDisconnected() for d in drains]))
        return False


def _all(events: list[Deferred[None]]) -> Deferred[None]:
    """
    Fires once every one of C{events} has; cancelling it cancels them, and
    it fails with C{CancelledError} then (as L{within} needs to tell).
    """
    return Deferred.fromCoroutine(_allOf(events))


async def _allOf(events: list[Deferred[None]]) -> None:
    try:
        for event in events:
            await event
    finally:
        for event in events:
            if not event.called:
                event.addErrback(lambda failure: failure.trap(CancelledError))
                event.cancel()


def _portSpecs(port: PortSpec | Sequence[PortSpec] | None) -> list[PortSpec]:
    if port is None:
        return []
    if isinstance(port, (str, int)) or IStreamServerEndpoint.providedBy(port):
        return [port]
    return list(port)


def _endpoints(reactor: Any, *ports: PortSpec | Sequence[PortSpec] | None,
               clientCA: str | None = None) -> list[list[tuple[str, IStreamServerEndpoint]]]:
    """
    The Thrift, HTTP and WebSocket endpoints of C{ports}: Thrift on
    L{DEFAULT_PORT} when none of them is given.

    @param clientCA: a PEM file of CAs: each C{ssl:} string of C{ports}
        then requires client certificates signed by one of them.
    @raise ValueError: for a bad port, or none at all; a C{clientCA}
        without an C{ssl:} string.
    """
    specs = [_portSpecs(given) for given in ports]
    if clientCA is not None:
        changed = [requiringClientCertificates(given, clientCA) for given in specs]
        if not any(changed):
            raise ValueError("tls_client_ca: no ssl: port string to require client"
                             " certificates on")
    found = [[parseEndpoint(reactor, spec) for spec in given] for given in specs]
    if ports[0] is None and not any(found):
        found[0] = [parseEndpoint(reactor, DEFAULT_PORT)]
    if not any(found):
        raise ValueError("no port to listen on")
    return found


def _checkNumbers(threads: int, shutdownTimeout: float) -> None:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be a non-negative integer, not {threads!r}")
    if not shutdownTimeout >= 0:
        raise ValueError(f"shutdown_timeout must be 0 or more seconds, not {shutdownTimeout!r}")


def listeners(reactor: Any, served: Served, *, http: Sequence[tuple[str, IStreamServerEndpoint]],
              websocket: Sequence[tuple[str, IStreamServerEndpoint]], path: str,
              protocol: str, limits: Limits, threads: Threads | None,
              observer: Any = None) -> list[Listener]:
    """
    The HTTP and WebSocket listeners serving C{served} (resolved, not yet
    threaded), where there are endpoints for them.

    @raise ValueError: for a bad path or protocol.
    @raise ImportError: for WebSocket endpoints without autobahn (the extra
        C{txthrift[websocket]}), saying so.
    """
    found: list[Listener] = []
    if http:
        resource = ThriftResource(threaded(served, threads) if threads is not None else served,
                                  protocol=protocol, clock=reactor, observer=observer,
                                  **asdict(limits))
        site = ThriftSite(resource, path=path, reactor=reactor)
        found.append(Listener("http", list(http), site, _SiteDrain(site, resource), path))
    if websocket:
        from ._websocket import websocketFactory  # autobahn: the extra txthrift[websocket]

        factory = websocketFactory(served, protocol=protocol, limits=limits, clock=reactor,
                                   threads=threads, observer=observer)
        found.append(Listener("websocket", list(websocket), factory,
                              _FactoryDrain(factory.serverFactory)))
    return found


def thriftService(handler: object, *, port: PortSpec | Sequence[PortSpec] | None = None,
                  http_port: PortSpec | Sequence[PortSpec] | None = None,
                  ws_port: PortSpec | Sequence[PortSpec] | None = None,
                  http_path: str = DEFAULT_HTTP_PATH, service: ModuleType | None = None,
                  transport: str = "auto", protocol: str = "auto", threads: int = 0,
                  shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT, reactor: Any = None,
                  tls_client_ca: str | None = None, sasl: object = None, observer: Any = None,
                  access_log: str | AccessLog | None = None, trace: bool = False,
                  metrics_port: PortSpec | None = None, **limits: Any) -> ThriftService:
    """
    A service serving a Thrift handler, for a C{.tac} file (as
    C{examples/hello/hello.tac}) or any C{MultiService}.

    @param handler: what L{txthrift.serve} accepts: a handler object, a
        processor, or a mapping of service names to either (multiplexed).
    @param port: where to serve Thrift on a byte stream: an endpoint or its
        description, a port number, or a sequence of those; C{"tcp:9090"} by default.
    @param http_port: where to serve Thrift over HTTP (as C{port}): a call
        per C{POST} to C{http_path}.  C{ws_port}: over WebSocket (the extra
        C{txthrift[websocket]}).
    @param service: the generated module, when the handler's C{Iface} does not say.
    @param transport: on C{port}: C{"framed"}, C{"buffered"}, C{"auto"}...; C{protocol} too.
    @param threads: when positive, plain handler methods run in this many threads.
    @param shutdown_timeout: seconds stopping waits for calls in flight.
    @param reactor: the reactor; the global one when omitted.
    @param tls_client_ca: a PEM file of CAs: every C{ssl:} port string then
        requires a client certificate they signed (as C{mtls:} does).
    @param sasl: as C{serve} takes it: SASL PLAIN on C{port} (not HTTP, WebSocket).
    @param observer: an L{ICallObserver} told of every port's calls.
    @param access_log: an L{AccessLog}, or a path to append one to (C{"-"}: stdout).
    @param trace: a span per call (L{Tracing}) to OpenTelemetry's tracer.
    @param metrics_port: where to serve C{/metrics}, C{/healthz}, C{/readyz} (as C{port}).
    @param limits: keywords of L{Limits}.
    @raise TypeError: for a handler whose service cannot be found, or an
        unknown limit.  L{ValueError}: for a bad port, path, transport,
        protocol, number, limit, or C{tls_client_ca} with no C{ssl:} port.
        L{ImportError}: for C{ws_port} without autobahn, C{trace} without
        opentelemetry-api, C{metrics_port} without prometheus_client.
        L{OSError}: for an C{access_log} not opened.
    """
    reactor = defaultReactor() if reactor is None else reactor
    _checkNumbers(threads, shutdown_timeout)
    endpoints, http, websocket = _endpoints(reactor, port, http_port, ws_port,
                                            clientCA=tls_client_ca)
    served = resolve(handler, service)
    pool = Threads(reactor, threads) if threads else None
    settings = Limits.from_keywords(**limits)
    observer, closers, metrics = _observers(reactor, observer, access_log, trace, metrics_port)
    factory = serverFactory(threaded(served, pool) if pool is not None else served, sasl,
                            transport=transport, protocol=protocol, limits=settings, clock=reactor,
                            observer=observer)
    hosting = ThriftService(reactor, endpoints, factory, threads=pool, served=served.name,
                            shutdownTimeout=shutdown_timeout, listeners=listeners(
                                reactor, served, http=http, websocket=websocket,
                                path=http_path, protocol=protocol, limits=settings, threads=pool,
                                observer=observer))
    hosting.closeWhenStopped.extend(closers)
    if metrics is not None:
        hosting.serveMetrics(*metrics)
    return hosting


def _observers(reactor: Any, observer: Any, accessLog: str | AccessLog | None, trace: bool,
               metricsPort: PortSpec | None) -> tuple[Any, list[Callable[[], object]],
                                                      tuple[tuple[str, Any], Metrics] | None]:
    """
    The observer of L{thriftService}'s servers: C{observer}, an access log,
    tracing and metrics, as asked for; what to close once stopped; and
    where to serve the metrics, with them.
    """
    metrics = serving = None
    if metricsPort is not None:
        metrics = Metrics()
        serving = (parseEndpoint(reactor, metricsPort), metrics)
    opened = None
    if isinstance(accessLog, str):
        accessLog = opened = openAccessLog(accessLog, reactor)
    tracing = None
    if trace:
        from ._tracing import Tracing  # opentelemetry: the extra txthrift[tracing]

        tracing = Tracing()
    return (observing(observer, metrics, accessLog, tracing),
            [] if opened is None else [opened.close], serving)
