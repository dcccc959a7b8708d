"""
The ends of the conformance matrix: servers (txthrift's, Apache's
C{TThreadedServer} and C{TNonblockingServer}, thriftpy2's) on 127.0.0.1 and
a free port, and clients (txthrift's, Apache's synchronous one, Apache's
C{py:twisted} generated one over L{txthrift.TTwisted}, thriftpy2's) that
make a list of calls and report what each gave.  Apache's ends speak THeader
through its C{THeaderProtocol} and zlib through its C{TZlibTransport}.

Every wait is bounded: sockets time out, Deferreds get a timeout, and
stopping a server fails if any of its threads outlives L{STOP_WAIT}.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

import thriftpy2
import thriftpy2.http
import thriftpy2.protocol
import thriftpy2.protocol.binary
import thriftpy2.server
import thriftpy2.thrift
import thriftpy2.transport
import thriftpy2.transport.buffered
import thriftpy2.transport.framed
from thrift.protocol.TBinaryProtocol import (
    TBinaryProtocolAcceleratedFactory,
    TBinaryProtocolFactory,
)
from thrift.protocol.TCompactProtocol import (
    TCompactProtocolAcceleratedFactory,
    TCompactProtocolFactory,
)
from thrift.protocol.THeaderProtocol import (
    PROTOCOLS_BY_ID,
    THeaderProtocol,
    THeaderProtocolFactory,
)
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.protocol.TMultiplexedProtocol import TMultiplexedProtocol
from thrift.server.TNonblockingServer import TNonblockingServer, Worker
from thrift.server.TServer import TThreadedServer
from thrift.TMultiplexedProcessor import TMultiplexedProcessor
from thrift.transport.THeaderTransport import (
    THeaderClientType,
    THeaderSubprotocolID,
    THeaderTransformID,
)
from thrift.transport.THttpClient import THttpClient
from thrift.transport.TSocket import TServerSocket, TSocket
from thrift.transport.TTransport import (
    TBufferedTransport,
    TBufferedTransportFactory,
    TFramedTransport,
    TFramedTransportFactory,
    TTransportFactoryBase,
)
from thrift.transport.TZlibTransport import TZlibTransport
from thriftpy2.rpc import make_client
from twisted.internet import defer, reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import ClientCreator, connectionDone
from twisted.python.failure import Failure

import txthrift
from tests._conformance import (
    HEADER_TRANSPORTS,
    IDL,
    MAIN,
    SECOND,
    WIRE,
    ZLIB_TRANSPORTS,
    Case,
    ConformanceHandler,
    MiB,
    Outcome,
    SecondHandler,
)
from tests.gen.conformance_py.txthrift_conformance import Conformance, Second
from tests.gen.conformance_py.txthrift_conformance import ttypes as pyTypes
from tests.gen.conformance_pytwisted.txthrift_conformance import Conformance as TwConformance
from tests.gen.conformance_pytwisted.txthrift_conformance import Second as TwSecond
from tests.gen.conformance_pytwisted.txthrift_conformance import ttypes as twTypes
from txthrift import TTwisted

#: Seconds one call may take (a 1 MiB string in pure-Python JSON takes ~1 s).
CALL_WAIT = 30.0
#: Milliseconds a blocking client's socket waits for any one read or write.
SOCKET_WAIT_MS = int(CALL_WAIT * 1000)
#: Seconds stopping a server may take.
STOP_WAIT = 10.0
#: The name the main service has on a server that only multiplexes.
MAIN_NAME = "Conformance"
#: What an Apache TZlibTransport may inflate in a connection's life (its
#: default, 16,384,000 bytes, is near what a cell's calls carry).
ZLIB_INFLATE_LIMIT = 256 * MiB
#: THeader's ids of the protocols inside it.
HEADER_PROTOCOL_IDS = {"binary": THeaderSubprotocolID.BINARY,
                       "compact": THeaderSubprotocolID.COMPACT}


@cache
def thriftpy2Module() -> ModuleType:
    """
    The conformance IDL, loaded by thriftpy2 at run time.
    """
    return thriftpy2.load(str(IDL), module_name="conformance_thrift")


def typesFor(client: str) -> Any:
    """
    The types namespace of a client kind's generated code.
    """
    if client == "thriftpy2":
        return thriftpy2Module()
    if client == "apache-twisted":
        return twTypes
    return pyTypes


# ---------------------------------------------------------------------------
# Protocol and transport choices
# ---------------------------------------------------------------------------


def apacheProtocolFactory(column: str, **limits: Any) -> Any:
    """
    Apache's protocol factory for a protocol column, pure or accelerated.
    """
    factories: dict[str, Callable[..., Any]] = {
        "binary": TBinaryProtocolFactory,
        "binary-accel": TBinaryProtocolAcceleratedFactory,
        "compact": TCompactProtocolFactory,
        "compact-accel": TCompactProtocolAcceleratedFactory,
        "json": TJSONProtocolFactory,
    }
    return factories[column](**limits)


def thriftpy2ProtocolFactory(column: str) -> Any:
    """
    thriftpy2's protocol factory for a protocol column: its pure binary, its
    Cython binary or its compact (its Apache JSON cannot carry more than one
    message per connection).
    """
    factories: dict[str, Callable[[], Any]] = {
        "binary": thriftpy2.protocol.binary.TBinaryProtocolFactory,
        "binary-accel": thriftpy2.protocol.TCyBinaryProtocolFactory,
        "compact": thriftpy2.protocol.TCompactProtocolFactory,
    }
    return factories[column]()


def thriftpy2TransportFactory(transport: str, column: str) -> Any:
    """
    thriftpy2's transport factory for a cell: its Cython transports go with
    its Cython binary protocol, its pure-Python ones with its pure-Python
    protocols (its pure binary protocol cannot write to a Cython transport).
    """
    if column == "binary-accel":
        return {"framed": thriftpy2.transport.TFramedTransportFactory,
                "buffered": thriftpy2.transport.TBufferedTransportFactory}[transport]()
    return {"framed": thriftpy2.transport.framed.TFramedTransportFactory,
            "buffered": thriftpy2.transport.buffered.TBufferedTransportFactory}[transport]()


def describeEnd(kind: str, transport: str, column: str) -> str:
    """
    What encodes at one end of a cell, for the report.
    """
    if kind == "txthrift":
        wire = WIRE[column]
        return f"txthrift {wire}" + (" (C codec)" if txthrift.accelerated
                                     and wire != "json" else "")
    if kind == "thriftpy2":
        where = type(thriftpy2TransportFactory("framed", column)).__module__
        return (f"thriftpy2 {type(thriftpy2ProtocolFactory(column)).__name__}"
                + (" (Cython)" if "cy" in where else " (pure Python)"))
    if transport in HEADER_TRANSPORTS:
        inner = PROTOCOLS_BY_ID[HEADER_PROTOCOL_IDS[WIRE[column]]]
        return f"Apache THeaderProtocol ({inner.__name__})"
    return f"Apache {type(apacheProtocolFactory(column)).__name__}"


class ApacheZlibTransportFactory:
    """
    Apache's C{TZlibTransport} around C{TFramedTransport} or around the
    socket itself, new for each connection (Apache's C{TZlibTransportFactory}
    keeps only the last, which a threaded server's threads would share).
    """

    def __init__(self, framed: bool) -> None:
        self.framed = framed

    def getTransport(self, client: Any) -> TZlibTransport:
        inner = TFramedTransport(client) if self.framed else client
        return TZlibTransport(inner, max_decompressed_size=ZLIB_INFLATE_LIMIT)


def apacheServerFactories(transport: str, column: str) -> tuple[Any, Any]:
    """
    The transport and protocol factories of an Apache server for a cell.
    THeader's protocol factory answers in the protocol of each request.
    """
    if transport in HEADER_TRANSPORTS:
        return TTransportFactoryBase(), THeaderProtocolFactory(
            allowed_client_types=[THeaderClientType.HEADERS])
    transports = {"framed": TFramedTransportFactory, "buffered": TBufferedTransportFactory,
                  "zlib": lambda: ApacheZlibTransportFactory(framed=True),
                  "zlib-buffered": lambda: ApacheZlibTransportFactory(framed=False)}
    return transports[transport](), apacheProtocolFactory(column)


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


class _Stop(BaseException):
    """
    Raised by C{accept} to end a serve loop.  Not an C{Exception}: the serve
    loops of Apache's and thriftpy2's threaded servers log those and go on.
    """


class _StopAccepting:
    """
    Mixin for a listening socket of Apache or thriftpy2: C{listen} binds once
    (the servers call it again from C{serve}, which would bind another port),
    and after L{stop} C{accept} raises L{_Stop}.
    """

    #: Closes the listening socket: the socket class mixed in has it.
    close: Callable[[], None]

    def _setUpStopping(self) -> None:
        self._lock = threading.Lock()
        self._stopping = False
        self.accepted: list[socket.socket] = []

    def _listening(self) -> socket.socket | None:
        raise NotImplementedError

    @property
    def boundPort(self) -> int:
        sock = self._listening()
        assert sock is not None, "not listening"
        port: int = sock.getsockname()[1]
        return port

    def _admit(self, client: socket.socket) -> None:
        with self._lock:
            if not self._stopping:
                self.accepted.append(client)
                return
        client.close()
        raise _Stop()

    def stop(self) -> None:
        """
        Shut down every accepted connection, and wake C{accept} to stop.
        """
        with self._lock:
            self._stopping = True
            accepted = list(self.accepted)
        for client in accepted:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            socket.create_connection(("127.0.0.1", self.boundPort), timeout=1).close()
        except OSError:
            pass

    def closeAccepted(self) -> None:
        for client in self.accepted:
            client.close()


class ApacheServerSocket(_StopAccepting, TServerSocket):
    def __init__(self) -> None:
        TServerSocket.__init__(self, host="127.0.0.1", port=0)
        self._setUpStopping()

    def _listening(self) -> socket.socket | None:
        return self.handle

    def listen(self) -> None:
        if self.handle is None:
            super().listen()

    def accept(self) -> TSocket:
        client = super().accept()
        self._admit(client.handle)
        return client


class Thriftpy2ServerSocket(_StopAccepting, thriftpy2.transport.TServerSocket):
    def __init__(self) -> None:
        thriftpy2.transport.TServerSocket.__init__(self, host="127.0.0.1", port=0,
                                                   client_timeout=SOCKET_WAIT_MS)
        self._setUpStopping()

    def _listening(self) -> socket.socket | None:
        return self.sock

    def listen(self) -> None:
        if self.sock is None:
            super().listen()

    def accept(self) -> Any:
        client = super().accept()
        self._admit(client.sock)
        return client


class _HandlerThreads:
    """
    Mixin for a thread-per-connection server, recording each connection's
    thread as it starts.
    """

    def _setUpTracking(self) -> None:
        self.handlers: list[threading.Thread] = []
        self.handlersStarted = threading.Condition()

    def handle(self, client: Any) -> None:
        with self.handlersStarted:
            self.handlers.append(threading.current_thread())
            self.handlersStarted.notify_all()
        super().handle(client)  # type: ignore[misc]


class _ApacheThreaded(_HandlerThreads, TThreadedServer):
    def __init__(self, *args: Any) -> None:
        TThreadedServer.__init__(self, *args, daemon=True)
        self._setUpTracking()


class _Thriftpy2Threaded(_HandlerThreads, thriftpy2.server.TThreadedServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        thriftpy2.server.TThreadedServer.__init__(self, *args, daemon=True, **kwargs)
        self._setUpTracking()


def _join(threads: list[threading.Thread], deadline: float) -> list[threading.Thread]:
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [thread for thread in threads if thread.is_alive()]


class ThreadServer:
    """
    A server of Apache or thriftpy2 serving in a daemon thread.

    @ivar handler: the L{ConformanceHandler} it serves.
    @ivar port: the port it listens on.
    """

    kind: str
    handler: ConformanceHandler

    def __init__(self, kind: str, server: Any, sock: _StopAccepting) -> None:
        self.kind = kind
        self.server = server
        self.socket = sock
        self.port = sock.boundPort
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=f"{kind}-{self.port}",
                                        daemon=True)
        self._thread.start()
        self._stopped = False

    def _serve(self) -> None:
        try:
            self.server.serve()
        except _Stop:
            pass
        except BaseException as error:
            self.error = error

    def stop(self) -> None:
        """
        Stop serving and close every socket; fail if a thread of this server
        is still running after L{STOP_WAIT} seconds, or serving failed.
        """
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + STOP_WAIT
        self.socket.stop()
        left = _join([self._thread], deadline)
        server = self.server
        with server.handlersStarted:
            started = server.handlersStarted.wait_for(
                lambda: len(server.handlers) >= len(self.socket.accepted),
                max(0.0, deadline - time.monotonic()))
        left += _join(server.handlers, deadline)
        self.socket.close()
        self.socket.closeAccepted()
        assert started, f"a connection thread of {self.kind} never started"
        assert not left, f"{self.kind} threads still running after stopping: {left}"
        assert self.error is None, f"{self.kind} failed: {self.error!r}"


def apacheProcessor(handler: ConformanceHandler, second: SecondHandler) -> Any:
    """
    Both services multiplexed, the main one also under plain names.
    """
    processor = TMultiplexedProcessor()
    main = Conformance.Processor(handler)
    processor.registerDefault(main)
    processor.registerProcessor(MAIN_NAME, main)
    processor.registerProcessor("Second", Second.Processor(second))
    return processor


def startApacheThreaded(transport: str, column: str) -> ThreadServer:
    handler = ConformanceHandler(pyTypes)
    sock = ApacheServerSocket()
    sock.listen()
    server = _ApacheThreaded(apacheProcessor(handler, SecondHandler()), sock,
                             *apacheServerFactories(transport, column))
    running = ThreadServer("TThreadedServer", server, sock)
    running.handler = handler
    return running


class NonblockingServer:
    """
    Apache's C{TNonblockingServer} (framed only) in a daemon thread, with
    two workers.
    """

    kind = "TNonblockingServer"

    def __init__(self, column: str) -> None:
        self.handler = ConformanceHandler(pyTypes)
        self.socket = ApacheServerSocket()
        self.socket.listen()
        self.port = self.socket.boundPort
        self.server = TNonblockingServer(apacheProcessor(self.handler, SecondHandler()),
                                         self.socket, apacheProtocolFactory(column), threads=2)
        self.server.prepare()  # starts the workers; the socket listens already
        self._workers = [thread for thread in threading.enumerate()
                         if isinstance(thread, Worker) and thread.queue is self.server.tasks]
        assert len(self._workers) == 2, self._workers
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=f"nonblocking-{self.port}",
                                        daemon=True)
        self._thread.start()
        self._stopped = False

    def _serve(self) -> None:
        try:
            self.server.serve()
        except BaseException as error:
            self.error = error

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + STOP_WAIT
        server = self.server
        # serve() clears the stop flag as it begins: ask until it has returned.
        while self._thread.is_alive() and time.monotonic() < deadline:
            server.stop()
            self._thread.join(0.05)
        left = _join([self._thread], deadline)
        for connection in list(server.clients.values()):
            connection.close()
        server.close()  # ends the workers and closes the listening socket
        left += _join(self._workers, deadline)
        server._read.close()
        server._write.close()
        assert not left, f"TNonblockingServer threads still running after stopping: {left}"
        assert self.error is None, f"TNonblockingServer failed: {self.error!r}"


def startThriftpy2(transport: str, column: str) -> ThreadServer:
    module = thriftpy2Module()
    handler = ConformanceHandler(module)
    processor = thriftpy2.thrift.TMultiplexedProcessor()
    services = {MAIN_NAME: (module.Conformance, handler),
                "Second": (module.Second, SecondHandler())}
    for name, (service, serving) in services.items():
        processor.register_processor(name, thriftpy2.thrift.TProcessor(service, serving))
    sock = Thriftpy2ServerSocket()
    sock.listen()
    server = _Thriftpy2Threaded(processor, sock, iprot_factory=thriftpy2ProtocolFactory(column),
                                itrans_factory=thriftpy2TransportFactory(transport, column))
    running = ThreadServer("thriftpy2 TThreadedServer", server, sock)
    running.handler = handler
    return running


class TxthriftServer:
    """
    A txthrift server with both services, the main one also under plain
    names, fixed to one transport and protocol.
    """

    kind = "txthrift"

    def __init__(self, port: Any, handler: ConformanceHandler) -> None:
        self.listening = port
        self.port: int = port.getHost().port
        self.handler = handler

    @classmethod
    async def start(cls, transport: str, protocol: str,
                    handler: ConformanceHandler | None = None, **limits: Any) -> TxthriftServer:
        handler = handler or ConformanceHandler(pyTypes)
        services = {"": (handler, Conformance), MAIN_NAME: (handler, Conformance),
                    "Second": (SecondHandler(), Second)}
        port = await bounded(txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", services,
                                            transport=transport, protocol=protocol, **limits))
        return cls(port, handler)

    async def stop(self) -> None:
        await bounded(self.listening.stopListening(), STOP_WAIT)
        for proto in list(self.listening.factory.connections):
            proto.transport.abortConnection()


#: The transports a txthrift server of the matrix detects (C{transport="auto"},
#: C{protocol="auto"}) rather than requires.
SERVED_ON_AUTO = (*HEADER_TRANSPORTS, *ZLIB_TRANSPORTS)


class ServerPool:
    """
    One server per (kind, transport, protocol), started when first asked
    for and shared by every cell that needs it.
    """

    def __init__(self) -> None:
        self._servers: dict[tuple[str, str, str], Any] = {}

    async def get(self, kind: str, transport: str, column: str) -> Any:
        # A txthrift server speaks its one codec whatever the peer's column.
        key = (kind, transport, WIRE[column] if kind == "txthrift" else column)
        server = self._servers.get(key)
        if server is None:
            if kind == "txthrift" and transport in SERVED_ON_AUTO:
                # Detected, as on the port twistd thrift serves by default.
                server = await TxthriftServer.start("auto", "auto")
            elif kind == "txthrift":
                server = await TxthriftServer.start(transport, WIRE[column])
            elif kind == "threaded":
                server = startApacheThreaded(transport, column)
            elif kind == "nonblocking":
                assert transport == "framed"
                server = NonblockingServer(column)
            else:
                assert kind == "thriftpy2"
                server = startThriftpy2(transport, column)
            self._servers[key] = server
        return server

    async def stopAll(self) -> None:
        errors = []
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            try:
                if isinstance(server, TxthriftServer):
                    await server.stop()
                else:
                    server.stop()
            except BaseException as error:
                errors.append(error)
        assert not errors, f"stopping servers failed: {errors!r}"


# ---------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------


def bounded(d: Deferred[Any], seconds: float = CALL_WAIT) -> Deferred[Any]:
    return d.addTimeout(seconds, reactor)


def connectionFailed(error: BaseException) -> bool:
    """
    Whether an error leaves the connection unusable, so that later calls
    on it are not worth waiting for.
    """
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"TTransportException", "OSError", "EOFError"}) or isinstance(
        error, (defer.TimeoutError, CancelledError))


def _notAttempted(calls: list[Case], done: int, error: BaseException) -> list[Outcome]:
    why = RuntimeError(f"not attempted: the connection failed before ({error!r})")
    return [Outcome(error=why) for _ in calls[done:]]


def _callSync(clients: dict[str, Any], calls: list[Case]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for case in calls:
        try:
            outcomes.append(Outcome(value=getattr(clients[case.service], case.method)(*case.args)))
        except Exception as error:
            outcomes.append(Outcome(error=error))
            if connectionFailed(error):
                return outcomes + _notAttempted(calls, len(outcomes), error)
    return outcomes


async def _callAsync(clients: dict[str, Any], calls: list[Case]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for case in calls:
        try:
            value = await bounded(getattr(clients[case.service], case.method)(*case.args))
            outcomes.append(Outcome(value=value))
        except Exception as error:
            outcomes.append(Outcome(error=error))
            if connectionFailed(error):
                return outcomes + _notAttempted(calls, len(outcomes), error)
    return outcomes


def runApacheSync(port: int, transport: str, column: str, calls: list[Case],
                  mainName: str | None = None, **limits: Any) -> list[Outcome]:
    """
    Make C{calls} with Apache's blocking client, on one connection; run it
    in a thread.
    """
    trans, proto = apacheClient(port, transport, column, **limits)
    mainProto = TMultiplexedProtocol(proto, mainName) if mainName else proto
    clients = {MAIN: Conformance.Client(mainProto),
               SECOND: Second.Client(TMultiplexedProtocol(proto, "Second"))}
    trans.open()
    try:
        return _callSync(clients, calls)
    finally:
        trans.close()


def apacheClient(port: int, transport: str, column: str, **limits: Any) -> tuple[Any, Any]:
    """
    The transport (to open and close) and protocol of Apache's blocking
    client for a cell.
    """
    if transport == "http":
        trans: Any = _directHttpClient(port)
        return trans, apacheProtocolFactory(column, **limits).getProtocol(trans)
    sock = TSocket("127.0.0.1", port)
    sock.setTimeout(SOCKET_WAIT_MS)
    if transport in HEADER_TRANSPORTS:
        proto = THeaderProtocol(sock, [THeaderClientType.HEADERS],
                                default_protocol=HEADER_PROTOCOL_IDS[WIRE[column]])
        if transport == "header-zlib":
            proto.add_transform(THeaderTransformID.ZLIB)
        return proto.trans, proto
    if transport in ZLIB_TRANSPORTS:
        trans = TZlibTransport(TFramedTransport(sock) if transport == "zlib"
                               else TBufferedTransport(sock),
                               max_decompressed_size=ZLIB_INFLATE_LIMIT)
    else:
        trans = {"framed": TFramedTransport, "buffered": TBufferedTransport}[transport](sock)
    return trans, apacheProtocolFactory(column, **limits).getProtocol(trans)


def _directHttpClient(port: int) -> THttpClient:
    """
    Apache's C{THttpClient} of a server on 127.0.0.1, whatever proxy the
    environment names.
    """
    trans = THttpClient(f"http://127.0.0.1:{port}/")
    trans.host, trans.port = "127.0.0.1", port
    trans.realhost = trans.realport = trans.proxy_auth = None
    trans.setTimeout(SOCKET_WAIT_MS)
    return trans


def runThriftpy2(port: int, transport: str, column: str, calls: list[Case]) -> list[Outcome]:
    """
    Make C{calls} with thriftpy2's blocking clients (one connection per
    service); run it in a thread.
    """
    module = thriftpy2Module()
    factory = thriftpy2ProtocolFactory(column)
    connect: Callable[..., Any] = make_client
    where: dict[str, Any] = {"host": "127.0.0.1", "port": port}
    if transport == "http":
        # thriftpy2's HTTP client, beneath its buffered transport.
        connect, where = thriftpy2.http.make_client, {"url": f"http://127.0.0.1:{port}/"}
        transport = "buffered"
    main = connect(module.Conformance, **where, proto_factory=factory,
                   trans_factory=thriftpy2TransportFactory(transport, column),
                   timeout=SOCKET_WAIT_MS)
    try:
        second = connect(module.Second, **where,
                         proto_factory=thriftpy2.protocol.TMultiplexedProtocolFactory(
                             factory, "Second"),
                         trans_factory=thriftpy2TransportFactory(transport, column),
                         timeout=SOCKET_WAIT_MS)
        try:
            return _callSync({MAIN: main, SECOND: second}, calls)
        finally:
            second.close()
    finally:
        main.close()


async def runTxthrift(port: int, transport: str, protocol: str, calls: list[Case],
                      mainName: str | None = None, **limits: Any) -> list[Outcome]:
    """
    Make C{calls} with txthrift's client, one connection per service.
    """
    endpoint = f"tcp:host=127.0.0.1:port={port}:timeout=10"
    if transport == "http":
        # One message per POST body: the URL says it, not the transport.
        endpoint, transport = f"http://127.0.0.1:{port}/", "framed"
    if transport == "header-zlib":
        transport, limits = "header", {**limits, "transforms": ("zlib",)}
    main = await bounded(txthrift.connect(reactor, endpoint, Conformance, transport=transport,
                                          protocol=protocol, timeout=CALL_WAIT,
                                          service_name=mainName, **limits))
    try:
        second = await bounded(txthrift.connect(reactor, endpoint, Second, transport=transport,
                                                protocol=protocol, timeout=CALL_WAIT,
                                                service_name="Second", **limits))
        try:
            return await _callAsync({MAIN: main, SECOND: second}, calls)
        finally:
            await bounded(second.close(), STOP_WAIT)
    finally:
        await bounded(main.close(), STOP_WAIT)


class _Multiplexed:
    """
    A protocol factory for calls to one service of a multiplexed server.
    """

    def __init__(self, factory: Any, service: str) -> None:
        self._factory = factory
        self._service = service

    def getProtocol(self, trans: Any) -> Any:
        return TMultiplexedProtocol(self._factory.getProtocol(trans), self._service)


class _ClosableClientProtocol(TTwisted.ThriftClientProtocol):
    """
    L{TTwisted.ThriftClientProtocol} with a Deferred firing once it is closed.
    """

    transport: ITransport

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.closed: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        if not self.closed.called:
            self.closed.callback(None)

    async def close(self) -> None:
        if not self.closed.called:
            self.transport.loseConnection()
        await bounded(self.closed, STOP_WAIT)


async def _openTwisted(port: int, clientClass: Any, iprot: Any,
                       oprot: Any) -> _ClosableClientProtocol:
    creator = ClientCreator(reactor, _ClosableClientProtocol, clientClass, iprot, oprot)
    proto: _ClosableClientProtocol = await bounded(
        creator.connectTCP("127.0.0.1", port, timeout=10))
    await bounded(proto.started)
    return proto


async def runApacheTwisted(port: int, column: str, calls: list[Case],
                           mainName: str | None = None) -> list[Outcome]:
    """
    Make C{calls} with Apache's C{py:twisted} generated clients over
    L{txthrift.TTwisted.ThriftClientProtocol}, one connection per service.
    """
    factory = apacheProtocolFactory(column)
    mainOut = _Multiplexed(factory, mainName) if mainName else factory
    main = await _openTwisted(port, TwConformance.Client, factory, mainOut)
    try:
        second = await _openTwisted(port, TwSecond.Client, factory,
                                    _Multiplexed(factory, "Second"))
        try:
            return await _callAsync({MAIN: main.client, SECOND: second.client}, calls)
        finally:
            await second.close()
    finally:
        await main.close()
