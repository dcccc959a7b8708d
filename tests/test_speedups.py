"""
Tests for L{txthrift._speedups}'s walk of whole unframed messages
(C{messageEnd}, C{cutMessages}): it ends each message where the Python
scanner of L{txthrift._scanning} does, to the byte and under every limit,
leaves to that scanner everything it does not accept, and is the walk taken.

Every test compares the two on the same bytes: the Python walk is forced as
the rest of the suite forces it, by setting C{_scanning._skipFlat} to
C{_scanning._skipFlatInPython}.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.Thrift import TMessageType, TType
from thrift.transport.TTransport import TMemoryBuffer

from txthrift import FrameError, Limits, _scanning
from txthrift._framing import makeFramer
from txthrift._scanning import DepthError, scannerFor

try:
    from txthrift import _speedups
except ImportError:  # pragma: no cover - depends on the install
    _speedups = None  # type: ignore[assignment]

pytestmark = pytest.mark.skipif(
    _speedups is None, reason="txthrift._speedups was not built (no C compiler at install time)")

PROTOCOLS = ["binary", "compact"]
MiB = 1024 * 1024


@contextmanager
def walking(how: str) -> Iterator[None]:
    """
    Walk with the C walks (C{"compiled"}) or with the Python ones only.
    """
    saved = _scanning._skipFlat
    if how == "python":
        _scanning._skipFlat = _scanning._skipFlatInPython
    try:
        yield
    finally:
        _scanning._skipFlat = saved


def pythonEnd(protocol: str, limits: Limits, data: bytes) -> int:
    """
    Where the Python scanner ends the message at the start of C{data}; -1
    if it is not whole or is refused.
    """
    with walking("python"):
        try:
            end = scannerFor(protocol, limits).scan(data)
        except FrameError:
            return -1
    return -1 if end is None else end


def compiledEnd(protocol: str, limits: Limits, data: bytes) -> int:
    """
    Where C{messageEnd}, given the limits as the scanner gives them, ends it.
    """
    scanner = scannerFor(protocol, limits)
    assert isinstance(scanner, _scanning._StructScanner)
    return scanner._messageEnd(data)


# -- random messages, written by Apache's protocols --------------------------

LEAVES = ["bool", "byte", "i16", "i32", "i64", "double", "string", "uuid"]
TTYPES = {"bool": TType.BOOL, "byte": TType.BYTE, "i16": TType.I16, "i32": TType.I32,
          "i64": TType.I64, "double": TType.DOUBLE, "string": TType.STRING,
          "uuid": TType.UUID, "list": TType.LIST, "set": TType.SET, "map": TType.MAP,
          "struct": TType.STRUCT}
# Small ids (a compact field header's delta) and any (a varint id).
fieldIds = st.integers(1, 20) | st.integers(-(2**15), 2**15 - 1)


def structOf(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.tuples(st.just("struct"), st.lists(st.tuples(fieldIds, inner), max_size=4)
                     .map(tuple))


types = st.recursive(
    st.sampled_from(LEAVES),
    lambda inner: (st.tuples(st.sampled_from(["list", "set"]), inner)
                   | st.tuples(st.just("map"), inner, inner) | structOf(inner)),
    max_leaves=10,
)


def kindOf(ttype: Any) -> str:
    return ttype if isinstance(ttype, str) else ttype[0]


def valuesOf(ttype: Any) -> st.SearchStrategy[Any]:
    kind = kindOf(ttype)
    leaves: dict[str, st.SearchStrategy[Any]] = {
        "bool": st.booleans(), "byte": st.integers(-128, 127),
        "i16": st.integers(-(2**15), 2**15 - 1), "i32": st.integers(-(2**31), 2**31 - 1),
        "i64": st.integers(-(2**63), 2**63 - 1), "double": st.floats(),
        "string": st.binary(max_size=20), "uuid": st.uuids(),
    }
    if kind in leaves:
        return leaves[kind]
    if kind in ("list", "set"):
        return st.lists(valuesOf(ttype[1]), max_size=4)
    if kind == "map":
        return st.lists(st.tuples(valuesOf(ttype[1]), valuesOf(ttype[2])), max_size=3)
    return st.tuples(*[valuesOf(fieldType) for _, fieldType in ttype[1]])


def write(oprot: Any, ttype: Any, value: Any) -> None:
    kind = kindOf(ttype)
    if kind in LEAVES:
        name = {"string": "Binary", "uuid": "Uuid", "i16": "I16", "i32": "I32",
                "i64": "I64"}.get(kind, kind.capitalize())
        getattr(oprot, f"write{name}")(value)
    elif kind in ("list", "set"):
        begin, end = (oprot.writeListBegin, oprot.writeListEnd) if kind == "list" else (
            oprot.writeSetBegin, oprot.writeSetEnd)
        begin(TTYPES[kindOf(ttype[1])], len(value))
        for element in value:
            write(oprot, ttype[1], element)
        end()
    elif kind == "map":
        oprot.writeMapBegin(TTYPES[kindOf(ttype[1])], TTYPES[kindOf(ttype[2])], len(value))
        for key, item in value:
            write(oprot, ttype[1], key)
            write(oprot, ttype[2], item)
        oprot.writeMapEnd()
    else:
        oprot.writeStructBegin("S")
        for (fieldId, fieldType), item in zip(ttype[1], value):
            oprot.writeFieldBegin("f", TTYPES[kindOf(fieldType)], fieldId)
            write(oprot, fieldType, item)
            oprot.writeFieldEnd()
        oprot.writeFieldStop()
        oprot.writeStructEnd()


@st.composite
def messages(draw: st.DrawFn, protocol: str) -> bytes:
    """
    A whole message of random structs, containers and values, as Apache writes it.
    """
    args = draw(structOf(types))
    buffer = TMemoryBuffer()
    if protocol == "compact":
        oprot: Any = TCompactProtocol(buffer)
    else:
        oprot = TBinaryProtocol(buffer, strictWrite=draw(st.booleans()))
    oprot.writeMessageBegin(draw(st.text(max_size=8)), draw(st.sampled_from([1, 2, 3, 4])),
                            draw(st.integers(-(2**31), 2**31 - 1)))
    write(oprot, args, draw(valuesOf(args)))
    oprot.writeMessageEnd()
    return buffer.getvalue()


@st.composite
def mutated(draw: st.DrawFn, protocol: str) -> bytes:
    """
    A message with bytes overwritten, left out, put in, or cut off at its end.
    """
    data = bytearray(draw(messages(protocol)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        change = draw(st.sampled_from(["overwrite", "delete", "insert", "cut"]))
        if change == "overwrite" and at < len(data):
            data[at] = draw(st.sampled_from([0, 1, 2, 0x0F, 0x7F, 0x80, 0xFF])
                            | st.integers(0, 255))
        elif change == "delete":
            del data[at:at + draw(st.integers(1, 4))]
        elif change == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[at:]
    return bytes(data)


def anyMessage(protocol: str) -> st.SearchStrategy[bytes]:
    return messages(protocol) | mutated(protocol)


# Tight limits, around the sizes of the messages above, or the defaults.
limits = st.builds(
    Limits,
    max_frame_size=st.integers(1, 300) | st.just(16 * MiB),
    max_string_length=st.none() | st.integers(0, 24),
    max_container_length=st.none() | st.integers(0, 5),
    max_depth=st.integers(1, 6) | st.just(64),
)


# -- where a message ends -----------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(protocol=st.sampled_from(PROTOCOLS), data=st.data())
def test_theCompiledWalkEndsAMessageWhereThePythonOneDoes(protocol: str,
                                                         data: st.DataObject) -> None:
    """
    Whole or not, valid or not, within the limits or not: C{messageEnd}
    ends a message where the Python scanner does, and gives up (-1) where
    that one waits for more bytes or refuses them.
    """
    message = data.draw(anyMessage(protocol)) + data.draw(st.binary(max_size=6))
    held = data.draw(limits)
    assert compiledEnd(protocol, held, message) == pythonEnd(protocol, held, message)


@settings(deadline=None)
@given(protocol=st.sampled_from(PROTOCOLS), data=st.data())
def test_theCompiledWalkTakesWholeMessages(protocol: str, data: st.DataObject) -> None:
    """
    Every message Apache writes is whole to it, to its last byte, whatever
    follows it (so that the walk above is not merely giving up).
    """
    message = data.draw(messages(protocol))
    after = data.draw(st.binary(max_size=6))
    assert compiledEnd(protocol, Limits(), message + after) == len(message)
    for cut in range(len(message)):
        assert compiledEnd(protocol, Limits(), message[:cut]) == -1


@settings(deadline=None)
@given(protocol=st.sampled_from(PROTOCOLS), data=st.data())
def test_theCompiledWalkHoldsEachLimitWhereThePythonOneDoes(protocol: str,
                                                          data: st.DataObject) -> None:
    """
    Each limit, tried alone at every value around what a message needs of
    it, refuses it in C (gives up) exactly when it does in Python.
    """
    message = data.draw(messages(protocol) | mutated(protocol))
    tried = [Limits(max_frame_size=size) for size in range(max(1, len(message) - 3),
                                                            len(message) + 2)]
    tried += [Limits(max_string_length=size) for size in range(22)]
    tried += [Limits(max_container_length=count) for count in range(6)]
    tried += [Limits(max_depth=depth) for depth in range(1, 8)]
    for held in tried:
        assert compiledEnd(protocol, held, message) == pythonEnd(protocol, held, message), held


def probes(protocol: str) -> Iterator[bytes]:
    """
    Messages with a field, list element, map key and map value of every type
    code, followed by bytes that some of them take as a value.
    """
    if protocol == "binary":
        header = struct.pack(">iii", -0x7FFEFFFF, 1, 1)[:8] + b"f" + struct.pack(">i", 1)
        heads = [bytes([code, 0, 1]) for code in range(256)]
        heads += [bytes([15, 0, 1, code, 0, 0, 0, 1]) for code in range(256)]
        heads += [bytes([13, 0, 1, code, 8, 0, 0, 0, 1]) for code in range(256)]
        heads += [bytes([13, 0, 1, 8, code, 0, 0, 0, 1, 0, 0, 0, 0]) for code in range(256)]
    else:
        header = b"\x82\x21\x01\x01f"
        heads = [bytes([code]) for code in range(256)]
        heads += [bytes([0x19, code]) for code in range(256)]
        heads += [bytes([0x1B, 1, code]) for code in range(256)]
    tails = [b"", b"\x00" * 24, b"\x01" * 24, b"\x7f" * 24, b"\x80" * 11, bytes(range(1, 25)),
             b"\x00\x00\x00\x02hi" + b"\x00" * 8]
    for head in heads:
        for tail in tails:
            yield header + head + tail
    # Every byte value in each place of the message header that says what it is.
    for at in range(4 if protocol == "binary" else 2):
        for value in range(256):
            yield header[:at] + bytes([value]) + header[at + 1:] + b"\x00" * 20


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_theCompiledWalkKnowsEveryTypeCodeAsThePythonOneDoes(protocol: str) -> None:
    """
    The type tables in C (what each code is, how long its values are) are
    the Python scanner's: every code, as a field, a list element, a map key
    and a map value, is walked to the same end.
    """
    taken = 0
    for probe in probes(protocol):
        for held in (Limits(), Limits(max_depth=2, max_string_length=1)):
            end = pythonEnd(protocol, held, probe)
            assert compiledEnd(protocol, held, probe) == end, probe
            taken += end >= 0
    assert taken > 100


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_theCompiledWalkHoldsMaxFrameSizeToTheLastByte(protocol: str) -> None:
    message = max(probes(protocol), key=lambda probe: pythonEnd(protocol, Limits(), probe))
    end = pythonEnd(protocol, Limits(), message)
    assert end > 20
    assert compiledEnd(protocol, Limits(max_frame_size=end), message) == end
    assert compiledEnd(protocol, Limits(max_frame_size=end - 1), message) == -1


def nested(protocol: str, levels: int) -> bytes:
    """
    A call whose arguments nest C{levels} structs deep, the arguments'
    own struct included.
    """
    buffer = TMemoryBuffer()
    oprot: Any = TCompactProtocol(buffer) if protocol == "compact" else TBinaryProtocol(buffer)
    oprot.writeMessageBegin("deep", TMessageType.CALL, 1)
    ttype: Any = ("struct", ())
    value: Any = ()
    for _ in range(levels - 1):
        ttype, value = ("struct", ((1, ttype),)), (value,)
    write(oprot, ttype, value)
    oprot.writeMessageEnd()
    return buffer.getvalue()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nestingDeeperThanTheCompiledWalkGoesIsLeftToPython(protocol: str) -> None:
    """
    The C walk goes 128 levels deep; past that, under a C{max_depth} that
    allows it, it leaves the message to the Python scanner, which takes
    it, or refuses it a level past C{max_depth}.
    """
    held = Limits(max_depth=300)
    ok, tooDeep = nested(protocol, 300), nested(protocol, 301)
    assert compiledEnd(protocol, held, nested(protocol, 128)) == len(nested(protocol, 128))
    assert compiledEnd(protocol, held, ok) == -1
    for how in ("compiled", "python"):
        with walking(how):
            assert scannerFor(protocol, held).scan(ok) == len(ok)
            assert makeFramer("buffered", protocol, held).feed(ok + ok) == [ok, ok]
            with pytest.raises(DepthError):
                scannerFor(protocol, held).scan(tooDeep)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_limitsBeyondCIntegersAreTaken(protocol: str) -> None:
    """
    Limits too big for a C integer hold as they say: they cannot be reached
    within C{max_frame_size} anyway.
    """
    message = max(probes(protocol), key=lambda probe: pythonEnd(protocol, Limits(), probe))
    huge = Limits(max_string_length=2**70, max_container_length=2**70, max_depth=2**70)
    assert compiledEnd(protocol, huge, message) == pythonEnd(protocol, huge, message) > 0


# -- cutting a stream ---------------------------------------------------------

def fed(protocol: str, held: Limits, chunks: list[bytes], how: str) -> list[Any]:
    """
    What an unframed framer gives for each chunk, walking as C{how} says:
    its messages and the bytes it holds, until it refuses the stream.
    """
    framer = makeFramer("buffered", protocol, held)
    got: list[Any] = []
    for chunk in chunks:
        with walking(how):
            try:
                got.append((framer.feed(chunk), framer.buffered()))
            except FrameError as error:
                got.append((str(error), error.messages))
                break
    return got


@settings(max_examples=200, deadline=None)
@given(protocol=st.sampled_from(PROTOCOLS), data=st.data())
@example(protocol="binary", data=None)
@example(protocol="compact", data=None)
def test_aStreamIsCutAsThePythonScannerCutsIt(protocol: str,
                                             data: st.DataObject | None) -> None:
    """
    A stream of messages, some of them bad, cut into reads anywhere, gives
    the same messages, holds the same bytes after each read and is refused
    with the same error, whether whole messages are cut in C or not.
    """
    if data is None:
        # Whole messages, one cut in two, then a bad one.
        good = [nested(protocol, 2), nested(protocol, 3), nested(protocol, 1)]
        stream = b"".join(good) + b"\x07" * 8
        cuts = [len(good[0]) + 3, len(stream) - 4]
        held = Limits()
    else:
        pieces = data.draw(st.lists(messages(protocol) | anyMessage(protocol), min_size=1,
                                    max_size=5))
        stream = b"".join(pieces)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6))
        held = data.draw(limits)
    bounds = [0, *sorted(cuts), len(stream)]
    chunks = [stream[start:end] for start, end in pairwise(bounds)]
    assert fed(protocol, held, chunks, "compiled") == fed(protocol, held, chunks, "python")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("how", ["compiled", "python"])
def test_wholeMessagesInARead(protocol: str, how: str) -> None:
    """
    The messages whole in a read are cut in C, the Python scanner never
    walking them; with the Python walks forced, it walks each.
    """
    message = nested(protocol, 2)
    framer = makeFramer("buffered", protocol, Limits())
    scanner: Any = framer._scanner  # type: ignore[attr-defined]
    scans = []

    def counted(buffer: bytes | bytearray) -> int | None:
        scans.append(len(buffer))
        return type(scanner).scan(scanner, buffer)

    scanner.scan = counted
    with walking(how):
        assert framer.feed(message * 50) == [message] * 50
        assert framer.feed(message * 2 + message[:5]) == [message] * 2
        assert framer.feed(message[5:]) == [message]
    # Only a message cut across reads is scanned in Python (at each read).
    assert len(scans) == (2 if how == "compiled" else 50 + 2 + 2)


def test_aReadThatIsOneMessageIsNotCopied() -> None:
    message = nested("binary", 2)
    [got] = makeFramer("buffered", "binary", Limits()).feed(message)
    assert got is message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cutMessagesStopsAtTheFirstMessageNotTaken(protocol: str) -> None:
    message = nested(protocol, 2)
    cutter = scannerFor(protocol, Limits())
    got: list[bytes] = [b"before"]
    assert cutter.cut(message * 3 + message[:-1], got) == 3 * len(message)
    assert got == [b"before", message, message, message]
    assert all(type(each) is bytes for each in got)
    assert cutter.cut(b"", got) == 0
    assert scannerFor("json", Limits()).cut(b"[1]", got) == 0


def test_badArgumentsAreRefused() -> None:
    limits = (False, 100, 100, 100, 10)
    with pytest.raises(TypeError, match="exactly 6"):
        _speedups.messageEnd(b"")  # type: ignore[arg-type, call-arg]
    with pytest.raises(TypeError, match="exactly 7"):
        _speedups.cutMessages(*limits, b"")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="list"):
        _speedups.cutMessages(*limits, b"", ())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _speedups.messageEnd(*limits, "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        _speedups.messageEnd(False, 100, -1, 100, 10, b"")
    with pytest.raises(OverflowError):
        _speedups.messageEnd(False, 2**70, 1, 100, 10, b"")
