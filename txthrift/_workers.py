"""
C{twistd thrift --workers N}: N processes serving one set of listening
sockets.

The twistd process (the parent) listens on every TCP port itself (Thrift,
HTTP and WebSocket ones alike), without ever accepting on them, logs where it serves, and starts N worker processes
(C{python -m txthrift._workers}), each of which adopts the listening
sockets and serves them as the single-process plugin does; the kernel
spreads the connections among the workers' C{accept()}s.  The parent
restarts a worker that dies (a bounded number of times), and on SIGTERM or
SIGINT tells every worker to stop, which lets its calls in flight finish
for up to C{--shutdown-timeout} seconds.  A worker whose parent goes away
(its stdin, a pipe from the parent, reaches its end) stops too.  Workers
send their log events to the parent (as JSON, on a pipe), which logs them
wherever twistd logs; their stdout and stderr are twistd's.

This module knows processes, inherited sockets and the handlers' dotted
names (loaded by L{txthrift._loading}), not command-line options: those
are L{txthrift._tap}'s.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.cred.strcred import makeChecker
from twisted.internet.address import IPv6Address
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel, eventFromJSON, globalLogPublisher
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.server import Site
from zope.interface import implementer

from ._appservice import (
    DEFAULT_HTTP_PATH,
    KINDS,
    announce,
    describeAddress,
    listenOn,
    stoppedCleanly,
    thriftService,
    within,
)
from ._heap import keepFreedMemory
from ._limits import Limits
from ._loading import HandlerFailed, loadHandlers
from ._waiters import Waiters
from .metrics import Metrics, SummedMetrics, metricsResource

__all__ = ["WorkersService", "main"]

#: How long a worker that has just accepted a connection, with more still
#: waiting, leaves them to the other workers.
_PAUSE = 0.0002

log = Logger(namespace="txthrift.workers")

#: How long, on top of the shutdown timeout, stopping workers may take
#: before they are killed.
STOP_MARGIN = 5.0
#: The window in which at most as many restarts as there are workers are
#: allowed before the parent gives up.
RESTART_WINDOW = 10.0
#: The file descriptor a worker writes its log events to (as JSON), for the
#: parent to log them where twistd logs.
LOG_FD = 3
#: The first file descriptor a worker finds its listening sockets at.
FIRST_FD = 4


class _Unread(Factory):
    """
    The factory of the parent's ports, which never accept: the workers
    accept on their copies of the sockets.
    """

    noisy = False
    protocol = Protocol

    def logPrefix(self) -> str:
        return "WorkersService"


def _why(reason: Failure) -> str:
    code = getattr(reason.value, "exitCode", None)
    sig = getattr(reason.value, "signal", None)
    if sig is not None:
        return f"killed by signal {sig}"
    return f"exit status {code}"


class _Worker(ProcessProtocol):
    """
    One worker process as the parent sees it: its log events, and its end.
    """

    def __init__(self, owner: WorkersService, index: int) -> None:
        self.owner = owner
        self.index = index
        self.pid: int | None = None
        self._events = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.pid = self.transport.pid
        log.info("Worker {index} started (pid {pid})", index=self.index, pid=self.pid)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != LOG_FD:
            return
        *records, self._events = (self._events + data).split(b"\n")
        for record in records:
            text = record.decode("utf-8", "replace").strip("\x1e \r")
            if not text:
                continue
            try:
                event = eventFromJSON(text)
            except ValueError:
                event = {"log_format": "{line}", "line": text, "log_level": LogLevel.info,
                         "log_namespace": "txthrift.workers", "log_time": time.time()}
            event.setdefault("log_time", time.time())
            # What twistd's log shows in brackets: which worker said it.
            event["log_system"] = f"worker {self.index} pid {self.pid}"
            globalLogPublisher(event)

    def processEnded(self, reason: Failure) -> None:
        self.owner._ended(self, reason)


class WorkersService(Service):
    """
    Listens on the ports and supervises the worker processes that serve
    them.

    @ivar gaveUp: whether this service stopped the reactor because workers
        kept dying.
    """

    def __init__(self, reactor: Any, endpoints: Sequence[tuple[str, IStreamServerEndpoint]],
                 workers: int, config: dict[str, Any], *, served: str,
                 kinds: Sequence[str] | None = None) -> None:
        """
        @param endpoints: (description, TCP endpoint) pairs to listen on.
        @param config: what each worker is told: the C{handlers},
            C{services} and C{handler_options} values, C{transport},
            C{protocol}, C{limits} keywords, C{threads},
            C{shutdown_timeout} and C{http_path}.
        @param served: what is served, for the log.
        @param kinds: what each endpoint serves (L{txthrift._appservice.KINDS});
            Thrift on every one when omitted.
        """
        self._reactor = reactor
        self._endpoints = list(endpoints)
        self._kinds = list(kinds) if kinds is not None else ["thrift"] * len(self._endpoints)
        self.ports: list[Any] = []
        self.workers = workers
        self.config = config
        self.shutdownTimeout: float = config["shutdown_timeout"]
        self._served = served
        self.children: dict[int, _Worker] = {}
        self._endedWaiters = Waiters()
        self._restarts: deque[float] = deque()
        self._stopping = False
        self.gaveUp = False
        # Where the workers dump their metrics, and where the sum is served.
        self._metricsAt: tuple[tuple[str, IStreamServerEndpoint], str] | None = None
        self._metricsPort: IListeningPort | None = None

    def serveMetrics(self, endpoint: tuple[str, IStreamServerEndpoint], folder: str) -> None:
        """
        Serve the sum of the metrics the workers dump into C{folder}, with
        C{/healthz} and C{/readyz} (503 from the moment stopping begins), on
        C{endpoint} once started; its port closes last.
        """
        self._metricsAt = (endpoint, folder)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        if not self.ports:
            self._listen()
        self._stopping = False
        for index in range(self.workers):
            self._spawn(index)
        if self._metricsAt is not None and self._metricsPort is None:
            (_, endpoint), folder = self._metricsAt
            site = Site(metricsResource(SummedMetrics(folder),
                                        ready=lambda: bool(self.running) and not self._stopping))
            endpoint.listen(site).addCallback(self._metricsListening)

    def _metricsListening(self, port: IListeningPort) -> None:
        self._metricsPort = port
        log.info("metrics, /healthz and /readyz on {where}",
                 where=describeAddress("http", port.getHost()))

    def _listen(self) -> None:
        """
        Listen on every port (TCP endpoints do at once), never accepting.

        @raise CannotListen: when a port cannot listen.
        """
        ports: list[IListeningPort] = []
        failed: list[Failure] = []
        listenOn(self._endpoints, _Unread()).addCallbacks(ports.extend, failed.append)
        if failed:
            failed[0].raiseException()
        for port in ports:
            # TCP ports, which are file descriptors the reactor reads.
            port.stopReading()  # type: ignore[attr-defined]
        self.ports = ports
        config = self.config
        path = config.get("http_path", DEFAULT_HTTP_PATH)
        announce(self._served, [describeAddress(kind, port.getHost(), path=path)
                                for kind, port in zip(self._kinds, ports)],
                 transport=config["transport"], protocol=config["protocol"],
                 limits=Limits.from_keywords(**config["limits"]), threads=config["threads"],
                 shutdownTimeout=self.shutdownTimeout, workers=self.workers)

    def _spawn(self, index: int) -> None:
        fds: dict[int, Any] = {0: "w", 1: 1, 2: 2, LOG_FD: "r"}
        sockets = []
        for (number, port), kind in zip(enumerate(self.ports, FIRST_FD), self._kinds):
            fds[number] = port.fileno()
            family = socket.AF_INET6 if isinstance(port.getHost(), IPv6Address) else socket.AF_INET
            sockets.append([number, family, kind])
        config = dict(self.config, sockets=sockets, index=index, path=sys.path)
        worker = _Worker(self, index)
        self.children[index] = worker
        self._reactor.spawnProcess(
            worker, sys.executable, [sys.executable, "-m", "txthrift._workers", json.dumps(config)],
            env=os.environ.copy(), childFDs=fds)

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        if self.children.get(worker.index) is worker:
            del self.children[worker.index]
        if self._metricsAt is not None and worker.pid is not None:
            _noLongerInFlight(os.path.join(self._metricsAt[1], f"worker-{worker.pid}.json"))
        if self._stopping:
            log.info("Worker {index} (pid {pid}) exited: {why}", index=worker.index,
                     pid=worker.pid, why=_why(reason))
            if not self.children:
                self._endedWaiters.fire()
            return
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) >= self.workers:
            log.error("Worker {index} (pid {pid}) exited: {why}; {count} restarts in"
                      " {window:g}s already, stopping", index=worker.index, pid=worker.pid,
                      why=_why(reason), count=len(self._restarts),
                      window=RESTART_WINDOW)
            self.gaveUp = True
            if self._reactor.running:
                self._reactor.stop()
            return
        self._restarts.append(now)
        log.emit(LogLevel.warn, "Worker {index} (pid {pid}) exited: {why}; restarting it",
                 index=worker.index, pid=worker.pid, why=_why(reason))
        self._spawn(worker.index)

    def _whenEnded(self) -> Deferred[None]:
        """
        Wait until every worker has exited (at once if none runs).
        """
        return self._endedWaiters.wait(not self.children)

    def stopService(self) -> Deferred[None]:
        """
        Tell every worker to stop (each lets its calls in flight finish),
        wait for them (killing those still running after the shutdown
        timeout and a margin), then close the listening sockets.
        """
        super().stopService()
        self._stopping = True
        return Deferred.fromCoroutine(self._stop())

    def _signal(self, sig: str) -> list[_Worker]:
        workers = list(self.children.values())
        for worker in workers:
            if worker.transport is not None:
                try:
                    worker.transport.signalProcess(sig)
                except (ProcessExitedAlready, OSError):
                    pass
        return workers

    async def _stop(self) -> None:
        workers = self._signal("TERM")
        # The workers hold their own copies: closing ours now means that the
        # ports refuse connections once every worker has stopped listening.
        ports, self.ports = self.ports, []
        await DeferredList([maybeDeferred(port.stopListening) for port in ports],
                           consumeErrors=True)
        timeout = self.shutdownTimeout + STOP_MARGIN
        if workers:
            log.info("Stopping {count} worker(s); waiting up to {timeout:g}s",
                     count=len(workers), timeout=timeout)
        killed = [] if await within(self._reactor, timeout, self._whenEnded()) \
            else self._signal("KILL")
        if killed:
            log.emit(LogLevel.warn, "killed {count} worker(s) still running after {timeout:g}s",
                     count=len(killed), timeout=timeout)
            await within(self._reactor, STOP_MARGIN, self._whenEnded())
        if not killed and not self.gaveUp:
            stoppedCleanly(self._reactor)
        metricsPort, self._metricsPort = self._metricsPort, None
        if metricsPort is not None:
            await maybeDeferred(metricsPort.stopListening)
        if self._metricsAt is not None:
            shutil.rmtree(self._metricsAt[1], ignore_errors=True)
        log.info("Stopped serving {served} with {workers} workers", served=self._served,
                 workers=self.workers)


def _noLongerInFlight(path: str) -> None:
    """
    The metrics a worker that ended dumped, kept (its calls count still),
    without what it had in flight or connected.
    """
    try:
        with open(path, encoding="utf-8") as file:
            state = json.load(file)
    except (OSError, ValueError):
        return
    metrics = Metrics()
    metrics.add(state)
    metrics.dump(path, gauges=False)


# The worker process.


@implementer(IStreamServerEndpoint)
class _Adopted:
    """
    An endpoint listening on a socket inherited from the parent.
    """

    def __init__(self, reactor: Any, fd: int, family: int) -> None:
        self._reactor = reactor
        self._fd = fd
        self._family = family

    def __repr__(self) -> str:
        return f"<inherited socket {self._fd}>"

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        sharing = _OneAtATime(self._reactor, factory)
        port = self._reactor.adoptStreamPort(self._fd, self._family, sharing)
        sharing.adopted(port)
        # Twisted's port works on a duplicate: the inherited one is not needed.
        os.close(self._fd)
        return succeed(port)


class _OneAtATime(Factory):
    """
    Makes a port take its share of the connections the workers wait for.

    Twisted's ports accept as many connections as are waiting (up to a
    hundred) whenever the reactor says there is one: with the workers
    sharing a socket, whichever wakes first would take a whole burst (a
    client pool opening 32 connections at once went 31 to 1).  Here a port
    accepts one connection at a time (its C{numberAccepts}), then stops
    reading until the reactor's next turn, or, when more connections are
    waiting, for a moment (L{_PAUSE}) so that another worker takes the
    next: the same burst goes 16 to 16.
    """

    noisy = False

    def __init__(self, reactor: Any, factory: Factory) -> None:
        self._reactor = reactor
        self._factory = factory
        self._port: Any = None

    def adopted(self, port: Any) -> None:
        """
        Share C{port}, listening for this factory already.
        """
        self._port = port
        port.numberAccepts = 1

    def logPrefix(self) -> str:
        return self._factory.logPrefix()

    def doStart(self) -> None:
        self._factory.doStart()

    def doStop(self) -> None:
        self._factory.doStop()

    def buildProtocol(self, addr: Any) -> Any:
        port = self._port
        if port is not None:
            port.stopReading()
            self._reactor.callLater(_PAUSE if _readable(port) else 0, self._resume)
        return self._factory.buildProtocol(addr)

    def _resume(self) -> None:
        port = self._port
        if port.connected and not port.disconnecting:
            # The port raised it after accepting one at its last turn.
            port.numberAccepts = 1
            port.startReading()


def _readable(port: Any) -> bool:
    return bool(select.select([port.fileno()], [], [], 0)[0])


def _watchParent(reactor: Any) -> None:
    """
    Stop when stdin, a pipe from the parent, ends: the parent went away.
    """
    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        reactor.callFromThread(stop)

    def stop() -> None:
        if reactor.running:
            log.emit(LogLevel.warn, "the parent went away; stopping")
            reactor.stop()

    threading.Thread(target=watch, name="txthrift-parent-watch", daemon=True).start()


#: Seconds between two dumps of a worker's metrics.
DUMP_INTERVAL = 1.0


def _dumpedMetrics(reactor: Any, config: dict[str, Any]) -> Metrics | None:
    """
    With C{--metrics-port}, this worker's metrics, dumped for the parent
    every L{DUMP_INTERVAL} seconds and as the worker stops.
    """
    folder = config.get("metrics_dir")
    if folder is None:
        return None
    metrics = Metrics()
    path = os.path.join(folder, f"worker-{os.getpid()}.json")
    def dump() -> None:
        # A failed dump (a full disk) must not stop the next: the parent
        # would serve a stale sum for ever.
        try:
            metrics.dump(path)
        except OSError as error:
            log.warn("cannot dump this worker's metrics to {path}: {error}", path=path,
                     error=error)

    dumping = LoopingCall(dump)
    dumping.clock = reactor
    dumping.start(DUMP_INTERVAL)
    reactor.addSystemEventTrigger("after", "shutdown", lambda: metrics.dump(path, gauges=False))
    return metrics


def main(argv: Sequence[str]) -> int:
    config = json.loads(argv[0])
    sys.path[:] = config["path"]
    if config["keep_freed"]:
        keepFreedMemory(config["keep_freed"])
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, jsonFileLogObserver

    # Log events go to the parent, which logs them where twistd logs.
    events = open(LOG_FD, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(events)], redirectStandardIO=False)
    try:
        handler, module = loadHandlers(config["handlers"], config["services"],
                                       config["handler_options"])
    except (usage.UsageError, HandlerFailed) as error:
        # The parent loaded them already: only a handler that fails now and
        # then (or a changed file) gets here.  One line, as there.
        log.critical("Worker {index} cannot load its handler: {error}", index=config["index"],
                     error=str(error))
        return 1
    # --sasl: the checkers, made again from the --auth descriptions.
    sasl = ([makeChecker(description) for description in config["auth"]]
            if config.get("sasl") else None)
    adopted: dict[str, list[_Adopted]] = {kind: [] for kind in KINDS}
    for fd, family, kind in config["sockets"]:
        adopted[kind].append(_Adopted(reactor, fd, family))
    service = thriftService(
        handler, port=adopted["thrift"], http_port=adopted["http"], ws_port=adopted["websocket"],
        http_path=config.get("http_path", DEFAULT_HTTP_PATH), service=module,
        transport=config["transport"], protocol=config["protocol"],
        threads=config["threads"], shutdown_timeout=config["shutdown_timeout"],
        reactor=reactor, sasl=sasl, access_log=config.get("access_log"),
        trace=config.get("trace", False), observer=_dumpedMetrics(reactor, config),
        **config["limits"])
    # SIGINT (a terminal's ^C) reaches the whole process group: the parent
    # handles it, telling each worker to stop with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    service.privilegedStartService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    _watchParent(reactor)
    log.info("Worker {index} (pid {pid}) serving", index=config["index"], pid=os.getpid())
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
