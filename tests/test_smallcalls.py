"""
Tests for the C of the small framed binary call's path (C{cutFrames},
C{binaryStart} and C{joinFrames} in L{txthrift._speedups}): each does what
its Python twin does, on the same bytes, malformed ones included, and a
server connection answers alike with the twins where the C was not built.
"""

from __future__ import annotations

import struct
import sys
from io import BytesIO
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from thrift.Thrift import TApplicationException, TMessageType, TType
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests._hardening import frameFor
from tests._speedups import compiled
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Item
from txthrift import Codec, Limits, ServerFactory, _codec, _framing
from txthrift._framing import ThriftMessageProtocol, makeFramer

_I32 = struct.Struct(">i")


def frame(message: bytes) -> bytes:
    return _I32.pack(len(message)) + message


#: Frames and what may follow them: a whole frame, a length of 0, a negative
#: one, one over the limit, and a frame or a length cut short.
pieces = st.one_of(
    st.binary(min_size=1, max_size=40).map(frame),
    st.just(_I32.pack(0)),
    st.integers(-(2**31), -1).map(_I32.pack),
    st.integers(101, 2**31 - 1).map(_I32.pack),
    st.binary(min_size=1, max_size=40).map(lambda message: frame(message)[:-1]),
    st.binary(max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(pieces, max_size=8))
@example(parts=[frame(bytes(100)), frame(bytes(101))])  # the limit, and one past it
def test_framesAreCutInCAsInPython(parts: list[bytes]) -> None:
    data = b"".join(parts)
    inC: list[bytes] = []
    inPython: list[bytes] = []
    assert compiled("cutFrames")(data, 100, inC) == _framing._cutFrames(data, 100, inPython)
    assert inC == inPython
    assert all(type(message) is bytes for message in inC)


def header(name: bytes, mtype: int = 1, seqid: int = 7, *, version: bytes = b"\x80\x01",
           length: int | None = None) -> bytes:
    return (version + b"\x00" + bytes((mtype,)) + _I32.pack(len(name) if length is None else length)
            + name + _I32.pack(seqid))


def started(binaryStart: Any, message: bytes | bytearray, maxName: int) -> Any:
    """
    What C{binaryStart} says of C{message}, its buffer as its position and
    bytes; or the kind of error it raised.
    """
    try:
        found = binaryStart(message, maxName)
    except Exception as error:
        return type(error)
    if found is None:
        return None
    name, mtype, seqid, body = found
    assert isinstance(body, BytesIO)
    return name, mtype, seqid, body.tell(), body.getvalue()


HEADERS = [
    header(b"getData") + b"\x00",
    header(b"getData", 4, -1),  # a oneway, no body: the header is all
    header(b""),
    header("snö ☃".encode()),
    header(b"\xff\xfe"),  # not UTF-8
    header(b"getData", version=b"\x80\x02"),
    header(b"getData", version=b"\x81\x01"),
    header(b"getData", length=-1),
    header(b"getData", length=2**31 - 1),
    header(b"getData", length=8),  # past the seqid's last byte
    header(b"toolonganame"),  # over maxName
    header(b"getData")[:-1],  # the seqid cut short
    b"\x80\x01\x00\x01\x00\x00\x00\x00",  # under 12 bytes
    b"\x00\x00\x00\x07getData\x01\x00\x00\x00\x07",  # old non-strict binary
    b"",
]


@pytest.mark.parametrize("message", HEADERS)
def test_aHeaderIsReadInCAsInPython(message: bytes) -> None:
    assert (started(compiled("binaryStart"), message, 10)
            == started(_codec._binaryStart, message, 10))
    # Not only from bytes: from what any framer may hand on.
    assert (started(compiled("binaryStart"), bytearray(message), 10)
            == started(_codec._binaryStart, bytearray(message), 10)
            == started(compiled("binaryStart"), message, 10))


@pytest.mark.parametrize("maxName", [0, 6, 7, 2**31, 2**63, 2**70, -1, -(2**70)])
def test_anyLimitOnNamesIsHeldInCAsInPython(maxName: int) -> None:
    # max_string_length may be any size: past a C integer it is no limit.
    message = header(b"getData") + b"\x00"
    assert (started(compiled("binaryStart"), message, maxName)
            == started(_codec._binaryStart, message, maxName))


def test_aServerAllowingNamesOfAnyLengthAnswers() -> None:
    factory = ServerFactory(_Handler(), service=Echo, clock=Clock(),
                            limits=Limits(max_string_length=2**70))
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    codec = Codec("binary")
    proto.dataReceived(frame(codec.encode("getData", TMessageType.CALL, 1,
                                          Echo.getData_args(input="x"))))
    assert b"x from server 1024" in transport.value()


@settings(max_examples=300, deadline=None)
@given(message=st.one_of(
    st.binary(max_size=30),
    st.builds(lambda name, mtype, seqid, rest: header(name, mtype, seqid) + rest,
              st.binary(max_size=12), st.integers(0, 255), st.integers(-(2**31), 2**31 - 1),
              st.binary(max_size=4)),
    st.builds(lambda length, rest: b"\x80\x01\x00\x01" + _I32.pack(length) + rest,
              st.integers(-(2**31), 2**31 - 1), st.binary(max_size=20)),
))
def test_anyHeaderIsReadInCAsInPython(message: bytes) -> None:
    assert (started(compiled("binaryStart"), message, 10)
            == started(_codec._binaryStart, message, 10))


@given(messages=st.lists(st.binary(max_size=300), max_size=10))
def test_framesAreJoinedInCAsInPython(messages: list[bytes]) -> None:
    joined = compiled("joinFrames")(messages)
    assert joined == _framing._joinFrames(messages) == b"".join(map(frame, messages))


def test_badArgumentsAreRefused() -> None:
    cutFrames, binaryStart, joinFrames = map(compiled, ["cutFrames", "binaryStart", "joinFrames"])
    with pytest.raises(TypeError, match="list"):
        cutFrames(b"", 10, ())
    with pytest.raises(TypeError):
        cutFrames("text", 10, [])
    with pytest.raises(TypeError):
        cutFrames(b"", "10", [])
    with pytest.raises(TypeError):
        binaryStart("text", 10)
    with pytest.raises(TypeError):
        binaryStart(header(b"getData"))
    with pytest.raises(TypeError):
        binaryStart(header(b"getData"), "10")
    with pytest.raises(TypeError, match="list"):
        joinFrames((b"a",))
    # Anything but bytes among them is the caller's to join.
    assert joinFrames([b"a", bytearray(b"b")]) is None


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_framesNotBytesAreSentAsTheyWere(kind: type) -> None:
    """
    A message given as a bytearray or memoryview (as Twisted's
    C{Int32StringReceiver} takes them) goes out in its frame, with the
    messages batched before it.
    """
    protocol = ThriftMessageProtocol(transport="framed", protocol="binary")
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.sendMessage(b"first")
    protocol.sendMessage(kind(b"abc"))
    protocol._writeOut()
    assert transport.value() == frame(b"first") + frame(b"abc")


class _Handler:
    def getData(self, input: str) -> str:
        return input + " from server 1024"

    def item(self, it: Item) -> Item:
        return Item(id=it.id * 2, values=[it.id])


def _answers(calls: bytes) -> bytes:
    """
    What a server connection writes back for C{calls}, one read.
    """
    factory = ServerFactory(_Handler(), service=Echo, clock=Clock())
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(calls)
    return transport.value()


def test_aServerAnswersAlikeWithThePythonTwins(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = Codec("binary")
    framer = makeFramer("framed", "binary", Limits())
    calls = b"".join(frameFor(framer, message) for message in [
        *(codec.encode("getData", TMessageType.CALL, seqid, Echo.getData_args(input=str(seqid)))
          for seqid in range(70)),
        codec.encode("item", TMessageType.CALL, 70, Echo.item_args(it=Item(id=3))),
        codec.encode("nothing", TMessageType.CALL, 71, Echo.getData_args()),
        header(b"getData", length=-5) + b"\x00",  # read by Apache's protocol, which refuses it
    ])
    inC = _answers(calls)
    monkeypatch.setattr(_framing, "cutFrames", _framing._cutFrames)
    monkeypatch.setattr(_framing, "joinFrames", _framing._joinFrames)
    monkeypatch.setattr(_codec, "binaryStart", _codec._binaryStart)
    assert _answers(calls) == inC
    replies = framer.feed(inC)
    assert len(replies) == 72  # the last message closed the connection
    for seqid, reply in enumerate(replies[:70]):
        iprot, name, mtype, got = codec.readHeader(reply)
        result = Echo.getData_result()
        codec.readBody(iprot, result)
        assert (name, mtype, got, result.success) == (
            "getData", TMessageType.REPLY, seqid, f"{seqid} from server 1024")
    iprot, name, mtype, seqid = codec.readHeader(replies[71])
    error = TApplicationException()
    codec.readBody(iprot, error)
    assert (mtype, seqid, error.type) == (
        TMessageType.EXCEPTION, 71, TApplicationException.UNKNOWN_METHOD)


class _Sender(ThriftMessageProtocol):
    def messageReceived(self, message: bytes) -> None:
        raise NotImplementedError


def test_aBatchEndsWhereTheFramingChanges() -> None:
    """
    Messages gathered while a connection's framing changes (a SASL
    handshake's end) go out as they were framed when sent.
    """
    proto = _Sender("framed", "binary")
    transport = StringTransport()
    proto.makeConnection(transport)
    proto._reading = True  # gathered, as during a read
    proto.sendMessage(b"framed")
    proto.framer = makeFramer("buffered", "binary", Limits())
    proto.sendMessage(b"bare")
    proto.sendMessage(b"bare too")
    proto._reading = False
    proto._release()
    assert transport.value() == frame(b"framed") + b"barebare too"


@pytest.mark.parametrize("protocol", ["binary", "compact", "json"])
def test_anEncoderEncodesAsEncodeDoes(protocol: str) -> None:
    codec = Codec(protocol)
    bodies: list[tuple[str, int, Any]] = [
        ("getData", TMessageType.REPLY, Echo.getData_result(success="x" * 2000)),
        ("getData", TMessageType.REPLY, Echo.getData_result(success="small")),
        ("item", TMessageType.REPLY, Echo.item_result(success=Item(id=1, values=[2]))),
        ("getData", TMessageType.EXCEPTION, TApplicationException(1, "no")),
    ]
    for name, mtype, body in bodies:
        encoder = codec.encoder(name, mtype, type(body))
        assert encoder(5, body) == codec.encode(name, mtype, 5, body)
        assert Codec(protocol).encode(name, mtype, 5, body) == encoder(5, body)


class _Flat:
    """
    A struct of every type C{binaryMessage} writes, and a struct field it
    does not.
    """

    thrift_spec: Any = (
        None,
        (1, TType.BOOL, "flag", None, None),
        (2, TType.BYTE, "small", None, None),
        (3, TType.DOUBLE, "real", None, None),
        None,
        (5, TType.I16, "short", None, None),
        None,
        (7, TType.I32, "number", None, None),
        None,
        (9, TType.I64, "big", None, None),
        None,
        (11, TType.STRING, "text", "UTF8", None),
        (12, TType.STRING, "blob", "BINARY", None),
    )

    def __init__(self, **values: Any) -> None:
        for field in self.thrift_spec:
            if field is not None:
                setattr(self, field[2], values.get(field[2]))


_HEAD = b"\x80\x01\x00\x02\x00\x00\x00\x04name"

#: Values of each field: of its own type and range, and not.
_VALUES = {
    "flag": st.one_of(st.none(), st.booleans(), st.integers(-1, 2)),
    "small": st.one_of(st.none(), st.integers(-130, 130), st.booleans()),
    "real": st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-5, 5)),
    "short": st.one_of(st.none(), st.integers(-(2**15) - 2, 2**15 + 1)),
    "number": st.one_of(st.none(), st.integers(-(2**31) - 2, 2**31 + 1), st.floats(0, 9),
                        st.text(max_size=2)),
    "big": st.one_of(st.none(), st.integers(-(2**63) - 2, 2**63 + 1)),
    "text": st.one_of(st.none(), st.text(max_size=40), st.binary(max_size=40),
                      st.just("\ud800"), st.integers(0, 5)),
    "blob": st.one_of(st.none(), st.binary(max_size=40), st.text(max_size=5)),
}


def _apache(seqid: int, body: Any) -> Any:
    """
    The message Apache's C coder writes around C{body}, or the kind of error
    it raises.
    """
    from thrift.protocol.fastbinary import encode_binary

    try:
        return _HEAD + _I32.pack(seqid) + encode_binary(body, [type(body), body.thrift_spec])
    except Exception as error:
        return type(error)


@settings(max_examples=500, deadline=None)
@given(values=st.fixed_dictionaries({}, optional=_VALUES),
       seqid=st.one_of(st.integers(-(2**31), 2**31 - 1), st.just(2**31)))
@example(values={"text": "snö ☃" * 1000, "number": -(2**31), "big": 2**63 - 1}, seqid=-1)
def test_aFlatBodyIsWrittenInCAsApacheWritesIt(values: dict[str, Any], seqid: int) -> None:
    body = _Flat(**values)
    written = compiled("binaryMessage")(_HEAD, seqid, body, _Flat.thrift_spec)
    # What it writes is Apache's message to the byte; the rest it leaves.
    assert written is None or written == _apache(seqid, body)


@pytest.mark.parametrize("writer", ["binaryMessage", "compactMessage"])
def test_aStringWrittenKeepsNoCopyOfItsUtf8(writer: str) -> None:
    """
    A string that is not ASCII, written, is as big afterwards as before:
    no UTF-8 copy of it stays inside it for as long as it lives.
    """
    text = "snö ☃" * 10_000
    before = sys.getsizeof(text)
    body = _Flat(text=text)
    if writer == "binaryMessage":
        written = compiled(writer)(_HEAD, 9, body, _Flat.thrift_spec)
        assert sys.getsizeof(text) == before
        assert written == _apache(9, body)
    else:
        written = compiled(writer)(2, 9, b"\x04name", body, _Flat.thrift_spec)
        assert sys.getsizeof(text) == before
        assert written == _apacheCompact(2, 9, body)


class _Failing(_Flat):
    """
    A L{_Flat} whose C{text} raises when read.
    """

    @property
    def text(self) -> str:
        raise MemoryError("reading text failed")

    @text.setter
    def text(self, value: object) -> None:
        pass


@pytest.mark.parametrize("writer", ["binaryMessage", "compactMessage"])
def test_aFieldThatFailsToBeReadRaises(writer: str) -> None:
    """
    Reading a field raising anything but AttributeError is not taken as
    "not mine to write": it raises, as Apache's coder's read would.
    """
    arguments: tuple[Any, ...] = ((_HEAD, 9, _Failing(), _Flat.thrift_spec)
                                  if writer == "binaryMessage"
                                  else (2, 9, b"\x04name", _Failing(), _Flat.thrift_spec))
    with pytest.raises(MemoryError, match="reading text failed"):
        compiled(writer)(*arguments)


def test_aFlatBodyOfItsOwnTypesIsWrittenInC() -> None:
    body = _Flat(flag=True, small=-128, real=-0.5, short=32767, number=-(2**31), big=2**63 - 1,
                 text="snö ☃", blob=b"\x00\xff")
    written = compiled("binaryMessage")(_HEAD, 9, body, _Flat.thrift_spec)
    assert written is not None and written == _apache(9, body)
    assert compiled("binaryMessage")(_HEAD, 9, _Flat(), _Flat.thrift_spec) == _apache(9, _Flat())


def _apacheCompact(mtype: int, seqid: int, body: Any) -> Any:
    """
    The compact message Apache's C coder writes around C{body}, named
    C{"name"}, or the kind of error it raises.
    """
    from thrift.protocol.fastbinary import encode_compact

    try:
        return (_codec._compactStart(mtype, seqid) + b"\x04name"
                + encode_compact(body, [type(body), body.thrift_spec]))
    except Exception as error:
        return type(error)


@settings(max_examples=500, deadline=None)
@given(values=st.fixed_dictionaries({}, optional=_VALUES),
       seqid=st.one_of(st.integers(-(2**31), 2**31 - 1), st.just(2**31)),
       mtype=st.integers(1, 4))
@example(values={"text": "snö ☃" * 1000, "number": -(2**31), "big": -(2**63)}, seqid=-1,
         mtype=2)
def test_aFlatBodyIsWrittenCompactInCAsApacheWritesIt(values: dict[str, Any], seqid: int,
                                                      mtype: int) -> None:
    body = _Flat(**values)
    written = compiled("compactMessage")(mtype, seqid, b"\x04name", body, _Flat.thrift_spec)
    assert written is None or written == _apacheCompact(mtype, seqid, body)


def test_aFlatBodyOfItsOwnTypesIsWrittenCompactInC() -> None:
    compactMessage = compiled("compactMessage")
    for body in [_Flat(flag=True, small=-128, real=-0.5, short=-32768, number=2**31 - 1,
                       big=-(2**63), text="snö ☃", blob=b"\x00\xff"),
                 _Flat(flag=False, real=float("inf"), text="x" * 300), _Flat()]:
        written = compactMessage(2, 300, b"\x04name", body, _Flat.thrift_spec)
        assert written is not None and written == _apacheCompact(2, 300, body)
    # Field ids past a step of 15 from the last, and below it, written whole.
    spec = (None, (1, TType.I32, "number", None, None), (40, TType.I16, "short", None, None),
            (-3, TType.BYTE, "small", None, None))
    body = _Flat(number=1, short=2, small=3)
    body.thrift_spec = spec
    assert compactMessage(1, 1, b"\x04name", body, spec) == _apacheCompact(1, 1, body)


def test_aBodyNotFlatIsLeftToApache() -> None:
    binaryMessage = compiled("binaryMessage")
    item: Any = Echo.item_result(success=Item(id=1))
    assert binaryMessage(_HEAD, 1, item, item.thrift_spec) is None
    assert binaryMessage(_HEAD, 1, object(), _Flat.thrift_spec) is None  # no such fields
    assert binaryMessage(_HEAD, 1, _Flat(), ((1, TType.I32),)) is None  # an entry too short
    many = tuple((fid, TType.I32, "number", None, None) for fid in range(1, 18))
    assert binaryMessage(_HEAD, 1, _Flat(number=1), many) is None  # more fields than it takes
    with pytest.raises(TypeError):
        binaryMessage(_HEAD, 1, _Flat(), [])
    compactMessage = compiled("compactMessage")
    assert compactMessage(2, 1, b"\x04name", item, item.thrift_spec) is None
    assert compactMessage(8, 1, b"\x04name", _Flat(), _Flat.thrift_spec) is None  # no such type
    with pytest.raises(TypeError):
        compactMessage(2, 1, "name", _Flat(), _Flat.thrift_spec)


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_aServerAnswersAlikeWithApachesCoderAlone(monkeypatch: pytest.MonkeyPatch,
                                                  protocol: str) -> None:
    codec = Codec(protocol)
    framer = makeFramer("framed", protocol, Limits())
    calls = b"".join(frameFor(framer, codec.encode(
        "getData", TMessageType.CALL, seqid, Echo.getData_args(input="é" * seqid)))
        for seqid in range(0, 2000, 97))
    inC = _answers(calls)
    monkeypatch.setattr(_codec, "binaryMessage", None)
    monkeypatch.setattr(_codec, "compactMessage", None)
    assert _answers(calls) == inC
    assert len(framer.feed(inC)) == len(range(0, 2000, 97))
