"""
Thrift's JSON protocol written as Apache's C{TJSONProtocol} writes it, byte
for byte: its type names and integer ranges, values quoted and formatted,
whole structs walked from their C{thrift_spec} into parts joined once
(L{_structParts}, what the generated code's fast path and a codec's whole
messages use), and L{JSONWriter}, the write API of
L{txthrift._json.JSONProtocol} (for processors' headers and hand-written
code).

Non-finite doubles are written as the quoted C{"NaN"}, C{"Infinity"} and
C{"-Infinity"} the protocol defines (Apache's Python writes a bare C{nan}).

Knows nothing of reading, framing, sockets or the codec that uses it.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Callable
from typing import Any, Final

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TType

__all__ = ["JSONWriter"]

#: The uuid type code, which thrift releases before 0.20 do not name.
_UUID: Final[int] = getattr(TType, "UUID", 16)

#: Type names on the wire, as Apache's TJSONProtocol.cpp names them.
_NAMES: Final = {
    TType.BOOL: "tf",
    TType.BYTE: "i8",
    TType.I16: "i16",
    TType.I32: "i32",
    TType.I64: "i64",
    TType.DOUBLE: "dbl",
    TType.STRING: "str",
    TType.STRUCT: "rec",
    TType.LIST: "lst",
    TType.SET: "set",
    TType.MAP: "map",
    _UUID: "uid",
}
#: Each type name as written: quoted, for the writer.
_QUOTED: Final = {ttype: f'"{name}"' for ttype, name in _NAMES.items()}

# Integer ranges by type.
_I8: Final = (-(2**7), 2**7 - 1)
_I16: Final = (-(2**15), 2**15 - 1)
_I32: Final = (-(2**31), 2**31 - 1)
_I64: Final = (-(2**63), 2**63 - 1)
_BOUNDS: Final = {TType.BYTE: _I8, TType.I16: _I16, TType.I32: _I32, TType.I64: _I64}
#: The type sets of lists that need no checks element by element.
_INTS: Final = {int}
_FLOATS: Final = {float}

# Writer contexts: where the next value goes, which decides what precedes it.
_TOP, _ELEMENT, _FIELD, _FIRST_KEY, _KEY, _VALUE, _FIRST_FIELD, _NEXT_FIELD = range(8)
#: Apache's writer escapes these five control characters and no others;
#: L{json} escapes the rest as \\u00XX, which then has to be undone.
_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\f": "\\f", "\n": "\\n",
                   "\r": "\\r", "\t": "\\t"}
_encodeString: Final[Callable[[str], str]] = json.encoder.encode_basestring
#: Field headers as written, by (first, field id, type).
_heads: dict[tuple[bool, int, int], str] = {}
_MAX_HEADS: Final = 4096


def _invalid(message: str) -> TProtocolException:
    return TProtocolException(TProtocolException.INVALID_DATA, message)


def _plain(text: str) -> bool:
    """
    Whether C{text} holds none of the characters Apache's writer escapes,
    so that it is written as it is, between quotes.
    """
    # Each character looked for by memchr: 20 times faster than escaping
    # (which looks at each character in turn) for 4 KiB, as fast for a word.
    return not ('"' in text or "\\" in text or "\n" in text or "\r" in text
                or "\t" in text or "\b" in text or "\f" in text)


def _quoteJSON(text: str) -> str:
    """
    C{text} as Apache's writer quotes it.
    """
    if _plain(text):
        return '"' + text + '"'
    quoted = _encodeString(text)
    if "\\u00" in quoted:
        # A control character L{json} escaped and Apache would not (or a
        # backslash before "u00" in the text): escape the way Apache does.
        quoted = '"' + "".join([_ESCAPES.get(c, c) for c in text]) + '"'
    return quoted


# Whole structs written at once (the generated code's fast path), walking
# their thrift_spec: a function call per struct and container, none per
# field or element of a list of numbers or strings.

#: Field heads as written, by (field id, type).
_fieldHeads: dict[tuple[int, int], str] = {}
_formatDouble: Final = "{:.17g}".format


def _fieldHead(fid: int, ttype: int) -> str:
    head = _fieldHeads.get((fid, ttype))
    if head is None:
        head = f'"{fid}":{{{_QUOTED[ttype]}:'
        if len(_fieldHeads) < _MAX_HEADS:
            _fieldHeads[fid, ttype] = head
    return head


def _outOfRange(ttype: int) -> TProtocolException:
    low, high = _BOUNDS[ttype]
    return _invalid(f"{_NAMES[ttype]} requires {low} <= number <= {high}")


def _encodeDouble(value: float) -> str:
    if math.isfinite(value):
        return _formatDouble(value)
    if math.isnan(value):
        return '"NaN"'
    return '"Infinity"' if value > 0 else '"-Infinity"'


def _encodeBinary(value: bytes) -> str:
    return '"' + base64.b64encode(value).decode("ascii") + '"'


#: What writing a struct needs of each field: its attribute, its head as the
#: first field and as a later one, its type and its type's spec.
_Field = tuple[str, str, str, int, Any]
#: By the id of a C{thrift_spec}: the spec itself (kept, so that its id is
#: not reused) and its fields.
_specFields: dict[int, tuple[Any, tuple[_Field, ...]]] = {}


def _fields(spec: Any) -> tuple[_Field, ...]:
    """
    The fields of a C{thrift_spec} as L{_structParts} writes them, worked
    out once per spec.
    """
    known = _specFields.get(id(spec))
    if known is not None and known[0] is spec:
        return known[1]
    fields = tuple((field[2], "{" + _fieldHead(field[0], field[1]),
                    "," + _fieldHead(field[0], field[1]), field[1], field[3])
                   for field in spec if field is not None)
    if len(_specFields) < _MAX_HEADS:
        _specFields[id(spec)] = (spec, fields)
    return fields


def _encodeStruct(obj: Any, spec: Any) -> str:
    return "".join(_structParts(obj, _fields(spec), []))


def _structParts(obj: Any, fields: tuple[_Field, ...], parts: list[str]) -> list[str]:
    """
    Add a struct's text to C{parts} (C{fields} being L{_fields} of its
    C{thrift_spec}), its strings and nested structs piece by piece: a big
    string is copied once, when the parts are joined, not once for each
    piece of text put around it (each copy of 1 MiB costs a fresh
    allocation, 0.3 ms).
    """
    opened = False
    for field in fields:
        value = getattr(obj, field[0])
        if value is None:
            continue
        _, first, later, ttype, fspec = field
        parts.append(later if opened else first)
        opened = True
        if ttype == TType.STRING:
            if fspec == "BINARY":
                parts += ('"', base64.b64encode(value).decode("ascii"), '"}')
            elif _plain(value):
                parts += ('"', value, '"}')
            else:
                parts += (_quoteJSON(value), "}")
        elif ttype == TType.STRUCT:
            _structParts(value, _fields(fspec[1]), parts).append("}")
        elif ttype == TType.LIST and fspec[0] == TType.STRUCT and value:
            # The commonest container of structs, into the same parts.
            fields = _fields(fspec[1][1])
            parts.append(f"[{_QUOTED[TType.STRUCT]},{len(value)}")
            for element in value:
                parts.append(",")
                _structParts(element, fields, parts)
            parts.append("]}")
        else:
            parts += (_encodeValue(ttype, fspec, value), "}")
    parts.append("}" if opened else "{}")
    return parts


def _encodeValue(ttype: int, spec: Any, value: Any) -> str:
    if ttype == TType.STRING:
        return _encodeBinary(value) if spec == "BINARY" else _quoteJSON(value)
    bounds = _BOUNDS.get(ttype)
    if bounds is not None:
        if not bounds[0] <= value <= bounds[1]:
            raise _outOfRange(ttype)
        return str(value) if type(value) is int else f"{value}"
    if ttype == TType.STRUCT:
        return _encodeStruct(value, spec[1])
    if ttype == TType.LIST or ttype == TType.SET:
        head = f"[{_QUOTED[spec[0]]},{len(value)}"
        if not value:
            return head + "]"
        return head + "," + ",".join(_encodeElements(spec[0], spec[1], value)) + "]"
    if ttype == TType.MAP:
        ktype, kspec, vtype, vspec, _ = spec
        head = f"[{_QUOTED[ktype]},{_QUOTED[vtype]},{len(value)},{{"
        if not value:
            return head + "}]"
        keys = _encodeKeys(ktype, kspec, list(value))
        values = _encodeElements(vtype, vspec, list(value.values()))
        return head + ",".join([k + ":" + v for k, v in zip(keys, values)]) + "}]"
    if ttype == TType.BOOL:
        return "1" if value else "0"
    if ttype == TType.DOUBLE:
        return _encodeDouble(value)
    if ttype == _UUID:
        return _quoteJSON(str(value))
    raise _invalid(f"cannot write a value of type {ttype}")


def _encodeElements(etype: int, espec: Any, values: Any) -> list[str]:
    """
    Elements of type C{etype}: whole lists of numbers and strings are
    checked and formatted in C where they can be.
    """
    bounds = _BOUNDS.get(etype)
    if bounds is not None:
        if set(map(type, values)) == _INTS and bounds[0] <= min(values) \
                and max(values) <= bounds[1]:
            return list(map(str, values))
    elif etype == TType.STRING:
        if espec == "BINARY":
            return list(map(_encodeBinary, values))
        quoted = list(map(_encodeString, values))
        if "\\u00" not in "".join(quoted):
            return quoted
        return list(map(_quoteJSON, values))
    elif etype == TType.DOUBLE:
        if set(map(type, values)) == _FLOATS and all(map(math.isfinite, values)):
            return list(map(_formatDouble, values))
        return list(map(_encodeDouble, values))
    elif etype == TType.STRUCT:
        fields = _fields(espec[1])
        return ["".join(_structParts(v, fields, [])) for v in values]
    elif etype == TType.BOOL:
        return ["1" if v else "0" for v in values]
    return [_encodeValue(etype, espec, v) for v in values]


def _encodeKeys(ktype: int, kspec: Any, keys: list[Any]) -> list[str]:
    """
    Map keys of type C{ktype}: numbers among them quoted, as JSON keys are.
    """
    if ktype == TType.STRING or ktype == _UUID:
        return _encodeElements(ktype, kspec, keys)
    if ktype == TType.DOUBLE:
        return [k if k[0] == '"' else '"' + k + '"' for k in map(_encodeDouble, keys)]
    if ktype in _BOUNDS or ktype == TType.BOOL:
        return ['"' + k + '"' for k in _encodeElements(ktype, kspec, keys)]
    # Structs and containers, unquoted as Apache writes them (not JSON).
    return _encodeElements(ktype, kspec, keys)


class JSONWriter:
    """
    The write API of Thrift's JSON protocol, a mixin for a protocol class
    with a C{trans}: each value or container written where its context
    (an element, a field, a map key or value) says, the text flushed to the
    transport when the outermost one ends.
    """

    trans: Any

    def _resetWrite(self) -> None:
        self._parts: list[str] = []
        self._context = _TOP
        self._contexts: list[int] = []

    def _flush(self) -> None:
        parts, self._parts = self._parts, []
        self.trans.write("".join(parts).encode("utf-8"))

    def _number(self, text: str) -> None:
        """
        Write a number; as a map key it is quoted.
        """
        if self._context == _KEY or self._context == _FIRST_KEY:
            text = '"' + text + '"'
        self._token(text)

    def _token(self, text: str) -> None:
        """
        Write a string, or open a struct or container.
        """
        context = self._context
        if context == _ELEMENT:
            self._parts += (",", text)
        elif context == _FIELD:
            self._parts.append(text)
        elif context == _VALUE:
            self._parts += (":", text)
            self._context = _KEY
        elif context == _KEY:
            self._parts += (",", text)
            self._context = _VALUE
        elif context == _FIRST_KEY:
            self._parts.append(text)
            self._context = _VALUE
        else:
            self._parts.append(text)
            if not self._contexts:
                self._flush()

    def _open(self, text: str, context: int) -> None:
        outer = self._context
        if outer == _TOP:
            self._parts.append(text)
        else:
            self._token(text)
            # Moved on by _token, as from a map key to its value.
            outer = self._context
        self._contexts.append(outer)
        self._context = context

    def _close(self, text: str) -> None:
        self._parts.append(text)
        self._context = self._contexts.pop()
        if self._context == _TOP:
            self._flush()

    def encodeStruct(self, obj: Any, typeArgs: list[Any]) -> bytes:
        text = _encodeStruct(obj, typeArgs[1])
        if self._context == _TOP:
            return text.encode("utf-8")  # A struct alone: the caller writes it.
        self._token(text)
        return b""

    def writeMessageBegin(self, name: str, ttype: int, seqid: int) -> None:
        self._resetWrite()
        self._parts += ("[1,", _quoteJSON(name), ",", str(ttype), ",", str(seqid))
        self._contexts.append(_TOP)
        self._context = _ELEMENT

    def writeMessageEnd(self) -> None:
        self._close("]")

    def writeStructBegin(self, name: str) -> None:
        self._open("{", _FIRST_FIELD)

    def writeStructEnd(self) -> None:
        self._close("}")

    def writeFieldBegin(self, name: str, ttype: int, fid: int) -> None:
        first = self._context == _FIRST_FIELD
        head = _heads.get((first, fid, ttype))
        if head is None:
            head = ('"' if first else ',"') + f'{fid}":{{{_QUOTED[ttype]}:'
            if len(_heads) < _MAX_HEADS:
                _heads[first, fid, ttype] = head
        self._parts.append(head)
        self._contexts.append(_NEXT_FIELD)
        self._context = _FIELD

    def writeFieldEnd(self) -> None:
        self._parts.append("}")
        self._context = self._contexts.pop()

    def writeFieldStop(self) -> None:
        pass

    def writeListBegin(self, etype: int, size: int) -> None:
        self._open(f"[{_QUOTED[etype]},{size}", _ELEMENT)

    writeSetBegin = writeListBegin

    def writeListEnd(self) -> None:
        self._close("]")

    writeSetEnd = writeListEnd

    def writeMapBegin(self, ktype: int, vtype: int, size: int) -> None:
        self._open(f"[{_QUOTED[ktype]},{_QUOTED[vtype]},{size},{{", _FIRST_KEY)

    def writeMapEnd(self) -> None:
        self._close("}]")

    def writeBool(self, bool_val: bool) -> None:
        self._number("1" if bool_val else "0")

    def _integer_(self, value: int, bounds: tuple[int, int], what: str) -> None:
        if not bounds[0] <= value <= bounds[1]:
            raise _invalid(f"{what} requires {bounds[0]} <= number <= {bounds[1]}")
        self._number(str(value) if type(value) is int else f"{value}")

    def writeByte(self, byte: int) -> None:
        self._integer_(byte, _I8, "i8")

    def writeI16(self, i16: int) -> None:
        self._integer_(i16, _I16, "i16")

    def writeI32(self, i32: int) -> None:
        if type(i32) is int and -2147483648 <= i32 <= 2147483647:
            self._number(str(i32))
        else:
            self._integer_(i32, _I32, "i32")

    def writeI64(self, i64: int) -> None:
        self._integer_(i64, _I64, "i64")

    def writeDouble(self, dbl: float) -> None:
        if math.isfinite(dbl):
            # 17 significant digits, as Apache writes them: enough for any double.
            self._number(f"{dbl:.17g}")
        elif math.isnan(dbl):
            self._token('"NaN"')
        else:
            self._token('"Infinity"' if dbl > 0 else '"-Infinity"')

    def writeString(self, str_val: str) -> None:
        self._token(_quoteJSON(str_val))

    def writeBinary(self, str_val: bytes) -> None:
        self._token('"' + base64.b64encode(str_val).decode("ascii") + '"')

    def writeUuid(self, uuid: uuid.UUID) -> None:
        self._token(_quoteJSON(str(uuid)))
