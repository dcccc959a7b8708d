"""
The HTTP client (C{txthrift.connect} with an C{http://} or C{https://}
URL), over real sockets on 127.0.0.1: against Apache's C{THttpServer}
(blocking, in threads) in every protocol, against txthrift's own HTTP
server, and against C{twisted.web} and raw stubs for what a well-behaved
server never does (non-200 answers, replies cut short or too big, requests
held until the test answers them).
"""

from __future__ import annotations

import datetime
import ipaddress
import queue
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAcceleratedFactory
from thrift.protocol.TCompactProtocol import TCompactProtocolAcceleratedFactory
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.server.THttpServer import THttpServer
from thrift.Thrift import TApplicationException, TException, TMessageType
from thrift.TMultiplexedProcessor import TMultiplexedProcessor
from thrift.transport.TTransport import TTransportException
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, DeferredQueue, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.protocols.policies import WrappingFactory
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

import txthrift
from tests._apache import SECRET, SyncHandler, transformItem
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Denied, Item, Oops
from txthrift._codec import Codec

#: Seconds any one wait in these tests may take before it fails.
WAIT = 10.0
#: Seconds an Apache server may take to stop, its request threads included.
STOP_WAIT = 5.0

PROTOCOLS = ["binary", "compact", "json"]
APACHE_FACTORIES: dict[str, Callable[[], Any]] = {
    "binary": TBinaryProtocolAcceleratedFactory,
    "compact": TCompactProtocolAcceleratedFactory,
    "json": TJSONProtocolFactory,
}
MEDIA = {"binary": "application/x-thrift", "compact": "application/x-thrift",
         "json": "application/vnd.apache.thrift.json"}

ITEM = Item(id=20, name='n\u00e4me [{"\\"}] \u2603', values=[1, -2, 2**40],
            counts={"a": 1, "\u00fc": -3})


def within(d: Deferred[Any], seconds: float = WAIT) -> Deferred[Any]:
    return d.addTimeout(seconds, reactor)


async def failure(d: Deferred[Any]) -> BaseException:
    """
    What C{d} fails with; the test fails if it succeeds.
    """
    try:
        value = await within(d)
    except (TException, CancelledError) as error:
        return error
    raise AssertionError(f"expected a failure, got {value!r}")


def transportError(error: BaseException, kind: int) -> str:
    """
    C{error} is a C{TTransportException} of type C{kind}; its message.
    """
    assert isinstance(error, TTransportException), repr(error)
    assert error.type == kind, (error.type, error.message)
    return str(error.message)


async def until(condition: Callable[[], bool], what: str) -> None:
    """
    Wait, a reactor turn at a time, until C{condition()} holds.
    """
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await deferLater(reactor, 0.01)


async def connect(url: str, **kwargs: Any) -> Any:
    return await within(txthrift.connect(reactor, url, Echo, **kwargs))


# ---------------------------------------------------------------------------
# Apache's THttpServer, in threads
# ---------------------------------------------------------------------------


class _ThreadedHTTPServer(ThreadingHTTPServer):
    """
    A thread per request, each recorded so that stopping can wait for it
    within a time limit (the standard library's own join has none).
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.requestThreads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self.process_request_thread,
                                  args=(request, client_address), daemon=True)
        with self._lock:
            self.requestThreads.append(thread)
        thread.start()

    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self.requestThreads)


class ApacheHTTP:
    """
    Apache's C{THttpServer} serving a L{SyncHandler} on 127.0.0.1 in one
    protocol, with a thread per request (Apache's C{server_class} option),
    recording each request's headers.

    Concurrent requests must not include a oneway one: C{THttpServer} keeps
    the state of its oneway answer on the server, shared by all threads.
    """

    def __init__(self, protocol: str, *, multiplexed: bool = False, **tls: Any) -> None:
        self.handler = SyncHandler()
        processor: Any = Echo.Processor(self.handler)
        if multiplexed:
            processor = TMultiplexedProcessor()
            processor.registerProcessor("Echo", Echo.Processor(self.handler))
        self.server = THttpServer(processor, ("127.0.0.1", 0), APACHE_FACTORIES[protocol](),
                                  server_class=_ThreadedHTTPServer, **tls)
        httpd = self.httpd = self.server.httpd
        self.headers: queue.Queue[dict[str, str]] = queue.Queue()
        #: Calls of slow() running at once now, and the most there were.
        self.running = self.mostRunning = 0
        self._lock = threading.Lock()
        self._recordHeaders(httpd)
        self._countSlowCalls()
        self.port: int = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,),
                                        name=f"apache-http-{self.port}", daemon=True)
        self._thread.start()

    def _recordHeaders(self, httpd: Any) -> None:
        base = httpd.RequestHandlerClass
        seen = self.headers

        class Recording(base):  # type: ignore[misc, valid-type]
            # A client that stops sending cannot hold a thread for ever.
            timeout = WAIT

            def do_POST(self) -> None:
                seen.put(dict(self.headers.items()))
                base.do_POST(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        httpd.RequestHandlerClass = Recording

    def _countSlowCalls(self) -> None:
        slow = self.handler.slow

        def counted(seconds: float, tag: str) -> str:
            with self._lock:
                self.running += 1
                self.mostRunning = max(self.mostRunning, self.running)
            try:
                return slow(seconds, tag)
            finally:
                with self._lock:
                    self.running -= 1

        self.handler.slow = counted  # type: ignore[method-assign]

    def url(self, path: str = "/thrift", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        """
        Stop serving; fail if a thread of it still runs after L{STOP_WAIT}.
        """
        deadline = time.monotonic() + STOP_WAIT
        self.httpd.shutdown()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self.httpd.server_close()
        for thread in self.httpd.threads():
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t for t in [self._thread, *self.httpd.threads()] if t.is_alive()]
        assert not left, f"threads still running after stopping THttpServer: {left}"


@pytest.fixture
def apacheHTTP() -> Iterator[Callable[..., ApacheHTTP]]:
    """
    Start Apache HTTP servers; each is stopped, its threads checked gone,
    when the test ends.
    """
    servers: list[ApacheHTTP] = []

    def start(*args: Any, **kwargs: Any) -> ApacheHTTP:
        server = ApacheHTTP(*args, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


async def everyKindOfCall(client: Any, fired: Callable[[], Deferred[str]]) -> None:
    """
    Call every kind of method of C{Echo} and check what each gives.

    @param fired: what the server's C{fire} got next.
    """
    assert await within(client.sayHello()) is None
    assert await within(client.getData("over http")) == "over http from server 1024"
    assert await within(client.ping(41)) == 42  # inherited from Base
    assert await within(client.echo("ab", 3)) == "ababab"
    assert await within(client.add(2**30, 2**30 - 1)) == 2**31 - 1
    assert await within(client.item(ITEM)) == transformItem(ITEM)
    assert await within(client.blob(1000)) == (bytes(range(256)) * 4)[:1000]
    oops = await failure(client.fail("oops"))
    assert isinstance(oops, Oops) and (oops.why, oops.code) == ("asked to", 7)
    denied = await failure(client.fail("denied"))
    assert isinstance(denied, Denied) and denied.who == "you"
    app = await failure(client.fail("app"))
    assert isinstance(app, TApplicationException)
    assert (app.type, app.message) == (TApplicationException.INVALID_TRANSFORM, "told you")
    internal = await failure(client.fail("boom"))
    assert isinstance(internal, TApplicationException)
    assert internal.type == TApplicationException.INTERNAL_ERROR
    assert SECRET not in str(internal.message)
    assert await within(client.fire("one way")) is None
    assert await within(fired()) == "one way"


def apacheFired(server: ApacheHTTP) -> Callable[[], Deferred[str]]:
    return lambda: deferToThread(server.handler.fired.get, True, WAIT)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest_twisted.ensureDeferred
async def test_everyKindOfCallAgainstApache(
        apacheHTTP: Callable[..., ApacheHTTP], protocol: str) -> None:
    """
    Values, void, inherited methods, structs, binary, declared exceptions,
    Apache's C{TApplicationException}s and oneway calls, in each protocol,
    against Apache's C{THttpServer}; each request carries the protocol's
    media type and the extra headers.
    """
    server = apacheHTTP(protocol)
    client = await connect(server.url(), protocol=protocol,
                           headers={"Authorization": "Bearer t0ken", "X-Trace": "42"})
    try:
        await everyKindOfCall(client, apacheFired(server))
    finally:
        await within(client.close())
    headers = [server.headers.get_nowait() for _ in range(server.headers.qsize())]
    assert len(headers) == 12
    for seen in headers:
        assert seen["Authorization"] == "Bearer t0ken"
        assert seen["X-Trace"] == "42"
        assert seen["Content-Type"] == MEDIA[protocol]
        assert seen["Accept"] == MEDIA[protocol]
        assert seen["User-Agent"].startswith("txthrift/")


@pytest_twisted.ensureDeferred
async def test_multiplexedServiceName(apacheHTTP: Callable[..., ApacheHTTP]) -> None:
    """
    C{service_name=} calls a service of Apache's C{TMultiplexedProcessor}.
    """
    server = apacheHTTP("compact", multiplexed=True)
    client = await connect(server.url(), protocol="compact", service_name="Echo")
    try:
        assert await within(client.getData("m")) == "m from server 1024"
        oops = await failure(client.fail("oops"))
        assert isinstance(oops, Oops)
    finally:
        await within(client.close())


@pytest_twisted.ensureDeferred
async def test_callsRunConcurrentlyUpToMaxConnections(
        apacheHTTP: Callable[..., ApacheHTTP]) -> None:
    """
    Many calls at once run on up to C{max_connections} connections at a
    time, the rest queued; every one gets its own reply.
    """
    server = apacheHTTP("binary")
    client = await connect(server.url(), max_connections=3)
    try:
        calls = [client.slow(0.3, f"tag{i}") for i in range(12)]
        assert client.protocol.pending == 12
        got = await within(gatherResults(calls, consumeErrors=True))
        assert got == [f"tag{i}" for i in range(12)]
        assert server.mostRunning == 3
        assert client.protocol.pending == 0
        many = [client.add(i, 1) for i in range(100)]
        assert await within(gatherResults(many, consumeErrors=True)) == list(range(1, 101))
    finally:
        await within(client.close())


@pytest_twisted.ensureDeferred
async def test_timeoutsPerClientAndPerCall(apacheHTTP: Callable[..., ApacheHTTP]) -> None:
    """
    A call with no reply within its timeout (the client's, or its own
    C{timeout=}) fails with C{CallTimeout}; the client carries on.
    """
    server = apacheHTTP("binary")
    client = await connect(server.url(), timeout=0.2)
    try:
        late = await failure(client.slow(1.0, "late"))
        assert isinstance(late, txthrift.CallTimeout)
        assert "slow got no reply within 0.2 seconds" in str(late.message)
        assert await within(client.slow(0.3, "own", timeout=5)) == "own"
        ownLate = await failure(client.getData("x", timeout=0.000001))
        assert isinstance(ownLate, txthrift.CallTimeout)
        assert await within(client.getData("after")) == "after from server 1024"
        assert client.protocol.pending == 0
    finally:
        await within(client.close())


# ---------------------------------------------------------------------------
# twisted.web and raw stubs
# ---------------------------------------------------------------------------


class Answering(Resource):
    """
    Answers every POST with a fixed status and body.
    """

    isLeaf = True

    def __init__(self, code: int, body: bytes) -> None:
        super().__init__()
        self.code, self.body = code, body

    def render_POST(self, request: Any) -> bytes:
        request.setResponseCode(self.code)
        return self.body


class Holding(Resource):
    """
    Holds every POST until the test answers it (L{answer}); records the
    ones whose client went first.
    """

    isLeaf = True

    def __init__(self, protocol: str = "binary") -> None:
        super().__init__()
        self.codec = Codec(protocol)
        self.arrived: DeferredQueue[tuple[Any, bytes]] = DeferredQueue()
        self.held = 0
        self.gone = 0

    def render_POST(self, request: Any) -> int:
        self.held += 1

        def gone(_: Any) -> None:
            self.held -= 1
            self.gone += 1

        request.notifyFinish().addErrback(gone)
        self.arrived.put((request, request.content.read()))
        return NOT_DONE_YET

    def answer(self, request: Any, body: bytes, success: str) -> None:
        """
        Answer a held C{getData} call with C{success}.
        """
        _, name, _, seqid = self.codec.readHeader(body)
        reply = self.codec.encode(name, TMessageType.REPLY, seqid,
                                  Echo.getData_result(success=success))
        self.held -= 1
        request.write(reply)
        request.finish()


class Streaming(Resource):
    """
    Answers 200 with a body of no declared length, written a chunk per
    reactor turn, up to L{MOST} bytes, or until its client goes.
    """

    isLeaf = True
    CHUNK = 16 * 1024
    MOST = 8 * 1024 * 1024

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.gone: Deferred[None] = Deferred()

    def render_POST(self, request: Any) -> int:
        lost: list[bool] = []

        def gone(_: Any) -> None:
            lost.append(True)
            self.gone.callback(None)

        request.notifyFinish().addErrback(gone)

        def more() -> None:
            if lost:
                return
            if self.written >= self.MOST:
                request.finish()
                return
            request.write(b"x" * self.CHUNK)
            self.written += self.CHUNK
            reactor.callLater(0, more)

        more()
        return NOT_DONE_YET


class _Root(Resource):
    def getChild(self, path: bytes, request: Any) -> Resource:
        return notFound()  # type: ignore[return-value]


@asynccontextmanager
async def webStub(resource: Resource) -> AsyncIterator[tuple[str, WrappingFactory]]:
    """
    Serve C{resource} at C{/thrift} in a twisted.web C{Site} on 127.0.0.1,
    yielding its URL and the factory whose C{protocols} are its open
    connections; afterwards stop listening and drop them.
    """
    root = _Root()
    root.putChild(b"thrift", resource)
    factory = WrappingFactory(Site(root))
    port = await within(serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory))
    try:
        yield f"http://127.0.0.1:{port.getHost().port}/thrift", factory
    finally:
        await within(port.stopListening())
        for proto in list(factory.protocols):
            proto.transport.abortConnection()


class RawAnswer(Protocol):
    """
    Reads one whole HTTP request, then writes C{answer} (raw bytes) and
    closes the connection.
    """

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = re.search(rb"(?im)^content-length:\s*(\d+)", self.buffer[:end])
        assert length is not None and self.transport is not None, self.buffer[:end]
        if len(self.buffer) >= end + 4 + int(length.group(1)):
            self.transport.write(self.answer)
            self.transport.loseConnection()


class RawFactory(Factory):
    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def buildProtocol(self, addr: Any) -> RawAnswer:
        return RawAnswer(self.answer)


@asynccontextmanager
async def rawStub(answer: bytes) -> AsyncIterator[str]:
    port = await within(serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        RawFactory(answer)))
    try:
        yield f"http://127.0.0.1:{port.getHost().port}/"
    finally:
        await within(port.stopListening())


@pytest.mark.parametrize(("code", "phrase"), [(500, "Internal Server Error"),
                                              (401, "Unauthorized")])
@pytest_twisted.ensureDeferred
async def test_nonOKAnswerNamesStatusAndURL(code: int, phrase: str) -> None:
    """
    An answer other than 200 fails the call with a C{TTransportException}
    naming the status, the URL, and what the body began with.
    """
    async with webStub(Answering(code, b"the server\nsays no")) as (url, _):
        client = await connect(url)
        try:
            why = transportError(await failure(client.getData("x")),
                                 TTransportException.UNKNOWN)
            assert why == f"{url} answered HTTP {code} {phrase}, not 200: the server says no"
            # So does a oneway call's.
            why = transportError(await failure(client.fire("x")), TTransportException.UNKNOWN)
            assert f"HTTP {code}" in why
        finally:
            await within(client.close())


@pytest_twisted.ensureDeferred
async def test_notFoundAndTooLarge() -> None:
    """
    A path nothing serves answers 404; a 413 (the server refused the size
    of the call) fails as C{SIZE_LIMIT}; a long error body is cut.
    """
    async with webStub(Answering(413, b"y" * 100_000)) as (url, _):
        client = await connect(url.replace("/thrift", "/elsewhere"))
        try:
            why = transportError(await failure(client.getData("x")),
                                 TTransportException.UNKNOWN)
            assert why.startswith(f"{url.replace('/thrift', '/elsewhere')} answered HTTP 404")
        finally:
            await within(client.close())
        client = await connect(url)
        try:
            why = transportError(await failure(client.getData("x")),
                                 TTransportException.SIZE_LIMIT)
            assert "HTTP 413" in why and why.endswith("y" * 200 + "...")
        finally:
            await within(client.close())


@pytest_twisted.ensureDeferred
async def test_cancellingACallDropsItsRequest() -> None:
    """
    C{Deferred.cancel()} fails the call with C{CancelledError} and closes
    its connection, so the server sees its client go; other calls carry on.
    """
    holding = Holding()
    async with webStub(holding) as (url, _):
        client = await connect(url)
        try:
            first = client.getData("cancelled")
            second = client.getData("kept")
            arrived = [await within(holding.arrived.get()) for _ in range(2)]
            first.cancel()
            assert isinstance(await failure(first), CancelledError)
            await until(lambda: holding.gone == 1, "the server saw the request go")
            assert client.protocol.pending == 1
            request, body = next((r, b) for r, b in arrived if b"kept" in b)
            holding.answer(request, body, "answered")
            assert await within(second) == "answered"
        finally:
            await within(client.close())


@pytest_twisted.ensureDeferred
async def test_timeoutDropsTheRequest() -> None:
    """
    A call that times out closes its connection: the server sees it go.
    """
    holding = Holding()
    async with webStub(holding) as (url, _):
        client = await connect(url, timeout=0.1)
        try:
            assert isinstance(await failure(client.getData("x")), txthrift.CallTimeout)
            await until(lambda: holding.gone == 1, "the server saw the request go")
        finally:
            await within(client.close())


@pytest_twisted.ensureDeferred
async def test_queuedCallsWaitForAFreeConnection() -> None:
    """
    Past C{max_connections} calls in flight, the others wait for one to
    end; a queued call cancelled or timed out leaves without being sent.
    """
    holding = Holding()
    async with webStub(holding) as (url, factory):
        client = await connect(url, max_connections=2)
        try:
            calls = [client.getData(str(i)) for i in range(5)]
            timedOut = client.getData("t", timeout=0.05)
            await until(lambda: holding.held == 2, "two requests were held")
            calls[4].cancel()
            assert isinstance(await failure(timedOut), txthrift.CallTimeout)
            await deferLater(reactor, 0.05)
            assert holding.held == 2 and len(factory.protocols) == 2
            for _ in range(4):
                request, body = await within(holding.arrived.get())
                holding.answer(request, body, "ok")
            assert await within(gatherResults(calls[:4])) == ["ok"] * 4
            assert isinstance(await failure(calls[4]), CancelledError)
            assert holding.gone == 0
            # The kept-alive connections served every call.
            assert len(factory.protocols) == 2
        finally:
            await within(client.close())


@pytest_twisted.ensureDeferred
async def test_eightConnectionsByDefault() -> None:
    """
    Without C{max_connections}, eight calls are sent at once.
    """
    holding = Holding()
    async with webStub(holding) as (url, factory):
        client = await connect(url)
        try:
            calls = [client.getData(str(i)) for i in range(10)]
            await until(lambda: holding.held == 8, "eight requests were held")
            await deferLater(reactor, 0.05)
            assert holding.held == 8 and len(factory.protocols) == 8
            for _ in calls:
                request, body = await within(holding.arrived.get())
                holding.answer(request, body, "ok")
            assert await within(gatherResults(calls)) == ["ok"] * 10
        finally:
            await within(client.close())


@pytest_twisted.ensureDeferred
async def test_closeEndsConnectionsAndLaterCalls() -> None:
    """
    C{close()} fails calls still waiting, closes the kept-alive
    connections, and later calls fail saying the client is closed.
    """
    holding = Holding()
    async with webStub(holding) as (url, factory):
        client = await connect(url)
        try:
            first = [client.getData("first"), client.getData("second")]
            for _ in first:
                request, body = await within(holding.arrived.get())
                holding.answer(request, body, "one")
            assert await within(gatherResults(first)) == ["one", "one"]
            # One kept-alive connection is idle, the other carries a call.
            waiting = client.getData("waiting")
            await within(holding.arrived.get())
            assert len(factory.protocols) == 2
        finally:
            await within(client.close())
        why = transportError(await failure(waiting), TTransportException.NOT_OPEN)
        assert why == f"the client of {url} was closed"
        await until(lambda: not factory.protocols, "the server saw every connection close")
        why = transportError(await failure(client.getData("later")),
                             TTransportException.NOT_OPEN)
        assert why == f"the client of {url} is closed; connect a new one"
        await within(client.close())  # again: nothing to do


@pytest_twisted.ensureDeferred
async def test_replyOverMaxFrameSizeIsNotRead(apacheHTTP: Callable[..., ApacheHTTP]) -> None:
    """
    A reply declaring more than C{max_frame_size} fails its call with
    C{SIZE_LIMIT} unread; one of no declared length is read only up to
    the limit, its connection closed there.
    """
    server = apacheHTTP("binary")
    client = await connect(server.url(), max_frame_size=50_000)
    try:
        why = transportError(await failure(client.blob(60_000)),
                             TTransportException.SIZE_LIMIT)
        assert why.startswith(f"the reply to blob from {server.url()} is 60")
        assert why.endswith("bytes, over this client's max_frame_size of 50000; it was not read")
        assert len(await within(client.blob(40_000))) == 40_000
    finally:
        await within(client.close())
    streaming = Streaming()
    async with webStub(streaming) as (url, _):
        client = await connect(url, max_frame_size=50_000)
        try:
            why = transportError(await failure(client.getData("x")),
                                 TTransportException.SIZE_LIMIT)
            assert "is more than 50000 bytes, over this client's max_frame_size" in why
            await within(streaming.gone)
            assert streaming.written < Streaming.MOST
        finally:
            await within(client.close())


@pytest_twisted.ensureDeferred
async def test_replyCutShortOrNeverSent() -> None:
    """
    A server that closes the connection mid-reply, or before answering,
    fails the call with C{NOT_OPEN} saying so.
    """
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n\x80\x01\x00\x02"
    async with rawStub(cut) as url:
        client = await connect(url)
        try:
            why = transportError(await failure(client.getData("x")),
                                 TTransportException.NOT_OPEN)
            assert why.startswith(f"the reply to getData from {url} was cut short: ")
        finally:
            await within(client.close())
    async with rawStub(b"") as url:
        client = await connect(url)
        try:
            why = transportError(await failure(client.getData("x")),
                                 TTransportException.NOT_OPEN)
            assert why.startswith(f"the POST to {url} failed: ")
            assert "ConnectionDone" in why
        finally:
            await within(client.close())


@pytest_twisted.ensureDeferred
async def test_undecodableReplyFailsTheCall() -> None:
    """
    A 200 whose body is no reply fails its call with a
    C{TApplicationException}, as a bad reply on a connection does.
    """
    async with webStub(Answering(200, b"<html>not thrift</html>")) as (url, _):
        client = await connect(url)
        try:
            error = await failure(client.getData("x"))
            assert isinstance(error, TApplicationException), error
            assert error.type == TApplicationException.PROTOCOL_ERROR
            assert "reply to getData" in str(error.message)
        finally:
            await within(client.close())


class Misreplying(Resource):
    """
    Answers each C{getData} call with a reply of another seqid, another
    method, or a message of another type, as the call's text asks.
    """

    isLeaf = True
    codec = Codec("binary")

    def render_POST(self, request: Any) -> bytes:
        _, name, _, seqid = self.codec.readHeader(request.content.read())
        result = Echo.getData_result(success="wrong")
        if b"seqid" in request.content.getvalue():
            return self.codec.encode(name, TMessageType.REPLY, seqid + 1, result)
        if b"name" in request.content.getvalue():
            return self.codec.encode("getDatum", TMessageType.REPLY, seqid, result)
        return self.codec.encode(name, TMessageType.CALL, seqid, result)


@pytest.mark.parametrize(("text", "kind", "says"), [
    ("seqid", TApplicationException.BAD_SEQUENCE_ID, "getData got the reply to seqid 2, not 1"),
    ("name", TApplicationException.WRONG_METHOD_NAME, "getData got a reply to 'getDatum'"),
    ("type", TApplicationException.INVALID_MESSAGE_TYPE,
     "getData got a message of type 1 (CALL) in reply, not REPLY or EXCEPTION"),
])
@pytest_twisted.ensureDeferred
async def test_replyToAnotherCallFailsTheCall(text: str, kind: int, says: str) -> None:
    """
    A reply that is not the answer to its call (another seqid, method or
    message type) fails it with a C{TApplicationException} saying so.
    """
    async with webStub(Misreplying()) as (url, _):
        client = await connect(url)
        try:
            error = await failure(client.getData(text))
            assert isinstance(error, TApplicationException), error
            assert (error.type, error.message) == (kind, says)
        finally:
            await within(client.close())


@pytest_twisted.ensureDeferred
async def test_refusedConnection() -> None:
    """
    Nothing listening: the call fails with C{NOT_OPEN} saying why.
    """
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = await connect(f"http://127.0.0.1:{port}/")
    try:
        why = transportError(await failure(client.getData("x")), TTransportException.NOT_OPEN)
        assert why.startswith(f"the POST to http://127.0.0.1:{port}/ failed: ")
        assert "ConnectionRefusedError" in why
    finally:
        await within(client.close())


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


@implementer(IHostnameResolver)
class _NoSuchHost:
    """
    A resolver that finds no address for any name, as for a name that
    does not exist.
    """

    def resolveHostName(self, resolutionReceiver: Any, hostName: str, *args: Any,
                        **kwargs: Any) -> Any:
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        resolutionReceiver.resolutionComplete()
        return resolution


@implementer(IReactorPluggableNameResolver)
class _ReactorWithoutNames:
    """
    The reactor, with a resolver that knows no names.
    """

    nameResolver = _NoSuchHost()

    def installNameResolver(self, resolver: IHostnameResolver) -> IHostnameResolver:
        raise NotImplementedError()

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)


@pytest_twisted.ensureDeferred
async def test_unknownHost() -> None:
    """
    A host name that resolves to nothing fails the call with C{NOT_OPEN}
    saying the lookup failed.
    """
    client = await within(txthrift.connect(_ReactorWithoutNames(), "http://no.such.host/x",
                                           Echo))
    try:
        why = transportError(await failure(client.getData("x")), TTransportException.NOT_OPEN)
        assert why.startswith("the POST to http://no.such.host/x failed: DNSLookupError")
        assert "no.such.host" in why
    finally:
        await within(client.close())


@pytest_twisted.ensureDeferred
async def test_slowReplyBodyTimesOut() -> None:
    """
    A reply whose body does not come whole within C{partial_timeout}
    fails its call with C{TIMED_OUT}, its connection closed.
    """
    holding = Holding()

    class Stalling(Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> int:
            request.setHeader(b"content-length", b"100")
            request.write(b"\x80\x01")
            return holding.render_POST(request)

    async with webStub(Stalling()) as (url, _):
        client = await connect(url, partial_timeout=0.1)
        try:
            why = transportError(await failure(client.getData("x")),
                                 TTransportException.TIMED_OUT)
            assert "did not come whole within partial_timeout (0.1 seconds)" in why
            await until(lambda: holding.gone == 1, "the server saw the request go")
        finally:
            await within(client.close())


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "kwargs", "error", "says"), [
    ("http://127.0.0.1:1/", {"transport": "buffered"}, ValueError, "transport='buffered'"),
    ("http://127.0.0.1:1/", {"protocol": "auto"}, ValueError, "'auto' is for servers"),
    ("http://127.0.0.1:1/", {"protocol": "xml"}, ValueError, "unknown protocol 'xml'"),
    ("http://127.0.0.1:1/", {"max_connections": 0}, ValueError, "max_connections"),
    ("http://127.0.0.1:1/", {"headers": {"Content-Length": "1"}}, ValueError,
     "Content-Length header is written by Twisted"),
    ("http://127.0.0.1:1/", {"headers": {"X": 1}}, TypeError, "headers must map"),
    ("http://127.0.0.1:1/", {"trustRoot": "ca.pem"}, ValueError, "https:// URLs only"),
    ("http://127.0.0.1:1/", {"max_frame_sise": 1}, TypeError, "unknown limit max_frame_sise"),
    ("http:///path", {}, ValueError, "names no host"),
])
def test_badOptionsRaise(url: str, kwargs: dict[str, Any], error: type[Exception],
                         says: str) -> None:
    """
    A bad URL or option raises at once, saying what is wrong.
    """
    with pytest.raises(error, match=re.escape(says)):
        txthrift.connect(reactor, url, Echo, **kwargs)


def test_badTrustRoot(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificate here\n")
    with pytest.raises(ValueError, match="holds no PEM certificate"):
        txthrift.connect(reactor, "https://127.0.0.1:1/", Echo, trustRoot=str(empty))
    with pytest.raises(TypeError, match="trustRoot must be"):
        txthrift.connect(reactor, "https://127.0.0.1:1/", Echo, trustRoot=42)
    with pytest.raises(ValueError, match="not both"):
        txthrift.connect(reactor, "https://127.0.0.1:1/", Echo, trustRoot=str(empty),
                         contextFactory=object())


# ---------------------------------------------------------------------------
# https
# ---------------------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def makeCA(folder: Path, name: str) -> tuple[Any, x509.Certificate]:
    """
    A self-signed CA, its certificate written to C{folder/name.pem}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - not in 3.10
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def makeServerCert(folder: Path, ca: tuple[Any, x509.Certificate]) -> tuple[str, str]:
    """
    A certificate for 127.0.0.1 signed by C{ca}: its and its key's paths.
    """
    caKey, caCert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - not in 3.10
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1"))
            .issuer_name(caCert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(caKey, hashes.SHA256()))
    certPath, keyPath = folder / "server.pem", folder / "server.key"
    certPath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyPath.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certPath), str(keyPath)


@pytest.fixture
def tlsFiles(tmp_path: Path) -> dict[str, str]:
    """
    A test CA, a server certificate it signed, and another CA.
    """
    ca = makeCA(tmp_path, "testca")
    makeCA(tmp_path, "otherca")
    cert, key = makeServerCert(tmp_path, ca)
    return {"ca": str(tmp_path / "testca.pem"), "other": str(tmp_path / "otherca.pem"),
            "cert": cert, "key": key}


@pytest_twisted.ensureDeferred
async def test_httpsVerifiesTheServer(apacheHTTP: Callable[..., ApacheHTTP],
                                      tlsFiles: dict[str, str]) -> None:
    """
    C{https://} calls succeed where the server's certificate chains to
    C{trustRoot} (a PEM path or a certificate) or C{contextFactory}'s
    roots, and fail with C{NOT_OPEN} naming the verification failure for
    another CA, or the system's CAs by default.
    """
    from twisted.internet.ssl import Certificate
    from twisted.web.client import BrowserLikePolicyForHTTPS

    server = apacheHTTP("binary", cert_file=tlsFiles["cert"], key_file=tlsFiles["key"])
    url = server.url(scheme="https")
    caCert = Certificate.loadPEM(Path(tlsFiles["ca"]).read_bytes())
    for options in ({"trustRoot": tlsFiles["ca"]}, {"trustRoot": caCert},
                    {"contextFactory": BrowserLikePolicyForHTTPS(caCert)}):
        client = await connect(url, **options)
        try:
            assert await within(client.getData("tls")) == "tls from server 1024"
        finally:
            await within(client.close())
    for options in ({"trustRoot": tlsFiles["other"]}, {}):
        client = await connect(url, **options)
        try:
            why = transportError(await failure(client.getData("x")),
                                 TTransportException.NOT_OPEN)
            assert why.startswith(f"the POST to {url} failed: ")
            assert "certificate verify failed" in why
        finally:
            await within(client.close())


# ---------------------------------------------------------------------------
# txthrift's own HTTP server
# ---------------------------------------------------------------------------


class TxHandler(SyncHandler):
    """
    The Apache test handler, its oneway calls told through a Deferred queue.
    """

    def __init__(self) -> None:
        super().__init__()
        self.firedQueue: DeferredQueue[str] = DeferredQueue()

    def fire(self, message: str) -> None:
        self.firedQueue.put(message)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest_twisted.ensureDeferred
async def test_everyKindOfCallAgainstTxthrift(protocol: str) -> None:
    """
    The same calls against txthrift's own HTTP server (C{serve} with
    C{transport="http"}), at a path, concurrently too.
    """
    handler = TxHandler()
    port = await within(txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", handler,
                                       transport="http", path="/thrift"))
    try:
        client = await connect(f"http://127.0.0.1:{port.getHost().port}/thrift",
                               protocol=protocol, max_connections=4)
        try:
            await everyKindOfCall(client, handler.firedQueue.get)
            many = [client.add(i, 1) for i in range(50)]
            assert await within(gatherResults(many, consumeErrors=True)) == list(
                range(1, 51))
        finally:
            await within(client.close())
    finally:
        await within(port.stopListening())


@pytest_twisted.ensureDeferred
async def test_httpsAgainstTxthrift(tlsFiles: dict[str, str]) -> None:
    """
    C{https://} to txthrift's own HTTP server on an C{ssl:} endpoint,
    trusted through C{trustRoot}.
    """
    handler = TxHandler()
    endpoint = (f"ssl:0:interface=127.0.0.1:privateKey={tlsFiles['key']}"
                f":certKey={tlsFiles['cert']}")
    port = await within(txthrift.serve(reactor, endpoint, handler, transport="http"))
    try:
        client = await connect(f"https://127.0.0.1:{port.getHost().port}/",
                               protocol="compact", trustRoot=tlsFiles["ca"])
        try:
            await everyKindOfCall(client, handler.firedQueue.get)
        finally:
            await within(client.close())
    finally:
        await within(port.stopListening())
