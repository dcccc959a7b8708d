"""
C{twistd thrift --workers N}: N processes serving one set of listening
sockets.

The twistd process (the parent) binds every TCP port itself, logs where it
serves, and starts N worker processes (C{python -m txthrift._workers}),
each of which adopts the listening sockets and serves them as the
single-process plugin does; the kernel spreads the connections among the
workers' C{accept()}s.  The parent restarts a worker that dies (a bounded
number of times), and on SIGTERM or SIGINT tells every worker to stop,
which lets its calls in flight finish for up to C{--shutdown-timeout}
seconds.  A worker whose parent goes away (its stdin, a pipe from the
parent, reaches its end) stops too.  Workers send their log events to the
parent (as JSON, on a pipe), which logs them wherever twistd logs; their
stdout and stderr are twistd's.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP6ServerEndpoint
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger, LogLevel, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from ._appservice import CannotListen, stoppedCleanly, thriftService

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


@dataclass
class _Listener:
    """
    A TCP port the parent listens on for its workers.
    """

    description: str
    family: int
    interface: str
    port: int
    backlog: int
    sock: socket.socket | None = None

    def bind(self) -> None:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.family == socket.AF_INET6:
                # Like Twisted's TCP6 ports: "::" means IPv6 only.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.interface or ("::" if self.family == socket.AF_INET6 else ""),
                       self.port))
            sock.listen(self.backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    @property
    def address(self) -> str:
        """
        Where it really listens, in endpoint syntax.
        """
        assert self.sock is not None
        host, port = self.sock.getsockname()[:2]
        if self.family == socket.AF_INET6:
            return f"tcp6:[{host}]:{port}"
        return f"tcp:{host}:{port}"

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


def listenerOf(description: str, endpoint: IStreamServerEndpoint) -> _Listener:
    """
    The socket to bind for a TCP endpoint (as C{serverFromString} makes them).
    """
    family = socket.AF_INET6 if isinstance(endpoint, TCP6ServerEndpoint) else socket.AF_INET
    return _Listener(description, family, getattr(endpoint, "_interface", ""),
                     int(getattr(endpoint, "_port", 0)), int(getattr(endpoint, "_backlog", 50)))


def _why(reason: Failure) -> str:
    code = getattr(reason.value, "exitCode", None)
    sig = getattr(reason.value, "signal", None)
    if sig is not None:
        return f"killed by signal {sig}"
    return f"exit status {code}"


class _Worker(ProcessProtocol):
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
            globalLogPublisher(event)

    def processEnded(self, reason: Failure) -> None:
        self.owner._ended(self, reason)


class WorkersService(Service):
    """
    Binds the listening sockets and supervises the worker processes that
    serve them.
    """

    def __init__(self, reactor: Any, listeners: Sequence[_Listener], workers: int,
                 config: dict[str, Any], *, shutdownTimeout: float, served: str,
                 details: str) -> None:
        self._reactor = reactor
        self.listeners = list(listeners)
        self.workers = workers
        self.config = config
        self.shutdownTimeout = shutdownTimeout
        self._served = served
        self._details = details
        self.children: dict[int, _Worker] = {}
        self._restarts: deque[float] = deque()
        self._stopping = False
        self._bound = False
        #: Whether this service stopped the reactor because workers kept dying.
        self.gaveUp = False

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._bind()

    def startService(self) -> None:
        super().startService()
        if not self._bound:
            self._bind()
        self._stopping = False
        for index in range(self.workers):
            self._spawn(index)

    def _bind(self) -> None:
        for listener in self.listeners:
            try:
                listener.bind()
            except OSError as error:
                for other in self.listeners:
                    other.close()
                raise CannotListen(f"cannot listen on {listener.description}: {error}") from None
        self._bound = True
        addresses = [listener.address for listener in self.listeners]
        log.info("Serving {served} on {where} ({details} workers={workers})",
                 served=self._served, where=", ".join(addresses), addresses=addresses,
                 details=self._details, workers=self.workers)

    def _spawn(self, index: int) -> None:
        fds: dict[int, Any] = {0: "w", 1: 1, 2: 2, LOG_FD: "r"}
        sockets = []
        for number, listener in enumerate(self.listeners, FIRST_FD):
            assert listener.sock is not None
            fds[number] = listener.sock.fileno()
            sockets.append([number, listener.family])
        config = dict(self.config, sockets=sockets, index=index, path=sys.path)
        worker = _Worker(self, index)
        self.children[index] = worker
        self._reactor.spawnProcess(
            worker, sys.executable, [sys.executable, "-m", "txthrift._workers", json.dumps(config)],
            env=os.environ.copy(), childFDs=fds)

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        if self.children.get(worker.index) is worker:
            del self.children[worker.index]
        if self._stopping:
            log.info("Worker {index} (pid {pid}) exited: {why}", index=worker.index,
                     pid=worker.pid, why=_why(reason))
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
        for listener in self.listeners:
            listener.close()
        self._bound = False
        if workers:
            log.info("Stopping {count} worker(s); waiting up to {timeout:g}s",
                     count=len(workers), timeout=self.shutdownTimeout + STOP_MARGIN)
        deadline = self._reactor.seconds() + self.shutdownTimeout + STOP_MARGIN
        while self.children and self._reactor.seconds() < deadline:
            await deferLater(self._reactor, 0.05)
        killed = self._signal("KILL")
        if killed:
            log.emit(LogLevel.warn, "killed {count} worker(s) still running after {timeout:g}s",
                     count=len(killed), timeout=self.shutdownTimeout + STOP_MARGIN)
            deadline = self._reactor.seconds() + STOP_MARGIN
            while self.children and self._reactor.seconds() < deadline:
                await deferLater(self._reactor, 0.05)
        if not killed and not self.gaveUp:
            stoppedCleanly(self._reactor)
        log.info("Stopped serving {served} with {workers} workers", served=self._served,
                 workers=self.workers)


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
        port = self._reactor.adoptStreamPort(self._fd, self._family, factory)
        _acceptOneAtATime(port)
        # Twisted's port works on a duplicate: the inherited one is not needed.
        os.close(self._fd)
        return succeed(port)


def _acceptOneAtATime(port: Any) -> None:
    """
    Make a port take its share of the connections the workers wait for.

    Twisted's ports accept as many connections as are waiting (up to a
    hundred) whenever the reactor says there is one: with the workers
    sharing a socket, whichever wakes first would take a whole burst (a
    client pool opening 32 connections at once went 31 to 1).  Here a port
    accepts one connection at a time, and when more are waiting it stops
    listening for a moment (L{_PAUSE}) so that another worker takes the
    next: the same burst goes 16 to 16.  Connections arriving one by one
    are accepted at once, as before.
    """
    doRead = getattr(port, "doRead", None)
    if doRead is None or not hasattr(port, "numberAccepts"):
        return

    def acceptOne() -> Any:
        port.numberAccepts = 1
        connections = port.sessionno
        result = doRead()
        if port.sessionno != connections and port.connected and _readable(port):
            port.stopReading()
            port.reactor.callLater(_PAUSE, resume)
        return result

    def resume() -> None:
        if port.connected:
            port.startReading()

    port.doRead = acceptOne


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


def main(argv: Sequence[str]) -> int:
    config = json.loads(argv[0])
    sys.path[:] = config["path"]
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, jsonFileLogObserver

    from ._tap import Options

    # Log events go to the parent, which logs them where twistd logs.
    events = open(LOG_FD, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(events)], redirectStandardIO=False)
    options = Options()
    options["handlers"] = list(config["handlers"])
    options["services"] = list(config["services"])
    options._loadHandlers()
    endpoints = [_Adopted(reactor, fd, family) for fd, family in config["sockets"]]
    service = thriftService(
        options["handler"], port=endpoints, service=options["service"],
        transport=config["transport"], protocol=config["protocol"],
        threads=config["threads"], shutdown_timeout=config["shutdown_timeout"],
        reactor=reactor, **config["limits"])
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
