"""
The client side: calls pipelined on one connection, matched to their
replies by seqid, with timeouts, cancellation and clear failures.

Owned here: L{ClientProtocol} (pending calls by seqid, timeouts, a reply
that fails only its own call where the stream stays in sync),
L{ClientFactory}, the generated-service surface L{Client}, and the seqid
allocation L{nextSeqid} that L{txthrift.TTwisted}'s client shares.  Nothing
here knows of servers, dispatch or hosting.

Its hot path, for framed binary: the replies of a read are cut and their
headers read in one loop (C{txthrift._speedups.cutReplies}, in C where it
was built; L{_cutRepliesInPython} otherwise), and each call is encoded by
an encoder made once per method (L{Codec.encoder}).
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable, Container, Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException, TException, TMessageType
from thrift.transport.TTransport import TTransportException
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._budget import budgetFor
from ._codec import Codec
from ._framing import NamedLogger, ThriftMessageProtocol, _Framed
from ._header import ClientHeaders, Envelope, transformIds
from ._limits import Limits, defaultReactor
from ._nogc import BIG_MESSAGE, noCollections
from ._scanning import checkDepth, largeMessageSizes
from ._service import Method, ServiceSpec, describe, shortName

__all__ = ["CallTimeout", "Client", "ClientFactory", "ClientProtocol", "ReplyDecoding",
           "encodeCall", "nextSeqid"]

log = Logger(namespace="txthrift.client")

_REPLY, _EXCEPTION = TMessageType.REPLY, TMessageType.EXCEPTION

#: The largest seqid: a seqid is an i32 on the wire.
_MAX_SEQID = 0x7FFFFFFF
#: Seqids of timed-out or cancelled calls kept out of use until their late
#: reply comes; past this many, the oldest are let go (they come round again
#: only after 2**31 more calls).
_MAX_ABANDONED = 16384
#: First bytes of an oversized reply kept to read its header (name, seqid).
_HEAD_BYTES = 4096
#: Characters of a decoder's message shown in errors.
_WHY_SHOWN = 200


def nextSeqid(last: int, pending: Container[int], abandoned: Container[int] = ()) -> int:
    """
    The seqid for the call after the one that took C{last}: the next one up,
    wrapping to 1 past the largest i32, skipping those of calls still
    awaiting their reply (C{pending}) or whose late reply may yet come
    (C{abandoned}), so that replies can be told apart in any order.
    """
    seqid = last
    while True:
        seqid = seqid % _MAX_SEQID + 1
        if seqid not in pending and seqid not in abandoned:
            return seqid


def encodeCall(codec: Codec, limits: Limits, method: Method, name: str, seqid: int,
               argsStruct: Any) -> bytes:
    """
    The message of one call of C{method}, sent as C{name}.

    @raise TTransportException: of type C{SIZE_LIMIT} for a call over
        C{max_frame_size}, which must not be sent: the server would close
        the connection, failing every call on it.
    @raise Exception: whatever the encoder raises for arguments it cannot
        encode.
    """
    message = codec.encode(name, TMessageType.CALL if method.result else TMessageType.ONEWAY,
                           seqid, argsStruct)
    if len(message) > limits.max_frame_size:
        raise callTooBig(name, len(message), limits.max_frame_size)
    return message


def callTooBig(name: str, size: int, limit: int) -> TTransportException:
    """
    Why a call of C{size} bytes, over C{max_frame_size}, was not sent: the
    server would close the connection, failing every call on it.
    """
    return TTransportException(
        TTransportException.SIZE_LIMIT,
        f"the {shortName(name)} call is {size} bytes, over this client's"
        f" max_frame_size of {limit}; nothing was sent")


_FRAME_LENGTH = struct.Struct(">i")
# A strict binary message's version word, type and name length: the version
# word 0x8001, then a byte nobody reads, then the type byte.
_BINARY_START = struct.Struct(">HxBi")


def _cutRepliesInPython(buffer: bytes, maxFrame: int, maxName: int,
                        replies: list[tuple[int, int, str, bytes, int]]) -> int:
    """
    C{txthrift._speedups.cutReplies}, for where it was not built: append
    C{(seqid, type, name, message, where its body starts)} for each frame
    from the start of C{buffer} that is whole, of a length in
    1..C{maxFrame}, holding a strict binary message whose name (UTF-8, at
    most C{maxName} bytes) and seqid fit in it; stop at the first that is
    not (the framer and the codec deal with it).

    @return: the bytes taken.
    """
    size = len(buffer)
    offset = 0
    while size - offset >= 4:
        (length,) = _FRAME_LENGTH.unpack_from(buffer, offset)
        end = offset + 4 + length
        if not 0 < length <= maxFrame or end > size or length < 12:
            break
        version, mtype, nameLength = _BINARY_START.unpack_from(buffer, offset + 4)
        if version != 0x8001 or not 0 <= nameLength <= maxName or nameLength > length - 12:
            break
        nameEnd = offset + 12 + nameLength
        try:
            name = buffer[offset + 12 : nameEnd].decode("utf-8")
        except UnicodeDecodeError:
            break
        (seqid,) = _FRAME_LENGTH.unpack_from(buffer, nameEnd)
        replies.append((seqid, mtype, name, buffer[offset + 4 : end], 12 + nameLength))
        offset = end
    return offset


try:
    from ._speedups import cutReplies
except ImportError:  # pragma: no cover - built without a C compiler
    cutReplies = _cutRepliesInPython


class CallTimeout(TTransportException):
    """
    A call got no reply in time.  Its late reply, if one comes, is dropped.
    """

    def __init__(self, message: str) -> None:
        super().__init__(TTransportException.TIMED_OUT, message)


#: A call awaiting its reply: its Deferred, its method, the name it was sent
#: as (C{"Service:method"} when multiplexed), its timer, and whether the
#: caller wants the reply's THeader headers too.  A tuple, not an object:
#: one is made and taken apart per call.
_Call = tuple[Deferred[Any], Method, str, IDelayedCall | None, bool]


class _Oversized(bytes):
    """
    The first bytes of a reply frame over C{max_frame_size}, standing in for
    the frame, whose rest is skipped unread.

    @ivar length: the frame's length.
    """

    length: int


class _ReplyFraming(_Framed):
    """
    Framed replies, where a frame over C{max_frame_size} is skipped as it
    arrives instead of closing the connection: its length says where the
    next one starts, so the stream stays in sync and only its call fails.

    It hands on an L{_Oversized} with the frame's first bytes in its place.
    """

    def __init__(self, protocol: str, limits: Limits) -> None:
        super().__init__(protocol, limits)
        # The length of an oversized frame being skipped, and its first bytes.
        self._length = 0
        self._head = bytearray()
        self._headSize = 0

    def _oversized(self, length: int, rest: bytes, messages: list[bytes]) -> bytes:
        if length <= 0:
            # Not a length at all: the stream lost sync.
            return super()._oversized(length, rest, messages)
        self._skipping = self._length = length
        self._headSize = min(length, _HEAD_BYTES)
        return self._skip(rest, messages)

    def _skip(self, data: bytes, messages: list[bytes]) -> bytes:
        """
        Skip what C{data} holds of an oversized frame, keeping its first
        bytes; once they are there, hand them on.

        @return: the bytes after the frame.
        """
        take = min(self._skipping, len(data))
        head = self._head
        if self._headSize:
            head += data[: min(self._headSize - len(head), take)]
            if len(head) == self._headSize:
                stand = _Oversized(head)
                stand.length = self._length
                messages.append(stand)
                head.clear()
                self._headSize = 0
        self._skipping -= take
        return data[take:]

    def holding(self) -> bool:
        """
        Whether a frame is begun or being skipped, so that what comes next
        must go through L{feed}.
        """
        return bool(self._parts) or self._skipping > 0

    def buffered(self) -> int:
        """
        Bytes held of a message not yet whole: of an oversized one, only the
        first bytes kept; the rest is never held.
        """
        return super().buffered() + len(self._head)


class ReplyDecoding:
    """
    A whole reply turned into its call's outcome: shared by L{ClientProtocol}
    and the HTTP client (L{txthrift._httpclient}), so that both check, walk
    and decode replies alike and fail a bad one with the same error.

    Subclasses set C{_codec}, C{limits}, C{protocolName} and, from
    L{largeMessageSizes}, C{_depthFloor} and C{_largeFrom}.
    """

    _codec: Codec
    limits: Limits
    protocolName: str
    _depthFloor: int
    _largeFrom: int

    def replyOutcome(self, message: bytes, method: Method, name: str, seqid: int) -> Any:
        """
        The outcome of C{message}, the one reply to the call of C{method}
        sent as C{name} with C{seqid}, where nothing else could be its
        answer (L{ClientProtocol} matches replies itself, in its hot path).

        @return: the result, or a L{Failure} of the declared exception or of
            a L{TApplicationException}: the server's, or one saying why the
            reply was refused (unreadable, of the wrong type, method or
            seqid, or undecodable).
        """
        try:
            iprot, replyName, mtype, replySeqid = self._codec.readHeader(message)
        except Exception as error:
            return Failure(TApplicationException(
                TApplicationException.PROTOCOL_ERROR,
                f"unreadable reply to {method.name}: {whyUndecodable(error, 'reply header')}"))
        if (mtype != _REPLY and mtype != _EXCEPTION) or (
                mtype == _REPLY and replyName != name and replyName != method.name):
            return Failure(mismatchedReply(method, replyName, mtype))
        if replySeqid != seqid:
            return Failure(TApplicationException(
                TApplicationException.BAD_SEQUENCE_ID,
                f"{method.name} got the reply to seqid {replySeqid}, not {seqid}"))
        try:
            if len(message) < self._largeFrom:
                return self._decode(iprot, mtype, method)
            return self._decodeLarge(message, iprot, mtype, method)
        except Exception as error:
            return Failure(malformedReply(method, error))

    def _decodeLarge(self, message: bytes, iprot: Any, mtype: int, method: Method) -> Any:
        """
        L{_decode} for a reply big enough to be walked for depth first, or
        to be decoded with the collector held off.
        """
        if len(message) >= self._depthFloor:
            checkDepth(message, self.protocolName, self.limits)
        if len(message) < BIG_MESSAGE:
            return self._decode(iprot, mtype, method)
        with noCollections:
            return self._decode(iprot, mtype, method)

    def _decode(self, iprot: Any, mtype: int, method: Method) -> Any:
        """
        A reply's outcome: its result, or a L{Failure} of what it raised.
        """
        if mtype == TMessageType.EXCEPTION:
            remote = TApplicationException()
            self._codec.readBody(iprot, remote)
            return Failure(remote)
        return self._result(self._codec, method, iprot)

    @classmethod
    def _result(cls, codec: Codec, method: Method, iprot: Any) -> Any:
        assert method.result is not None
        result = method.result()
        codec.readBody(iprot, result)
        return cls._outcome(method, result)

    @staticmethod
    def _outcome(method: Method, result: Any) -> Any:
        """
        A decoded result struct's outcome: the declared exception it holds,
        its C{success}, or a failure saying it holds neither.
        """
        for field, _ in method.exceptions:
            error = getattr(result, field)
            if error is not None:
                return Failure(error)
        if not method.returnsValue:
            return None
        if result.success is None:
            return Failure(TApplicationException(TApplicationException.MISSING_RESULT,
                                                 f"{method.name} failed: unknown result"))
        return result.success


class ClientProtocol(ThriftMessageProtocol, ReplyDecoding):
    """
    The client end of one connection.

    Every call gets its own seqid (wrapping before the i32 overflows and
    skipping ids whose reply may still come), so replies may come in any
    order.

    A bad reply on a stream still in sync fails its own call only: one of
    another message type or method, one whose body cannot be decoded
    (framed), one over C{max_frame_size} (framed: skipped unread).  A reply
    that cannot be tied to a call, or cannot be decoded on an unframed
    stream (whose message ends are found by walking the bytes), closes the
    connection, and every pending call fails saying why.

    @ivar client: the L{Client} calling through it, when a L{ClientFactory}
        built it.
    """

    client: Client
    #: Whether L{close} was called.
    _closing = False
    #: What the failures of calls on a lost connection add to its reason.
    _hint = ""
    log: ClassVar[Logger] = NamedLogger(namespace="txthrift.client")

    def __init__(self, clock: IReactorTime, transport: str = "framed",
                 protocol: str = "binary", limits: Limits | None = None, *,
                 headers: Mapping[str, str] | None = None,
                 transforms: Sequence[str] = ()) -> None:
        """
        @param headers: THeader headers every call sends (C{transport="header"}).
        @param transforms: what THeader does to each call's payload: C{"zlib"}.
        """
        if transport == "auto" or protocol == "auto":
            raise ValueError("a client must choose its transport and protocol; 'auto' is"
                             " for servers")
        super().__init__("zlib" if transport == "zlib-buffered" else transport, protocol, limits)
        if transport == "framed":
            self.framer = _ReplyFraming(protocol, self.limits)
        elif transport == "zlib" or transport == "zlib-buffered":
            self.speakZlib(framed=transport == "zlib")
        self._clock = clock
        self._codec = Codec(protocol, self.limits)
        self._headers: ClientHeaders | None = None
        if transport == "header":
            self._codec = self._headers = ClientHeaders(self._codec, self.limits, headers,
                                                        transformIds(transforms))
        elif headers or transforms:
            raise ValueError(f"{'headers' if headers else 'transforms'}= needs"
                             " transport='header' (headers: or an http:// or ws:// URL)")
        self._depthFloor, self._largeFrom = largeMessageSizes(
            transport, protocol, self.limits, self._codec.checksDepth)
        self._pending: dict[int, _Call] = {}
        self._maxFrame = self.limits.max_frame_size
        self._maxName = self.limits.string_limit
        # What cuts framed strict binary replies, where they are.
        self._cutReplies = cutReplies if (
            transport == "framed" and self._headers is None and self._codec.plainBinary) else None
        # Each method's call encoder, and the name it encodes.
        self._encoders: dict[Method, tuple[str, Callable[[int, Any], bytes]]] = {}
        # Seqids of calls timed out or cancelled, in that order: the server
        # may still answer them, so no new call takes them until it does.
        self._abandoned: dict[int, None] = {}
        self._seqid = 0
        self._lostReason: Failure | None = None
        self._closeWaiters: list[Deferred[None]] = []
        # Whether any reply came: a server that closes before answering
        # anything may expect another framing.
        self._answered = False

    @property
    def pending(self) -> int:
        """
        How many calls await their reply.
        """
        return len(self._pending)

    def call(self, method: Method, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
             timeout: float | None, *, headers: Mapping[str, str] | None = None,
             replyHeaders: bool = False) -> Deferred[Any]:
        """
        Send one call.

        @param name: the name on the wire (C{"Service:method"} when multiplexed).
        @return: a Deferred firing with the result, failing with the declared
            exception, a L{TApplicationException} (sent by the server, or
            for a reply of the wrong type or method, or one that cannot be
            decoded), a L{CallTimeout}, or a L{TTransportException}: of type
            C{SIZE_LIMIT} for a call or reply over C{max_frame_size} (a call
            that big is not sent), C{NOT_OPEN} when the connection is or gets
            lost.  Cancelling it forgets the call.  With C{replyHeaders}, it
            fires with C{(result, the reply's THeader headers)} instead.
        @param headers: THeader headers this call sends too.
        @raise TypeError: for arguments the method does not take.
        @raise ValueError: for C{headers} or C{replyHeaders} on a connection
            that is not THeader.
        """
        argsStruct = method.args(*args, **kwargs)
        if (headers or replyHeaders) and self._headers is None:
            raise ValueError(f"headers are for transport='header', not {self.transportName!r}")
        if self._lostReason is not None or self.transport is None:
            return fail(self._notConnected())
        # nextSeqid, inlined for the common case: the next one up is free.
        seqid = self._seqid % _MAX_SEQID + 1
        if seqid in self._pending or seqid in self._abandoned:
            seqid = nextSeqid(seqid, self._pending, self._abandoned)
        self._seqid = seqid
        try:
            encoder = self._encoders.get(method)
            if encoder is None or encoder[0] != name:
                encoder = self._encoderOf(method, name)
            message = encoder[1](seqid, argsStruct)
            if len(message) > self._maxFrame:
                raise callTooBig(name, len(message), self._maxFrame)
            if self._headers is not None:
                # Its size is checked, as it is: THeader's header adds little, and
                # a transform does not make a call over max_frame_size fit.
                message = self._headers.seal(message, seqid, headers)
        except Exception:
            return fail()
        if method.result is None:  # Oneway.
            self.sendMessage(message)
            return succeed(None)
        deferred: Deferred[Any] = Deferred(lambda d: self._forget(seqid))
        timer = None
        if timeout is not None:
            timer = self._clock.callLater(timeout, self._timedOut, seqid, name, timeout)
        self._pending[seqid] = (deferred, method, name, timer, replyHeaders)
        self.sendMessage(message)
        return deferred

    def _encoderOf(self, method: Method, name: str) -> tuple[str, Callable[[int, Any], bytes]]:
        """
        What encodes calls of C{method} sent as C{name}, kept for the next.
        """
        mtype = TMessageType.CALL if method.result else TMessageType.ONEWAY
        encoder = self._encoders[method] = (name, self._codec.encoder(name, mtype, method.args))
        return encoder

    def _notConnected(self) -> TTransportException:
        reason = self._lostReason
        if self.refusal is not None:
            # Say what was wrong, not just that the connection closed.
            why = f"the server's reply was refused: {self.refusal}"
        else:
            why = reason.getErrorMessage() if reason is not None else "not connected"
            why += self._hint
        return TTransportException(TTransportException.NOT_OPEN,
                                   f"Thrift connection is closed: {why}")

    def _forget(self, seqid: int) -> None:
        call = self._pending.pop(seqid, None)
        if call is not None:
            self._abandon(seqid)
            timer = call[3]
            if timer is not None and timer.active():
                timer.cancel()

    def _timedOut(self, seqid: int, name: str, timeout: float) -> None:
        call = self._pending.pop(seqid, None)
        if call is not None:
            self._abandon(seqid)
            call[0].errback(CallTimeout(f"{name} got no reply within {timeout} seconds"))

    def _abandon(self, seqid: int) -> None:
        """
        Keep a seqid whose reply may still come from new calls.
        """
        abandoned = self._abandoned
        abandoned[seqid] = None
        while len(abandoned) > _MAX_ABANDONED:
            del abandoned[next(iter(abandoned))]

    def messageReceived(self, message: bytes) -> None:
        self._answered = True
        headers = self._headers
        try:
            iprot, name, mtype, seqid = self._codec.readHeader(message)
        except Exception as error:
            self._unreadableHeader(message, error)
            return
        call = self._pending.pop(seqid, None)
        if call is None:
            self._unexpected(name, seqid)
            return
        if headers is not None:
            message = headers.payload
        self._answer(call, name, mtype, message, iprot, headers)

    def _handle(self, data: bytes) -> None:
        # Framed strict binary replies are cut, and their headers read, in one
        # loop (in C where txthrift._speedups was built), not message by
        # message; and the common reply (a REPLY, small enough to decode at
        # once) is answered here, calling nothing but the codec and the
        # caller's callbacks.  The rest go the way of any other message.
        framer = self.framer
        cut = self._cutReplies
        if cut is None or type(framer) is not _ReplyFraming or framer.holding():
            super()._handle(data)
            return
        replies: list[tuple[int, int, str, bytes, int]] = []
        taken = cut(data, self._maxFrame, self._maxName, replies)
        # What follows goes to the framer before any reply is handed on, as
        # all of a read does: a caller's callback may bring in the next read.
        messages, refused = self._cut(data[taken:]) if taken < len(data) else ([], None)
        if replies:
            self._answered = True
            pending = self._pending
            codec = self._codec
            largeFrom = self._largeFrom
            for seqid, mtype, name, message, start in replies:
                if self._broken:
                    return
                call = pending.pop(seqid, None)
                if call is None:
                    self._unexpected(name, seqid)
                    continue
                deferred, method, callName, timer, replyHeaders = call
                if timer is not None and timer.active():
                    timer.cancel()
                if mtype != _REPLY or (name != callName and name != method.name) or (
                        len(message) >= largeFrom or replyHeaders):
                    self._answer(call, name, mtype, message, codec.readerAt(message, start), None)
                    continue
                assert method.result is not None
                try:
                    result = method.result()
                    codec.readBodyAt(message, start, result)
                except Exception as error:
                    self._malformed(call, error)
                    continue
                if method.exceptions or not method.returnsValue or result.success is None:
                    self._fire(call, self._outcome(method, result), None)
                else:
                    deferred.callback(result.success)
        self._handOn(messages, refused)

    def _answer(self, call: _Call, name: str, mtype: int, message: bytes, iprot: Any,
                headers: ClientHeaders | None) -> None:
        """
        Answer C{call} with its reply, C{message}, whose header (C{name},
        C{mtype}) C{iprot} has read.
        """
        timer = call[3]
        if timer is not None and timer.active():
            timer.cancel()
        method = call[1]
        if type(message) is _Oversized:
            self._skipped(call, message.length)
            return
        # Checked in the order of Apache's generated clients: a server's
        # exception whatever its name, then the type, then the name.
        if (mtype != _REPLY and mtype != _EXCEPTION) or (
                mtype == _REPLY and name != call[2] and name != method.name):
            self._mismatched(call, name, mtype)
            return
        try:
            if len(message) < self._largeFrom:
                outcome = self._decode(iprot, mtype, method)
            else:
                outcome = self._decodeLarge(message, iprot, mtype, method)
        except Exception as error:
            self._malformed(call, error)
            return
        self._fire(call, outcome, headers)

    @staticmethod
    def _fire(call: _Call, outcome: Any, headers: ClientHeaders | None) -> None:
        if call[4]:
            outcome = withReplyHeaders(outcome, None if headers is None else headers.envelope)
        if isinstance(outcome, Failure):
            call[0].errback(outcome)
        else:
            call[0].callback(outcome)

    def _unreadableHeader(self, message: bytes, error: Exception) -> None:
        # No call to fail alone: fail them all rather than leave one waiting
        # for ever.
        why = whyUndecodable(error, "reply header")
        if isinstance(message, _Oversized):
            self.frameError(
                f"a reply of {message.length} bytes, over max_frame_size"
                f" {self.limits.max_frame_size}, has an unreadable header: {why}")
        else:
            self.frameError(f"unreadable reply header: {why}")

    def _unexpected(self, name: str, seqid: int) -> None:
        if self._abandoned.pop(seqid, 0) is None:
            log.info("dropping a late reply to {name} (seqid {seqid})",
                     name=shortName(name), seqid=seqid)
        else:
            log.info("dropping a reply to {name} with no pending call (seqid {seqid})",
                     name=shortName(name), seqid=seqid)

    def _skipped(self, call: _Call, length: int) -> None:
        call[0].errback(TTransportException(
            TTransportException.SIZE_LIMIT,
            f"the reply to {call[1].name} is {length} bytes, over this"
            f" client's max_frame_size of {self.limits.max_frame_size}; it was skipped"))

    def _mismatched(self, call: _Call, name: str, mtype: int) -> None:
        call[0].errback(mismatchedReply(call[1], name, mtype))

    def _malformed(self, call: _Call, error: Exception) -> None:
        malformed = malformedReply(call[1], error)
        call[0].errback(malformed)
        why = str(malformed.message)
        if self.transportName != "framed":
            # Where the message ended was found by walking bytes the decoder
            # disagrees with: the stream cannot be trusted.
            self.frameError(why)

    def close(self) -> Deferred[None]:
        """
        Close the connection; pending calls fail.

        @return: a Deferred firing once the connection is closed.
        """
        if self._lostReason is not None or self.transport is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._closing = True
        self._closeWaiters.append(waiter)
        self.transport.loseConnection()
        return waiter

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self._lostReason = reason
        self._abandoned.clear()
        pending, self._pending = self._pending, {}
        if pending and not self._answered and not self._closing:
            other = "buffered" if self.transportName == "framed" else "framed"
            self._hint = (f" (the server closed it before any reply: if it expects {other}"
                          f" messages, connect with transport={other!r}; or it refused the"
                          f" call's service or method)")
        for deferred, _, _, timer, _ in pending.values():
            if timer is not None and timer.active():
                timer.cancel()
            deferred.errback(self._notConnected())
        waiters, self._closeWaiters = self._closeWaiters, []
        for waiter in waiters:
            waiter.callback(None)


def _codeNames(cls: type) -> dict[int, str]:
    return {value: key for key, value in vars(cls).items()
            if key.isupper() and isinstance(value, int)}


_PROTOCOL_CODES = _codeNames(TProtocolException)
_TRANSPORT_CODES = _codeNames(TTransportException)
_MESSAGE_TYPES = _codeNames(TMessageType)


def _typeName(mtype: int) -> str:
    name = _MESSAGE_TYPES.get(mtype)
    return f"{mtype} ({name})" if name else str(mtype)


def whyUndecodable(error: BaseException, what: str = "reply body") -> str:
    """
    What a decoder's exception says went wrong in C{what}, with its type:
    Apache's decoders often raise with no message at all (C{EOFError()} for
    a body cut short, C{TProtocolException} with only a code).
    """
    message = error.message if isinstance(error, TException) else str(error)
    text = "" if message is None else str(message)
    kind = type(error).__name__
    code = getattr(error, "type", None)
    names = (_PROTOCOL_CODES if isinstance(error, TProtocolException)
             else _TRANSPORT_CODES if isinstance(error, TTransportException) else {})
    if isinstance(code, int) and code in names:
        kind = f"{kind} {names[code]}"
    if not text:
        truncated = isinstance(error, EOFError) or (
            isinstance(error, TTransportException) and code == TTransportException.END_OF_FILE)
        text = f"truncated {what}" if truncated else "no detail given"
    elif len(text) > _WHY_SHOWN:
        text = f"{text[:_WHY_SHOWN]}..."
    return f"{text} ({kind})"


def mismatchedReply(method: Method, name: str, mtype: int) -> TApplicationException:
    """
    Why a reply named C{name} of type C{mtype} is no answer to C{method}.
    """
    if mtype not in (TMessageType.REPLY, TMessageType.EXCEPTION):
        return TApplicationException(
            TApplicationException.INVALID_MESSAGE_TYPE,
            f"{method.name} got a message of type {_typeName(mtype)} in reply,"
            " not REPLY or EXCEPTION")
    # A multiplexing server may answer with or without the service.
    return TApplicationException(TApplicationException.WRONG_METHOD_NAME,
                                 f"{method.name} got a reply to {shortName(name)!r}")


def malformedReply(method: Method, error: BaseException) -> TApplicationException:
    """
    The failure of a call whose reply's body could not be decoded.
    """
    return TApplicationException(TApplicationException.PROTOCOL_ERROR,
                                 f"malformed reply to {method.name}: {whyUndecodable(error)}")


def withReplyHeaders(outcome: Any, envelope: Envelope | None) -> Any:
    """
    A call's outcome with its reply's headers: C{(result, headers)}, or the
    failure, its exception given a C{replyHeaders} attribute.
    """
    headers = dict(envelope.headers) if envelope is not None else {}
    if isinstance(outcome, Failure):
        try:
            # Generated exceptions refuse assignment (they are immutable).
            object.__setattr__(outcome.value, "replyHeaders", headers)
        except (AttributeError, TypeError):  # pragma: no cover - one with __slots__
            pass
        return outcome
    return (outcome, headers)


class Client:
    """
    Calls a service's methods over a L{ClientProtocol}; subclassed per
    service, with one method per service method (inherited ones included),
    each returning a Deferred.

    A call takes the service method's arguments and, unless the method has
    an argument of that name, C{timeout=} seconds overriding the client's
    default for that call (C{None}: wait for ever), and on a THeader
    connection C{headers=} it sends too.  L{withReplyHeaders} gives the
    reply's headers as well.
    """

    #: Whether calls fire with C{(result, reply headers)}.
    _replyHeaders = False

    service: ClassVar[ServiceSpec]
    _classes: ClassVar[dict[ModuleType, type[Client]]] = {}

    def __init__(self, protocol: ClientProtocol, *, timeout: float | None = None,
                 service_name: str | None = None) -> None:
        self.protocol = protocol
        self.timeout = timeout
        self._prefix = f"{service_name}:" if service_name else ""

    @classmethod
    def forService(cls, service: ModuleType) -> type[Client]:
        """
        The L{Client} subclass for a generated service module.
        """
        sub = cls._classes.get(service)
        if sub is None:
            spec = describe(service)
            namespace: dict[str, Any] = {"service": spec, "__doc__": f"A client of {spec.name}."}
            for method in spec.methods.values():
                namespace[method.name] = _clientMethod(method, spec.name)
            sub = cls._classes[service] = type(f"{spec.name}Client", (cls,), namespace)
        return sub

    @property
    def withReplyHeaders(self) -> Any:
        """
        This client, its calls firing with C{(result, headers)}: the reply's
        THeader headers; a failed call's exception has them as
        C{replyHeaders}.  (C{transport="header"} only.)
        """
        other = copy.copy(self)
        other._replyHeaders = True
        return other

    def close(self) -> Deferred[None]:
        """
        Close the connection (if a service method is called C{close}, reach
        this as C{Client.close(client)}).

        @return: a Deferred firing once it is closed.
        """
        return self.protocol.close()


def _clientMethod(method: Method, serviceName: str) -> Callable[..., Deferred[Any]]:
    name = method.name
    ownTimeout = "timeout" in method.argNames
    ownHeaders = "headers" in method.argNames

    def call(self: Client, *args: Any, **kwargs: Any) -> Deferred[Any]:
        if not kwargs and not self._replyHeaders:
            return self.protocol.call(method, self._prefix + name, args, kwargs, self.timeout)
        timeout = self.timeout
        if not ownTimeout and "timeout" in kwargs:
            timeout = kwargs.pop("timeout")
        headers = None if ownHeaders else kwargs.pop("headers", None)
        if headers is None and not self._replyHeaders:
            return self.protocol.call(method, self._prefix + name, args, kwargs, timeout)
        return self.protocol.call(method, self._prefix + name, args, kwargs, timeout,
                                  headers=headers, replyHeaders=self._replyHeaders)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = (f"Call {serviceName}.{name}({', '.join(method.argNames)})"
                    f"{' (oneway: fires once sent)' if method.oneway else ''}.")
    return call


class ClientFactory(Factory):
    """
    Builds L{ClientProtocol}s, each with its L{Client} as C{protocol.client}.
    """

    noisy = False

    def __init__(self, service: ModuleType, *, transport: str = "framed",
                 protocol: str = "binary", limits: Limits | None = None,
                 timeout: float | None = None, service_name: str | None = None,
                 clock: IReactorTime | None = None,
                 headers: Mapping[str, str] | None = None,
                 transforms: Sequence[str] = ()) -> None:
        self.clientClass = Client.forService(service)
        self.transport = transport
        self.protocolName = protocol
        self.limits = limits or Limits()
        #: What the connections' partial replies may hold together.
        self.partialBudget = budgetFor(self.limits)
        self.timeout = timeout
        self.serviceName = service_name
        self.clock: IReactorTime = clock or defaultReactor()
        self.headers = headers
        self.transforms = tuple(transforms)
        # Fail here, not at connection time, on a bad choice.
        ClientProtocol(self.clock, transport, protocol, self.limits, headers=headers,
                       transforms=self.transforms)

    def buildProtocol(self, addr: Any) -> ClientProtocol:
        proto = ClientProtocol(self.clock, self.transport, self.protocolName, self.limits,
                               headers=self.headers, transforms=self.transforms)
        proto.factory = self
        proto.client = self.clientClass(proto, timeout=self.timeout,
                                        service_name=self.serviceName)
        return proto
