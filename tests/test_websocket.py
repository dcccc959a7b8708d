"""
Tests for L{txthrift._websocket}: Thrift over WebSocket, a txthrift client
against a txthrift server on 127.0.0.1, and a bare autobahn peer where the
WebSocket frames themselves are under test (text or binary, close codes).
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TTransportException
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, DeferredQueue, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, serverFromString
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater

import txthrift
from tests._handlers import CalcHandler, EchoBasics
from tests._hardening import request, resultStruct
from tests.gen.py.txthrift_test import Calc, Echo
from tests.gen.py.txthrift_test.ttypes import Item, Oops
from tests.test_tap import _selfSigned
from txthrift import Client, Codec, Limits, ServerProtocol
from txthrift._threads import Threads

#: Why the tests needing autobahn skip where it is missing (never in CI:
#: scripts/setup.sh installs every extra).
NO_AUTOBAHN = "autobahn is missing: install txthrift[websocket] (scripts/setup.sh does)"

#: Seconds any one wait may take.
WAIT = 10.0
LOOPBACK = "tcp:0:interface=127.0.0.1"


def within(d: Deferred[Any], seconds: float = WAIT) -> Deferred[Any]:
    return d.addTimeout(seconds, reactor)


class Handler(EchoBasics):
    """
    An C{Echo} whose C{slow} answers when the test says, and tells when its
    work is cancelled.
    """

    def __init__(self) -> None:
        self.waiting: dict[str, Deferred[str]] = {}
        self.cancelled: list[str] = []
        self.started: DeferredQueue[str] = DeferredQueue()

    def slow(self, seconds: float, tag: str) -> Deferred[str]:
        self.waiting[tag] = Deferred(lambda d: self.cancelled.append(tag))
        # Told once the server holds the call (after this returns).
        reactor.callLater(0, self.started.put, tag)
        return self.waiting[tag]

    def item(self, it: Item) -> Item:
        return Item(id=it.id + 1, name=it.name, values=list(reversed(it.values or [])),
                    counts=it.counts)

    def fail(self, kind: str) -> str:
        if kind == "oops":
            raise Oops(why="asked to", code=7)
        raise RuntimeError("secret internals")

    def blob(self, size: int) -> bytes:
        return b"b" * size


class WebSockets:
    """
    The WebSocket servers and clients of one test, closed when it ends.
    """

    def __init__(self) -> None:
        self.ports: list[Any] = []
        self.factories: list[Any] = []
        self.websocket = pytest.importorskip("txthrift._websocket", reason=NO_AUTOBAHN)
        self.clients: list[Client] = []

    async def serve(self, handler: object, *, endpoint: str = LOOPBACK,
                    protocol: str = "auto", threads: Threads | None = None,
                    **limits: Any) -> str:
        """
        Serve C{handler}; return the C{ws://} URL of the server.
        """
        factory = self.websocket.websocketFactory(
            handler, protocol=protocol, limits=Limits.from_keywords(**limits), clock=reactor,
            threads=threads)
        port = await within(serverFromString(reactor, endpoint).listen(factory))
        self.ports.append(port)
        self.factories.append(factory)
        scheme = "wss" if endpoint.startswith("ssl:") else "ws"
        return f"{scheme}://127.0.0.1:{port.getHost().port}/thrift"

    @property
    def connections(self) -> set[ServerProtocol]:
        return self.factories[-1].serverFactory.connections

    async def connect(self, url: str, service: Any = Echo, **kwargs: Any) -> Any:
        client = await within(txthrift.connect(reactor, url, service, timeout=WAIT, **kwargs))
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await within(Client.close(client))
        for factory in self.factories:
            for connection in list(factory.serverFactory.connections):
                connection.transport.abortConnection()
            await within(factory.serverFactory.whenDisconnected())
        for port in self.ports:
            await within(port.stopListening())


@pytest_twisted.async_yield_fixture
async def websockets() -> AsyncIterator[WebSockets]:
    hosted = WebSockets()
    yield hosted
    await hosted.close()


async def rawClient(url: str) -> Any:
    """
    A bare WebSocket peer of C{url}, once open: C{factory.received} has what
    it receives, C{factory.closed} fires with how the server closed.
    """
    from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol

    class RawClient(WebSocketClientProtocol):
        def onOpen(self) -> None:
            self.factory.opened.callback(self)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            self.factory.received.put((payload, isBinary))

        def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
            if not self.factory.opened.called:
                self.factory.opened.errback(RuntimeError(f"closed before open: {code} {reason}"))
            self.factory.closed.callback((code, reason))

    factory: Any = WebSocketClientFactory(url)
    factory.protocol = RawClient
    factory.opened, factory.closed = Deferred(), Deferred()
    factory.received = DeferredQueue()
    port = int(url.split(":")[2].split("/")[0])
    await within(TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory))
    return await within(factory.opened)


def decodeReply(protocol: str, name: str, message: bytes) -> tuple[int, int, Any]:
    codec = Codec(protocol)
    iprot, _, mtype, seqid = codec.readHeader(message)
    if mtype == TMessageType.EXCEPTION:
        error = TApplicationException()
        codec.readBody(iprot, error)
        return mtype, seqid, error
    result = resultStruct(name)()
    codec.readBody(iprot, result)
    return mtype, seqid, result.success


@pytest.mark.parametrize("protocol", ["binary", "compact", "json"])
@pytest_twisted.ensureDeferred
async def test_manyCallsInFlightOnOneWebSocket(websockets: WebSockets, protocol: str) -> None:
    """
    Calls of every kind cross one WebSocket, many at once, answered by a
    L{ServerProtocol} of the server factory's (detecting the protocol).
    """
    url = await websockets.serve(Handler())
    client = await websockets.connect(url, protocol=protocol)
    texts = [f"call {i} " + "x" * (i % 5) for i in range(40)]
    got = await within(gatherResults([client.getData(text) for text in texts]))
    assert got == [text + " from server 1024" for text in texts]
    assert await within(client.ping(4)) == 5
    item = await within(client.item(Item(id=1, name="n\u00e4me", values=[1, 2**40],
                                         counts={"a": 1})))
    assert item == Item(id=2, name="n\u00e4me", values=[2**40, 1], counts={"a": 1})
    with pytest.raises(Oops):
        await within(client.fail("oops"))
    with pytest.raises(TApplicationException) as raised:
        await within(client.fail("other"))
    assert "secret" not in str(raised.value)
    [connection] = websockets.connections
    assert isinstance(connection, ServerProtocol)
    assert connection.protocolName == protocol


@pytest_twisted.ensureDeferred
async def test_multiplexedAndThreaded(websockets: WebSockets) -> None:
    """
    A mapping of services is served multiplexed, and C{threads} runs a
    blocking handler's methods in the pool.
    """
    import threading

    class Blocking(EchoBasics):
        def getData(self, input: str) -> str:
            return threading.current_thread().name

    threads = Threads(reactor, 2)
    threads.start()
    try:
        url = await websockets.serve({"Echo": Blocking(), "Calc": CalcHandler()},
                                     threads=threads)
        echo = await websockets.connect(url, Echo, service_name="Echo")
        calc = await websockets.connect(url, Calc, service_name="Calc")
        assert await within(calc.multiply(6, 7)) == 42
        assert await within(echo.getData("x")) != threading.current_thread().name
    finally:
        threads.stop()


@pytest.mark.parametrize("textFrames", [True, False])
@pytest_twisted.ensureDeferred
async def test_jsonAnsweredInTheFramesItCameIn(websockets: WebSockets, textFrames: bool) -> None:
    """
    JSON in text frames (as Apache's JavaScript sends it) is answered in
    text frames; in binary frames (as Node's sends it), in binary ones.
    """
    url = await websockets.serve(Handler())
    raw = await rawClient(url)
    raw.sendMessage(request("json", "getData", 7, "hi"), isBinary=not textFrames)
    payload, isBinary = await within(raw.factory.received.get())
    assert isBinary is not textFrames
    assert decodeReply("json", "getData", payload) == (TMessageType.REPLY, 7, "hi from server 1024")
    raw.sendClose(1000)
    assert (await within(raw.factory.closed))[0] == 1000


@pytest_twisted.ensureDeferred
async def test_messageOverMaxFrameSizeClosesWith1009(websockets: WebSockets) -> None:
    """
    A WebSocket message over the server's max_frame_size closes its
    WebSocket with 1009 (message too big); the client's calls in flight
    fail, saying so.
    """
    url = await websockets.serve(Handler(), max_frame_size=1000)
    raw = await rawClient(url)
    raw.sendMessage(request("binary", "getData", 1, "x" * 2000), isBinary=True)
    code, reason = await within(raw.factory.closed)
    assert code == 1009
    assert "limit of 1000 octets" in reason
    client = await websockets.connect(url)
    slow = client.slow(1.0, "held")
    with pytest.raises(TTransportException) as raised:
        await within(client.getData("x" * 2000))
    assert raised.value.type == TTransportException.NOT_OPEN
    assert "1009" in str(raised.value)
    with pytest.raises(TTransportException):
        await within(slow)


@pytest_twisted.ensureDeferred
async def test_notThriftClosesWith1007(websockets: WebSockets) -> None:
    """
    A message that is no Thrift message closes its WebSocket with 1007,
    saying why; an empty one too.
    """
    url = await websockets.serve(Handler())
    for payload in (b"\x00\x01garbage", b""):
        raw = await rawClient(url)
        raw.sendMessage(payload, isBinary=True)
        code, reason = await within(raw.factory.closed)
        assert code == 1007
        assert reason


@pytest_twisted.ensureDeferred
async def test_undecodableArgumentsGetAnApplicationException(websockets: WebSockets) -> None:
    """
    A call whose header reads but whose arguments do not decode gets a
    TApplicationException, and the WebSocket carries on.
    """
    url = await websockets.serve(Handler())
    raw = await rawClient(url)
    good = request("binary", "getData", 3, "hi")
    raw.sendMessage(good[:-4], isBinary=True)
    payload, _ = await within(raw.factory.received.get())
    mtype, seqid, error = decodeReply("binary", "getData", payload)
    assert (mtype, seqid) == (TMessageType.EXCEPTION, 3)
    assert isinstance(error, TApplicationException)
    raw.sendMessage(good, isBinary=True)
    payload, _ = await within(raw.factory.received.get())
    assert decodeReply("binary", "getData", payload)[2] == "hi from server 1024"
    raw.sendClose(1000)
    await within(raw.factory.closed)


@pytest_twisted.ensureDeferred
async def test_callTimeoutAndClientTimeout(websockets: WebSockets) -> None:
    """
    The server's call_timeout answers a call its handler has not, and a
    client's own timeout fails its call alone.
    """
    handler = Handler()
    url = await websockets.serve(handler, call_timeout=0.2)
    client = await websockets.connect(url)
    with pytest.raises(TApplicationException) as raised:
        await within(client.slow(1.0, "server"))
    assert "did not finish within" in str(raised.value)
    assert handler.cancelled == ["server"]
    with pytest.raises(txthrift.CallTimeout):
        await within(client.slow(1.0, "client", timeout=0.05))
    assert await within(client.ping(1)) == 2


@pytest_twisted.ensureDeferred
async def test_maxPendingHoldsTheRest(websockets: WebSockets) -> None:
    """
    Past max_pending calls in flight on a WebSocket, the rest wait (and
    reading pauses) until some are answered; every call gets its reply.
    """
    handler = Handler()
    url = await websockets.serve(handler, max_pending=2)
    client = await websockets.connect(url)
    calls = [client.slow(5.0, f"t{i}") for i in range(6)]
    for _ in range(2):
        await within(handler.started.get())
    await deferLater(reactor, 0.05)
    [connection] = websockets.connections
    assert (connection.inFlight, connection.queued) == (2, 4)
    for i in range(6):
        if i >= 2:
            await within(handler.started.get())
        handler.waiting[f"t{i}"].callback(f"done {i}")
    assert await within(gatherResults(calls)) == [f"done {i}" for i in range(6)]


@pytest_twisted.ensureDeferred
async def test_clientGoneCancelsItsCalls(websockets: WebSockets) -> None:
    """
    A client that closes its WebSocket with calls in flight has their work
    cancelled on the server, and the server factory sees it go.
    """
    handler = Handler()
    url = await websockets.serve(handler)
    client = await websockets.connect(url)
    pending = client.slow(5.0, "gone")
    assert await within(handler.started.get()) == "gone"
    await within(Client.close(client))
    with pytest.raises(TTransportException):
        await within(pending)
    await within(websockets.factories[-1].serverFactory.whenDisconnected())
    assert handler.cancelled == ["gone"]


@pytest_twisted.ensureDeferred
async def test_drainThenCloseWithGoingAway(websockets: WebSockets) -> None:
    """
    The server factory waits for calls in flight on its WebSockets, and
    closing its connections closes them with 1001 (going away).
    """
    handler = Handler()
    url = await websockets.serve(handler)
    client = await websockets.connect(url)
    pending = client.slow(5.0, "drained")
    await within(handler.started.get())
    serverFactory = websockets.factories[-1].serverFactory
    idle = serverFactory.whenIdle()
    assert not idle.called
    handler.waiting["drained"].callback("done")
    assert await within(pending) == "done"
    await within(idle)
    for connection in list(serverFactory.connections):
        connection.close()
    await within(serverFactory.whenDisconnected())
    with pytest.raises(TTransportException) as raised:
        await within(client.ping(1))
    assert "1001" in str(raised.value)


@pytest_twisted.ensureDeferred
async def test_aBusyPeerStillGetsTheCloseCode(websockets: WebSockets) -> None:
    """
    A closing handshake is not cut off after autobahn's one second: a peer
    busy for longer (here the reactor both ends share, blocked as a long
    garbage collection blocks it) still gets 1001, not a cut connection.
    """
    import time

    url = await websockets.serve(Handler())
    client = await websockets.connect(url)
    assert await within(client.ping(1)) == 2
    serverFactory = websockets.factories[-1].serverFactory
    for connection in list(serverFactory.connections):
        connection.close()
    time.sleep(1.5)  # noqa: ASYNC251 - blocking the reactor is the point
    await within(serverFactory.whenDisconnected())
    with pytest.raises(TTransportException) as raised:
        await within(client.ping(1))
    assert "1001" in str(raised.value)


@pytest_twisted.ensureDeferred
async def test_idleAndSlowMessagesClosed(websockets: WebSockets) -> None:
    """
    idle_timeout closes a WebSocket with nothing to do; partial_timeout one
    whose message does not come whole in time (1008).
    """
    # Long enough for the opening handshake on a busy machine: the
    # timeout counts from the connection, not from the handshake's end.
    url = await websockets.serve(Handler(), idle_timeout=1.0)
    raw = await rawClient(url)
    code, _ = await within(raw.factory.closed)
    assert code == 1001
    url = await websockets.serve(Handler(), partial_timeout=0.2)
    raw = await rawClient(url)
    raw.beginMessage(isBinary=True)
    raw.beginMessageFrame(100)
    raw.sendMessageFrameData(b"\x80\x01")
    started = time.monotonic()
    code, reason = await within(raw.factory.closed)
    assert code == 1008
    assert "partial_timeout" in reason
    # At once: a peer part-way through a frame cannot answer the close
    # frame, and the connection is not held for the closing handshake.
    assert time.monotonic() - started < 5


@pytest_twisted.ensureDeferred
async def test_messagesArrivingShareThePartialBudget(websockets: WebSockets) -> None:
    """
    A WebSocket message arriving frame piece by frame piece counts against
    C{partial_budget} as a partial TCP message does: past it, a WebSocket
    reading more of its message waits while the first to go past it
    finishes; then both are answered, and the budget is empty again.
    """
    url = await websockets.serve(Handler(), partial_budget=1000)
    budget = websockets.factories[-1].serverFactory.partialBudget
    message = request("binary", "echo", 1, "x" * 900, 1)
    assert len(message) > 900

    async def settled(check: Any) -> None:
        for _ in range(int(WAIT / 0.01)):
            if check():
                return
            await deferLater(reactor, 0.01, lambda: None)
        raise AssertionError(f"never settled: held {budget.held}, waiting {budget.waiting}")

    first, second = await rawClient(url), await rawClient(url)
    for raw in (first, second):
        raw.beginMessage(isBinary=True)
        raw.beginMessageFrame(len(message))
    first.sendMessageFrameData(message[:700])
    await settled(lambda: budget.held == 700)
    second.sendMessageFrameData(message[:700])  # past the budget: it goes through ...
    await settled(lambda: budget.held == 1400)
    first.sendMessageFrameData(message[700:800])  # ... and the first waits
    await settled(lambda: (budget.waiting, budget.held) == (1, 1500))
    first.sendMessageFrameData(message[800:])
    first.endMessage()
    await deferLater(reactor, 0.2, lambda: None)
    assert (budget.waiting, budget.held) == (1, 1500)
    assert first.factory.received.pending == []
    second.sendMessageFrameData(message[700:])
    second.endMessage()
    for raw in (second, first):
        payload, _ = await within(raw.factory.received.get())
        assert decodeReply("binary", "echo", payload) == (TMessageType.REPLY, 1, "x" * 900)
    assert (budget.waiting, budget.held) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_wss(websockets: WebSockets, tmp_path: Path) -> None:
    """
    C{wss://} verifies the server's certificate: against the system's
    authorities by default (a self-signed one fails), against the trust
    given with C{contextFactory} or C{trustRoot} (as for C{https://}).
    """
    from twisted.internet.ssl import Certificate
    from twisted.web.client import BrowserLikePolicyForHTTPS

    key, cert = _selfSigned(tmp_path)
    url = await websockets.serve(Handler(), endpoint=f"ssl:0:interface=127.0.0.1:privateKey={key}"
                                 f":certKey={cert}")
    with pytest.raises(Exception):  # noqa: B017 - an OpenSSL error, or the closed WebSocket
        await within(txthrift.connect(reactor, url, Echo))
    trust = BrowserLikePolicyForHTTPS(trustRoot=Certificate.loadPEM(cert.read_bytes()))
    client = await websockets.connect(url, contextFactory=trust, headers={"X-Test": "1"})
    assert await within(client.ping(1)) == 2
    client = await websockets.connect(url, trustRoot=str(cert))
    assert await within(client.getData("x")) == "x from server 1024"
    with pytest.raises(ValueError, match="wss://"):
        txthrift.connect(reactor, url.replace("wss:", "ws:"), Echo, trustRoot=str(cert))


@pytest_twisted.ensureDeferred
async def test_clientHandshakeAndFrames(websockets: WebSockets) -> None:
    """
    The client sends C{headers} with its opening handshake, and a JSON call
    as a text frame (a binary one as binary), as browsers' clients do.
    """
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    seen: DeferredQueue[Any] = DeferredQueue()

    class Recording(WebSocketServerProtocol):
        def onConnect(self, request: Any) -> None:
            seen.put(request.headers)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            seen.put((payload, isBinary))

    factory = WebSocketServerFactory()
    factory.protocol = Recording
    port = await within(serverFromString(reactor, LOOPBACK).listen(factory))
    websockets.ports.append(port)
    url = f"ws://127.0.0.1:{port.getHost().port}/"
    for protocol, binary in (("json", False), ("compact", True)):
        client = await websockets.connect(url, protocol=protocol,
                                          headers={"Authorization": "Bearer x"})
        assert (await within(seen.get()))["authorization"] == "Bearer x"
        call = client.ping(1)
        payload, isBinary = await within(seen.get())
        assert isBinary is binary
        assert Codec(protocol).readHeader(payload)[1:3] == ("ping", TMessageType.CALL)
        await within(Client.close(client))
        with pytest.raises(TTransportException):
            await within(call)


@pytest_twisted.ensureDeferred
async def test_connectFailures(websockets: WebSockets) -> None:
    """
    A refused connection fails as on TCP; a server that is no WebSocket
    server fails the handshake, naming the URL; a handshake that never
    ends can be cancelled.
    """
    url = await websockets.serve(Handler())
    port = websockets.ports.pop()
    await within(port.stopListening())
    with pytest.raises(ConnectionRefusedError):
        await within(txthrift.connect(reactor, url, Echo))

    tcp = await within(txthrift.serve(reactor, LOOPBACK, Handler()))
    try:
        url = f"ws://127.0.0.1:{tcp.getHost().port}/"
        with pytest.raises(TTransportException) as raised:
            await within(txthrift.connect(reactor, url, Echo))
        assert url in str(raised.value)
    finally:
        await within(tcp.stopListening())

    lost: Deferred[None] = Deferred()

    class Silent(Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            lost.callback(None)

    silent = await within(serverFromString(reactor, LOOPBACK).listen(Factory.forProtocol(Silent)))
    try:
        connecting = txthrift.connect(reactor, f"ws://127.0.0.1:{silent.getHost().port}/", Echo)
        await deferLater(reactor, 0.1)
        connecting.cancel()
        with pytest.raises(CancelledError):
            await within(connecting)
        await within(lost)
    finally:
        await within(silent.stopListening())


def test_badArguments() -> None:
    """
    A transport choice, an unknown protocol or a bad URL is refused at once.
    """
    websocket = pytest.importorskip("txthrift._websocket", reason=NO_AUTOBAHN)
    with pytest.raises(ValueError, match="WebSocket"):
        txthrift.connect(reactor, "ws://127.0.0.1:1/", Echo, transport="buffered")
    with pytest.raises(ValueError):
        txthrift.connect(reactor, "ws://127.0.0.1:1/", Echo, protocol="auto")
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        txthrift.connect(reactor, "ws://127.0.0.1:1/#fragment", Echo)
    with pytest.raises(ValueError):
        websocket.websocketFactory(Handler(), protocol="xml", limits=Limits(), clock=reactor)


def test_missingAutobahnNamesTheExtra(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without autobahn, a C{ws://} URL fails with one error naming the extra.
    """
    monkeypatch.setitem(sys.modules, "autobahn.twisted.websocket", None)
    monkeypatch.delitem(sys.modules, "txthrift._websocket", raising=False)
    with pytest.raises(ImportError, match=r"txthrift\[websocket\]"):
        txthrift.connect(reactor, "ws://127.0.0.1:1/", Echo)
