"""
Wire interoperability with Apache Thrift's own Python implementation, over
real sockets on 127.0.0.1: Apache's blocking clients against txthrift
servers, txthrift clients against Apache's servers, both flavours of
generated code, multiplexing, and pipelining.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
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
from thrift.Thrift import TApplicationException, TException
from thrift.TMultiplexedProcessor import TMultiplexedProcessor
from thrift.transport import TTwisted
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import (
    TBufferedTransport,
    TBufferedTransportFactory,
    TFramedTransport,
    TFramedTransportFactory,
    TTransportException,
)
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue, gatherResults, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from zope.interface import implementer

import txthrift
from tests._apache import SECRET, ApacheServer, SyncHandler, failWith, transformItem
from tests._handlers import CalcHandler, EchoBasics
from tests.gen.py.txthrift_test import Calc, Echo
from tests.gen.py.txthrift_test.ttypes import Denied, Item, Oops
from tests.gen.pytwisted.txthrift_test import Calc as TwistedCalc
from tests.gen.pytwisted.txthrift_test import Echo as TwistedEcho
from tests.gen.pytwisted.txthrift_test import ttypes as twistedTypes

#: Seconds any one wait in these tests may take before it fails.
WAIT = 10.0
#: Milliseconds an Apache client socket waits for any one read or write.
SOCKET_TIMEOUT_MS = 5000

# Strings that are hard on the framing: JSON brackets and escapes inside a
# string, and non-ASCII text.
NAME = 'n\u00e4me [{"\\"}] \u2603'
# More than 15 elements: the compact protocol's long container headers.
VALUES = [1, -2, 2**40, *range(-10, 10)]
COUNTS = {"a": 1, "[": 2, "\u00fc": -3, **{f"k{i}": i for i in range(20)}}
ITEM = Item(id=20, name=NAME, values=VALUES, counts=COUNTS)
#: An item with no name and empty containers.
BARE = Item(id=-1, values=[], counts={})


def within(d: Deferred[Any], seconds: float = WAIT) -> Deferred[Any]:
    return d.addTimeout(seconds, reactor)


def inThread(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """
    Run a blocking function (an Apache client session) in a thread.
    """
    return within(deferToThread(f, *args), 2 * WAIT)


def checkItem(got: Any, cls: type = Item) -> None:
    """
    C{got} is what the handlers' C{transformItem} makes of L{ITEM}.
    """
    assert type(got) is cls
    assert got == cls(id=21, name=NAME + "!", values=[2 * v for v in VALUES[::-1]],
                      counts={k + "+": v - 1 for k, v in COUNTS.items()})


def checkBare(got: Any, cls: type = Item) -> None:
    assert type(got) is cls
    assert got == cls(id=0, name=None, values=[], counts={})


class Handler(EchoBasics):
    """
    An C{Echo} handler for txthrift servers: answers with values,
    Deferreds and coroutines.
    """

    def __init__(self) -> None:
        self.fired: DeferredQueue[str] = DeferredQueue()
        #: The tags of slow calls, in the order they were answered.
        self.answered: list[str] = []

    def echo(self, text: str, repeat: int) -> Deferred[str]:  # type: ignore[override]
        return succeed(text * repeat)

    def item(self, it: Item) -> Item:
        return transformItem(it)

    async def add(self, a: int, b: int) -> int:  # type: ignore[override]
        return a + b

    def fail(self, kind: str) -> str:
        failWith(kind)
        return "unreachable"

    async def slow(self, seconds: float, tag: str) -> str:
        await deferLater(reactor, seconds)
        self.answered.append(tag)
        return tag

    def blob(self, size: int) -> bytes:
        return bytes(range(256)) * (size // 256) + bytes(range(size % 256))

    def fire(self, message: str) -> None:
        if message == "boom":
            raise RuntimeError(SECRET)
        self.fired.put(message)


class TxCalc(Calc.Iface):
    def multiply(self, a: int, b: int) -> Deferred[int]:
        return deferLater(reactor, 0, lambda: a * b)


@asynccontextmanager
async def txServer(handler: object, **kwargs: Any) -> AsyncIterator[int]:
    """
    Serve C{handler} with txthrift on 127.0.0.1 and a free port, yielding the
    port; afterwards stop listening and drop any connection left.
    """
    port = await within(txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", handler, **kwargs))
    try:
        yield port.getHost().port
    finally:
        await within(port.stopListening())
        for proto in list(port.factory.connections):
            proto.transport.abortConnection()


async def txConnect(port: int, service: Any = Echo, **kwargs: Any) -> Any:
    return await within(txthrift.connect(reactor, f"tcp:host=127.0.0.1:port={port}", service,
                                         **kwargs))


def caught(f: Callable[..., Any], *args: Any) -> BaseException:
    try:
        value = f(*args)
    except TException as error:
        return error
    raise AssertionError(f"{f.__name__}{args} returned {value!r} instead of raising")


async def failure(d: Deferred[Any]) -> BaseException:
    try:
        value = await within(d)
    except TException as error:
        return error
    raise AssertionError(f"expected a failure, got {value!r}")


def assertApplicationError(error: BaseException, kind: int) -> TApplicationException:
    assert isinstance(error, TApplicationException), repr(error)
    assert error.type == kind, (error.type, error.message)
    return error


@pytest.fixture
def apache() -> Iterator[Callable[..., ApacheServer]]:
    """
    Start Apache servers in threads; every one is stopped (and checked to
    have left no thread running) when the test ends.
    """
    servers: list[ApacheServer] = []

    def start(*args: Any, **kwargs: Any) -> ApacheServer:
        server = ApacheServer(*args, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# ---------------------------------------------------------------------------
# 1. Apache's blocking clients against a txthrift server (auto-detecting)
# ---------------------------------------------------------------------------

TRANSPORTS = {"buffered": TBufferedTransport, "framed": TFramedTransport}
PROTOCOLS = {
    "binary": TBinaryProtocolFactory,
    "binary-accelerated": TBinaryProtocolAcceleratedFactory,
    "compact": TCompactProtocolFactory,
    "compact-accelerated": TCompactProtocolAcceleratedFactory,
    "json": TJSONProtocolFactory,
}


def apacheEchoSession(port: int, transportClass: type, protocolFactory: Any,
                      tag: str) -> dict[str, Any]:
    """
    One blocking Apache client connection calling every kind of method of
    an C{Echo} server; what each call gave, by name.
    """
    sock = TSocket("127.0.0.1", port)
    sock.setTimeout(SOCKET_TIMEOUT_MS)
    transport = transportClass(sock)
    protocol = protocolFactory.getProtocol(transport)
    echo, calc = Echo.Client(protocol), Calc.Client(protocol)
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
            "blob": echo.blob(1000),
            "oops": caught(echo.fail, "oops"),
            "denied": caught(echo.fail, "denied"),
            "undeclared": caught(echo.fail, "boom"),
            "app": caught(echo.fail, "app"),
            "fire": echo.fire(tag),
            # A oneway call that fails gets no reply (the next call would
            # read it as its own).
            "fireBoom": echo.fire("boom"),
            "unknown": caught(calc.multiply, 6, 7),
            # The connection survived all of the above.
            "after": echo.getData(tag),
        }
        # Requests sent back to back before any reply is read.
        for i in range(20):
            echo.send_add(i, 1000)
            echo.send_getData(f"p{i}")
        out["pipelined"] = [(echo.recv_add(), echo.recv_getData()) for _ in range(20)]
        # A oneway call, and the connection closed at once.
        echo.fire(tag + " last")
        return out
    finally:
        transport.close()


def checkEchoSession(out: dict[str, Any], tag: str) -> None:
    assert out["sayHello"] is None
    assert out["getData"] == "client access from server 1024"
    assert out["ping"] == 42
    assert out["echo"] == "ababab"
    assert out["add"] == 2**31 - 1
    checkItem(out["item"])
    checkBare(out["bare"])
    assert out["slow"] == "double"
    assert out["blob"] == (bytes(range(256)) * 4)[:1000]
    oops = out["oops"]
    assert isinstance(oops, Oops) and (oops.why, oops.code) == ("asked to", 7)
    denied = out["denied"]
    assert isinstance(denied, Denied) and denied.who == "you"
    internal = assertApplicationError(out["undeclared"], TApplicationException.INTERNAL_ERROR)
    assert SECRET not in str(internal.message)
    assert "fail" in str(internal.message)
    # A TApplicationException the handler raises reaches the peer as it is.
    app = assertApplicationError(out["app"], TApplicationException.INVALID_TRANSFORM)
    assert app.message == "told you"
    assert out["fire"] is None
    assert out["fireBoom"] is None
    assertApplicationError(out["unknown"], TApplicationException.UNKNOWN_METHOD)
    assert out["after"] == tag + " from server 1024"
    assert out["pipelined"] == [(i + 1000, f"p{i} from server 1024") for i in range(20)]


@pytest.mark.parametrize("protocolName", list(PROTOCOLS))
@pytest.mark.parametrize("transportName", list(TRANSPORTS))
@pytest_twisted.ensureDeferred
async def test_apacheClientsAgainstAutoServer(transportName: str, protocolName: str) -> None:
    """
    Every transport and protocol of Apache's clients, accelerated or not,
    is understood by a txthrift server left to detect them.
    """
    handler = Handler()
    tag = f"{transportName}/{protocolName}"
    async with txServer(handler) as port:
        out = await inThread(apacheEchoSession, port, TRANSPORTS[transportName],
                             PROTOCOLS[protocolName](), tag)
        checkEchoSession(out, tag)
        # The oneway calls reached the handler, the last one too.
        assert await within(handler.fired.get()) == tag
        assert await within(handler.fired.get()) == tag + " last"
        assert handler.fired.pending == []


@pytest_twisted.ensureDeferred
async def test_seedClientAgainstTxthriftServer() -> None:
    """
    The seed's client, exactly: TSocket, TBufferedTransport, TBinaryProtocol.
    """

    def seedClient(port: int) -> tuple[Any, str]:
        transport = TSocket("127.0.0.1", port)
        transport.setTimeout(SOCKET_TIMEOUT_MS)
        transport = TBufferedTransport(transport)
        protocol = TBinaryProtocol(transport)
        client = Echo.Client(protocol)
        transport.open()
        try:
            return client.sayHello(), client.getData("client access")
        finally:
            transport.close()

    async with txServer(Handler()) as port:
        assert await inThread(seedClient, port) == (None, "client access from server 1024")


@pytest_twisted.ensureDeferred
async def test_apacheClientsConcurrently() -> None:
    """
    Several Apache clients, each on its own connection with its own
    transport and protocol, at once against one auto-detecting server.
    """
    handler = Handler()
    combos = [(t, p) for t in TRANSPORTS for p in ("binary", "compact", "json")]
    async with txServer(handler) as port:
        outs = await within(gatherResults([
            inThread(apacheEchoSession, port, TRANSPORTS[t], PROTOCOLS[p](), f"{t}/{p}")
            for t, p in combos], consumeErrors=True))
        for (t, p), out in zip(combos, outs):
            checkEchoSession(out, f"{t}/{p}")
        fired = [await within(handler.fired.get()) for _ in range(2 * len(combos))]
        assert sorted(fired) == sorted(
            f"{t}/{p}{last}" for t, p in combos for last in ("", " last"))


# ---------------------------------------------------------------------------
# 2. Both flavours of generated code
# ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_txthriftClientOfPyTwistedModule() -> None:
    """
    A txthrift client made from the C{py:twisted} module speaks to a server
    of the C{py} module: the wire is the same, the classes its own.
    """
    async with txServer(Handler()) as port:
        client = await txConnect(port, TwistedEcho, transport="buffered", protocol="compact")
        try:
            assert await within(client.getData("tw")) == "tw from server 1024"
            assert await within(client.ping(1)) == 2
            it = twistedTypes.Item(id=20, name=NAME, values=VALUES, counts=COUNTS)
            checkItem(await within(client.item(it)), twistedTypes.Item)
            oops = await failure(client.fail("oops"))
            assert isinstance(oops, twistedTypes.Oops) and oops.code == 7
            assert await within(client.fire("x")) is None
            assert await within(client.sayHello()) is None
        finally:
            await within(client.close())


@implementer(TwistedEcho.Iface)
class ImplementerHandler:  # type: ignore[misc]  # implements only what the tests call
    """
    A C{py:twisted} style handler: a plain class declaring the interface,
    its methods returning Deferreds or coroutines.
    """

    def __init__(self) -> None:
        self.fired: DeferredQueue[str] = DeferredQueue()
        #: The tags of slow calls, in the order they were answered.
        self.answered: list[str] = []

    def ping(self, x: int) -> Deferred[int]:
        return succeed(x + 1)

    def sayHello(self) -> Deferred[None]:
        return succeed(None)

    def getData(self, input: str) -> Deferred[str]:
        return deferLater(reactor, 0, lambda: input + " from server 1024")

    async def item(self, it: Any) -> Any:
        return transformItem(it)

    def fail(self, kind: str) -> Deferred[str]:
        return deferLater(reactor, 0, failWith, kind, twistedTypes.Oops, twistedTypes.Denied)

    def slow(self, seconds: float, tag: str) -> Deferred[str]:
        def answer() -> str:
            self.answered.append(tag)
            return tag

        return deferLater(reactor, seconds, answer)

    def fire(self, message: str) -> Deferred[None]:
        if message == "boom":
            return deferLater(reactor, 0, failWith, "boom")
        self.fired.put(message)
        return succeed(None)


def apacheBasics(port: int, transportClass: type, protocolFactory: Any) -> dict[str, Any]:
    sock = TSocket("127.0.0.1", port)
    sock.setTimeout(SOCKET_TIMEOUT_MS)
    transport = transportClass(sock)
    protocol = protocolFactory.getProtocol(transport)
    echo, calc = Echo.Client(protocol), Calc.Client(protocol)
    transport.open()
    try:
        return {
            "getData": echo.getData("basic"),
            "ping": echo.ping(9),
            "sayHello": echo.sayHello(),
            "item": echo.item(ITEM),
            "oops": caught(echo.fail, "oops"),
            "undeclared": caught(echo.fail, "boom"),
            "fire": echo.fire("basic fire"),
            "fireBoom": echo.fire("boom"),
            "unknown": caught(calc.multiply, 2, 3),
            # A method of the service the handler does not have.
            "missing": caught(echo.add, 1, 2),
            "after": echo.getData("after"),
        }
    finally:
        transport.close()


def checkBasics(out: dict[str, Any], missing: int) -> None:
    assert out["getData"] == "basic from server 1024"
    assert out["ping"] == 10
    assert out["sayHello"] is None
    checkItem(out["item"])
    assert isinstance(out["oops"], Oops) and out["oops"].code == 7
    internal = assertApplicationError(out["undeclared"], TApplicationException.INTERNAL_ERROR)
    assert SECRET not in str(internal.message)
    assert out["fire"] is None
    assertApplicationError(out["unknown"], TApplicationException.UNKNOWN_METHOD)
    assertApplicationError(out["missing"], missing)
    assert out["after"] == "after from server 1024"


@pytest_twisted.ensureDeferred
async def test_servePyTwistedImplementerHandler() -> None:
    """
    serve() finds the service of a plain class declaring the C{py:twisted}
    interface with C{@implementer}; Apache and txthrift clients use it.
    """
    handler = ImplementerHandler()
    async with txServer(handler) as port:
        out = await inThread(apacheBasics, port, TFramedTransport, TBinaryProtocolFactory())
        checkBasics(out, TApplicationException.UNKNOWN_METHOD)
        assert await within(handler.fired.get()) == "basic fire"
        client = await txConnect(port, TwistedEcho, protocol="compact")
        try:
            assert await within(client.getData("tx")) == "tx from server 1024"
            assert isinstance(await failure(client.fail("oops")), twistedTypes.Oops)
        finally:
            await within(client.close())


@pytest_twisted.ensureDeferred
async def test_servePyTwistedProcessor() -> None:
    """
    serve() runs a C{py:twisted} generated processor, whose handler
    answers with Deferreds, as any processor.
    """
    handler = ImplementerHandler()
    async with txServer(TwistedEcho.Processor(handler)) as port:
        out = await inThread(apacheBasics, port, TBufferedTransport,
                             TCompactProtocolAcceleratedFactory())
        # The generated processor calls the missing method and fails inside.
        checkBasics(out, TApplicationException.INTERNAL_ERROR)
        assert await within(handler.fired.get()) == "basic fire"
        client = await txConnect(port, Echo, transport="framed", protocol="json")
        try:
            assert await within(client.ping(-1)) == 0
            checkItem(await within(client.item(ITEM)))
        finally:
            await within(client.close())


# ---------------------------------------------------------------------------
# 3. txthrift clients against Apache's servers
# ---------------------------------------------------------------------------


async def txEchoSession(port: int, handler: SyncHandler, **kwargs: Any) -> None:
    """
    Every kind of call from one txthrift client to an Apache C{Echo} server.
    """
    client = await txConnect(port, timeout=WAIT, **kwargs)
    try:
        assert await within(client.sayHello()) is None
        assert await within(client.getData("client access")) == "client access from server 1024"
        assert await within(client.ping(41)) == 42
        assert await within(client.echo("xy", 2)) == "xyxy"
        checkItem(await within(client.item(ITEM)))
        checkBare(await within(client.item(BARE)))
        assert await within(client.slow(0.001, "double")) == "double"
        assert await within(client.blob(300)) == bytes(range(256)) + bytes(range(44))
        oops = await failure(client.fail("oops"))
        assert isinstance(oops, Oops) and oops.why == "asked to"
        assert isinstance(await failure(client.fail("denied")), Denied)
        internal = assertApplicationError(await failure(client.fail("boom")),
                                          TApplicationException.INTERNAL_ERROR)
        assert SECRET not in str(internal.message)
        app = assertApplicationError(await failure(client.fail("app")),
                                     TApplicationException.INVALID_TRANSFORM)
        assert app.message == "told you"
        assert await within(client.fire("from txthrift")) is None
        assert await inThread(handler.fired.get, True, WAIT) == "from txthrift"
        assert await within(client.add(1, 2)) == 3
    finally:
        await within(client.close())
    unknown = await txConnect(port, Calc, **kwargs)
    try:
        assertApplicationError(await failure(unknown.multiply(3, 4)),
                               TApplicationException.UNKNOWN_METHOD)
    finally:
        await within(unknown.close())


@pytest.mark.parametrize("kind", ["threaded", "simple"])
@pytest_twisted.ensureDeferred
async def test_txthriftClientAgainstSeedServer(apache: Any, kind: str) -> None:
    """
    The seed's server: TThreadedServer (or TSimpleServer) with buffered
    transport and binary protocol.
    """
    handler = SyncHandler()
    server = apache(kind, Echo.Processor(handler), TBufferedTransportFactory(),
                    TBinaryProtocolFactory())
    await txEchoSession(server.port, handler, transport="buffered", protocol="binary")
    server.stop()


@pytest.mark.parametrize("protocol", ["binary", "compact", "json"])
@pytest_twisted.ensureDeferred
async def test_txthriftClientAgainstNonblockingServer(apache: Any, protocol: str) -> None:
    """
    TNonblockingServer: framed, with each protocol.
    """
    handler = SyncHandler()
    factory = {"binary": TBinaryProtocolAcceleratedFactory,
               "compact": TCompactProtocolFactory, "json": TJSONProtocolFactory}[protocol]()
    server = apache("nonblocking", Echo.Processor(handler), protocolFactory=factory)
    await txEchoSession(server.port, handler, transport="framed", protocol=protocol)
    server.stop()


async def pipelined(client: Any, count: int = 50) -> None:
    """
    C{count} calls sent at once on one connection, all answered rightly.
    """
    calls = []
    expected: list[Any] = []
    for i in range(count):
        if i % 3 == 0:
            calls.append(client.getData(f"call {i}"))
            expected.append(f"call {i} from server 1024")
        elif i % 3 == 1:
            calls.append(client.add(i, 1000 * i))
            expected.append(1001 * i)
        else:
            calls.append(client.echo(str(i), i % 5))
            expected.append(str(i) * (i % 5))
    assert client.protocol.pending == count
    assert await within(gatherResults(calls, consumeErrors=True)) == expected
    assert client.protocol.pending == 0


@pytest.mark.parametrize(("kind", "transport", "protocol"), [
    ("threaded", "buffered", "binary"),
    ("threaded", "framed", "compact"),
    ("nonblocking", "framed", "binary"),
    ("nonblocking", "framed", "compact"),
])
@pytest_twisted.ensureDeferred
async def test_pipeliningAgainstApacheServers(apache: Any, kind: str, transport: str,
                                              protocol: str) -> None:
    """
    Fifty calls sent at once on one txthrift connection to Apache servers
    that answer one request at a time: each gets its own result.
    """
    factories = {"binary": TBinaryProtocolFactory, "compact": TCompactProtocolFactory}
    transports = {"buffered": TBufferedTransportFactory, "framed": TFramedTransportFactory}
    if kind == "nonblocking":
        server = apache(kind, Echo.Processor(SyncHandler()),
                        protocolFactory=factories[protocol]())
    else:
        server = apache(kind, Echo.Processor(SyncHandler()), transports[transport](),
                        factories[protocol]())
    client = await txConnect(server.port, transport=transport, protocol=protocol)
    try:
        await pipelined(client)
        await pipelined(client)
    finally:
        await within(client.close())
    server.stop()


@pytest_twisted.ensureDeferred
async def test_apacheServerStopsWithOpenConnection(apache: Any) -> None:
    """
    Stopping an Apache server ends the connection of a client still using
    it: the client's pending call fails instead of hanging.
    """
    handler = SyncHandler()
    server = apache("threaded", Echo.Processor(handler), TBufferedTransportFactory(),
                    TBinaryProtocolFactory())
    client = await txConnect(server.port, transport="buffered")
    assert await within(client.ping(1)) == 2
    slow = client.slow(0.2, "never")
    # stop() shuts the accepted sockets down (the handler thread finds its
    # connection gone once it wakes); run it in a thread, as it blocks.
    await inThread(server.stop)
    error = await failure(slow)
    assert isinstance(error, TTransportException)
    assert error.type == TTransportException.NOT_OPEN
    assert client.protocol.pending == 0


# ---------------------------------------------------------------------------
# Large messages, both ways
# ---------------------------------------------------------------------------

LARGE = {"binary": 1_000_000, "compact": 1_000_000, "json": 200_000}
#: Large text is made of this: non-ASCII, and JSON quotes, escapes and brackets.
UNIT = '\u00e9"\\[{'


def largeText(size: int) -> str:
    return UNIT * (size // len(UNIT))


def apacheLarge(port: int, transportClass: type, protocolFactory: Any,
                size: int) -> tuple[str, bytes]:
    sock = TSocket("127.0.0.1", port)
    sock.setTimeout(SOCKET_TIMEOUT_MS)
    transport = transportClass(sock)
    echo = Echo.Client(protocolFactory.getProtocol(transport))
    transport.open()
    try:
        return echo.echo(largeText(size), 2), echo.blob(size)
    finally:
        transport.close()


def blobOf(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


@pytest.mark.parametrize(("transportName", "protocolName"), [
    ("buffered", "binary"),
    ("buffered", "compact-accelerated"),
    ("buffered", "json"),
    ("framed", "compact"),
])
@pytest_twisted.ensureDeferred
async def test_largeMessagesBothWays(apache: Any, transportName: str,
                                     protocolName: str) -> None:
    """
    Messages of a megabyte, arriving in many reads, from Apache's client to
    a txthrift server and from Apache's server to a txthrift client.
    """
    protocol = protocolName.partition("-")[0]
    size = LARGE[protocol]
    async with txServer(Handler()) as port:
        text, blob = await inThread(apacheLarge, port, TRANSPORTS[transportName],
                                    PROTOCOLS[protocolName](), size)
    assert text == largeText(size) * 2
    assert blob == blobOf(size)

    transportFactory = {"buffered": TBufferedTransportFactory,
                        "framed": TFramedTransportFactory}[transportName]()
    server = apache("threaded", Echo.Processor(SyncHandler()), transportFactory,
                    PROTOCOLS[protocolName]())
    client = await txConnect(server.port, transport=transportName, protocol=protocol)
    try:
        echoed, got = await within(gatherResults(
            [client.echo(largeText(size), 2), client.blob(size)], consumeErrors=True))
        assert echoed == largeText(size) * 2
        assert got == blobOf(size)
    finally:
        await within(client.close())
    server.stop()


# ---------------------------------------------------------------------------
# 4. Multiplexing
# ---------------------------------------------------------------------------


def multiplexedApacheProcessor(handler: SyncHandler) -> TMultiplexedProcessor:
    processor = TMultiplexedProcessor()
    processor.registerProcessor("Echo", Echo.Processor(handler))
    processor.registerProcessor("Calc", Calc.Processor(CalcHandler()))
    return processor


@pytest.mark.parametrize(("kind", "transport", "protocol"), [
    ("threaded", "buffered", "binary"),
    ("nonblocking", "framed", "compact"),
])
@pytest_twisted.ensureDeferred
async def test_txthriftClientsAgainstApacheMultiplexedServer(apache: Any, kind: str,
                                                             transport: str,
                                                             protocol: str) -> None:
    """
    txthrift clients with service_name= against Apache's
    TMultiplexedProcessor holding Echo and Calc.
    """
    handler = SyncHandler()
    factory = {"binary": TBinaryProtocolFactory, "compact": TCompactProtocolFactory}[protocol]()
    if kind == "nonblocking":
        server = apache(kind, multiplexedApacheProcessor(handler), protocolFactory=factory)
    else:
        server = apache(kind, multiplexedApacheProcessor(handler), TBufferedTransportFactory(),
                        factory)
    kwargs = {"transport": transport, "protocol": protocol}
    echo = await txConnect(server.port, Echo, service_name="Echo", **kwargs)
    calc = await txConnect(server.port, Calc, service_name="Calc", **kwargs)
    try:
        assert await within(echo.getData("mux")) == "mux from server 1024"
        assert await within(echo.ping(1)) == 2
        assert isinstance(await failure(echo.fail("oops")), Oops)
        assert await within(calc.multiply(2**40, -3)) == -3 * 2**40
        await pipelined(echo, 20)
        assert await within(echo.fire("mux fire")) is None
        assert await inThread(handler.fired.get, True, WAIT) == "mux fire"
    finally:
        await within(echo.close())
        await within(calc.close())
    # Apache's TMultiplexedProcessor raises for a service it does not know,
    # and its servers then drop the connection: the call fails, not hangs.
    nobody = await txConnect(server.port, Echo, service_name="Nobody", **kwargs)
    try:
        error = await failure(nobody.getData("lost"))
        assert isinstance(error, TTransportException)
        assert error.type == TTransportException.NOT_OPEN
    finally:
        await within(nobody.close())
    server.stop()


def apacheMultiplexedSession(port: int, transportClass: type,
                             protocolFactory: Any) -> dict[str, Any]:
    sock = TSocket("127.0.0.1", port)
    sock.setTimeout(SOCKET_TIMEOUT_MS)
    transport = transportClass(sock)
    protocol = protocolFactory.getProtocol(transport)
    echo = Echo.Client(TMultiplexedProtocol(protocol, "Echo"))
    calc = Calc.Client(TMultiplexedProtocol(protocol, "Calc"))
    nobody = Echo.Client(TMultiplexedProtocol(protocol, "Nobody"))
    plain = Echo.Client(protocol)
    wrongService = Calc.Client(TMultiplexedProtocol(protocol, "Echo"))
    transport.open()
    try:
        return {
            "getData": echo.getData("mux"),
            "ping": echo.ping(5),
            "oops": caught(echo.fail, "oops"),
            "multiply": calc.multiply(2**40, 3),
            "fire": echo.fire("mux fire"),
            "nobody": caught(nobody.getData, "x"),
            "nobodyFire": nobody.fire("lost"),
            "plain": caught(plain.getData, "x"),
            "wrongService": caught(wrongService.multiply, 1, 2),
            "after": echo.getData("after"),
            "calcAfter": calc.multiply(-4, 5),
        }
    finally:
        transport.close()


@pytest.mark.parametrize(("transportName", "protocolName"), [
    ("buffered", "binary"),
    ("framed", "compact-accelerated"),
    ("buffered", "json"),
    ("framed", "binary-accelerated"),
])
@pytest_twisted.ensureDeferred
async def test_apacheMultiplexedClientsAgainstTxthrift(transportName: str,
                                                      protocolName: str) -> None:
    """
    serve() of a mapping answers Apache's TMultiplexedProtocol clients; a
    service it does not have gets a TApplicationException, and the
    connection stays usable.
    """
    handler = Handler()
    async with txServer({"Echo": handler, "Calc": TxCalc()}) as port:
        out = await inThread(apacheMultiplexedSession, port, TRANSPORTS[transportName],
                             PROTOCOLS[protocolName]())
        assert await within(handler.fired.get()) == "mux fire"
        # A txthrift multiplexed client on the same server.
        calc = await txConnect(port, TwistedCalc, service_name="Calc", protocol="compact")
        try:
            assert await within(calc.multiply(7, 6)) == 42
        finally:
            await within(calc.close())
    assert out["getData"] == "mux from server 1024"
    assert out["ping"] == 6
    assert isinstance(out["oops"], Oops)
    assert out["multiply"] == 3 * 2**40
    assert out["fire"] is None
    assert out["nobodyFire"] is None
    nobody = assertApplicationError(out["nobody"], TApplicationException.UNKNOWN_METHOD)
    assert "Nobody" in str(nobody.message)
    assertApplicationError(out["plain"], TApplicationException.UNKNOWN_METHOD)
    assertApplicationError(out["wrongService"], TApplicationException.UNKNOWN_METHOD)
    assert out["after"] == "after from server 1024"
    assert out["calcAfter"] == -20


@pytest_twisted.ensureDeferred
async def test_apacheMultiplexedClientsAgainstServedMultiplexedProcessor() -> None:
    """
    serve() of Apache's own TMultiplexedProcessor (holding a C{py} and a
    C{py:twisted} processor): a service it does not know gets an error
    reply, where Apache's servers would drop the connection.
    """
    handler = ImplementerHandler()
    processor = TMultiplexedProcessor()
    processor.registerProcessor("Echo", TwistedEcho.Processor(handler))
    processor.registerProcessor("Calc", Calc.Processor(CalcHandler()))
    async with txServer(processor) as port:
        out = await inThread(apacheMultiplexedSession, port, TFramedTransport,
                             TBinaryProtocolFactory())
        assert await within(handler.fired.get()) == "mux fire"
    assert (out["getData"], out["ping"], out["multiply"]) == (
        "mux from server 1024", 6, 3 * 2**40)
    assert isinstance(out["oops"], Oops)
    nobody = assertApplicationError(out["nobody"], TApplicationException.PROTOCOL_ERROR)
    assert "Nobody" in str(nobody.message)
    assertApplicationError(out["plain"], TApplicationException.PROTOCOL_ERROR)
    assertApplicationError(out["wrongService"], TApplicationException.UNKNOWN_METHOD)
    assert (out["after"], out["calcAfter"]) == ("after from server 1024", -20)


# ---------------------------------------------------------------------------
# 5. Pipelined calls answered out of order
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("transport", "protocol"), [
    ("framed", "binary"),
    ("buffered", "compact"),
    ("buffered", "json"),
])
@pytest_twisted.ensureDeferred
async def test_outOfOrderRepliesMatchTheirCalls(transport: str, protocol: str) -> None:
    """
    Calls sent at once on one connection, the later ones answered sooner,
    each get their own reply.
    """
    handler = Handler()
    async with txServer(handler) as port:
        client = await txConnect(port, transport=transport, protocol=protocol)
        try:
            await outOfOrder(client, handler)
        finally:
            await within(client.close())


async def outOfOrder(client: Any, handler: Any, count: int = 20) -> None:
    """
    Send C{count} slow calls, the later ones answered sooner, with an
    instant call after each; every call gets its own result.
    """
    received: list[str] = []

    def record(value: str) -> str:
        received.append(value)
        return value

    slow, fast = [], []
    for i in range(count):
        tag = f"tag {i}"
        d = client.slow(0.1 + (count - i) * 0.01, tag)
        d.addCallback(record)
        slow.append(d)
        fast.append(client.ping(-2 * i))
    assert client.protocol.pending == 2 * count
    assert await within(gatherResults(fast, consumeErrors=True)) == [
        1 - 2 * i for i in range(count)]
    # The instant calls all came back before any slow one.
    assert received == []
    tags = [f"tag {i}" for i in range(count)]
    assert await within(gatherResults(slow, consumeErrors=True)) == tags
    # Replies came in the order the server answered, not the order of the
    # calls: each was matched by its seqid.
    assert received == handler.answered
    assert sorted(received) == sorted(tags)
    assert received != tags
    assert client.protocol.pending == 0


# ---------------------------------------------------------------------------
# Apache's own Twisted implementation (thrift.transport.TTwisted)
# ---------------------------------------------------------------------------


class _ApacheTwistedClient(TTwisted.ThriftClientProtocol):
    """
    Apache's Twisted client protocol, telling when its connection is gone.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        self.lost.callback(None)


@pytest.mark.parametrize("protocolName", ["binary-accelerated", "compact", "json"])
@pytest_twisted.ensureDeferred
async def test_apacheTwistedClientAgainstTxthrift(protocolName: str) -> None:
    """
    Apache's C{py:twisted} client (framed, replies matched by seqid) against
    a txthrift server, with calls answered out of order.
    """
    handler = Handler()
    async with txServer(handler) as port:
        proto = _ApacheTwistedClient(TwistedEcho.Client, PROTOCOLS[protocolName]())
        await within(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto))
        client = await within(proto.started)
        try:
            assert await within(client.getData("tw")) == "tw from server 1024"
            assert await within(client.ping(1)) == 2
            oops = await failure(client.fail("oops"))
            assert isinstance(oops, twistedTypes.Oops) and oops.code == 7
            internal = assertApplicationError(await failure(client.fail("boom")),
                                              TApplicationException.INTERNAL_ERROR)
            assert SECRET not in str(internal.message)
            await within(client.fire("tw fire"))
            assert await within(handler.fired.get()) == "tw fire"
            tags = [f"t{i}" for i in range(10)]
            assert await within(gatherResults(
                [client.slow((10 - i) * 0.02, tag) for i, tag in enumerate(tags)],
                consumeErrors=True)) == tags
        finally:
            proto.transport.loseConnection()
            await within(proto.lost)


@pytest.mark.parametrize("protocol", ["binary", "compact"])
@pytest_twisted.ensureDeferred
async def test_txthriftClientAgainstApacheTwistedServer(protocol: str) -> None:
    """
    A txthrift client against Apache's Twisted server, which answers each
    call when its Deferred fires: out of order.
    """
    handler = ImplementerHandler()
    factory = TTwisted.ThriftServerFactory(TwistedEcho.Processor(handler),
                                           PROTOCOLS[protocol]())
    port = await within(serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory))
    try:
        client = await txConnect(port.getHost().port, protocol=protocol)
        try:
            assert await within(client.getData("x")) == "x from server 1024"
            checkItem(await within(client.item(ITEM)))
            assert isinstance(await failure(client.fail("oops")), Oops)
            await outOfOrder(client, handler)
        finally:
            await within(client.close())
    finally:
        await within(port.stopListening())


# ---------------------------------------------------------------------------
# Backpressure with Deferred-answering processors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("served", ["py:twisted processor", "coroutine handler"])
@pytest_twisted.ensureDeferred
async def test_queuedRequestsBehindASlowCallAllAnswered(served: str) -> None:
    """
    Requests queued behind a slow call (past max_pending) and arriving in
    few reads are all answered once it finishes, also when each is answered
    by a Deferred that has already fired: a py:twisted processor's always
    are (maybeDeferred), and so are coroutines that finish without waiting.

    This fails today: ServerProtocol._replied drains the queue recursively
    (_replied -> _process -> Deferred.addCallback -> _replied -> ...), one
    level per queued request, until a RecursionError loses replies and
    leaves _inFlight stuck at max_pending, so the connection stalls.
    """
    count = 1000
    processor = served == "py:twisted processor"
    # The processor's ping answers succeed(x + 1); the handler's add is an
    # async def returning at once.
    handler = TwistedEcho.Processor(ImplementerHandler()) if processor else Handler()
    async with txServer(handler, max_pending=1) as port:
        client = await txConnect(port, timeout=3)
        try:
            slow = client.slow(0.1, "slow")
            quick = [client.ping(i) if processor else client.add(i, 1) for i in range(count)]
            assert await within(gatherResults([slow, *quick], consumeErrors=True)) == [
                "slow", *[i + 1 for i in range(count)]]
        finally:
            await within(client.close())


@pytest.mark.parametrize("clientTransport, serverFactory", [
    ("framed", TBufferedTransportFactory),
    ("buffered", TFramedTransportFactory),
])
@pytest_twisted.ensureDeferred
async def test_wrongFramingGetsAHint(apache: Any, clientTransport: str,
                                     serverFactory: Any) -> None:
    """
    A client framed differently from Apache's server, which closes the
    connection on the first bytes it cannot read, is told which
    C{transport=} the server may expect.
    """
    server = apache("threaded", Echo.Processor(SyncHandler()), serverFactory(),
                    TBinaryProtocolFactory())
    client = await txConnect(server.port, Echo, transport=clientTransport, protocol="binary")
    error = await failure(client.getData("x"))
    other = "buffered" if clientTransport == "framed" else "framed"
    assert isinstance(error, TTransportException), repr(error)
    assert error.type == TTransportException.NOT_OPEN
    assert f"connect with transport={other!r}" in str(error.message)
    # A later call says the same.
    later = await failure(client.getData("y"))
    assert f"transport={other!r}" in str(later)
    server.stop()
