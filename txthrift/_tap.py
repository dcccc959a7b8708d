"""
Hosting a Thrift handler as a Twisted service: the C{twistd thrift} plugin
and L{thriftService}, the same thing for C{.tac} files.

    twistd -n thrift --handler tutorial_handler.CalculatorHandler --port 9090

The service listens on one or more endpoints, logs one line saying what it
serves where, and on shutdown stops listening, lets the calls in flight
finish (for up to C{shutdown_timeout} seconds), then closes its
connections.  With C{threads}, a blocking handler's methods run in a thread
pool, so the reactor never waits for them.
"""

from __future__ import annotations

import atexit
import importlib
import math
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from functools import partial
from threading import Thread
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypeVar

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import IListeningPort, IReactorTime, IStreamServerEndpoint
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogLevel
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ._framing import PROTOCOLS, TRANSPORTS
from ._limits import Limits, defaultReactor
from ._server import ServerFactory, makeDispatcher
from ._service import describe, serviceOf

if TYPE_CHECKING:
    from ._workers import WorkersService

__all__ = ["CannotListen", "Options", "ThriftService", "makeService", "thriftService"]

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


def _oneLine(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _endpoint(reactor: Any, port: PortSpec) -> tuple[str, IStreamServerEndpoint]:
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
            raise ValueError(f"not a server endpoint description: {_oneLine(error)}") from error
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


def _servedName(handler: object, service: ModuleType | None) -> str:
    if service is not None:
        return describe(service).name
    if callable(getattr(handler, "process", None)):
        kind = type(handler)
        return f"processor {kind.__module__}.{kind.__qualname__}"
    found = serviceOf(handler)
    return describe(found).name if found is not None else repr(handler)


def _served(handler: object, service: ModuleType | None) -> str:
    """
    What a handler (or mapping of them) serves, for the log.
    """
    if isinstance(handler, Mapping):
        parts = []
        for name, value in handler.items():
            target, module = value if isinstance(value, tuple) else (value, None)
            parts.append(f"{name}={_servedName(target, module)}")
        return "multiplexed " + ", ".join(parts)
    return _servedName(handler, service)


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
        self.start()
        assert self.pool is not None
        return deferToThreadPool(self._reactor, self.pool, function, *args, **kwargs)


class _InThreads:
    """
    Stands for a blocking handler (or processor): each of its service
    methods returns a Deferred and runs the handler's in the pool.
    """

    def __init__(self, handler: object, names: Sequence[str], threads: _Threads) -> None:
        self._handler = handler
        for name in names:
            function = getattr(handler, name, None)
            if callable(function):
                setattr(self, name, partial(threads.call, function))

    def __repr__(self) -> str:
        return f"<{self._handler!r} in threads>"


def _threaded(handler: object, service: ModuleType | None,
              threads: _Threads) -> tuple[object, ModuleType | None]:
    """
    A handler whose methods run in C{threads}, with its service module
    (which the stand-in cannot be asked for).
    """
    if service is None and callable(getattr(handler, "process", None)):
        return _InThreads(handler, ["process"], threads), None
    module = service if service is not None else serviceOf(handler)
    if module is None:
        raise TypeError(
            f"cannot tell which Thrift service {handler!r} implements: pass service="
            "(the generated module), subclass its Iface, or declare @implementer(Iface)")
    return _InThreads(handler, sorted(describe(module).methods), threads), module


def _stoppedCleanly(reactor: Any) -> None:
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
        if self._threads is not None:
            self._threads.stop()
        if not busy and not stuck:
            _stoppedCleanly(self._reactor)
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
    @param threads: when positive, the handler blocks: its methods run in a
        pool of this many threads while the service runs.
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
    endpoints = [_endpoint(reactor, spec) for spec in specs]
    served = _served(handler, service)
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


# The twistd plugin.


def _resolve(option: str, path: str) -> object:
    """
    The object a dotted name names, importing what it takes.

    @raise usage.UsageError: naming C{option}, for a name that names nothing
        or a module that fails to import.
    """
    parts = path.split(".")
    if not path or not all(part.isidentifier() for part in parts):
        raise usage.UsageError(f"--{option}: {path!r} is not a dotted Python name"
                               " (package.module.Name)")

    def load(name: str) -> ModuleType | None:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is not None and (name + ".").startswith(error.name + "."):
                return None
            raise usage.UsageError(f"--{option}: importing {name} failed: {_oneLine(error)}")
        except Exception as error:
            raise usage.UsageError(f"--{option}: importing {name} failed: {_oneLine(error)}")

    found: object = load(parts[0])
    if found is None:
        raise usage.UsageError(f"--{option}: no module named {parts[0]!r}"
                               " (is its folder on PYTHONPATH?)")
    for index, part in enumerate(parts[1:], 2):
        if isinstance(found, ModuleType) and hasattr(found, "__path__") \
                and not hasattr(found, part):
            module = load(".".join(parts[:index]))
            if module is not None:
                found = module
                continue
        try:
            found = getattr(found, part)
        except AttributeError:
            owner = ".".join(parts[:index - 1])
            raise usage.UsageError(f"--{option}: {owner} has no attribute {part!r}") from None
        except Exception as error:
            raise usage.UsageError(f"--{option}: {path}: {_oneLine(error)}") from None
    return found


def _named(option: str, value: str) -> tuple[str | None, str]:
    """
    Split C{Name=dotted.path} (or a bare path) as C{--handler} and
    C{--service} take it.
    """
    name, equals, path = value.partition("=")
    if not equals:
        return None, value.strip()
    name = name.strip()
    if not name or ":" in name or any(char.isspace() for char in name):
        raise usage.UsageError(f"--{option}: {name!r} in {value!r} is not a service name")
    return name, path.strip()


def _number(option: str, value: str, kind: type, minimum: float, inclusive: bool = True,
            what: str = "") -> Any:
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number < minimum \
            or (not inclusive and number == minimum):
        bound = f"{'at least' if inclusive else 'more than'} {minimum:g}"
        noun = "whole number" if kind is int else "number"
        raise usage.UsageError(f"--{option}: expected a {noun}{what}, {bound}, not {value!r}")
    return number


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _helpText(method: _Method) -> _Method:
    """
    Make an C{opt_} method's docstring, which C{--help} shows, one paragraph.
    """
    method.__doc__ = " ".join((method.__doc__ or "").split())
    return method


class Options(usage.Options):
    """
    The options of C{twistd thrift}.

    After parsing, C{self["handler"]} is the handler (or the mapping of
    names to C{(handler, service module)} pairs), C{self["service"]} its
    service module (or None), C{self["ports"]} the endpoint descriptions and
    C{self["limits"]} the L{Limits} keywords.

    C{--workers N} serves with N processes:

        twistd -n thrift --handler app.Handler --port tcp:9090 --workers 4

    twistd binds every port itself (each must be C{tcp:} or C{tcp6:}), logs
    one C{Serving ... on ...} line with the ports really bound, and starts N
    worker processes that adopt the listening sockets and serve them each
    as a single process would: the kernel spreads the connections among
    them.  A worker that dies is restarted (up to N times in 10 seconds,
    then twistd stops).  On SIGTERM or SIGINT, twistd sends each worker
    SIGTERM, which lets its calls in flight finish for up to
    C{--shutdown-timeout} seconds, kills those still running a few seconds
    later, and exits; a worker whose twistd goes away stops by itself.
    """

    synopsis = "--handler module.Handler [--port ENDPOINT] [options]"

    longdesc = (
        "Serve a Thrift handler: an object with the methods of a service made by "
        "'thrift --gen py' (returning values, Deferreds or coroutines), or any Thrift "
        "processor. --handler names it as module.Name (on PYTHONPATH); a class or "
        "function found there is called with no arguments. Repeat --handler as "
        "Name=module.Handler to serve several services multiplexed on every port. "
        "On SIGTERM or SIGINT the server stops listening and lets calls in flight "
        "finish for up to --shutdown-timeout seconds. With --workers N (N > 1, TCP ports"
        " only), twistd binds the ports itself and N worker processes serve them, the"
        " kernel spreading connections among them; a worker that dies is restarted, and"
        " stopping tells each worker to finish its calls in flight."
    )

    optParameters: ClassVar[list[list[Any]]] = [
        ["transport", None, "auto",
         "Thrift transport: framed, buffered, or auto to detect it per connection."],
        ["protocol", None, "auto",
         "Thrift protocol: binary, compact, json, or auto to detect it per connection."],
        ["max-frame-size", None, str(Limits().max_frame_size),
         "Largest message accepted, in bytes."],
        ["max-pending", None, str(Limits().max_pending),
         "Requests processed at once per connection; past it, reading pauses."],
        ["idle-timeout", None, None,
         "Seconds a connection may stay idle before it is closed (default: never)."],
        ["call-timeout", None, None,
         ("Seconds a handler may take to answer before the call is cancelled and the "
          "client gets an error (default: no limit).")],
        ["threads", None, "0",
         ("Run the handler's methods in a pool of this many threads, for handlers that "
          "block (0: call them in the reactor thread).")],
        ["shutdown-timeout", None, f"{DEFAULT_SHUTDOWN_TIMEOUT:g}",
         "Seconds to let calls in flight finish when stopping."],
        ["workers", None, "1",
         ("Serve with this many worker processes sharing the listening sockets (TCP ports"
          " only), restarted when they die (1: serve in the twistd process itself).")],
    ]

    compData = usage.Completions(
        optActions={
            "transport": usage.CompleteList(list(TRANSPORTS)),
            "protocol": usage.CompleteList(list(PROTOCOLS)),
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self["handlers"] = []
        self["services"] = []
        self["ports"] = []

    @_helpText
    def opt_handler(self, value: str) -> None:
        """
        The handler to serve, as module.Handler; repeat as Name=module.Handler to serve
        several services multiplexed.
        """
        self["handlers"].append(value)

    @_helpText
    def opt_service(self, value: str) -> None:
        """
        The generated service module (as package.Module, or Name=package.Module for a
        named handler), when it cannot be told from the handler's Iface.
        """
        self["services"].append(value)

    @_helpText
    def opt_port(self, value: str) -> None:
        """
        Where to listen: a port number or a server endpoint description such as
        tcp:9090:interface=127.0.0.1, ssl:9443:privateKey=key.pem:certKey=cert.pem or
        unix:/run/thrift.sock; repeat to listen on several [default: tcp:9090].
        """
        self["ports"].append(value)

    def postOptions(self) -> None:
        self._checkChoices()
        self._checkNumbers()
        self._checkPorts()
        self._loadHandlers()

    def _checkChoices(self) -> None:
        for option, choices in (("transport", TRANSPORTS), ("protocol", PROTOCOLS)):
            if self[option] not in choices:
                raise usage.UsageError(f"--{option}: unknown {option} {self[option]!r};"
                                       f" choose one of {', '.join(choices)}")

    def _checkNumbers(self) -> None:
        limits: dict[str, Any] = {
            "max_frame_size": _number("max-frame-size", self["max-frame-size"], int, 1,
                                      what=" of bytes"),
            "max_pending": _number("max-pending", self["max-pending"], int, 1),
        }
        for option in ("idle-timeout", "call-timeout"):
            if self[option] is not None:
                limits[option.replace("-", "_")] = _number(
                    option, self[option], float, 0, inclusive=False, what=" of seconds")
        for name, value in limits.items():
            try:
                Limits(**{name: value})
            except ValueError as error:
                raise usage.UsageError(f"--{name.replace('_', '-')}: {error}") from None
        self["limits"] = limits
        self["threads"] = _number("threads", self["threads"], int, 0)
        self["shutdown-timeout"] = _number("shutdown-timeout", self["shutdown-timeout"], float,
                                           0, what=" of seconds")
        self["workers"] = _number("workers", self["workers"], int, 1)

    def _checkPorts(self) -> None:
        if not self["ports"]:
            self["ports"] = [DEFAULT_PORT]
        reactor = defaultReactor()
        for port in self["ports"]:
            try:
                _, endpoint = _endpoint(reactor, port)
            except ValueError as error:
                raise usage.UsageError(f"--port: {port!r}: {error}") from None
            if self["workers"] > 1 and type(endpoint) not in (TCP4ServerEndpoint,
                                                              TCP6ServerEndpoint):
                raise usage.UsageError(f"--port: {port!r}: --workers takes TCP ports only"
                                       " (tcp:PORT or tcp6:PORT)")

    def _loadHandlers(self) -> None:
        handlers = [_named("handler", value) for value in self["handlers"]]
        if not handlers:
            raise usage.UsageError("--handler is required: the handler to serve, as"
                                   " module.Handler")
        names = [name for name, _ in handlers]
        multiplexed = len(handlers) > 1 or names[0] is not None
        if multiplexed and None in names:
            raise usage.UsageError("--handler: with several handlers, name each one:"
                                   " --handler Name=module.Handler")
        duplicate = next((name for name in names if names.count(name) > 1), None)
        if duplicate is not None:
            raise usage.UsageError(f"--handler: service name {duplicate!r} used twice")
        services: dict[str | None, ModuleType] = {}
        for value in self["services"]:
            name, path = _named("service", value)
            if multiplexed and name is None:
                raise usage.UsageError("--service: with named handlers, name the service too:"
                                       " --service Name=package.Module")
            if name not in names:
                raise usage.UsageError(f"--service: no --handler is named {name!r}" if name
                                       else "--service: name it as the handler: Name=module")
            if name in services:
                raise usage.UsageError(f"--service: given twice for {name or 'the handler'}")
            services[name] = self._loadService(path)
        served: dict[str, tuple[object, ModuleType | None]] = {}
        for name, path in handlers:
            handler, module = self._loadHandler(name, path, services.get(name))
            if name is None:
                self["handler"], self["service"] = handler, module
                return
            served[name] = (handler, module)
        self["handler"], self["service"] = served, None

    @staticmethod
    def _loadService(path: str) -> ModuleType:
        module = _resolve("service", path)
        try:
            if not isinstance(module, ModuleType):
                raise TypeError("not a module")
            describe(module)
        except TypeError:
            raise usage.UsageError(
                f"--service: {path} is not a generated Thrift service module (one with Iface,"
                " Client and Processor, made by thrift --gen py)") from None
        return module

    @staticmethod
    def _loadHandler(name: str | None, path: str,
                     service: ModuleType | None) -> tuple[object, ModuleType | None]:
        found = _resolve("handler", path)
        handler = found
        if isinstance(found, type) or (callable(found) and not isinstance(found, ModuleType)
                                       and not callable(getattr(found, "process", None))):
            try:
                handler = found()
            except Exception as error:
                raise usage.UsageError(f"--handler: calling {path}() failed: {_oneLine(error)}")
        if service is None and not callable(getattr(handler, "process", None)):
            service = serviceOf(handler)
            if service is None:
                example = f"{name}=package.Module" if name else "package.Module"
                raise usage.UsageError(
                    f"--handler: cannot tell which Thrift service {path} implements (it neither"
                    " subclasses nor declares a generated Iface, nor has process());"
                    f" name the generated module with --service {example}")
        try:
            makeDispatcher(handler, service)
        except (TypeError, ValueError) as error:
            raise usage.UsageError(f"--handler: {path}: {_oneLine(error)}") from None
        return handler, service


def makeService(options: Options) -> Service:
    """
    The C{twistd thrift} service, from parsed L{Options}: a L{ThriftService},
    or with C{--workers} above 1 the service supervising the worker
    processes.
    """
    service: ThriftService | WorkersService
    if options["workers"] > 1:
        service = _workersService(options)
    else:
        service = thriftService(
            options["handler"], port=options["ports"], service=options["service"],
            transport=options["transport"], protocol=options["protocol"],
            threads=options["threads"], shutdown_timeout=options["shutdown-timeout"],
            **options["limits"])
    # Registered first, so run last: after twistd's own clean-up.
    atexit.register(_exitStatus, service)
    return service


def _exitStatus(service: ThriftService | WorkersService) -> None:
    """
    twistd exits 0 whenever its reactor stops without a signal; a service
    that gave up (a port lost after start-up, workers dying too often) makes
    the process exit 1 instead, so that whatever supervises it knows.
    """
    if service.gaveUp:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _workersService(options: Options) -> WorkersService:
    from ._workers import WorkersService, listenerOf

    reactor = defaultReactor()
    listeners = [listenerOf(*_endpoint(reactor, port)) for port in options["ports"]]
    limits = asdict(Limits.from_keywords(**options["limits"]))
    details = (f"transport={options['transport']} protocol={options['protocol']}"
               f" max_frame_size={limits['max_frame_size']} max_pending={limits['max_pending']}"
               f" idle_timeout={limits['idle_timeout']} call_timeout={limits['call_timeout']}"
               f" threads={options['threads']} shutdown_timeout={options['shutdown-timeout']}")
    config = {"handlers": options["handlers"], "services": options["services"],
              "transport": options["transport"], "protocol": options["protocol"],
              "limits": options["limits"], "threads": options["threads"],
              "shutdown_timeout": options["shutdown-timeout"]}
    return WorkersService(reactor, listeners, options["workers"], config,
                          shutdownTimeout=options["shutdown-timeout"],
                          served=_served(options["handler"], options["service"]),
                          details=details)
