"""
Wire framing: cutting a byte stream into whole Thrift messages, and
sending them, as a Twisted protocol.

Two transports exist on the wire.  I{Framed} messages carry a 4-byte
big-endian length before each message.  I{Unframed} ("buffered") messages
carry nothing, and a resumable scanner (L{txthrift._scanning}) finds where
each ends.  L{ThriftMessageProtocol} owns what a connection does with that:
choosing the framing from the first bytes (C{"auto"}), turning Nagle off,
gathering replies into one write per reactor turn, timing messages that
come too slowly and counting their bytes against a budget, and closing a
connection whose bytes break the limits.

It hands each whole message to L{ThriftMessageProtocol.messageReceived}
and must know nothing of what is in it: nothing of services, handlers,
codecs or Deferreds, and of a protocol's byte layout only the first bytes
that tell which transport and protocol a connection speaks.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar, Final
from typing import Protocol as TypingProtocol
from weakref import WeakKeyDictionary

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._budget import PartialBudget
from ._limits import Limits
from ._scanning import FrameError, Scanner, scannerFor
from ._writing import atNextTurn, canSendDirectly, send, sendParts
from ._zlib import ZlibSniffer, ZlibStream

__all__ = [
    "HEADER_PROTOCOLS",
    "PROTOCOLS",
    "TRANSPORTS",
    "ThriftMessageProtocol",
]

#: Transport names accepted wherever a transport is chosen.
TRANSPORTS: Final = ("auto", "framed", "buffered", "header", "zlib")
#: Protocol names accepted wherever a protocol is chosen.
PROTOCOLS: Final = ("auto", "binary", "compact", "json")

#: Bytes of replies gathered in one read before they are written out.
_BATCH_LIMIT = 65536

#: Pieces (prefixes and messages) gathered in one read before they are
#: written out: a peer with many calls in flight starts on the first ones
#: while the rest are handled, instead of the two ends taking turns.
_BATCH_PIECES = 64

#: The most bytes of a message begun, not yet scanned, copied to join the
#: next read instead of growing in place.
_SMALL_REST = 65536

#: The most pieces (prefixes and messages) of a batch sent without joining
#: them first, when they come to _BATCH_LIMIT: big messages, not many small.
_GATHER_MOST = 8

#: Pieces of a frame smaller than this are kept together (see _Framed._hold).
_PIECE = 4096

#: Seconds a connection closed for a message too slow to come may take to
#: send what it was sent before it is cut off.
_ABORT_GRACE = 10.0

_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_PAIR = struct.Struct(">ii")

# The first byte of every message of each protocol: strict binary starts with
# the version word 0x8001, compact with its protocol id 0x82, JSON with the
# "[" opening the message array.  A framed message has it after its length.
_SIGNATURES: Final = {0x80: "binary", 0x82: "compact", 0x5B: "json"}
#: THeader's protocol ids (the varint its header starts with).
HEADER_PROTOCOLS: Final = {0: "binary", 2: "compact"}
#: Where a THeader frame's protocol id is: after the frame length, magic,
#: flags, seqid and header length.
_HEADER_PROTOCOL_AT = 14


def checkFraming(transport: str, protocol: str) -> None:
    """
    @raise ValueError: for a transport and protocol that cannot go together.
    """
    if transport == "header" and protocol == "json":
        raise ValueError("THeader carries the binary or compact protocol, not JSON")


def checkChoice(kind: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(choices)}")
    return value


class _Framer(TypingProtocol):
    transport: str
    protocol: str
    #: Whether what is sent goes in a frame of this framing's own.
    prefixed: bool

    def feed(self, data: bytes) -> list[bytes]: ...

    def buffered(self) -> int: ...


class _Framed:
    """
    Messages prefixed by their length as a big-endian i32.
    """

    transport = "framed"
    #: Whether what is sent goes in a frame of this framing's own.
    prefixed = True

    def __init__(self, protocol: str, limits: Limits) -> None:
        self.protocol = protocol
        self._max = limits.max_frame_size
        # The pieces of a frame begun, its prefix first, as they came (and
        # what came after it in the last): joined once, when it is whole.
        self._parts: list[bytes | bytearray] = []
        self._partsSize = 0
        # 4 + the frame's length, once its prefix is there; else 0.
        self._frameEnd = 0

    #: Bytes of a frame being skipped (see L{_oversized}) still to come.
    _skipping = 0
    #: The length prefix (a signed i32) of the last frame refused for it,
    #: for those that report it in their own terms (L{txthrift.TTwisted}).
    refusedLength: int | None = None

    @property
    def held(self) -> bytes:
        """
        The bytes of the frame begun but not yet whole, its prefix included;
        assigning replaces them (L{txthrift.TTwisted}'s C{recvd}).
        """
        return b"".join(self._parts)

    @held.setter
    def held(self, data: bytes) -> None:
        self._parts, self._partsSize, self._frameEnd = [], 0, 0
        if data:
            self._hold(bytes(data))

    def feed(self, data: bytes) -> list[bytes]:
        messages: list[bytes] = []
        if self._skipping:
            data = self._skip(data, messages)
        if self._parts:
            # The rest of a frame begun earlier: gather its pieces until it
            # is whole, then go on with what follows it.
            data = self._gather(data, messages)
            if not data:
                return messages
        size = len(data)
        limit = self._max
        # The whole frames first, at once; then, in Python, what stopped
        # that: a frame begun, or a length refused.
        offset = cutFrames(data, limit, messages)
        while size - offset >= 4:
            (length,) = _I32.unpack_from(data, offset)
            if not 0 < length <= limit:
                data = self._oversized(length, data[offset + 4 :], messages)
                size, offset = len(data), 0
                continue
            end = offset + 4 + length
            if end > size:
                self._frameEnd = 4 + length
                break
            messages.append(data[offset + 4 : end])
            offset = end
        if offset < size:
            self._hold(data[offset:] if offset else data)
        return messages

    def _hold(self, piece: bytes) -> None:
        """
        Keep C{piece} of the frame begun.
        """
        _addPiece(self._parts, piece)
        self._partsSize += len(piece)

    def _gather(self, data: bytes, messages: list[bytes]) -> bytes:
        """
        Add C{data} to the frame begun; once it is whole, add it to
        C{messages} and return what follows it (C{b""} until then).
        """
        self._hold(data)
        parts = self._parts
        if not self._frameEnd:
            if self._partsSize < 4:
                return b""
            if len(parts[0]) < 4:
                parts[:] = [b"".join(parts)]
            (length,) = _I32.unpack_from(parts[0])
            if not 0 < length <= self._max:
                # Refused (or skipped) as feed finds it.
                return self._takeParts()
            self._frameEnd = 4 + length
        over = self._partsSize - self._frameEnd
        if over < 0:
            return b""
        if len(parts) == 1:
            return self._takeParts()
        # One copy of the frame, without its prefix, from its pieces.
        last = parts[-1]
        cut = len(last) - over
        messages.append(b"".join([memoryview(parts[0])[4:], *parts[1:-1],
                                  memoryview(last)[:cut]]))
        self._parts, self._partsSize, self._frameEnd = [], 0, 0
        return bytes(last[cut:]) if over else b""

    def _takeParts(self) -> bytes:
        """
        Forget the frame begun; return its pieces joined.
        """
        data = b"".join(self._parts)
        self._parts, self._partsSize, self._frameEnd = [], 0, 0
        return data

    def _oversized(self, length: int, rest: bytes, messages: list[bytes]) -> bytes:
        """
        Deal with a frame length outside 1..C{max_frame_size}, followed by
        C{rest}: refuse it, before anything of the claimed size is buffered,
        with the whole messages before it.  A subclass may skip the frame
        instead (setting L{_skipping}, and L{_skip} to do it), returning
        what follows it.
        """
        self.refusedLength = length
        refusal = self._refusal(length)
        refusal.messages = messages
        raise refusal

    def _skip(self, data: bytes, messages: list[bytes]) -> bytes:
        """
        Skip what C{data} holds of a frame being skipped; return what
        follows it.
        """
        raise NotImplementedError

    def _refusal(self, length: int) -> FrameError:
        return FrameError(f"frame length {length} is outside 1..{self._max} (max_frame_size)")

    def buffered(self) -> int:
        """
        Bytes held of a message not yet whole.
        """
        return self._partsSize


class _HeaderFramed(_Framed):
    """
    THeader frames: framed as L{_Framed} frames are, each a whole THeader
    frame (what follows the length), opened by the connection's codec;
    what is sent is a whole frame already, its length included.
    """

    transport = "header"
    prefixed = False


class _FramedHeader(_HeaderFramed):
    """
    THeader frames each inside a frame of its own, as Apache's
    C{THeaderProtocol} over C{TFramedTransport} sends them: the codec
    opens each frame's THeader frame, its length included, and what is
    sent goes in a frame again.
    """

    prefixed = True


class _Unframed:
    """
    Messages back to back, their ends found by a resumable
    L{txthrift._scanning.Scanner}.

    Of a message still arriving, the pieces the scanner has passed are set
    aside as they came (L{Scanner.release}), never copied into a buffer
    that grows: a big message is copied once, when it is whole.
    """

    transport = "buffered"
    prefixed = False

    def __init__(self, protocol: str, limits: Limits) -> None:
        self.protocol = protocol
        self._max = limits.max_frame_size
        self._scanner: Scanner = scannerFor(protocol, limits)
        # Of the message begun: the bytes the scanner has yet to pass ...
        self._buffer = bytearray()
        # ... and before them, the pieces it has passed, their size, and how
        # many more bytes to come it has passed unseen (a string's rest).
        self._passed: list[bytes | bytearray | memoryview] = []
        self._passedSize = 0
        self._skip = 0
        # Pieces that came while the scanner could not get further (see
        # Scanner.need), kept apart and scanned at once.
        self._held: list[bytes] = []
        self._heldSize = 0

    def feed(self, data: bytes) -> list[bytes]:
        messages: list[bytes] = []
        if self._skip:
            data = self._skipped(data)
            if not data:
                return messages
        buffer = self._buffer
        scanner = self._scanner
        # The pieces the bytes scanned were joined from, if they were.
        pieces: list[bytes] | None = None
        source: bytes | bytearray
        if self._held or len(buffer) + len(data) < scanner.need:
            self._held.append(data)
            self._heldSize += len(data)
            if len(buffer) + self._heldSize < scanner.need:
                return messages
            pieces, self._held, self._heldSize = self._held, [], 0
            if buffer:
                pieces.insert(0, bytes(buffer))
                buffer.clear()
            if scanner.walkingFlat():
                # Walked as they came, not joined (a million strings).
                rest = self._walkHeld(pieces)
                if rest is None:
                    return messages
                pieces = rest
            source = b"".join(pieces)
        elif len(buffer) > _SMALL_REST:
            # Not let go of (a JSON string): grown in place.
            buffer += data
            source = buffer
        elif buffer:
            source = b"".join((buffer, data))
            buffer.clear()
        elif self._passedSize:
            source = data
        else:
            # Nothing begun: the messages whole in this read are cut from it
            # at once (in C), not scanned one by one.
            taken = scanner.cut(data, messages)
            if taken == len(data):
                return messages
            source = data[taken:] if taken else data
        try:
            source = self._scan(source, messages)
        except FrameError as error:
            error.messages = messages
            raise
        self._keep(source, None if messages else pieces)
        return messages

    def _scan(self, source: bytes | bytearray, messages: list[bytes]) -> bytes | bytearray:
        """
        Add the messages whole in C{source} to C{messages}; return the rest.
        """
        scanner = self._scanner
        while len(source) >= scanner.need:
            end = scanner.scan(source)
            if end is None:
                if self._passedSize + len(source) > self._max:
                    raise FrameError(f"message is longer than {self._max} bytes (max_frame_size)")
                break
            messages.append(self._whole(source, end))
            scanner.reset()
            # The messages whole after it, cut at once as above.
            source = _dropped(source, end)
            source = _dropped(source, scanner.cut(source, messages))
            if not source:
                break
        return source

    def _walkHeld(self, pieces: list[bytes]) -> list[bytes] | None:
        """
        Walk the elements of the flat container begun over C{pieces}, the
        bytes held, and set aside the pieces walked past, whole.

        @return: the pieces from the one the container ends in, to be
            scanned on; C{None} if it has not ended yet, the rest held.
        """
        done, passed = self._scanner.walkPieces(pieces)
        for piece in pieces[:done]:
            self._passOn(piece)
        self._passedSize += passed
        rest = pieces[done:]
        if not self._scanner.walkingFlat():
            return rest
        self._held = rest
        self._heldSize = sum(map(len, rest))
        if self._passedSize + self._heldSize > self._max:
            raise FrameError(f"message is longer than {self._max} bytes (max_frame_size)")
        return None

    def _whole(self, source: bytes | bytearray, end: int) -> bytes:
        """
        The message of the C{end} first bytes of C{source} and the pieces
        passed before them.
        """
        with memoryview(source) as view:
            if self._passed:
                whole = b"".join((*self._passed, view[:end]))
                self._passed, self._passedSize = [], 0
                return whole
            if end == len(source) and type(source) is bytes:
                return source
            return bytes(view[:end])

    def _keep(self, source: bytes | bytearray, pieces: list[bytes] | None) -> None:
        """
        Keep what is left of C{source}, the start of a message: set aside
        what the scanner has passed (from C{pieces} as they came, when
        C{source} is them joined), buffer the rest.
        """
        passed = self._scanner.release() if source else 0
        if passed > len(source):
            self._skip = passed - len(source)
            passed = len(source)
        if passed:
            self._passedSize += passed
            if pieces is not None:
                source = self._setAside(pieces, passed)
                passed = 0
            elif type(source) is bytes:
                # Immutable: a view, not a copy.
                self._passOn(memoryview(source)[:passed])
            else:
                with memoryview(source) as view:
                    self._passOn(bytes(view[:passed]))
        buffer = self._buffer
        if source is buffer:
            del buffer[:passed]
        elif len(source) > passed:
            with memoryview(source) as view:
                buffer += view[passed:]

    def _setAside(self, pieces: list[bytes], count: int) -> bytes:
        """
        Set aside the first C{count} bytes of C{pieces}, the pieces
        themselves (so that the copy they were scanned in can go); return
        the bytes after them.
        """
        for index, piece in enumerate(pieces):
            if count < len(piece):
                if count:
                    self._passOn(memoryview(piece)[:count])
                return b"".join((memoryview(piece)[count:], *pieces[index + 1:]))
            self._passOn(piece)
            count -= len(piece)
        return b""

    def _passOn(self, piece: bytes | memoryview) -> None:
        """
        Set C{piece} aside.
        """
        _addPiece(self._passed, piece)

    def _skipped(self, data: bytes) -> bytes:
        """
        Set aside the start of C{data} that the scanner passed unseen;
        return the rest.
        """
        take = min(self._skip, len(data))
        self._skip -= take
        self._passedSize += take
        if take == len(data):
            self._passOn(data)
            return b""
        self._passOn(memoryview(data)[:take])
        return data[take:]

    def buffered(self) -> int:
        """
        Bytes held of a message not yet whole.
        """
        return len(self._buffer) + self._passedSize + self._heldSize


def _addPiece(parts: list[Any], piece: bytes | memoryview) -> None:
    """
    Add C{piece} to the C{parts} of a message still arriving.  Small pieces
    are kept together, so that a message sent a few bytes at a time holds
    no more memory than its bytes, as the partial budget counts them (a
    piece of its own, or a view of one, costs some 40 to 200 bytes more).
    """
    if len(piece) >= _PIECE:
        parts.append(piece)
    elif parts and type(parts[-1]) is bytearray:
        parts[-1] += piece
    else:
        parts.append(bytearray(piece))


def _cutFrames(data: bytes, maxFrame: int, messages: list[bytes]) -> int:
    """
    Add to C{messages} each whole frame's message at the start of C{data},
    one after another, stopping at a frame not whole or whose length is
    outside 1..C{maxFrame}; return where the last ends.  The twin of
    C{txthrift._speedups.cutFrames}, used where that was not built.
    """
    size = len(data)
    offset = 0
    while size - offset >= 4:
        (length,) = _I32.unpack_from(data, offset)
        end = offset + 4 + length
        if not 0 < length <= maxFrame or end > size:
            break
        messages.append(data[offset + 4 : end])
        offset = end
    return offset


def _withLengths(messages: list[bytes]) -> list[bytes]:
    """
    C{messages}, each after its length as a big-endian u32.
    """
    return [piece for message in messages for piece in (_U32.pack(len(message)), message)]


def _joinFrames(messages: list[bytes]) -> bytes:
    """
    C{messages} joined, each after its length as a big-endian u32: the twin
    of C{txthrift._speedups.joinFrames}, used where that was not built.
    """
    return b"".join(_withLengths(messages))


try:
    from ._speedups import cutFrames, joinFrames
except ImportError:  # pragma: no cover - built without a C compiler
    cutFrames, joinFrames = _cutFrames, _joinFrames


def _dropped(source: bytes | bytearray, count: int) -> bytes | bytearray:
    """
    C{source} without its first C{count} bytes: a bytearray in place.
    """
    if not count:
        return source
    if isinstance(source, bytearray):
        del source[:count]
        return source
    return source[count:]


def detectFramer(head: bytes, transport: str, protocol: str, limits: Limits) -> _Framer | None:
    """
    Choose the framer for a connection from its first bytes.

    @return: the framer, or C{None} when C{head} is too short to tell.
    @raise FrameError: when the bytes match no allowed transport/protocol.
    """
    if transport != "auto" and protocol != "auto":
        return makeFramer(transport, protocol, limits)
    if not head:
        return None
    unframedAs = _SIGNATURES.get(head[0])
    if unframedAs is not None and transport in ("auto", "buffered"):
        found = ("buffered", unframedAs)
    elif transport == "buffered":
        # Old non-strict binary begins with the name length, not a signature.
        if protocol == "binary":
            return makeFramer(transport, protocol, limits)
        raise FrameError(f"first byte 0x{head[0]:02x} starts no unframed Thrift message")
    elif head[0] > limits.max_frame_size >> 24:
        # Not a signature, and too big to begin a frame length we accept.
        raise FrameError(f"first byte 0x{head[0]:02x} starts no Thrift message")
    elif len(head) < 5:
        return None
    elif head[4] == 0x0F and transport in ("auto", "header"):
        # THeader: a frame length, then its magic 0x0FFF.
        if len(head) <= _HEADER_PROTOCOL_AT:
            return None
        found = ("header", _headerProtocol(head))
    elif transport in ("auto", "header") and head[4] == 0 and head[8:10] == b"\x0f\xff":
        # THeader inside a frame: two lengths, then the magic.
        if len(head) <= _HEADER_PROTOCOL_AT + 4:
            return None
        return _checkedProtocol(_FramedHeader(_headerProtocol(head[4:]), limits), protocol)
    elif transport == "header":
        raise FrameError(f"first bytes {bytes(head[:6])!r} start no THeader frame")
    else:
        framedAs = _SIGNATURES.get(head[4])
        if framedAs is None:
            if protocol == "binary":
                # Old non-strict binary, framed or not: 8 bytes tell which.
                if len(head) < 8:
                    return None
                return makeFramer(_nonStrictTransport(head), protocol, limits)
            raise FrameError(f"first bytes {bytes(head[:5])!r} start no Thrift message"
                             " (old non-strict binary is detected only with protocol='binary')")
        found = ("framed", framedAs)
    return _checkedProtocol(makeFramer(found[0], found[1], limits), protocol)


def _checkedProtocol(framer: _Framer, protocol: str) -> _Framer:
    if protocol not in ("auto", framer.protocol):
        raise FrameError(f"expected the {protocol} protocol, got {framer.protocol}")
    return framer


def _headerProtocol(head: bytes) -> str:
    """
    The protocol of the THeader frame C{head} begins.
    """
    if head[5] != 0xFF:
        raise FrameError(f"first bytes {bytes(head[:6])!r} start no Thrift message")
    number = head[_HEADER_PROTOCOL_AT]
    name = HEADER_PROTOCOLS.get(number)
    if name is None:
        raise FrameError(f"THeader protocol id {number} is not one of binary (0) and compact (2)")
    return name


def _nonStrictTransport(head: bytes) -> str:
    """
    Whether an old non-strict binary message (no version word: name length,
    name, type byte, seqid) starting C{head} is framed.

    Framed, its first 8 bytes are the frame length and the name length, and
    the name fits in the frame with the 10 bytes that must follow it (the
    name length itself, the type byte, the seqid, a stop byte).  Unframed,
    they are the name length and the name's first bytes (or the type byte,
    for an empty name), which read as a length are 2**24 or more, since no
    name starts with a NUL byte: more than the name's own length, unless
    that is over 16 MiB.
    """
    frame, name = _PAIR.unpack_from(head)
    return "framed" if 0 <= name <= frame - 10 else "buffered"


def makeFramer(transport: str, protocol: str, limits: Limits) -> _Framer:
    if transport == "framed":
        return _Framed(protocol, limits)
    if transport == "header":
        return _HeaderFramed(protocol, limits)
    # Apache's binary protocol reads the old unversioned header too, so the
    # binary scanner walks it (detectFramer finds it when binary is fixed).
    return _Unframed(protocol, limits)


class NamedLogger(Logger):
    """
    A L{Logger} keeping its namespace as a class attribute: a plain one
    takes its class's dotted name (C{txthrift._server.ServerProtocol}),
    where the log should show the public one.
    """

    def __get__(self, instance: object, owner: type | None = None) -> Logger:
        return self


def peerText(transport: Any) -> str:
    """
    A connection's peer as a log line shows it: C{127.0.0.1:54321},
    C{[::1]:54321} or C{unix:path}, not the address object's C{repr}.
    """
    try:
        address = transport.getPeer()
    except Exception:  # No transport, or one without a peer.
        return "?"
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        text = name.decode(errors="replace") if isinstance(name, bytes) else name
        return f"unix:{text or '?'}"
    return str(address)


class ThriftMessageProtocol(Protocol):
    """
    A connection carrying Thrift messages, framed or not.

    Subclasses receive whole messages in L{messageReceived} and send them
    with L{sendMessage}.  Bytes that are not a Thrift message stream close
    this connection only, with the reason logged.

    A message begun must be whole within C{limits.partial_timeout}, or the
    connection is closed; the bytes held of such partial messages count
    against the L{PartialBudget} of the connection's factory (its
    C{partialBudget}, made on first use if it has none), which pauses
    reading past it.

    @ivar framer: what cuts messages on this connection; C{None} until the
        first bytes decide it, when the transport or protocol is C{"auto"}.
    """

    log: ClassVar[Logger] = NamedLogger(namespace="txthrift.connection")

    framer: _Framer | None = None
    #: The zlib stream beneath the framing (L{txthrift._zlib}), or what tells
    #: from the first bytes whether there is one; C{None} for none.
    _zlib: ZlibSniffer | ZlibStream | None = None
    #: Why we closed this connection because of what the peer sent, if we did.
    refusal: str | None = None

    @property
    def receiving(self) -> bool:
        """
        Whether messages are still handed on: not once this connection is
        refused (L{frameError}) or lost.
        """
        return not self._broken

    # A partial message: the bytes held of it, when it began, its deadline,
    # and the budget they count against (whether that holds reading now).
    _partialSize = 0
    _partialSince = 0.0
    _partialDeadline = 0.0
    _partialCall: IDelayedCall | None = None
    _partialAbort: IDelayedCall | None = None
    _budget: PartialBudget | None = None
    _budgetPaused = False

    def __init__(self, transport: str = "framed", protocol: str = "binary",
                 limits: Limits | None = None) -> None:
        self.transportName = checkChoice("transport", transport, TRANSPORTS)
        self.protocolName = checkChoice("protocol", protocol, PROTOCOLS)
        checkFraming(transport, protocol)
        self.limits = limits or Limits()
        self._head = b""
        self._broken = False
        self._reading = False
        # What is to be sent, gathered so that it goes out in one write, not
        # in a write (and poller update) per message: the messages, their
        # size, the framer they were sent through (while it lasts), whether
        # each goes after its length (all alike: a batch ends where that
        # changes), and how many a batch holds at most.
        self._out: list[bytes] = []
        self._outSize = 0
        self._outFramer: _Framer | None = None
        self._outPrefixed = False
        self._outMost = _BATCH_PIECES
        # On a TCP connection, what is sent during one turn of its reactor
        # goes out at the start of the next, straight onto the socket (see
        # txthrift._writing); on other transports, when each read is handled.
        self._nextTurn: IReactorTime | None = None
        self._waiting = False
        if transport == "auto" or transport == "zlib":
            # Perhaps (or, for "zlib", surely) a zlib stream, as its first
            # bytes tell; the framing is detected, inside it or not.
            self._zlib = ZlibSniffer(self, required=transport == "zlib")
            self.transportName = transport = "auto"
        if transport != "auto" and protocol != "auto":
            self.framer = makeFramer(transport, protocol, self.limits)

    def speakZlib(self, framed: bool = True) -> None:
        """
        Speak a zlib stream from the first byte, the messages in it
        unframed, as Apache's C{TZlibTransport} does: around
        C{TFramedTransport} (C{framed}: each write-out one frame holding the
        next piece of the stream; a client's C{transport="zlib"}) or around
        C{TBufferedTransport} (the stream bare; C{"zlib-buffered"}).
        """
        self.transportName = "buffered"
        self.framer = makeFramer("buffered", self.protocolName, self.limits)
        self._zlib = ZlibStream(self, framed=framed)

    def makeConnection(self, transport: Any) -> None:
        # Small replies must not wait for the peer's delayed ACK (Nagle).
        setNoDelay = getattr(transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            try:
                setNoDelay(True)
            except OSError:  # pragma: no cover - not a TCP socket after all
                pass
        if canSendDirectly(transport):
            self._nextTurn = transport.reactor
        if self.limits.partial_budget is not None:
            self._budget = _budgetOf(getattr(self, "factory", None), self.limits.partial_budget)
        if self._zlib is not None:
            transport = self._zlib.wrap(transport)
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        if self._zlib is not None and not self._broken:
            # Through the zlib stream (or what tells whether there is one):
            # back inflated, in bounded steps, through plainReceived.
            self._zlib.dataReceived(data)
            return
        self.plainReceived(data)

    def plainReceived(self, data: bytes) -> None:
        """
        Handle bytes as they are beneath any zlib stream.
        """
        if self._broken:
            return
        if self._reading:
            # Re-entered (a synchronous in-memory peer): the outer call sends.
            self._handle(data)
            return
        self._reading = True
        try:
            self._handle(data)
        finally:
            self._reading = False
            self._release()

    def _release(self) -> None:
        """
        Let what is to be sent go: at the reactor's next turn, or now.
        """
        if not self._out or self._waiting:
            return
        if self._nextTurn is not None:
            self._waiting = True
            atNextTurn(self._nextTurn, self._sendWaiting)
        else:
            self._writeOut()

    def _sendWaiting(self) -> None:
        self._waiting = False
        self._writeOut()

    def _writeOut(self) -> None:
        """
        Hand what is gathered to the transport now; for subclasses, before
        anything that must not overtake it (a close, a write of their own).
        """
        out = self._out
        if not out:
            return
        prefixed = self._outPrefixed
        big = self._outSize >= _BATCH_LIMIT and len(out) * (1 + prefixed) <= _GATHER_MOST
        self._out, self._outSize, self._outFramer = [], 0, None
        transport = self.transport
        if transport is None:
            return
        if big and self._nextTurn is not None:
            # Big messages go onto the socket as they are: joining them would
            # copy every byte once more, and the transport would send only
            # SEND_LIMIT (128 KiB) of them per turn of the reactor.
            sendParts(transport, _withLengths(out) if prefixed else out)
            return
        # One string (the transport's writeSequence walks its items in
        # Python, twice), each message after its length if framed.
        data = (joinFrames(out) or _joinFrames(out)) if prefixed else b"".join(out)
        if self._nextTurn is not None:
            send(transport, data)
        else:
            transport.write(data)

    def _handle(self, data: bytes) -> None:
        messages, refused = self._cut(data)
        self._handOn(messages, refused)

    def _cut(self, data: bytes) -> tuple[list[bytes], FrameError | None]:
        """
        Cut C{data} into the whole messages it ends, keeping the rest; and
        the refusal of bytes that break the framing, if any followed them.
        """
        try:
            framer = self.framer
            if framer is None:
                self._head += data
                framer = detectFramer(self._head, self.transportName, self.protocolName,
                                      self.limits)
                if framer is None:
                    self._partialHeld(len(self._head), False)
                    return [], None
                self.framer = framer
                self.transportName, self.protocolName = framer.transport, framer.protocol
                data, self._head = self._head, b""
                self.framingDetected()
            messages = framer.feed(data)
        except FrameError as error:
            return error.messages, error
        held = framer.buffered()
        if held or self._partialSize:
            self._partialHeld(held, bool(messages))
        return messages, None

    def _handOn(self, messages: list[bytes], refused: FrameError | None) -> None:
        """
        Hand C{messages} on, one by one, while this connection is not
        broken; then close it for C{refused}.
        """
        for message in messages:
            if self._broken:
                return
            self.messageReceived(message)
        if refused is not None and not self._broken:
            self.frameError(str(refused))

    def frameError(self, reason: str) -> None:
        """
        Close this connection because of what it sent, saying why.
        """
        self._broken = True
        self.refusal = reason
        self._endPartial()
        self.log.warn("closing Thrift connection from {peer}: {reason}",
                      peer=peerText(self.transport), reason=reason)
        self._closeRefused()

    def _closeRefused(self) -> None:
        """
        Close this connection after L{frameError}: at once here; a subclass
        may answer first what came before the bad bytes.
        """
        self._writeOut()
        if self.transport is not None:
            self.transport.loseConnection()

    def _partialHeld(self, held: int, completed: bool) -> None:
        """
        Note, after a read, the bytes held of a message not yet whole: time
        the message from its first byte, and count them against the budget.

        @param completed: whether a message was completed in this read (so
            that what is held now, if anything, is a new one).
        """
        began = bool(held) and (completed or not self._partialSize)
        self._partialSize = held
        if began:
            timeout = self.limits.partial_timeout
            clock = self._partialClock()
            if timeout is not None and clock is not None:
                now = clock.seconds()
                self._partialSince, self._partialDeadline = now, now + timeout
                # One timer, checked when it fires, rather than one made and
                # cancelled per message that takes more than one read.
                if self._partialCall is None:
                    self._partialCall = clock.callLater(timeout, self._partialExpired)
        if self._budget is not None:
            self._budget.hold(self, held, began)

    def _partialClock(self) -> IReactorTime | None:
        # The clock the server or client protocol was given, else the
        # transport's reactor.
        clock: IReactorTime | None = getattr(self, "_clock", None)
        if clock is None:
            clock = getattr(getattr(self, "factory", None), "clock", None)
        return clock or self._nextTurn

    def _partialExpired(self) -> None:
        self._partialCall = None
        if not self._partialSize or self._broken:
            return
        clock = self._partialClock()
        timeout = self.limits.partial_timeout
        assert clock is not None and timeout is not None
        now = clock.seconds()
        if self._pausedElsewhere() and not self._peerNotReading():
            # Our own backlog of requests holds the rest of it back, not the
            # peer (one that does not read its replies gets no such grace).
            self._partialDeadline = now + timeout
        if now < self._partialDeadline:
            self._partialCall = clock.callLater(self._partialDeadline - now,
                                                self._partialExpired)
            return
        self.frameError(f"a message begun {now - self._partialSince:.1f}s ago is not complete:"
                        f" {self._partialSize} bytes of it came (partial_timeout {timeout:g}s)")
        self._abortLater(clock)

    def _abortLater(self, clock: IReactorTime) -> None:
        """
        Abort this connection, closing after a refusal, if it has not gone
        after a grace period; a subclass that answers what came before the
        refusal first keeps the connection as long as that takes.
        """
        if self.transport is not None and self._partialAbort is None:
            self._partialAbort = clock.callLater(_ABORT_GRACE, self._abortNow)

    def _abortNow(self) -> None:
        self._partialAbort = None
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()

    def _pausedElsewhere(self) -> bool:
        """
        Whether reading is held paused for reasons other than the budget (a
        L{txthrift.ServerProtocol} whose requests or replies wait), which
        resuming for the budget must not undo.
        """
        return False

    def _peerNotReading(self) -> bool:
        """
        Whether the peer is not taking what we send, so that a pause of ours
        is its own doing (and no excuse for its slow message).
        """
        return False

    def _endPartial(self) -> None:
        """
        Drop what is held of a partial message, its deadline and its budget:
        this connection is closing.
        """
        if self._partialCall is not None:
            self._partialCall.cancel()
            self._partialCall = None
        if self._budget is not None:
            self._budget.release(self)
        self._budgetPaused = False
        self._head = b""
        framer = self.framer
        if self._partialSize and framer is not None:
            # The bytes themselves go now, not when the connection does.
            self.framer = makeFramer(framer.transport, framer.protocol, self.limits)
        self._partialSize = 0

    def arriving(self, size: int) -> None:
        """
        C{size} bytes of a message are held before this connection is given
        it whole (a WebSocket's frames, which its library gathers): they
        count against the partial budget as a message of its own would, and
        pause reading past it; 0 once it is whole.
        """
        if self._budget is not None:
            self._budget.hold(self, size, not size)

    def pauseForBudget(self) -> None:
        """
        Stop reading: the budget for partial messages is spent.
        """
        self._budgetPaused = True
        transport: Any = self.transport
        if transport is not None:
            transport.pauseProducing()

    def resumeForBudget(self) -> None:
        """
        Read again: the budget has room, or this connection's message may go through.
        """
        if not self._budgetPaused:
            return
        self._budgetPaused = False
        transport: Any = self.transport
        if transport is not None and not self._broken and not self._pausedElsewhere():
            transport.resumeProducing()

    def framingDetected(self) -> None:
        """
        Called once the transport and protocol of an C{"auto"} connection are known.
        """

    def messageReceived(self, message: bytes) -> None:
        """
        Handle one whole encoded Thrift message.
        """
        raise NotImplementedError

    def sendMessage(self, message: bytes) -> None:
        """
        Send one whole encoded Thrift message, framed as this connection is.
        """
        framer = self.framer
        assert framer is not None, "no message can be sent before the framing is known"
        out = self._out
        if not out:
            self._startBatch(framer)
        elif framer is not self._outFramer:
            if framer.prefixed != self._outPrefixed:
                # The framing changed (a SASL handshake's end): what is
                # gathered goes as it was framed.
                self._writeOut()
                out = self._out
            self._startBatch(framer)
        out.append(message)
        self._outSize += len(message)
        if self._outSize >= _BATCH_LIMIT or len(out) >= self._outMost:
            # Hand a big batch over now, so that a transport whose buffer
            # fills can pause us before the rest of this read is handled.
            self._writeOut()
        elif not self._reading:
            self._release()

    def _startBatch(self, framer: _Framer) -> None:
        """
        Gather messages to send as C{framer} frames them: each after its
        length, or bare.
        """
        self._outFramer = framer
        self._outPrefixed = prefixed = framer.prefixed
        # A framed message is two pieces: its length and itself.
        self._outMost = _BATCH_PIECES // 2 if prefixed else _BATCH_PIECES

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._broken = True
        self._out, self._outSize, self._outFramer = [], 0, None
        self._endPartial()
        if self._zlib is not None:
            self._zlib.connectionLost()
        if self._partialAbort is not None:
            self._partialAbort.cancel()
            self._partialAbort = None


def _budgetOf(factory: object, limit: int) -> PartialBudget | None:
    """
    The budget the connections of C{factory} share: its own
    C{partialBudget} (L{ServerFactory} and L{ClientFactory} have one), else
    one kept for it while it lives, so that a factory of any kind bounds its
    connections together.
    """
    if factory is None:
        return None
    if hasattr(factory, "partialBudget"):
        budget: PartialBudget | None = factory.partialBudget
        return budget
    try:
        return _budgets.setdefault(factory, PartialBudget(limit))
    except TypeError:  # pragma: no cover - a factory that cannot be weakly referred to
        return None


#: The budgets of factories that do not hold one themselves.
_budgets: WeakKeyDictionary[object, PartialBudget] = WeakKeyDictionary()
