"""
Resumable scanners: where an unframed Thrift message ends, found without
decoding it.

Apache's C{TBufferedTransport} writes a message with nothing before it, so
the only way to find where it ends is to walk its encoding.  A scanner walks
it without building values, and resumes where it stopped when more bytes
arrive, so a message costs time linear in its size however finely it is
cut.  The same walk measures how deep a whole message nests
(L{checkDepth}; L{largeMessageSizes} says from what size it must), so that
framed and unframed messages are held to one definition of depth.

This module owns the byte layout of the binary, compact and JSON protocols
as far as finding a message's end needs it, and the errors for bytes that
are no message we accept (L{FrameError}, L{DepthError}).  It must know
nothing of Twisted, connections, framing or what a message means: it is
handed bytes and says where a message ends.

What Python makes slow has C twins in C{txthrift._speedups}: the walk of a
flat container's elements (C{skipFlat}, kept in step with
L{_skipFlatInPython}; C{skipFlatPieces}, across the reads a message came in,
with L{_skipFlatPiecesInPython}), and the walk of a whole binary or compact
message (C{messageEnd}, C{cutMessages}: a 13-byte getData call takes 0.05
us to be cut from a read in C, against 1.9 us walked here, and 0.23 us for a
framed one's length prefix to be read).  The whole-message walk only ever accepts:
a message not whole yet, or bad, is left to the Python walk, which resumes
across reads and says what is wrong.  The C walks are used together or not
at all (L{_compiled}).
"""

from __future__ import annotations

import re
import struct
import sys
import threading
from collections.abc import Callable
from enum import IntEnum
from functools import partial
from typing import ClassVar, Final

from ._limits import Limits
from ._nogc import BIG_MESSAGE

__all__ = [
    "DepthError",
    "FrameError",
    "Scanner",
    "checkDepth",
    "depthCheckFloor",
    "largeMessageSizes",
    "scannerFor",
]

_I32 = struct.Struct(">i")


class FrameError(ValueError):
    """
    The bytes on a connection are not a Thrift message stream we accept.

    The connection carrying them cannot be trusted any more and is closed,
    once the whole messages that came before them are handled.

    @ivar messages: those whole messages, found in the same bytes.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.messages: list[bytes] = []


class DepthError(FrameError):
    """
    A message nests structs and containers deeper than C{max_depth}.

    Depth counts structs and containers only: the message's own struct
    (a call's arguments, a reply's result or exception) is at depth 1, a
    struct or container in one of its fields at depth 2, an element of that
    container at depth 3 if it is a struct or container itself.  Strings and
    numbers add none, so at C{max_depth=1} a call whose arguments are all
    strings and numbers passes.
    """


class BinaryType(IntEnum):
    """
    The binary protocol's type codes (Apache's C{TType}).
    """

    STOP = 0
    BOOL = 2
    BYTE = 3
    DOUBLE = 4
    I16 = 6
    I32 = 8
    I64 = 10
    STRING = 11
    STRUCT = 12
    MAP = 13
    SET = 14
    LIST = 15
    UUID = 16


class CompactType(IntEnum):
    """
    The compact protocol's type codes.  A struct field's boolean is its
    type code (no byte follows); a container's is one byte.
    """

    STOP = 0
    BOOLEAN_TRUE = 1
    BOOLEAN_FALSE = 2
    BYTE = 3
    I16 = 4
    I32 = 5
    I64 = 6
    DOUBLE = 7
    BINARY = 8
    LIST = 9
    SET = 10
    MAP = 11
    STRUCT = 12
    UUID = 13


# The kind of a type code's values, by how they are laid out: a width in bytes
# (>= 0), or one of these.  The first three are the flat kinds, which
# txthrift._speedups.skipFlat (and _skipFlatInPython) walk containers of.
_I32_STRING, _VARINT, _VARINT_STRING = -1, -2, -3
_NESTS_STRUCT, _NESTS_LIST, _NESTS_MAP, _UNKNOWN = -4, -5, -6, -7

# What a scanner is in the middle of, besides a value of a type code (>= 0):
# nothing (the next field or element is to be read), or a flat walk.
_NO_VALUE, _FLAT_WALK = -1, -2


def _table(entries: dict[int, int], default: int) -> tuple[int, ...]:
    """
    A table indexed by a byte: C{entries} where they say, C{default} elsewhere.
    """
    return tuple(entries.get(code, default) for code in range(256))


def _leastSize(kind: int) -> int:
    return 4 if kind == _I32_STRING else 1 if kind < 0 else kind


def _readVarint(buffer: bytes | bytearray, pos: int, size: int) -> tuple[int, int] | None:
    """
    The compact protocol's varint at C{pos}, and the offset after it; C{None}
    if the buffer ends first.
    """
    result = shift = 0
    while pos < size:
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise FrameError("compact varint longer than 10 bytes")
    return None


def _skipFlatInPython(buffer: bytes | bytearray, pos: int, remaining: int, evenKind: int,
                      oddKind: int, maxString: int) -> tuple[int, int]:
    """
    What C{txthrift._speedups.skipFlat} does, for when it was not built.
    """
    size = len(buffer)
    unpack = _I32.unpack_from
    if evenKind == oddKind == _I32_STRING:
        # The common case (list<string>, map<string, string>), kept tight.
        last = size - 4
        while remaining and pos <= last:
            (length,) = unpack(buffer, pos)
            end = pos + 4 + length
            if end > size or not 0 <= length <= maxString:
                break
            pos = end
            remaining -= 1
        return pos, remaining
    while remaining:
        kind = oddKind if remaining & 1 else evenKind
        if kind >= 0:
            end = pos + kind
        elif kind == _I32_STRING:
            if pos + 4 > size:
                break
            (length,) = unpack(buffer, pos)
            if not 0 <= length <= maxString:
                break
            end = pos + 4 + length
        else:
            try:
                got = _readVarint(buffer, pos, size)
            except FrameError:
                break
            if got is None or kind == _VARINT_STRING and got[0] > maxString:
                break
            end = got[1] + got[0] if kind == _VARINT_STRING else got[1]
        if end > size:
            break
        pos = end
        remaining -= 1
    return pos, remaining


def _flatSize(head: bytes, kind: int, maxString: int) -> int | None:
    """
    The size of the flat element of C{kind} that C{head} starts with (at most
    10 bytes of it); C{None} if C{head} ends before its header does, or it is
    not a valid element (as L{_skipFlatInPython} judges).
    """
    if kind >= 0:
        return kind
    if kind == _I32_STRING:
        if len(head) < 4:
            return None
        (length,) = _I32.unpack_from(head)
        return 4 + length if 0 <= length <= maxString else None
    try:
        got = _readVarint(head, 0, len(head))
    except FrameError:
        return None
    if got is None:
        return None
    if kind == _VARINT_STRING:
        return got[1] + got[0] if got[0] <= maxString else None
    return got[1]


#: The most bytes of a flat element read to know its size: a varint's 10.
_MOST_FLAT_HEAD: Final = 10


def _headOf(pieces: list[bytes], index: int, pos: int, most: int) -> bytes:
    """
    Up to C{most} bytes of C{pieces} from C{pos} in C{pieces[index]} on.
    """
    head = b""
    while index < len(pieces) and len(head) < most:
        head += pieces[index][pos:pos + most - len(head)]
        pos = 0
        index += 1
    return head


def _skipFlatPiecesInPython(pieces: list[bytes], pos: int, remaining: int, evenKind: int,
                            oddKind: int, maxString: int) -> tuple[int, int, int, int]:
    """
    What C{txthrift._speedups.skipFlatPieces} does, for when it was not built:
    L{_skipFlatInPython} over C{pieces} as if joined, from C{pos} in the first.

    @return: where the walk stopped (the index of a piece and an offset
        inside it; C{len(pieces)} and 0 when all were walked), the elements
        left, and the bytes of the pieces before that index.
    """
    index = passed = 0
    count = len(pieces)
    total = sum(map(len, pieces))
    while True:
        while index < count and pos >= len(pieces[index]):
            pos -= len(pieces[index])
            passed += len(pieces[index])
            index += 1
        if not remaining:
            return index, pos, remaining, passed
        if index < count:
            piece = pieces[index]
            pos, remaining = _skipFlatInPython(piece, pos, remaining, evenKind, oddKind,
                                               maxString)
            if not remaining or pos >= len(piece):
                continue
        # The element at pos runs past its piece (or is bad), or there are
        # no more bytes (for a fixed width, it may need none).
        kind = oddKind if remaining & 1 else evenKind
        size = _flatSize(_headOf(pieces, index, pos, _MOST_FLAT_HEAD), kind, maxString)
        if size is None or pos + size > total - passed:
            return index, pos, remaining, passed
        pos += size
        remaining -= 1


try:
    from . import _speedups
except ImportError:  # pragma: no cover - built without a C compiler
    _speedups = None  # type: ignore[assignment]

#: The walk of flat containers: C{txthrift._speedups.skipFlat}, unless it was
#: not built.  Setting it to L{_skipFlatInPython} (as tests do) sets aside all
#: of C{txthrift._speedups}, so that every walk here is the Python one.
_skipFlat = _skipFlatInPython if _speedups is None else _speedups.skipFlat


def _compiled() -> bool:
    """
    Whether the C walks are in use (see L{_skipFlat}).
    """
    return _skipFlat is not _skipFlatInPython


class Scanner:
    """
    Finds where the message at the start of a buffer ends, resuming where it
    stopped each time the buffer has grown, and refuses what breaks a limit
    as soon as it can be seen.
    """

    def __init__(self, limits: Limits) -> None:
        self._maxFrame = limits.max_frame_size
        self._maxString = limits.string_limit
        self._maxContainer = limits.container_limit
        self._maxDepth = limits.max_depth
        self.reset()

    def reset(self) -> None:
        """
        Forget the message scanned: the next starts at the buffer's start.
        """
        self._pos = 0
        #: The least the buffer must hold before scanning again can get further.
        self.need = 0
        # Where the buffer scanned starts in the message: what release() let go.
        self._base = 0

    def release(self) -> int:
        """
        Let go of the start of the message scanned so far, up to where the
        scan stopped: no later scan looks at those bytes again, so the next
        buffer it is given may begin where they end (offsets, C{need} and
        the max_frame_size check count from there), and the caller need not
        hold them in the buffer (a big message need not be copied into one
        buffer as it grows).

        @return: how many bytes were let go: the caller drops as many from
            the start of its buffer, and, where that is more than the
            buffer holds (the rest of a string not all there), as many
            more of the bytes still to come.
        """
        passed = self._pos
        if passed:
            self._pos = 0
            self.need = max(0, self.need - passed)
            self._base += passed
        return passed

    def scan(self, buffer: bytes | bytearray) -> int | None:
        """
        @return: the length of the message at the start of C{buffer}, or
            C{None} if C{buffer} does not hold all of it yet.
        @raise FrameError: if it is no message, or breaks a limit.
        """
        raise NotImplementedError

    def cut(self, data: bytes | bytearray, messages: list[bytes]) -> int:
        """
        Append to C{messages} the messages whole at the start of C{data} that
        can be cut from it at once, by a scanner that has begun no message
        (L{scan} finds the others, and says what is wrong with those that
        are bad).

        @return: where the last of them ends; 0 if none was cut.
        """
        return 0

    def walkingFlat(self) -> bool:
        """
        Whether the scan stopped among the elements of a flat container
        (strings and numbers only), which L{walkPieces} goes on with.
        """
        return False

    def walkPieces(self, pieces: list[bytes]) -> tuple[int, int]:
        """
        Go on with the flat container's elements (see L{walkingFlat}) over
        C{pieces}, the bytes from where the buffer last scanned starts, as
        they came: a container of a million strings is walked across the
        reads it came in without copying them into one buffer.

        The scanner lets go of the pieces it walked past (as L{release}
        does): its offsets and L{need} then count from the first piece it
        did not.  Once the container has ended, L{scan} goes on with that
        piece and those after it, joined.

        @return: how many pieces it let go of, and their bytes.
        @raise FrameError: if an element breaks a limit.
        """
        raise NotImplementedError

    def _checkEnd(self, end: int) -> None:
        if end + self._base > self._maxFrame:
            raise FrameError(f"message is longer than {self._maxFrame} bytes (max_frame_size)")

    def _checkString(self, length: int) -> None:
        if not 0 <= length <= self._maxString:
            raise FrameError(
                f"string length {length} is outside 0..{self._maxString} (max_string_length)"
            )

    def _checkContainer(self, count: int) -> None:
        if not 0 <= count <= self._maxContainer:
            raise FrameError(
                f"container length {count} is outside 0..{self._maxContainer}"
                " (max_container_length)"
            )

    def _tooDeep(self) -> DepthError:
        return DepthError(f"structs and containers nested deeper than {self._maxDepth}"
                          " (max_depth)")


class _Open:
    """
    A struct or container begun and not yet ended, on a scanner's stack.

    A container's elements alternate by the count left: of C{evenType} when
    it is even, of C{oddType} when odd (a map's keys and values, its count
    doubled; a list's or set's are both of its one element type).

    @ivar remaining: the elements still to come; -1 for a struct.
    """

    __slots__ = ("evenType", "oddType", "remaining")

    def __init__(self, evenType: int, oddType: int, remaining: int) -> None:
        self.evenType = evenType
        self.oddType = oddType
        self.remaining = remaining


#: The stack entry of every struct: it holds no state of its own.
_IN_STRUCT: Final = _Open(0, 0, -1)


class _StructScanner(Scanner):
    """
    The scanner of a protocol of fields and containers (binary, compact):
    one walk, told each protocol's layout by tables and by small methods
    reading its message, list and map headers.

    It keeps a stack of the structs and containers it is inside, the offset
    reached and the type of a value begun there but not yet whole, and moves
    past any of them only once the bytes it needs are there, so that a scan
    that runs out of bytes resumes exactly where it stopped.
    """

    #: The protocol's name, in errors.
    name: ClassVar[str]
    #: Each type code's kind (see _I32_STRING etc.), _UNKNOWN if none.
    _KINDS: ClassVar[tuple[int, ...]]
    #: A field header byte's value type, or _NO_VALUE when the header holds
    #: the value (a compact boolean).
    _FIELD_TYPES: ClassVar[tuple[int, ...]]
    #: The bytes of field id after a field header byte, or -1 for a varint.
    _FIELD_ID_BYTES: ClassVar[tuple[int, ...]]
    #: C{txthrift._speedups.messageEnd} and C{cutMessages}, given this
    #: scanner's limits; only where it was built.
    _messageEnd: Callable[[bytes | bytearray], int]
    _cutMessages: Callable[[bytes | bytearray, list[bytes]], int]

    def __init__(self, limits: Limits) -> None:
        self._stack: list[_Open] = []
        super().__init__(limits)
        # For the flat walks, in C a C integer: no length past it can be
        # whole, so the walk stops at it either way, and the Python check
        # that follows names the limit given.
        self._flatMaxString = min(self._maxString, sys.maxsize)
        if _speedups is not None:
            # A string or container over max_frame_size cannot be in a
            # message within it: the C walk takes the limits as C integers.
            limitsInC = (self.name == "compact", self._maxFrame,
                         min(self._maxString, self._maxFrame),
                         min(self._maxContainer, self._maxFrame), min(self._maxDepth, 2**31))
            self._messageEnd = partial(_speedups.messageEnd, *limitsInC)
            self._cutMessages = partial(_speedups.cutMessages, *limitsInC)

    def reset(self) -> None:
        # Once per message: no call up to Scanner.reset.
        self._pos = self.need = self._base = 0
        self._stack.clear()
        self._pending = _NO_VALUE

    def _header(self, buffer: bytes | bytearray, size: int) -> int | None:
        """
        The offset after the message header (name, type, seqid), or C{None}
        if the buffer ends first.
        """
        raise NotImplementedError

    def _listHeader(self, buffer: bytes | bytearray, pos: int,
                    size: int) -> tuple[int, int, int, int] | None:
        """
        The list or set header at C{pos}: its element type twice, its count
        and the offset after it; C{None} if the buffer ends first.
        """
        raise NotImplementedError

    def _mapHeader(self, buffer: bytes | bytearray, pos: int,
                   size: int) -> tuple[int, int, int, int] | None:
        """
        The map header at C{pos}: its key and value types, its count
        doubled and the offset after it; C{None} if the buffer ends first.
        """
        raise NotImplementedError

    def cut(self, data: bytes | bytearray, messages: list[bytes]) -> int:
        return self._cutMessages(data, messages) if _compiled() else 0

    def scan(self, buffer: bytes | bytearray) -> int | None:
        size = len(buffer)
        stack = self._stack
        self.need = 0
        if not stack:
            if _skipFlat is not _skipFlatInPython:  # _compiled(), without a call
                # Whole (the common case): walked in C, in one call.
                whole = self._messageEnd(buffer)
                if whole >= 0:
                    return whole
            end = self._header(buffer, size)
            if end is None:
                return None
            self._pos = end
            stack.append(_IN_STRUCT)
        pos = self._pos
        ttype = self._pending
        kinds = self._KINDS
        fieldTypes = self._FIELD_TYPES
        fieldIdBytes = self._FIELD_ID_BYTES
        inStruct = _IN_STRUCT
        varint = _readVarint
        unpack = _I32.unpack_from
        maxString = self._maxString
        maxDepth = self._maxDepth
        # An end past this is either not there yet or past max_frame_size.
        # (Not min(): a call costs a tenth of scanning a small message.)
        maxFrame = self._maxFrame - self._base
        bound = size if size < maxFrame else maxFrame  # noqa: FURB136
        try:
            if ttype == _FLAT_WALK:
                top = stack[-1]
                pos, top.remaining = self._walkFlat(buffer, pos, size, kinds[top.evenType],
                                                    kinds[top.oddType], top.remaining)
                if top.remaining:
                    return None
                stack.pop()
                ttype = _NO_VALUE
            while True:
                if ttype < 0:
                    # The innermost open struct or container says what is next.
                    if not stack:
                        if pos > bound:
                            self._checkEnd(pos)
                        return pos
                    top = stack[-1]
                    if top is inStruct:
                        if pos >= size:
                            return None
                        header = buffer[pos]
                        if header == 0:
                            pos += 1
                            stack.pop()
                            continue
                        idBytes = fieldIdBytes[header]
                        if idBytes >= 0:
                            if pos + 1 + idBytes > size:
                                return None
                            pos += 1 + idBytes
                        else:
                            got = varint(buffer, pos + 1, size)
                            if got is None:
                                return None
                            pos = got[1]
                        ttype = fieldTypes[header]
                        if ttype < 0:
                            continue
                    else:
                        remaining = top.remaining
                        if not remaining:
                            stack.pop()
                            continue
                        top.remaining = remaining - 1
                        ttype = top.oddType if remaining & 1 else top.evenType
                # A value of type ttype starts at pos: find its end, or open
                # the struct or container it is.
                kind = kinds[ttype]
                if kind >= 0:
                    end = pos + kind
                elif kind == _I32_STRING:
                    if pos + 4 > size:
                        return None
                    (length,) = unpack(buffer, pos)
                    if not 0 <= length <= maxString:
                        self._checkString(length)
                    end = pos + 4 + length
                elif kind == _VARINT:
                    got = varint(buffer, pos, size)
                    if got is None:
                        return None
                    pos = got[1]
                    ttype = _NO_VALUE
                    continue
                elif kind == _VARINT_STRING:
                    got = varint(buffer, pos, size)
                    if got is None:
                        return None
                    if got[0] > maxString:
                        self._checkString(got[0])
                    end = got[1] + got[0]
                elif kind == _UNKNOWN:
                    raise FrameError(f"unknown {self.name} type code {ttype}")
                elif len(stack) >= maxDepth:
                    # What opens here is one level deeper than the stack.
                    raise self._tooDeep()
                elif kind == _NESTS_STRUCT:
                    stack.append(inStruct)
                    ttype = _NO_VALUE
                    continue
                else:
                    if kind == _NESTS_LIST:
                        opened = self._listHeader(buffer, pos, size)
                    else:
                        opened = self._mapHeader(buffer, pos, size)
                    if opened is None:
                        return None
                    evenType, oddType, remaining, after = opened
                    if not remaining:
                        pos = after
                        ttype = _NO_VALUE
                        continue
                    evenKind, oddKind = kinds[evenType], kinds[oddType]
                    if evenKind >= 0 and oddKind >= 0:
                        # Fixed-size elements are skipped in one step: as
                        # many odd ones as even, and one more if the count is odd.
                        end = (after + (remaining >> 1) * (evenKind + oddKind)
                               + (remaining & 1) * oddKind)
                    elif evenKind >= _VARINT_STRING and oddKind >= _VARINT_STRING:
                        # Strings and numbers only: walked at once, without
                        # a turn of this loop per element (or a stack entry,
                        # unless the buffer ends first).
                        pos, remaining = self._walkFlat(buffer, after, size, evenKind, oddKind,
                                                        remaining)
                        if remaining:
                            stack.append(_Open(evenType, oddType, remaining))
                            ttype = _FLAT_WALK
                            return None
                        ttype = _NO_VALUE
                        continue
                    else:
                        stack.append(_Open(evenType, oddType, remaining))
                        pos = after
                        ttype = _NO_VALUE
                        continue
                if end > bound:
                    self._checkEnd(end)
                    # Not all there yet, but nothing in it is looked at (a
                    # string, or values of fixed sizes): the scan goes on
                    # after it, and the bytes up to there may be let go
                    # unseen as they come (see release()).
                    pos, ttype = end, _NO_VALUE
                    self.need = end + 1
                    return None
                pos = end
                ttype = _NO_VALUE
        finally:
            self._pos, self._pending = pos, ttype

    def walkingFlat(self) -> bool:
        return self._pending == _FLAT_WALK

    def walkPieces(self, pieces: list[bytes]) -> tuple[int, int]:
        top = self._stack[-1]
        evenKind, oddKind = self._KINDS[top.evenType], self._KINDS[top.oddType]
        walk = _skipFlatPiecesInPython if _skipFlat is _skipFlatInPython else (
            _speedups.skipFlatPieces)
        index, pos, remaining, passed = walk(pieces, self._pos, top.remaining, evenKind,
                                             oddKind, self._flatMaxString)
        self._base += passed
        self._pos = pos
        top.remaining = remaining
        if remaining:
            # The next element is not whole (or is bad: this raises).
            kind = oddKind if remaining & 1 else evenKind
            head = _headOf(pieces, index, pos, _MOST_FLAT_HEAD)
            least = pos + self._elementSize(head, 0, len(head), kind) + (remaining - 1) * min(
                _leastSize(evenKind), _leastSize(oddKind))
            self._checkEnd(least)
            self.need = least
        else:
            self._stack.pop()
            self._pending = _NO_VALUE
            self.need = 0
            self._checkEnd(pos)
        return index, passed

    def _walkFlat(self, buffer: bytes | bytearray, pos: int, size: int, evenKind: int,
                  oddKind: int, remaining: int) -> tuple[int, int]:
        """
        Walk the C{remaining} elements of a container from C{pos}, all of
        flat kinds, as far as the buffer goes.

        @return: the offset reached and the elements left.  If some are
            left, L{need} says how long the buffer must get before they can
            all be there.
        """
        pos, remaining = _skipFlat(buffer, pos, remaining, evenKind, oddKind, self._flatMaxString)
        if remaining:
            # The next element is not whole (or is bad: this raises).
            kind = oddKind if remaining & 1 else evenKind
            least = pos + self._elementSize(buffer, pos, size, kind) + (remaining - 1) * min(
                _leastSize(evenKind), _leastSize(oddKind))
            self._checkEnd(least)
            self.need = least
        elif pos + self._base > self._maxFrame:
            self._checkEnd(pos)
        return pos, remaining

    def _elementSize(self, buffer: bytes | bytearray, pos: int, size: int, kind: int) -> int:
        """
        The size of the flat element at C{pos}, as far as it is known.

        @raise FrameError: if it is not a valid element.
        """
        if kind >= 0:
            return kind
        if kind == _I32_STRING:
            if pos + 4 > size:
                return 4
            (length,) = _I32.unpack_from(buffer, pos)
            self._checkString(length)
            return 4 + length
        got = _readVarint(buffer, pos, size)
        if got is None:
            return size - pos + 1
        if kind == _VARINT_STRING:
            self._checkString(got[0])
            return got[1] - pos + got[0]
        return got[1] - pos


class _BinaryScanner(_StructScanner):
    name = "binary"
    _KINDS = _table({
        BinaryType.BOOL: 1, BinaryType.BYTE: 1, BinaryType.DOUBLE: 8, BinaryType.I16: 2,
        BinaryType.I32: 4, BinaryType.I64: 8, BinaryType.UUID: 16,
        BinaryType.STRING: _I32_STRING, BinaryType.STRUCT: _NESTS_STRUCT,
        BinaryType.MAP: _NESTS_MAP, BinaryType.SET: _NESTS_LIST, BinaryType.LIST: _NESTS_LIST,
    }, _UNKNOWN)
    # A field header is its value's type code and an i16 field id.
    _FIELD_TYPES = tuple(range(256))
    _FIELD_ID_BYTES = (2,) * 256

    def _header(self, buffer: bytes | bytearray, size: int) -> int | None:
        if size < 4:
            return None
        (word,) = _I32.unpack_from(buffer, 0)
        if word < 0:
            # Strict: version|type, name length, name, seqid.
            if (word >> 16) & 0xFFFF != 0x8001:
                raise FrameError(f"bad binary protocol version 0x{word & 0xFFFFFFFF:08x}")
            if size < 8:
                return None
            (length,) = _I32.unpack_from(buffer, 4)
            self._checkString(length)
            end = 8 + length + 4
        else:
            # Old non-strict, which Apache's binary protocol reads too:
            # name length, name, type byte, seqid.
            length = word
            self._checkString(length)
            end = 4 + length + 1 + 4
        self._checkEnd(end)
        return end if size >= end else None

    def _listHeader(self, buffer: bytes | bytearray, pos: int,
                    size: int) -> tuple[int, int, int, int] | None:
        if pos + 5 > size:
            return None
        etype = buffer[pos]
        (count,) = _I32.unpack_from(buffer, pos + 1)
        self._checkContainer(count)
        return etype, etype, count, pos + 5

    def _mapHeader(self, buffer: bytes | bytearray, pos: int,
                   size: int) -> tuple[int, int, int, int] | None:
        if pos + 6 > size:
            return None
        (count,) = _I32.unpack_from(buffer, pos + 2)
        self._checkContainer(count)
        return buffer[pos], buffer[pos + 1], 2 * count, pos + 6


class _CompactScanner(_StructScanner):
    name = "compact"
    _KINDS = _table({
        CompactType.BOOLEAN_TRUE: 1, CompactType.BOOLEAN_FALSE: 1, CompactType.BYTE: 1,
        CompactType.I16: _VARINT, CompactType.I32: _VARINT, CompactType.I64: _VARINT,
        CompactType.DOUBLE: 8, CompactType.BINARY: _VARINT_STRING, CompactType.UUID: 16,
        CompactType.LIST: _NESTS_LIST, CompactType.SET: _NESTS_LIST,
        CompactType.MAP: _NESTS_MAP, CompactType.STRUCT: _NESTS_STRUCT,
    }, _UNKNOWN)
    # A field header is a byte: the field id's delta from the last (0: a
    # zigzag varint id follows) over the value's type code, a boolean's
    # type code being its value.
    _FIELD_TYPES = tuple(_NO_VALUE if (header & 0x0F) in (CompactType.BOOLEAN_TRUE,
                                                          CompactType.BOOLEAN_FALSE)
                         else header & 0x0F for header in range(256))
    _FIELD_ID_BYTES = tuple(0 if header >> 4 else -1 for header in range(256))

    def _header(self, buffer: bytes | bytearray, size: int) -> int | None:
        if size < 2:
            return None
        if buffer[0] != 0x82:
            raise FrameError(f"bad compact protocol id 0x{buffer[0]:02x}")
        if buffer[1] & 0x1F != 1:
            raise FrameError(f"bad compact protocol version {buffer[1] & 0x1F}")
        seqid = _readVarint(buffer, 2, size)
        if seqid is None:
            return None
        length = _readVarint(buffer, seqid[1], size)
        if length is None:
            return None
        self._checkString(length[0])
        end = length[1] + length[0]
        self._checkEnd(end)
        return end if size >= end else None

    def _listHeader(self, buffer: bytes | bytearray, pos: int,
                    size: int) -> tuple[int, int, int, int] | None:
        # The count (15: a varint count follows) over the element type.
        if pos >= size:
            return None
        header = buffer[pos]
        count, etype, after = header >> 4, header & 0x0F, pos + 1
        if count == 15:
            got = _readVarint(buffer, after, size)
            if got is None:
                return None
            count, after = got
        self._checkContainer(count)
        return etype, etype, count, after

    def _mapHeader(self, buffer: bytes | bytearray, pos: int,
                   size: int) -> tuple[int, int, int, int] | None:
        # A varint count, then (unless it is 0) the key type over the value type.
        got = _readVarint(buffer, pos, size)
        if got is None:
            return None
        count, after = got
        self._checkContainer(count)
        if count == 0:
            return 0, 0, 0, after
        if after >= size:
            return None
        types = buffer[after]
        return types >> 4, types & 0x0F, 2 * count, after + 1


# What each open JSON bracket is: the message's array; a struct, or the
# object wrapping a field's value ({"i32": 5}); a list, set or map array (by
# the strings seen in it: a map's body object follows two type names); a map's
# body.  Structs and containers are depth levels; the rest are not.
_J_MESSAGE, _J_STRUCT, _J_WRAPPER, _J_MAPBODY = 0, 1, 2, 3
_J_LIST0, _J_LIST1, _J_LIST2, _J_LISTED = 4, 5, 6, 7


class _JSONScanner(Scanner):
    # Outside strings only brackets and quotes matter, found by a regex
    # search in C; inside, only the closing quote, found by bytes.find
    # (memchr: a 1 MiB string in 0.02 ms, against 12 ms for a regex).
    _OUTSIDE = re.compile(rb'["\[\]{}]')

    def reset(self) -> None:
        super().reset()
        self._kinds: list[int] = []
        self._levels = 0
        self._inString = False

    def release(self) -> int:
        # Inside a string, the closing quote looks back at the backslashes
        # before it, as far as the string's start: keep the bytes.
        return 0 if self._inString else super().release()

    def scan(self, buffer: bytes | bytearray) -> int | None:
        size = len(buffer)
        pos = self._pos
        if pos == 0 and not self._base and size and buffer[0] != 0x5B:
            raise FrameError(f"JSON message starts with {bytes(buffer[:1])!r}, not '['")
        # Depth as the other protocols count it: a struct's fields and a
        # map's entries are wrapped in objects that are no level of their own.
        maxDepth = self._maxDepth
        kinds, levels, inString = self._kinds, self._levels, self._inString
        try:
            while True:
                if inString:
                    at = buffer.find(b'"', pos)
                    if at < 0:
                        pos = size
                        return None
                    pos = at + 1
                    # Escaped if an odd run of backslashes comes before it;
                    # the run stops at the string's opening quote at worst,
                    # and each is looked at once.
                    back = at - 1
                    while buffer[back] == 0x5C:
                        back -= 1
                    if not (at - back) % 2:
                        continue
                    inString = False
                    continue
                match = self._OUTSIDE.search(buffer, pos)
                if match is None:
                    pos = size
                    return None
                at = match.start()
                char = buffer[at]
                pos = at + 1
                if char == 0x22:
                    inString = True
                    top = kinds[-1]
                    if _J_LIST0 <= top < _J_LISTED:
                        kinds[-1] = top + 1
                elif char == 0x5B or char == 0x7B:
                    if not kinds:
                        kind = _J_MESSAGE
                    else:
                        parent = kinds[-1]
                        if char == 0x5B:
                            kind = _J_LIST0
                        elif parent == _J_STRUCT:
                            kind = _J_WRAPPER
                        elif parent == _J_LIST2:
                            kind = _J_MAPBODY
                        else:
                            kind = _J_STRUCT
                        if parent >= _J_LIST0:
                            kinds[-1] = _J_LISTED
                        if kind == _J_STRUCT or kind >= _J_LIST0:
                            levels += 1
                            if levels > maxDepth:
                                raise self._tooDeep()
                    kinds.append(kind)
                else:
                    kind = kinds.pop()
                    if kind == _J_STRUCT or kind >= _J_LIST0:
                        levels -= 1
                    if not kinds:
                        return pos
        finally:
            self._pos, self._levels, self._inString = pos, levels, inString
            self._checkEnd(pos)


_SCANNERS: Final[dict[str, type[Scanner]]] = {
    "binary": _BinaryScanner,
    "compact": _CompactScanner,
    "json": _JSONScanner,
}


def scannerFor(protocol: str, limits: Limits) -> Scanner:
    """
    A scanner of C{protocol}'s messages (C{"binary"}, C{"compact"} or
    C{"json"}), held to C{limits}.
    """
    return _SCANNERS[protocol](limits)


def checkDepth(message: bytes, protocol: str, limits: Limits) -> None:
    """
    Refuse a whole message that nests deeper than C{limits.max_depth}.

    It is walked by the scanner that finds where unframed messages end, so
    that framed and unframed ones are held to the same definition of depth
    (see L{DepthError}).  Only depth is judged: a message that is bad in
    another way (cut short, a length over its limit) passes, for its
    decoder to say what is wrong with it.

    @raise DepthError: if it nests too deep.
    """
    scanners: dict[tuple[str, Limits], Scanner] = getattr(_depthScanners, "byKind", None) or {}
    scanner = scanners.get((protocol, limits))
    if scanner is None:
        if len(scanners) >= _MOST_DEPTH_SCANNERS:
            scanners.clear()
        scanner = scanners[protocol, limits] = _SCANNERS[protocol](limits)
        _depthScanners.byKind = scanners
    scanner.reset()
    try:
        scanner.scan(message)
    except DepthError:
        raise
    except FrameError:
        pass


#: The scanners L{checkDepth} walks messages with, kept (per thread) by
#: protocol and limits: making one costs as much as walking a small message.
_depthScanners = threading.local()
_MOST_DEPTH_SCANNERS: Final = 16


#: The fewest bytes one level of nesting takes in each protocol: a binary
#: struct holding the next level in a field (a 3-byte field header and its
#: stop byte) or a container (element type and i32 count); a compact list
#: whose size and type share one byte; a JSON pair of brackets.
_LEAST_PER_LEVEL: Final = {"binary": 3, "compact": 1, "json": 2}


def depthCheckFloor(transport: str, protocol: str, limits: Limits) -> int | None:
    """
    The size of whole messages from which L{checkDepth} must walk them
    before they are decoded, or C{None} for never.

    Unframed messages never: their scanner refused them as they came.  A
    framed message (or a THeader frame's, whole as well) too short to hold more than C{max_depth} levels is not
    walked either, which spares the small calls that are most of any
    traffic (a walk costs about what decoding them does).
    """
    if transport != "framed" and transport != "header":
        return None
    return (limits.max_depth + 1) * _LEAST_PER_LEVEL[protocol]


def largeMessageSizes(transport: str, protocol: str, limits: Limits,
                      decoderChecksDepth: bool) -> tuple[int, int]:
    """
    From what size a connection's whole messages are walked for depth
    before they are decoded (never, where the decoder refuses what is too
    deep itself), and from what size they take the slow path at all: the
    smaller of that and L{BIG_MESSAGE}, from which decoding holds off
    garbage collection.
    """
    floor = None if decoderChecksDepth else depthCheckFloor(transport, protocol, limits)
    depthFrom = sys.maxsize if floor is None else floor
    return depthFrom, min(depthFrom, BIG_MESSAGE)
