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
from dataclasses import dataclass
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

from ._json import JSONProtocolFactory
from ._limits import Limits
from ._thriftinternals import (
    decodeBinary,
    encodeBinary,
    restartingEachMessage,
    withStoredHeader,
)

__all__ = ["Acceleration", "Codec", "accelerated", "acceleration", "protocolFactory",
           "withStoredHeader"]


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
#: Encoded headers kept per codec.
_MAX_HEADS = 4096

# A field header (type, id) and a string's length.
_FIELD = struct.Struct(">bhi")
#: Strings from this size up are encoded around the C encoder.
_BIG_STRING = 256 * 1024


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
        # Our own binary codec takes a shortcut per message: it reads and
        # writes the message header itself, and reuses one protocol object
        # each way instead of building two per message.  Binary protocol
        # objects keep no state between calls, so sharing them is safe as long
        # as each use finishes before the next starts, which it does: a body
        # is read or written whole before anything else runs.
        self._fast = factory is None and outputFactory is None and protocol == "binary"
        # Apache's C coder, called on whole structs (see _thriftinternals).
        self._decode = decodeBinary if self._fast else None
        self._encode = encodeBinary if self._fast else None
        if self._fast:
            self._maxName = limits.string_limit
            # One input buffer, pointed at each message in turn.
            self._input = _MessageInput(BytesIO())
            self._reader = self.factory.getProtocol(self._input)
            self._chunks = _Chunks()
            self._writer = self.outputFactory.getProtocol(self._chunks)
            # Encoded message headers (without the seqid) by name and type.
            self._heads: dict[tuple[str, int], bytes] = {}
            # What the C coder is told about a struct class: [class, spec].
            self._typeArgs: dict[type, list[Any] | None] = {}
            # Each struct class's string fields: (field id, attribute).
            self._stringFields: dict[type, tuple[tuple[int, str], ...]] = {}

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
        if self._fast and len(message) >= 12:
            # Strict binary: 0x8001, a zero byte, the type byte, the name as
            # an i32 length and UTF-8 bytes, then the i32 seqid.
            version, mtype, length = _START.unpack_from(message)
            end = 8 + length
            if version == 0x8001 and 0 <= length <= self._maxName and end + 4 <= len(message):
                name = message[8:end].decode("utf-8")
                (seqid,) = _I32.unpack_from(message, end)
                buffer = BytesIO(message)
                buffer.seek(end + 4)
                self._input.cstringio_buf = buffer
                return self._reader, name, mtype, seqid
        iprot = self.reader(message)
        name, mtype, seqid = iprot.readMessageBegin()
        return iprot, name, mtype, seqid

    def detach(self, iprot: TProtocolBase) -> TProtocolBase:
        """
        C{iprot}, from L{readHeader}, as a protocol of its own at the same
        position: one that stays good after the next message is read, for
        readers that read later or elsewhere (a processor in a thread).
        """
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
        body.read(iprot)
        iprot.readMessageEnd()

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
        if self._fast:
            head = self._heads.get((name, mtype))
            if head is None:
                encoded = name.encode("utf-8")
                head = _HEADER.pack(_VERSION_1 | mtype, len(encoded)) + encoded
                if len(self._heads) < _MAX_HEADS and mtype != TMessageType.EXCEPTION:
                    # Names of calls and replies are the service's own: few.
                    self._heads[name, mtype] = head
            writer = self._writer
            typeArgs = self._typeArgs.get(type(body)) or self._typeArgsOf(type(body))
            encode = self._encode
            if typeArgs is not None and encode is not None:
                strings = self._stringFields.get(typeArgs[0])
                if strings is None:
                    strings = self._stringFields[typeArgs[0]] = _stringFields(typeArgs[1])
                for field in strings:
                    value = getattr(body, field[1], None)
                    if value is not None and len(value) >= _BIG_STRING:
                        return b"".join((head, _I32.pack(seqid),
                                         *self._encodeAround(body, typeArgs, strings)))
                return b"".join((head, _I32.pack(seqid), encode(body, typeArgs)))
            chunks = self._chunks
            chunks.parts = [head, _I32.pack(seqid)]
            try:
                body.write(writer)
                return b"".join(chunks.parts)
            finally:
                chunks.parts = []
        buffer = TMemoryBuffer()
        oprot = self.outputFactory.getProtocol(buffer)
        oprot.writeMessageBegin(name, mtype, seqid)
        body.write(oprot)
        oprot.writeMessageEnd()
        return buffer.getvalue()

    def _encodeAround(self, body: Any, typeArgs: list[Any],
                      strings: tuple[tuple[int, str], ...]) -> list[bytes]:
        """
        A struct's encoding in parts, its big strings written here and the
        rest by the C encoder, which copies big values slowly (each into a
        freshly grown buffer: 1.4 ms for 1 MiB, against 0.02 ms for a copy).

        The binary protocol does not order fields, so the big ones go after
        the others, before the struct's stop byte.
        """
        tail: list[bytes] = []
        taken: list[tuple[str, Any]] = []
        try:
            for fid, attribute in strings:
                value = getattr(body, attribute, None)
                if value is None or len(value) < _BIG_STRING or not isinstance(value, str | bytes):
                    continue
                data = value.encode("utf-8") if isinstance(value, str) else value
                tail += [_FIELD.pack(TType.STRING, fid, len(data)), data]
                taken.append((attribute, value))
                setattr(body, attribute, None)
            encode: Any = self._encode
            rest = encode(body, typeArgs)
        finally:
            for attribute, value in taken:
                setattr(body, attribute, value)
        return [rest[:-1], *tail, rest[-1:]]

    def encodeException(self, name: str, seqid: int, kind: int, message: str) -> bytes:
        return self.encode(name, TMessageType.EXCEPTION, seqid,
                           TApplicationException(kind, message))

    def replyWriter(self) -> TProtocolBase:
        """
        A protocol for a processor to write its reply into; read the reply
        back with C{writer.trans.getvalue()}.
        """
        return restartingEachMessage(self.outputFactory.getProtocol(_ReplyBuffer()))
