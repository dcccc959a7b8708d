"""
THeader: the framing of Apache's C{THeaderTransport} and fbthrift, with
key/value headers and payload transforms around a binary or compact
message; a codec for one connection that opens requests and seals replies
(L{ServerHeaders}), or seals calls and opens replies (L{ClientHeaders}).

The wire format, after the usual 4-byte frame length::

    u16 0x0FFF magic | u16 flags | i32 seqid | u16 header length / 4
    header: varint protocol id (0 binary, 2 compact)
            varint transform count, varint transform ids (1: zlib)
            info headers: varint type (1: key/value), varint count,
                          count x (varint-length key, varint-length value)
            zero padding to the header length
    payload: the message, through the transforms in order (read: reversed)

A request's headers reach its handler (L{txthrift.currentCall}); a reply
goes back with the request's protocol, flags and transforms and whatever
headers the handler set.  Nothing here knows of connections.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from thrift.protocol.TProtocol import TProtocolBase

from ._codec import Codec, readVarint, varint
from ._framing import HEADER_PROTOCOLS
from ._limits import Limits
from ._scanning import FrameError

__all__ = ["ClientHeaders", "Envelope", "HeaderError", "ServerHeaders", "UnknownTransform",
           "openFrame", "sealFrame", "transformIds"]

MAGIC: Final = 0x0FFF
ZLIB: Final = 1
_KEY_VALUE = 1
_FIXED = struct.Struct(">HHiH")
_LENGTH = struct.Struct(">i")
_HEAD = struct.Struct(">iHHiH")
#: A frame saying nothing but its protocol: length, magic, flags 0, seqid,
#: header length (1 word), protocol id, no transforms, padding.
_PLAIN_FRAME = struct.Struct(">iHxxiHBxxx")
_PLAIN_OVERHEAD = _PLAIN_FRAME.size - 4
_MAGIC_NO_FLAGS = b"\x0f\xff\x00\x00"
#: The bytes of a frame before its header: frame length, magic, flags,
#: seqid, header length.
_BEFORE_HEADER = _HEAD.size
_IDS: Final = {name: number for number, name in HEADER_PROTOCOLS.items()}
_NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})
_TRANSFORM_NAMES: Final = {ZLIB: "zlib"}


def transformIds(names: Sequence[str]) -> tuple[int, ...]:
    """
    The ids of THeader transforms named as C{connect} takes them.

    @raise ValueError: for a name of none.
    """
    known = {name: number for number, name in _TRANSFORM_NAMES.items()}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown THeader transform {unknown[0]!r}; known:"
                         f" {', '.join(sorted(known))}")
    return tuple(known[name] for name in names)


class HeaderError(FrameError):
    """
    A THeader frame that cannot be read: the connection is refused.
    """


class UnknownTransform(HeaderError):
    """
    A frame whose payload went through a transform we do not know: it
    cannot be read, nor told a oneway call or not, so nobody is answered
    (a reply the peer does not expect would be taken for the next one).
    """


class Envelope:
    """
    What a THeader frame says around its message.

    @ivar headers: its key/value headers (read-only; UTF-8 text).
    """

    __slots__ = ("_replyHeaders", "flags", "headers", "seqid", "transforms")

    def __init__(self, seqid: int, flags: int, transforms: tuple[int, ...],
                 headers: Mapping[str, str]) -> None:
        self.seqid = seqid
        self.flags = flags
        self.transforms = transforms
        self.headers = headers
        self._replyHeaders: dict[str, str] | None = None

    @property
    def replyHeaders(self) -> dict[str, str]:
        """
        Headers to send back with the reply, set by the handler.
        """
        if self._replyHeaders is None:
            self._replyHeaders = {}
        return self._replyHeaders


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _infoHeaders(frame: bytes, at: int, end: int, limits: Limits) -> Mapping[str, str]:
    """
    The key/value headers of a header from C{at} to C{end}; unknown kinds of
    info header, and the padding, end them (as Apache's reader does).
    """
    found: dict[str, str] = {}
    most, longest = limits.container_limit, limits.string_limit
    while at < end:
        kind, at = readVarint(frame, at)
        if at < 0 or kind != _KEY_VALUE:
            break
        count, at = readVarint(frame, at)
        if at < 0 or len(found) + count > most:
            raise HeaderError(f"a THeader frame has more headers than {most}"
                              " (max_container_length)")
        for _ in range(count):
            pair = []
            for _part in range(2):
                size, at = readVarint(frame, at)
                if at < 0 or at + size > end:
                    raise HeaderError("a THeader header runs past the end of the header")
                if size > longest:
                    raise HeaderError(f"a THeader header of {size} bytes is over"
                                      f" max_string_length {longest}")
                pair.append(_text(frame[at:at + size]))
                at += size
            found[pair[0]] = pair[1]
    return MappingProxyType(found) if found else _NO_HEADERS


def openFrame(frame: bytes, limits: Limits) -> tuple[Envelope | None, bytes]:
    """
    The envelope and message of a THeader frame (what follows its length).

    @return: C{None} as the envelope when it says nothing beyond the
        protocol (no flags, transforms or headers: the common case).
    @raise HeaderError: for a frame that cannot be read.
    @raise UnknownTransform: for a payload whose transform we do not know.
    """
    if len(frame) < _FIXED.size + 2:
        raise HeaderError(f"a THeader frame of {len(frame)} bytes is shorter than its header")
    magic, flags, seqid, words = _FIXED.unpack_from(frame)
    if magic != MAGIC:
        raise HeaderError(f"a frame starting 0x{magic:04x} on a THeader connection has no"
                          " THeader magic (0x0fff)")
    end = _FIXED.size + 4 * words
    if end > len(frame):
        raise HeaderError(f"a THeader header of {end} bytes is longer than its frame")
    _, at = readVarint(frame, _FIXED.size)  # the protocol id: the connection checks it
    count, at = readVarint(frame, at) if at >= 0 else (0, -1)
    if at < 0 or at + count > end:
        raise HeaderError("a THeader header is cut short")
    transforms: tuple[int, ...] = ()
    if count:
        transforms = tuple(frame[at:at + count])  # ids below 128: one byte each
        at += count
        unknown = [t for t in transforms if t not in _TRANSFORM_NAMES]
        if unknown:
            raise UnknownTransform(f"a THeader frame's payload went through transform"
                                   f" {unknown[0]}, which is not zlib (1)")
    headers = _infoHeaders(frame, at, end, limits) if at < end and frame[at] else _NO_HEADERS
    message = frame[end:]
    for _ in transforms:
        message = _inflate(message, limits.max_frame_size)
    if not (flags or transforms or headers):
        return None, message
    return Envelope(seqid, flags, transforms, headers), message


def _inflate(data: bytes, most: int) -> bytes:
    """
    A zlib payload inflated, never past C{most} bytes (a bomb is refused
    once it has grown that far, not once it is whole).
    """
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, most + 1)
    except zlib.error as error:
        raise HeaderError(f"a zlib THeader payload does not inflate: {error}") from None
    if len(out) > most or inflater.unconsumed_tail:
        raise HeaderError(f"a zlib THeader payload inflates to more than max_frame_size {most}")
    return out


def sealFrame(message: bytes, seqid: int, flags: int, protocolId: int,
              transforms: tuple[int, ...], headers: Mapping[str, str] | None) -> bytes:
    """
    A whole THeader frame, its length first, around C{message}.
    """
    if transforms:
        for _ in transforms:
            message = zlib.compress(message)
        header = varint(protocolId) + varint(len(transforms)) + bytes(transforms)
    else:
        header = bytes((protocolId, 0))  # ids below 128: one byte each
    if headers:
        pairs = [varint(_KEY_VALUE), varint(len(headers))]
        for key, value in headers.items():
            for part in (key, value):
                data = part if isinstance(part, bytes) else str(part).encode("utf-8")
                pairs += (varint(len(data)), data)
        header += b"".join(pairs)
    header += bytes(-len(header) % 4)
    return b"".join((_HEAD.pack(_BEFORE_HEADER - 4 + len(header) + len(message), MAGIC, flags,
                                seqid, len(header) // 4), header, message))


def _unwrapped(frame: bytes) -> bytes:
    """
    The THeader frame a frame holds, its length checked and taken off.
    """
    if len(frame) < 4 or _LENGTH.unpack_from(frame)[0] != len(frame) - 4:
        raise HeaderError("a frame holds no THeader frame of the frame's length")
    return frame[4:]


class _Headers(Codec):
    """
    A L{Codec} for one THeader connection: it reads the message in a
    THeader frame, the envelope around it kept in L{envelope}; the rest is
    the codec it was made from, whose state it shares (as the connections
    sharing a codec do).  What it encodes is a bare message, sealed into a
    frame by L{seal} once its size has been checked.

    @ivar envelope: what the frame last read says beyond its protocol, or
        C{None}.
    @ivar payload: the message of the frame last read.
    """

    def __init__(self, codec: Codec, limits: Limits, *, inFrames: bool = False) -> None:
        """
        @param inFrames: whether each THeader frame comes inside a frame of
            its own, its own length included (C{THeaderProtocol} over
            C{TFramedTransport}), not as the frame itself.
        """
        vars(self).update(vars(codec))
        self._limits = limits
        self._inFrames = inFrames
        self._protocolId = _IDS[codec.protocol]
        # The header length (one word) and header of a frame saying
        # nothing but the protocol.
        self._plainHeader = bytes((0, 1, self._protocolId, 0, 0, 0))
        self.envelope: Envelope | None = None
        self.payload = b""

    def readHeader(self, frame: bytes) -> tuple[TProtocolBase, str, int, int]:
        """
        Read the message header of a THeader frame.

        @raise HeaderError: for a frame that cannot be read (its transform
            unknown, say), or in another protocol than the connection's.
        """
        if self._inFrames:
            frame = _unwrapped(frame)
        if frame.startswith(_MAGIC_NO_FLAGS) and frame.startswith(self._plainHeader, 8):
            # Most frames say nothing but their protocol: magic, flags 0, a
            # one-word header of the protocol id, no transforms, padding.
            self.envelope = None
            message = self.payload = frame[14:]
            return Codec.readHeader(self, message)
        self.envelope, message = openFrame(frame, self._limits)
        if frame[_FIXED.size] != self._protocolId:  # a one-byte varint, as both ids are
            raise HeaderError(f"a THeader frame in protocol {frame[_FIXED.size]} on a"
                              f" {self.protocol} connection")
        self.payload = message
        return Codec.readHeader(self, message)

    def _plain(self, message: bytes, seqid: int) -> bytes:
        """
        C{message} in a frame saying nothing but the protocol, in one pack.
        """
        return _PLAIN_FRAME.pack(_PLAIN_OVERHEAD + len(message), MAGIC, seqid, 1,
                                 self._protocolId) + message


class ServerHeaders(_Headers):
    """
    A server's THeader codec: each reply is sealed with its own request's
    envelope (flags, transforms) and the headers its handler set.
    """

    def seal(self, message: bytes, seqid: int, envelope: Envelope | None) -> bytes:
        if envelope is None:
            # self._plain inlined: a call less on every reply.
            return _PLAIN_FRAME.pack(_PLAIN_OVERHEAD + len(message), MAGIC, seqid, 1,
                                     self._protocolId) + message
        return sealFrame(message, seqid, envelope.flags, self._protocolId, envelope.transforms,
                         envelope._replyHeaders)


class ClientHeaders(_Headers):
    """
    A client's THeader codec: each call goes with the client's headers and
    its own, through the client's transforms.
    """

    def __init__(self, codec: Codec, limits: Limits, headers: Mapping[str, str] | None = None,
                 transforms: tuple[int, ...] = ()) -> None:
        super().__init__(codec, limits)
        self._headers = dict(headers or {})
        self._transforms = transforms

    def seal(self, message: bytes, seqid: int, headers: Mapping[str, str] | None) -> bytes:
        if not (headers or self._headers or self._transforms):
            return self._plain(message, seqid)
        if headers:
            headers = {**self._headers, **headers}
        return sealFrame(message, seqid, 0, self._protocolId, self._transforms,
                         headers or self._headers)
