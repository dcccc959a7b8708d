"""
Tests for L{txthrift._client}: every bad reply, and every call too big to
send, ends in one outcome for its own caller only, while the stream is in
sync; a stream that lost sync is closed with a reason that says why.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TTransportException
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

import txthrift
from tests._handlers import Hardened
from tests._hardening import bounded, frameFor, resultStruct
from tests._speedups import compiled
from tests.gen.py.txthrift_test import Echo
from txthrift import ClientFactory, Codec, Limits
from txthrift._client import whyUndecodable
from txthrift._framing import makeFramer
from txthrift._service import describe

METHODS = describe(Echo).methods
COMBOS = [(t, p) for t in ("framed", "buffered") for p in ("binary", "compact", "json")]
PROTOCOLS = ["binary", "compact", "json"]
LOCAL = "tcp:0:interface=127.0.0.1"
WAIT = 20.0
_I32 = struct.Struct(">i")


class Peer:
    """
    The server end of one client connection, replying by hand.
    """

    def __init__(self, transport: str = "framed", protocol: str = "binary",
                 **limits: Any) -> None:
        self.clock = Clock()
        factory = ClientFactory(Echo, transport=transport, protocol=protocol,
                                limits=Limits(**limits), clock=self.clock)
        self.proto = factory.buildProtocol(None)
        self.wire = StringTransport()
        self.proto.makeConnection(self.wire)
        self.client: Any = self.proto.client
        self.transport = transport
        self.codec = Codec(protocol)
        self._framer = makeFramer(transport, protocol, Limits())

    def requests(self) -> list[tuple[str, int, int]]:
        data = self.wire.value()
        self.wire.clear()
        found = []
        for message in self._framer.feed(data):
            _, name, mtype, seqid = self.codec.readHeader(message)
            found.append((name, mtype, seqid))
        return found

    def seqids(self) -> list[int]:
        return [seqid for _, _, seqid in self.requests()]

    def encode(self, name: str, seqid: int, mtype: int = TMessageType.REPLY,
               method: str | None = None, **fields: Any) -> bytes:
        body = resultStruct(method or name)(**fields)
        return self.codec.encode(name, mtype, seqid, body)

    def frame(self, message: bytes) -> bytes:
        return _I32.pack(len(message)) + message if self.transport == "framed" else message

    def reply(self, name: str, seqid: int, **fields: Any) -> None:
        self.send(self.frame(self.encode(name, seqid, **fields)))

    def send(self, data: bytes, piece: int | None = None) -> None:
        piece = piece or len(data) or 1
        for start in range(0, len(data), piece):
            self.proto.dataReceived(data[start:start + piece])

    @property
    def open(self) -> bool:
        return not self.wire.disconnecting

    def lose(self) -> None:
        self.proto.connectionLost(Failure(ConnectionError("test over")))


def outcome(d: Deferred[Any]) -> Any:
    """
    What C{d} fired with: its result, or its failure's exception.
    """
    got: list[Any] = []
    d.addBoth(got.append)
    assert got, "the Deferred has not fired"
    value = got[0]
    return value.value if isinstance(value, Failure) else value


def applicationError(d: Deferred[Any], kind: int) -> str:
    error = outcome(d)
    assert isinstance(error, TApplicationException), error
    assert error.type == kind, (error.type, error.message)
    assert isinstance(error.message, str)
    return error.message


# ---------------------------------------------------------------------------
# A call bigger than max_frame_size: refused before anything is written.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("transport", "protocol"), COMBOS)
def test_oversizedCallIsRefusedBeforeAnythingIsWritten(transport: str, protocol: str) -> None:
    peer = Peer(transport, protocol, max_frame_size=1024)
    waiting = peer.client.getData("small")
    [seqid] = peer.seqids()
    big = peer.client.getData("x" * 2000)
    oneway = peer.client.fire("y" * 2000)
    errors = [outcome(big), outcome(oneway)]
    for error in errors:
        assert isinstance(error, TTransportException), error
        assert error.type == TTransportException.SIZE_LIMIT
        assert "max_frame_size of 1024" in str(error), error
        assert "nothing was sent" in str(error)
    size = len(peer.codec.encode("getData", TMessageType.CALL, 2, METHODS["getData"].args(
        "x" * 2000)))
    assert f"getData call is {size} bytes" in str(errors[0])
    assert peer.wire.value() == b""
    assert peer.proto.pending == 1 and peer.open
    peer.reply("getData", seqid, success="small!")
    assert outcome(waiting) == "small!"
    after = peer.client.getData("after")
    [seqid] = peer.seqids()
    peer.reply("getData", seqid, success="after!")
    assert outcome(after) == "after!"


# ---------------------------------------------------------------------------
# A reply over max_frame_size on a framed stream: skipped, that call fails.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("piece", [None, 1, 7, 100, 3000])
def test_oversizedFramedReplyFailsOnlyItsCall(protocol: str, piece: int | None) -> None:
    peer = Peer("framed", protocol, max_frame_size=1024)
    big, small = peer.client.getData("big"), peer.client.getData("small")
    seqBig, seqSmall = peer.seqids()
    oversized = peer.frame(peer.encode("getData", seqBig, success="z" * 20000))
    peer.send(oversized + peer.frame(peer.encode("getData", seqSmall, success="small!")),
              piece)
    error = outcome(big)
    assert isinstance(error, TTransportException), error
    assert error.type == TTransportException.SIZE_LIMIT
    message = str(error)
    assert "max_frame_size" in message and "1024" in message, message
    assert f"{len(oversized) - 4} bytes" in message, message
    assert outcome(small) == "small!"
    assert peer.open and peer.proto.pending == 0
    # The same connection carries on.
    after = peer.client.getData("after")
    [seqid] = peer.seqids()
    peer.reply("getData", seqid, success="after!")
    assert outcome(after) == "after!"


def test_oversizedFramedReplyIsNotBuffered() -> None:
    peer = Peer("framed", "binary", max_frame_size=1024)
    big, other = peer.client.getData("big"), peer.client.getData("other")
    seqBig, seqOther = peer.seqids()
    oversized = peer.frame(peer.encode("getData", seqBig, success="z" * 200000))
    # The call fails as soon as the frame's header is read, not at its end.
    peer.send(oversized[:5000], 1000)
    assert isinstance(outcome(big), TTransportException)
    held = 0
    for start in range(5000, len(oversized) - 1, 4096):
        peer.send(oversized[start:min(start + 4096, len(oversized) - 1)])
        framer: Any = peer.proto.framer
        held = max(held, len(framer.held))
    assert held < 1024
    assert not other.called and peer.open
    peer.send(oversized[-1:] + peer.frame(peer.encode("getData", seqOther, success="ok")))
    assert outcome(other) == "ok"


def test_oversizedFramedReplyWithAnUnreadableHeaderClosesAndSaysWhy() -> None:
    peer = Peer("framed", "binary", max_frame_size=1024)
    first, second = peer.client.getData("a"), peer.client.getData("b")
    peer.requests()
    peer.send(_I32.pack(5000) + b"\x80\x01\x00\x02" + b"\xff" * 4996)
    assert not peer.open
    peer.lose()
    for d in (first, second):
        error = outcome(d)
        assert isinstance(error, TTransportException), error
        assert "5000 bytes" in str(error) and "max_frame_size" in str(error), error


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_oversizedReplyIsSkippedWhenFramedAndClosesWhenNot(protocol: str) -> None:
    # Framed, the length says where the next reply starts: only its call fails.
    framed = Peer("framed", protocol, max_frame_size=1024)
    big, other = framed.client.getData("a"), framed.client.getData("b")
    seqid, _ = framed.seqids()
    framed.reply("getData", seqid, success="z" * 5000)
    assert isinstance(outcome(big), TTransportException)
    assert not other.called and framed.open
    # Unframed, nothing says where it ends short of reading it: all fail.
    unframed = Peer("buffered", protocol, max_frame_size=1024)
    first, second = unframed.client.getData("a"), unframed.client.getData("b")
    seqid, _ = unframed.seqids()
    unframed.send(unframed.encode("getData", seqid, success="z" * 5000), 512)
    assert not unframed.open
    unframed.lose()
    for d in (first, second):
        error = outcome(d)
        assert isinstance(error, TTransportException), error
        # The scanner may meet the string before the message's end: whichever
        # limit is met first is named, with its value.
        assert "refused" in str(error), error
        assert "1024 (max_" in str(error) or "1024 bytes (max_" in str(error), error


# ---------------------------------------------------------------------------
# A reply of another message type or another method: that call fails.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("transport", "protocol"), COMBOS)
@pytest.mark.parametrize("mtype", [TMessageType.CALL, TMessageType.ONEWAY, 7])
def test_wrongMessageTypeFailsOnlyThatCall(transport: str, protocol: str, mtype: int) -> None:
    peer = Peer(transport, protocol)
    wrong, right = peer.client.getData("a"), peer.client.getData("b")
    seqWrong, seqRight = peer.seqids()
    peer.send(peer.frame(peer.encode("getData", seqWrong, mtype, success="stolen")))
    message = applicationError(wrong, TApplicationException.INVALID_MESSAGE_TYPE)
    assert "getData" in message and str(mtype) in message, message
    assert not right.called and peer.open
    peer.reply("getData", seqRight, success="b!")
    assert outcome(right) == "b!"


@pytest.mark.parametrize(("transport", "protocol"), COMBOS)
def test_wrongMethodNameFailsOnlyThatCall(transport: str, protocol: str) -> None:
    peer = Peer(transport, protocol)
    wrong, right = peer.client.getData("a"), peer.client.getData("b")
    seqWrong, seqRight = peer.seqids()
    # A reply to another method, whose result happens to fit getData's.
    peer.send(peer.frame(peer.encode("echo", seqWrong, success="stolen")))
    message = applicationError(wrong, TApplicationException.WRONG_METHOD_NAME)
    assert "getData" in message and "echo" in message, message
    assert not right.called and peer.open
    peer.reply("getData", seqRight, success="b!")
    assert outcome(right) == "b!"


def test_wrongMethodNameInTheErrorIsBounded() -> None:
    peer = Peer()
    wrong = peer.client.getData("a")
    [seqid] = peer.seqids()
    peer.send(peer.frame(peer.encode("n" * 100000, seqid, method="getData", success="x")))
    message = applicationError(wrong, TApplicationException.WRONG_METHOD_NAME)
    assert len(message) < 500


def test_multiplexedRepliesMayCarryTheServiceOrNotButNotAnotherMethod() -> None:
    clock = Clock()
    proto = ClientFactory(Echo, clock=clock, service_name="Echo").buildProtocol(None)
    wire = StringTransport()
    proto.makeConnection(wire)
    client: Any = proto.client
    calls = [client.getData(str(i)) for i in range(3)]
    codec = Codec("binary")
    sent = [codec.readHeader(m) for m in makeFramer("framed", "binary", Limits()).feed(
        wire.value())]
    assert [name for _, name, _, _ in sent] == ["Echo:getData"] * 3
    for (_, _, _, seqid), replyName in zip(sent, ["Echo:getData", "getData", "Echo:echo"]):
        reply = codec.encode(replyName, TMessageType.REPLY, seqid,
                             resultStruct("getData")(success=replyName))
        proto.dataReceived(_I32.pack(len(reply)) + reply)
    assert [outcome(d) for d in calls[:2]] == ["Echo:getData", "getData"]
    message = applicationError(calls[2], TApplicationException.WRONG_METHOD_NAME)
    assert "'Echo:echo'" in message, message


# ---------------------------------------------------------------------------
# A well-framed reply whose body cannot be decoded.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_undecodableFramedBodyFailsOnlyThatCallAndSaysWhy(protocol: str) -> None:
    peer = Peer("framed", protocol)
    broken, other = peer.client.getData("a"), peer.client.getData("b")
    seqBroken, seqOther = peer.seqids()
    reply = peer.encode("getData", seqBroken, success="hello")
    peer.send(peer.frame(reply[:-4]))  # the result struct cut short inside its frame
    message = applicationError(broken, TApplicationException.PROTOCOL_ERROR)
    assert message.startswith("malformed reply to getData: ")
    detail = message.removeprefix("malformed reply to getData: ")
    # Say what was wrong, even where the decoder gives no message.
    assert detail.strip() and "(" in detail, message
    if protocol != "json":
        assert "truncated reply body" in detail and "EOFError" in detail, message
    assert not other.called and peer.open
    peer.reply("getData", seqOther, success="b!")
    assert outcome(other) == "b!"
    after = peer.client.getData("after")
    [seqid] = peer.seqids()
    peer.reply("getData", seqid, success="after!")
    assert outcome(after) == "after!"


def test_undecodableUnframedBodyClosesAndSaysWhy() -> None:
    # The scanner finds where it ends (its brackets and quotes balance), but
    # the decoder finds a number where the string should be.
    peer = Peer("buffered", "json")
    broken, other = peer.client.getData("a"), peer.client.getData("b")
    seqBroken, _ = peer.seqids()
    peer.send(f'[1,"getData",2,{seqBroken},{{"0":{{"str":123}}}}]'.encode())
    message = applicationError(broken, TApplicationException.PROTOCOL_ERROR)
    assert "TProtocolException INVALID_DATA" in message, message
    assert not peer.open
    peer.lose()
    error = outcome(other)
    assert isinstance(error, TTransportException), error
    assert "malformed reply to getData" in str(error), error
    assert "TProtocolException INVALID_DATA" in str(error), error


def test_emptyProtocolErrorMessagesNameTheirCode() -> None:
    assert whyUndecodable(TProtocolException(TProtocolException.SIZE_LIMIT)) == (
        "no detail given (TProtocolException SIZE_LIMIT)")
    assert whyUndecodable(EOFError()) == "truncated reply body (EOFError)"
    assert whyUndecodable(ValueError("x" * 10000)).endswith("(ValueError)")
    assert len(whyUndecodable(ValueError("x" * 10000))) < 400


# ---------------------------------------------------------------------------
# Seqids: a late reply after the counter wrapped never reaches a newer call.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("abandon", ["timeout", "cancel"])
def test_lateReplyAfterTheSeqidsWrapNeverReachesANewerCall(abandon: str) -> None:
    peer = Peer()
    old = peer.client.getData("old", timeout=1)
    [seqOld] = peer.seqids()
    assert seqOld == 1
    if abandon == "timeout":
        peer.clock.advance(1)
    else:
        old.cancel()
    assert isinstance(outcome(old), (TTransportException, CancelledError))
    held = peer.client.getData("held")  # pending across the wrap
    [seqHeld] = peer.seqids()
    peer.proto._seqid = 0x7FFFFFFF - 1
    calls = [peer.client.getData(str(i)) for i in range(3)]
    seqids = peer.seqids()
    assert seqids == [0x7FFFFFFF, 3, 4]
    assert seqOld not in seqids and seqHeld not in seqids
    peer.reply("getData", seqOld, success="stale")  # the old call's late reply: dropped
    assert not any(d.called for d in calls)
    for d, seqid in zip(calls, seqids):
        peer.reply("getData", seqid, success=f"fresh {seqid}")
        assert outcome(d) == f"fresh {seqid}"
    peer.reply("getData", seqHeld, success="held!")
    assert outcome(held) == "held!"
    # Its late reply came: seqid 1 may be used again.
    peer.proto._seqid = 0
    peer.client.getData("again")
    assert peer.seqids() == [1]


def test_abandonedSeqidsAreRememberedWithinABound(monkeypatch: pytest.MonkeyPatch) -> None:
    from txthrift import _client

    monkeypatch.setattr(_client, "_MAX_ABANDONED", 8)
    peer = Peer()
    for _ in range(20):
        peer.client.getData("x", timeout=1)
    peer.clock.advance(1)
    assert peer.proto.pending == 0
    assert len(peer.proto._abandoned) == 8
    assert sorted(peer.proto._abandoned) == list(range(13, 21))


def test_lostConnectionForgetsAbandonedSeqids() -> None:
    peer = Peer()
    peer.client.getData("x", timeout=1)
    peer.clock.advance(1)
    peer.lose()
    assert not peer.proto._abandoned


# ---------------------------------------------------------------------------
# Real sockets: a real server, and a hand-written one sending what servers
# should not.
# ---------------------------------------------------------------------------


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest_twisted.ensureDeferred
async def test_realServerOversizedCallAndReplyFailAloneAndOthersCarryOn() -> None:
    reactor = _reactor()
    port: Any = await txthrift.serve(reactor, LOCAL, Hardened(reactor))
    client: Any = await bounded(txthrift.connect(
        reactor, f"tcp:host=127.0.0.1:port={port.getHost().port}", Echo, timeout=WAIT,
        max_frame_size=4096), WAIT)
    try:
        inFlight = [client.slow(0.05, f"slow {i}") for i in range(3)]
        inFlight.append(client.getData("before"))
        big = client.getData("x" * 5000)  # over our own limit: never sent
        error = outcome(big)
        assert isinstance(error, TTransportException), error
        assert "max_frame_size" in str(error) and "4096" in str(error)
        bigReply = client.blob(64)  # 16 KiB back, over our limit: skipped
        inFlight.append(client.echo("e", 3))
        with pytest.raises(TTransportException, match="max_frame_size of 4096"):
            await bounded(bigReply, WAIT)
        got = [await bounded(d, WAIT) for d in inFlight]
        assert got == ["slow 0", "slow 1", "slow 2", "before from server 1024", "eee"]
        for i in range(3):
            assert await bounded(client.add(i, 1), WAIT) == i + 1
        assert client.protocol.pending == 0
        assert len(port.factory.connections) == 1
    finally:
        await client.close()
        await port.stopListening()


class _BadServer(Protocol):
    """
    Answers getData(input) by what input asks for: C{"big"} a reply far over
    the client's limit, C{"type"} a reply of message type CALL, C{"name"} a
    reply named C{add}, C{"cut"} a reply cut short inside its frame; any
    other input its normal reply.
    """

    transport: ITransport

    def __init__(self) -> None:
        self.framer = makeFramer("framed", "binary", Limits())
        self.codec = Codec("binary")

    def dataReceived(self, data: bytes) -> None:
        for message in self.framer.feed(data):
            iprot, name, _, seqid = self.codec.readHeader(message)
            args = METHODS[name].args()
            self.codec.readBody(iprot, args)
            self.transport.write(frameFor(self.framer, self.answer(name, seqid, args.input)))

    def answer(self, name: str, seqid: int, value: str) -> bytes:
        def encode(replyName: str = name, mtype: int = TMessageType.REPLY,
                   success: str = value + "!") -> bytes:
            return self.codec.encode(replyName, mtype, seqid,
                                     resultStruct("getData")(success=success))
        if value == "big":
            return encode(success="z" * (1 << 20))
        if value == "type":
            return encode(mtype=TMessageType.CALL)
        if value == "name":
            return encode(replyName="echo")
        if value == "cut":
            return encode()[:-4]
        return encode()


@pytest_twisted.ensureDeferred
async def test_realSocketEachBadReplyFailsOnlyItsCall() -> None:
    reactor = _reactor()
    port = await bounded(Deferred.fromCoroutine(_listen(reactor)), WAIT)
    client: Any = await bounded(txthrift.connect(
        reactor, f"tcp:host=127.0.0.1:port={port.getHost().port}", Echo, timeout=WAIT,
        max_frame_size=64 * 1024), WAIT)
    try:
        inputs = ["a", "big", "b", "type", "c", "name", "d", "cut", "e"]
        calls = [client.getData(value) for value in inputs]
        outcomes = []
        for d in calls:
            try:
                outcomes.append(await bounded(d, WAIT))
            except (TTransportException, TApplicationException) as error:
                outcomes.append(type(error).__name__ + " " + str(error.type))
        assert outcomes == [
            "a!", f"TTransportException {TTransportException.SIZE_LIMIT}", "b!",
            f"TApplicationException {TApplicationException.INVALID_MESSAGE_TYPE}", "c!",
            f"TApplicationException {TApplicationException.WRONG_METHOD_NAME}", "d!",
            f"TApplicationException {TApplicationException.PROTOCOL_ERROR}", "e!",
        ]
        assert await bounded(client.getData("last"), WAIT) == "last!"
    finally:
        await client.close()
        await port.stopListening()


async def _listen(reactor: Any) -> Any:
    from twisted.internet.endpoints import serverFromString

    return await serverFromString(reactor, LOCAL).listen(Factory.forProtocol(_BadServer))


# ---------------------------------------------------------------------------
# Framed binary replies are cut, and their headers read, a read at a time
# (txthrift._speedups.cutReplies, or its Python twin): with the same outcome
# for each call as one message at a time, wherever the reads end.
# ---------------------------------------------------------------------------

MAX_FRAME, MAX_NAME = 1000, 32


def strict(name: bytes, seqid: int, body: bytes = b"\x00", mtype: int = TMessageType.REPLY,
           version: bytes = b"\x80\x01", nameLength: int | None = None) -> bytes:
    """
    A strict binary message: the version word, a byte nobody reads, the
    type, the name's length and bytes, the seqid, the body.
    """
    length = len(name) if nameLength is None else nameLength
    return version + bytes((0, mtype)) + _I32.pack(length) + name + _I32.pack(seqid) + body


def lengthy(message: bytes, length: int | None = None) -> bytes:
    return _I32.pack(len(message) if length is None else length) + message


GOOD = lengthy(strict(b"getData", 7, b"\x0b\x00\x00\x00\x00\x00\x00\x00"))
CUT_INPUTS = {
    "nothing": b"",
    "a length cut short": GOOD[:3],
    "one": GOOD,
    "three": GOOD * 3,
    "then a frame begun": GOOD * 2 + GOOD[:-1],
    "a length of 0": lengthy(b"", 0) + GOOD,
    "a negative length": lengthy(GOOD[4:], -1),
    "a length over max_frame_size": lengthy(GOOD[4:], MAX_FRAME + 1) + GOOD,
    "a length of max_frame_size": lengthy(strict(b"x", 1, b"\x00" * (MAX_FRAME - 13))),
    "another version": lengthy(strict(b"getData", 7, version=b"\x80\x02")),
    "no version": lengthy(strict(b"getData", 7, version=b"\x00\x00")),
    "the unread byte set": lengthy(b"\x80\x01\x07\x02" + strict(b"getData", 7)[4:]),
    "a name that is not UTF-8": GOOD + lengthy(strict(b"get\xffData", 7)) + GOOD,
    "a name over max_name": lengthy(strict(b"x" * (MAX_NAME + 1), 7)),
    "a name of max_name": lengthy(strict("é".encode() * (MAX_NAME // 2), 7)),
    "a negative name length": lengthy(strict(b"getData", 7, nameLength=-1)),
    "a name past the frame": lengthy(strict(b"getData", 7, b"", nameLength=8)),
    "a seqid past the frame": lengthy(strict(b"getData", 7, b"")[:-1]),
    "no body": lengthy(strict(b"getData", 7, b"")),
    "an empty name": lengthy(strict(b"", 3)),
    "shorter than a header": lengthy(b"\x80\x01\x00\x02\x00\x00\x00\x00"),
    "seqids at the ends of i32": lengthy(strict(b"a", -0x80000000)) + lengthy(
        strict(b"a", 0x7FFFFFFF)),
    "every type byte": b"".join(lengthy(strict(b"a", 1, mtype=t)) for t in (0, 1, 3, 4, 255)),
    "then garbage": GOOD + b"\xff" * 9,
}


@pytest.mark.parametrize("data", CUT_INPUTS.values(), ids=CUT_INPUTS.keys())
def test_repliesAreCutInCAsInPython(data: bytes) -> None:
    from txthrift._client import _cutRepliesInPython

    cutReplies = compiled("cutReplies")
    inC: list[tuple[int, int, str, bytes, int]] = []
    inPython: list[tuple[int, int, str, bytes, int]] = []
    taken = cutReplies(data, MAX_FRAME, MAX_NAME, inC)
    assert taken == _cutRepliesInPython(data, MAX_FRAME, MAX_NAME, inPython)
    assert inC == inPython
    assert taken == sum(4 + len(message) for _, _, _, message, _ in inC)
    for seqid, mtype, name, message, start in inC:
        # What the codec reads of the same message.
        _, codecName, codecType, codecSeqid = Codec("binary", Limits(
            max_frame_size=MAX_FRAME, max_string_length=MAX_NAME)).readHeader(message)
        assert (codecName, codecType, codecSeqid) == (name, mtype, seqid)
        assert start == 12 + len(name.encode())


@given(st.binary(max_size=80), st.integers(0, 3))
@settings(max_examples=300, deadline=None)
def test_anyBytesAreCutInCAsInPython(tail: bytes, good: int) -> None:
    from txthrift._client import _cutRepliesInPython

    cutReplies = compiled("cutReplies")
    for data in (GOOD * good + tail, GOOD * good + lengthy(tail),
                 GOOD * good + lengthy(b"\x80\x01" + tail)):
        inC: list[tuple[int, int, str, bytes, int]] = []
        inPython: list[tuple[int, int, str, bytes, int]] = []
        assert cutReplies(data, MAX_FRAME, MAX_NAME, inC) == _cutRepliesInPython(
            data, MAX_FRAME, MAX_NAME, inPython)
        assert inC == inPython


def test_cutRepliesRefusesBadArguments() -> None:
    cutReplies = compiled("cutReplies")
    with pytest.raises(TypeError):
        cutReplies(GOOD, MAX_FRAME, MAX_NAME)
    with pytest.raises(TypeError):
        cutReplies(GOOD, MAX_FRAME, MAX_NAME, ())
    with pytest.raises(TypeError):
        cutReplies("text", MAX_FRAME, MAX_NAME, [])
    with pytest.raises(TypeError):
        cutReplies(GOOD, None, MAX_NAME, [])


@pytest.fixture(params=["compiled", "python"])
def cutting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """
    Framed binary clients made while this is in use cut replies with the C
    loop or with its Python twin.
    """
    from txthrift import _client

    if request.param == "compiled":
        monkeypatch.setattr(_client, "cutReplies", compiled("cutReplies"))
    else:
        monkeypatch.setattr(_client, "cutReplies", _client._cutRepliesInPython)
    return str(request.param)


@pytest.mark.parametrize("piece", [None, 1, 5, 23, 64])
def test_repliesInAnyReadsAreEachAnswered(cutting: str, piece: int | None) -> None:
    peer = Peer()
    calls = [peer.client.getData(str(i)) for i in range(6)]
    seqids = peer.seqids()
    # In another order than the calls', one answer declared exception among them.
    data = b"".join(peer.frame(peer.encode("getData", seqid, success=f"{seqid}!"))
                    for seqid in reversed(seqids[1:]))
    data += peer.frame(peer.encode("getData", seqids[0], mtype=TMessageType.EXCEPTION,
                                   method="getData"))
    peer.send(data, piece)
    for d, seqid in zip(calls[1:], seqids[1:]):
        assert outcome(d) == f"{seqid}!"
    assert isinstance(outcome(calls[0]), TApplicationException)
    assert peer.open and peer.proto.pending == 0


def test_aReplyToNoCallAmongOthersIsDroppedAlone(cutting: str,
                                                  logged: list[dict[str, Any]]) -> None:
    peer = Peer()
    first, second = peer.client.getData("a"), peer.client.getData("b")
    seqFirst, seqSecond = peer.seqids()
    peer.send(b"".join(peer.frame(peer.encode("getData", seqid, success=f"{seqid}!"))
                       for seqid in (seqFirst, 999, seqSecond)))
    assert (outcome(first), outcome(second)) == (f"{seqFirst}!", f"{seqSecond}!")
    assert any("no pending call (seqid 999)" in str(event.get("log_format", "")) or
               event.get("seqid") == 999 for event in logged), logged
    assert peer.open


def test_aCallbackClosingTheConnectionFailsTheRestOfItsRead(cutting: str) -> None:
    peer = Peer()
    calls = [peer.client.getData(str(i)) for i in range(3)]
    seqids = peer.seqids()
    def lose(result: str) -> str:
        peer.lose()
        return result

    calls[0].addCallback(lose)
    peer.send(b"".join(peer.frame(peer.encode("getData", seqid, success="x"))
                       for seqid in seqids))
    assert outcome(calls[0]) == "x"
    for d in calls[1:]:
        error = outcome(d)
        assert isinstance(error, TTransportException), error
        assert error.type == TTransportException.NOT_OPEN


def test_aReadBroughtInByACallbackFollowsTheBytesBeforeIt(cutting: str) -> None:
    # The first read ends inside the third reply; the first caller's callback
    # brings in the rest (as a synchronous in-memory peer may).
    peer = Peer()
    calls = [peer.client.getData(str(i)) for i in range(4)]
    seqids = peer.seqids()
    data = b"".join(peer.frame(peer.encode("getData", seqid, success=f"{seqid}!"))
                    for seqid in seqids)
    cut = len(data) // 2 + 3
    def bringTheRest(result: str) -> str:
        peer.send(data[cut:])
        return result

    calls[0].addCallback(bringTheRest)
    peer.send(data[:cut])
    assert [outcome(d) for d in calls] == [f"{seqid}!" for seqid in seqids]
    assert peer.open and peer.proto.pending == 0


def test_aReplyNamedInBadUTF8AfterGoodOnesClosesAndSaysWhy(cutting: str) -> None:
    peer = Peer()
    good, bad = peer.client.getData("a"), peer.client.getData("b")
    seqGood, seqBad = peer.seqids()
    peer.send(peer.frame(peer.encode("getData", seqGood, success="a!")) +
              lengthy(strict(b"get\xffData", seqBad)))
    assert outcome(good) == "a!"
    assert not peer.open
    assert "unreadable reply header" in (peer.proto.refusal or "")
    peer.lose()
    error = outcome(bad)
    assert isinstance(error, TTransportException), error
    assert "unreadable reply header" in str(error)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("body", [
    Echo.getData_args("small"), Echo.getData_args("x" * 5000), Echo.getData_args(),
    Echo.echo_args(text="é" * 3000, repeat=2), Echo.echo_args(text="t", repeat=-1)],
    ids=["small", "big", "unset", "big-with-another", "two-small"])
def test_aMethodsEncoderWritesWhatTheCodecWrites(protocol: str, body: Any) -> None:
    # What a client's calls of one method are encoded by, its lookups made
    # once: the same bytes as the codec's encode, big strings or not.
    codec = Codec(protocol)
    name = type(body).__name__.removesuffix("_args")
    encoder = codec.encoder(name, TMessageType.CALL, type(body))
    for seqid in (1, 0x7FFFFFFF, -5):
        assert encoder(seqid, body) == codec.encode(name, TMessageType.CALL, seqid, body)
