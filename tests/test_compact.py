"""
Tests for the compact codec's fast path (L{txthrift._codec}): the header read
and written by the codec itself, the bodies by Apache's C coder, one
protocol object each way reused; byte for byte what Apache's own (pure
Python) C{TCompactProtocol} writes, read back as it reads, within the same
limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from thrift.protocol.TBase import TBase
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.TTransport import TMemoryBuffer

from tests import _conformance as C
from tests.gen.conformance_py.txthrift_conformance import Base, Conformance, Second
from tests.gen.conformance_py.txthrift_conformance import ttypes as T
from tests.gen.py.txthrift_test import Echo
from txthrift import Codec, Limits, _codec
from txthrift._codec import acceleration

pytestmark = pytest.mark.skipif(
    not acceleration.codec, reason="the thrift package was built without its C extension")

CALL, REPLY, EXCEPTION, ONEWAY = (TMessageType.CALL, TMessageType.REPLY,
                                  TMessageType.EXCEPTION, TMessageType.ONEWAY)

#: Seqids around each varint length, and negative ones (written as their
#: 32-bit pattern).
SEQIDS = [0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**31 - 1,
          -1, -128, -(2**31)]
#: Names: empty, plain, non-ASCII, long enough for a two-byte length.
NAMES = ["", "getData", "Echo:getData", "gr\u00fc\u00dfe \u2603", "n" * 300]


def apacheEncode(name: str, mtype: int, seqid: int, body: Any) -> bytes:
    """
    A message as Apache's pure Python compact protocol writes it.
    """
    buffer = TMemoryBuffer()
    oprot = TCompactProtocol(buffer)
    oprot.writeMessageBegin(name, mtype, seqid)
    body.write(oprot)
    oprot.writeMessageEnd()
    return buffer.getvalue()


def apacheHeader(message: bytes, limit: int | None = None) -> tuple[str, int, int]:
    iprot = TCompactProtocol(TMemoryBuffer(message), string_length_limit=limit)
    header: tuple[str, int, int] = iprot.readMessageBegin()
    return header


def decoded(codec: Codec, message: bytes, body: Any) -> tuple[str, int, int, Any]:
    """
    C{message}'s header, and its body read by C{codec} into C{body}.
    """
    iprot, name, mtype, seqid = codec.readHeader(message)
    codec.readBody(iprot, body)
    return name, mtype, seqid, body


def apacheDecoded(message: bytes, body: Any) -> tuple[str, int, int, Any]:
    iprot = TCompactProtocol(TMemoryBuffer(message))
    name, mtype, seqid = iprot.readMessageBegin()
    body.read(iprot)
    iprot.readMessageEnd()
    return name, mtype, seqid, body


def _module(case: C.Case) -> Any:
    if case.service == C.SECOND:
        return Second
    return Conformance if hasattr(Conformance, case.method + "_args") else Base


def _result(case: C.Case) -> Any:
    result = getattr(_module(case), case.method + "_result")()
    for spec in result.thrift_spec:
        if spec is None:
            continue
        if spec[2] == "success":
            result.success = case.expect
        elif isinstance(case.raises, spec[3][0]):
            setattr(result, spec[2], case.raises)
    return result


def _bodies() -> Iterator[tuple[str, int, Any, Any]]:
    """
    Every call of the conformance matrix and its reply, as (method, message
    type, body, an empty body of its class).
    """
    for case in C.cases(T):
        module = _module(case)
        args = getattr(module, case.method + "_args")(*case.args)
        yield case.method, CALL, args, type(args)()
        if hasattr(module, case.method + "_result"):
            result = _result(case)
            yield case.method, REPLY, result, type(result)()


BODIES = list(_bodies())


@pytest.mark.parametrize("method, mtype, body, empty", BODIES,
                         ids=[f"{b[0]}-{b[1]}-{i}" for i, b in enumerate(BODIES)])
def test_encodesAsApacheAndReadsBack(method: str, mtype: int, body: Any, empty: Any) -> None:
    """
    Each call and reply of the conformance matrix, every field type, is
    written as Apache's protocol writes it, and read back whole, as
    Apache's protocol reads it.
    """
    codec = Codec("compact")
    message = codec.encode(method, mtype, 77, body)
    assert message == apacheEncode(method, mtype, 77, body)
    name, kind, seqid, read = decoded(codec, message, empty)
    assert (name, kind, seqid) == (method, mtype, 77)
    theirs = apacheDecoded(message, type(empty)())
    assert theirs[:3] == (name, kind, seqid)
    assert C.mismatch(theirs[3], read) is None


@pytest.mark.parametrize("seqid", SEQIDS)
@pytest.mark.parametrize("name", NAMES, ids=lambda name: f"{len(name)}-chars")
def test_headersAsApache(name: str, seqid: int) -> None:
    """
    Headers of every kind, with seqids of every varint length, are
    written and read as Apache's protocol writes and reads them.
    """
    codec = Codec("compact")
    for mtype, body in [(CALL, Echo.getData_args("x")), (ONEWAY, Echo.getData_args()),
                        (REPLY, Echo.getData_result("y")),
                        (EXCEPTION, TApplicationException(6, "failed"))]:
        message = codec.encode(name, mtype, seqid, body)
        assert message == apacheEncode(name, mtype, seqid, body)
        assert codec.readHeader(message)[1:] == apacheHeader(message) == (name, mtype, seqid)


def test_exceptionsAsApache() -> None:
    codec = Codec("compact")
    error = TApplicationException(TApplicationException.UNKNOWN_METHOD, "Unknown function x")
    message = codec.encodeException("x", 9, error.type, error.message)
    assert message == apacheEncode("x", EXCEPTION, 9, error)
    read = decoded(codec, message, TApplicationException())[3]
    assert (read.type, read.message) == (error.type, error.message)


def _headerOutcome(read: Any, message: bytes) -> Any:
    try:
        return read(message)
    except Exception as error:
        return type(error)


@settings(max_examples=500, deadline=None)
@given(head=st.binary(max_size=12), kind=st.sampled_from([0x21, 0x41, 0x81, 0x22, 0x01]))
def test_anyHeaderReadsAsApacheReadsIt(head: bytes, kind: int) -> None:
    """
    Whatever follows the protocol id (cut short, over-long varints, names
    over the limit, bad versions), the codec reads what Apache's reader
    reads, or fails as it fails.
    """
    codec = Codec("compact", Limits(max_string_length=8))
    message = bytes((0x82, kind)) + head
    ours = _headerOutcome(lambda m: codec.readHeader(m)[1:], message)
    assert ours == _headerOutcome(lambda m: apacheHeader(m, 8), message)


@pytest.mark.parametrize("varint, seqid", [
    (b"\xff\xff\xff\xff\x0f", -1),                # 2 ** 32 - 1, the most 5 bytes hold for an i32
    (b"\x80\x80\x80\x80\x10", 0),                 # 2 ** 32: Apache wraps it
    (b"\x80\x80\x80\x80\x80\x01", 2**35 - 2**32),  # 6 bytes: Apache reads up to 10
])
def test_outlandishSeqidsReadAsApacheReadsThem(varint: bytes, seqid: int) -> None:
    message = b"\x82\x21" + varint + b"\x01x" + b"\x00"
    assert Codec("compact").readHeader(message)[1:] == apacheHeader(message) == ("x", CALL, seqid)


def test_everyCutShortMessageReadsAsApacheReadsIt() -> None:
    codec = Codec("compact")
    message = codec.encode("getData", CALL, 20000, Echo.getData_args("x"))
    for end in range(len(message)):
        cut = message[:end]
        ours = _headerOutcome(lambda m: codec.readHeader(m)[1:], cut)
        assert ours == _headerOutcome(apacheHeader, cut), end


# -- the fast path is the one taken ---------------------------------------

def test_theHeaderIsNotApaches(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The codec writes and reads plain headers itself, and hands bodies to
    the C coder whole, past generated code's C{read} and C{write}.
    """
    codec = Codec("compact")

    def refuse(*args: object) -> None:
        raise AssertionError("Apache's protocol or generated code was used")

    for method in ("writeMessageBegin", "readMessageBegin", "writeStructBegin",
                   "readStructBegin"):
        monkeypatch.setattr(TCompactProtocol, method, refuse)
    monkeypatch.setattr(Echo.getData_args, "read", refuse)
    monkeypatch.setattr(Echo.getData_args, "write", refuse)
    message = codec.encode("getData", CALL, 300, Echo.getData_args("x" * 13))
    iprot, name, mtype, seqid = codec.readHeader(message)
    args = Echo.getData_args()
    codec.readBody(iprot, args)
    assert (name, mtype, seqid, args.input) == ("getData", CALL, 300, "x" * 13)


def test_oneProtocolReadsEveryMessage() -> None:
    codec = Codec("compact")
    first = codec.readHeader(codec.encode("getData", CALL, 1, Echo.getData_args("a")))[0]
    second = codec.readHeader(codec.encode("getData", CALL, 2, Echo.getData_args("b")))[0]
    assert first is second
    assert codec.detach(first) is not first


def test_givenFactoriesGoTheirOwnWay() -> None:
    """
    A codec made with Apache's factories (as C{TTwisted} makes them) reads
    each message with a protocol of the factory's.
    """
    from thrift.protocol.TCompactProtocol import TCompactProtocolFactory
    codec = Codec("compact", factory=TCompactProtocolFactory())
    message = codec.encode("getData", CALL, 1, Echo.getData_args("a"))
    iprot = codec.readHeader(message)[0]
    assert type(iprot) is TCompactProtocol and codec.readHeader(message)[0] is not iprot


# -- limits and failures ----------------------------------------------------

def test_theCDecoderKeepsTheStringLimit() -> None:
    codec = Codec("compact", Limits(max_string_length=10))
    message = Codec("compact").encode("getData", CALL, 1, Echo.getData_args("x" * 11))
    iprot = codec.readHeader(message)[0]
    with pytest.raises(Exception, match="limit"):
        codec.readBody(iprot, Echo.getData_args())
    fits = codec.encode("getData", CALL, 1, Echo.getData_args("x" * 10))
    args = Echo.getData_args()
    codec.readBody(codec.readHeader(fits)[0], args)
    assert args.input == "x" * 10


def test_theCDecoderKeepsTheContainerLimit() -> None:
    codec = Codec("compact", Limits(max_container_length=2))
    message = Codec("compact").encode("echoNames", CALL, 1,
                                      Conformance.echoNames_args(["a", "b", "c"]))
    with pytest.raises(Exception, match="limit"):
        codec.readBody(codec.readHeader(message)[0], Conformance.echoNames_args())


def test_aNameOverTheStringLimitIsRefused() -> None:
    codec = Codec("compact", Limits(max_string_length=3))
    message = Codec("compact").encode("getData", CALL, 1, Echo.getData_args())
    with pytest.raises(Exception, match="Length exceeded"):
        codec.readHeader(message)


def test_aFailedReadInPythonLeavesTheNextWhole() -> None:
    """
    Apache's compact protocol objects keep state when Python reads through
    them (an exception has no C{thrift_spec}): one that fails half way does
    not break the next message.
    """
    codec = Codec("compact")
    good = codec.encodeException("getData", 1, 6, "failed")
    broken = good[:-3]
    with pytest.raises(EOFError):
        codec.readBody(codec.readHeader(broken)[0], TApplicationException())
    error = TApplicationException()
    codec.readBody(codec.readHeader(good)[0], error)
    assert (error.type, error.message) == (6, "failed")


class _FailingHalfWay:
    """
    A body without a C{thrift_spec} whose writing fails inside its struct.
    """

    def write(self, oprot: Any) -> None:
        oprot.writeStructBegin("FailingHalfWay")
        raise ValueError("no more")


def test_aFailedWriteInPythonLeavesTheNextWhole() -> None:
    codec = Codec("compact")
    with pytest.raises(ValueError):
        codec.encode("getData", REPLY, 1, _FailingHalfWay())
    error = TApplicationException(6, "failed")
    assert codec.encode("getData", EXCEPTION, 1, error) == apacheEncode(
        "getData", EXCEPTION, 1, error)


# -- big strings --------------------------------------------------------------

MiB = 1024 * 1024
BIG = "\u00fc" * (MiB // 2) + "x"
BIG_BYTES = bytes(range(256)) * (MiB // 256)


class _Gap(TBase):
    """
    A struct whose string field's id is more than 15 past the one before:
    a field header of its own (a type byte, then the id as a varint).
    """

    thrift_spec = (None, (1, TType.I32, "number", None, None),
                   *[None] * 38, (40, TType.STRING, "text", "UTF8", None))

    def __init__(self, number: int | None = None, text: str | None = None) -> None:
        self.number = number
        self.text = text


def _bigBodies() -> list[tuple[str, Any, bool]]:
    """
    Messages with strings big enough to be written around the C encoder:
    (name, body, whether they are: the body's own fields, following all the
    others it has set).
    """
    P = T.Primitives
    return [
        ("getData", Echo.getData_args(BIG), True),
        ("getData", Echo.getData_result(success=BIG), True),
        ("echo", Echo.echo_args(text=BIG, repeat=3), True),
        ("echoBinary", Conformance.echoBinary_args(BIG_BYTES), True),
        ("echoPrimitives", Conformance.echoPrimitives_args(
            P(aBool=True, anI32=-5, aString=BIG, aBinary=BIG_BYTES)), False),
        ("echoPrimitives", Conformance.echoPrimitives_result(
            success=P(aBool=False, aString=BIG, aBinary=b"after")), False),
        ("manyArgs", Conformance.manyArgs_args(a=True, g=BIG, h=BIG_BYTES), True),
        ("manyArgs", Conformance.manyArgs_args(a=True, g=BIG, h=BIG_BYTES, o=1), False),
        ("gap", _Gap(7, BIG), True),
        ("gap", _Gap(None, BIG), True),
    ]


@pytest.mark.parametrize("name, body, around", _bigBodies(),
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(_bigBodies())])
def test_bigStringsAsApache(name: str, body: Any, around: bool,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A body's big strings are written around the C encoder, where they
    follow its other fields set, and read back: the bytes Apache writes
    either way.
    """
    # Where the C writer of whole flat messages was not built: it copies
    # big strings once (tests/test_smallcalls.py).
    monkeypatch.setattr(_codec, "compactMessage", None)
    codec = Codec("compact")
    given: list[int] = []
    encode: Any = codec._encode

    def spy(struct: Any, typeArgs: list[Any]) -> bytes:
        written: bytes = encode(struct, typeArgs)
        given.append(len(written))
        return written

    monkeypatch.setattr(codec, "_encode", spy)
    message = codec.encode(name, REPLY, 5, body)
    assert message == apacheEncode(name, REPLY, 5, body)
    assert (max(given) < MiB // 2) is around
    read = decoded(codec, message, type(body)())[3]
    assert C.mismatch(body, read) is None


@pytest.mark.parametrize("name, body, around", _bigBodies(),
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(_bigBodies())])
def test_bigStringsInBinaryReadAsWritten(name: str, body: Any, around: bool) -> None:
    """
    Binary, which shares the writing around the C encoder, moves a body's
    big strings after its other fields: Apache's protocol reads what was
    written.
    """
    message = Codec("binary").encode(name, REPLY, 5, body)
    iprot = TBinaryProtocol(TMemoryBuffer(message))
    assert iprot.readMessageBegin() == (name, REPLY, 5)
    read = type(body)()
    read.read(iprot)
    assert C.mismatch(body, read) is None
