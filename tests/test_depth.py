"""
Tests for C{max_depth}: one definition of depth, held to by both ends, on
every transport and protocol.

Depth counts structs and containers: a message's own struct (a call's
arguments, a reply's result) is at depth 1, a struct or container in one of
its fields at depth 2, and so on; strings and numbers add none.  A message
at C{max_depth} passes and one a level deeper is refused: per message on a
framed stream (the server answers C{PROTOCOL_ERROR}, the client fails that
call), by closing an unframed one, whose framing cannot be trusted after it.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.protocol.TJSONProtocol import TJSONProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.TTransport import TMemoryBuffer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

import txthrift
from tests._handlers import SUFFIX, EchoBasics
from tests._hardening import frameFor
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Item
from txthrift import Codec, Limits
from txthrift._framing import makeFramer
from txthrift._limits import APACHE_C_DEPTH
from txthrift._scanning import DepthError, checkDepth, depthCheckFloor

#: Seconds any one wait may take before the test fails.
WAIT = 10.0

PAIRS = [(t, p) for t in ("framed", "buffered") for p in ("binary", "compact", "json")]
#: Depth limits tried: the least, a small one, and the default.
DEPTHS = [1, 4, Limits().max_depth]

_WRITERS = {"binary": TBinaryProtocol, "compact": TCompactProtocol, "json": TJSONProtocol}
#: The nesting of the extra field, level by level: struct, list, map, again.
_SHAPES = "slm"
_TTYPES = {"s": TType.STRUCT, "l": TType.LIST, "m": TType.MAP}


def _writeNested(oprot: Any, levels: str) -> None:
    """
    Write a struct, list or map holding the next level, or nothing at the
    last one (so that Apache's C decoder, which counts values as levels
    where it skips, sees no more levels than we do).
    """
    kind, inner = levels[0], levels[1:]
    if kind == "s":
        oprot.writeStructBegin("Level")
        if inner:
            oprot.writeFieldBegin("inner", _TTYPES[inner[0]], 1)
            _writeNested(oprot, inner)
            oprot.writeFieldEnd()
        oprot.writeFieldStop()
        oprot.writeStructEnd()
    elif kind == "l":
        oprot.writeListBegin(_TTYPES[inner[0]] if inner else TType.I32, 1 if inner else 0)
        if inner:
            _writeNested(oprot, inner)
        oprot.writeListEnd()
    else:
        oprot.writeMapBegin(TType.I32, _TTYPES[inner[0]] if inner else TType.I32,
                            1 if inner else 0)
        if inner:
            oprot.writeI32(1)
            _writeNested(oprot, inner)
        oprot.writeMapEnd()


def deepMessage(protocol: str, name: str, mtype: int, seqid: int, fid: int, text: str,
                depth: int) -> bytes:
    """
    A message whose struct holds the string C{text} as field C{fid} and, for
    a C{depth} over 1, an unknown field 99 nesting to exactly C{depth}.
    """
    buffer = TMemoryBuffer()
    oprot = _WRITERS[protocol](buffer)
    oprot.writeMessageBegin(name, mtype, seqid)
    oprot.writeStructBegin("Message")
    oprot.writeFieldBegin("text", TType.STRING, fid)
    oprot.writeString(text)
    oprot.writeFieldEnd()
    if depth > 1:
        levels = (_SHAPES * depth)[:depth - 1]
        oprot.writeFieldBegin("deep", _TTYPES[levels[0]], 99)
        _writeNested(oprot, levels)
        oprot.writeFieldEnd()
    oprot.writeFieldStop()
    oprot.writeStructEnd()
    oprot.writeMessageEnd()
    return buffer.getvalue()


def deepCall(protocol: str, depth: int, seqid: int = 1) -> bytes:
    return deepMessage(protocol, "getData", TMessageType.CALL, seqid, 1, "hi", depth)


def bounded(d: Deferred[Any]) -> Deferred[Any]:
    from twisted.internet import reactor

    return d.addTimeout(WAIT, reactor)


# ---------------------------------------------------------------------------
# The walk itself
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["binary", "compact", "json"])
@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 9, 64])
def test_checkDepthPassesTheLimitAndRefusesALevelMore(protocol: str, limit: int) -> None:
    limits = Limits(max_depth=limit)
    checkDepth(deepCall(protocol, limit), protocol, limits)
    with pytest.raises(DepthError, match=f"deeper than {limit} \\(max_depth\\)"):
        checkDepth(deepCall(protocol, limit + 1), protocol, limits)


@pytest.mark.parametrize("protocol", ["binary", "compact", "json"])
def test_declaredStructsAndContainersCountAsLevels(protocol: str) -> None:
    """
    item(Item) nests the item at depth 2 and its list and map at depth 3;
    strings, numbers and an empty item add nothing more.
    """
    codec = Codec(protocol)
    full = codec.encode("item", TMessageType.CALL, 1, Echo.item_args(
        it=Item(id=1, name="n", values=[1, 2], counts={"a": 1})))
    bare = codec.encode("item", TMessageType.CALL, 1, Echo.item_args(it=Item(id=1, name="n")))
    strings = codec.encode("echo", TMessageType.CALL, 1, Echo.echo_args(text="[{", repeat=2))
    checkDepth(full, protocol, Limits(max_depth=3))
    checkDepth(bare, protocol, Limits(max_depth=2))
    checkDepth(strings, protocol, Limits(max_depth=1))
    with pytest.raises(DepthError):
        checkDepth(full, protocol, Limits(max_depth=2))
    with pytest.raises(DepthError):
        checkDepth(bare, protocol, Limits(max_depth=1))


@pytest.mark.parametrize("protocol", ["binary", "compact", "json"])
def test_checkDepthLeavesOtherFaultsToTheDecoder(protocol: str) -> None:
    whole = deepCall(protocol, 3)
    checkDepth(whole[:len(whole) // 2], protocol, Limits(max_depth=3))
    checkDepth(b"\x00garbage", protocol, Limits(max_depth=1))


def test_jsonBracketsInStringsAndMapBodiesAreNoLevels() -> None:
    """
    In JSON a struct's fields and a map's entries sit in objects of their
    own, and strings may hold brackets and escaped quotes: none of them are
    levels.
    """
    codec = Codec("json")
    item = Item(id=1, name='\\"[[{{', values=[], counts={'"]}': 1, "\\": 2})
    message = codec.encode("item", TMessageType.CALL, 1, Echo.item_args(it=item))
    checkDepth(message, "json", Limits(max_depth=3))
    with pytest.raises(DepthError):
        checkDepth(message, "json", Limits(max_depth=2))


@pytest.mark.parametrize("protocol", ["binary", "compact", "json"])
@pytest.mark.parametrize("limit", [1, 4, 64])
def test_framedMessagesBelowTheFloorCannotBeTooDeep(protocol: str, limit: int) -> None:
    """
    Framed messages shorter than L{depthCheckFloor} are not walked: every
    way of nesting one level past the limit, as tersely as each protocol
    can, is at least that long.
    """
    limits = Limits(max_depth=limit)
    floor = depthCheckFloor("framed", protocol, limits)
    assert floor is not None
    assert depthCheckFloor("buffered", protocol, limits) is None
    for shape in ("s", "l", "m", "sl", "ls", "sm", "lm"):
        levels = (shape * (limit + 1))[:limit]
        buffer = TMemoryBuffer()
        oprot = _WRITERS[protocol](buffer)
        oprot.writeMessageBegin("", TMessageType.CALL, 0)
        oprot.writeStructBegin("Message")
        oprot.writeFieldBegin("deep", _TTYPES[levels[0]], 1)
        _writeNested(oprot, levels)
        oprot.writeFieldEnd()
        oprot.writeFieldStop()
        oprot.writeStructEnd()
        oprot.writeMessageEnd()
        message = buffer.getvalue()
        with pytest.raises(DepthError):
            checkDepth(message, protocol, limits)
        assert len(message) >= floor, (shape, len(message), floor)


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_apacheCDecodersRefusePastTheirDepth(protocol: str) -> None:
    """
    What L{APACHE_C_DEPTH} says of Apache's C decoders, which framed
    messages rely on at the default C{max_depth}.
    """
    if not txthrift.accelerated:
        pytest.skip("the thrift package was built without its C extension")
    codec = Codec(protocol)
    for depth, passes in ((APACHE_C_DEPTH, True), (APACHE_C_DEPTH + 1, False)):
        iprot, *_ = codec.readHeader(deepCall(protocol, depth))
        if passes:
            codec.readBody(iprot, Echo.getData_args())
        else:
            with pytest.raises(Exception, match="recursion depth"):
                codec.readBody(iprot, Echo.getData_args())


# ---------------------------------------------------------------------------
# Server end, over loopback
# ---------------------------------------------------------------------------


class Closed(Exception):
    """
    The connection ended before the messages waited for came.
    """


class Raw(Protocol):
    """
    A peer speaking by hand: collects whole messages, notes the connection's end.
    """

    def __init__(self, transport: str, protocol: str) -> None:
        self.framer = makeFramer(transport, protocol, Limits())
        self.messages: list[bytes] = []
        self.waiting: list[tuple[int, Deferred[list[bytes]]]] = []
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.messages += self.framer.feed(data)
        for entry in list(self.waiting):
            if len(self.messages) >= entry[0]:
                self.waiting.remove(entry)
                entry[1].callback(self.messages)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed.callback(None)
        waiting, self.waiting = self.waiting, []
        for _, d in waiting:
            d.errback(Closed())

    def send(self, message: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frameFor(self.framer, message))

    def receive(self, count: int) -> Deferred[list[bytes]]:
        d: Deferred[list[bytes]] = Deferred()
        if len(self.messages) >= count:
            d.callback(self.messages)
        else:
            self.waiting.append((count, d))
        return bounded(d)


def readReply(protocol: str, message: bytes) -> tuple[int, int, Any]:
    codec = Codec(protocol)
    iprot, _, mtype, seqid = codec.readHeader(message)
    body: Any = TApplicationException() if mtype == TMessageType.EXCEPTION \
        else Echo.getData_result()
    codec.readBody(iprot, body)
    return mtype, seqid, body


async def serverAnswers(transport: str, protocol: str, limit: int, depth: int,
                        logged: list[dict[str, Any]]) -> Any:
    """
    Send a call nesting C{depth} deep to a server allowing C{limit}, then a
    plain one; give what the server did with each.
    """
    from twisted.internet import reactor

    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", EchoBasics(),
                                     service=Echo, transport=transport, protocol=protocol,
                                     max_depth=limit)
    try:
        raw = Raw(transport, protocol)
        await bounded(connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), raw))
        raw.send(deepCall(protocol, depth, seqid=1))
        raw.send(deepCall(protocol, 1, seqid=2))
        try:
            replies = await raw.receive(2)
        except Closed:
            return "closed", [e for e in logged if "max_depth" in str(e.get("reason"))]
        raw.transport.loseConnection()  # type: ignore[union-attr]
        await bounded(raw.closed)
        return [readReply(protocol, m) for m in replies]
    finally:
        await port.stopListening()


@pytest.mark.parametrize("limit", DEPTHS)
@pytest.mark.parametrize(("transport", "protocol"), PAIRS)
@pytest_twisted.ensureDeferred
async def test_serverAnswersACallAtTheLimit(transport: str, protocol: str, limit: int,
                                           logged: list[dict[str, Any]]) -> None:
    got = await serverAnswers(transport, protocol, limit, limit, logged)
    assert got[0] != "closed", got
    assert [(mtype, seqid, body.success) for mtype, seqid, body in got] == [
        (TMessageType.REPLY, 1, "hi" + SUFFIX), (TMessageType.REPLY, 2, "hi" + SUFFIX)]


@pytest.mark.parametrize("limit", DEPTHS)
@pytest.mark.parametrize(("transport", "protocol"), PAIRS)
@pytest_twisted.ensureDeferred
async def test_serverRefusesACallALevelDeeper(transport: str, protocol: str, limit: int,
                                             logged: list[dict[str, Any]]) -> None:
    got = await serverAnswers(transport, protocol, limit, limit + 1, logged)
    if transport == "framed":
        # That call alone: a PROTOCOL_ERROR for it, the next one answered.
        (mtype, seqid, error), after = got
        assert (mtype, seqid, error.type) == (
            TMessageType.EXCEPTION, 1, TApplicationException.PROTOCOL_ERROR)
        assert "depth" in str(error.message)
        assert (after[0], after[1], after[2].success) == (TMessageType.REPLY, 2, "hi" + SUFFIX)
    else:
        # Where it ends was never found: the connection is closed, saying why.
        assert got[0] == "closed"
        assert got[1], "no reason logged"


# ---------------------------------------------------------------------------
# Client end, over loopback
# ---------------------------------------------------------------------------


class DeepServer(Protocol):
    """
    Answers getData(input) with a reply nesting int(input) deep.
    """

    def __init__(self, transport: str, protocol: str) -> None:
        self.protocol = protocol
        self.framer = makeFramer(transport, protocol, Limits())
        self.codec = Codec(protocol)

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        for message in self.framer.feed(data):
            iprot, name, _, seqid = self.codec.readHeader(message)
            args = Echo.getData_args()
            self.codec.readBody(iprot, args)
            depth = int(args.input)
            reply = deepMessage(self.protocol, name, TMessageType.REPLY, seqid, 0,
                                f"depth {depth}", depth)
            self.transport.write(frameFor(self.framer, reply))


async def clientOutcomes(transport: str, protocol: str, limit: int, depth: int) -> Any:
    """
    Ask a server for a reply nesting C{depth} deep, with a client allowing
    C{limit}, then for a plain one; give each outcome and whether the
    connection is still up.
    """
    from twisted.internet import reactor

    factory = Factory.forProtocol(lambda: DeepServer(transport, protocol))
    # Twisted types listenTCP's factory as a ServerFactory; any Factory serves.
    port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[arg-type]
    try:
        client: Any = await bounded(txthrift.connect(
            reactor, f"tcp:host=127.0.0.1:port={port.getHost().port}", Echo,
            transport=transport, protocol=protocol, timeout=WAIT, max_depth=limit))
        outcomes: list[Any] = []
        try:
            for d in (client.getData(str(depth)), client.getData("1")):
                try:
                    outcomes.append(await bounded(d))
                except Exception as error:
                    outcomes.append(error)
            return outcomes, client.protocol.transport.connected and not getattr(
                client.protocol.transport, "disconnecting", False)
        finally:
            await bounded(client.close())
    finally:
        await port.stopListening()


@pytest.mark.parametrize("limit", DEPTHS)
@pytest.mark.parametrize(("transport", "protocol"), PAIRS)
@pytest_twisted.ensureDeferred
async def test_clientTakesAReplyAtTheLimit(transport: str, protocol: str, limit: int) -> None:
    outcomes, up = await clientOutcomes(transport, protocol, limit, limit)
    assert outcomes == [f"depth {limit}", "depth 1"]
    assert up


@pytest.mark.parametrize("limit", DEPTHS)
@pytest.mark.parametrize(("transport", "protocol"), PAIRS)
@pytest_twisted.ensureDeferred
async def test_clientRefusesAReplyALevelDeeper(transport: str, protocol: str,
                                              limit: int) -> None:
    outcomes, up = await clientOutcomes(transport, protocol, limit, limit + 1)
    refused, after = outcomes
    assert isinstance(refused, Exception), refused
    if transport == "framed":
        # That call fails, naming the limit; the connection carries on.
        assert "max_depth" in str(refused) or "depth" in str(refused).lower(), refused
        assert after == "depth 1"
        assert up
    else:
        assert isinstance(after, Exception), after
        assert not up
