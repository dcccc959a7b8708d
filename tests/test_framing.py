"""
Tests for L{txthrift._framing}: cutting streams into messages.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from thrift.Thrift import TMessageType
from twisted.internet.testing import StringTransport

from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Item
from txthrift import Codec, FrameError, Limits, ThriftMessageProtocol
from txthrift._framing import detectFramer, makeFramer

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


def connected(transport: str, protocol: str, limits: Limits | None = None) -> Collector:
    proto = Collector(transport, protocol, limits)
    proto.makeConnection(StringTransport())
    return proto


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("transport", ["framed", "buffered"])
def test_messagesCutAtTheirBoundariesWhateverTheChunking(transport: str, protocol: str) -> None:
    messages = [encode(protocol, item, seqid) for seqid, item in enumerate(ITEMS, 1)]
    framer = makeFramer(transport, protocol, Limits())
    stream = b"".join(framer.frame(m) for m in messages)
    for chunk in (1, 3, 7, 4096, len(stream)):
        proto = connected(transport, protocol)
        for start in range(0, len(stream), chunk):
            proto.dataReceived(stream[start:start + chunk])
        assert proto.messages == messages, chunk
        assert {type(m) for m in proto.messages} == {bytes}
        assert proto.transport.connected  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None)
@given(item=items, protocol=st.sampled_from(PROTOCOLS), cut=st.integers(1, 50))
def test_unframedScanMatchesApacheEncoding(item: Item, protocol: str, cut: int) -> None:
    message = encode(protocol, item)
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
    data = makeFramer(transport, protocol, Limits()).frame(message)
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
    assert len(proto.framer._buffer) < 16  # type: ignore[union-attr]


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_oversizedFrameLengthSplitAcrossReadsIsRefused(cut: int) -> None:
    # The length arrives in pieces, after a whole frame, as in a pipelined stream.
    good = makeFramer("framed", "binary", Limits()).frame(encode("binary", ITEMS[0]))
    stream = good + struct.pack(">i", 0x7FFFFFFF) + b"\x80\x01" * 100
    proto = connected("framed", "binary", Limits(max_frame_size=1024))
    proto.dataReceived(stream[:len(good) + cut])
    assert not proto.transport.disconnecting  # type: ignore[union-attr]
    proto.dataReceived(stream[len(good) + cut:])
    assert proto.transport.disconnecting  # type: ignore[union-attr]
    assert proto.messages == [good[4:]]
    assert len(proto.framer._buffer) < 256  # type: ignore[union-attr]


@pytest.mark.parametrize("length", [0, -1, -(2**31)])
def test_emptyOrNegativeFrameLengthClosesTheConnection(length: int) -> None:
    proto = connected("framed", "binary")
    proto.dataReceived(struct.pack(">i", length))
    assert proto.transport.disconnecting  # type: ignore[union-attr]


def test_dataAfterAFrameErrorIsIgnored() -> None:
    proto = connected("framed", "binary")
    good = makeFramer("framed", "binary", Limits()).frame(encode("binary", ITEMS[0]))
    proto.dataReceived(struct.pack(">i", -1))
    proto.dataReceived(good)
    assert proto.messages == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unframedMessageOverTheLimitIsRefusedEarly(protocol: str) -> None:
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
def test_unframedStringLengthOverTheLimitIsRefused(protocol: str) -> None:
    message = encode(protocol, Item(id=1, name="z" * 300))
    proto = connected("buffered", protocol, Limits(max_string_length=100))
    proto.dataReceived(message)
    assert proto.transport.disconnecting  # type: ignore[union-attr]


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_unframedContainerLengthOverTheLimitIsRefused(protocol: str) -> None:
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


def test_unframedScanIsLinearInTheMessageSize() -> None:
    """
    A 4 MiB message made of many small strings arriving in 4 KiB pieces
    is walked once, not from its start for every piece.
    """
    item = Item(id=1, counts={f"key{i:07d}": i for i in range(150_000)})
    message = encode("binary", item)
    assert len(message) > 2_000_000
    proto = connected("buffered", "binary")
    scanner = proto.framer._scanner  # type: ignore[union-attr]
    steps = 0
    original = scanner.scan

    def counting(buffer: bytearray) -> int | None:
        nonlocal steps
        before = scanner._pos
        result = original(buffer)
        steps += (result if result is not None else scanner._pos) - before
        return result

    scanner.scan = counting
    for start in range(0, len(message), 4096):
        proto.dataReceived(message[start:start + 4096])
    assert proto.messages == [message]
    # Every byte is stepped over at most once (a field is re-read only
    # when it was cut, which at most doubles the count).
    assert steps <= 2 * len(message)
