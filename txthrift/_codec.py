"""
The message codec: one Thrift protocol's encoding of whole messages.

Binary and compact go through Apache's protocol classes, C-accelerated
where the C{thrift} package ships its extension; JSON through our own
(L{txthrift._json}), on the standard library's C JSON scanner; all over
in-memory buffers.  What this takes from inside Apache's package is
L{txthrift._thriftinternals}'s.

Knows nothing of sockets, the reactor, framing, services or handlers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from typing import Any, Final
from typing import Protocol as TypingProtocol

from thrift.protocol.TBinaryProtocol import (
    TBinaryProtocolAcceleratedFactory,
    TBinaryProtocolFactory,
)
from thrift.protocol.TCompactProtocol import (
    TCompactProtocolAcceleratedFactory,
    TCompactProtocolFactory,
)
from thrift.protocol.TProtocol import TProtocolBase, TProtocolFactory
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.TTransport import CReadableTransport, TMemoryBuffer, TTransportBase

from ._json import JSONMessages, JSONProtocolFactory, encodeThrough
from ._limits import Limits
from ._thriftinternals import (
    decodeBinary,
    decodeCompact,
    encodeBinary,
    encodeCompact,
    restartingEachMessage,
    withStoredHeader,
)

__all__ = ["CONTENT_TYPES", "Acceleration", "Codec", "accelerated", "acceleration", "protocolFactory",
           "readVarint", "varint", "withStoredHeader"]


def _built() -> bool:
    try:
        from . import _speedups  # noqa: F401
    except ImportError:  # pragma: no cover - built without a C compiler
        return False
    return True


@dataclass(frozen=True)
class Acceleration:
    """
    What of txthrift's per-message work runs in C here; true when all of it
    does.
    """

    #: Binary and compact messages encoded and decoded by the C{thrift}
    #: package's C extension (Apache's C{fastbinary}).
    codec: bool
    #: Unframed messages' containers walked by txthrift's own
    #: (C{txthrift._speedups}, built at install time where a C compiler is).
    scanner: bool

    def __bool__(self) -> bool:
        return self.codec and self.scanner


#: What runs in C here: L{Acceleration.codec} and L{Acceleration.scanner}.
acceleration: Final = Acceleration(codec=decodeBinary is not None, scanner=_built())

#: Whether the C{thrift} package's C codec is importable here
#: (L{acceleration}C{.codec}, kept a bool); txthrift's own C scanner is
#: L{acceleration}C{.scanner}.
accelerated: Final[bool] = acceleration.codec


class _Writable(TypingProtocol):
    def write(self, oprot: TProtocolBase) -> None: ...


def protocolFactory(protocol: str, limits: Limits) -> TProtocolFactory:
    """
    Apache's protocol factory for C{protocol}, reading within C{limits}.

    The accelerated factories fall back to pure Python themselves when the
    extension is missing; we pick the pure ones outright so that nothing
    tries the import per protocol object.
    """
    strings, containers = limits.string_limit, limits.container_limit
    if protocol == "json":
        # Parsed in C (Apache's reads a byte at a time in Python).
        return JSONProtocolFactory(strings, containers, limits.max_depth)
    factories = _FACTORIES.get(protocol)
    if factories is None:
        raise ValueError(f"unknown protocol {protocol!r}; choose binary, compact or json")
    factory: Any = factories[accelerated]
    return factory(string_length_limit=strings, container_length_limit=containers)


#: (pure, accelerated) factory classes by protocol name.
_FACTORIES: Final = {
    "binary": (TBinaryProtocolFactory, TBinaryProtocolAcceleratedFactory),
    "compact": (TCompactProtocolFactory, TCompactProtocolAcceleratedFactory),
}


class _ReplyBuffer(TMemoryBuffer):
    """
    An output buffer that keeps only the last message begun in it.

    A generated processor that fails half way through writing a REPLY goes
    on to write an EXCEPTION into the same transport; without this the peer
    would get the broken REPLY's first bytes glued to it.
    """

    def restart(self) -> None:
        # Empty again, as the constructor leaves it: no private to reach.
        TMemoryBuffer.__init__(self)


class _MessageInput(TTransportBase, CReadableTransport):
    """
    Input pointed at one message after another, so that one protocol object
    reads them all; the C decoder reads it as Apache's C{CReadableTransport}
    interface says.
    """

    # A plain attribute, not the interface's property: the C decoder reads
    # it once per struct, and Codec.readHeader points it at each message.
    cstringio_buf: BytesIO = None  # type: ignore[assignment]

    def __init__(self, buffer: BytesIO) -> None:
        self.cstringio_buf = buffer

    def isOpen(self) -> bool:
        return not self.cstringio_buf.closed

    def read(self, sz: int) -> bytes:
        return self.cstringio_buf.read(sz)

    def getvalue(self) -> bytes:
        """
        The whole message, as C{TMemoryBuffer}'s answer, for processors
        written against Apache's servers, which hand them one.
        """
        return self.cstringio_buf.getvalue()

    def cstringio_refill(self, partialread: bytes, reqlen: int) -> BytesIO:
        raise EOFError()  # A whole message is all there is.


class _Chunks(TTransportBase):
    """
    Collects what a protocol writes, for joining once.
    """

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, buf: bytes) -> None:
        self.parts.append(buf)


_I32 = struct.Struct(">i")
_HEADER = struct.Struct(">iI")
# A strict binary message's version, type and name length.
_START = struct.Struct(">HxBi")
_VERSION_1 = -0x7FFF0000  # 0x80010000 as an i32
#: Encoders (see Codec.encoder) kept per codec.
_MAX_HEADS = 4096

# A field header (type, id) and a string's length.
_FIELD = struct.Struct(">bhi")
#: The media type of a message in each protocol, as Apache's HTTP clients
#: and servers send and expect it (HTTP's C{Content-Type} and C{Accept}).
CONTENT_TYPES: Final = {
    "binary": "application/x-thrift",
    "compact": "application/x-thrift",
    "json": "application/vnd.apache.thrift.json",
}

#: Strings from this size up are encoded around the C encoder, which copies
#: them a byte at a time: past 1 KiB that costs more than going around it
#: (a 4 KiB result: 5.1 us against 2.4 us; 64 bytes: 0.8 against 2.3).
_BIG_STRING = 1024
#: Compact's type of a string field.
_COMPACT_BINARY = 8


def varint(value: int) -> bytes:
    """
    C{value}, not negative, as a compact varint: 7 bits a byte, low first.
    """
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _compactStart(mtype: int, seqid: int) -> bytes:
    """
    A compact message header up to the name: the protocol id, the version
    (1, in the low 5 bits) and type (the high 3), and the seqid as a varint
    of its 32-bit pattern, as Apache's C{TCompactProtocol} writes them.
    """
    if seqid < 0:
        seqid += 0x100000000
    kind = mtype << 5 | 1
    # Seqids below 2 ** 21 (1 to 3 bytes) are spared the loop.
    if seqid < 0x80:
        return bytes((0x82, kind, seqid))
    if seqid < 0x4000:
        return bytes((0x82, kind, seqid & 0x7F | 0x80, seqid >> 7))
    if seqid < 0x200000:
        return bytes((0x82, kind, seqid & 0x7F | 0x80, seqid >> 7 & 0x7F | 0x80, seqid >> 14))
    return bytes((0x82, kind)) + varint(seqid)


def readVarint(data: bytes, at: int) -> tuple[int, int]:
    """
    The varint at C{data[at:]} and where it ends, or C{(0, -1)} for one that
    runs past the end or is longer than an i32's 5 bytes.
    """
    value = shift = 0
    for index in range(at, min(at + 5, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, index + 1
        shift += 7
    return 0, -1


def _compactHeader(message: bytes, maxName: int) -> tuple[str, int, int, int] | None:
    """
    A compact message's name, type and seqid, and where its body starts;
    C{None} for any header but a plain one (Apache's reader then reads it,
    or refuses it, as it always has).

    The header: the protocol id 0x82; the version (1) in the low 5 bits of
    a byte whose high 3 are the type; the seqid's 32-bit pattern as a
    varint; the name as a varint length and UTF-8 bytes.  Varints are 7
    bits a byte, low first, the high bit set on all but the last byte.
    """
    try:
        if message[0] != 0x82 or message[1] & 0x1F != 1:
            return None
        seqid, at = message[2], 3
        if seqid > 0x7F:
            # Read inline, not by a function: most seqids are 2 or 3 bytes.
            seqid &= 0x7F
            shift = 7
            byte = message[3]
            at = 4
            while byte > 0x7F:
                if shift == 28:
                    return None  # Over 5 bytes: no i32.
                seqid |= (byte & 0x7F) << shift
                shift += 7
                byte = message[at]
                at += 1
            seqid |= byte << shift
            if seqid > 0xFFFFFFFF:
                return None
            if seqid > 0x7FFFFFFF:
                seqid -= 0x100000000
        length = message[at]
        at += 1
        if length > 0x7F:  # A name of 128 bytes or more: rare.
            length, at = readVarint(message, at - 1)
    except IndexError:  # Cut short.
        return None
    end = at + length
    if at < 0 or length > maxName or end > len(message):
        return None
    return message[at:end].decode("utf-8"), message[1] >> 5, seqid, end


#: A string field taken out of a struct for L{Codec._encodeAround}: its
#: attribute, its value, and its encoding.
_Moved = tuple[str, Any, tuple[bytes, ...]]


def _bigString(value: object) -> bytes | None:
    if not isinstance(value, str | bytes) or len(value) < _BIG_STRING:
        return None
    return value.encode("utf-8") if isinstance(value, str) else value


def _binaryMoved(body: Any, strings: tuple[tuple[int, str], ...]) -> list[_Moved]:
    """
    The big strings of C{body} (of its string fields C{strings}) and their
    binary encoding.
    """
    moved: list[_Moved] = []
    for fid, attribute in strings:
        value = getattr(body, attribute, None)
        data = _bigString(value)
        if data is not None:
            moved.append((attribute, value, (_FIELD.pack(TType.STRING, fid, len(data)), data)))
    return moved


def _compactMoved(body: Any, spec: Any) -> list[_Moved]:
    """
    The big strings of C{body} that follow all its other fields set, and
    their compact encoding; none if another field follows one.
    """
    moved: list[_Moved] = []
    last = 0  # The id of the field written before.
    for field in spec:
        value = None if field is None else getattr(body, field[2], None)
        if value is None:
            continue
        fid = field[0]
        data = _bigString(value) if field[1] == TType.STRING else None
        if data is not None:
            step = fid - last
            head = (bytes((step << 4 | _COMPACT_BINARY,)) if 0 < step <= 15
                    else bytes((_COMPACT_BINARY,)) + varint((fid << 1) ^ (fid >> 31)))
            moved.append((field[2], value, (head, varint(len(data)), data)))
        elif moved:
            return []  # Its id would be written as a step from a moved one.
        last = fid
    return moved


def _binaryStart(message: bytes | bytearray,
                 maxName: int) -> tuple[str, int, int, BytesIO] | None:
    """
    The header of a strict binary message -- 0x8001, a byte not read, the
    type byte, the name as an i32 length and UTF-8 bytes, then the i32
    seqid -- as (name, type, seqid, the message in a buffer positioned at
    its body); C{None} for a message not so (old non-strict binary, cut
    short) or whose name is over C{maxName}.  The twin of
    C{txthrift._speedups.binaryStart}, used where that was not built.

    @raise UnicodeDecodeError: for a name that is not UTF-8.
    """
    if len(message) < 12:
        return None
    version, mtype, length = _START.unpack_from(message)
    end = 8 + length
    if version != 0x8001 or not 0 <= length <= maxName or end + 4 > len(message):
        return None
    (seqid,) = _I32.unpack_from(message, end)
    name = message[8:end].decode("utf-8")
    body = BytesIO(message)
    body.seek(end + 4)
    return name, mtype, seqid, body


try:
    from ._speedups import binaryStart
except ImportError:  # pragma: no cover - built without a C compiler
    binaryStart = _binaryStart


binaryMessage: Callable[[bytes, int, Any, tuple[Any, ...]], bytes | None] | None
compactMessage: Callable[[int, int, bytes, Any, tuple[Any, ...]], bytes | None] | None
try:
    from ._speedups import binaryMessage, compactMessage
except ImportError:  # pragma: no cover - built without a C compiler
    binaryMessage = compactMessage = None  # Apache's coder writes every body.

#: The field types C{binaryMessage} and C{compactMessage} write: bool, byte,
#: double, i16, i32, i64 and string.
_FLAT = frozenset((TType.BOOL, TType.BYTE, TType.DOUBLE, TType.I16, TType.I32, TType.I64,
                   TType.STRING))


def _isFlat(spec: Any) -> bool:
    """
    Whether every field of a C{thrift_spec} is of a type C{binaryMessage}
    and C{compactMessage} write.
    """
    return all(field is None or field[1] in _FLAT for field in spec)


def _stringFields(spec: Any) -> tuple[tuple[int, str], ...]:
    return tuple((field[0], field[2]) for field in spec
                 if field is not None and field[1] == TType.STRING)


class Codec:
    """
    Whole messages of one protocol, with limits applied when reading.

    @ivar factory: the Apache protocol factory reading messages.
    @ivar outputFactory: the one writing them; the same unless given.
    """

    def __init__(self, protocol: str, limits: Limits | None = None, *,
                 factory: TProtocolFactory | None = None,
                 outputFactory: TProtocolFactory | None = None) -> None:
        """
        @param protocol: C{"binary"}, C{"compact"} or C{"json"}.
        @param factory: an Apache protocol factory to use instead of the one
            C{protocol} and C{limits} choose (Apache's TTwisted API takes
            factories).
        """
        self.protocol = protocol
        limits = limits or Limits()
        #: The largest message either end should accept.
        self.maxMessage = limits.max_frame_size
        self.factory = factory or protocolFactory(protocol, limits)
        self.outputFactory = outputFactory or self.factory
        #: Whether the decoder refuses messages deeper than C{max_depth}
        #: itself (our JSON one does), so none need walking first.
        self.checksDepth = factory is None and protocol == "json"
        # Our own binary and compact codecs take a shortcut per message: they
        # read and write the message header themselves, and reuse one
        # protocol object each way instead of building two per message.
        # Binary protocol objects keep no state between calls, and the C
        # coder keeps none on a protocol, so sharing them is safe as long as
        # each use finishes before the next starts, which it does: a body is
        # read or written whole before anything else runs.  Compact protocol
        # objects do keep state when Python reads or writes through them (and
        # a failure leaves it broken), so compact takes the shortcut only
        # where the C coder is, and gives each body Python codes (one without
        # a thrift_spec: an exception) a protocol of its own.
        compact = protocol == "compact" and decodeCompact is not None
        self._fast = factory is None and outputFactory is None and (
            protocol == "binary" or compact)
        self._compact = self._fast and compact
        # Our own JSON protocol takes a like shortcut: a whole message read
        # with one parse into one reader, and written with one join.
        self._json = JSONMessages(self.factory) if outputFactory is None and isinstance(
            self.factory, JSONProtocolFactory) else None
        # What encoder() made, by name, type and body class.
        self._encoders: dict[tuple[str, int, type], Callable[[int, Any], bytes]] = {}
        #: Encoders from L{encoder} that this codec's users keep, by keys of
        #: their own (a server's dispatcher: by method), to find one per
        #: message in one look-up; they live as long as the codec.
        self.kept: dict[object, Callable[[int, Any], bytes]] = {}
        # Apache's C coder, called on whole structs (see _thriftinternals).
        coders = (decodeCompact, encodeCompact) if compact else (decodeBinary, encodeBinary)
        self._decode, self._encode = coders if self._fast else (None, None)
        #: Whether messages are strict binary, read through this codec's
        #: shortcut (L{readerAt} reads past headers read elsewhere).
        self.plainBinary = self._fast and not self._compact
        if self._fast:
            self._maxName = limits.string_limit
            # One input buffer, pointed at each message in turn.
            self._input = _MessageInput(BytesIO())
            self._reader = self.factory.getProtocol(self._input)
            self._chunks = _Chunks()
            self._writer = self.outputFactory.getProtocol(self._chunks)
            # What the C coder is told about a struct class: [class, spec].
            self._typeArgs: dict[type, list[Any] | None] = {}

    def reader(self, message: bytes) -> TProtocolBase:
        """
        A protocol positioned at the start of C{message}.
        """
        return self.factory.getProtocol(TMemoryBuffer(message))

    def readHeader(self, message: bytes) -> tuple[TProtocolBase, str, int, int]:
        """
        Read a message's header.

        @return: a protocol positioned after it, the name, the message type
            and the sequence id.  The protocol may be shared, good until the
            next call to this codec: read the body at once, or L{detach} it.
        @raise Exception: whatever the protocol raises for a bad header.
        """
        if self._compact:
            header = _compactHeader(message, self._maxName)
            if header is not None:
                name, mtype, seqid, start = header
                buffer = BytesIO(message)
                buffer.seek(start)
                self._input.cstringio_buf = buffer
                return self._reader, name, mtype, seqid
        elif self._fast:
            strict = binaryStart(message, self._maxName)
            if strict is not None:
                name, mtype, seqid, self._input.cstringio_buf = strict
                return self._reader, name, mtype, seqid
        if self._json is not None:
            return self._json.readHeader(message)
        iprot = self.reader(message)
        name, mtype, seqid = iprot.readMessageBegin()
        return iprot, name, mtype, seqid

    def detach(self, iprot: TProtocolBase) -> TProtocolBase:
        """
        C{iprot}, from L{readHeader}, as a protocol of its own at the same
        position: one that stays good after the next message is read, for
        readers that read later or elsewhere (a processor in a thread).
        """
        if self._json is not None:
            return self._json.detach(iprot)
        if not self._fast or iprot is not self._reader:
            return iprot  # Made for this message alone already.
        return self.factory.getProtocol(_MessageInput(self._input.cstringio_buf))

    def readBody(self, iprot: TProtocolBase, body: Any) -> None:
        """
        Read the rest of a message, whose header C{readHeader} read, into
        C{body} (a generated struct, or an exception with a C{read} method).
        """
        decode = self._decode
        if decode is not None:
            typeArgs = self._typeArgs.get(type(body)) or self._typeArgsOf(type(body))
            if typeArgs is not None:
                # What the generated read() does first, without its checks.
                decode(body, iprot, typeArgs)
                return
        if self._json is not None:
            self._json.readBody(iprot, body)
            return
        if self._compact:
            iprot = self.detach(iprot)  # Python reads it: a protocol of its own.
        body.read(iprot)
        iprot.readMessageEnd()

    def readerAt(self, message: bytes, start: int) -> TProtocolBase:
        """
        L{readHeader}'s protocol, for a strict binary message whose header
        ends at C{start} (read by whoever cut the message), on a
        L{plainBinary} codec: shared, as L{readHeader}'s is.
        """
        buffer = BytesIO(message)
        buffer.seek(start)
        self._input.cstringio_buf = buffer
        return self._reader

    def readBodyAt(self, message: bytes, start: int, body: Any) -> None:
        """
        L{readerAt} and L{readBody} in one, for a generated struct C{body}.
        """
        buffer = BytesIO(message)
        buffer.seek(start)
        self._input.cstringio_buf = buffer
        decode = self._decode
        typeArgs = None if decode is None else (
            self._typeArgs.get(type(body)) or self._typeArgsOf(type(body)))
        if decode is None or typeArgs is None:  # No C coder, or no thrift_spec.
            body.read(self._reader)
            return
        decode(body, self._reader, typeArgs)

    def _typeArgsOf(self, cls: type) -> list[Any] | None:
        try:
            return self._typeArgs[cls]
        except KeyError:
            spec = getattr(cls, "thrift_spec", None)
            typeArgs = self._typeArgs[cls] = None if spec is None else [cls, spec]
            return typeArgs

    def encode(self, name: str, mtype: int, seqid: int, body: _Writable) -> bytes:
        """
        Encode a whole message around C{body} (an args or result struct or an
        exception).
        """
        cls = type(body)
        encoder = self._encoders.get((name, mtype, cls)) or self.encoder(name, mtype, cls)
        return encoder(seqid, body)

    def encoder(self, name: str, mtype: int, cls: type) -> Callable[[int, Any], bytes]:
        """
        L{encode} for messages named C{name} of type C{mtype} around bodies of
        class C{cls}, as a function of the seqid and the body: what does not
        change from one such message to the next (the header but its seqid,
        how the C coder is told of C{cls}, its string fields) worked out
        once, for callers encoding many alike (a server's replies to one
        method).
        """
        encoder: Callable[[int, Any], bytes]
        if self._fast:
            encoder = self._fastEncoder(name, mtype, cls)
        elif self._json is not None:
            encoder = partial(self._json.encode, name, mtype)
        else:
            encoder = partial(encodeThrough, self.outputFactory, name, mtype)
        if len(self._encoders) < _MAX_HEADS and mtype != TMessageType.EXCEPTION:
            # Names of calls and replies are the service's own: few.
            self._encoders[name, mtype, cls] = encoder
        return encoder

    def _fastEncoder(self, name: str, mtype: int, cls: type) -> Callable[[int, Any], bytes]:
        """
        L{encoder} for our own binary and compact codecs: the header in two
        parts around the body, one made here and one for the seqid (binary
        puts it last, compact between the type and the name), and the body
        by the C coder where it can; a message of strings and numbers by
        C{binaryMessage} or C{compactMessage}, whole.
        """
        encoded = name.encode("utf-8")
        compact = self._compact
        fixed = (varint(len(encoded)) + encoded if compact
                 else _HEADER.pack(_VERSION_1 | mtype, len(encoded)) + encoded)
        pack = _I32.pack
        typeArgs = self._typeArgsOf(cls)
        encode = self._encode
        if typeArgs is None or encode is None:
            def inPython(seqid: int, body: Any) -> bytes:
                if compact:
                    return self._encodeInPython(_compactStart(mtype, seqid), fixed, body)
                return self._encodeInPython(fixed, pack(seqid), body)
            return inPython
        strings = _stringFields(typeArgs[1])
        join = b"".join

        def inC(seqid: int, body: Any) -> bytes:
            if compact:
                first, second = _compactStart(mtype, seqid), fixed
            else:
                first, second = fixed, pack(seqid)
            for field in strings:
                value = getattr(body, field[1], None)
                if value is not None and len(value) >= _BIG_STRING:
                    return join((first, second, *self._encodeAround(body, typeArgs, strings)))
            return join((first, second, encode(body, typeArgs)))
        if binaryMessage is None or compactMessage is None or not _isFlat(typeArgs[1]):
            return inC
        spec = typeArgs[1]

        # A struct of strings and numbers (a call's arguments, a reply's
        # result, most often) written whole in one pass, header and all;
        # what it does not write, Apache's coder does.
        def flat(seqid: int, body: Any) -> bytes:
            message = binaryMessage(fixed, seqid, body, spec)
            return inC(seqid, body) if message is None else message

        def flatCompact(seqid: int, body: Any) -> bytes:
            message = compactMessage(mtype, seqid, fixed, body, spec)
            return inC(seqid, body) if message is None else message
        return flatCompact if compact else flat

    def _encodeInPython(self, first: bytes, second: bytes, body: _Writable) -> bytes:
        """
        A message whose body the C coder cannot write (an exception, a struct
        without a C{thrift_spec}), after the header parts L{encode} made.
        """
        chunks = self._chunks
        chunks.parts = [first, second]
        # A compact protocol's state, should writing fail, would break the
        # next message: a protocol of its own each time.
        writer = self.outputFactory.getProtocol(chunks) if self._compact else self._writer
        try:
            body.write(writer)
            return b"".join(chunks.parts)
        finally:
            chunks.parts = []

    def _encodeAround(self, body: Any, typeArgs: list[Any],
                      strings: tuple[tuple[int, str], ...]) -> list[bytes]:
        """
        A struct's encoding in parts, its big strings written here and the
        rest by the C encoder, which copies big values slowly (each into a
        freshly grown buffer: 1.4 ms for 1 MiB, against 0.02 ms for a copy).

        The big ones go after the others, before the struct's stop byte:
        anywhere in binary, which does not order fields; in compact, which
        writes each field's id as a step from the one before, only where
        they are last already (a result's success, a lone argument).
        """
        moved = (_compactMoved(body, typeArgs[1]) if self._compact
                 else _binaryMoved(body, strings))
        encode: Any = self._encode
        if not moved:
            return [encode(body, typeArgs)]
        try:
            for attribute, _, _ in moved:
                setattr(body, attribute, None)
            rest = encode(body, typeArgs)
        finally:
            for attribute, value, _ in moved:
                setattr(body, attribute, value)
        return [rest[:-1], *(part for _, _, parts in moved for part in parts), rest[-1:]]

    def encodeException(self, name: str, seqid: int, kind: int, message: str) -> bytes:
        return self.encode(name, TMessageType.EXCEPTION, seqid,
                           TApplicationException(kind, message))

    def replyWriter(self) -> TProtocolBase:
        """
        A protocol for a processor to write its reply into; read the reply
        back with C{writer.trans.getvalue()}.
        """
        return restartingEachMessage(self.outputFactory.getProtocol(_ReplyBuffer()))
