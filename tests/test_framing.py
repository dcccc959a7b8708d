"""
Tests for L{txthrift._framing} and L{txthrift._scanning}: cutting streams
into messages.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import pytest
import pytest_twisted
from hypothesis import example, given, settings
from hypothesis import strategies as st
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TMessageType
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TBufferedTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread

from tests._handlers import SUFFIX, EchoBasics
from tests._hardening import frameFor
from tests._speedups import NOT_BUILT
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Item
from txthrift import (
    Codec,
    FrameError,
    Limits,
    ServerFactory,
    ThriftMessageProtocol,
    _scanning,
    serve,
)
from txthrift._framing import _Framed, detectFramer, makeFramer

try:
    from txthrift import _speedups
    from txthrift._speedups import skipFlat as compiledSkipFlat
except ImportError:  # pragma: no cover - depends on the install
    compiledSkipFlat = None  # type: ignore[assignment]

PROTOCOLS = ["binary", "compact", "json"]


def encode(protocol: str, item: Item, seqid: int = 1) -> bytes:
    return Codec(protocol).encode("item", TMessageType.CALL, seqid, Echo.item_args(it=item))


ITEMS = [
    Item(id=1),
    Item(id=-5, name="", values=[], counts={}),
    Item(id=2**31 - 1, name="snow ☃ and \"quotes\" \\ [brackets] {braces}",
         values=[0, -1, 2**63 - 1], counts={"a": 1, "": -2}),
    Item(id=7, name="x" * 5000, values=list(range(300)), counts={str(i): i for i in range(40)}),
]

items = st.builds(
    Item,
    id=st.integers(-(2**31), 2**31 - 1),
    name=st.none() | st.text(max_size=40),
    values=st.none() | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20),
    counts=st.none() | st.dictionaries(st.text(max_size=8), st.integers(-(2**31), 2**31 - 1),
                                       max_size=8),
)


class Collector(ThriftMessageProtocol):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.messages: list[bytes] = []

    def messageReceived(self, message: bytes) -> None:
        self.messages.append(message)


WALKS = ["compiled", "python"]


@contextmanager
def walking(how: str) -> Iterator[None]:
    """
    Walk with the C walks (of whole messages and of flat containers) or with
    the Python ones they fall back to.
    """
    walk = {"compiled": compiledSkipFlat, "python": _scanning._skipFlatInPython}[how]
    if walk is None:
        pytest.skip(NOT_BUILT)
    saved = _scanning._skipFlat
    _scanning._skipFlat = walk
    try:
        yield
    finally:
        _scanning._skipFlat = saved


@pytest.fixture(params=WALKS)
def walker(request: pytest.FixtureRequest) -> Iterator[str]:
    with walking(request.param):
        yield request.param


def connected(transport: str, protocol: str, limits: Limits | None = None) -> Collector:
    proto = Collector(transport, protocol, limits)
    proto.makeConnection(StringTransport())
    return proto


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("transport", ["framed", "buffered"])
def test_messagesCutAtTheirBoundariesWhateverTheChunking(transport: str, protocol: str,
                                                        walker: str) -> None:
    messages = [encode(protocol, item, seqid) for seqid, item in enumerate(ITEMS, 1)]
    framer = makeFramer(transport, protocol, Limits())
    stream = b"".join(frameFor(framer, m) for m in messages)
    for chunk in (1, 3, 7, 4096, len(stream)):
        proto = connected(transport, protocol)
        for start in range(0, len(stream), chunk):
            proto.dataReceived(stream[start:start + chunk])
        assert proto.messages == messages, chunk
        assert {type(m) for m in proto.messages} == {bytes}
        assert proto.transport.connected  # type: ignore[union-attr]


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 20000), min_size=1, max_size=6), data=st.data())
def test_framesComeWholeWhereverTheReadsEnd(sizes: list[int], data: st.DataObject) -> None:
    """
    Frames of any size come out whole however the reads cut the stream,
    and in between what is held is the stream after the last whole frame.
    """
    messages = [bytes([n % 251 + 1]) * size for n, size in enumerate(sizes)]
    stream = b"".join(struct.pack(">i", len(m)) + m for m in messages)
    points = data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=12))
    edges = [0, *sorted(points), len(stream)]
    framer = _Framed("binary", Limits())
    got: list[bytes] = []
    for start, end in pairwise(edges):
        got += framer.feed(stream[start:end])
        whole = sum(4 + len(m) for m in got)
        assert framer.held == stream[whole:end]
        assert framer.buffered() == end - whole
    assert got == messages
    assert {type(m) for m in got} == {bytes}


def test_aBigFrameIsGatheredFromThePiecesAsTheyCame() -> None:
    """
    The reads of a big frame are kept as they came and joined once, when it
    is whole: not added each to a buffer that grows and is copied again
    (gathering 1 MiB in 64 KiB reads took 0.8 ms that way, 0.05 ms this).
    """
    message = bytes(range(256)) * 4096
    stream = struct.pack(">i", len(message)) + message + struct.pack(">i", 5) + b"\x80\x01"
    pieces = [stream[start:start + 65536] for start in range(0, len(stream), 65536)]
    framer = _Framed("binary", Limits())
    for piece in pieces[:-1]:
        assert framer.feed(piece) == []
    assert len(framer._parts) == len(pieces) - 1
    assert all(held is piece for held, piece in zip(framer._parts, pieces))
    assert framer.feed(pieces[-1]) == [message]
    assert framer.held == struct.pack(">i", 5) + b"\x80\x01"


def test_aFrameSentAByteAtATimeIsHeldInOnePiece() -> None:
    """
    Small reads of a frame are kept together: one that trickles in a byte
    at a time holds its bytes, not an object for each.
    """
    message = b"\x80\x01" + b"x" * 9998
    stream = struct.pack(">i", len(message)) + message
    framer = _Framed("binary", Limits())
    for at in range(len(stream) - 1):
        assert framer.feed(stream[at:at + 1]) == []
    assert len(framer._parts) == 1 and framer.buffered() == len(stream) - 1
    assert framer.feed(stream[-1:]) == [message]
    assert framer.buffered() == 0


@settings(max_examples=120, deadline=None)
@given(item=items, protocol=st.sampled_from(PROTOCOLS), cut=st.integers(1, 50),
       how=st.sampled_from(WALKS if compiledSkipFlat is not None else ["python"]))
def test_unframedScanMatchesApacheEncoding(item: Item, protocol: str, cut: int,
                                           how: str) -> None:
    message = encode(protocol, item)
    with walking(how):
        proto = connected("buffered", protocol)
        stream = message + message
        for start in range(0, len(stream), cut):
            proto.dataReceived(stream[start:start + cut])
    assert proto.messages == [message, message]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("transport", ["framed", "buffered"])
def test_autoDetectsTransportAndProtocol(transport: str, protocol: str) -> None:
    message = encode(protocol, ITEMS[2])
    proto = connected("auto", "auto")
    data = frameFor(makeFramer(transport, protocol, Limits()), message)
    for i in range(len(data)):
        proto.dataReceived(data[i:i + 1])
    assert (proto.transportName, proto.protocolName) == (transport, protocol)
    assert proto.messages == [message]


def test_autoRefusesAProtocolOtherThanTheFixedOne() -> None:
    with pytest.raises(FrameError, match="expected the binary protocol, got compact"):
        detectFramer(encode("compact", ITEMS[0]), "auto", "binary", Limits())


def test_unframedNonStrictBinaryWhenBinaryIsFixed() -> None:
    # The unversioned header: name length, name, type byte, seqid.
    body = Codec("binary").encode("x", 1, 1, Echo.item_args(it=ITEMS[3]))[12 + 1:]
    message = struct.pack(">i", 4) + b"item" + bytes([1]) + struct.pack(">i", 9) + body
    proto = connected("buffered", "binary")
    proto.dataReceived(message[:10])
    proto.dataReceived(message[10:])
    assert proto.messages == [message]


def test_oversizedFrameClosesWithoutBuffering() -> None:
    proto = connected("framed", "binary", Limits(max_frame_size=1024))
    proto.dataReceived(struct.pack(">i", 0x7FFFFFFF) + b"\x80\x01")
    assert proto.transport.disconnecting  # type: ignore[union-attr]
    assert proto.messages == []
    assert proto.framer.buffered() < 16  # type: ignore[union-attr]


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_oversizedFrameLengthSplitAcrossReadsIsRefused(cut: int) -> None:
    # The length arrives in pieces, after a whole frame, as in a pipelined stream.
    good = frameFor(makeFramer("framed", "binary", Limits()), encode("binary", ITEMS[0]))
    stream = good + struct.pack(">i", 0x7FFFFFFF) + b"\x80\x01" * 100
    proto = connected("framed", "binary", Limits(max_frame_size=1024))
    proto.dataReceived(stream[:len(good) + cut])
    assert not proto.transport.disconnecting  # type: ignore[union-attr]
    proto.dataReceived(stream[len(good) + cut:])
    assert proto.transport.disconnecting  # type: ignore[union-attr]
    assert proto.messages == [good[4:]]
    assert proto.framer.buffered() < 256  # type: ignore[union-attr]


@pytest.mark.parametrize("length", [0, -1, -(2**31)])
def test_emptyOrNegativeFrameLengthClosesTheConnection(length: int) -> None:
    proto = connected("framed", "binary")
    proto.dataReceived(struct.pack(">i", length))
    assert proto.transport.disconnecting  # type: ignore[union-attr]


def test_dataAfterAFrameErrorIsIgnored() -> None:
    proto = connected("framed", "binary")
    good = frameFor(makeFramer("framed", "binary", Limits()), encode("binary", ITEMS[0]))
    proto.dataReceived(struct.pack(">i", -1))
    proto.dataReceived(good)
    assert proto.messages == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unframedMessageOverTheLimitIsRefusedEarly(protocol: str, walker: str) -> None:
    message = encode(protocol, Item(id=1, name="y" * 10_000))
    proto = connected("buffered", protocol, Limits(max_frame_size=4096))
    for start in range(0, len(message), 1024):
        proto.dataReceived(message[start:start + 1024])
        if proto.transport.disconnecting:  # type: ignore[union-attr]
            break
    assert proto.transport.disconnecting  # type: ignore[union-attr]
    assert proto.messages == []
    # Binary and compact know from the string header; JSON once it has read past the limit.
    assert start < 8192


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_unframedStringLengthOverTheLimitIsRefused(protocol: str, walker: str) -> None:
    message = encode(protocol, Item(id=1, name="z" * 300))
    proto = connected("buffered", protocol, Limits(max_string_length=100))
    proto.dataReceived(message)
    assert proto.transport.disconnecting  # type: ignore[union-attr]


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_unframedContainerLengthOverTheLimitIsRefused(protocol: str, walker: str) -> None:
    message = encode(protocol, Item(id=1, counts={str(i): i for i in range(20)}))
    proto = connected("buffered", protocol, Limits(max_container_length=10))
    proto.dataReceived(message)
    assert proto.transport.disconnecting  # type: ignore[union-attr]


def test_deepNestingIsRefused() -> None:
    # A binary struct nesting struct fields 100 deep, then never closing.
    header = Codec("binary").encode("item", 1, 1, Echo.sayHello_args())[:-1]
    nested = header + bytes([12, 0, 1]) * 100
    proto = connected("buffered", "binary", Limits(max_depth=32))
    proto.dataReceived(nested)
    assert proto.transport.disconnecting  # type: ignore[union-attr]


@pytest.mark.parametrize("first", [b"\x00\x00\x00\x05\x00", b"GET / HTTP/1.1\r\n", b"\x81"])
def test_autoRefusesWhatIsNotThrift(first: bytes) -> None:
    proto = connected("auto", "auto")
    proto.dataReceived(first)
    assert proto.transport.disconnecting  # type: ignore[union-attr]


class ScanCounter:
    """
    Feeds one big unframed binary message in 4 KiB pieces, counting the
    scanner's calls (scans, and walks over pieces), the bytes it steps over
    and the bytes of the buffers it is handed to scan.
    """

    def __init__(self, message: bytes) -> None:
        self.proto = connected("buffered", "binary")
        self.scans = self.steps = self.walks = self.scanned = 0
        scanner = self.proto.framer._scanner  # type: ignore[union-attr]
        original = scanner.scan

        def counting(buffer: bytearray) -> int | None:
            before = scanner._pos
            self.scanned += len(buffer)
            result = original(buffer)
            self.scans += 1
            self.steps += (result if result is not None else scanner._pos) - before
            return result

        walkOriginal = scanner.walkPieces

        def countingWalk(pieces: list[bytes]) -> tuple[int, int]:
            before = scanner._pos
            done, passed = walkOriginal(pieces)
            self.walks += 1
            self.steps += passed + scanner._pos - before
            return done, passed

        scanner.scan = counting
        scanner.walkPieces = countingWalk
        self.pieces = range(0, len(message), 4096)
        for start in self.pieces:
            self.proto.dataReceived(message[start:start + 4096])
        assert self.proto.messages == [message]


def test_unframedScanIsLinearInTheMessageSize(walker: str) -> None:
    """
    A 4 MiB message made of many small strings arriving in 4 KiB pieces
    is walked once, not from its start for every piece.
    """
    message = encode("binary", Item(id=1, counts={f"key{i:07d}": i for i in range(150_000)}))
    assert len(message) > 2_000_000
    # Every byte is stepped over at most once (a field is re-read only
    # when it was cut, which at most doubles the count).
    assert ScanCounter(message).steps <= 2 * len(message)


def test_aLongFlatContainerIsNotRescannedForEveryPiece(walker: str) -> None:
    """
    Once a container of many small elements is known to need at least so
    many more bytes, pieces are only gathered until they have come.
    """
    message = encode("binary", Item(id=1, counts={f"k{i:06d}": i for i in range(100_000)}))
    counted = ScanCounter(message)
    assert len(counted.pieces) > 300 and counted.scans < 40


def stringsCall(protocol: str, strings: list[bytes]) -> bytes:
    """
    An unframed call whose arguments are one C{list<string>} field.
    """
    if protocol == "binary":
        return (struct.pack(">Ii", 0x80010001, 4) + b"list" + struct.pack(">i", 1)
                + b"\x0f\x00\x01\x0b" + struct.pack(">i", len(strings))
                + b"".join(struct.pack(">i", len(each)) + each for each in strings) + b"\x00")
    return (b"\x82\x21\x01\x04list\x19\xf8" + varint(len(strings))
            + b"".join(varint(len(each)) + each for each in strings) + b"\x00")


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_aLongFlatContainerIsWalkedInThePiecesItCameIn(protocol: str, walker: str) -> None:
    """
    The elements of a long container of strings are walked across the
    reads they came in: those reads are set aside themselves, not joined
    into a buffer to be scanned, and the message is joined once, whole.
    """
    message = stringsCall(protocol, [b"%011d" % i for i in range(200_000)])
    pieces = [message[start:start + 4096] for start in range(0, len(message), 4096)]
    proto = connected("buffered", protocol)
    framer: Any = proto.framer
    for piece in pieces[:-1]:
        proto.dataReceived(piece)
    fed = {id(piece) for piece in pieces}
    setAside = sum(len(held) for held in framer._passed if id(held) in fed)
    assert setAside > 0.9 * len(message)
    proto.dataReceived(pieces[-1])
    assert proto.messages == [message]
    assert framer.buffered() == 0


def test_aLongFlatContainerIsWalkedOnceAndNotJoinedToBeScanned(walker: str) -> None:
    message = stringsCall("binary", [b"%011d" % i for i in range(200_000)])
    counted = ScanCounter(message)
    assert counted.walks > 5
    assert counted.steps <= len(message)
    # What scan() is handed: the first read and the bytes around a walk's
    # end, not the reads held while the container's elements came.
    assert counted.scanned < 16 * 4096


@pytest.mark.parametrize("protocol", ["binary", "compact"])
@pytest.mark.parametrize("read", [1, 5, 4096, 65536])
def test_aBadElementOfALongContainerIsRefusedAsWhenItCameWhole(protocol: str, read: int,
                                                               walker: str) -> None:
    """
    A string over max_string_length among many good ones is refused with
    the same error however the message is cut, before the message's end
    has come (reads are held unwalked only until the least the container's
    elements left could take).
    """
    strings = [b"%011d" % i for i in range(20_000)]
    strings[12_345] = b"y" * 200
    message = stringsCall(protocol, strings)
    limits = Limits(max_string_length=100)
    whole = connected("buffered", protocol, limits)
    whole.dataReceived(message)
    assert "string length 200 is outside 0..100 (max_string_length)" in str(whole.refusal)
    proto = connected("buffered", protocol, limits)
    badAt = message.index(b"y" * 200)
    first = 0
    if read < 4096:
        # In small reads only around the bad string.
        first = badAt - 100
        for at in range(0, first, 4096):
            proto.dataReceived(message[at:min(at + 4096, first)])
    for start in range(first, len(message), read):
        proto.dataReceived(message[start:start + read])
        if proto.refusal is not None:
            break
    assert str(proto.refusal) == str(whole.refusal)
    assert proto.messages == []
    assert start + read < len(message)


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_aLongContainerPastMaxFrameSizeIsRefusedAsItComes(protocol: str, walker: str) -> None:
    """
    A container whose header fits max_frame_size but whose elements do not
    is refused once they pass it, with what is held bounded by the limit.
    """
    message = stringsCall(protocol, [b"%030d" % i for i in range(20_000)])
    limit = 300_000
    assert len(message) > 2 * limit
    proto = connected("buffered", protocol, Limits(max_frame_size=limit))
    framer: Any = proto.framer
    for start in range(0, len(message), 4096):
        proto.dataReceived(message[start:start + 4096])
        if proto.refusal is not None:
            break
        assert framer.buffered() <= limit
    assert "max_frame_size" in str(proto.refusal)
    assert start < limit + 4096


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_aStringLimitPastCIntegersHoldsInTheFlatWalks(protocol: str, walker: str) -> None:
    """
    max_string_length past what a C integer holds is taken by the walks of
    flat containers as it is by the rest (it cannot be reached anyway).
    """
    message = stringsCall(protocol, [b"%011d" % i for i in range(2_000)])
    for read in (4096, len(message)):
        proto = connected("buffered", protocol, Limits(max_string_length=2**70))
        for start in range(0, len(message), read):
            proto.dataReceived(message[start:start + read])
        assert proto.messages == [message] and proto.refusal is None


@settings(max_examples=150, deadline=None)
@given(protocol=st.sampled_from(["binary", "compact"]), data=st.data())
def test_longFlatContainersCutAnywhereAgreeWithWhole(protocol: str,
                                                    data: st.DataObject) -> None:
    """
    Calls of long lists of strings, some with a bad element (too long,
    negative or a varint of 11 bytes) or cut short, fed in reads cut
    anywhere: each walk (the C one and its Python twin) gives what feeding
    the stream whole gives, read by read the same messages and held bytes.
    """
    sizes = data.draw(st.lists(st.integers(0, 40), min_size=20, max_size=300))
    strings = [bytes([97 + size % 26]) * size for size in sizes]
    stream = stringsCall(protocol, strings)
    if data.draw(st.booleans()):
        at = data.draw(st.integers(len(stream) // 4, len(stream) - 1))
        bad = data.draw(st.sampled_from([b"\xff\xff\xff\xfe", b"\x80" * 11, b"\x00\x00\x01\x00"]))
        stream = stream[:at] + bad + stream[at:]
    stream += stream[:data.draw(st.integers(0, len(stream)))]
    limits = Limits(max_string_length=data.draw(st.sampled_from([30, 100])))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=40)))
    chunks = [stream[start:end] for start, end in pairwise([0, *cuts, len(stream)])]
    outcomes = {}
    for how in WALKS if compiledSkipFlat is not None else ["python"]:
        with walking(how):
            framer = makeFramer("buffered", protocol, limits)
            got: list[Any] = []
            for chunk in chunks:
                try:
                    got.append((framer.feed(chunk), framer.buffered()))
                except FrameError as error:
                    got.append((str(error), error.messages))
                    break
            wholeFramer = makeFramer("buffered", protocol, limits)
            try:
                whole: Any = (wholeFramer.feed(stream), wholeFramer.buffered())
            except FrameError as error:
                whole = (str(error), error.messages)
        messages = [m for step in got if isinstance(step[0], list) for m in step[0]]
        if isinstance(got[-1][0], str):
            messages += got[-1][1]
            assert isinstance(whole[0], str) and got[-1][0] == whole[0]
            assert messages == whole[1]
        else:
            assert messages == whole[0] and got[-1][1] == whole[1]
        outcomes[how] = got
    assert len(set(map(repr, outcomes.values()))) == 1


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_aBigUnframedMessageIsNotCopiedIntoOneGrowingBuffer(protocol: str,
                                                           walker: str) -> None:
    """
    What the scanner has passed of a message still arriving is set aside as
    it came: the buffer it scans holds only the bytes after it, and the
    message is joined once, whole.
    """
    message = encode(protocol, Item(id=1, counts={f"k{i:06d}": i for i in range(100_000)}))
    proto = connected("buffered", protocol)
    framer: Any = proto.framer
    largest = 0
    for start in range(0, len(message), 4096):
        proto.dataReceived(message[start:start + 4096])
        largest = max(largest, len(framer._buffer))
    assert proto.messages == [message]
    assert largest <= 4096 + 64
    assert framer.buffered() == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("read", [1, 7])
def test_aMessageInSmallReadsHoldsNoMoreThanItsBytes(protocol: str, read: int,
                                                     walker: str) -> None:
    """
    The pieces of a message sent a few bytes at a time are kept together:
    what it holds stays close to what the partial budget counts.
    """
    import tracemalloc

    message = encode(protocol, Item(id=1, values=list(range(10**6, 10**6 + 20_000))))
    part = message[:-10]
    pieces = [part[at:at + read] for at in range(0, len(part), read)]
    framer = makeFramer("buffered", protocol, Limits())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for piece in pieces:
            assert framer.feed(piece) == []
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert framer.buffered() == len(part)
    assert held < 1.5 * len(part) + 64 * 1024, (held, len(part))


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_aContainerTooLongForTheFrameLimitIsRefusedFromItsHeader(protocol: str,
                                                               walker: str) -> None:
    # 50,000 entries take at least 8 (binary) or 2 (compact) bytes each.
    message = encode(protocol, Item(id=1, counts={str(i): i for i in range(50_000)}))
    proto = connected("buffered", protocol, Limits(max_frame_size=80_000))
    proto.dataReceived(message[:2048])
    assert proto.transport.disconnecting  # type: ignore[union-attr]
    assert "max_frame_size" in str(proto.refusal)


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_anUnframedMessageOneByteOverTheLimitIsRefused(protocol: str, walker: str) -> None:
    """
    max_frame_size holds to the last byte of an unframed message, the
    bytes that end it (field stops, a last varint) included, as it does for
    a framed one: a message of exactly the limit passes, one byte more not.
    """
    item = Item(id=1, values=list(range(40)), counts={"k": 1})
    message = encode(protocol, item)
    exact = connected("buffered", protocol, Limits(max_frame_size=len(message)))
    exact.dataReceived(message)
    assert exact.messages == [message] and exact.refusal is None
    over = connected("buffered", protocol, Limits(max_frame_size=len(message) - 1))
    over.dataReceived(message)
    assert over.messages == [] and "max_frame_size" in str(over.refusal)


KINDS = st.sampled_from([0, 1, 2, 8, 16, _scanning._I32_STRING, _scanning._VARINT,
                         _scanning._VARINT_STRING])


def element(kind: int, draw: st.DrawFn) -> bytes:
    if kind >= 0:
        return draw(st.binary(min_size=kind, max_size=kind))
    if kind == _scanning._VARINT:
        return varint(draw(st.integers(0, 2**64 - 1)))
    body = draw(st.binary(max_size=20))
    if kind == _scanning._I32_STRING:
        return struct.pack(">i", len(body)) + body
    return varint(len(body)) + body


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@st.composite
def flatContainers(draw: st.DrawFn) -> tuple[bytes, int, int, int]:
    evenKind, oddKind = draw(KINDS), draw(KINDS)
    count = draw(st.integers(0, 12))
    elements = [element(oddKind if left & 1 else evenKind, draw)
                for left in range(count, 0, -1)]
    # Sometimes a bad element: a negative length, or a varint of 11 bytes.
    if draw(st.booleans()):
        elements.insert(draw(st.integers(0, count)),
                        draw(st.sampled_from([b"\xff\xff\xff\xfe", b"\x80" * 11])))
    return b"".join(elements), count, evenKind, oddKind


#: A 10-byte varint worth 1 + 2**64: a 64-bit loop that drops the bits past
#: 2**63 reads it as 1.
OVER_64_BITS = b"\x81" + b"\x80" * 8 + b"\x02"


@settings(max_examples=300, deadline=None)
@given(container=flatContainers(), maxString=st.sampled_from([5, 100]))
@example(container=(OVER_64_BITS + b"x", 1, _scanning._VARINT_STRING,
                    _scanning._VARINT_STRING), maxString=5)
@example(container=(OVER_64_BITS, 1, _scanning._VARINT, _scanning._VARINT),
         maxString=5)
def test_theCompiledWalkDoesWhatThePythonOneDoes(container: tuple[bytes, int, int, int],
                                                 maxString: int) -> None:
    if compiledSkipFlat is None:
        pytest.skip(NOT_BUILT)
    data, count, evenKind, oddKind = container
    for end in range(len(data) + 1):
        for start in (0, 1):
            buffer = bytearray(data[:end])
            if start > len(buffer):
                continue
            arguments = (buffer, start, count, evenKind, oddKind, maxString)
            assert compiledSkipFlat(*arguments) == _scanning._skipFlatInPython(*arguments)


@settings(max_examples=300, deadline=None)
@given(container=flatContainers(), maxString=st.sampled_from([5, 100]), data=st.data())
def test_theWalkAcrossPiecesIsTheWalkOfThemJoined(container: tuple[bytes, int, int, int],
                                                  maxString: int, data: st.DataObject) -> None:
    """
    C{skipFlatPieces} and its Python twin walk pieces (empty ones, bytes and
    bytearrays among them) as C{skipFlat} walks them joined, cut short at
    every byte: the same elements left and the same offset, given as the
    piece it is in and where in it.
    """
    body, count, evenKind, oddKind = container
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=6)))
    asBytearray = data.draw(st.booleans())
    start = data.draw(st.integers(0, 3))
    walks = [_scanning._skipFlatPiecesInPython]
    if compiledSkipFlat is not None:
        walks.append(_speedups.skipFlatPieces)
    for end in range(len(body) + 1):
        bounds = [0, *(cut for cut in cuts if cut <= end), end]
        pieces: list[Any] = [body[left:right] for left, right in pairwise(bounds)]
        if asBytearray:
            pieces[::2] = [bytearray(piece) for piece in pieces[::2]]
        if start > end:
            continue
        joined = _scanning._skipFlatInPython(body[:end], start, count, evenKind, oddKind,
                                             maxString)
        for walk in walks:
            index, pos, remaining, passed = walk(pieces, start, count, evenKind, oddKind,
                                                 maxString)
            assert (passed + pos, remaining) == joined
            assert passed == sum(map(len, pieces[:index]))
            assert index == len(pieces) or pos < len(pieces[index])


def test_theCompiledWalkAcrossPiecesRefusesBadArguments() -> None:
    if compiledSkipFlat is None:
        pytest.skip(NOT_BUILT)
    walk = _speedups.skipFlatPieces
    with pytest.raises(ValueError, match="outside the pieces"):
        walk([b"ab", b"c"], 4, 1, 1, 1, 10)
    with pytest.raises(ValueError, match="outside the pieces"):
        walk([b"ab"], -1, 1, 1, 1, 10)
    with pytest.raises(TypeError, match="not bytes"):
        walk([b"ab", memoryview(b"c")], 0, 1, 1, 1, 10)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        walk((b"ab",), 0, 1, 1, 1, 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        walk([b"ab"], 0)  # type: ignore[call-arg]
    # The first bad argument's error, not the last's.
    with pytest.raises(TypeError):
        walk([b"ab"], None, 2**80, 1, 1, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize("walker", ["C", "Python"])
def test_aStringAsLongAsAnyLimitStopsTheWalk(walker: str) -> None:
    """
    A compact string declaring 2**63 - 1 bytes under a limit as large (the
    most a C size holds) stops the walk across pieces, as one too long for
    any message must, rather than running its end past what a size holds.
    """
    if walker == "C" and compiledSkipFlat is None:
        pytest.skip(NOT_BUILT)
    walk = _speedups.skipFlatPieces if walker == "C" else _scanning._skipFlatPiecesInPython
    longest = b"\xff" * 8 + b"\x7f"  # the varint of 2**63 - 1
    assert walk([longest + b"x", b"y"], 0, 1, -3, -3, sys.maxsize) == (0, 0, 1, 0)


def test_theCompiledWalkRefusesBadArguments() -> None:
    if compiledSkipFlat is None:
        pytest.skip(NOT_BUILT)
    with pytest.raises(ValueError, match="outside the buffer"):
        compiledSkipFlat(b"abc", 4, 1, 1, 1, 10)
    with pytest.raises(TypeError):
        compiledSkipFlat("text", 0, 1, 1, 1, 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exactly 6"):
        compiledSkipFlat(b"abc", 0)  # type: ignore[call-arg]


@pytest.mark.parametrize("transport", ["framed", "buffered"])
def test_messagesBeforeBadBytesInTheSameReadAreStillHandled(transport: str) -> None:
    framer = makeFramer(transport, "binary", Limits())
    good = [encode("binary", item, seqid) for seqid, item in enumerate(ITEMS[:2], 1)]
    # A negative frame length, or an unframed message of an unknown version.
    bad = b"\xff\xff\xff\xff" if transport == "framed" else b"\x80\x07\x00\x01"
    proto = connected(transport, "binary")
    proto.dataReceived(b"".join(frameFor(framer, m) for m in good) + bad)
    assert proto.messages == good
    assert proto.transport.disconnecting  # type: ignore[union-attr]
    assert proto.refusal is not None


def test_aStringLengthPast64BitsIsRefusedEndToEnd(walker: str) -> None:
    """
    An unframed compact call whose map key claims 1 + 2**64 bytes closes the
    connection, whichever walk reads it (the C one once wrapped it to 1).
    """
    assert varint(1 + 2**64) == OVER_64_BITS
    good = Codec("compact").encode("item", TMessageType.CALL, 1,
                                   Echo.item_args(it=Item(id=1, counts={"k": 5})))
    assert good.count(b"\x01k") == 1
    bad = good.replace(b"\x01k", OVER_64_BITS + b"k")
    factory = ServerFactory(EchoBasics(), service=Echo, transport="buffered",
                            protocol="compact", clock=Clock())
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(bad)
    assert transport.value() == b""
    assert transport.disconnecting
    assert "max_string_length" in str(proto.refusal)


@pytest.mark.parametrize("transport", ["framed", "buffered"])
@pytest.mark.parametrize("name", ["getData", "x" * 300])
def test_autoTellsNonStrictBinaryFramedFromUnframed(transport: str, name: str) -> None:
    """
    With the binary protocol fixed, an old non-strict message's first 8
    bytes say whether a frame length comes first: framed, they are the frame
    length and a name length that fits in it; unframed, the name length and
    the name's first bytes, far too big for one.
    """
    body = Codec("binary").encode("x", 1, 1, Echo.getData_args(input="hi"))[12 + 1:]
    encoded = name.encode()
    message = struct.pack(">i", len(encoded)) + encoded + bytes([1]) + struct.pack(">i", 9) + body
    data = frameFor(makeFramer(transport, "binary", Limits()), message)
    for head in range(8):
        assert detectFramer(data[:head], "auto", "binary", Limits()) is None
    proto = connected("auto", "binary")
    for i in range(len(data)):
        proto.dataReceived(data[i:i + 1])
    assert (proto.transportName, proto.protocolName) == (transport, "binary")
    assert proto.messages == [message]


def test_autoWithAnyProtocolNamesNonStrictBinaryInItsRefusal() -> None:
    proto = connected("auto", "auto")
    proto.dataReceived(b"\x00\x00\x00\x07getData\x01")
    assert proto.transport.disconnecting  # type: ignore[union-attr]
    assert "protocol='binary'" in str(proto.refusal)


@pytest_twisted.ensureDeferred
async def test_apacheNonStrictBufferedClientAgainstAutoTransport() -> None:
    """
    Apache's C{TBinaryProtocol(strictWrite=False)} over C{TBufferedTransport},
    as old clients speak, against a server detecting the transport.
    """
    from twisted.internet import reactor

    def session(port: int) -> list[str]:
        socket = TSocket("127.0.0.1", port)
        socket.setTimeout(5000)
        transport = TBufferedTransport(socket)
        client = Echo.Client(TBinaryProtocol(transport, strictRead=False, strictWrite=False))
        transport.open()
        try:
            return [client.getData(text) for text in ("old", "style", "x" * 70_000)]
        finally:
            transport.close()

    port: Any = await serve(reactor, "tcp:0:interface=127.0.0.1", EchoBasics(), service=Echo,
                            transport="auto", protocol="binary")
    try:
        got = await deferToThread(session, port.getHost().port).addTimeout(20, reactor)
    finally:
        await port.stopListening()
    assert got == [text + SUFFIX for text in ("old", "style", "x" * 70_000)]
