"""
A zlib stream beneath the framing, as Apache's C{TZlibTransport} sends it:
what comes in is inflated in bounded steps and handed to the connection as
plain bytes; what goes out is deflated by one compressor, flushed
(C{Z_SYNC_FLUSH}) once per write-out so that the peer can read each batch
as soon as it comes.

Two shapes exist on the wire, both told from the first bytes.  A bare
stream (C{TZlibTransport} over the socket, or around C{TBufferedTransport})
starts with the zlib header, C{0x78} and a byte making the pair a multiple
of 31, which no Thrift message starts with.  Around C{TFramedTransport},
each flush is a frame of its own, its payload the next piece of the
stream: a frame length, then the zlib header.  What is inside the stream
is told apart as on a plain connection (framed or not, any protocol).

Decompression bombs: nothing is inflated whole.  Each step inflates at
most L{_STEP} bytes, which the framing then checks against
C{max_frame_size} as it checks a plain read; at most L{_TURN} bytes are
inflated per turn of the reactor; and while the connection's reading is
paused (its requests queued, its peer not reading, the partial budget
spent), nothing more is inflated and nothing more read: the compressed
bytes held are never more than one read.

Knows nothing of messages, services or codecs: the connection it serves
(a L{txthrift._framing.ThriftMessageProtocol}) is known only through
L{ZlibOwner}.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ISSLTransport
from zope.interface import alsoProvides

from ._limits import Limits, defaultReactor
from ._scanning import FrameError
from ._writing import canSendDirectly, send

__all__ = ["ZlibSniffer", "ZlibStream", "zlibShape"]

#: The most bytes inflated at once: the framing sees no bigger piece.
_STEP = 65536

#: The most bytes inflated in one turn of the reactor, as a plain
#: connection reads at most about as much in one.
_TURN = 4 * _STEP

_U32 = struct.Struct(">I")

#: The first byte of a zlib stream (deflate, 32 KiB window), as Python's,
#: Java's and C++'s zlib all write it.
_CMF = 0x78


class ZlibOwner(TypingProtocol):
    """
    The connection a zlib stream serves.
    """

    transport: Any
    limits: Limits
    _zlib: Any

    @property
    def receiving(self) -> bool: ...

    def dataReceived(self, data: bytes) -> None: ...

    def plainReceived(self, data: bytes) -> None: ...

    def frameError(self, reason: str) -> None: ...

    def _partialHeld(self, held: int, completed: bool) -> None: ...

    def _partialClock(self) -> IReactorTime | None: ...


def _isHeader(first: int, second: int) -> bool:
    return first == _CMF and (first << 8 | second) % 31 == 0


def zlibShape(head: bytes, maxFrame: int) -> str | None:
    """
    What the first bytes of a connection say of zlib, frames being at most
    C{maxFrame} bytes long.

    @return: C{"stream"} for a bare zlib stream, C{"framed"} for one in
        frames, C{None} for no zlib at all, C{""} when too few bytes came
        to tell.
    """
    if not head:
        return ""
    first = head[0]
    if first == _CMF:
        return "" if len(head) < 2 else "stream" if _isHeader(first, head[1]) else None
    if first in (0x80, 0x82, 0x5B) or first > maxFrame >> 24:
        # An unframed message's first byte, or one no frame length we take
        # starts with: the framing tells what it is, or refuses it, at once.
        return None
    if len(head) < 5:
        return ""
    if head[4] != _CMF:
        return None
    if len(head) < 6:
        return ""
    return "framed" if _isHeader(head[4], head[5]) else None


class ZlibSniffer:
    """
    The first bytes of a connection that may be a zlib stream: held until
    they tell (six at most), then handed to a L{ZlibStream} or, as they
    are, to the connection.
    """

    def __init__(self, owner: ZlibOwner, required: bool) -> None:
        self._owner = owner
        self._required = required
        self._head = b""

    def dataReceived(self, data: bytes) -> None:
        owner = self._owner
        head = self._head + data
        shape = zlibShape(head, owner.limits.max_frame_size)
        if shape == "":
            self._head = head
            owner._partialHeld(len(head), False)
            return
        self._head = b""
        if shape is None:
            if self._required:
                owner.frameError(f"first bytes {head[:6]!r} start no zlib stream"
                                 " (transport='zlib')")
                return
            owner._zlib = None
            owner.dataReceived(head)
            return
        stream = owner._zlib = ZlibStream(owner, framed=shape == "framed")
        owner.transport = stream.wrap(owner.transport)
        stream.dataReceived(head)

    def wrap(self, transport: Any) -> Any:
        return transport

    def connectionLost(self) -> None:
        self._head = b""


class ZlibStream:
    """
    One connection's zlib stream, both ways: the transport its connection
    writes to (deflating each write) and the reader of what comes in.

    @ivar inflated: bytes inflated so far.
    """

    inflated = 0

    def __init__(self, owner: ZlibOwner, framed: bool) -> None:
        """
        @param framed: whether the stream is in frames (C{TZlibTransport}
            around C{TFramedTransport}), each write-out one frame.
        """
        self._owner = owner
        self._framed = framed
        self._maxFrame = owner.limits.max_frame_size
        self._inflater = zlib.decompressobj()
        self._deflater = zlib.compressobj()
        # Compressed bytes not yet inflated: never more than one read.
        self._input = b""
        # Whether the last step filled up: the inflater may hold more output
        # even when no input is left.
        self._full = False
        # In frames: what is left of the frame begun, or the start of the
        # next frame's length.
        self._frameLeft = 0
        self._prefix = b""
        self._ownerPaused = False
        self._holding = False
        self._pumping = False
        self._later: IDelayedCall | None = None
        self._direct = False
        self.transport: Any = None

    def wrap(self, transport: Any) -> ZlibStream:
        """
        Stand between the connection and C{transport}: return what the
        connection is to write to.
        """
        self.transport = transport
        self._direct = canSendDirectly(transport)
        if ISSLTransport.providedBy(transport):
            alsoProvides(self, ISSLTransport)
        return self

    # Inbound.
    def dataReceived(self, data: bytes) -> None:
        if self._inflater.eof:
            self._owner.frameError("bytes follow the end of the zlib stream")
            return
        if self._framed:
            try:
                data = self._unframe(data)
            except FrameError as error:
                self._owner.frameError(str(error))
                return
        self._input = self._input + data if self._input else data
        self._pump()

    def _unframe(self, data: bytes) -> bytes:
        """
        The payload bytes of the frames C{data} continues.
        """
        pieces: list[bytes] = []
        offset, size = 0, len(data)
        while offset < size:
            if self._frameLeft:
                take = min(self._frameLeft, size - offset)
                pieces.append(data[offset:offset + take])
                self._frameLeft -= take
                offset += take
                continue
            need = 4 - len(self._prefix)
            self._prefix += data[offset:offset + need]
            offset += need
            if len(self._prefix) == 4:
                (length,) = _U32.unpack(self._prefix)
                self._prefix = b""
                if length > self._maxFrame:
                    raise FrameError(f"zlib frame length {length} is over"
                                     f" {self._maxFrame} (max_frame_size)")
                # An empty frame (a flush with nothing to send: Apache's
                # TFramedTransport sends one) holds nothing.
                self._frameLeft = length
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _pump(self) -> None:
        """
        Inflate what came, a step at a time, handing each step to the
        connection, while it reads and this turn's share lasts.
        """
        self._later = None
        if self._pumping:
            return  # Re-entered from the connection: the loop below goes on.
        owner = self._owner
        inflater = self._inflater
        left = _TURN
        self._pumping = True
        try:
            while ((self._input or self._full) and not self._ownerPaused and owner.receiving
                   and left > 0):
                try:
                    step = inflater.decompress(self._input, _STEP)
                except zlib.error as error:
                    owner.frameError(f"invalid zlib stream: {error}")
                    return
                self._input = inflater.unconsumed_tail
                self._full = len(step) == _STEP
                if step:
                    self.inflated += len(step)
                    left -= len(step)
                    owner.plainReceived(step)
                elif self._input and not inflater.eof:  # pragma: no cover - zlib progresses
                    owner.frameError("the zlib stream makes no progress")
                    return
                if inflater.eof and not self._full:
                    # Apache's TZlibTransport never ends its stream, but a
                    # peer that finishes it (Z_FINISH) has its last calls
                    # answered; nothing may follow.
                    self._input = b""
                    if inflater.unused_data:
                        owner.frameError("bytes follow the end of the zlib stream")
                        return
        finally:
            self._pumping = False
        self._holdReading()

    def _holdReading(self) -> None:
        """
        Read no more while compressed bytes wait, and inflate them on the
        next turn unless the connection's reading is paused.
        """
        if not self._owner.receiving or self.transport is None:
            return
        if self._input or self._full:
            if not self._holding:
                self._holding = True
                self.transport.pauseProducing()
            if not self._ownerPaused and self._later is None:
                clock = self._owner._partialClock() or defaultReactor()
                self._later = clock.callLater(0, self._pump)
        elif self._holding:
            self._holding = False
            if not self._ownerPaused:
                self.transport.resumeProducing()

    def connectionLost(self) -> None:
        later, self._later = self._later, None
        if later is not None and later.active():
            later.cancel()
        self._input, self._full = b"", False

    # Outbound: the transport the connection writes to.
    def write(self, data: bytes) -> None:
        if data:
            deflater = self._deflater
            self._send(deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH))

    def writeSequence(self, parts: Sequence[bytes]) -> None:
        deflater = self._deflater
        pieces = [deflater.compress(part) for part in parts]
        pieces.append(deflater.flush(zlib.Z_SYNC_FLUSH))
        self._send(b"".join(pieces))

    def _send(self, data: bytes) -> None:
        if self._framed:
            data = _U32.pack(len(data)) + data
        if self._direct:
            send(self.transport, data)
        else:
            self.transport.write(data)

    def pauseProducing(self) -> None:
        self._ownerPaused = True
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._ownerPaused = False
        if self._input or self._full:
            # What is held is inflated first: reading resumes after it.
            self._holding = True
            self._holdReading()
        else:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.transport.stopProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def loseConnection(self) -> None:
        self.transport.loseConnection()

    def abortConnection(self) -> None:
        self.transport.abortConnection()

    def getPeer(self) -> Any:
        return self.transport.getPeer()

    def getHost(self) -> Any:
        return self.transport.getHost()

    def getPeerCertificate(self) -> Any:
        return self.transport.getPeerCertificate()

    @property
    def disconnecting(self) -> bool:
        return bool(getattr(self.transport, "disconnecting", False))
