"""
Apache Thrift's own synchronous servers, run in threads on 127.0.0.1 and a
free port, each stoppable and checked to leave no thread behind.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Any, NoReturn

from thrift.server import TServer
from thrift.server.TNonblockingServer import TNonblockingServer, Worker
from thrift.Thrift import TApplicationException
from thrift.transport.TSocket import TServerSocket, TSocket

from tests._handlers import EchoBasics
from tests.gen.py.txthrift_test.ttypes import Denied, Oops

#: How long stopping a server may take before the test fails.
STOP_TIMEOUT = 5.0

#: The text an undeclared handler exception carries; it must never reach a peer.
SECRET = "secret handler detail 0xdeadbeef"


def transformItem(it: Any) -> Any:
    """
    What both kinds of handler answer to C{item(it)}: a changed copy, of the
    same generated class, so that each field is known to have crossed twice.
    """
    return type(it)(
        id=it.id + 1,
        name=None if it.name is None else it.name + "!",
        values=None if it.values is None else [v * 2 for v in reversed(it.values)],
        counts=None if it.counts is None else {k + "+": v - 1 for k, v in it.counts.items()},
    )


def failWith(kind: str, oops: type = Oops, denied: type = Denied) -> NoReturn:
    if kind == "oops":
        raise oops(why="asked to", code=7)
    if kind == "denied":
        raise denied(who="you")
    if kind == "app":
        raise TApplicationException(TApplicationException.INVALID_TRANSFORM, "told you")
    raise RuntimeError(SECRET)


class SyncHandler(EchoBasics):
    """
    An C{Echo} handler for Apache's synchronous servers (any thread).
    """

    def __init__(self) -> None:
        self.fired: queue.Queue[str] = queue.Queue()

    def item(self, it: Any) -> Any:
        return transformItem(it)

    def fail(self, kind: str) -> str:
        failWith(kind)
        return "unreachable"

    def slow(self, seconds: float, tag: str) -> str:
        time.sleep(seconds)
        return tag

    def blob(self, size: int) -> bytes:
        return bytes(range(256)) * (size // 256) + bytes(range(size % 256))

    def fire(self, message: str) -> None:
        self.fired.put(message)


class _Stopped(BaseException):
    """
    Raised out of C{accept} to end a serve loop: not an C{Exception}, so
    that C{TThreadedServer}, which logs and retries those, lets it through.
    """


class StoppableServerSocket(TServerSocket):
    """
    A C{TServerSocket} on 127.0.0.1 and a free port whose C{accept} can be
    made to end the serve loop calling it.

    C{listen} is idempotent: the servers call it again in C{serve}, and a
    second socket would get another port than the one the test was told.
    """

    def __init__(self) -> None:
        super().__init__(host="127.0.0.1", port=0)
        self.stopping = False
        self.accepted: list[TSocket] = []
        self._lock = threading.Lock()

    def listen(self) -> None:
        if self.handle is None:
            super().listen()

    @property
    def boundPort(self) -> int:
        assert self.handle is not None, "not listening"
        port: int = self.handle.getsockname()[1]
        return port

    def accept(self) -> TSocket:
        if self.stopping:
            raise _Stopped()
        client = super().accept()
        with self._lock:
            # Under the lock that stop() takes: a client is either shut down
            # by stop() or never served.
            if not self.stopping:
                self.accepted.append(client)
                return client
        client.close()
        raise _Stopped()

    def stop(self) -> None:
        """
        End the connections accepted so far and wake C{accept}.
        """
        with self._lock:
            self.stopping = True
            accepted = list(self.accepted)
        for client in accepted:
            handle = client.handle
            if handle is not None:
                try:
                    handle.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        try:
            socket.create_connection(("127.0.0.1", self.boundPort), timeout=1).close()
        except OSError:
            pass


class _TrackedThreadedServer(TServer.TThreadedServer):
    """
    C{TThreadedServer} recording the thread it starts per connection.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args, daemon=True)
        self.handlers: list[threading.Thread] = []
        self.started = threading.Condition()

    def handle(self, client: Any) -> None:
        with self.started:
            self.handlers.append(threading.current_thread())
            self.started.notify_all()
        super().handle(client)


def _join(threads: list[threading.Thread], deadline: float) -> list[threading.Thread]:
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [thread for thread in threads if thread.is_alive()]


class ApacheServer:
    """
    One of Apache's servers, serving in a daemon thread.

    @ivar port: the port it listens on.
    """

    def __init__(self, kind: str, processor: Any, transportFactory: Any = None,
                 protocolFactory: Any = None) -> None:
        """
        @param kind: C{"simple"}, C{"threaded"} (both with
            C{transportFactory}) or C{"nonblocking"} (framed).
        """
        self.kind = kind
        self.socket = StoppableServerSocket()
        self.error: BaseException | None = None
        self._workers: list[threading.Thread] = []
        self.server: Any
        if kind == "nonblocking":
            self.server = TNonblockingServer(processor, self.socket, protocolFactory, threads=4)
            self.server.prepare()  # listens, and starts the worker threads
            self._workers = [thread for thread in threading.enumerate()
                             if isinstance(thread, Worker) and thread.queue is self.server.tasks]
            assert len(self._workers) == 4
        else:
            cls = {"simple": TServer.TSimpleServer, "threaded": _TrackedThreadedServer}[kind]
            self.server = cls(processor, self.socket, transportFactory, protocolFactory)
            self.socket.listen()
        self.port = self.socket.boundPort
        self._thread = threading.Thread(target=self._serve, name=f"apache-{kind}-{self.port}",
                                        daemon=True)
        self._thread.start()
        self._stopped = False

    def _serve(self) -> None:
        try:
            self.server.serve()
        except _Stopped:
            pass
        except BaseException as error:
            self.error = error

    def stop(self) -> None:
        """
        Stop serving; fail if any thread of this server is still running
        after L{STOP_TIMEOUT} seconds, or the serve loop failed.
        """
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + STOP_TIMEOUT
        left: list[threading.Thread] = []
        if self.kind == "nonblocking":
            server = self.server
            # serve() clears the stop flag as it starts: ask until it returns.
            while self._thread.is_alive() and time.monotonic() < deadline:
                server.stop()
                self._thread.join(0.05)
            left += _join([self._thread], deadline)
            for connection in list(server.clients.values()):
                connection.close()
            server.close()  # ends the workers and closes the listening socket
            left += _join(self._workers, deadline)
            server._read.close()
            server._write.close()
        else:
            self.socket.stop()
            left += _join([self._thread], deadline)
            if self.kind == "threaded":
                # A handler thread records itself as it starts: wait for all.
                server = self.server
                with server.started:
                    assert server.started.wait_for(
                        lambda: len(server.handlers) >= len(self.socket.accepted),
                        max(0.0, deadline - time.monotonic())), "a handler thread never started"
                left += _join(self.server.handlers, deadline)
            self.socket.close()
            for client in self.socket.accepted:
                client.close()
        assert not left, f"threads still running after stopping the server: {left}"
        assert self.error is None, f"the {self.kind} server failed: {self.error!r}"
