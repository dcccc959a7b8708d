"""
Tests for L{txthrift.TTwisted}, the drop-in replacement of Apache's
C{thrift.transport.TTwisted}, over real sockets on 127.0.0.1.

The tests of the defects it fixes run against Apache's module too, where
they must fail (strict expected failures): that proves each test can fail, and that it
checks what Apache's module gets wrong.
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
import thrift.transport.TTwisted as apache
from thrift.protocol.TBinaryProtocol import (
    TBinaryProtocolAcceleratedFactory,
    TBinaryProtocolFactory,
)
from thrift.protocol.TCompactProtocol import TCompactProtocolAcceleratedFactory
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.protocol.TProtocol import TProtocolFactory
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import DEFAULT_MAX_FRAME_SIZE, TMemoryBuffer, TTransportException
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import ClientCreator, Protocol, ServerFactory, connectionDone
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.gen.pytwisted.txthrift_test import Echo
from tests.gen.pytwisted.txthrift_test.ttypes import Denied, Item, Oops
from txthrift import TTwisted as ours
from txthrift._codec import Codec
from txthrift._framing import ThriftMessageProtocol
from txthrift._service import describe

#: Seconds any one wait may take before the test fails.
WAIT = 5.0
MAX_SEQID = 2**31 - 1
MiB = 1024 * 1024
APACHE_MAX_LENGTH = DEFAULT_MAX_FRAME_SIZE

CODEC = Codec("binary")
METHODS = describe(Echo).methods
ITEM = Item(id=20, name="n\u00e4me", values=[1, -2, 2**40], counts={"a": 1, "\u00fc": -3})

#: Each defect test runs against our module, and against Apache's where it must fail.
OURS = pytest.param(ours, id="txthrift")
DEFECT = "the defect of Apache's TTwisted that txthrift.TTwisted fixes"


def both(defect: type[BaseException]) -> list[Any]:
    """
    Run a test against our module and Apache's, where Apache's is known to
    fail it, raising C{defect}.
    """
    raised = defect.__name__ if defect.__module__ == "builtins" \
        else f"{defect.__module__.rpartition('.')[2]}.{defect.__name__}"
    defective = pytest.mark.xfail(reason=f"{DEFECT} (Apache's raises {raised})",
                                  strict=True, raises=defect)
    return [OURS, pytest.param(apache, id="apache", marks=defective)]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def settle(d: Deferred[Any]) -> Deferred[Any]:
    """
    C{d}, failing with a timeout if it has not fired within L{WAIT} seconds.
    """
    return d.addTimeout(WAIT, reactor)


async def until(condition: Callable[[], object], what: str) -> None:
    """
    Wait, at most L{WAIT} seconds, for C{condition()} to become true.
    """
    deadline = reactor.seconds() + WAIT
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.002)


async def failure(d: Deferred[Any]) -> BaseException:
    """
    The exception C{d} fails with; an assertion error if it succeeds.
    """
    try:
        value = await settle(d)
    except Exception as error:
        return error
    raise AssertionError(f"expected a failure, got {value!r}")


def applicationError(error: BaseException, kind: int) -> TApplicationException:
    assert isinstance(error, TApplicationException), repr(error)
    assert error.type == kind, (error.type, error.message)
    return error


def frame(message: bytes) -> bytes:
    return struct.pack(">I", len(message)) + message


def reply(name: str, seqid: int, **fields: Any) -> bytes:
    result = METHODS[name].result
    assert result is not None
    return CODEC.encode(name, TMessageType.REPLY, seqid, result(**fields))


def call(name: str, seqid: int, *args: Any) -> bytes:
    return CODEC.encode(name, TMessageType.CALL, seqid, METHODS[name].args(*args))


class _Nothing:
    def write(self, oprot: Any) -> None:
        pass


def header(name: str, mtype: int, seqid: int) -> bytes:
    """
    A message header with no body after it.
    """
    return CODEC.encode(name, mtype, seqid, _Nothing())


def readFrames(data: bytes) -> list[bytes]:
    frames = []
    while len(data) >= 4:
        (length,) = struct.unpack_from(">I", data)
        if len(data) < 4 + length:
            break
        frames.append(data[4:4 + length])
        data = data[4 + length:]
    return frames


@implementer(Echo.Iface)
class Handler:
    """
    An C{Echo} handler for the C{py:twisted} processor.
    """

    def __init__(self) -> None:
        self.fired: list[str] = []
        self.waiting: dict[str, Deferred[str]] = {}

    def ping(self, x: int) -> int:
        return x + 1

    def sayHello(self) -> None:
        return None

    def getData(self, input: str) -> str:
        return input + " from server"

    def echo(self, text: str, repeat: int) -> str:
        return text * repeat

    def item(self, it: Item) -> Item:
        return Item(id=it.id + 1, name=it.name, values=it.values[::-1], counts=it.counts)

    def add(self, a: int, b: int) -> Any:
        return "not an i32" if a < 0 else a + b

    def fail(self, kind: str) -> str:
        if kind == "oops":
            raise Oops(why="asked to", code=7)
        if kind == "denied":
            raise Denied(who="you")
        if kind == "transport":
            raise TTransportException(TTransportException.UNKNOWN, "downstream died")
        raise RuntimeError("secret internals")

    def slow(self, seconds: float, tag: str) -> Deferred[str]:
        self.waiting[tag] = Deferred()
        return self.waiting[tag]

    def blob(self, size: int) -> bytes:
        return b"\xab" * size

    def fire(self, message: str) -> None:
        self.fired.append(message)


class Scripted(ThriftMessageProtocol):
    """
    A framed binary server answering each call with the raw bytes
    C{answer(name, seqid, args)} returns: a misbehaving peer.
    """

    def __init__(self, answer: Callable[[str, int, Any], list[bytes]]) -> None:
        super().__init__("framed", "binary")
        self.answer = answer

    def messageReceived(self, message: bytes) -> None:
        iprot, name, _, seqid = CODEC.readHeader(message)
        args = METHODS[name].args()
        args.read(iprot)
        assert self.transport is not None
        for data in self.answer(name, seqid, args):
            self.transport.write(data)


class Raw(Protocol):
    """
    A client sending and collecting raw bytes.
    """

    def __init__(self) -> None:
        self.received = b""
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True


class Net:
    """
    Listening ports and client connections on 127.0.0.1, all closed when
    the test ends.
    """

    def __init__(self) -> None:
        # tcp.Port and Protocol instances: their concrete attributes are used.
        self.ports: list[Any] = []
        self.clients: list[Any] = []
        self.handlers: list[Handler] = []
        #: Every call made through a client of this test, to be consumed.
        self.calls: list[Deferred[Any]] = []

    def track(self, client: Any) -> None:
        """
        Record the Deferred of every call made through C{client}: a test of
        one of Apache's defects stops at its expected failure, leaving calls
        it never awaits to fail when their connection closes, and each would
        be logged (to stderr) as an "Unhandled error in Deferred" when
        collected.  L{close} consumes them: their failures are the test's.
        """
        for name in METHODS:
            call = getattr(client, name)

            def tracked(*args: Any, _call: Any = call, **kwargs: Any) -> Any:
                result = _call(*args, **kwargs)
                if isinstance(result, Deferred):
                    self.calls.append(result)
                return result

            setattr(client, name, tracked)

    def listen(self, factory: ServerFactory) -> int:
        port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.ports.append(port)
        return int(port.getHost().port)

    def serve(self, module: Any = ours, handler: Handler | None = None,
              pfactory: TProtocolFactory | None = None) -> tuple[int, Handler]:
        handler = Handler() if handler is None else handler
        self.handlers.append(handler)
        factory = module.ThriftServerFactory(Echo.Processor(handler),
                                             pfactory or TBinaryProtocolFactory())
        return self.listen(factory), handler

    def serveAs(self, module: Any, protocolClass: Any, handler: Handler | None = None) -> int:
        """
        Listen with C{module}'s factory building C{protocolClass}, a subclass
        of its C{ThriftServerProtocol}; return the port.
        """
        handler = Handler() if handler is None else handler
        self.handlers.append(handler)
        factory = module.ThriftServerFactory(Echo.Processor(handler), TBinaryProtocolFactory())
        factory.protocol = protocolClass
        return self.listen(factory)

    def script(self, answer: Callable[[str, int, Any], list[bytes]]) -> int:
        factory = ServerFactory()
        factory.buildProtocol = lambda addr: Scripted(answer)  # type: ignore[method-assign]
        return self.listen(factory)

    async def connect(self, port: int, protocolClass: Any, *args: Any) -> Any:
        creator = ClientCreator(reactor, protocolClass, *args)
        proto = await settle(creator.connectTCP("127.0.0.1", port, timeout=WAIT))
        self.clients.append(proto)
        if getattr(proto, "client", None) is not None:
            self.track(proto.client)
        return proto

    async def client(self, port: int, module: Any = ours,
                     pfactory: TProtocolFactory | None = None) -> Any:
        """
        Connect as Apache's users do, returning the protocol.
        """
        return await self.connect(port, module.ThriftClientProtocol, Echo.Client,
                                  pfactory or TBinaryProtocolFactory())

    async def close(self) -> None:
        for proto in self.clients:
            proto.transport.loseConnection()
        for port in self.ports:
            await settle(port.stopListening())
        await until(lambda: all(p.transport.disconnected for p in self.clients),
                    "the test's connections to close")
        # A server cannot tell a client that closed from one that only shut
        # down its sending side until a reply is refused: the calls a test
        # left waiting answer now, and that tells it.
        for handler in self.handlers:
            for waiting in handler.waiting.values():
                if not waiting.called:
                    waiting.callback("too late")
        await until(lambda: not any(getattr(p.factory, "connections", ()) for p in self.ports),
                    "the servers' connections to close")
        for call in self.calls:
            call.addErrback(lambda _: None)


@pytest_twisted.async_yield_fixture
async def net() -> AsyncIterator[Net]:
    network = Net()
    yield network
    await network.close()


def logText(events: list[dict[str, Any]]) -> str:
    return "\n".join(formatEvent(event) for event in events)


# ---------------------------------------------------------------------------
# Drop-in: the names, signatures and attributes of Apache's module
# ---------------------------------------------------------------------------


def test_namesAndSignaturesAreApaches() -> None:
    for name in ("ThriftClientProtocol", "ThriftClientFactory", "ThriftServerFactory",
                 "ThriftServerProtocol", "TMessageSenderTransport", "TCallbackTransport"):
        theirs = inspect.signature(getattr(apache, name))
        mine = inspect.signature(getattr(ours, name))
        assert [(p.name, p.default) for p in mine.parameters.values()] == [
            (p.name, p.default) for p in theirs.parameters.values()], name
    for name in ("IThriftClientFactory", "IThriftServerFactory"):
        assert sorted(getattr(ours, name)) == sorted(getattr(apache, name)), name


def test_factoriesProvideTheirInterfaces() -> None:
    pfactory = TBinaryProtocolFactory()
    server = ours.ThriftServerFactory(Echo.Processor(Handler()), pfactory)
    client = ours.ThriftClientFactory(Echo.Client, pfactory)
    assert verifyObject(ours.IThriftServerFactory, server)
    assert verifyObject(ours.IThriftClientFactory, client)
    assert server.oprot_factory is server.iprot_factory is pfactory
    assert client.oprot_factory is client.iprot_factory is pfactory
    assert isinstance(server.buildProtocol(None), ours.ThriftServerProtocol)
    proto = client.buildProtocol(None)
    assert isinstance(proto, ours.ThriftClientProtocol)
    assert proto.factory is client


def test_callbackTransportSendsEachFlushedMessage() -> None:
    sent: list[bytes] = []
    transport = ours.TCallbackTransport(sent.append)
    assert isinstance(transport, ours.TMessageSenderTransport)
    transport.write(b"ab")
    transport.write(b"c")
    transport.flush()
    transport.write(b"d")
    transport.flush()
    assert sent == [b"abc", b"d"]


# ---------------------------------------------------------------------------
# Happy paths, written as Apache's users write them, and interop
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("clientModule", "serverModule", "pfactory"), [
    pytest.param(ours, ours, TBinaryProtocolFactory(), id="binary"),
    pytest.param(ours, ours, TBinaryProtocolAcceleratedFactory(), id="accelerated"),
    pytest.param(ours, ours, TCompactProtocolAcceleratedFactory(), id="compact"),
    pytest.param(ours, ours, TJSONProtocolFactory(), id="json"),
    pytest.param(ours, apache, TBinaryProtocolAcceleratedFactory(), id="to-apache-server"),
    pytest.param(apache, ours, TBinaryProtocolAcceleratedFactory(), id="from-apache-client"),
])
@pytest_twisted.ensureDeferred
async def test_callsAsApacheUsersMakeThem(net: Net, clientModule: Any, serverModule: Any,
                                         pfactory: TProtocolFactory) -> None:
    port, handler = net.serve(serverModule, pfactory=pfactory)
    proto = await net.client(port, clientModule, pfactory)
    client = proto.client
    assert isinstance(client, Echo.Client)
    assert await settle(proto.started) is client
    assert await settle(client.getData("hello")) == "hello from server"
    assert await settle(client.ping(41)) == 42  # inherited from Base
    assert await settle(client.sayHello()) is None
    assert await settle(client.echo("ab", 3)) == "ababab"
    assert await settle(client.item(ITEM)) == Item(
        id=21, name=ITEM.name, values=ITEM.values[::-1], counts=ITEM.counts)
    assert await settle(client.blob(100_000)) == b"\xab" * 100_000
    oops = await failure(client.fail("oops"))
    assert isinstance(oops, Oops)
    assert (type(oops), oops.why, oops.code) == (Oops, "asked to", 7)
    assert type(await failure(client.fail("denied"))) is Denied
    assert set(proto.recv_map) >= {"getData", "ping", "fail"}

    # Oneway: fires once sent; the handler gets it.
    assert await settle(client.fire("one way")) is None
    await until(lambda: handler.fired == ["one way"], "the oneway call")

    # Pipelined calls, answered out of order, each get their own reply.
    first, second = client.slow(1.0, "first"), client.slow(1.0, "second")
    await until(lambda: len(handler.waiting) == 2, "both slow calls")
    quick = client.getData("between")
    assert await settle(quick) == "between from server"
    handler.waiting["second"].callback("2")
    handler.waiting["first"].callback("1")
    assert [await settle(first), await settle(second)] == ["1", "2"]
    assert client._reqs == {}


@pytest_twisted.ensureDeferred
async def test_clientFactoryStartsEachConnectionsClient(net: Net) -> None:
    port, _ = net.serve()
    factory = ours.ThriftClientFactory(Echo.Client, TBinaryProtocolAcceleratedFactory())
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=WAIT)
    proto = await settle(endpoint.connect(factory))
    net.clients.append(proto)
    assert proto.factory is factory
    client = await settle(proto.started)
    assert client is proto.client
    assert await settle(client.ping(1)) == 2


@pytest_twisted.ensureDeferred
async def test_serverProtocolWorksWithAFactoryOfTheUsersOwn(net: Net) -> None:
    # Apache's factory (any IThriftServerFactory provider) building our protocol.
    factory = apache.ThriftServerFactory(Echo.Processor(Handler()),
                                         TBinaryProtocolAcceleratedFactory())
    factory.protocol = ours.ThriftServerProtocol
    proto = await net.client(net.listen(factory), ours, TBinaryProtocolAcceleratedFactory())
    assert await settle(proto.client.getData("x")) == "x from server"


@pytest.mark.parametrize("module", [OURS, pytest.param(apache, id="apache")])
@pytest_twisted.ensureDeferred
async def test_lostConnectionFailsPendingCalls(net: Net, module: Any) -> None:
    port, handler = net.serve()
    proto = await net.client(port, module)
    pending = [proto.client.slow(1.0, "a"), proto.client.slow(1.0, "b")]
    await until(lambda: len(handler.waiting) == 2, "the calls to arrive")
    proto.transport.loseConnection()
    for d in pending:
        error = await failure(d)
        assert isinstance(error, TTransportException)
        assert error.type == TTransportException.END_OF_FILE


@pytest.mark.parametrize("module", [OURS, pytest.param(apache, id="apache")])
@pytest_twisted.ensureDeferred
async def test_undeclaredExceptionIsAnApplicationException(net: Net, module: Any) -> None:
    port, _ = net.serve(module)
    client = (await net.client(port)).client
    error = applicationError(await failure(client.fail("other")),
                             TApplicationException.INTERNAL_ERROR)
    assert "secret" not in str(error.message)
    assert await settle(client.ping(1)) == 2


# ---------------------------------------------------------------------------
# 1. Replies no call awaits are logged and dropped
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", both(TTransportException))
@pytest_twisted.ensureDeferred
async def test_replyWithUnknownSeqidIsLoggedAndDropped(
        net: Net, module: Any, logged: list[dict[str, Any]]) -> None:
    port = net.script(lambda name, seqid, args: [
        frame(reply(name, seqid + 1000, success="stray")),
        frame(reply(name, seqid, success="right")),
    ])
    proto = await net.client(port, module)
    assert await settle(proto.client.getData("x")) == "right"
    assert await settle(proto.client.getData("y")) == "right"
    assert "no call awaits it" in logText(logged)
    assert not proto.transport.disconnected


@pytest.mark.parametrize("module", both(AssertionError))
@pytest_twisted.ensureDeferred
async def test_replyNamingAnUnknownMethodFailsOnlyItsCall(
        net: Net, module: Any, logged: list[dict[str, Any]]) -> None:
    def answer(name: str, seqid: int, args: Any) -> list[bytes]:
        if args.input == "bogus":
            return [frame(reply(name, seqid, success="x").replace(b"getData", b"nothing"))]
        return [frame(reply(name, seqid, success=args.input))]

    client = (await net.client(net.script(answer), module)).client
    bogus, fine = client.getData("bogus"), client.getData("fine")
    applicationError(await failure(bogus), TApplicationException.WRONG_METHOD_NAME)
    assert await settle(fine) == "fine"
    assert "unknown method 'nothing'" in logText(logged)


@pytest.mark.parametrize("module", both(TTransportException))
@pytest_twisted.ensureDeferred
async def test_undecodableReplyFailsOnlyItsCall(net: Net, module: Any) -> None:
    def answer(name: str, seqid: int, args: Any) -> list[bytes]:
        if args.input == "garbage":
            return [frame(header(name, TMessageType.REPLY, seqid) + b"\x42\x42\x42")]
        return [frame(reply(name, seqid, success=args.input))]

    client = (await net.client(net.script(answer), module)).client
    garbage, fine = client.getData("garbage"), client.getData("fine")
    assert await settle(fine) == "fine"
    applicationError(await failure(garbage), TApplicationException.PROTOCOL_ERROR)


# ---------------------------------------------------------------------------
# 2. Calls after a disconnect fail as Deferreds
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", both(AttributeError))
@pytest_twisted.ensureDeferred
async def test_callsAfterADisconnectFailWithATransportError(net: Net, module: Any) -> None:
    port, _ = net.serve()
    proto = await net.client(port, module)
    client = await settle(proto.started)
    proto.transport.loseConnection()
    await until(lambda: proto.transport.disconnected, "the connection to close")
    for later in (client.getData("late"), client.fire("late"), proto.client.ping(1)):
        error = await failure(later)
        assert isinstance(error, TTransportException)
        assert error.type == TTransportException.NOT_OPEN
    assert client._reqs == {}


# ---------------------------------------------------------------------------
# 3. Processing failures never hang the caller nor close the connection
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("pfactory", [
    pytest.param(TBinaryProtocolFactory(), id="binary"),
    pytest.param(TBinaryProtocolAcceleratedFactory(), id="accelerated"),
])
@pytest.mark.parametrize("module", both(AssertionError))
@pytest_twisted.ensureDeferred
async def test_unencodableResultIsAnInternalError(net: Net, module: Any,
                                                   pfactory: TProtocolFactory) -> None:
    port, _ = net.serve(module, pfactory=pfactory)
    client = (await net.client(port, ours, pfactory)).client
    applicationError(await failure(client.add(-1, 2)), TApplicationException.INTERNAL_ERROR)
    assert await settle(client.add(1, 2)) == 3


@pytest.mark.parametrize("module", both(AssertionError))
@pytest_twisted.ensureDeferred
async def test_transportErrorInAHandlerFailsOnlyThatCall(net: Net, module: Any) -> None:
    port, handler = net.serve(module)
    proto = await net.client(port)
    waiting = proto.client.slow(1.0, "meanwhile")
    await until(lambda: handler.waiting, "the slow call")
    applicationError(await failure(proto.client.fail("transport")),
                     TApplicationException.INTERNAL_ERROR)
    handler.waiting["meanwhile"].callback("done")
    assert await settle(waiting) == "done"
    assert await settle(proto.client.ping(1)) == 2


# ---------------------------------------------------------------------------
# 4. Frames are limited to MAX_LENGTH, Apache's 16,384,000 unless changed
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", [OURS, pytest.param(apache, id="apache")])
def test_maxLengthIsApaches(module: Any) -> None:
    assert module.ThriftClientProtocol.MAX_LENGTH == APACHE_MAX_LENGTH == 16_384_000
    assert module.ThriftServerProtocol.MAX_LENGTH == APACHE_MAX_LENGTH


@pytest.mark.parametrize("module", both(AssertionError))
@pytest_twisted.ensureDeferred
async def test_serverClosesOnAnOversizedFrameSayingWhy(
        net: Net, module: Any, logged: list[dict[str, Any]]) -> None:
    port, _ = net.serve(module)
    raw = await net.connect(port, Raw)
    # Just past the limit; nothing of the frame follows, so only the length can be refused.
    raw.transport.write(struct.pack(">I", 16 * MiB + 1) + call("ping", 1, 1)[:20])
    await until(lambda: raw.closed, "the server to close the connection")
    assert raw.received == b""
    assert f"frame length {16 * MiB + 1}" in logText(logged)


@pytest.mark.parametrize("module", both(AssertionError))
@pytest_twisted.ensureDeferred
async def test_clientClosesOnAFrameOverMaxLengthSayingWhy(
        net: Net, module: Any, logged: list[dict[str, Any]]) -> None:
    class Small(module.ThriftClientProtocol):
        MAX_LENGTH = 1000

    port, _ = net.serve()
    proto = await net.connect(port, Small, Echo.Client, TBinaryProtocolFactory())
    assert await settle(proto.client.blob(900)) == b"\xab" * 900
    pending = proto.client.slow(1.0, "pending")
    error = await failure(proto.client.blob(1000))
    assert isinstance(error, TTransportException)
    assert isinstance(await failure(pending), TTransportException)
    assert "frame length 1024 is over MAX_LENGTH (1000)" in logText(logged)


@pytest_twisted.ensureDeferred
async def test_maxLengthSetOnAnInstanceBeforeConnecting(net: Net) -> None:
    class SmallRequests(ours.ThriftServerFactory):
        def buildProtocol(self, addr: Any) -> Any:
            proto: Any = super().buildProtocol(addr)
            proto.MAX_LENGTH = 100
            return proto

    factory = SmallRequests(Echo.Processor(Handler()), TBinaryProtocolFactory())
    client = (await net.client(net.listen(factory))).client
    assert await settle(client.getData("a" * 50)) == "a" * 50 + " from server"
    assert isinstance(await failure(client.getData("a" * 100)), TTransportException)


# ---------------------------------------------------------------------------
# 5. Seqids wrap before they overflow an i32
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", both(struct.error))
@pytest_twisted.ensureDeferred
async def test_seqidWrapsToOneAfterTheLargestI32(net: Net, module: Any) -> None:
    seen: list[int] = []

    def answer(name: str, seqid: int, args: Any) -> list[bytes]:
        seen.append(seqid)
        return [frame(reply(name, seqid, success=args.x + 1))]

    client = (await net.client(net.script(answer), module)).client
    client._seqid = MAX_SEQID - 1
    assert await settle(client.ping(1)) == 2
    assert await settle(client.ping(2)) == 3
    assert await settle(client.ping(3)) == 4
    assert seen == [MAX_SEQID, 1, 2]


@pytest.mark.parametrize("module", both(struct.error))
@pytest_twisted.ensureDeferred
async def test_seqidSkipsIdsStillAwaitingAReply(net: Net, module: Any) -> None:
    port, handler = net.serve()
    client = (await net.client(port, module)).client
    old = client.slow(1.0, "old")  # seqid 1, still pending when the ids wrap
    await until(lambda: handler.waiting, "the slow call")
    client._seqid = MAX_SEQID - 1
    assert await settle(client.ping(1)) == 2  # seqid 2**31-1
    assert await settle(client.ping(2)) == 3  # seqid 2: 1 is in use
    assert client._seqid == 2
    handler.waiting["old"].callback("old")
    assert await settle(old) == "old"


# ---------------------------------------------------------------------------
# 6. A malformed request gets an exception reply
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("pfactory", [
    pytest.param(TBinaryProtocolFactory(), id="binary"),
    pytest.param(TBinaryProtocolAcceleratedFactory(), id="accelerated"),
])
@pytest.mark.parametrize("module", both(AssertionError))
@pytest_twisted.ensureDeferred
async def test_malformedRequestGetsAnApplicationException(
        net: Net, module: Any, pfactory: TProtocolFactory) -> None:
    port, _ = net.serve(module, pfactory=pfactory)
    raw = await net.connect(port, Raw)
    raw.transport.write(frame(header("getData", TMessageType.CALL, 7) + b"\x42\x42\x42\x42"))
    await until(lambda: readFrames(raw.received) or raw.closed, "a reply")
    assert not raw.closed, "the server closed the connection instead of replying"
    [message] = readFrames(raw.received)
    iprot, name, mtype, seqid = CODEC.readHeader(message)
    assert (name, mtype, seqid) == ("getData", TMessageType.EXCEPTION, 7)
    error = TApplicationException()
    error.read(iprot)
    assert error.type in (TApplicationException.PROTOCOL_ERROR,
                          TApplicationException.INTERNAL_ERROR)
    # The connection is still up and serving.
    raw.transport.write(frame(call("ping", 8, 1)))
    await until(lambda: len(readFrames(raw.received)) == 2 or raw.closed, "the second reply")
    assert CODEC.readHeader(readFrames(raw.received)[1])[1:] == ("ping", TMessageType.REPLY, 8)


# ---------------------------------------------------------------------------
# A call that fails while being encoded leaves nothing behind
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("pfactory", [
    pytest.param(TBinaryProtocolFactory(), id="binary"),
    pytest.param(TBinaryProtocolAcceleratedFactory(), id="accelerated"),
])
@pytest.mark.parametrize("module", both(TTransportException))
@pytest_twisted.ensureDeferred
async def test_callFailingToEncodeDoesNotCorruptTheNext(
        net: Net, module: Any, pfactory: TProtocolFactory) -> None:
    port, _ = net.serve(pfactory=pfactory)
    client = (await net.client(port, module, pfactory)).client
    assert isinstance(await failure(client.echo(123, 2)), TypeError)
    assert await settle(client.getData("next")) == "next from server"


# ---------------------------------------------------------------------------
# 7. Apache's public names, with Apache's meaning; overrides take effect
# ---------------------------------------------------------------------------

#: Apache's classes that txthrift.TTwisted provides.
CLASSES = ("ThriftClientProtocol", "ThriftServerProtocol", "ThriftClientFactory",
           "ThriftServerFactory", "TMessageSenderTransport", "TCallbackTransport")
#: Those whose instances are not compared here (tests/test_web.py and
#: tests/test_sasl.py hold them).
CLASSES_ONLY = ("ThriftResource", "ThriftSASLClientProtocol")
#: Both ends in one test: parity, where Apache's passes as ours does.
PARITY = [OURS, pytest.param(apache, id="apache")]


def publicNames(thing: object) -> set[str]:
    return {name for name in dir(thing) if not name.startswith("_")}


def connectedInstances(module: Any) -> dict[str, Any]:
    """
    One of each class of C{module}, connected where it is a protocol.
    """
    pfactory = TBinaryProtocolFactory()
    serverFactory = module.ThriftServerFactory(Echo.Processor(Handler()), pfactory)
    clientFactory = module.ThriftClientFactory(Echo.Client, pfactory)
    server = serverFactory.buildProtocol(None)
    server.makeConnection(StringTransport())
    client = clientFactory.buildProtocol(None)
    client.makeConnection(StringTransport())
    return {
        "ThriftClientProtocol": client, "ThriftServerProtocol": server,
        "ThriftClientFactory": clientFactory, "ThriftServerFactory": serverFactory,
        "TMessageSenderTransport": module.TMessageSenderTransport(),
        "TCallbackTransport": module.TCallbackTransport(len),
    }


def test_everyPublicNameOfApachesClassesExists() -> None:
    missing = {name: sorted(publicNames(getattr(apache, name))
                            - publicNames(getattr(ours, name)))
               for name in CLASSES + CLASSES_ONLY}
    assert missing == {name: [] for name in CLASSES + CLASSES_ONLY}
    theirs, mine = connectedInstances(apache), connectedInstances(ours)
    missing = {name: sorted(publicNames(theirs[name]) - publicNames(mine[name]))
               for name in CLASSES}
    assert missing == {name: [] for name in CLASSES}
    for name in ("ThriftClientProtocol", "ThriftServerProtocol"):
        for attribute in ("structFormat", "prefixLength", "paused", "MAX_LENGTH"):
            assert getattr(mine[name], attribute) == getattr(theirs[name], attribute)
        mine[name].connectionLost(Failure(ConnectionDone()))


@pytest.mark.parametrize("module", PARITY)
def test_sendStringSendsOneFrame(module: Any) -> None:
    client = module.ThriftClientProtocol(Echo.Client, TBinaryProtocolFactory())
    factory = module.ThriftServerFactory(Echo.Processor(Handler()), TBinaryProtocolFactory())
    server = factory.buildProtocol(None)
    for proto in (client, server):
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.sendString(b"abc")
        proto.sendString(b"")
        assert transport.value() == b"\0\0\0\x03abc\0\0\0\0"
        proto.connectionLost(Failure(ConnectionDone()))


@pytest.mark.parametrize("module", PARITY)
def test_recvdIsTheStartOfAFrameNotYetWhole(module: Any) -> None:
    proto = module.ThriftClientProtocol(Echo.Client, TBinaryProtocolFactory())
    transport = StringTransport()
    proto.makeConnection(transport)
    answers: list[str] = []
    proto.client.getData("x").addCallback(answers.append)
    [sent] = readFrames(transport.value())
    answer = frame(reply("getData", CODEC.readHeader(sent)[3], success="y"))
    proto.dataReceived(answer[:7])
    assert proto.recvd == answer[:7]
    proto.dataReceived(answer[7:])
    assert proto.recvd == b""
    assert answers == ["y"]


@pytest.mark.parametrize("module", PARITY)
def test_pausedClientHoldsRepliesUntilResumed(module: Any) -> None:
    proto = module.ThriftClientProtocol(Echo.Client, TBinaryProtocolFactory())
    transport = StringTransport()
    proto.makeConnection(transport)
    answers: list[str] = []
    proto.client.getData("x").addCallback(answers.append)
    [sent] = readFrames(transport.value())
    seqid = CODEC.readHeader(sent)[3]
    proto.pauseProducing()
    assert proto.paused and transport.producerState == "paused"
    proto.dataReceived(frame(reply("getData", seqid, success="y")))
    assert answers == []
    proto.resumeProducing()
    assert not proto.paused and transport.producerState == "producing"
    assert answers == ["y"]


@pytest.mark.parametrize("module", PARITY)
@pytest_twisted.ensureDeferred
async def test_sendStringOverridesSeeEveryCallAndReply(net: Net, module: Any) -> None:
    calls: list[bytes] = []
    replies: list[bytes] = []

    class Client(module.ThriftClientProtocol):
        def sendString(self, string: bytes) -> None:
            calls.append(string)
            super().sendString(string)

    class Server(module.ThriftServerProtocol):
        def sendString(self, string: bytes) -> None:
            replies.append(string)
            super().sendString(string)

    port = net.serveAs(module, Server)
    proto = await net.connect(port, Client, Echo.Client, TBinaryProtocolFactory())
    assert await settle(proto.client.getData("a")) == "a from server"
    assert await settle(proto.client.ping(1)) == 2
    assert [CODEC.readHeader(m)[1:3] for m in calls] == [
        ("getData", TMessageType.CALL), ("ping", TMessageType.CALL)]
    assert [CODEC.readHeader(m)[1:3] for m in replies] == [
        ("getData", TMessageType.REPLY), ("ping", TMessageType.REPLY)]


@pytest.mark.parametrize("module", PARITY)
@pytest_twisted.ensureDeferred
async def test_processOkSeesEveryReplyAndCanAlterIt(net: Net, module: Any) -> None:
    seen: list[bytes] = []

    class Altering(module.ThriftServerProtocol):
        def processOk(self, result: object, tmo: Any) -> None:
            message = tmo.getvalue()
            seen.append(message)
            super().processOk(result, TMemoryBuffer(message.replace(b"server", b"SERVER")))

    handler = Handler()
    port = net.serveAs(module, Altering, handler)
    client = (await net.client(port)).client
    assert await settle(client.getData("a")) == "a from SERVER"
    assert await settle(client.ping(1)) == 2
    assert await settle(client.fire("one way")) is None
    await until(lambda: handler.fired, "the oneway call")
    assert await settle(client.getData("b")) == "b from SERVER"
    # A oneway call's processor writes nothing: processOk sees it empty.
    assert [CODEC.readHeader(m)[1] if m else None for m in seen] == [
        "getData", "ping", None, "getData"]


@pytest.mark.parametrize("module", PARITY)
@pytest_twisted.ensureDeferred
async def test_dispatchOverrideSeesEveryReply(net: Net, module: Any) -> None:
    sent: list[bytes] = []

    class Recording(module.ThriftServerProtocol):
        def dispatch(self, msg: bytes) -> None:
            sent.append(msg)
            super().dispatch(msg)

    port = net.serveAs(module, Recording)
    client = (await net.client(port)).client
    assert await settle(client.getData("a")) == "a from server"
    oops = await failure(client.fail("oops"))
    assert isinstance(oops, Oops)
    assert [CODEC.readHeader(m)[1:3] for m in sent] == [
        ("getData", TMessageType.REPLY), ("fail", TMessageType.REPLY)]


@pytest.mark.parametrize("module", PARITY)
@pytest_twisted.ensureDeferred
async def test_processErrorIsCalledWhenTheProcessorFails(net: Net, module: Any) -> None:
    errors: list[Failure] = []

    class Watching(module.ThriftServerProtocol):
        def processError(self, error: Failure) -> None:
            errors.append(error)
            super().processError(error)

    port = net.serveAs(module, Watching)
    client = (await net.client(port)).client
    assert await settle(client.getData("a")) == "a from server"
    # The generated processor passes a handler's TTransportException on.
    error = await failure(client.fail("transport"))
    assert [type(e.value) for e in errors] == [TTransportException]
    if module is apache:
        # Apache's default closes the connection.
        assert isinstance(error, TTransportException)
        return
    # Ours answers the caller, and the connection carries on.
    applicationError(error, TApplicationException.INTERNAL_ERROR)
    assert await settle(client.ping(1)) == 2


@pytest.mark.parametrize("override", ["returns", "raises"])
@pytest.mark.parametrize("method", ["processError", "processOk"])
@pytest_twisted.ensureDeferred
async def test_overrideLeavingACallUnansweredStillAnswersIt(
        net: Net, method: str, override: str, logged: list[dict[str, Any]]) -> None:
    called: list[str] = []

    def neither(self: Any, *args: Any) -> None:
        called.append(method)
        if override == "raises":
            raise RuntimeError("a broken override")

    # processOk only gets a fallback answer when it raises: one that
    # returns may have sent, or mean to send, the reply some other way.
    Careless: Any = type("Careless", (ours.ThriftServerProtocol,), {method: neither})
    port = net.serveAs(ours, Careless)
    proto = await net.client(port)
    client = proto.client
    if method == "processError":
        applicationError(await failure(client.fail("transport")),
                         TApplicationException.INTERNAL_ERROR)
    elif override == "raises":
        applicationError(await failure(client.ping(1)), TApplicationException.INTERNAL_ERROR)
    else:
        answers: list[int] = []
        unanswered = client.ping(1).addCallback(answers.append)
        await until(lambda: called, "processOk")
        assert answers == []
        proto.transport.loseConnection()
        assert isinstance(await failure(unanswered), TTransportException)
        return
    assert called == [method]
    # Still connected: processOk's default sees the next one through.
    if method == "processError":
        assert await settle(client.ping(1)) == 2
    assert "no reply was sent" in logText(logged)


@pytest_twisted.ensureDeferred
async def test_processErrorOverrideClosingTheConnectionGetsNoOtherAnswer(net: Net) -> None:
    class ApacheLike(ours.ThriftServerProtocol):
        def processError(self, error: Failure) -> None:
            assert self.transport is not None
            self.transport.loseConnection()

    port = net.serveAs(ours, ApacheLike)
    raw = await net.connect(port, Raw)
    raw.transport.write(frame(call("fail", 1, "transport")))
    await until(lambda: raw.closed, "the server to close the connection")
    assert raw.received == b""


@pytest.mark.parametrize("module", PARITY)
@pytest_twisted.ensureDeferred
async def test_stringReceivedOverrideSeesEachRequestFrameOnce(net: Net, module: Any) -> None:
    frames: list[bytes] = []
    inFlight: list[int] = []

    class Recording(module.ThriftServerProtocol):
        def stringReceived(self, frame: bytes) -> None:
            frames.append(frame)
            inFlight.append(getattr(self, "inFlight", 0))
            if CODEC.readHeader(frame)[1] == "getData":
                frame = frame.replace(b"secret", b"public")
            super().stringReceived(frame)

    handler = Handler()
    port = net.serveAs(module, Recording, handler)
    client = (await net.client(port)).client
    assert await settle(client.getData("secret")) == "public from server"
    # More calls than txthrift processes at once (128): those held for room
    # are processed later, but reach stringReceived once, on arrival.
    count = 130
    slow = [client.slow(1.0, str(i)) for i in range(count)]
    answered: set[str] = set()
    while len(answered) < count:
        await until(lambda: set(handler.waiting) - answered, "more slow calls")
        for tag in set(handler.waiting) - answered:
            answered.add(tag)
            handler.waiting[tag].callback(tag)
    assert [await settle(d) for d in slow] == [str(i) for i in range(count)]
    assert [CODEC.readHeader(f)[1] for f in frames] == ["getData"] + ["slow"] * count
    if module is ours:
        assert max(inFlight) == 128  # so some were held


@pytest.mark.parametrize("length", [APACHE_MAX_LENGTH + 1, 16 * MiB])
@pytest.mark.parametrize("module", PARITY)
@pytest_twisted.ensureDeferred
async def test_clientRefusesAReplyOverApachesLimit(net: Net, module: Any, length: int) -> None:
    refused: list[int] = []

    class Watching(module.ThriftClientProtocol):
        def lengthLimitExceeded(self, length: int) -> None:
            refused.append(length)
            super().lengthLimitExceeded(length)

    port = net.script(lambda name, seqid, args: [
        struct.pack(">I", length) + reply(name, seqid, success="x")])
    proto = await net.connect(port, Watching, Echo.Client, TBinaryProtocolFactory())
    error = await failure(proto.client.getData("x"))
    assert isinstance(error, TTransportException)
    assert refused == [length]
    await until(lambda: proto.transport.disconnected, "the connection to close")


@pytest.mark.parametrize("module", PARITY)
@pytest_twisted.ensureDeferred
async def test_serverLengthLimitExceededOverrideTakesEffect(net: Net, module: Any) -> None:
    refused: list[int] = []

    class Telling(module.ThriftServerProtocol):
        def lengthLimitExceeded(self, length: int) -> None:
            refused.append(length)
            self.transport.write(b"too long")
            super().lengthLimitExceeded(length)

    port = net.serveAs(module, Telling)
    raw = await net.connect(port, Raw)
    # Read as unsigned, as a 4-byte length prefix is.
    raw.transport.write(frame(call("ping", 1, 1)) + b"\xff\xff\xff\xf0" + b"x" * 10)
    await until(lambda: raw.closed, "the server to close the connection")
    assert refused == [0xFFFFFFF0]
    [answer] = readFrames(raw.received[:-len(b"too long")])
    assert CODEC.readHeader(answer)[1:] == ("ping", TMessageType.REPLY, 1)
    assert raw.received.endswith(b"too long")


@pytest_twisted.ensureDeferred
async def test_lengthLimitExceededLeavingTheConnectionOpenStillCloses(
        net: Net, logged: list[dict[str, Any]]) -> None:
    refused: list[int] = []

    class Lenient(ours.ThriftClientProtocol):
        def lengthLimitExceeded(self, length: int) -> None:
            refused.append(length)

    port = net.script(lambda name, seqid, args: [struct.pack(">I", 2**31) + b"x" * 8])
    proto = await net.connect(port, Lenient, Echo.Client, TBinaryProtocolFactory())
    assert isinstance(await failure(proto.client.getData("x")), TTransportException)
    assert refused == [2**31]
    assert f"frame length {2**31} is over MAX_LENGTH ({APACHE_MAX_LENGTH})" in logText(logged)


@pytest_twisted.ensureDeferred
async def test_undecodableRequestReachesProcessError(net: Net) -> None:
    errors: list[Failure] = []

    class Watching(ours.ThriftServerProtocol):
        def processError(self, error: Failure) -> None:
            errors.append(error)
            super().processError(error)

    port = net.serveAs(ours, Watching)
    raw = await net.connect(port, Raw)
    raw.transport.write(frame(header("getData", TMessageType.CALL, 7) + b"\x42\x42\x42\x42"))
    await until(lambda: readFrames(raw.received) or raw.closed, "a reply")
    [message] = readFrames(raw.received)
    assert CODEC.readHeader(message)[1:] == ("getData", TMessageType.EXCEPTION, 7)
    assert len(errors) == 1


@pytest_twisted.ensureDeferred
async def test_callCancelledAsItsConnectionDropsReachesNoOverride(net: Net) -> None:
    seen: list[str] = []

    class Watching(ours.ThriftServerProtocol):
        def processOk(self, result: object, tmo: Any) -> None:
            seen.append("processOk")
            super().processOk(result, tmo)

        def processError(self, error: Failure) -> None:
            seen.append("processError")
            super().processError(error)

    handler = Handler()
    port = net.serveAs(ours, Watching, handler)
    proto = await net.client(port)
    assert await settle(proto.client.ping(1)) == 2
    pending = proto.client.slow(1.0, "dropped")
    await until(lambda: handler.waiting, "the slow call")
    proto.transport.abortConnection()
    assert isinstance(await failure(pending), TTransportException)
    await until(lambda: handler.waiting["dropped"].called, "the call to be cancelled")
    assert not net.ports[-1].factory.connections
    assert seen == ["processOk"]
