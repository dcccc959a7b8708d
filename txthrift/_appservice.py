"""
A Thrift handler hosted as a Twisted application service: L{ThriftService},
and L{thriftService} to make one (in a C{.tac} file, or for the C{twistd
thrift} plugin, whose options live in L{txthrift._tap}).

The service listens on one or more endpoints, logs one line saying what it
serves where, and on shutdown stops listening, lets the calls in flight
finish (for up to C{shutdown_timeout} seconds), then closes its
connections.  With C{threads}, a blocking handler's methods run in a thread
pool, so the reactor never waits for them.
"""

from __future__ import annotations

import copy
import inspect
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from functools import partial
from threading import Thread
from types import CoroutineType, ModuleType
from typing import Any, TypeAlias

from thrift.TMultiplexedProcessor import TMultiplexedProcessor
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import IListeningPort, IReactorTime, IStreamServerEndpoint
from twisted.internet.task import deferLater
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ._limits import Limits, defaultReactor
from ._server import ServerFactory
from ._service import describe, serviceOf

__all__ = ["CannotListen", "PortSpec", "ThriftService", "thriftService"]

log = Logger(namespace="txthrift.tap")

#: Where to listen: a server endpoint description (C{"tcp:9090"},
#: C{"unix:/run/app.sock"}, C{"ssl:9443:privateKey=k.pem:certKey=c.pem"}),
#: a bare port number (TCP on every interface), or an endpoint.
PortSpec: TypeAlias = "str | int | IStreamServerEndpoint"

DEFAULT_PORT = "tcp:9090"
DEFAULT_SHUTDOWN_TIMEOUT = 10.0

#: How often a stopping service looks whether its calls have finished.
_POLL_INTERVAL = 0.05
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
    """


def oneLine(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def parseEndpoint(reactor: Any, port: PortSpec) -> tuple[str, IStreamServerEndpoint]:
    """
    A port spec as (description for messages, endpoint).

    @raise ValueError: for a description no endpoint parser accepts.
    """
    if isinstance(port, bool):
        raise TypeError(f"not a port: {port!r}")
    if isinstance(port, int) or (isinstance(port, str) and port.strip().isdigit()):
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError(f"TCP port {number} is not between 0 and 65535")
        port = f"tcp:{number}"
    if isinstance(port, str):
        try:
            return port, serverFromString(reactor, port)
        except Exception as error:
            raise ValueError(f"not a server endpoint description: {oneLine(error)}") from error
    if IStreamServerEndpoint.providedBy(port):
        return repr(port), port
    raise TypeError(f"not a port: {port!r}")


def _address(endpoint: IStreamServerEndpoint, port: IListeningPort) -> str:
    """
    Where a listening port really listens, in endpoint syntax.
    """
    host = port.getHost()
    if isinstance(host, IPv6Address):
        return f"tcp6:[{host.host}]:{host.port}"
    if isinstance(host, IPv4Address):
        kind = "ssl" if isinstance(endpoint, SSL4ServerEndpoint) else "tcp"
        return f"{kind}:{host.host}:{host.port}"
    if isinstance(host, UNIXAddress):
        name = host.name
        return "unix:" + (name.decode(errors="replace") if isinstance(name, bytes)
                          else str(name))
    return str(host)


def _nameOf(handler: object, service: ModuleType | None) -> str:
    if service is not None:
        return describe(service).name
    if callable(getattr(handler, "process", None)):
        kind = type(handler)
        return f"processor {kind.__module__}.{kind.__qualname__}"
    found = serviceOf(handler)
    return describe(found).name if found is not None else repr(handler)


def servedName(handler: object, service: ModuleType | None) -> str:
    """
    What a handler (or mapping of them) serves, for the log.
    """
    if isinstance(handler, Mapping):
        parts = []
        for name, value in handler.items():
            target, module = value if isinstance(value, tuple) else (value, None)
            parts.append(f"{name}={_nameOf(target, module)}")
        return "multiplexed " + ", ".join(parts)
    return _nameOf(handler, service)


class _DaemonThreadPool(ThreadPool):
    """
    A thread pool whose threads do not keep a stopping process alive: a
    handler still blocked after the shutdown timeout is abandoned.
    """

    @staticmethod
    def threadFactory(*args: Any, **kwargs: Any) -> Thread:  # type: ignore[override]
        return Thread(*args, daemon=True, **kwargs)


class _Threads:
    """
    The thread pool of a service, made anew each time the service starts
    (a stopped L{ThreadPool} cannot start again).
    """

    def __init__(self, reactor: Any, size: int) -> None:
        self._reactor = reactor
        self.size = size
        self.pool: ThreadPool | None = None

    def start(self) -> None:
        if self.pool is None:
            self.pool = _DaemonThreadPool(0, self.size, name="txthrift")
            self.pool.start()

    @property
    def busy(self) -> int:
        """
        Threads running a call now.
        """
        return len(self.pool.working) if self.pool is not None else 0

    def stop(self) -> None:
        """
        Stop the pool, unless a thread is still running a call: not to wait
        for it, that thread (a daemon) is abandoned.
        """
        pool, self.pool = self.pool, None
        if pool is None:
            return
        if pool.working:
            log.emit(LogLevel.warn, "abandoning {calls} handler thread(s) still running",
                     calls=len(pool.working))
        else:
            pool.stop()

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        Run C{function} in the pool.

        @return: a Deferred firing in the reactor with what C{function}
            returned (see L{_onReactor}).  Cancelling it before a thread
            takes the call up means the call never runs: the calls of a lost
            connection, or past their timeout, do not hold up newer ones
            behind them.  A call already running cannot be stopped; its
            Deferred fails with C{CancelledError} at once, and what it
            returns later is dropped (a Deferred cancelled, a coroutine
            closed).
        """
        self.start()
        assert self.pool is not None
        work = _PoolCall(self._reactor, partial(function, *args, **kwargs))
        self.pool.callInThread(work.run)
        return work.result.addCallback(_onReactor)


class _PoolCall:
    """
    One call waiting for, or running in, a pool thread; its Deferred's
    canceller marks it, so that a thread taking it up later skips it.
    """

    def __init__(self, reactor: Any, function: Callable[[], Any]) -> None:
        self._reactor = reactor
        self._function: Callable[[], Any] | None = function
        self._cancelled = False
        self.result: Deferred[Any] = Deferred(self._cancel)

    def _cancel(self, result: Deferred[Any]) -> None:
        # In the reactor; the thread reads the mark before it starts the call
        # (the GIL orders the two).  The Deferred then fails CancelledError.
        self._cancelled = True
        # Its arguments (a big request's, say) need not wait for a thread.
        self._function = None

    def run(self) -> None:
        """
        In a pool thread: make the call unless it was cancelled, and hand
        the outcome to the reactor.
        """
        function, self._function = self._function, None
        if self._cancelled or function is None:
            return
        outcome: object
        try:
            outcome = function()
        except BaseException:
            outcome = Failure()
        self._reactor.callFromThread(self._deliver, outcome)

    def _deliver(self, outcome: object) -> None:
        if not self.result.called:
            if isinstance(outcome, Failure):
                self.result.errback(outcome)
            else:
                self.result.callback(outcome)
        elif isinstance(outcome, Deferred):
            # Cancelled while it ran; nobody waits for the rest of its work.
            outcome.addErrback(lambda failure: failure.trap(CancelledError))
            outcome.cancel()
        elif isinstance(outcome, CoroutineType):
            outcome.close()


def _onReactor(value: object) -> object:
    """
    What a method run in the pool returned, carried on in the reactor: a
    coroutine (not started yet) runs there, a Deferred is waited for.
    """
    if isinstance(value, CoroutineType):
        return Deferred.fromCoroutine(value)
    return value


def _runsOnReactor(function: Callable[..., Any]) -> bool:
    """
    Whether C{function} is asynchronous by its definition, so that it must
    run in the reactor thread: an C{async def}, or a generator under
    C{inlineCallbacks}.
    """
    if inspect.iscoroutinefunction(function):
        return True
    return inspect.isgeneratorfunction(inspect.unwrap(function))


class _InThreads:
    """
    Stands for a blocking handler (or processor): each of its plain service
    methods returns a Deferred and runs the handler's in the pool, while its
    asynchronous ones (C{async def}, C{inlineCallbacks}) run in the reactor,
    where Deferreds and coroutines belong.
    """

    def __init__(self, handler: object, names: Sequence[str], threads: _Threads) -> None:
        self._handler = handler
        for name in names:
            function = getattr(handler, name, None)
            if callable(function):
                setattr(self, name, function if _runsOnReactor(function)
                        else partial(threads.call, function))

    def __repr__(self) -> str:
        return f"<{self._handler!r} in threads>"


def _threaded(handler: object, service: ModuleType | None,
              threads: _Threads) -> tuple[object, ModuleType | None]:
    """
    A handler whose methods run in C{threads}, with its service module
    (which the stand-in cannot be asked for).
    """
    if service is None and callable(getattr(handler, "process", None)):
        return _threadedProcessor(handler, threads), None
    module = service if service is not None else serviceOf(handler)
    if module is None:
        raise TypeError(
            f"cannot tell which Thrift service {handler!r} implements: pass service="
            "(the generated module), subclass its Iface, or declare @implementer(Iface)")
    return _InThreads(handler, sorted(describe(module).methods), threads), module


def _returnsDeferreds(processor: object) -> bool:
    """
    Whether C{processor} was generated by C{thrift --gen py:twisted}: its
    C{process_X} methods return Deferreds, so it must run in the reactor.

    The code looked at is the code that runs: the functions of the
    processor's C{_processMap}, whose module the py:twisted generator (and
    only it) makes import Twisted's C{defer}.  That holds for a subclass
    defined elsewhere too, which the class's own module would not.
    """
    functions = getattr(processor, "_processMap", None)
    if not isinstance(functions, dict) or not functions or not hasattr(processor, "_handler"):
        return False
    return all(getattr(function, "__globals__", {}).get("defer") is defer
               for function in functions.values())


def _threadedProcessor(processor: object, threads: _Threads) -> object:
    """
    A processor whose blocking work runs in C{threads}: a plain generated
    (or any other) processor's whole C{process}, since it calls its handler
    synchronously; for a py:twisted one, a copy running in the reactor over
    its handler's plain methods in the pool; for a C{TMultiplexedProcessor},
    a copy running in the reactor over its processors so threaded.  The
    user's processors are left as they are.
    """
    if isinstance(processor, TMultiplexedProcessor):
        multiplexed = copy.copy(processor)
        multiplexed.services = {name: _threadedProcessor(inner, threads)
                                for name, inner in processor.services.items()}
        if processor.defaultProcessor is not None:
            multiplexed.defaultProcessor = _threadedProcessor(processor.defaultProcessor, threads)
        return multiplexed
    if _returnsDeferreds(processor):
        twisted: Any = copy.copy(processor)
        twisted._handler = _InThreads(twisted._handler, sorted(twisted._processMap), threads)
        return twisted
    return _InThreads(processor, ["process"], threads)


def stoppedCleanly(reactor: Any) -> None:
    """
    A signal stopped the reactor and every call in flight got its reply.

    twistd ends a process stopped by a signal by raising that signal again,
    so that it dies of it; a graceful stop is a success, so it exits 0.
    (Twisted keeps the signal in a private attribute; if that ever changes,
    this does nothing and the process dies of the signal as before.)
    """
    if getattr(reactor, "_exitSignal", None) in (signal.SIGTERM, signal.SIGINT):
        reactor._exitSignal = None


class ThriftService(Service):
    """
    Serves one L{ServerFactory} on some endpoints while running.

    @ivar factory: the factory every endpoint serves.
    @ivar ports: the listening ports, once listening.
    @ivar shutdownTimeout: seconds L{stopService} waits for calls in flight.
    """

    def __init__(self, reactor: Any, endpoints: Sequence[tuple[str, IStreamServerEndpoint]],
                 factory: ServerFactory, *, threads: _Threads | None = None,
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
        #: Whether this service stopped the reactor because it could not go on.
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
        attempts = [maybeDeferred(endpoint.listen, self.factory)
                    for _, endpoint in self._endpoints]
        listening = DeferredList(attempts, consumeErrors=True).addCallback(self._listened)
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

    def _listened(self, results: list[tuple[bool, Any]]) -> list[IListeningPort]:
        ports = [result for ok, result in results if ok]
        for (description, _), (ok, result) in zip(self._endpoints, results):
            if not ok:
                for port in ports:
                    port.stopListening()
                # No log line: under twistd, stderr is the log already.
                raise CannotListen(f"cannot listen on {description}: {result.getErrorMessage()}")
        self.ports = ports
        addresses = [_address(endpoint, port)
                     for (_, endpoint), port in zip(self._endpoints, ports)]
        limits = self.factory.limits
        log.info(
            "Serving {served} on {where} (transport={transport} protocol={protocol}"
            " max_frame_size={limits[max_frame_size]} max_pending={limits[max_pending]}"
            " idle_timeout={limits[idle_timeout]} call_timeout={limits[call_timeout]}"
            " threads={threads}"
            " shutdown_timeout={shutdownTimeout})",
            served=self._served, where=", ".join(addresses), addresses=addresses,
            transport=self.factory.transport, protocol=self.factory.protocolName,
            limits=asdict(limits), threads=self._threads.size if self._threads is not None else 0,
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

    def _busy(self) -> int:
        calls = sum(connection.inFlight for connection in self.factory.connections)
        if self._threads is not None:
            calls = max(calls, self._threads.busy)
        return calls

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, let the calls in flight finish (for up to
        C{shutdownTimeout} seconds), then close every connection.

        @return: a Deferred firing when all that is done.
        """
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        listening, self._listening = self._listening, None
        if listening is not None and not listening.called:
            listening.cancel()
        ports, self.ports = self.ports, []
        await DeferredList([maybeDeferred(port.stopListening) for port in ports],
                           consumeErrors=True)
        clock = self._clock
        deadline = clock.seconds() + self.shutdownTimeout
        busy = self._busy()
        if busy:
            log.info("Stopped listening; waiting up to {timeout}s for {calls} call(s) in flight",
                     timeout=self.shutdownTimeout, calls=busy)
        while busy and clock.seconds() < deadline:
            await deferLater(clock, min(_POLL_INTERVAL, deadline - clock.seconds()))
            busy = self._busy()
        if busy:
            log.emit(LogLevel.warn,
                     "{calls} call(s) still in flight after {timeout}s; closing anyway",
                     calls=busy, timeout=self.shutdownTimeout)
        connections = list(self.factory.connections)
        for connection in connections:
            if connection.transport is not None:
                connection.transport.loseConnection()
        # Closing sends what is written first; a peer that does not read its
        # replies gets a moment, then is cut off.
        closing = clock.seconds() + _CLOSE_GRACE
        while self.factory.connections and clock.seconds() < closing:
            await deferLater(clock, _POLL_INTERVAL)
        stuck = list(self.factory.connections)
        for connection in stuck:
            abort = getattr(connection.transport, "abortConnection", None)
            if abort is not None:
                abort()
        # An aborted connection is gone at the reactor's next turn.
        while self.factory.connections and clock.seconds() < closing + _CLOSE_GRACE:
            await deferLater(clock, _POLL_INTERVAL)
        if self._threads is not None:
            self._threads.stop()
        if not busy and not stuck:
            stoppedCleanly(self._reactor)
        log.info("Stopped serving {served}; closed {count} connection(s)",
                 served=self._served, count=len(connections))


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
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be a non-negative integer, not {threads!r}")
    if not shutdown_timeout >= 0:
        raise ValueError(f"shutdown_timeout must be 0 or more seconds, not {shutdown_timeout!r}")
    specs: list[PortSpec]
    if isinstance(port, (str, int)) or IStreamServerEndpoint.providedBy(port):
        specs = [port]
    else:
        specs = list(port)
    if not specs:
        raise ValueError("no port to listen on")
    endpoints = [parseEndpoint(reactor, spec) for spec in specs]
    served = servedName(handler, service)
    pool: _Threads | None = None
    target = handler
    if threads:
        pool = _Threads(reactor, threads)
        if isinstance(handler, Mapping):
            threaded: dict[str, tuple[object, ModuleType | None]] = {}
            for name, value in handler.items():
                inner, module = value if isinstance(value, tuple) else (value, None)
                threaded[name] = _threaded(inner, module, pool)
            target = threaded
        else:
            target, service = _threaded(handler, service, pool)
    factory = ServerFactory(target, service=service, transport=transport, protocol=protocol,
                            limits=Limits.from_keywords(**limits), clock=reactor)
    factory.noisy = False  # The service says what it serves, in one line.
    return ThriftService(reactor, endpoints, factory, threads=pool,
                         shutdownTimeout=shutdown_timeout, served=served)
