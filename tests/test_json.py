"""
Tests for L{txthrift._json}: Thrift's JSON protocol on the C JSON scanner,
read and written as Apache's C{TJSONProtocol} reads and writes it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from thrift import TSerialization
from thrift.protocol.TJSONProtocol import TJSONProtocol
from thrift.protocol.TMultiplexedProtocol import SEPARATOR
from thrift.protocol.TProtocol import TProtocolBase, TProtocolException
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.TMultiplexedProcessor import TMultiplexedProcessor
from thrift.transport.TTransport import TMemoryBuffer, TTransportBase

from tests import _conformance as C
from tests.gen.conformance_py.txthrift_conformance import Base, Conformance, Second
from tests.gen.conformance_py.txthrift_conformance import ttypes as T
from txthrift import Codec, Limits
from txthrift._codec import protocolFactory, withStoredHeader
from txthrift._json import JSONProtocol
from txthrift._thriftinternals import STRUCT_HOOKS

MiB = 1024 * 1024


@contextmanager
def driven(path: str) -> Iterator[None]:
    """
    Read and write by one of the two ways the protocol is driven:
    C{"walker"}, generated code's fast paths (a struct at once, walking its
    C{thrift_spec}), or C{"api"}, the protocol's read and write API, a call
    per field (what C{skip}, code without the fast paths and hand-written
    code use).
    """
    fast = [getattr(JSONProtocol, hook) for hook in STRUCT_HOOKS]
    if path == "api":
        for hook in STRUCT_HOOKS:
            setattr(JSONProtocol, hook, None)
    try:
        yield
    finally:
        for hook, method in zip(STRUCT_HOOKS, fast, strict=True):
            setattr(JSONProtocol, hook, method)


@pytest.fixture(params=["walker", "api"])
def codePath(request: pytest.FixtureRequest) -> Iterator[str]:
    """
    Run a test over both ways the protocol is driven (see L{driven}).
    """
    with driven(request.param):
        yield request.param


class ApacheJSON(TJSONProtocol):
    """
    Apache's JSON protocol, writing non-finite doubles as the Thrift JSON
    protocol defines them (Apache's Python writes a bare C{nan}), which is
    what txthrift's writer must match byte for byte.
    """

    def writeDouble(self, dbl: float) -> None:
        if math.isfinite(dbl):
            super().writeDouble(dbl)
        elif math.isnan(dbl):
            self.writeJSONString("NaN")
        else:
            self.writeJSONString("Infinity" if dbl > 0 else "-Infinity")


def ours(trans: Any, limits: Limits | None = None) -> TProtocolBase:
    """
    txthrift's JSON protocol, as its codecs make it.
    """
    return protocolFactory("json", limits or Limits()).getProtocol(trans)


def encode(protocol: Callable[[Any], TProtocolBase], body: Any, name: str = "m",
           mtype: int = TMessageType.CALL, seqid: int = 7) -> bytes:
    buffer = TMemoryBuffer()
    oprot = protocol(buffer)
    oprot.writeMessageBegin(name, mtype, seqid)
    body.write(oprot)
    oprot.writeMessageEnd()
    return buffer.getvalue()


def decode(protocol: Callable[[Any], TProtocolBase], data: bytes,
           cls: type) -> tuple[tuple[str, int, int], Any]:
    iprot = protocol(TMemoryBuffer(data))
    header = iprot.readMessageBegin()
    body = cls()
    body.read(iprot)
    iprot.readMessageEnd()
    return header, body


def same(a: Any, b: Any) -> bool:
    return C.canonical(a) == C.canonical(b)


VALUES = [
    *C.primitives(T, True),
    C.containers(T, True),
    C.containers(T, False),
    T.Containers(),
    C.fullDefaults(T, True),
    T.Defaults(id=1, name="n"),
    C.tree(T),
    C.outer(T, True),
    *C.choices(T, True),
    C.everything(T, True),
    T.Arguments(**dict(zip(C.MANY_ARGS_NAMES, C.manyArgs(T, True)))),
]


# -- byte for byte and round trips ---------------------------------------------


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_writesWhatApacheWrites(value: Any, codePath: str) -> None:
    """
    The writer's bytes are Apache's for every type, including strings with
    control characters, quotes and non-BMP characters, map keys of every
    type (quoted numbers), empty containers and nested structs.
    """
    assert encode(ours, value) == encode(ApacheJSON, value)


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_readsWhatApacheWrites(value: Any, codePath: str) -> None:
    """
    Every value Apache's writer writes reads back exactly (types, -0.0,
    NaN and the infinities, i64 extremes, every byte of binary), and
    Apache's reader reads back what ours writes.
    """
    header, got = decode(ours, encode(ApacheJSON, value), type(value))
    assert header == ("m", TMessageType.CALL, 7)
    assert same(got, value), C.mismatch(value, got)
    _, back = decode(TJSONProtocol, encode(ours, value), type(value))
    assert same(back, value), C.mismatch(value, back)


texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)
doubles = st.floats(allow_nan=True, allow_infinity=True)
primitiveValues = st.builds(
    T.Primitives,
    aBool=st.none() | st.booleans(),
    aByte=st.none() | st.integers(*C.I8),
    anI16=st.none() | st.integers(*C.I16),
    anI32=st.none() | st.integers(*C.I32),
    anI64=st.none() | st.integers(*C.I64),
    aDouble=st.none() | doubles,
    aString=st.none() | texts,
    aBinary=st.none() | st.binary(max_size=40),
)
containerValues = st.builds(
    T.Containers,
    bools=st.none() | st.lists(st.booleans(), max_size=5),
    i64s=st.none() | st.lists(st.integers(*C.I64), max_size=5),
    doubles=st.none() | st.lists(doubles, max_size=5),
    strings=st.none() | st.lists(texts, max_size=5),
    binaries=st.none() | st.lists(st.binary(max_size=10), max_size=5),
    doubleSet=st.none() | st.sets(st.floats(allow_nan=False), max_size=5),
    boolMap=st.none() | st.dictionaries(st.booleans(), st.integers(*C.I8), max_size=2),
    i64Map=st.none() | st.dictionaries(st.integers(*C.I64), doubles, max_size=5),
    doubleMap=st.none() | st.dictionaries(st.floats(allow_nan=False), texts, max_size=5),
    stringMap=st.none() | st.dictionaries(texts, st.binary(max_size=10), max_size=5),
    binaryMap=st.none() | st.dictionaries(st.binary(max_size=10), st.booleans(), max_size=5),
    cube=st.none() | st.lists(st.lists(st.lists(st.integers(*C.I32), max_size=3), max_size=3),
                              max_size=3),
    structs=st.none() | st.lists(primitiveValues, max_size=3),
    deepMap=st.none() | st.dictionaries(
        st.integers(*C.I32), st.dictionaries(texts, primitiveValues, max_size=2), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(primitiveValues, containerValues))
def test_randomStructuresMatchApache(value: Any) -> None:
    """
    Random structures: the same bytes as Apache's writer, read back exactly
    by our reader and by Apache's.
    """
    apache = encode(ApacheJSON, value)
    for path in ("walker", "api"):
        with driven(path):
            data = encode(ours, value)
            _, got = decode(ours, data, type(value))
        assert data == apache, path
        assert same(got, value), (path, C.mismatch(value, got))
    _, back = decode(TJSONProtocol, data, type(value))
    assert same(back, value), C.mismatch(value, back)
    codec = Codec("json")
    assert codec.encode("m", TMessageType.CALL, 7, value) == apache
    _, got = codecRead(codec, apache, type(value)())
    assert same(got, value), C.mismatch(value, got)


def test_messageTypesAndExceptions(codePath: str) -> None:
    """
    Every message type, seqids at the i32 extremes, and a
    L{TApplicationException} body, written as Apache writes them and read
    back.
    """
    error = TApplicationException(TApplicationException.INTERNAL_ERROR, 'bad "thing"\n')
    for mtype in (TMessageType.CALL, TMessageType.REPLY, TMessageType.EXCEPTION,
                  TMessageType.ONEWAY):
        for seqid in (C.I32[0], 0, C.I32[1]):
            data = encode(ours, error, "na\u00efve:m\u00e9thod", mtype, seqid)
            assert data == encode(ApacheJSON, error, "na\u00efve:m\u00e9thod", mtype, seqid)
            header, got = decode(ours, data, TApplicationException)
            assert header == ("na\u00efve:m\u00e9thod", mtype, seqid)
            assert (got.type, got.message) == (error.type, error.message)


def test_structWithoutMessage(codePath: str) -> None:
    """
    A struct written alone (as C{TSerialization.serialize} writes one)
    reaches the transport when it ends; so does a bare value.
    """
    value = C.outer(T, True)
    apache, buffer = TMemoryBuffer(), TMemoryBuffer()
    value.write(ApacheJSON(apache))
    value.write(ours(buffer))
    assert buffer.getvalue() == apache.getvalue()
    alone = TMemoryBuffer()
    ours(alone).writeString("x\u00e9")
    assert alone.getvalue() == '"x\u00e9"'.encode()
    factory = protocolFactory("json", Limits())
    data = TSerialization.serialize(value, factory)
    assert data == apache.getvalue()
    assert same(TSerialization.deserialize(T.Outer(), data, factory), value)
    with pytest.raises(TProtocolException) as caught:
        TSerialization.deserialize(T.Outer(), data + b"{}", factory)
    assert "data after the value" in str(caught.value)


def test_readsWithoutPaddingOrWithWhitespace(codePath: str) -> None:
    """
    Base64 without its padding (as Apache's C++ writer writes it) and JSON
    whitespace between tokens are read.
    """
    data = (b' [ 1 , "echoBinary" , 1 , 3 , { "1" : { "str" : "AAEC" } , '
            b'"2" : { "str" : "/w" } } ] ')
    header, got = decode(ours, data, T.Primitives)
    assert header == ("echoBinary", 1, 3)
    assert (got.aBool, got.aByte) == (None, None)
    iprot = ours(TMemoryBuffer(data))
    iprot.readMessageBegin()
    iprot.readStructBegin()
    assert iprot.readFieldBegin() == (None, TType.STRING, 1)
    assert iprot.readBinary() == b"\x00\x01\x02"
    iprot.readFieldEnd()
    assert iprot.readFieldBegin() == (None, TType.STRING, 2)
    assert iprot.readBinary() == b"\xff"


class ByteAtATime(TTransportBase):
    """
    A transport that is not in memory: the reader must stop at the end of
    the first message.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, sz: int) -> bytes:
        chunk = self.data[self.pos:self.pos + min(sz, 1)]
        self.pos += len(chunk)
        return chunk


def test_streamingTransport(codePath: str) -> None:
    """
    Over a transport that is read as a stream, messages are read one by one.
    """
    first, second = C.outer(T, True), C.containers(T, True)
    stream = ByteAtATime(encode(ApacheJSON, first) + encode(ApacheJSON, second))
    iprot = ours(stream)
    for value in (first, second):
        iprot.readMessageBegin()
        got = type(value)()
        got.read(iprot)
        iprot.readMessageEnd()
        assert same(got, value)


# -- processors -------------------------------------------------------------------


def structOf(service: Any, name: str) -> Any:
    """
    A generated args or result class of C{service}, or of the one it extends.
    """
    return getattr(service, name, None) or getattr(Base, name)


def call(processor: Any, method: str, args: tuple[Any, ...], service: Any,
         name: str, seqid: int) -> tuple[int, Any]:
    """
    One call through C{processor}, read and written by a txthrift JSON
    codec; the request is written and the reply read by Apache's protocol.

    @return: the reply's message type and its decoded body.
    """
    codec = Codec("json")
    request = encode(ApacheJSON, structOf(service, f"{method}_args")(*args), name,
                     TMessageType.CALL, seqid)
    iprot, readName, _, readSeqid = codec.readHeader(request)
    assert (readName, readSeqid) == (name, seqid)
    oprot = codec.replyWriter()
    processor.process(withStoredHeader(iprot, (name, TMessageType.CALL, seqid)), oprot)
    reply = oprot.trans.getvalue()
    if not reply:
        return TMessageType.ONEWAY, None
    iprotBack = TJSONProtocol(TMemoryBuffer(reply))
    replyName, mtype, replySeqid = iprotBack.readMessageBegin()
    # A multiplexed processor answers with the method's own name.
    assert (replyName, replySeqid) == (method, seqid)
    body = TApplicationException() if mtype == TMessageType.EXCEPTION else structOf(
        service, f"{method}_result")()
    body.read(iprotBack)
    return mtype, body


def checkCase(case: C.Case, mtype: int, body: Any) -> None:
    if case.raises == "undeclared":
        assert mtype == TMessageType.EXCEPTION
        assert body.type == TApplicationException.INTERNAL_ERROR
        return
    assert mtype == TMessageType.REPLY, (case.name, body)
    if case.raises is not None:
        raised = [getattr(body, f[2]) for f in type(body).thrift_spec[1:] if f is not None]
        assert [same(e, case.raises) for e in raised if e is not None] == [True], case.name
    elif case.check is not None:
        assert case.check(body.success) is None
    else:
        got = getattr(body, "success", None)
        assert same(got, case.expect), (case.name, C.mismatch(case.expect, got))


@pytest.mark.parametrize("multiplexed", [False, True], ids=["Processor", "TMultiplexedProcessor"])
def test_apacheProcessorsReadAndWriteThroughIt(multiplexed: bool, codePath: str) -> None:
    """
    Apache's generated processor (alone, and behind a
    C{TMultiplexedProcessor}) reads every conformance call through the new
    reader and writes its replies through the new writer, which Apache's
    reader reads.
    """
    handler = C.ConformanceHandler(T)
    main: Any = Conformance.Processor(handler)
    second: Any = Second.Processor(C.SecondHandler())
    if multiplexed:
        processor = TMultiplexedProcessor()
        processor.registerProcessor("Conformance", main)
        processor.registerProcessor("Second", second)
    for seqid, case in enumerate(C.cases(T, big=False), 1):
        service = Second if case.service == C.SECOND else Conformance
        if multiplexed:
            target = processor
            name = f"{'Second' if service is Second else 'Conformance'}{SEPARATOR}{case.method}"
        else:
            target = second if service is Second else main
            name = case.method
        mtype, body = call(target, case.method, case.args, service, name, seqid)
        if case.method == "notify":
            assert mtype == TMessageType.ONEWAY
            continue
        checkCase(case, mtype, body)


# -- malformed input ---------------------------------------------------------------

GOOD_HEAD = b'[1,"echoPrimitives",1,5,'


def readPrimitives(data: bytes, limits: Limits | None = None) -> Any:
    """
    Read C{data} as an C{echoPrimitives} call.
    """
    iprot = ours(TMemoryBuffer(data), limits)
    iprot.readMessageBegin()
    args = Conformance.echoPrimitives_args()
    args.read(iprot)
    iprot.readMessageEnd()
    return args.v


HEADER_ERRORS = {
    "not JSON": (b"hello", "expected '['"),
    "empty": (b"", "expected '['"),
    "version 2": (b'[2,"m",1,1,{}]', "version 2, not 1"),
    "version as string": (b'["1","m",1,1,{}]', "version the string '1', not 1"),
    "name not a string": (b'[1,5,1,1,{}]', "message name is 5"),
    "type out of range": (b'[1,"m",256,1,{}]', "message type is 256"),
    "seqid too big": (b'[1,"m",1,2147483648,{}]', "seqid is 2147483648"),
    "seqid a float": (b'[1,"m",1,1.5,{}]', "seqid is 1.5"),
    "no body comma": (b'[1,"m",1,1]', "expected ',' before the body"),
    "truncated header": (b'[1,"m', "malformed JSON in the name"),
    "header name not UTF-8": (b'[1,"\xff",1,1,{}]', "not UTF-8 (byte 4"),
    "lone surrogate name": (b'[1,"\\ud800",1,1,{}]', "unpaired UTF-16 surrogate"),
}


@pytest.mark.parametrize("name", sorted(HEADER_ERRORS))
def test_malformedHeaders(name: str) -> None:
    """
    A bad message header fails C{readMessageBegin} with a
    L{TProtocolException} saying what is wrong.
    """
    data, message = HEADER_ERRORS[name]
    with pytest.raises(TProtocolException) as caught:
        ours(TMemoryBuffer(data)).readMessageBegin()
    assert message in str(caught.value)


BODY_ERRORS = {
    "truncated body": (b'{"1":{"tf":1}', "malformed JSON in the message body"),
    "no closing bracket": (b'{"1":{"tf":1}}', "expected ']' to close the message"),
    "data after": (b'{}] []', "data after the message"),
    "body not UTF-8": (b'{"1":{"rec":{"7":{"str":"\xff\xfe"}}}}]', "not UTF-8 (byte 49"),
    "body an array": (b'[]]', "struct is an array, not an object"),
    "field id not a number": (b'{"x":{"i32":1}}]', "field id is the string 'x'"),
    "field id too big": (b'{"70000":{"i32":1}}]', "field id 70000 is outside"),
    "field of two members": (b'{"4":{"i32":1,"i64":2}}]', "not an object of one member"),
    "field not an object": (b'{"4":5}]', "field 4 is 5"),
    "unknown type name": (b'{"4":{"int":1}}]', "field 4 type is the string 'int'"),
    "huge number": (b'{"5":{"i64":' + b"9" * 5000 + b"}}]", "malformed JSON in the message body"),
    "nested too deep to parse": (b'{"1":{"rec":' * 3000 + b"{}" + b"}}" * 3000 + b"]",
                                 "nested too deep"),
}


@pytest.mark.parametrize("name", sorted(BODY_ERRORS))
def test_malformedBodies(name: str, codePath: str) -> None:
    """
    A bad body fails reading the body (not the header, so that the server
    can answer the call) with a L{TProtocolException} saying what is wrong.
    """
    data, message = BODY_ERRORS[name]
    iprot = ours(TMemoryBuffer(GOOD_HEAD + data))
    assert iprot.readMessageBegin() == ("echoPrimitives", 1, 5)
    with pytest.raises(TProtocolException) as caught:
        Conformance.echoPrimitives_args().read(iprot)
    assert message in str(caught.value)


VALUE_ERRORS = {
    "i32 too big": (b'{"4":{"i32":2147483648}}', "i32 2147483648 is outside"),
    "i8 too small": (b'{"2":{"i8":-129}}', "i8 -129 is outside"),
    "i32 a float": (b'{"4":{"i32":1.5}}', "i32 is 1.5, not an integer"),
    "i32 a string": (b'{"4":{"i32":"x"}}', "i32 is the string 'x'"),
    "bool true": (b'{"1":{"tf":true}}', "bool is True, not an integer"),
    "double a word": (b'{"6":{"dbl":"many"}}', "double is the string 'many'"),
    "string a number": (b'{"7":{"str":5}}', "string is 5, not a JSON string"),
    "bad base64": (b'{"8":{"str":"A"}}', "not base64"),
    "binary a list": (b'{"8":{"str":[]}}', "binary is an array"),
    "lone surrogate": (b'{"7":{"str":"a\\udc00b"}}', "unpaired UTF-16 surrogate"),
    "list count too high": (b'{"4":{"lst":["i32",3,1,2]}}', "list claims 3 elements but holds 2"),
    "list count too low": (b'{"4":{"lst":["i32",1,1,2]}}', "list claims 1 elements but holds 2"),
    "list without type": (b'{"4":{"lst":[]}}', "list is an array, not [type, size"),
    "list unknown type": (b'{"4":{"lst":["x",0]}}', "element type is the string 'x'"),
    "negative list": (b'{"4":{"lst":["i32",-1]}}', "container length -1"),
    "list count a string": (b'{"4":{"lst":["i32","0"]}}', "list size is the string '0'"),
    "map count wrong": (b'{"20":{"map":["i32","i64",2,{"1":2}]}}',
                        "map claims 2 elements but holds 1"),
    "map values not an object": (b'{"20":{"map":["i32","i64",0,[]]}}', "map is an array"),
    "map key not a number": (b'{"20":{"map":["i32","i64",1,{"a":2}]}}',
                             "i32 is the string 'a'"),
    "set elements wrong type": (b'{"12":{"set":["i32",1,"q"]}}', "i32 is the string 'q'"),
}


@pytest.mark.parametrize("name", sorted(VALUE_ERRORS))
def test_malformedValues(name: str, codePath: str) -> None:
    """
    Values not of their type, out of its range, and containers whose size
    disagrees with their elements fail with a L{TProtocolException} saying
    what is wrong.
    """
    struct, message = VALUE_ERRORS[name]
    # Primitives' fields 1-8 and Containers' 4, 12 and 20 are of these types.
    method = "echoContainers" if b"lst" in struct or b"map" in struct or b"set" in struct \
        else "echoPrimitives"
    data = b'[1,"' + method.encode() + b'",1,5,{"1":{"rec":' + struct + b"}}]"
    iprot = ours(TMemoryBuffer(data))
    iprot.readMessageBegin()
    with pytest.raises(TProtocolException) as caught:
        structOf(Conformance, f"{method}_args")().read(iprot)
    assert message in str(caught.value)


def test_skipsUnknownFields(codePath: str) -> None:
    """
    Fields the IDL does not know, of every type, are skipped; a field of a
    known id but another type is skipped too.
    """
    data = (GOOD_HEAD + b'{"99":{"lst":["rec",1,{"1":{"i32":1}}]},"98":{"map":["str","dbl",1,'
            b'{"a":"NaN"}]},"97":{"rec":{}},"96":{"str":"x"},"95":{"dbl":1.5},"94":{"tf":0},'
            b'"1":{"rec":{"1":{"tf":1},"4":{"str":"not an i32"},"93":{"set":["i8",0]}}}}]')
    assert same(readPrimitives(data), T.Primitives(aBool=True))


def test_skipChecksTheShape(codePath: str) -> None:
    """
    A skipped value must still be of the type its field claims.
    """
    with pytest.raises(TProtocolException) as caught:
        readPrimitives(GOOD_HEAD + b'{"99":{"lst":{"1":2}}}]')
    assert "lst value is an object" in str(caught.value)


def test_acceptsWhatApacheAccepts(codePath: str) -> None:
    """
    Quoted doubles (as map keys write them), integral doubles, the
    non-finite names, -0 as -0.0, and raw control characters in strings
    (Apache's writer leaves most unescaped) are all read.
    """
    data = (GOOD_HEAD + b'{"1":{"rec":{"6":{"dbl":"-Infinity"},"7":{"str":"a\x01\x1fb"}}},'
            b'"2":{"rec":{"6":{"dbl":-0}}},"3":{"rec":{"6":{"dbl":3}}}}]')
    iprot = ours(TMemoryBuffer(data.replace(b"echoPrimitives", b"x")))
    iprot.readMessageBegin()
    iprot.readStructBegin()
    values = []
    while True:
        _, ttype, _ = iprot.readFieldBegin()
        if ttype == TType.STOP:
            break
        got = T.Primitives()
        got.read(iprot)
        values.append(got)
        iprot.readFieldEnd()
    assert [v.aDouble for v in values] == [-math.inf, -0.0, 3.0]
    assert math.copysign(1, values[1].aDouble) == -1
    assert isinstance(values[2].aDouble, float)
    assert values[0].aString == "a\x01\x1fb"


# -- limits --------------------------------------------------------------------------


def argsOf(method: str, *args: Any) -> bytes:
    return encode(ApacheJSON, getattr(Conformance, f"{method}_args")(*args), method)


def readArgs(method: str, data: bytes, limits: Limits) -> Any:
    iprot = ours(TMemoryBuffer(data), limits)
    iprot.readMessageBegin()
    args = getattr(Conformance, f"{method}_args")()
    args.read(iprot)
    return args.v


def test_stringLimitCountsUTF8Bytes(codePath: str) -> None:
    """
    C{max_string_length} bounds a string's UTF-8 bytes, and a binary value's
    bytes (not its longer base64 text).
    """
    limits = Limits(max_string_length=12)
    assert readArgs("echoString", argsOf("echoString", "\u00e9" * 6), limits) == "\u00e9" * 6
    with pytest.raises(TProtocolException) as caught:
        readArgs("echoString", argsOf("echoString", "\u00e9" * 7), limits)
    assert "string length 14 is outside 0..12 (max_string_length)" in str(caught.value)
    assert caught.value.type == TProtocolException.SIZE_LIMIT
    assert readArgs("echoBinary", argsOf("echoBinary", b"\xff" * 12), limits) == b"\xff" * 12
    with pytest.raises(TProtocolException) as caught:
        readArgs("echoBinary", argsOf("echoBinary", b"\xff" * 13), limits)
    assert "binary length" in str(caught.value)
    assert caught.value.type == TProtocolException.SIZE_LIMIT


@pytest.mark.parametrize("method,small,big", [
    ("echoNames", ["a", "b"], ["a", "b", "c"]),
    ("echoIndex", {"a": [], "b": []}, {"a": [], "b": [], "c": []}),
    ("echoIndex", {"a": [{1, 2}]}, {"a": [{1, 2, 3}]}),
])
def test_containerLimit(method: str, small: Any, big: Any, codePath: str) -> None:
    """
    C{max_container_length} bounds lists, maps and sets.
    """
    limits = Limits(max_container_length=2)
    assert same(readArgs(method, argsOf(method, small), limits), small)
    with pytest.raises(TProtocolException) as caught:
        readArgs(method, argsOf(method, big), limits)
    assert "container length 3 is outside 0..2 (max_container_length)" in str(caught.value)
    assert caught.value.type == TProtocolException.SIZE_LIMIT


def chain(n: int) -> Any:
    node = T.Node(value=0)
    for value in range(1, n):
        node = T.Node(value=value, children=[node])
    return node


def test_depthLimit(codePath: str) -> None:
    """
    C{max_depth} bounds the nesting of structs and containers, the
    message's own struct being level 1: a chain of 3 nodes is 6 deep.
    """
    data = argsOf("echoNode", chain(3))
    assert same(readArgs("echoNode", data, Limits(max_depth=6)), chain(3))
    with pytest.raises(TProtocolException) as caught:
        readArgs("echoNode", data, Limits(max_depth=5))
    assert caught.value.type == TProtocolException.DEPTH_LIMIT
    assert "deeper than 5 (max_depth)" in str(caught.value)


# -- work per byte -----------------------------------------------------------------


@contextmanager
def countingCalls() -> Iterator[list[int]]:
    """
    Count the Python and C functions called, as a measure of work done per
    value rather than per byte.
    """
    count = [0]

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            count[0] += 1

    sys.setprofile(profile)
    try:
        yield count
    finally:
        sys.setprofile(None)


@pytest.mark.parametrize("method,value", [
    ("echoString", "x\u00e9\u20ac\"\\\n" * (MiB // 8)),
    ("echoBinary", bytes(range(256)) * (MiB // 256)),
])
def test_bigValuesCostCallsPerValueNotPerByte(method: str, value: Any, codePath: str) -> None:
    """
    Decoding and encoding a 1 MiB value takes a few dozen function calls,
    not some per byte (Apache's JSON protocol makes millions): what bounds
    how long one message holds the reactor.
    """
    codec = Codec("json")
    args = getattr(Conformance, f"{method}_args")(value)
    data = encode(ApacheJSON, args, method)
    assert len(data) > MiB
    with countingCalls() as count:
        iprot, _, _, _ = codec.readHeader(data)
        got = getattr(Conformance, f"{method}_args")()
        codec.readBody(iprot, got)
    assert got.v == value
    assert count[0] < 200, f"{count[0]} calls to decode {len(data)} bytes"
    with countingCalls() as count:
        encoded = codec.encode(method, TMessageType.CALL, 7, args)
    assert encoded == data
    assert count[0] < 200, f"{count[0]} calls to encode {len(data)} bytes"


def test_numberAndStringListsCostCallsPerListNotPerElement() -> None:
    """
    Reading and writing generated structs, lists of numbers and strings are
    checked and converted a list at a time: the calls made do not grow with
    the number of elements.
    """
    value = T.Containers(i64s=list(range(-50_000, 50_000)), bools=[True, False] * 50_000,
                         doubles=[0.5] * 100_000, strings=["s\u00e9"] * 100_000,
                         i32Map={i: i for i in range(100_000)})
    args = Conformance.echoContainers_args(value)
    codec = Codec("json")
    with countingCalls() as count:
        data = codec.encode("echoContainers", TMessageType.CALL, 7, args)
    assert count[0] < 300, f"{count[0]} calls to encode {len(data)} bytes"
    assert data == encode(ApacheJSON, args, "echoContainers")
    with countingCalls() as count:
        iprot, _, _, _ = codec.readHeader(data)
        got = Conformance.echoContainers_args()
        codec.readBody(iprot, got)
    assert count[0] < 300, f"{count[0]} calls to decode {len(data)} bytes"
    assert same(got.v, value)


@pytest.mark.parametrize("field,value", [("aByte", 128), ("anI16", -32769),
                                         ("anI32", 2**31), ("anI64", -(2**63) - 1)])
def test_writeRefusesOutOfRangeIntegers(field: str, value: int, codePath: str) -> None:
    """
    An integer outside its type's range is refused as Apache refuses it.
    """
    with pytest.raises(TProtocolException) as caught:
        encode(ours, T.Primitives(**{field: value}))
    with pytest.raises(TProtocolException) as apache:
        encode(ApacheJSON, T.Primitives(**{field: value}))
    assert str(caught.value) == str(apache.value)


@pytest.mark.parametrize("enabled", [True, False])
def test_garbageCollectionIsLeftAsItWas(enabled: bool) -> None:
    """
    Collection, paused while a message is parsed and built, is on again
    after reads that succeed and reads that fail, and stays off if it was.
    """
    import gc

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        decode(ours, encode(ApacheJSON, C.outer(T, True)), T.Outer)
        assert gc.isenabled() is enabled
        with pytest.raises(TProtocolException):
            readPrimitives(GOOD_HEAD + b'{"1":{"rec":{"4":{"i32":"x"}}}}]')
        assert gc.isenabled() is enabled
        with pytest.raises(TProtocolException):
            readPrimitives(GOOD_HEAD + b'{"1":{"rec":')
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_serverAnswersAMultiplexedProcessorOverJSON() -> None:
    """
    A txthrift server with a C{TMultiplexedProcessor} reads framed JSON calls
    (written by Apache's protocol) through the new reader and answers each,
    a bad one with a C{TApplicationException} and the connection kept.
    """
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from txthrift import ServerFactory

    processor = TMultiplexedProcessor()
    processor.registerProcessor("Conformance", Conformance.Processor(C.ConformanceHandler(T)))
    processor.registerProcessor("Second", Second.Processor(C.SecondHandler()))
    clock = Clock()
    factory = ServerFactory(processor, clock=clock, transport="framed", protocol="json")
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    value = C.everything(T, False)
    calls = [
        encode(ApacheJSON, Conformance.echoEverything_args(value),
               f"Conformance{SEPARATOR}echoEverything", TMessageType.CALL, 1),
        GOOD_HEAD.replace(b"echoPrimitives", b"Conformance:echoPrimitives").replace(b",5,", b",2,")
        + b'{"1":{"rec":{"4":{"i32":"x"}}}}]',
        encode(ApacheJSON, Second.whoami_args(), f"Second{SEPARATOR}whoami",
               TMessageType.CALL, 3),
    ]
    for message in calls:
        proto.dataReceived(len(message).to_bytes(4, "big") + message)
    clock.advance(0)
    stream = TMemoryBuffer(transport.value())
    replies = []
    for _ in calls:
        stream.read(4)
        iprot = TJSONProtocol(stream)
        name, mtype, seqid = iprot.readMessageBegin()
        body: Any = TApplicationException() if mtype == TMessageType.EXCEPTION else {
            "echoEverything": Conformance.echoEverything_result,
            "whoami": Second.whoami_result}[name]()
        body.read(iprot)
        iprot.readMessageEnd()
        replies.append((name, mtype, seqid, body))
    assert [(r[0], r[1], r[2]) for r in replies] == [
        ("echoEverything", TMessageType.REPLY, 1),
        ("Conformance:echoPrimitives", TMessageType.EXCEPTION, 2),
        ("whoami", TMessageType.REPLY, 3)]
    assert same(replies[0][3].success, value)
    assert replies[1][3].type == TApplicationException.PROTOCOL_ERROR
    assert "i32 is the string 'x'" in replies[1][3].message
    assert replies[2][3].success == "Second"
    assert not transport.disconnecting


def test_skippedValuesCountTowardsTheLimits(codePath: str) -> None:
    """
    A field that is not read (unknown to the IDL) is held to the same
    depth and container limits as one that is: the depth a message nests
    to does not depend on which of its fields the reader knows.
    """
    # Field 99 of the arguments: a struct holding a list holding a struct.
    unknown = b'{"99":{"rec":{"1":{"lst":["rec",1,{"1":{"map":["str","i32",2,{"a":1,"b":2}]}}]}}}}]'
    data = GOOD_HEAD + unknown
    assert same(readPrimitives(data, Limits(max_depth=5)), None)
    with pytest.raises(TProtocolException) as caught:
        readPrimitives(data, Limits(max_depth=4))
    assert caught.value.type == TProtocolException.DEPTH_LIMIT
    with pytest.raises(TProtocolException) as caught:
        readPrimitives(data, Limits(max_container_length=1))
    assert "container length 2 is outside 0..1 (max_container_length)" in str(caught.value)


@pytest.mark.parametrize("value", [C.tree(T), C.outer(T, True), C.containers(T, True),
                                   C.everything(T, True), chain(20)],
                         ids=["tree", "outer", "containers", "everything", "chain"])
def test_depthAgreesWithTheScanner(value: Any, codePath: str) -> None:
    """
    The reader refuses a message for its depth at exactly the limits the
    framing layer's depth check does (L{txthrift._scanning.checkDepth}, the
    definition every protocol shares), read whole or skipped.
    """
    from txthrift._scanning import DepthError, checkDepth

    method = {"Node": "echoNode", "Outer": "echoOuter", "Containers": "echoContainers",
              "Everything": "echoEverything"}[type(value).__name__]
    data = argsOf(method, value)
    skipped = data.replace(b'{"1":{"rec"', b'{"9":{"rec"', 1)
    for limit in range(1, 30):
        limits = Limits(max_depth=limit)
        try:
            checkDepth(data, "json", limits)
            scanned = True
        except DepthError:
            scanned = False
        for message in (data, skipped):
            try:
                readArgs(method, message, limits)
                read = True
            except TProtocolException as e:
                assert e.type == TProtocolException.DEPTH_LIMIT
                read = False
            assert read == scanned, (limit, message is skipped)


# -- whole messages: the codec's shortcut ----------------------------------------------


def codecRead(codec: Codec, data: bytes, body: Any) -> tuple[tuple[str, int, int], Any]:
    """
    Read C{data} as a server or client does through C{codec}.
    """
    iprot, name, mtype, seqid = codec.readHeader(data)
    codec.readBody(iprot, body)
    return (name, mtype, seqid), body


def sharedReader(codec: Codec) -> TProtocolBase:
    """
    The protocol a JSON codec reads ordinary messages into, one for all.
    """
    iprot, *_ = codec.readHeader(encode(ApacheJSON, Base.add_args(1, 2), "add"))
    codec.readBody(iprot, Base.add_args())
    return iprot


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_codecWritesAndReadsWholeMessagesAsApache(value: Any) -> None:
    """
    A JSON codec writes a message in one piece, byte for byte as Apache's
    writer, and reads one with a single parse into the one reader it keeps
    for every message (not a protocol object per message).
    """
    codec = Codec("json")
    data = codec.encode("m", TMessageType.CALL, 7, value)
    assert data == encode(ApacheJSON, value)
    reader = sharedReader(codec)
    iprot, *_ = codec.readHeader(data)
    assert iprot is reader
    got = type(value)()
    codec.readBody(iprot, got)
    assert same(got, value), C.mismatch(value, got)


@pytest.mark.parametrize("text", [
    "", "plain", 'a "quoted" \\ word', "\b\f\n\r\t", "\x00\x01\x1f\x7f", "\\u0041",
    "na\u00efve \u20ac \U0001f600", "x" * 5000, "x" * 5000 + "\n",
])
def test_codecQuotesStringsAsApache(text: str) -> None:
    """
    Strings, with every character Apache's writer escapes or leaves as it
    is, are written as Apache writes them.
    """
    args = Conformance.echoString_args(text)
    data = Codec("json").encode("echoString", TMessageType.CALL, 1, args)
    assert data == encode(ApacheJSON, args, "echoString", TMessageType.CALL, 1)
    _, got = codecRead(Codec("json"), data, Conformance.echoString_args())
    assert got.v == text


@pytest.mark.parametrize("data,shared", [
    (b' [1,"echoPrimitives",1,5,{"1":{"rec":{"4":{"i32":1}}}}] ', False),
    ('[1,"\u00e9cho",1,5,{"1":{"rec":{"4":{"i32":1}}}}]'.encode(), False),
    (b'[1,"echoPrimitives",1,5,{"1":{"rec":{"6":{"dbl":-0}}}}]', True),
    (b'[1,"echoPrimitives",1,5,{"1":{"rec":{"7":{"str":"\\ud83d\\ude00"}}}}]', True),
], ids=["whitespace", "name not ASCII", "minus zero", "surrogate pair"])
def test_codecReadsUnusualMessagesAsTheProtocolDoes(data: bytes, shared: bool) -> None:
    """
    A message out of the common way is read with the same outcome as the
    protocol's own reading: by the protocol itself (whitespace around the
    message, a name that is not ASCII), or by the shared reader.
    """
    codec = Codec("json")
    reader = sharedReader(codec)
    iprot, name, mtype, seqid = codec.readHeader(data)
    assert (iprot is reader) is shared
    got = Conformance.echoPrimitives_args()
    codec.readBody(iprot, got)
    protocol = ours(TMemoryBuffer(data))
    assert (name, mtype, seqid) == protocol.readMessageBegin()
    expected = Conformance.echoPrimitives_args()
    expected.read(protocol)
    assert same(got.v, expected.v)
    if b"dbl" in data:
        assert math.copysign(1, got.v.aDouble) == -1
    if b"ud83d" in data:
        assert got.v.aString == "\U0001f600"


@pytest.mark.parametrize("name", sorted(HEADER_ERRORS))
def test_codecRefusesMalformedHeaders(name: str) -> None:
    """
    A JSON codec fails a bad header as the protocol does (so that the
    connection, out of step, is closed).
    """
    data, message = HEADER_ERRORS[name]
    with pytest.raises(TProtocolException) as caught:
        Codec("json").readHeader(data)
    assert message in str(caught.value)


@pytest.mark.parametrize("name", sorted(BODY_ERRORS) + sorted(VALUE_ERRORS))
def test_codecFailsMalformedBodiesWhenReadingThem(name: str) -> None:
    """
    A bad body does not fail the header, which a JSON codec reads as the
    protocol does (so that the server can answer the call), but the body.
    """
    if name in BODY_ERRORS:
        data, message = BODY_ERRORS[name]
        data, method = GOOD_HEAD + data, "echoPrimitives"
    else:
        struct, message = VALUE_ERRORS[name]
        method = "echoContainers" if b"lst" in struct or b"map" in struct \
            or b"set" in struct else "echoPrimitives"
        data = b'[1,"' + method.encode() + b'",1,5,{"1":{"rec":' + struct + b"}}]"
    codec = Codec("json")
    iprot, *header = codec.readHeader(data)
    assert header == [method, 1, 5]
    with pytest.raises(TProtocolException) as caught:
        codec.readBody(iprot, structOf(Conformance, f"{method}_args")())
    assert message in str(caught.value)
    # And the next message is read as if nothing had happened.
    assert codecRead(codec, argsOf("echoString", "ok"), Conformance.echoString_args())[1].v \
        == "ok"


def test_codecReadsWithinItsLimits() -> None:
    """
    A JSON codec holds whole messages to its limits: a message name (read
    again by the protocol, which says what is wrong), strings, containers
    and depth.
    """
    codec = Codec("json", Limits(max_string_length=5, max_container_length=2, max_depth=3))
    with pytest.raises(TProtocolException) as caught:
        codec.readHeader(argsOf("echoString", "x"))
    assert caught.value.type == TProtocolException.SIZE_LIMIT
    ping = argsOf("echoString", "x").replace(b"echoString", b"ping")
    assert codecRead(codec, ping, Conformance.echoString_args())[1].v == "x"
    cases = [(argsOf("echoString", "x" * 6).replace(b"echoString", b"ping"),
              Conformance.echoString_args(), "max_string_length"),
             (argsOf("echoNames", ["a", "b", "c"]).replace(b"echoNames", b"ping"),
              Conformance.echoNames_args(), "max_container_length"),
             (argsOf("echoNode", chain(2)).replace(b"echoNode", b"ping"),
              Conformance.echoNode_args(), "max_depth")]
    for data, body, limit in cases:
        iprot, *_ = codec.readHeader(data)
        with pytest.raises(TProtocolException) as caught:
            codec.readBody(iprot, body)
        assert limit in str(caught.value)


def test_codecDetachedReaderOutlivesTheNextMessage() -> None:
    """
    A reader detached from a JSON codec reads its own message's body after
    the codec has read the next one, and a processor reads through it.
    """
    codec = Codec("json")
    first, second = argsOf("echoString", "first"), argsOf("echoString", "second")
    iprot, *_ = codec.readHeader(first)
    own = withStoredHeader(codec.detach(iprot), ("echoString", 1, 7))
    assert own is not iprot
    assert codecRead(codec, second, Conformance.echoString_args())[1].v == "second"
    assert own.readMessageBegin() == ("echoString", 1, 7)
    args = Conformance.echoString_args()
    args.read(own)
    own.readMessageEnd()
    assert args.v == "first"
    assert own.trans.getvalue() == first


def test_codecWritesAndReadsApplicationExceptions() -> None:
    """
    Bodies without a C{thrift_spec} (Apache's L{TApplicationException}) are
    written and read through their own methods, as Apache writes them.
    """
    codec = Codec("json")
    data = codec.encodeException("na\u00efve", 9, TApplicationException.INTERNAL_ERROR,
                                 'bad "thing"\n')
    error = TApplicationException(TApplicationException.INTERNAL_ERROR, 'bad "thing"\n')
    assert data == encode(ApacheJSON, error, "na\u00efve", TMessageType.EXCEPTION, 9)
    data = encode(ApacheJSON, error, "m", TMessageType.EXCEPTION, 9)
    reader = sharedReader(codec)
    header, got = codecRead(codec, data, TApplicationException())
    assert header == ("m", TMessageType.EXCEPTION, 9)
    assert (got.type, got.message) == (error.type, error.message)
    assert codec.readHeader(data)[0] is reader


@pytest.mark.parametrize("enabled", [True, False])
def test_codecLeavesGarbageCollectionAsItWas(enabled: bool) -> None:
    """
    Collection, paused while a big message is parsed and read whole, is as
    it was after reads that succeed and reads that fail.
    """
    import gc

    big = Conformance.echoNames_args(["x" * 100] * 1000)
    data = encode(ApacheJSON, big, "echoNames")
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        codec = Codec("json")
        assert codecRead(codec, data, Conformance.echoNames_args())[1].v == big.v
        assert gc.isenabled() is enabled
        codec = Codec("json", Limits(max_container_length=10))
        iprot, *_ = codec.readHeader(data)
        with pytest.raises(TProtocolException):
            codec.readBody(iprot, Conformance.echoNames_args())
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_readsNumbersWithLeadingZerosAsApacheDoes(codePath: str) -> None:
    """
    Node.js's TJSONProtocol writes a negative i64 with leading zeros
    (C{-000000000003}); JSON has none, Apache's reader takes them, and so
    does ours, strings left as they are.
    """
    value = T.Primitives(anI64=-3, anI32=7, aDouble=-0.5, aString="-0003 and 007")
    data = encode(ApacheJSON, value)
    node = (data.replace(b'{"i64":-3}', b'{"i64":-000000000003}')
            .replace(b'{"i32":7}', b'{"i32":007}').replace(b'{"dbl":-0.5}', b'{"dbl":-00.5}'))
    assert node != data and b"-000000000003}" in node
    header, got = decode(ours, node, T.Primitives)
    _, apache = decode(TJSONProtocol, node, T.Primitives)
    assert header == ("m", TMessageType.CALL, 7)
    assert same(got, value) and same(apache, value)
    assert got.aString == "-0003 and 007"
