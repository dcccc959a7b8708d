"""
Wire framing: cutting a byte stream into whole Thrift messages.

Two transports exist on the wire.  I{Framed} messages carry a 4-byte
big-endian length before each message.  I{Unframed} ("buffered") messages
carry nothing: Apache's C{TBufferedTransport} just writes the encoded
message, so the only way to find where one ends is to walk its encoding.
The scanners below do that walk without decoding values, and resume where
they stopped when more bytes arrive, so a message costs time linear in its
size however finely it is cut.

Nothing here knows about services or Deferreds: a L{ThriftMessageProtocol}
hands each whole message to L{ThriftMessageProtocol.messageReceived}.
"""

from __future__ import annotations

import re
import struct
import sys
from typing import Any, ClassVar, Final
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._budget import PartialBudget
from ._limits import Limits
from ._nogc import BIG_MESSAGE
from ._writing import atNextTurn, canSendDirectly, send

__all__ = [
    "PROTOCOLS",
    "TRANSPORTS",
    "DepthError",
    "FrameError",
    "ThriftMessageProtocol",
    "checkDepth",
    "depthCheckFloor",
    "largeMessageSizes",
]

#: Transport names accepted wherever a transport is chosen.
TRANSPORTS: Final = ("auto", "framed", "buffered")
#: Protocol names accepted wherever a protocol is chosen.
PROTOCOLS: Final = ("auto", "binary", "compact", "json")

#: Bytes of replies gathered in one read before they are written out.
_BATCH_LIMIT = 65536

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


def checkChoice(kind: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(choices)}")
    return value


class _Framer(TypingProtocol):
    transport: str
    protocol: str

    def feed(self, data: bytes) -> list[bytes]: ...

    def frame(self, message: bytes) -> bytes: ...

    def buffered(self) -> int: ...


class _Framed:
    """
    Messages prefixed by their length as a big-endian i32.
    """

    transport = "framed"

    def __init__(self, protocol: str, limits: Limits) -> None:
        self.protocol = protocol
        self._max = limits.max_frame_size
        self._buffer = bytearray()

    #: Bytes of a frame being skipped (see L{_oversized}) still to come.
    _skipping = 0

    def feed(self, data: bytes) -> list[bytes]:
        messages: list[bytes] = []
        if self._skipping:
            data = self._skip(data, messages)
        buffer = self._buffer
        if buffer:
            # The rest of a frame begun earlier: gather until it is whole,
            # then cut from one copy of it.
            buffer += data
            if len(buffer) < 4:
                return messages
            (length,) = _I32.unpack_from(buffer)
            if 0 < length <= self._max and len(buffer) < 4 + length:
                return messages
            data = bytes(buffer)
            buffer.clear()
        size = len(data)
        offset = 0
        limit = self._max
        while size - offset >= 4:
            (length,) = _I32.unpack_from(data, offset)
            if not 0 < length <= limit:
                data = self._oversized(length, data[offset + 4 :], messages)
                size, offset = len(data), 0
                continue
            end = offset + 4 + length
            if end > size:
                break
            messages.append(data[offset + 4 : end])
            offset = end
        if offset < size:
            buffer += memoryview(data)[offset:]
        return messages

    def _oversized(self, length: int, rest: bytes, messages: list[bytes]) -> bytes:
        """
        Deal with a frame length outside 1..C{max_frame_size}, followed by
        C{rest}: refuse it, before anything of the claimed size is buffered,
        with the whole messages before it.  A subclass may skip the frame
        instead (setting L{_skipping}, and L{_skip} to do it), returning
        what follows it.
        """
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

    def frame(self, message: bytes) -> bytes:
        return _U32.pack(len(message)) + message

    def buffered(self) -> int:
        """
        Bytes held of a message not yet whole.
        """
        return len(self._buffer)


class _Unframed:
    """
    Messages back to back, their ends found by a resumable L{_Scanner}.
    """

    transport = "buffered"

    def __init__(self, protocol: str, limits: Limits, strict: bool = True) -> None:
        self.protocol = protocol
        self._max = limits.max_frame_size
        self._scanner = _SCANNERS[protocol](limits, strict)
        self._buffer = bytearray()
        # Pieces that came while the scanner could not get further (see
        # _Scanner.need), kept apart and added to the buffer at once.
        self._held: list[bytes] = []
        self._heldSize = 0

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        scanner = self._scanner
        if self._held or len(buffer) + len(data) < scanner.need:
            self._held.append(data)
            self._heldSize += len(data)
            if len(buffer) + self._heldSize < scanner.need:
                return []
            data = b"".join(self._held)
            self._held, self._heldSize = [], 0
        buffer += data
        messages: list[bytes] = []
        try:
            while buffer:
                if len(buffer) < scanner.need:
                    # The message cannot be whole yet: no need to look.
                    break
                end = scanner.scan(buffer)
                if end is None:
                    if len(buffer) > self._max:
                        raise FrameError(
                            f"message is longer than {self._max} bytes (max_frame_size)"
                        )
                    break
                with memoryview(buffer) as view:
                    messages.append(bytes(view[:end]))
                del buffer[:end]
                scanner.reset()
        except FrameError as error:
            error.messages = messages
            raise
        return messages

    def frame(self, message: bytes) -> bytes:
        return message

    def buffered(self) -> int:
        """
        Bytes held of a message not yet whole.
        """
        return len(self._buffer) + self._heldSize


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
    if unframedAs is not None and transport != "framed":
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
    if protocol not in ("auto", found[1]):
        raise FrameError(f"expected the {protocol} protocol, got {found[1]}")
    return makeFramer(found[0], found[1], limits)


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
    # Apache's binary protocol reads the old unversioned header too, so the
    # binary scanner walks it (detectFramer finds it when binary is fixed).
    return _Unframed(protocol, limits, strict=False)


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

    log: ClassVar[Logger] = Logger()

    framer: _Framer | None = None
    #: Why we closed this connection because of what the peer sent, if we did.
    refusal: str | None = None

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
        self.limits = limits or Limits()
        self._head = b""
        self._broken = False
        self._reading = False
        # What is to be sent, gathered so that it goes out in one write, not
        # in a write (and poller update) per message.
        self._out: list[bytes] = []
        self._outSize = 0
        # On a TCP connection, what is sent during one turn of its reactor
        # goes out at the start of the next, straight onto the socket (see
        # txthrift._writing); on other transports, when each read is handled.
        self._nextTurn: IReactorTime | None = None
        self._waiting = False
        if transport != "auto" and protocol != "auto":
            self.framer = makeFramer(transport, protocol, self.limits)

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
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
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
        if not self._out:
            return
        # One string: the transport's writeSequence walks its items in
        # Python, twice.
        data = b"".join(self._out)
        self._out, self._outSize = [], 0
        transport = self.transport
        if transport is None:
            return
        if self._nextTurn is not None:
            send(transport, data)
        else:
            transport.write(data)

    def _handle(self, data: bytes) -> None:
        try:
            framer = self.framer
            if framer is None:
                self._head += data
                framer = detectFramer(self._head, self.transportName, self.protocolName,
                                      self.limits)
                if framer is None:
                    self._partialHeld(len(self._head), False)
                    return
                self.framer = framer
                self.transportName, self.protocolName = framer.transport, framer.protocol
                data, self._head = self._head, b""
                self.framingDetected()
            messages = framer.feed(data)
        except FrameError as error:
            refused: FrameError | None = error
            messages = error.messages
        else:
            refused = None
            held = framer.buffered()
            if held or self._partialSize:
                self._partialHeld(held, bool(messages))
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
                      peer=_peerOf(self), reason=reason)
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
        if framer.transport == "framed":
            out.append(_U32.pack(len(message)))
        out.append(message)
        self._outSize += len(message)
        if self._outSize >= _BATCH_LIMIT:
            # Hand a big batch over now, so that a transport whose buffer
            # fills can pause us before the rest of this read is handled.
            self._writeOut()
        elif not self._reading:
            self._release()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._broken = True
        self._out, self._outSize = [], 0
        self._endPartial()
        if self._partialAbort is not None:
            self._partialAbort.cancel()
            self._partialAbort = None


def _budgetOf(factory: object, limit: int) -> PartialBudget | None:
    """
    The budget shared by the connections of C{factory}: its
    C{partialBudget}, made now if it has none (any factory will do).
    """
    if factory is None:
        return None
    budget: PartialBudget | None = getattr(factory, "partialBudget", None)
    if budget is None:
        budget = PartialBudget(limit)
        try:
            factory.partialBudget = budget  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - a factory with __slots__
            return None
    return budget


def _peerOf(protocol: Protocol) -> str:
    transport = protocol.transport
    if transport is None:
        return "?"
    try:
        return str(transport.getPeer())
    except Exception:  # pragma: no cover - transports without a peer
        return "?"


# --------------------------------------------------------------------------
# Scanners: find where one unframed message ends without decoding it.
#
# Each keeps an explicit stack of what it is inside and the offset reached,
# and changes either only after the bytes it needs are there, so a scan that
# runs out of bytes resumes exactly where it stopped.
# --------------------------------------------------------------------------


# How a flat container's elements are encoded when not in a fixed width: the
# kinds txthrift._speedups.skipFlat takes.
_BINARY_STRING_KIND, _VARINT_KIND, _COMPACT_STRING_KIND = -1, -2, -3


def _leastSize(kind: int) -> int:
    return 4 if kind == _BINARY_STRING_KIND else 1 if kind < 0 else kind


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
    if evenKind == oddKind == _BINARY_STRING_KIND:
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
        elif kind == _BINARY_STRING_KIND:
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
            if got is None or kind == _COMPACT_STRING_KIND and got[0] > maxString:
                break
            end = got[1] + got[0] if kind == _COMPACT_STRING_KIND else got[1]
        if end > size:
            break
        pos = end
        remaining -= 1
    return pos, remaining


try:
    from ._speedups import skipFlat as _skipFlat
except ImportError:  # pragma: no cover - built without a C compiler
    _skipFlat = _skipFlatInPython


class _Scanner:
    def __init__(self, limits: Limits, strict: bool) -> None:
        self._maxFrame = limits.max_frame_size
        self._maxString = limits.string_limit
        self._maxContainer = limits.container_limit
        self._maxDepth = limits.max_depth
        self._strict = strict
        self.reset()

    #: How each type code's values are encoded, for those a container's
    #: elements can be walked flat with: a width, or one of the kinds below.
    _KINDS: ClassVar[dict[int, int]] = {}

    def reset(self) -> None:
        self._pos = 0
        self._stack: list[list[int]] = []
        self._started = False
        #: The least the buffer must hold before scanning again can get further.
        self.need = 0

    def scan(self, buffer: bytearray) -> int | None:
        """
        @return: the length of the message at the start of C{buffer}, or
            C{None} if C{buffer} does not hold all of it yet.
        """
        raise NotImplementedError

    def _walkFlat(self, buffer: bytearray, pos: int, size: int, top: list[int]) -> int:
        """
        Walk the elements of the container C{top}, whose element types are
        all in L{_KINDS}, as far as the buffer goes.

        @return: the offset reached.  If the buffer ended first, C{top}
            counts the elements left, and L{need} says how long the buffer
            must get before they can all be there.
        """
        kinds = self._KINDS
        evenKind, oddKind = kinds[top[1]], kinds[top[2]]
        pos, remaining = _skipFlat(buffer, pos, top[3], evenKind, oddKind, self._maxString)
        top[3] = remaining
        if remaining:
            # The next element is not whole (or is bad: this raises).
            kind = oddKind if remaining & 1 else evenKind
            least = pos + self._elementSize(buffer, pos, size, kind) + (remaining - 1) * min(
                _leastSize(evenKind), _leastSize(oddKind))
            self._need(least)
            self.need = least
        else:
            self._need(pos)
        return pos

    def _elementSize(self, buffer: bytearray, pos: int, size: int, kind: int) -> int:
        """
        The size of the flat element at C{pos}, as far as it is known.

        @raise FrameError: if it is not a valid element.
        """
        if kind >= 0:
            return kind
        if kind == _BINARY_STRING_KIND:
            if pos + 4 > size:
                return 4
            (length,) = _I32.unpack_from(buffer, pos)
            self._checkString(length)
            return 4 + length
        got = _readVarint(buffer, pos, size)
        if got is None:
            return size - pos + 1
        if kind == _COMPACT_STRING_KIND:
            self._checkString(got[0])
            return got[1] - pos + got[0]
        return got[1] - pos

    def _need(self, end: int) -> None:
        if end > self._maxFrame:
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


# Stack entry kinds.
_STRUCT, _VALUE, _LIST, _MAP = 0, 1, 2, 3


class _BinaryScanner(_Scanner):
    # TType codes and the encoded size of the fixed-size ones.
    _FIXED: ClassVar = {2: 1, 3: 1, 4: 8, 6: 2, 8: 4, 10: 8, 16: 16}
    _STRING, _STRUCT_T, _MAP_T, _SET_T, _LIST_T = 11, 12, 13, 14, 15
    _KINDS: ClassVar = {**_FIXED, _STRING: _BINARY_STRING_KIND}
    _NESTING: ClassVar = frozenset((_STRUCT_T, _MAP_T, _SET_T, _LIST_T))

    def _header(self, buffer: bytearray, size: int) -> int | None:
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
        elif self._strict:
            raise FrameError("binary message without a version header")
        else:
            # Old non-strict: name length, name, type byte, seqid.
            length = word
            self._checkString(length)
            end = 4 + length + 1 + 4
        self._need(end)
        return end if size >= end else None

    def scan(self, buffer: bytearray) -> int | None:
        size = len(buffer)
        stack = self._stack
        self.need = 0
        if not self._started:
            end = self._header(buffer, size)
            if end is None:
                return None
            self._pos = end
            self._started = True
            stack.append([_STRUCT])
        pos = self._pos
        fixed = self._FIXED
        kinds = self._KINDS
        maxDepth = self._maxDepth
        try:
            while stack:
                top = stack[-1]
                kind = top[0]
                if kind == _STRUCT:
                    if pos >= size:
                        return None
                    ttype = buffer[pos]
                    if ttype == 0:
                        pos += 1
                        stack.pop()
                        continue
                    if pos + 3 > size:
                        return None
                    pos += 3
                    stack.append([_VALUE, ttype])
                    continue
                if kind == _LIST or kind == _MAP:
                    if top[3] and top[1] in kinds and top[2] in kinds:
                        # Strings and fixed-size values only: walked at once,
                        # without a stack entry per element.
                        pos = self._walkFlat(buffer, pos, size, top)
                        if top[3]:
                            return None
                    if top[3] == 0:
                        stack.pop()
                        continue
                    top[3] -= 1
                    ttype = top[1] if kind == _LIST or top[3] % 2 else top[2]
                    stack.append([_VALUE, ttype])
                    continue
                # _VALUE: replace it by what the value's bytes need.
                ttype = top[1]
                width = fixed.get(ttype)
                if width is not None:
                    self._need(pos + width)
                    if pos + width > size:
                        return None
                    pos += width
                    stack.pop()
                elif ttype == self._STRING:
                    if pos + 4 > size:
                        return None
                    (length,) = _I32.unpack_from(buffer, pos)
                    self._checkString(length)
                    self._need(pos + 4 + length)
                    if pos + 4 + length > size:
                        return None
                    pos += 4 + length
                    stack.pop()
                elif len(stack) > maxDepth and ttype in self._NESTING:
                    # The _VALUE entry on top stands where the value nests: a
                    # struct or container there is as deep as the stack is long.
                    raise self._tooDeep()
                elif ttype == self._STRUCT_T:
                    stack[-1] = [_STRUCT]
                elif ttype == self._LIST_T or ttype == self._SET_T:
                    if pos + 5 > size:
                        return None
                    etype = buffer[pos]
                    (count,) = _I32.unpack_from(buffer, pos + 1)
                    self._checkContainer(count)
                    width = fixed.get(etype)
                    if width is None:
                        pos += 5
                        stack[-1] = [_LIST, etype, etype, count]
                        continue
                    # Fixed-size elements are skipped in one step.
                    end = pos + 5 + count * width
                    self._need(end)
                    if end > size:
                        return None
                    pos = end
                    stack.pop()
                elif ttype == self._MAP_T:
                    if pos + 6 > size:
                        return None
                    ktype, vtype = buffer[pos], buffer[pos + 1]
                    (count,) = _I32.unpack_from(buffer, pos + 2)
                    self._checkContainer(count)
                    kwidth, vwidth = fixed.get(ktype), fixed.get(vtype)
                    if kwidth is None or vwidth is None:
                        pos += 6
                        stack[-1] = [_MAP, ktype, vtype, 2 * count]
                        continue
                    end = pos + 6 + count * (kwidth + vwidth)
                    self._need(end)
                    if end > size:
                        return None
                    pos = end
                    stack.pop()
                else:
                    raise FrameError(f"unknown binary type code {ttype}")
            return pos
        finally:
            self._pos = pos


class _CompactScanner(_Scanner):
    # Compact type codes: 1/2 bool (no bytes inside a struct field, one byte
    # in a container), 3 byte, 4-6 zigzag varints, 7 double, 8 binary,
    # 9 list, 10 set, 11 map, 12 struct, 13 uuid.
    _FIXED: ClassVar = {1: 1, 2: 1, 3: 1, 7: 8, 13: 16}
    _VARINT: ClassVar = frozenset((4, 5, 6))
    _KINDS: ClassVar = {**_FIXED, 4: _VARINT_KIND, 5: _VARINT_KIND, 6: _VARINT_KIND,
                        8: _COMPACT_STRING_KIND}
    _NESTING: ClassVar = frozenset((9, 10, 11, 12))

    def _header(self, buffer: bytearray, size: int) -> int | None:
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
        self._need(end)
        return end if size >= end else None

    def scan(self, buffer: bytearray) -> int | None:
        size = len(buffer)
        stack = self._stack
        self.need = 0
        if not self._started:
            end = self._header(buffer, size)
            if end is None:
                return None
            self._pos = end
            self._started = True
            stack.append([_STRUCT])
        pos = self._pos
        fixed = self._FIXED
        varints = self._VARINT
        varint = _readVarint
        kinds = self._KINDS
        maxDepth = self._maxDepth
        try:
            while stack:
                top = stack[-1]
                kind = top[0]
                if kind == _STRUCT:
                    if pos >= size:
                        return None
                    header = buffer[pos]
                    if header == 0:
                        pos += 1
                        stack.pop()
                        continue
                    ctype = header & 0x0F
                    after = pos + 1
                    if header >> 4 == 0:
                        # No delta: the field id follows as a zigzag varint.
                        fid = varint(buffer, after, size)
                        if fid is None:
                            return None
                        after = fid[1]
                    pos = after
                    if ctype not in (1, 2):  # booleans live in the field header
                        stack.append([_VALUE, ctype])
                    continue
                if kind == _LIST or kind == _MAP:
                    if top[3] and top[1] in kinds and top[2] in kinds:
                        pos = self._walkFlat(buffer, pos, size, top)
                        if top[3]:
                            return None
                    if top[3] == 0:
                        stack.pop()
                        continue
                    top[3] -= 1
                    ctype = top[1] if kind == _LIST or top[3] % 2 else top[2]
                    stack.append([_VALUE, ctype])
                    continue
                ctype = top[1]
                width = fixed.get(ctype)
                if width is not None:
                    self._need(pos + width)
                    if pos + width > size:
                        return None
                    pos += width
                    stack.pop()
                elif ctype in varints:
                    got = varint(buffer, pos, size)
                    if got is None:
                        return None
                    pos = got[1]
                    stack.pop()
                elif ctype == 8:
                    got = varint(buffer, pos, size)
                    if got is None:
                        return None
                    self._checkString(got[0])
                    end = got[1] + got[0]
                    self._need(end)
                    if end > size:
                        return None
                    pos = end
                    stack.pop()
                elif len(stack) > maxDepth and ctype in self._NESTING:
                    raise self._tooDeep()
                elif ctype == 12:
                    stack[-1] = [_STRUCT]
                elif ctype == 9 or ctype == 10:
                    if pos >= size:
                        return None
                    header = buffer[pos]
                    count, etype, after = header >> 4, header & 0x0F, pos + 1
                    if count == 15:
                        got = varint(buffer, after, size)
                        if got is None:
                            return None
                        count, after = got
                    self._checkContainer(count)
                    width = fixed.get(etype)
                    if width is not None:
                        end = after + count * width
                        self._need(end)
                        if end > size:
                            return None
                        pos = end
                        stack.pop()
                    else:
                        pos = after
                        stack[-1] = [_LIST, etype, etype, count]
                elif ctype == 11:
                    got = varint(buffer, pos, size)
                    if got is None:
                        return None
                    count, after = got
                    self._checkContainer(count)
                    if count == 0:
                        pos = after
                        stack.pop()
                        continue
                    if after >= size:
                        return None
                    types = buffer[after]
                    pos = after + 1
                    stack[-1] = [_MAP, types >> 4, types & 0x0F, count * 2]
                else:
                    raise FrameError(f"unknown compact type code {ctype}")
            return pos
        finally:
            self._pos = pos


# What each open JSON bracket is: the message's array; a struct, or the
# object wrapping a field's value ({"i32": 5}); a list, set or map array (by
# the strings seen in it: a map's body object follows two type names); a map's
# body.  Structs and containers are depth levels; the rest are not.
_J_MESSAGE, _J_STRUCT, _J_WRAPPER, _J_MAPBODY = 0, 1, 2, 3
_J_LIST0, _J_LIST1, _J_LIST2, _J_LISTED = 4, 5, 6, 7


class _JSONScanner(_Scanner):
    # Outside strings only brackets and quotes matter, found by a regex
    # search in C; inside, only the closing quote, found by bytes.find
    # (memchr: a 1 MiB string in 0.02 ms, against 12 ms for a regex).
    _OUTSIDE = re.compile(rb'["\[\]{}]')

    def reset(self) -> None:
        super().reset()
        self._kinds: list[int] = []
        self._levels = 0
        self._inString = False

    def scan(self, buffer: bytearray) -> int | None:
        size = len(buffer)
        pos = self._pos
        if pos == 0 and size and buffer[0] != 0x5B:
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
            self._need(pos)


_SCANNERS: Final[dict[str, type[_Scanner]]] = {
    "binary": _BinaryScanner,
    "compact": _CompactScanner,
    "json": _JSONScanner,
}


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
    try:
        _SCANNERS[protocol](limits, False).scan(message)  # type: ignore[arg-type]
    except DepthError:
        raise
    except FrameError:
        pass




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
    framed message too short to hold more than C{max_depth} levels is not
    walked either, which spares the small calls that are most of any
    traffic (a walk costs about what decoding them does).
    """
    if transport != "framed":
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
