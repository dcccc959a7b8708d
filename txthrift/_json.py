"""
Thrift's JSON protocol, read with the standard library's C JSON scanner.

Apache's C{TJSONProtocol} reads one byte at a time in Python: an 8 MiB
string takes it about 5 s, all of it on the reactor, while every other
connection waits.  Here the C scanner of L{json} parses a message's header
as four values and its body as one.  Generated structs are then read whole
(handed over as Apache's C codec gets them for binary: see
L{txthrift._thriftinternals.WholeStructProtocol}), walking the
C{thrift_spec} over the parsed values, with lists of numbers and strings
checked in C; the read API serves everything else (processors' headers,
C{skip}, hand-written code).  L{JSONProtocol} writes with
L{txthrift._jsonwriting}'s writer, byte for byte as Apache's.  A codec goes
further (L{JSONMessages}): a message parsed with one scan, header and body
together, into one reader kept for all, and written with one join.

Measured by C{benchmarks/json_stall.py --codec}, decoding costs at most
about 0.2 us a byte (a list of empty structs; deep trees 0.17), strings
0.0015-0.003, binary 0.004-0.008, against Apache's 0.6 for a string.

What it reads that Apache's reader does not: whitespace between tokens,
bare C{NaN}/C{Infinity} tokens and quoted numbers anywhere.  What Apache's
reads that it does not: map keys that are structs or containers (Apache
writes them unquoted, which is not JSON).

Knows nothing of framing, sockets, the reactor or the codec that uses it.
"""

from __future__ import annotations

import binascii
import json
import re
import uuid
from collections.abc import Callable, Iterator
from itertools import chain, islice
from json.scanner import make_scanner
from operator import itemgetter
from typing import Any, Final, cast

from thrift.protocol.TProtocol import TProtocolBase, TProtocolException, TProtocolFactory
from thrift.Thrift import TFrozenDict, TMessageType, TType
from thrift.transport.TTransport import TMemoryBuffer

from ._jsonwriting import (
    _BOUNDS,
    _FLOATS,
    _I8,
    _I16,
    _I32,
    _I64,
    _INTS,
    _MAX_HEADS,
    _NAMES,
    _UUID,
    JSONWriter,
    _fields,
    _invalid,
    _quoteJSON,
    _structParts,
)
from ._nogc import BIG_MESSAGE, noCollections
from ._thriftinternals import WholeStructProtocol

__all__ = ["JSONMessages", "JSONProtocol", "JSONProtocolFactory", "encodeThrough"]

VERSION: Final = 1
#: The nesting Apache's protocols allow, which thrift 0.20 does not name.
_DEPTH: Final[int] = getattr(TProtocolBase, "DEFAULT_RECURSION_DEPTH", 64)

_TYPES: Final = {name: ttype for ttype, name in _NAMES.items()}

# Objects parse to tuples of (key, value) pairs, arrays to lists: the two
# stay apart, keys keep their order, and nothing is hashed.  Control
# characters inside strings are allowed because Apache's writer leaves all
# but five of them unescaped.
#: The C scanner's constructor (typeshed types it as a class of itself).
_makeScanner: Any = make_scanner
_DECODER: Final = json.JSONDecoder(object_pairs_hook=tuple, strict=False)
_scan: Final[Callable[[str, int], tuple[Any, int]]] = _makeScanner(_DECODER)


class _NegativeZero(int):
    """
    The number C{-0}, which Apache writes for the double -0.0 and L{json}
    would parse as the integer 0.
    """


_NEGATIVE_ZERO: Final = _NegativeZero(0)


def _parseInt(text: str) -> int:
    return _NEGATIVE_ZERO if text == "-0" else int(text)


#: For messages that may hold -0 (at the cost of a call per integer).
_scanSigned: Final[Callable[[str, int], tuple[Any, int]]] = _makeScanner(json.JSONDecoder(
    object_pairs_hook=tuple, strict=False, parse_int=_parseInt))
#: How -0 ends, as Apache writes it (without whitespace).
_NEGATIVE_ZERO_TOKENS: Final = ("-0,", "-0]", "-0}")
_SPACE: Final = re.compile(r"[ \t\n\r]*")
_INTEGER: Final = re.compile(r"[-+]?[0-9]+\Z")
#: A JSON string (left as it is), or the zeros leading a number's digits.
_LEADING_ZEROS: Final = re.compile(r'("(?:[^"\\]|\\.)*")|(?<![0-9.eE+-])(-?)0+(?=[0-9])')


def _withoutLeadingZeros(text: str) -> str:
    """
    C{text} with the numbers outside its strings written without leading
    zeros (C{-0003} as C{-3}); a header parsed already keeps its offsets,
    as JSON would have refused a number with them there.
    """
    return _LEADING_ZEROS.sub(lambda match: match.group(1) or match.group(2), text)


#: An escaped UTF-16 surrogate, which may decode to a lone one.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
#: What a whole list of map keys of an integer type may hold.
_DIGITS: Final = re.compile(r"[-0-9]*")
#: The type set of lists of strings that need no checks string by string.
_STRS: Final = {str}
_first: Final = itemgetter(0)
_second: Final = itemgetter(1)
#: No value: not None, which JSON's null parses to.
_NOTHING: Final[Any] = object()
#: Values all read: an iterator that is over.
_DONE: Final[Iterator[Any]] = iter(())
#: Field ids (object keys) as parsed, for the common small ones.
_FIELD_IDS: Final = {str(fid): fid for fid in range(-8, 1024)}

#: Whether a struct class is immutable (its read() a classmethod), by class.
_immutables: dict[type, bool] = {}


def _immutable(cls: type) -> bool:
    frozen = _immutables.get(cls)
    if frozen is None:
        frozen = _immutables[cls] = getattr(cls.read, "__self__", None) is cls  # type: ignore[attr-defined]
    return frozen


#: The types that nest: structs and containers.
_NESTING: Final = frozenset((TType.STRUCT, TType.LIST, TType.SET, TType.MAP))
#: What a skipped value of each type may parse as.
_SHAPES: Final[dict[int, tuple[type, ...]]] = {
    TType.BOOL: (int, str),
    TType.BYTE: (int, str),
    TType.I16: (int, str),
    TType.I32: (int, str),
    TType.I64: (int, str),
    TType.DOUBLE: (int, float, str),
    TType.STRING: (str,),
    TType.STRUCT: (tuple,),
    TType.MAP: (list,),
    TType.SET: (list,),
    TType.LIST: (list,),
    _UUID: (str,),
}

def _negativeZero(text: str) -> bool:
    """
    Whether C{text} may hold the number -0 (a one-character search first:
    memchr, 50 times faster for 4 KiB than one of two characters).
    """
    return "-" in text and any(token in text for token in _NEGATIVE_ZERO_TOKENS)


def _surrogateEscape(text: str) -> bool:
    """
    Whether C{text} holds an escaped UTF-16 surrogate, which may parse to a
    lone one.
    """
    return "\\" in text and "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None


def _describe(value: Any) -> str:
    """
    A short description of a parsed value, for error messages: never the
    whole of a peer's string.
    """
    if isinstance(value, tuple):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return f"the string {value[:32]!r}" + ("..." if len(value) > 32 else "")
    return f"{value!r}"[:40]


class JSONProtocol(JSONWriter, WholeStructProtocol):
    """
    Thrift's JSON protocol over a transport holding whole messages (a
    C{TMemoryBuffer}, or any transport with a C{cstringio_buf}).

    Reading applies the limits given: strings and binary values (in bytes,
    once decoded), elements of a container, and nesting of structs and
    containers (the message's own struct is level 1).
    """

    def __init__(self, trans: Any, string_length_limit: int | None = None,
                 container_length_limit: int | None = None,
                 depth_limit: int | None = None) -> None:
        super().__init__(trans)
        self.string_length_limit = string_length_limit
        self.container_length_limit = container_length_limit
        self.depth_limit = _DEPTH if depth_limit is None else depth_limit
        self._resetRead()
        self._resetWrite()

    # -- reading ---------------------------------------------------------

    def _resetRead(self) -> None:
        #: The values of the current struct (as pairs), container or message.
        self._values: Iterator[Any] = self._alone()
        #: The enclosing ones' C{_values}.
        self._outer: list[Iterator[Any]] = []
        #: The value of the field just begun, until it is read.
        self._pending: Any = _NOTHING
        self._depth = 0
        self._surrogates = False
        self._text = ""
        self._bodyAt = 0
        self._badUTF8: str | None = None

    def _message(self) -> str:
        """
        The rest of the transport, as text.
        """
        buffer = getattr(self.trans, "cstringio_buf", None)
        data = buffer.read() if buffer is not None else self._readOne()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            # Failed when the body is read, if the header is good: the
            # bytes that are not UTF-8 become lone surrogates till then.
            self._badUTF8 = f"JSON message is not UTF-8 (byte {e.start}: {e.reason})"
            return data.decode("utf-8", "surrogateescape")

    def _readOne(self) -> bytes:
        """
        One message from a transport that is not in memory: bytes up to the
        bracket closing the first, a byte at a time, as Apache's reader does.
        """
        read = self.trans.read
        data = bytearray()
        depth, inString, escaped = 0, False, False
        while True:
            byte = read(1)
            if not byte:
                raise _invalid("JSON message ends early")
            data += byte
            char = byte[0]
            if inString:
                if escaped:
                    escaped = False
                elif char == 0x5C:
                    escaped = True
                elif char == 0x22:
                    inString = False
            elif char == 0x22:
                inString = True
            elif char in (0x5B, 0x7B):
                depth += 1
            elif char in (0x5D, 0x7D):
                depth -= 1
                if depth <= 0:
                    return bytes(data)

    def _scanAt(self, text: str, at: int, what: str, scan: Any = _scan) -> tuple[Any, int]:
        """
        The JSON value at C{at} (after any whitespace) and where it ends.
        """
        at = _SPACE.match(text, at).end()  # type: ignore[union-attr]
        try:
            return scan(text, at)
        except StopIteration:
            found = repr(text[at:at + 1]) if at < len(text) else "the end"
            raise _invalid(f"expected the {what} at offset {at}, found {found}") from None
        except json.JSONDecodeError as e:
            raise _invalid(f"malformed JSON in the {what}: {e.msg} at offset {e.pos}") from None
        except RecursionError:
            raise TProtocolException(
                TProtocolException.DEPTH_LIMIT,
                f"JSON nested too deep to parse in the {what}") from None
        except ValueError as e:
            # int() of a number with thousands of digits.
            raise _invalid(f"malformed JSON in the {what}: {str(e)[:80]}") from None

    def _punctuation(self, text: str, at: int, char: str, what: str) -> int:
        at = _SPACE.match(text, at).end()  # type: ignore[union-attr]
        if text[at:at + 1] != char:
            found = repr(text[at:at + 1]) if at < len(text) else "the end"
            raise _invalid(f"expected {char!r} {what} at offset {at}, found {found}")
        return at + 1

    def readMessageBegin(self) -> tuple[str, int, int]:
        self._resetRead()
        text = self._message()
        at = self._punctuation(text, 0, "[", "to open the message")
        header: list[Any] = []
        for what in ("version", "name", "message type", "seqid"):
            if header:
                at = self._punctuation(text, at, ",", f"before the {what}")
            value, at = self._scanAt(text, at, what)
            header.append(value)
        version, name, mtype, seqid = header
        if version != VERSION or type(version) is not int:
            raise TProtocolException(TProtocolException.BAD_VERSION,
                                     f"JSON message version {_describe(version)}, not 1")
        if type(name) is not str:
            raise _invalid(f"message name is {_describe(name)}, not a string")
        self._checkString(name)
        if not name.isascii() and _LONE_SURROGATE.search(name):
            raise _invalid(self._badUTF8 or "message name holds an unpaired UTF-16 surrogate")
        if type(mtype) is not int or not 0 <= mtype <= 0xFF:
            # Which types fit where is for the reader of the header to say,
            # as with the other protocols.
            raise _invalid(f"message type is {_describe(mtype)}, not a byte")
        if type(seqid) is not int or not _I32[0] <= seqid <= _I32[1]:
            raise _invalid(f"seqid is {_describe(seqid)}, not an i32")
        self._text = text
        self._bodyAt = self._punctuation(text, at, ",", "before the body")
        # The body is parsed when first read, so that a bad body is a
        # failure of this message, whose header is known.
        self._values = self._body()
        return name, mtype, seqid

    def _parse(self, text: str, at: int, what: str) -> tuple[Any, int]:
        """
        The value at C{at}, the body of a message or a value alone, and
        where it ends.
        """
        if self._badUTF8 is not None:
            raise _invalid(self._badUTF8)
        signed = _negativeZero(text)
        with noCollections:
            value, at = self._scanAt(text, at, what, _scanSigned if signed else _scan)
        self._surrogates = _surrogateEscape(text)
        return value, at

    def _body(self) -> Iterator[Any]:
        text, self._text = self._text, ""
        try:
            body, at = self._parse(text, self._bodyAt, "message body")
        except TProtocolException as error:
            # JSON allows no leading zeros; Apache's reader does, and Node.js's
            # writer puts them in (a negative i64 as -000000000003).  Read
            # again without them: only a message that failed pays for it.
            plain = _withoutLeadingZeros(text)
            if error.type != TProtocolException.INVALID_DATA or plain == text:
                raise
            text = plain
            body, at = self._parse(text, self._bodyAt, "message body")
        at = self._punctuation(text, at, "]", "to close the message")
        if _SPACE.match(text, at).end() != len(text):  # type: ignore[union-attr]
            raise _invalid(f"data after the message at offset {at}")
        yield body

    def _alone(self) -> Iterator[Any]:
        """
        A value read with no message around it, as C{TSerialization} reads
        a struct: the whole of the transport.
        """
        text = self._message()
        value, at = self._parse(text, 0, "value")
        if _SPACE.match(text, at).end() != len(text):  # type: ignore[union-attr]
            raise _invalid(f"data after the value at offset {at}")
        yield value

    def readMessageEnd(self) -> None:
        self._resetRead()

    def _bodyParsed(self, values: Iterator[Any], surrogates: bool) -> None:
        """
        Be as after L{readMessageBegin}, with the body parsed already (as
        L{JSONMessages} parses whole messages): C{values} yields it.
        """
        self._values = values
        self._outer = []
        self._pending = _NOTHING
        self._depth = 0
        self._surrogates = surrogates
        self._badUTF8 = None

    def _take(self, what: str) -> Any:
        value = self._pending
        if value is not _NOTHING:
            self._pending = _NOTHING
            return value
        value = next(self._values, _NOTHING)
        if value is _NOTHING:
            raise _invalid(f"no {what} where one was read")
        return value

    def _tooDeep(self) -> TProtocolException:
        return TProtocolException(
            TProtocolException.DEPTH_LIMIT,
            f"structs and containers nested deeper than {self.depth_limit} (max_depth)")

    def _enter(self, values: Iterator[Any]) -> None:
        if self._depth >= self.depth_limit:
            raise self._tooDeep()
        self._depth += 1
        self._outer.append(self._values)
        self._values = values

    def _leave(self) -> None:
        self._depth -= 1
        self._values = self._outer.pop()

    def _checkCount(self, size: Any, found: int, what: str) -> int:
        if type(size) is not int:
            raise _invalid(f"{what} size is {_describe(size)}, not an integer")
        limit = self.container_length_limit
        if size < 0 or (limit is not None and size > limit):
            raise TProtocolException(
                TProtocolException.SIZE_LIMIT if size > 0 else TProtocolException.NEGATIVE_SIZE,
                f"container length {size} is outside 0..{limit} (max_container_length)")
        if size != found:
            raise _invalid(f"{what} claims {size} elements but holds {found}")
        return size

    def _typeOf(self, name: Any, what: str) -> int:
        ttype = _TYPES.get(name) if type(name) is str else None
        if ttype is None:
            raise _invalid(f"{what} type is {_describe(name)}, not a Thrift JSON type name")
        return ttype

    def _list(self, value: Any, what: str) -> tuple[int, int]:
        """
        Check a list's or set's header: C{[type, size, element...]}.
        """
        if type(value) is not list or len(value) < 2:
            raise _invalid(f"{what} is {_describe(value)}, not [type, size, ...]")
        return self._typeOf(value[0], "element"), self._checkCount(value[1], len(value) - 2, what)

    def _map(self, value: Any) -> tuple[int, int, int]:
        """
        Check a map's header: C{[key type, value type, size, {key: value...}]}.
        """
        if type(value) is not list or len(value) != 4 or type(value[3]) is not tuple:
            raise _invalid(f"map is {_describe(value)}, not [key type, value type, size, {{...}}]")
        return (self._typeOf(value[0], "key"), self._typeOf(value[1], "value"),
                self._checkCount(value[2], len(value[3]), "map"))

    def _field(self, pair: Any) -> tuple[int, int, Any]:
        """
        A struct member's field id, type and value: C{"id": {"type": value}}.
        """
        try:
            key, wrapper = pair
        except (TypeError, ValueError):
            raise _invalid("struct fields read where there are none") from None
        fid = _FIELD_IDS.get(key)
        if fid is None:
            fid = self._integer(key, _I16, "field id")
        if type(wrapper) is not tuple or len(wrapper) != 1:
            raise _invalid(f"field {fid} is {_describe(wrapper)}, not an object of one member")
        name, value = wrapper[0]
        ttype = _TYPES.get(name)
        if ttype is None:
            raise _invalid(f"field {fid} type is {_describe(name)}, not a Thrift JSON type name")
        return fid, ttype, value

    def readStructBegin(self) -> None:
        value = self._take("struct")
        if type(value) is not tuple:
            raise _invalid(f"struct is {_describe(value)}, not an object")
        self._enter(iter(value))

    def readStructEnd(self) -> None:
        self._leave()

    def readFieldBegin(self) -> tuple[None, int, int]:
        pair = next(self._values, _NOTHING)
        if pair is _NOTHING:
            return None, TType.STOP, 0
        fid, ttype, self._pending = self._field(pair)
        return None, ttype, fid

    def readFieldEnd(self) -> None:
        self._pending = _NOTHING

    def readListBegin(self) -> tuple[int, int]:
        value = self._take("list")
        etype, size = self._list(value, "list")
        self._enter(islice(value, 2, None))
        return etype, size

    def readSetBegin(self) -> tuple[int, int]:
        value = self._take("set")
        etype, size = self._list(value, "set")
        self._enter(islice(value, 2, None))
        return etype, size

    def readListEnd(self) -> None:
        self._leave()

    readSetEnd = readListEnd

    def readMapBegin(self) -> tuple[int, int, int]:
        value = self._take("map")
        header = self._map(value)
        self._enter(chain.from_iterable(value[3]))
        return header

    def readMapEnd(self) -> None:
        self._leave()

    # Values, from what the scanner made of them.

    @staticmethod
    def _integer(value: Any, bounds: tuple[int, int], what: str) -> int:
        """
        C{value}, parsed as an integer, as a number or (as map keys and
        field ids are) a quoted one, within C{bounds}.
        """
        if type(value) is str and len(value) <= 24 and _INTEGER.match(value):
            value = int(value)
        elif type(value) is _NegativeZero:
            value = 0
        if type(value) is not int:
            raise _invalid(f"{what} is {_describe(value)}, not an integer")
        if not bounds[0] <= value <= bounds[1]:
            raise _invalid(f"{what} {value} is outside {bounds[0]}..{bounds[1]}")
        return value

    @staticmethod
    def _double(value: Any) -> float:
        kind = type(value)
        if kind is float:
            return value
        try:
            if kind is int:
                return float(value)
            if kind is _NegativeZero:
                return -0.0
            if kind is str and value.strip() == value and "_" not in value:
                # "NaN", "Infinity", "-Infinity", or a quoted map key.
                return float(value)
        except (ValueError, OverflowError):
            pass
        raise _invalid(f"double is {_describe(value)}, not a number")

    def _checkString(self, value: str) -> None:
        limit = self.string_length_limit
        if limit is not None and len(value) * 4 > limit:
            length = len(value) if value.isascii() or len(value) > limit \
                else len(value.encode("utf-8", "surrogatepass"))
            if length > limit:
                raise TProtocolException(
                    TProtocolException.SIZE_LIMIT,
                    f"string length {length} is outside 0..{limit} (max_string_length)")

    def _string(self, value: Any) -> str:
        if type(value) is not str:
            raise _invalid(f"string is {_describe(value)}, not a JSON string")
        self._checkString(value)
        if self._surrogates and not value.isascii() and _LONE_SURROGATE.search(value):
            raise _invalid("string holds an unpaired UTF-16 surrogate")
        return value

    def _binary(self, value: Any) -> bytes:
        if type(value) is not str:
            raise _invalid(f"binary is {_describe(value)}, not a base64 string")
        limit = self.string_length_limit
        if limit is not None and len(value) // 4 * 3 > limit + 3:
            raise TProtocolException(
                TProtocolException.SIZE_LIMIT,
                f"binary length {len(value) // 4 * 3} is outside 0..{limit} (max_string_length)")
        if len(value) % 4:
            # Apache's C++ writer leaves the padding out.
            value += "=" * (-len(value) % 4)
        try:
            data = binascii.a2b_base64(value)
        except (binascii.Error, ValueError):
            raise _invalid(f"binary is {_describe(value)}, not base64") from None
        if limit is not None and len(data) > limit:
            raise TProtocolException(
                TProtocolException.SIZE_LIMIT,
                f"binary length {len(data)} is outside 0..{limit} (max_string_length)")
        return data

    @staticmethod
    def _uuid(value: Any) -> uuid.UUID:
        try:
            if type(value) is str and len(value) <= 64:
                return uuid.UUID(value)
        except ValueError:
            pass
        raise _invalid(f"uuid is {_describe(value)}, not a UUID string")

    def readBool(self) -> bool:
        value = self._take("bool")
        if type(value) is not int:
            value = self._integer(value, _I64, "bool")
        return value != 0

    def readByte(self) -> int:
        value = self._take("i8")
        if type(value) is int and -128 <= value <= 127:
            return value
        return self._integer(value, _I8, "i8")

    def readI16(self) -> int:
        value = self._take("i16")
        if type(value) is int and -32768 <= value <= 32767:
            return value
        return self._integer(value, _I16, "i16")

    def readI32(self) -> int:
        value = self._take("i32")
        if type(value) is int and -2147483648 <= value <= 2147483647:
            return value
        return self._integer(value, _I32, "i32")

    def readI64(self) -> int:
        value = self._take("i64")
        if type(value) is int and _I64[0] <= value <= _I64[1]:
            return value
        return self._integer(value, _I64, "i64")

    def readDouble(self) -> float:
        return self._double(self._take("double"))

    def readString(self) -> str:
        return self._string(self._take("string"))

    def readBinary(self) -> bytes:
        return self._binary(self._take("binary"))

    def readUuid(self) -> uuid.UUID:
        return self._uuid(self._take("uuid"))

    def skip(self, ttype: int, max_depth: int = 64) -> None:
        """
        Pass over one value of type C{ttype}, which is already parsed: its
        shape is checked, and its nesting counted against the depth limit as
        if it were read.
        """
        self._skipped(ttype, self._take("value"), self._depth)

    def _skipped(self, ttype: int, value: Any, depth: int) -> None:
        """
        Check a value that is not read, inside a struct or container at
        C{depth}: its shape, and the structs and containers in it.
        """
        shapes = _SHAPES.get(ttype)
        if shapes is None:
            raise _invalid(f"cannot skip a value of unknown type {ttype}")
        if type(value) is bool or not isinstance(value, shapes):
            raise _invalid(f"{_NAMES[ttype]} value is {_describe(value)}")
        if ttype not in _NESTING:
            return
        value = cast(Any, value)  # Narrowed to object by isinstance.
        if depth >= self.depth_limit:
            raise self._tooDeep()
        if ttype == TType.STRUCT:
            for pair in value:
                _, ftype, fvalue = self._field(pair)
                self._skipped(ftype, fvalue, depth + 1)
        elif ttype == TType.MAP:
            _, vtype, _ = self._map(value)
            if vtype in _NESTING:
                for _, element in value[3]:
                    self._skipped(vtype, element, depth + 1)
        else:
            etype, _ = self._list(value, "list" if ttype == TType.LIST else "set")
            if etype in _NESTING:
                for element in islice(value, 2, None):
                    self._skipped(etype, element, depth + 1)

    # The generated code's fast path: a whole struct read at once, walking
    # its thrift_spec over the parsed values (a method call per struct and
    # container, none per field or element).

    def decodeStruct(self, obj: Any, iprot: Any, typeArgs: list[Any]) -> Any:
        cls, spec = typeArgs
        value = self._take("struct")
        with noCollections:
            return self._struct(value, obj, cls, spec, self._depth + 1)

    def _struct(self, pairs: Any, obj: Any, cls: type, spec: Any, depth: int) -> Any:
        """
        Read C{pairs} into C{obj} or, for an immutable C{cls} (C{obj} is
        C{None}), into a new one.
        """
        if type(pairs) is not tuple:
            raise _invalid(f"struct is {_describe(pairs)}, not an object")
        if depth > self.depth_limit:
            raise self._tooDeep()
        fields: dict[str, Any] | None = None if obj is not None else {}
        size = len(spec)
        for key, wrapper in pairs:  # An object's pairs: two each.
            # What _field does, without the call, for the common field.
            fid = _FIELD_IDS.get(key)
            ttype = None
            if fid is not None and type(wrapper) is tuple and len(wrapper) == 1:
                name, value = wrapper[0]
                ttype = _TYPES.get(name)
            if fid is None or ttype is None:
                fid, ttype, value = self._field((key, wrapper))
            field = spec[fid] if 0 <= fid < size else None
            if field is None or field[1] != ttype:
                self._skipped(ttype, value, depth)
                continue
            if ttype == TType.I32:
                if type(value) is not int or not -2147483648 <= value <= 2147483647:
                    value = self._integer(value, _I32, "i32")
            elif ttype == TType.STRING:
                value = self._binary(value) if field[3] == "BINARY" else self._string(value)
            else:
                value = self._value(ttype, field[3], value, depth)
            if fields is None:
                setattr(obj, field[2], value)
            else:
                fields[field[2]] = value
        return obj if fields is None else cls(**fields)

    def _value(self, ttype: int, spec: Any, value: Any, depth: int) -> Any:
        """
        One value of type C{ttype} (C{spec} as in a C{thrift_spec}), inside a
        struct or container at C{depth}.
        """
        bounds = _BOUNDS.get(ttype)
        if bounds is not None:
            if type(value) is int and bounds[0] <= value <= bounds[1]:
                return value
            return self._integer(value, bounds, _NAMES[ttype])
        if ttype == TType.STRING:
            return self._binary(value) if spec == "BINARY" else self._string(value)
        if ttype == TType.STRUCT:
            cls, fields = spec
            return self._struct(value, None if _immutable(cls) else cls(), cls, fields,
                                depth + 1)
        if ttype == TType.LIST or ttype == TType.SET:
            etype, espec, frozen = spec
            self._list(value, "list" if ttype == TType.LIST else "set")
            if depth + 1 > self.depth_limit:
                raise self._tooDeep()
            elements = self._elements(etype, espec, value[2:], depth + 1)
            if ttype == TType.LIST:
                return tuple(elements) if frozen else elements
            return frozenset(elements) if frozen else set(elements)
        if ttype == TType.MAP:
            ktype, kspec, vtype, vspec, frozen = spec
            self._map(value)
            if depth + 1 > self.depth_limit:
                raise self._tooDeep()
            pairs = value[3]
            result = dict(zip(self._keys(ktype, kspec, list(map(_first, pairs))),
                              self._elements(vtype, vspec, list(map(_second, pairs)),
                                             depth + 1)))
            return TFrozenDict(result) if frozen else result
        if ttype == TType.BOOL:
            if type(value) is not int:
                value = self._integer(value, _I64, "bool")
            return value != 0
        if ttype == TType.DOUBLE:
            return self._double(value)
        if ttype == _UUID:
            return self._uuid(value)
        raise _invalid(f"cannot read a value of type {ttype}")

    def _elements(self, etype: int, espec: Any, values: list[Any], depth: int) -> list[Any]:
        """
        Elements of type C{etype}, in a container at C{depth}: whole lists of
        numbers and strings are checked in C where they can be.
        """
        if not values:
            return values
        bounds = _BOUNDS.get(etype)
        if bounds is not None:
            if set(map(type, values)) == _INTS and bounds[0] <= min(values) \
                    and max(values) <= bounds[1]:
                return values
            what = _NAMES[etype]
            return [self._integer(v, bounds, what) for v in values]
        if etype == TType.STRING and espec != "BINARY":
            limit = self.string_length_limit
            if set(map(type, values)) != _STRS or self._surrogates or (
                    limit is not None and max(map(len, values)) * 4 > limit):
                return [self._string(v) for v in values]
            return values
        if etype == TType.DOUBLE:
            if set(map(type, values)) == _FLOATS:
                return values
            return [self._double(v) for v in values]
        if etype == TType.BOOL:
            if set(map(type, values)) != _INTS:
                values = [self._integer(v, _I64, "bool") for v in values]
            return list(map(bool, values))
        if etype == TType.STRUCT:
            # The commonest container of containers, without _value per element.
            cls, fields = espec
            struct = self._struct
            if _immutable(cls):
                return [struct(v, None, cls, fields, depth + 1) for v in values]
            return [struct(v, cls(), cls, fields, depth + 1) for v in values]
        return [self._value(etype, espec, v, depth) for v in values]

    def _keys(self, ktype: int, kspec: Any, keys: list[str]) -> list[Any]:
        """
        Map keys of type C{ktype}, which JSON quotes: numbers among them are
        parsed here.
        """
        if not keys:
            return keys
        bounds = _BOUNDS.get(ktype) or (_I64 if ktype == TType.BOOL else None)
        if bounds is not None:
            numbers: list[int] | None = None
            if _DIGITS.fullmatch("".join(keys)):
                try:
                    numbers = list(map(int, keys))
                except ValueError:
                    pass
            if numbers is None or min(numbers) < bounds[0] or max(numbers) > bounds[1]:
                numbers = [self._integer(k, bounds, _NAMES[ktype]) for k in keys]
            return list(map(bool, numbers)) if ktype == TType.BOOL else numbers
        if ktype == TType.STRING:
            return self._elements(ktype, kspec, keys, 0)
        if ktype == TType.DOUBLE:
            return [self._double(k) for k in keys]
        if ktype == _UUID:
            return [self._uuid(k) for k in keys]
        raise _invalid(f"map keys of type {_NAMES.get(ktype, ktype)} cannot be read from JSON")


class JSONProtocolFactory(TProtocolFactory):
    """
    L{JSONProtocol}s reading within the limits given.
    """

    def __init__(self, string_length_limit: int | None = None,
                 container_length_limit: int | None = None,
                 depth_limit: int | None = None) -> None:
        self.string_length_limit = string_length_limit
        self.container_length_limit = container_length_limit
        self.depth_limit = depth_limit

    def getProtocol(self, trans: Any) -> JSONProtocol:
        return JSONProtocol(trans, self.string_length_limit, self.container_length_limit,
                            self.depth_limit)


def encodeThrough(factory: Any, name: str, mtype: int, seqid: int, body: Any) -> bytes:
    """
    A whole message around C{body}, written by the protocols of C{factory}
    (an Apache protocol factory) through C{body}'s own C{write}: the way
    of any protocol, for what the faster ways do not take.
    """
    buffer = TMemoryBuffer()
    oprot = factory.getProtocol(buffer)
    oprot.writeMessageBegin(name, mtype, seqid)
    body.write(oprot)
    oprot.writeMessageEnd()
    return buffer.getvalue()


class JSONMessages:
    """
    Whole messages of Thrift's JSON protocol, each read with one scan of
    header and body together and written with one join: what a codec that
    chooses its own protocol uses for JSON, instead of a protocol object
    and a buffer each way per message.

    A message read goes into one reader kept for all of them, as the binary
    codec's: good until the next L{readHeader}, unless L{detach}ed.  One out
    of the common way (whitespace around it, a C{-0}, a name that is not
    ASCII or too long, anything malformed) is read again by a protocol of
    its own, which says what is wrong where it always does: a bad header
    fails L{readHeader}, a bad body L{readBody}.
    """

    def __init__(self, factory: JSONProtocolFactory) -> None:
        self._factory = factory
        self._reader = factory.getProtocol(TMemoryBuffer())
        #: The message the reader holds, for L{detach}.
        self._message = b""
        #: Message heads as written, up to the seqid, by name and type.
        self._heads: dict[tuple[str, int], str] = {}
        #: The C{thrift_spec} of each body class read whole (C{None}: read
        #: through its C{read}).
        self._specs: dict[type, Any] = {}

    def readHeader(self, message: bytes) -> tuple[JSONProtocol, str, int, int]:
        """
        Read C{message}'s header (and parse its body).

        @return: a protocol positioned at the body (the shared reader when
            the message is an ordinary one), the name, the message type and
            the sequence id.
        @raise TProtocolException: for a bad header.
        """
        header = self._parseWhole(message)
        if header is not None:
            self._message = message
            return header
        iprot = self._factory.getProtocol(TMemoryBuffer(message))
        name, mtype, seqid = iprot.readMessageBegin()
        return iprot, name, mtype, seqid

    def _parseWhole(self, message: bytes) -> tuple[JSONProtocol, str, int, int] | None:
        """
        An ordinary message, parsed at once into the shared reader; C{None}
        for any other.
        """
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            return None
        scan = _scanSigned if _negativeZero(text) else _scan
        try:
            if len(message) < BIG_MESSAGE:
                parsed, end = scan(text, 0)
            else:
                with noCollections:
                    parsed, end = scan(text, 0)
        except (StopIteration, ValueError, RecursionError):
            return None
        if end != len(text) or type(parsed) is not list or len(parsed) != 5:
            return None
        version, name, mtype, seqid, body = parsed
        reader = self._reader
        limit = reader.string_length_limit
        if (version != VERSION or type(version) is not int or type(name) is not str
                or not name.isascii() or (limit is not None and len(name) > limit)
                or type(mtype) is not int or not 0 <= mtype <= 0xFF
                or type(seqid) is not int or not _I32[0] <= seqid <= _I32[1]):
            return None
        reader._bodyParsed(iter((body,)), _surrogateEscape(text))
        return reader, name, mtype, seqid

    def detach(self, iprot: TProtocolBase) -> TProtocolBase:
        """
        C{iprot}, from L{readHeader}, as a protocol of its own at the same
        place: one that stays good after the next message is read.
        """
        reader = self._reader
        if iprot is not reader:
            return iprot
        own = self._factory.getProtocol(TMemoryBuffer(self._message))
        own._bodyParsed(reader._values, reader._surrogates)
        reader._values = _DONE
        return own

    def readBody(self, iprot: TProtocolBase, body: Any) -> None:
        """
        Read the body of the message whose header L{readHeader} read into
        C{body} (a generated struct, or an exception with a C{read} method).
        """
        reader = self._reader
        if iprot is reader:
            cls = type(body)
            spec = self._specs.get(cls, _NOTHING)
            if spec is _NOTHING:
                spec = getattr(cls, "thrift_spec", None)
                if spec is not None and _immutable(cls):
                    spec = None  # Its read() makes a new one.
                self._specs[cls] = spec
            if spec is not None:
                # What the generated read() and the protocol do, without them.
                value = reader._take("struct")
                reader._values = _DONE
                if len(self._message) < BIG_MESSAGE:
                    reader._struct(value, body, cls, spec, 1)
                else:
                    with noCollections:
                        reader._struct(value, body, cls, spec, 1)
                return
        body.read(iprot)
        iprot.readMessageEnd()

    def encode(self, name: str, mtype: int, seqid: int, body: Any) -> bytes:
        """
        A whole message around C{body} (an args or result struct or an
        exception), as Apache's writer writes it.
        """
        spec = getattr(type(body), "thrift_spec", None)
        if spec is None:
            return encodeThrough(self._factory, name, mtype, seqid, body)
        head = self._heads.get((name, mtype))
        if head is None:
            head = "[1," + _quoteJSON(name) + "," + str(mtype) + ","
            if len(self._heads) < _MAX_HEADS and mtype != TMessageType.EXCEPTION:
                # Names of calls and replies are the service's own: few.
                self._heads[name, mtype] = head
        parts = _structParts(body, _fields(spec), [head, str(seqid), ","])
        parts.append("]")
        return "".join(parts).encode("utf-8")
