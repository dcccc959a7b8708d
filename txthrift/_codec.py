"""
The message codec: one Thrift protocol's encoding of whole messages.

Binary and compact go through Apache's protocol classes, C-accelerated
where the C{thrift} package ships its extension; JSON through our own
(L{txthrift._json}), on the standard library's C JSON scanner; all over
in-memory buffers.
Nothing here touches a socket or the reactor.
"""

from __future__ import annotations

import struct
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
from thrift.transport.TTransport import TMemoryBuffer, TTransportBase

from ._json import JSONProtocolFactory
from ._limits import Limits

__all__ = ["Codec", "accelerated", "protocolFactory"]


def _hasExtension() -> bool:
    try:
        from thrift.protocol import fastbinary  # noqa: F401
    except ImportError:
        return False
    return True


#: Whether the C{thrift} package's C codec is importable here.
accelerated: Final = _hasExtension()


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
        self._buffer.seek(0)
        self._buffer.truncate()


class _MessageInput(TMemoryBuffer):
    """
    An input buffer pointed at one message after another, so that one
    protocol object reads them all.
    """

    # A plain attribute here, not the base class's property: the C decoder
    # reads it once per struct.  Codec.readHeader sets it with _buffer.
    cstringio_buf: BytesIO = None  # type: ignore[assignment]


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


_subclasses: dict[tuple[type, str], type] = {}


def _override(protocol: TProtocolBase, name: str, method: Any) -> None:
    """
    Give one protocol object another C{name} method by moving it to a
    cached subclass of its class.

    A subclass, not an instance attribute: protocol decorators (as
    C{TMultiplexedProcessor}'s) build a class from the instance's dict, where
    a function would become a method and shadow the decorator's own.
    """
    cls = type(protocol)
    sub = _subclasses.get((cls, name))
    if sub is None:
        sub = _subclasses[cls, name] = type(cls.__name__, (cls,), {name: method})
    protocol.__class__ = sub


def _restartingWriteMessageBegin(self: Any, name: str, ttype: int, seqid: int) -> None:
    # Write each message over any partial one before it.
    self.trans.restart()
    for owner in type(self).__mro__:
        if vars(owner).get("writeMessageBegin") is _restartingWriteMessageBegin:
            super(owner, self).writeMessageBegin(name, ttype, seqid)  # type: ignore[arg-type]
            return


def _storedReadMessageBegin(self: Any) -> tuple[str, int, int]:
    header: tuple[str, int, int] = self._txthriftHeader
    return header


def withStoredHeader(iprot: TProtocolBase, header: tuple[str, int, int]) -> TProtocolBase:
    """
    Make C{iprot}, whose message header has been read, return C{header}
    when it is read again (by a processor).
    """
    _override(iprot, "readMessageBegin", _storedReadMessageBegin)
    iprot._txthriftHeader = header
    return iprot


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
        if self._fast:
            self._maxName = limits.string_limit
            # One input buffer, pointed at each message in turn.
            self._input = _MessageInput(b"")
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
                source = self._input
                source._buffer = source.cstringio_buf = buffer
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
        source = _MessageInput(b"")
        source._buffer = source.cstringio_buf = self._input._buffer
        return self.factory.getProtocol(source)

    def readBody(self, iprot: TProtocolBase, body: Any) -> None:
        """
        Read the rest of a message, whose header C{readHeader} read, into
        C{body} (a generated struct, or an exception with a C{read} method).
        """
        if self._fast and iprot._fast_decode is not None:
            typeArgs = self._typeArgs.get(type(body)) or self._typeArgsOf(type(body))
            if typeArgs is not None:
                # What the generated read() does first, without its checks.
                iprot._fast_decode(body, iprot, typeArgs)
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
            if typeArgs is not None and writer._fast_encode is not None:
                strings = self._stringFields.get(typeArgs[0])
                if strings is None:
                    strings = self._stringFields[typeArgs[0]] = _stringFields(typeArgs[1])
                for field in strings:
                    value = getattr(body, field[1], None)
                    if value is not None and len(value) >= _BIG_STRING:
                        return b"".join((head, _I32.pack(seqid),
                                         *self._encodeAround(body, typeArgs, strings)))
                return b"".join((head, _I32.pack(seqid), writer._fast_encode(body, typeArgs)))
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
            rest = self._writer._fast_encode(body, typeArgs)
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
        oprot = self.outputFactory.getProtocol(_ReplyBuffer())
        _override(oprot, "writeMessageBegin", _restartingWriteMessageBegin)
        return oprot
