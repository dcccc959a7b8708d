"""
Tests for Thrift over HTTP on the server side: L{txthrift.web} (served by
C{txthrift.serve(..., transport="http")}, in a C{Site} of one's own, and in
klein) and L{txthrift.TTwisted.ThriftResource}, called by Apache's blocking
C{THttpClient} over real sockets on 127.0.0.1, and by raw HTTP for what no
Thrift client sends.  Blocking clients run in threads while the reactor
serves; every wait is bounded.
"""

from __future__ import annotations

import http.client
import socket
import sys
import time
import types
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_twisted
from thrift.protocol.TBinaryProtocol import (
    TBinaryProtocol,
    TBinaryProtocolAcceleratedFactory,
    TBinaryProtocolFactory,
)
from thrift.protocol.TCompactProtocol import (
    TCompactProtocolAcceleratedFactory,
    TCompactProtocolFactory,
)
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.protocol.TMultiplexedProtocol import TMultiplexedProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.THttpClient import THttpClient
from thrift.transport.TTransport import TMemoryBuffer
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionDone
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

import txthrift
from tests import _readme
from tests._apache import SECRET
from tests._handlers import Hardened
from tests.gen.py.txthrift_test import Calc, Echo
from tests.gen.py.txthrift_test.ttypes import Denied, Oops
from tests.gen.pytwisted.txthrift_test import Echo as TwistedEcho
from tests.test_interop import (
    BARE,
    ITEM,
    Handler,
    TxCalc,
    assertApplicationError,
    checkBare,
    checkItem,
    inThread,
    within,
)
from tests.test_replies import sendThenHalfClose
from txthrift import TTwisted
from txthrift.web import CONTENT_TYPES, ThriftResource, ThriftSite, mounted

#: Seconds a blocking client waits for any one answer.
WAIT = 10.0

PROTOCOLS = {
    "binary": TBinaryProtocolFactory,
    "binary-accelerated": TBinaryProtocolAcceleratedFactory,
    "compact": TCompactProtocolFactory,
    "compact-accelerated": TCompactProtocolAcceleratedFactory,
    "json": TJSONProtocolFactory,
}
#: The wire protocol of each of L{PROTOCOLS}.
WIRE = {"binary": "binary", "binary-accelerated": "binary", "compact": "compact",
        "compact-accelerated": "compact", "json": "json"}


@pytest.fixture(autouse=True)
def noProxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Apache's C{THttpClient} goes through a proxy named in the environment:
    not to 127.0.0.1.
    """
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "*")


@asynccontextmanager
async def httpServer(handler: object, path: str = "/", **kwargs: Any) -> AsyncIterator[str]:
    """
    Serve C{handler} over HTTP on 127.0.0.1 and a free port, yielding the
    URL; afterwards stop listening and close every connection left.
    """
    port = await within(txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", handler,
                                       transport="http", path=path, **kwargs))
    site: ThriftSite = port.factory
    assert isinstance(site, ThriftSite)
    try:
        yield f"http://127.0.0.1:{port.getHost().port}{path}"
    finally:
        await within(port.stopListening())
        site.abortConnections()
        await within(site.whenDisconnected())


def httpClient(url: str, factory: Any, service: Any = Echo,
               name: str | None = None) -> tuple[Any, THttpClient]:
    transport = THttpClient(url)
    transport.setTimeout(WAIT * 1000)
    protocol = factory.getProtocol(transport)
    if name is not None:
        protocol = TMultiplexedProtocol(protocol, name)
    return service.Client(protocol), transport


def caught(f: Callable[..., Any], *args: Any) -> BaseException:
    try:
        value = f(*args)
    except Exception as error:
        return error
    raise AssertionError(f"{f.__name__}{args} returned {value!r} instead of raising")


def apacheHttpSession(url: str, factory: Any, tag: str) -> dict[str, Any]:
    """
    Apache's C{THttpClient} calling every kind of method of an C{Echo}
    server, one POST each; what each call gave, by name.
    """
    echo, transport = httpClient(url, factory)
    calc, _ = httpClient(url, factory, Calc)
    transport.open()
    try:
        out = {
            "sayHello": echo.sayHello(),
            "getData": echo.getData("client access"),
            "ping": echo.ping(41),
            "echo": echo.echo("ab", 3),
            "add": echo.add(2**30, 2**30 - 1),
            "item": echo.item(ITEM),
            "bare": echo.item(BARE),
            "slow": echo.slow(0.001, "double"),
            "blob": echo.blob(100_000),
            "oops": caught(echo.fail, "oops"),
            "denied": caught(echo.fail, "denied"),
            "undeclared": caught(echo.fail, "boom"),
            "app": caught(echo.fail, "app"),
            "fire": echo.fire(tag),
            "fireBoom": echo.fire("boom"),
            "unknown": caught(calc.multiply, 6, 7),
            "after": echo.getData(tag),
            "status": transport.code,
            "type": transport.headers["Content-Type"],
        }
        return out
    finally:
        transport.close()


def checkHttpSession(out: dict[str, Any], tag: str, protocol: str) -> None:
    assert out["sayHello"] is None
    assert out["getData"] == "client access from server 1024"
    assert out["ping"] == 42
    assert out["echo"] == "ababab"
    assert out["add"] == 2**31 - 1
    checkItem(out["item"])
    checkBare(out["bare"])
    assert out["slow"] == "double"
    assert out["blob"] == (bytes(range(256)) * 391)[:100_000]
    oops = out["oops"]
    assert isinstance(oops, Oops) and (oops.why, oops.code) == ("asked to", 7)
    denied = out["denied"]
    assert isinstance(denied, Denied) and denied.who == "you"
    internal = assertApplicationError(out["undeclared"], TApplicationException.INTERNAL_ERROR)
    assert SECRET not in str(internal.message)
    app = assertApplicationError(out["app"], TApplicationException.INVALID_TRANSFORM)
    assert app.message == "told you"
    assert out["fire"] is None and out["fireBoom"] is None
    assertApplicationError(out["unknown"], TApplicationException.UNKNOWN_METHOD)
    assert out["after"] == tag + " from server 1024"
    assert out["status"] == 200
    assert out["type"] == CONTENT_TYPES[protocol].decode()


# ---------------------------------------------------------------------------
# 1. Apache's THttpClient against txthrift.serve(transport="http")
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocolName", list(PROTOCOLS))
@pytest_twisted.ensureDeferred
async def test_apacheHttpClientEveryKindOfCall(protocolName: str) -> None:
    """
    Every kind of call of Apache's C{THttpClient}, in each protocol
    (accelerated or not), is answered by a server left to detect the
    protocol of each request, with that protocol's content type.
    """
    handler = Handler()
    async with httpServer(handler, path="/thrift") as url:
        out = await inThread(apacheHttpSession, url, PROTOCOLS[protocolName](), protocolName)
    checkHttpSession(out, protocolName, WIRE[protocolName])
    assert await within(handler.fired.get()) == protocolName
    assert handler.fired.pending == []


@pytest.mark.parametrize("protocolName", ["binary", "compact", "json"])
@pytest_twisted.ensureDeferred
async def test_apacheHttpClientMultiplexed(protocolName: str) -> None:
    """
    A mapping of service names is served multiplexed, as on TCP: Apache's
    C{TMultiplexedProtocol} over C{THttpClient} reaches each service, and
    a name no service has gets an error naming it.
    """

    def session(url: str) -> tuple[Any, ...]:
        factory = PROTOCOLS[protocolName]()
        echo, _ = httpClient(url, factory, Echo, "Echo")
        calc, _ = httpClient(url, factory, Calc, "Calc")
        stranger, _ = httpClient(url, factory, Calc, "Nobody")
        return (echo.echo("xy", 2), calc.multiply(6, 7), caught(stranger.multiply, 1, 2),
                caught(httpClient(url, factory, Calc)[0].multiply, 1, 2))

    async with httpServer({"Echo": Handler(), "Calc": TxCalc()}) as url:
        echoed, product, unknown, unnamed = await inThread(session, url)
    assert (echoed, product) == ("xyxy", 42)
    assert "Nobody" in assertApplicationError(unknown, TApplicationException.UNKNOWN_METHOD).message
    assertApplicationError(unnamed, TApplicationException.UNKNOWN_METHOD)


@pytest_twisted.ensureDeferred
async def test_fixedProtocol() -> None:
    """
    With C{protocol=} fixed, that protocol is answered; a request in
    another one cannot be read: a 400, not a Thrift reply.
    """
    async with httpServer(Handler(), protocol="compact") as url:
        got = await inThread(lambda: httpClient(url, TCompactProtocolFactory())[0].ping(1))
        status, _, _ = await inThread(post, url, request("ping", 1))
    assert got == 2
    assert status == 400


# ---------------------------------------------------------------------------
# 2. What is not a Thrift call: raw HTTP
# ---------------------------------------------------------------------------


def request(method: str, *args: Any, factory: Any = None, seqid: int = 0) -> bytes:
    """
    An C{Echo} request as Apache's client encodes it (binary by default).
    """
    buffer = TMemoryBuffer()
    client = Echo.Client((factory or TBinaryProtocolFactory()).getProtocol(buffer))
    client._seqid = seqid
    getattr(client, "send_" + method)(*args)
    return buffer.getvalue()


def reply(method: str, body: bytes, factory: Any = None) -> Any:
    """
    What an C{Echo} client makes of the reply C{body} to C{method}.
    """
    client = Echo.Client((factory or TBinaryProtocolFactory()).getProtocol(TMemoryBuffer(body)))
    return getattr(client, "recv_" + method)()


def post(url: str, body: bytes, method: str = "POST",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """
    One request with C{http.client}: status, headers, body.
    """
    parsed = url.split("/", 3)
    host, port = parsed[2].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    try:
        connection.request(method, "/" + parsed[3], body=body if method == "POST" else None,
                           headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def exchange(url: str, data: bytes, pause: float = 0.0, more: bytes = b"") -> bytes:
    """
    Send C{data} on a connection of its own (then, after C{pause} seconds,
    C{more}, if the server still reads), and read until the server closes
    it or L{WAIT} passes.
    """
    host, port = url.split("/")[2].split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        sock.sendall(data)
        if pause:
            time.sleep(pause)
            try:
                sock.sendall(more)
            except OSError:
                pass
        received = b""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            received += piece
        return received


def head(url: str, length: str | None = None, extra: str = "") -> bytes:
    path = "/" + url.split("/", 3)[3]
    framing = f"Content-Length: {length}\r\n" if length is not None else (
        "Transfer-Encoding: chunked\r\n")
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\n{framing}{extra}\r\n").encode()


@pytest_twisted.ensureDeferred
async def test_methodsOtherThanPostGet405() -> None:
    async with httpServer(Handler(), path="/thrift") as url:
        for method in ("GET", "PUT", "DELETE"):
            status, headers, body = await inThread(post, url, b"", method)
            assert (status, headers["Allow"]) == (405, "POST"), (method, body)
            assert b"POST" in body


@pytest_twisted.ensureDeferred
async def test_otherPathsAre404AndPathsBelowAnswer() -> None:
    async with httpServer(Handler(), path="/api/thrift") as url:
        base = url.rsplit("/", 2)[0]
        status, _, _ = await inThread(post, base + "/other", request("ping", 1))
        assert status == 404
        status, _, body = await inThread(post, url + "/v1", request("ping", 1))
        assert (status, reply("ping", body)) == (200, 2)


@pytest_twisted.ensureDeferred
async def test_bodyOverTheLimitIsRefusedBeforeItIsSent() -> None:
    """
    A declared length over C{max_frame_size} is answered 413 from the
    headers alone (the body never sent), the connection then closed; one
    asking C{Expect: 100-continue} is not told to go on.
    """
    async with httpServer(Handler(), max_frame_size=1024) as url:
        answer = await inThread(exchange, url, head(url, str(10**9)))
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert b"Connection: close" in answer and b"1024 bytes (max_frame_size)" in answer
        answer = await inThread(exchange, url,
                                head(url, str(2000), "Expect: 100-continue\r\n"))
        assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer, answer
        # At the limit, it is read.
        body = request("echo", "x" * 900, 1)
        assert len(body) <= 1024
        status, _, answered = await inThread(post, url, body)
        assert (status, reply("echo", answered)) == (200, "x" * 900)


@pytest_twisted.ensureDeferred
async def test_chunkedBodyOverTheLimitIsRefusedAsItComes() -> None:
    """
    A chunked body is counted as it comes: 413 once it passes the limit,
    while the client is still sending, and the client reads it.
    """
    async with httpServer(Handler(), max_frame_size=1024) as url:
        chunk = b"%x\r\n%s\r\n" % (2000, b"\x80" * 2000)
        answer = await inThread(exchange, url, head(url) + chunk, 0.2, chunk * 50)
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        # A chunked body within the limit is served.
        body = request("ping", 7)
        answer = await inThread(exchange, url, head(url, extra="Connection: close\r\n")
                                + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert reply("ping", answer.split(b"\r\n\r\n", 1)[1]) == 8


@pytest_twisted.ensureDeferred
async def test_slowBodyIsTimedOut() -> None:
    """
    A request that does not arrive whole within C{partial_timeout} gets a
    408 and its connection closed, as a slow TCP client's is.
    """
    async with httpServer(Handler(), partial_timeout=0.3) as url:
        started = time.monotonic()
        answer = await inThread(exchange, url, head(url, "100") + b"\x80\x01")
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"partial_timeout" in answer
        assert 0.25 < time.monotonic() - started < 5
        # A request line that never comes whole is timed out too.
        started = time.monotonic()
        answer = await inThread(exchange, url, b"POST /thr")
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert 0.25 < time.monotonic() - started < 5


@pytest_twisted.ensureDeferred
async def test_bodiesArrivingShareThePartialBudget() -> None:
    """
    Bodies still arriving count against C{partial_budget} together, as
    partial TCP messages do: past it, a connection reading more of its body
    waits (its bytes stay in the kernel) while the first to go past it
    finishes; then it goes on, and both are answered.  A connection that
    goes while waiting gives its share back.
    """
    port = await within(txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", Handler(),
                                       transport="http", partial_budget=1000))
    site: Any = port.factory
    budget = site.partialBudget
    url = f"http://127.0.0.1:{port.getHost().port}/"
    body = request("echo", "x" * 900, 1)
    assert len(body) > 900

    async def settled(check: Callable[[], bool]) -> None:
        for _ in range(int(WAIT / 0.01)):
            if check():
                return
            await deferLater(reactor, 0.01, lambda: None)
        raise AssertionError(f"never settled: held {budget.held}, waiting {budget.waiting}")

    def opened() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port.getHost().port), timeout=WAIT)

    def answer(sock: socket.socket) -> bytes:
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < 900:
            more = sock.recv(65536)
            if not more:
                break
            received += more
        return received

    first, second, third = await inThread(lambda: (opened(), opened(), opened()))
    try:
        await inThread(first.sendall, head(url, str(len(body))) + body[:700])
        await settled(lambda: budget.held == 700)
        # Past the budget: the second goes through ...
        await inThread(second.sendall, head(url, str(len(body))) + body[:700])
        await settled(lambda: budget.held == 1400)
        # ... and the first, reading more, waits; its last bytes stay unread.
        await inThread(first.sendall, body[700:800])
        await settled(lambda: budget.waiting == 1 and budget.held == 1500)
        await inThread(first.sendall, body[800:])
        await deferLater(reactor, 0.2, lambda: None)
        assert (budget.waiting, budget.held) == (1, 1500)
        # A third waits too, and goes; it is not read, so not known gone yet.
        await inThread(third.sendall, head(url, str(len(body))) + body[:300])
        await settled(lambda: budget.waiting == 2 and budget.held == 1800)
        await inThread(third.close)
        # The second finishes: room again, the first goes on, then the third
        # is read: gone, it gives its share back.
        await inThread(second.sendall, body[700:])
        for sock in (second, first):
            answered = await inThread(answer, sock)
            assert answered.startswith(b"HTTP/1.1 200 "), answered[:200]
            assert reply("echo", answered.split(b"\r\n\r\n", 1)[1]) == "x" * 900
        await settled(lambda: (budget.waiting, budget.held) == (0, 0))
    finally:
        for sock in (first, second, third):
            sock.close()
        await within(port.stopListening())
        site.abortConnections()


@pytest_twisted.ensureDeferred
async def test_aSlowRequestBehindAnotherInTheSameReadIsTimedOut() -> None:
    """
    A request that begins in the same read as the end of the one before it
    (pipelined behind a GET, or behind a POST with an empty body) is timed
    from its own request line: it cannot hold its connection for ever.
    """
    async with httpServer(Handler(), partial_timeout=0.3) as url:
        path = "/" + url.split("/", 3)[3]
        for first in (f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
                      head(url, "0")):
            started = time.monotonic()
            answer = await inThread(exchange, url, first + head(url, "100") + b"\x80\x01")
            elapsed = time.monotonic() - started
            assert answer.startswith(b"HTTP/1.1 4"), answer
            assert 0.25 < elapsed < 5, (first, elapsed, answer)


def keptAlive(url: str, body: bytes, pause: float) -> list[bytes]:
    """
    Two requests on one connection, C{pause} seconds apart: their answers.
    """
    host, port = url.split("/")[2].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    answers = []
    try:
        for _ in range(2):
            connection.request("POST", "/", body=body)
            answers.append(connection.getresponse().read())
            time.sleep(pause)
    finally:
        connection.close()
    return answers


@pytest_twisted.ensureDeferred
async def test_anIdleConnectionIsNotSlow() -> None:
    """
    C{partial_timeout} times requests, not the wait between them on a
    kept-alive connection.
    """
    async with httpServer(Handler(), partial_timeout=0.2) as url:
        answers = await inThread(keptAlive, url, request("ping", 4), 0.5)
    assert [reply("ping", answer) for answer in answers] == [5, 5]


@pytest_twisted.ensureDeferred
async def test_idleConnectionsAreClosed() -> None:
    """
    C{idle_timeout} closes a kept-alive connection with no request, after
    answering the one it had.
    """
    async with httpServer(Handler(), idle_timeout=0.3) as url:
        body = request("ping", 1)
        started = time.monotonic()
        answer = await inThread(exchange, url, head(url, str(len(body))) + body)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 200 ") and reply("ping", answer.split(b"\r\n\r\n")[1])
    assert 0.25 < elapsed < 5


@pytest.mark.parametrize(("body", "why"), [
    (b"", b"empty"),
    (b"GET / HTTP/1.0", b"not a Thrift message"),
    (b"\x80\x01\x00\x01\x00\x00", b"unreadable Thrift message header"),
    (b"[1", b"unreadable Thrift message header"),
])
@pytest_twisted.ensureDeferred
async def test_bodiesThatAreNoThriftCallGet400(body: bytes, why: bytes) -> None:
    async with httpServer(Handler()) as url:
        status, headers, answer = await inThread(post, url, body)
    assert status == 400, answer
    assert why in answer and headers["Content-Type"].startswith("text/plain")


@pytest_twisted.ensureDeferred
async def test_aReplyIsNoCall() -> None:
    buffer = TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    protocol.writeMessageBegin("ping", TMessageType.REPLY, 3)
    protocol.writeStructBegin("x")
    protocol.writeFieldStop()
    protocol.writeStructEnd()
    protocol.writeMessageEnd()
    async with httpServer(Handler()) as url:
        status, _, answer = await inThread(post, url, buffer.getvalue())
    assert status == 400 and b"not a call" in answer


@pytest.mark.parametrize("protocolName", ["binary", "compact", "json"])
@pytest_twisted.ensureDeferred
async def test_undecodableArgumentsGetAnExceptionReply(protocolName: str) -> None:
    """
    A call whose header (and so seqid) can be read gets a Thrift reply
    however broken its arguments: a C{TApplicationException}, to that seqid.
    """
    factory = PROTOCOLS[protocolName]()
    whole = request("getData", "cut short", factory=factory, seqid=77)
    async with httpServer(Handler()) as url:
        status, headers, answer = await inThread(post, url, whole[:-6])
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPES[protocolName].decode()
    protocol = factory.getProtocol(TMemoryBuffer(answer))
    name, mtype, seqid = protocol.readMessageBegin()
    assert (name, mtype, seqid) == ("getData", TMessageType.EXCEPTION, 77)
    error = TApplicationException()
    error.read(protocol)
    assert error.type == TApplicationException.PROTOCOL_ERROR


@pytest_twisted.ensureDeferred
async def test_onewayIsAnsweredAtOnceWithAnEmptyBody() -> None:
    handler = Handler()
    async with httpServer(handler) as url:
        status, headers, answer = await inThread(post, url, request("fire", "now"))
        assert await within(handler.fired.get()) == "now"
    assert (status, answer) == (200, b"")
    assert headers["Content-Type"] == "application/x-thrift"


@pytest_twisted.ensureDeferred
async def test_callTimeoutAnswersOverHttp() -> None:
    handler = Hardened()
    async with httpServer(handler, call_timeout=0.2) as url:
        error = await inThread(lambda: caught(httpClient(url, TBinaryProtocolFactory())[0].slow,
                                              -1.0, "never"))
    answer = assertApplicationError(error, TApplicationException.INTERNAL_ERROR)
    assert "did not finish within 0.2 seconds" in answer.message
    assert handler.late[0].called  # cancelled


def exchangeAndGo(url: str, data: bytes) -> None:
    host, port = url.split("/")[2].split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        sock.sendall(data)
        time.sleep(0.2)


@pytest.mark.parametrize("chunk", [False, True], ids=["plain", "chunked"])
@pytest_twisted.ensureDeferred
async def test_aClientThatGoesCancelsItsCall(chunk: bool) -> None:
    """
    A client that closes its connection looks, to begin with, like one
    that only stopped sending: its call is cancelled once no answer has
    come for C{half_closed_timeout}, whoever reads its request.
    """
    handler = Hardened()
    async with httpServer(handler, half_closed_timeout=0.3) as url:
        body = request("slow", 30.0, "gone")
        data = (head(url) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunk
                else head(url, str(len(body))) + body)
        await inThread(exchangeAndGo, url, data)
        deadline = time.monotonic() + WAIT
        while handler.finished != ["gone cancelled"]:
            assert time.monotonic() < deadline, handler.finished
            await deferLater(reactor, 0.02)


@pytest.mark.parametrize("chunk", [False, True], ids=["plain", "chunked"])
@pytest_twisted.ensureDeferred
async def test_aClientThatHalfClosesGetsItsAnswers(chunk: bool) -> None:
    """
    A client that shuts down its sending side after its requests (as some
    HTTP/1.0-era clients do) still gets every answer; then the server
    closes.
    """
    async with httpServer(Hardened()) as url:
        quick, slow = request("ping", 1, seqid=1), request("slow", 0.2, "late", seqid=2)
        last = (head(url) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(slow), slow) if chunk
                else head(url, str(len(slow))) + slow)
        port = int(url.split("/")[2].split(":")[1])
        answer = await inThread(sendThenHalfClose, port,
                                head(url, str(len(quick))) + quick + last)
    first, second = answer.split(b"HTTP/1.1 200 OK")[1:]
    assert reply("ping", first.split(b"\r\n\r\n", 1)[1]) == 2
    assert reply("slow", second.split(b"\r\n\r\n", 1)[1]) == "late"


# ---------------------------------------------------------------------------
# 3. Mounted in a Site of one's own, and in klein
# ---------------------------------------------------------------------------


@asynccontextmanager
async def listening(site: Site) -> AsyncIterator[int]:
    port = await within(serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site))
    try:
        yield port.getHost().port
    finally:
        await within(port.stopListening())


@pytest_twisted.ensureDeferred
async def test_mountedWithPutChildInAPlainSite() -> None:
    """
    In a C{Site} of one's own, next to other resources: the calls are
    answered, and a body over the limit gets 413 (read first: a plain
    C{Site} reads bodies whole before any resource sees them).
    """
    root = Resource()
    api = Resource()
    root.putChild(b"api", api)
    api.putChild(b"thrift", ThriftResource(Handler(), max_frame_size=1024))
    async with listening(Site(root)) as port:
        url = f"http://127.0.0.1:{port}/api/thrift"
        factory = TJSONProtocolFactory()
        got = await inThread(lambda: httpClient(url, factory)[0].echo("ab", 2))
        status, _, _ = await inThread(post, url, b"\x80" * 5000)
    assert got == "abab"
    assert status == 413


@pytest_twisted.ensureDeferred
async def test_aThriftSiteOfOnesOwnRefusesBeforeReading() -> None:
    """
    A tree of one's own served as a L{ThriftSite} with limits refuses a body
    over them from its headers, as C{serve} does.
    """
    root = Resource()
    root.putChild(b"thrift", ThriftResource(Handler()))
    site = ThriftSite(root, limits=txthrift.Limits(max_frame_size=1024))
    async with listening(site) as port:
        url = f"http://127.0.0.1:{port}/thrift"
        answer = await inThread(exchange, url, head(url, str(10**9)))
        got = await inThread(lambda: httpClient(url, TBinaryProtocolFactory())[0].ping(1))
        site.closeConnections()
        await within(site.whenDisconnected())
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert got == 2


def readmeKleinExample() -> str:
    """
    The klein example of the README's "Thrift over HTTP".
    """
    found = [block.text for block in _readme.blocks(_readme.section("## Thrift over HTTP"))
             if block.language == "python" and "Klein()" in block.text]
    assert len(found) == 1, found
    return found[0]


@pytest_twisted.ensureDeferred
async def test_mountedInKleinAsTheReadmeSays(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The README's klein example, as written (with an C{Echo} handler for its
    calculator), beside a route of klein's own: calls are answered, a GET
    gets 405.
    """
    pytest.importorskip("klein", reason="klein is in the test extra: pip install -e .[test]")
    monkeypatch.setitem(sys.modules, "calc_handler",
                        types.SimpleNamespace(CalculatorHandler=Handler))
    example: dict[str, Any] = {}
    exec(compile(readmeKleinExample(), "README.md", "exec"), example)  # noqa: S102
    app = example["app"]

    @app.route("/hello")
    def hello(request: Any) -> str:
        return "hello"

    async with listening(Site(app.resource())) as port:
        url = f"http://127.0.0.1:{port}/thrift"
        got = await inThread(lambda: httpClient(url, TCompactProtocolFactory())[0].add(2, 3))
        status, headers, _ = await inThread(post, url, b"", "GET")
        plain = await inThread(post, f"http://127.0.0.1:{port}/hello", b"", "GET")
    assert got == 5
    assert (status, headers["Allow"]) == (405, "POST")
    assert plain[2] == b"hello"


def test_mountedPaths() -> None:
    resource = ThriftResource(Handler())
    assert mounted(resource, "/") is resource
    root = mounted(resource, "/a/b/")
    assert root.getStaticEntity(b"a").getStaticEntity(b"b") is resource  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="starts with /"):
        mounted(resource, "thrift")
    with pytest.raises(ValueError, match="is for transport='http'"):
        txthrift.serve(reactor, "tcp:0", Handler(), path="/x")
    served = ", ".join((*txthrift.TRANSPORTS, "http", "websocket"))
    with pytest.raises(ValueError, match=f"choose one of {served}$"):
        txthrift.serve(reactor, "tcp:0", Handler(), transport="pigeon")


# ---------------------------------------------------------------------------
# 4. In memory: draining, on a fake clock
# ---------------------------------------------------------------------------


def test_stopWaitsForHttpCallsInFlight() -> None:
    """
    A service serving HTTP stops listening, answers the call in flight,
    then closes its connections.
    """
    clock = MemoryReactorClock()
    service = txthrift.thriftService(Hardened(clock), http_port="tcp:0:interface=127.0.0.1",
                                     http_path="/thrift", reactor=clock, shutdown_timeout=5)
    service.startService()
    ((_, site, _, _),) = clock.tcpServers
    assert isinstance(site, ThriftSite)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    body = request("slow", 2.0, "late")
    channel.dataReceived(b"POST /thrift HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
    stopped = service.stopService()
    assert not stopped.called and service.ports == []
    clock.advance(1.9)
    assert not stopped.called and not transport.disconnecting
    clock.advance(0.1)
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 200 ") and reply("slow", answer.split(b"\r\n\r\n")[1])
    assert transport.disconnecting  # closed once answered
    channel.connectionLost(Failure(ConnectionDone()))
    clock.advance(0.1)
    assert stopped.called


# ---------------------------------------------------------------------------
# 5. txthrift.TTwisted.ThriftResource: Apache's, with py:twisted code
# ---------------------------------------------------------------------------


@implementer(TwistedEcho.Iface)
class TwistedHandler:  # type: ignore[misc]  # implements only what the tests call
    """
    A py:twisted C{Echo} handler: Deferreds where it likes.
    """

    def getData(self, input: str) -> Deferred[str]:
        return deferLater(reactor, 0, lambda: input + " over http")

    def ping(self, x: int) -> int:
        return x + 1

    def fire(self, message: str) -> None:
        self.fired = message


class BrokenProcessor:
    def process(self, iprot: Any, oprot: Any) -> Deferred[None]:
        raise RuntimeError("the processor itself failed")


@pytest_twisted.ensureDeferred
async def test_ttwistedThriftResourceWithPyTwistedCode() -> None:
    """
    Apache's resource, as Apache's users mount it, answers Apache's
    C{THttpClient} through C{py:twisted} generated code, at any path below.
    """
    handler = TwistedHandler()
    root = Resource()
    root.putChild(b"rpc", TTwisted.ThriftResource(TwistedEcho.Processor(handler),
                                                  TBinaryProtocolFactory()))
    async with listening(Site(root)) as port:
        url = f"http://127.0.0.1:{port}/rpc/anything"

        def session() -> tuple[Any, ...]:
            echo, transport = httpClient(url, TBinaryProtocolFactory())
            return (echo.getData("hi"), echo.ping(1), echo.fire("x"), transport.code,
                    transport.headers["Content-Type"])

        assert await inThread(session) == ("hi over http", 2, None, 200, "application/x-thrift")
        status, headers, _ = await inThread(post, url, b"", "GET")
        assert (status, headers["Allow"]) == (405, "POST")
    assert handler.fired == "x"


@pytest_twisted.ensureDeferred
async def test_ttwistedThriftResourceAnswers500WhenTheProcessorFails() -> None:
    root = Resource()
    root.putChild(b"rpc", TTwisted.ThriftResource(BrokenProcessor(), TBinaryProtocolFactory()))
    async with listening(Site(root)) as port:
        status, _, body = await inThread(post, f"http://127.0.0.1:{port}/rpc",
                                         request("ping", 1))
    assert status == 500 and b"Internal error" in body


def test_ttwistedThriftResourceHasApachesNames() -> None:
    from thrift.transport import TTwisted as Apache

    processor = TwistedEcho.Processor(TwistedHandler())
    ours = TTwisted.ThriftResource(processor, TBinaryProtocolFactory())
    theirs = Apache.ThriftResource(processor, TBinaryProtocolFactory())
    public = {name for name in dir(theirs) if not name.startswith("__")}
    assert public <= set(dir(ours))
    assert ours.outputProtocolFactory is ours.inputProtocolFactory
    assert ours.processor is processor
    other = TCompactProtocolFactory()
    assert TTwisted.ThriftResource(processor, TBinaryProtocolFactory(),
                                   other).outputProtocolFactory is other



@pytest_twisted.ensureDeferred
async def test_serveOverWebSocket() -> None:
    """
    C{serve(..., transport="websocket")} serves one Thrift message per
    WebSocket message (the extra C{txthrift[websocket]}).
    """
    pytest.importorskip("autobahn", reason="autobahn is the extra txthrift[websocket], which"
                        " scripts/setup.sh installs")
    port = await within(txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", Handler(),
                                       transport="websocket"))
    try:
        client: Any = await within(txthrift.connect(
            reactor, f"ws://127.0.0.1:{port.getHost().port}/", Echo, timeout=WAIT))
        try:
            assert await within(client.echo("ws", 2)) == "wsws"
        finally:
            await within(client.close())
    finally:
        await within(port.stopListening())
        for connection in list(port.factory.serverFactory.connections):
            connection.transport.abortConnection()


@pytest_twisted.ensureDeferred
async def test_ttwistedThriftResourceCancelsWhenTheClientGoes() -> None:
    cancelled: list[bool] = []

    class Waiting:
        def process(self, iprot: Any, oprot: Any) -> Deferred[None]:
            return Deferred(lambda _: cancelled.append(True))

    root = Resource()
    root.putChild(b"rpc", TTwisted.ThriftResource(Waiting(), TBinaryProtocolFactory()))
    async with listening(Site(root)) as port:
        url = f"http://127.0.0.1:{port}/rpc"
        body = request("ping", 1)
        await inThread(exchangeAndGo, url, head(url, str(len(body))) + body)
        deadline = time.monotonic() + WAIT
        while not cancelled:
            assert time.monotonic() < deadline, "the processor's work was not cancelled"
            await deferLater(reactor, 0.02)
