# ruff: noqa: N999 -- the module keeps the name of Apache's, which it replaces
"""
A drop-in replacement for Apache Thrift's C{thrift.transport.TTwisted}.

Code written against Apache's module, with C{thrift --gen py:twisted}
generated clients and processors, keeps working when it imports this module
instead::

    from txthrift import TTwisted

The classes keep Apache's names, constructor signatures and attributes and
speak the same wire format (framed, with any protocol factory), so the other
end may still be Apache's.  They are thin adapters over txthrift's framing,
codec and server layers, and differ from Apache's where Apache's misbehave:

  - a reply with an unknown seqid or method name is logged and dropped; it
    no longer kills the connection and every call waiting on it;
  - after a disconnect, pending calls and any later ones fail with a
    L{TTransportException} (later ones as a failed Deferred, not by raising
    C{AttributeError});
  - a handler that fails, returns what cannot be encoded, or raises a
    L{TTransportException} gets its caller a L{TApplicationException}; the
    caller never hangs or gets a wrong value, and the connection stays up;
  - frames are limited to C{MAX_LENGTH} bytes (16,384,000, Apache's), and a
    connection closed for announcing a bigger one says so in the log;
  - sequence ids wrap before they overflow an i32;
  - a request that cannot be decoded gets a L{TApplicationException} reply;
  - a call that fails while it is being encoded leaves no bytes behind to
    corrupt the next call.

Every public method and attribute of Apache's classes, those their
protocols inherit from Twisted's C{Int32StringReceiver} included, is here
with Apache's meaning, and overriding it in a subclass takes effect
(C{stringReceived}, C{dispatch}, C{processOk}, C{processError},
C{sendString}, C{lengthLimitExceeded}, C{MAX_LENGTH}, ...).  Beyond the
fixes above, they differ in that C{MAX_LENGTH} is read when the connection
is made, not at every read; C{structFormat} and C{prefixLength} describe
the framing but do not change it; C{stopProducing} closes the connection
with C{loseConnection}; a processor that raises, rather than return a failed
Deferred, reaches C{processError} too; and the server looks for overridden
C{processOk}, C{processError}, C{dispatch}, C{sendString} and
C{stringReceived} once, when a protocol is built, taking Apache's slower
path only for those a subclass overrides.

L{ThriftResource}, Apache's C{twisted.web} resource (one message per C{POST}
body, any path below it), differs in that a processor that fails answers
C{500} instead of leaving the request unanswered for ever, a request whose
client goes cancels the processor's work, and a method other than C{POST}
gets C{405} with C{Allow: POST} (Apache's names its methods as C{str},
which C{twisted.web} cannot join, and answers C{500}).  For new code,
L{txthrift.web.ThriftResource} serves handlers too, with every protocol
detected, limits and timeouts.

L{ThriftSASLClientProtocol}, Apache's SASL client (C{pure-sasl}: the extra
C{txthrift[sasl]}), works on Python 3 (Apache's calls a method by a name it
never set, and mixes C{str} and C{bytes}); its C{started} fails with a
L{txthrift._sasl.SASLError} naming the server's reason when the handshake
is refused, where Apache's never fires.

Owned here: Apache's names and meanings only.  The protocols are txthrift's
framing protocol (and server connection) with Apache's methods on top; they
use the layers through their hooks -- a framer's C{held} and
C{refusedLength}, a server connection's C{dispatcher}, C{_makeCodec} and
arrival-only C{messageReceived} -- and share the seqid allocation of
L{txthrift._client}.  What a request's reply is, and how connections keep
within their limits, is for those layers to know, not this module.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import replace
from io import BytesIO
from typing import Any

from thrift.protocol.TProtocol import TProtocolBase, TProtocolException, TProtocolFactory
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import (
    DEFAULT_MAX_FRAME_SIZE,
    TMemoryBuffer,
    TTransportBase,
    TTransportException,
)
from twisted.internet import protocol
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IAddress
from twisted.logger import Logger
from twisted.protocols.basic import StringTooLongError
from twisted.python.failure import Failure
from twisted.web import http, resource, server
from zope.interface import Attribute, Interface, implementer

from ._client import nextSeqid, whyUndecodable
from ._codec import Codec, withStoredHeader
from ._dispatch import Reply, makeDispatcher, processorService
from ._framing import ThriftMessageProtocol, _Framed, makeFramer
from ._limits import Limits, defaultReactor
from ._sasl import (
    BAD,
    COMPLETE,
    ERROR,
    OK,
    START,
    ClientHandshake,
    SaslClientSide,
    SASLError,
    pureSASL,
    stepsFor,
)
from ._server import ServerProtocol
from ._service import shortName
from ._thriftinternals import awaitingReplies, lastSeqid, setLastSeqid
from ._transport import CallbackTransport, MessageSenderTransport

__all__ = [
    "IThriftClientFactory",
    "IThriftServerFactory",
    "TCallbackTransport",
    "TMessageSenderTransport",
    "ThriftClientFactory",
    "ThriftClientProtocol",
    "ThriftResource",
    "ThriftSASLClientProtocol",
    "ThriftServerFactory",
    "ThriftServerProtocol",
]

log = Logger(namespace="txthrift.TTwisted")

#: The default C{MAX_LENGTH}, the largest frame either end accepts: Apache's
#: (16,384,000 bytes), so that each end accepts what Apache's peers send.
_DEFAULT_MAX_LENGTH = DEFAULT_MAX_FRAME_SIZE
_U32 = struct.Struct(">I")
#: What C{sendString} can frame: a length prefix is a 4-byte unsigned int.
_MAX_STRING = 2**32

#: Apache's names for the transports generated clients write their calls into.
TMessageSenderTransport = MessageSenderTransport
TCallbackTransport = CallbackTransport


class IThriftServerFactory(Interface):
    """
    What a L{ThriftServerProtocol} needs from its factory.
    """

    processor = Attribute("The processor answering requests: anything with process(iprot, oprot)")
    iprot_factory = Attribute("The protocol factory reading requests")
    oprot_factory = Attribute("The protocol factory writing replies")


class IThriftClientFactory(Interface):
    """
    What a L{ThriftClientFactory} builds its connections' clients from.
    """

    client_class = Attribute("The generated Client class, called as (transport, oprot_factory)")
    iprot_factory = Attribute("The protocol factory reading replies")
    oprot_factory = Attribute("The protocol factory writing calls")


class _ApacheFraming(ThriftMessageProtocol):
    """
    Apache's protocols are Twisted C{Int32StringReceiver}s: this gives ours
    the names and meanings those add.
    """

    #: The largest frame accepted, in bytes; read when the connection is made.
    MAX_LENGTH: int = _DEFAULT_MAX_LENGTH
    #: The frame length prefix, as C{struct} reads it; informative only: the
    #: framing is Thrift's, whatever a subclass says here.
    structFormat = "!I"
    #: Bytes in the frame length prefix.
    prefixLength = 4
    #: Whether C{pauseProducing} holds incoming frames.
    paused = False

    _heldFrames: list[bytes]

    def _useMaxLength(self) -> None:
        """
        Honour a C{MAX_LENGTH} changed after this protocol was built, as
        Apache's protocols do; called before any byte is received.
        """
        if self.MAX_LENGTH != self.limits.max_frame_size:
            self.limits = replace(self.limits, max_frame_size=self.MAX_LENGTH)
            self.framer = makeFramer("framed", "binary", self.limits)

    @property
    def recvd(self) -> bytes:
        """
        The bytes received and not yet handed on: whole frames held while
        paused, then the start of the next frame.  Assigning replaces them;
        frames already cut from the current read are still handled.
        """
        framer = self.framer
        held = b"".join(_U32.pack(len(frame)) + frame for frame in self._heldFrames)
        return held + framer.held if isinstance(framer, _Framed) else held

    @recvd.setter
    def recvd(self, data: bytes) -> None:
        self._heldFrames.clear()
        framer = self.framer
        if isinstance(framer, _Framed):
            framer.held = data

    def sendString(self, string: bytes) -> None:
        """
        Send C{string} as one frame.

        @raise StringTooLongError: when its length does not fit the prefix.
        """
        if len(string) >= _MAX_STRING:
            raise StringTooLongError(
                f"cannot frame {len(string)} bytes; the most is {_MAX_STRING - 1}")
        self.sendMessage(string)

    def lengthLimitExceeded(self, length: int) -> None:
        """
        Called once when a frame announces more than C{MAX_LENGTH} bytes
        (C{length}, read as unsigned); closes the connection, saying why in
        the log.  Bytes after it are never read.
        """
        super().frameError(self._overLength(length))

    def _overLength(self, length: int) -> str:
        return f"frame length {length} is over MAX_LENGTH ({self.limits.max_frame_size})"

    def frameError(self, reason: str) -> None:
        length = self._refusedLength()
        if length is None:
            super().frameError(reason)
            return
        # What an override writes must not overtake the replies before it.
        self._writeOut()
        self.lengthLimitExceeded(length)
        if self.receiving:
            # Overridden, and the connection left open; but no later byte can
            # be read in step: it closes, rather than leave calls hanging.
            super().frameError(self._overLength(length))

    def _refusedLength(self) -> int | None:
        """
        The length (unsigned, as Apache reads it) of the frame the framer
        has just refused for being over C{MAX_LENGTH}, once: C{None} if it
        refused none, or none for that.
        """
        framer = self.framer
        if not isinstance(framer, _Framed) or framer.refusedLength is None:
            return None
        length, framer.refusedLength = framer.refusedLength & 0xFFFFFFFF, None
        return length if length > self.limits.max_frame_size else None

    def stringReceived(self, frame: bytes) -> None:
        """
        Handle one whole frame (C{Int32StringReceiver}'s name for it).
        """
        raise NotImplementedError

    def _frameArrived(self, message: bytes) -> None:
        """
        Hand a frame to C{stringReceived} as it arrives, or hold it while
        paused.
        """
        if self.paused:
            self._heldFrames.append(message)
        else:
            self.stringReceived(message)

    def _releaseHeld(self) -> None:
        held = self._heldFrames
        while held and not self.paused and self.receiving:
            self.stringReceived(held.pop(0))


class _CallTransport(CallbackTransport):
    """
    The transport a generated client writes its calls into.
    """

    def discard(self) -> None:
        """
        Forget what was written since the last flush: the start of a call
        whose encoding failed.
        """
        if self._buffer.tell():
            log.debug("discarding the partly written call before this one")
            self._buffer = BytesIO()


class _OneCallAtATime:
    """
    Wraps the output protocol factory given to a generated client.

    Generated code asks it for a protocol at the start of every call it
    sends; that is when what a call that failed half way through its
    encoding left in the transport is thrown away.  Anything else is the
    wrapped factory's.
    """

    def __init__(self, factory: TProtocolFactory) -> None:
        self._factory = factory

    def getProtocol(self, trans: TTransportBase) -> TProtocolBase:
        if isinstance(trans, _CallTransport):
            trans.discard()
        return self._factory.getProtocol(trans)

    def __getattr__(self, name: str) -> Any:
        if name == "_factory":  # not yet set: copying, unpickling
            raise AttributeError(name)
        return getattr(self._factory, name)


class ThriftClientProtocol(_ApacheFraming, ThriftMessageProtocol):
    """
    The client end of a framed Thrift connection, driving a generated
    C{py:twisted} client: C{started} fires with it (also C{client}) once
    connected, and its calls return Deferreds.

    Unlike Apache's:
      - a reply naming an unknown seqid is logged and dropped, and one naming
        an unknown method, or that cannot be decoded, fails only the call it
        answers; the connection and the other calls carry on;
      - a lost connection fails the pending calls with a
        L{TTransportException}, and C{client} stays usable: later calls fail
        the same way instead of raising C{AttributeError};
      - seqids wrap to 1 after 2**31-1 (skipping ids still awaiting a reply)
        instead of failing every call from then on;
      - a call that fails while being encoded does not corrupt the next one;
      - a reply frame longer than C{MAX_LENGTH} closes the connection with
        the reason logged, also when an overridden C{lengthLimitExceeded}
        leaves it open: no later byte could be read in step.

    As in Apache's, C{dispatch} sends each call through C{sendString}, and
    each reply frame goes to C{stringReceived}; overriding either takes
    effect.
    """

    def __init__(self, client_class: Callable[..., Any], iprot_factory: TProtocolFactory,
                 oprot_factory: TProtocolFactory | None = None) -> None:
        super().__init__("framed", "binary", Limits(max_frame_size=self.MAX_LENGTH))
        self._heldFrames = []
        self._client_class = client_class
        self._oprot_factory = iprot_factory if oprot_factory is None else oprot_factory
        self._codec = Codec("binary", self.limits, factory=iprot_factory,
                            outputFactory=self._oprot_factory)
        #: recv_<name> methods of C{client} by method name, found as replies come.
        self.recv_map: dict[str, Callable[[TProtocolBase, int, int], Any]] = {}
        #: Fires with C{client} once connected.
        self.started: Deferred[Any] = Deferred()
        #: The generated client, from connection on.
        self.client: Any = None
        self._lost: Failure | None = None

    def connectionMade(self) -> None:
        self._useMaxLength()
        transport = _CallTransport(self.dispatch)
        self.client = self._client_class(transport, _OneCallAtATime(self._oprot_factory))
        self.started.callback(self.client)

    def dispatch(self, msg: bytes) -> None:
        """
        Send one encoded call; the client's transport calls this on flush.

        @raise TTransportException: when the connection is closed, which
            makes the generated client fail the call.
        """
        try:
            if self._lost is not None or self.transport is None:
                raise self._closed(TTransportException.NOT_OPEN)
            self.sendString(msg)
        finally:
            self._advanceSeqid()

    def _advanceSeqid(self) -> None:
        # Generated code takes _seqid + 1 for its next call without bound;
        # leave _seqid so that the next one is free and within an i32.
        client = self.client
        seqid = lastSeqid(client)
        if seqid is None or seqid < 0:
            return
        following = nextSeqid(seqid, awaitingReplies(client) or {})
        if following != seqid + 1:
            setLastSeqid(client, following - 1)

    def _closed(self, kind: int) -> TTransportException:
        if self.refusal is not None:
            why = f"reply refused: {self.refusal}"
        else:
            why = self._lost.getErrorMessage() if self._lost is not None else "not connected"
        return TTransportException(kind, f"Thrift connection closed ({why})")

    messageReceived = _ApacheFraming._frameArrived

    def pauseProducing(self) -> None:
        """
        Stop reading, and hold the replies already read, until
        C{resumeProducing}.
        """
        self.paused = True
        transport: Any = self.transport
        transport.pauseProducing()

    def resumeProducing(self) -> None:
        """
        Hand on the replies held while paused, and read again.
        """
        self.paused = False
        transport: Any = self.transport
        transport.resumeProducing()
        self._releaseHeld()

    def stopProducing(self) -> None:
        """
        Hand on no more replies, and close the connection.
        """
        self.paused = True
        if self.transport is not None:
            self.transport.loseConnection()

    def stringReceived(self, frame: bytes) -> None:
        """
        Hand one reply frame to the client's C{recv_<name>} method.
        """
        try:
            iprot, name, mtype, rseqid = self._codec.readHeader(frame)
        except Exception as error:
            self.frameError(f"unreadable reply header: {whyUndecodable(error, 'reply header')}")
            return
        pending: dict[int, Deferred[Any]] | None = awaitingReplies(self.client)
        waiting = pending.get(rseqid) if pending is not None else None
        if pending is None or waiting is None:
            log.warn(
                "dropping a reply to {name} with seqid {seqid}: no call awaits it",
                     name=name, seqid=rseqid)
            return
        receive = self._receiver(name)
        if receive is None or mtype not in (TMessageType.REPLY, TMessageType.EXCEPTION):
            why = (f"reply names unknown method {name!r}" if receive is None
                   else f"message type {mtype} of {name!r} is not a reply")
            log.warn(
                "dropping a reply with seqid {seqid}: {why}", seqid=rseqid, why=why)
            del pending[rseqid]
            kind = (TApplicationException.WRONG_METHOD_NAME if receive is None
                    else TApplicationException.INVALID_MESSAGE_TYPE)
            waiting.errback(TApplicationException(kind, why))
            return
        try:
            receive(iprot, mtype, rseqid)
        except Exception as error:
            log.failure("cannot decode the reply to {name} (seqid {seqid})",
                        name=name, seqid=rseqid)
            pending.pop(rseqid, None)
            if not waiting.called:
                waiting.errback(TApplicationException(
                    TApplicationException.PROTOCOL_ERROR,
                    f"malformed reply to {name}: {whyUndecodable(error)}"))

    def _receiver(self, name: str) -> Callable[[TProtocolBase, int, int], Any] | None:
        receive = self.recv_map.get(name)
        if receive is None:
            receive = getattr(self.client, "recv_" + name, None)
            if not callable(receive):
                return None
            self.recv_map[name] = receive
        return receive

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        super().connectionLost(reason)
        self._lost = reason
        pending: dict[int, Deferred[Any]] | None = awaitingReplies(self.client)
        # Errbacks may make new calls; those fail as they are sent.
        while pending:
            _, waiting = pending.popitem()
            waiting.errback(self._closed(TTransportException.END_OF_FILE))


class ThriftSASLClientProtocol(SaslClientSide, ThriftClientProtocol):
    """
    A L{ThriftClientProtocol} that first authenticates with SASL through a
    C{puresasl.client.SASLClient}: C{started} fires once the server has
    said COMPLETE, or fails with a L{SASLError} naming its reason.

    As Apache's, each call goes out as a frame inside a SASL frame (what a
    txthrift server, or a Java C{TFramedTransport} over
    C{TSaslServerTransport}, reads), and the SASL client is made from
    C{host}, C{service}, C{mechanism} and the other keywords, or by
    C{createSASLClient} before the connection is made.  Under a security
    layer (GSSAPI with auth-int or auth-conf) each SASL frame's payload is
    wrapped whole.
    """

    START = START
    OK = OK
    BAD = BAD
    ERROR = ERROR
    COMPLETE = COMPLETE

    def __init__(self, client_class: Callable[..., Any], iprot_factory: TProtocolFactory,
                 oprot_factory: TProtocolFactory | None = None, host: str | None = None,
                 service: str | None = None, mechanism: str = "GSSAPI",
                 **sasl_kwargs: Any) -> None:
        """
        @param host: the server's name, as SASL sees it.
        @param service: the server's service name, as SASL sees it.
        @param mechanism: the SASL mechanism.
        @param sasl_kwargs: for C{SASLClient} (C{username}, C{password}, ...).
        @raise ImportError: without C{pure-sasl} (the extra C{txthrift[sasl]}).
        """
        #: C{puresasl.client.SASLClient}; C{SASLCLient} is Apache's spelling.
        self.SASLClient = self.SASLCLient = pureSASL().SASLClient
        super().__init__(client_class, iprot_factory, oprot_factory)
        #: The C{SASLClient} of this connection.
        self.sasl: Any = None
        if host is not None:
            self.createSASLClient(host, service, mechanism, **sasl_kwargs)

    def createSASLClient(self, host: str, service: str | None, mechanism: str,
                         **kwargs: Any) -> None:
        """
        Make the C{SASLClient} the handshake uses.
        """
        self.sasl = self.SASLClient(host, service, mechanism, **kwargs)

    def connectionMade(self) -> None:
        self._useMaxLength()
        transport: Any = self.transport
        if self.sasl is None:
            self._refused(Failure(SASLError(
                "no SASL client: give host= (and service=, mechanism=), or call"
                " createSASLClient before connecting")))
            return
        handshake = self._handshake = ClientHandshake(self.sasl, transport.write,
                                                      stepsFor(self.sasl, transport))
        handshake.done.addCallbacks(self._authenticated, self._refused,
                                    callbackArgs=(handshake,))
        timeout = self.limits.partial_timeout
        if timeout is not None:  # Unlike Apache's, a server that stalls is given up on.
            clock = getattr(transport, "reactor", None) or defaultReactor()
            self._handshakeCall = clock.callLater(timeout, self._handshakeExpired, timeout)
        handshake.begin()

    def _handshakeExpired(self, timeout: float) -> None:
        self._handshakeCall = None
        if self._handshake is not None:
            self._handshake.stop()
            self._refused(Failure(SASLError(
                f"the SASL handshake did not finish within {timeout:g}s")))

    def _authenticated(self, rest: bytes, handshake: ClientHandshake) -> None:
        self._frameInSasl(handshake, "framed", "binary")
        super().connectionMade()
        if rest and self.transport is not None:
            super().dataReceived(rest)

    def sendMessage(self, message: bytes) -> None:
        payload = _U32.pack(len(message)) + message
        if self._wrap is not None:
            payload = self._wrap(payload)
        super().sendMessage(payload)

    def _refused(self, failure: Failure) -> None:
        self._endHandshake()
        self.refusal = failure.getErrorMessage()
        log.warn("SASL handshake failed: {error}", error=self.refusal)
        if not self.started.called:
            self.started.errback(failure)
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        handshake = self._handshake
        self._endHandshake()
        super().connectionLost(reason)
        if handshake is not None and not self.started.called:
            self.started.errback(SASLError(
                f"the connection closed during the SASL handshake: {reason.getErrorMessage()}"))


@implementer(IThriftClientFactory)
class ThriftClientFactory(protocol.ClientFactory):
    """
    Builds L{ThriftClientProtocol}s, each with its own generated client.

    The same as Apache's; its connections carry L{ThriftClientProtocol}'s fixes.
    """

    protocol = ThriftClientProtocol

    def __init__(self, client_class: Callable[..., Any], iprot_factory: TProtocolFactory,
                 oprot_factory: TProtocolFactory | None = None) -> None:
        self.client_class = client_class
        self.iprot_factory = iprot_factory
        self.oprot_factory = iprot_factory if oprot_factory is None else oprot_factory

    def buildProtocol(self, addr: IAddress | None) -> ThriftClientProtocol:
        proto: ThriftClientProtocol = self.protocol(
            self.client_class, self.iprot_factory, self.oprot_factory)
        proto.factory = self
        return proto


class _ApacheReplies:
    """
    Runs the processor as Apache's C{ThriftServerProtocol.stringReceived}
    does, so that a subclass's C{processOk}, C{processError}, C{dispatch} and
    C{sendString} take effect; used only when one of them is overridden (the
    plain path costs less).

    The reply goes out through the protocol's methods, not as this
    dispatcher's result: what it returns only says when the call is over,
    which keeps the call in the connection's in-flight count until then.
    """

    def __init__(self, proto: ThriftServerProtocol, processor: Any) -> None:
        self._proto = proto
        self._processor = processor
        self.serviceName = processorService(processor)

    def dispatch(self, codec: Codec, iprot: TProtocolBase, name: str, mtype: int,
                 seqid: int) -> Reply:
        # The processor reads the header again; it owns its input.
        iprot = withStoredHeader(codec.detach(iprot), (name, mtype, seqid))
        oprot = codec.replyWriter()
        call = (codec, name, mtype, seqid)
        proto = self._proto
        try:
            outcome = self._processor.process(iprot, oprot)
        except Exception:
            proto._processFailed(Failure(), call)
            return None
        if not isinstance(outcome, Deferred):
            proto._processDone(outcome, oprot.trans, call)
            return None
        cancelled = False

        def cancel(deferred: Deferred[bytes | None]) -> None:
            # The connection is cancelling the call (it timed out, or the
            # connection went) and answers it, if anyone: not processError.
            nonlocal cancelled
            cancelled = True
            outcome.cancel()

        over: Deferred[bytes | None] = Deferred(cancel)

        def succeeded(result: object) -> None:
            if not cancelled:
                proto._processDone(result, oprot.trans, call)
                over.callback(None)

        def failed(failure: Failure) -> None:
            if not cancelled:
                proto._processFailed(failure, call)
                over.callback(None)

        outcome.addCallbacks(succeeded, failed)
        return None if over.called else over


class ThriftServerProtocol(_ApacheFraming, ServerProtocol):
    """
    One framed server connection, answering with its factory's
    C{processor} (any processor, Deferred-returning C{py:twisted} ones
    included), reading with its C{iprot_factory} and writing with its
    C{oprot_factory}.

    Apache's methods are here with Apache's meanings: each request frame
    goes to C{stringReceived}; the processor's outcome to C{processOk} or
    C{processError}; each reply to C{dispatch}, which sends it with
    C{sendString}.  Overriding any of them takes effect.

    Unlike Apache's:
      - a failing handler never closes the connection or leaves its caller
        waiting: an undeclared exception, a L{TTransportException} or a
        result that cannot be encoded gets that caller a
        L{TApplicationException}, never part of a broken reply (the default
        C{processError}); an overridden C{processError} (or C{processOk})
        that raises, or returns having neither replied through C{dispatch}
        or C{sendString} nor closed the connection, gets the caller that
        answer too;
      - a request that cannot be decoded gets a L{TApplicationException};
      - a frame longer than C{MAX_LENGTH} closes the connection with the
        reason logged, also when an overridden C{lengthLimitExceeded} leaves
        it open: no later byte could be read in step;
      - reading pauses while many requests are in flight or the peer does not
        read its replies, so one connection's memory stays bounded; a
        request held for that reaches C{stringReceived} once, on arrival;
      - a call timed out or cancelled because its connection went reaches
        neither C{processOk} nor C{processError}.
    """

    # Any IThriftServerFactory provider; ServerProtocol declares its own.
    factory: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass's own stringReceived gets each request frame once, as it
        # arrives (held while paused), before it waits for room; without
        # one, frames go straight to the connection, at no cost.
        if (cls.stringReceived is not ThriftServerProtocol.stringReceived
                and cls.messageReceived is ServerProtocol.messageReceived):
            cls.messageReceived = cls._frameArrived  # type: ignore[assignment]

    def __init__(self) -> None:
        # The dispatcher comes from the factory's processor on connection.
        super().__init__(None, defaultReactor(), "framed", "binary",
                         Limits(max_frame_size=self.MAX_LENGTH))
        # Apache's path, taken only by subclasses that override its steps.
        cls = type(self)
        base = ThriftServerProtocol
        self._apacheReplies = (
            cls.processOk is not base.processOk or cls.processError is not base.processError
            or cls.dispatch is not base.dispatch or cls.sendString is not base.sendString)
        self._heldFrames = []
        # The call whose failure processError is handling, and the replies
        # sent so far (to tell whether processError answered it).
        self._failing: tuple[Codec, str, int, int] | None = None
        self._answers = 0

    def connectionMade(self) -> None:
        self._useMaxLength()
        processor = self.factory.processor
        self.dispatcher = (_ApacheReplies(self, processor) if self._apacheReplies
                           else makeDispatcher(processor))
        super().connectionMade()

    def _makeCodec(self) -> Codec:
        return Codec(self.protocolName, self.limits, factory=self.factory.iprot_factory,
                     outputFactory=self.factory.oprot_factory)

    def stringReceived(self, frame: bytes) -> None:
        """
        Process one request frame: at once, or once fewer requests are in
        flight; its reply goes out in turn.
        """
        self._processRequest(frame)

    def processOk(self, result: object, tmo: TMemoryBuffer) -> None:
        """
        The processor has answered: C{tmo} holds the reply it wrote, which
        goes to C{dispatch} (there is none for a oneway call).
        """
        message = tmo.getvalue()
        if message:
            self.dispatch(message)

    def processError(self, error: Failure) -> None:
        """
        The processor failed with C{error}: its caller gets a
        L{TApplicationException} (a oneway call's failure is logged).  Called
        other than for a failed call, as Apache's, it closes the connection.
        """
        call = self._failing
        if call is None:
            transport: Any = self.transport
            transport.loseConnection()
            return
        codec, name, mtype, seqid = call
        reason = error.value
        if isinstance(reason, TProtocolException):
            # The request itself was at fault (bad arguments, say): say so.
            kind, why = TApplicationException.PROTOCOL_ERROR, shortName(str(reason))
            log.warn("cannot process {name}: {error}", name=shortName(name), error=why)
        else:
            kind, why = (TApplicationException.INTERNAL_ERROR,
                         f"Internal error processing {shortName(name)}")
            log.failure("processing {name} failed", error, name=shortName(name))
        if mtype != TMessageType.ONEWAY:
            self.dispatch(codec.encodeException(shortName(name), seqid, kind, why))

    def dispatch(self, msg: bytes) -> None:
        """
        Send one reply.
        """
        self._answers += 1
        self.sendString(msg)

    def sendString(self, string: bytes) -> None:
        """
        Send C{string} as one frame: a reply, from C{dispatch}.
        """
        self._answers += 1
        super().sendString(string)

    def _processDone(self, result: object, tmo: TMemoryBuffer,
                     call: tuple[Codec, str, int, int]) -> None:
        answers = self._answers
        try:
            self.processOk(result, tmo)
        except Exception:
            log.failure("processOk failed for {name}", name=shortName(call[1]))
            self._answerUnanswered(call, answers)

    def _processFailed(self, failure: Failure, call: tuple[Codec, str, int, int]) -> None:
        answers = self._answers
        self._failing = call
        try:
            self.processError(failure)
        except Exception:
            log.failure("processError failed for {name}", name=shortName(call[1]))
        finally:
            self._failing = None
        self._answerUnanswered(call, answers)

    def _answerUnanswered(self, call: tuple[Codec, str, int, int], answers: int) -> None:
        """
        Answer a call that an override left unanswered, on a connection it
        left open: its caller must not wait for ever.
        """
        codec, name, mtype, seqid = call
        transport: Any = self.transport
        if (self._answers != answers or mtype == TMessageType.ONEWAY or not self.receiving
                or not self.connected or transport is None or transport.disconnecting):
            return
        log.warn("no reply was sent for {name}; answering with an internal error",
                 name=shortName(name))
        try:
            self.dispatch(codec.encodeException(
                shortName(name), seqid, TApplicationException.INTERNAL_ERROR,
                f"Internal error processing {shortName(name)}"))
        except Exception:
            log.failure("cannot answer {name}; closing the connection", name=shortName(name))
            transport.loseConnection()

    def pauseProducing(self) -> None:
        """
        Stop reading, and hold the requests already read, until
        C{resumeProducing}.
        """
        self.paused = True
        super().pauseProducing()

    def resumeProducing(self) -> None:
        """
        Process the requests held while paused, and read again.
        """
        self.paused = False
        super().resumeProducing()
        self._releaseHeld()

    def stopProducing(self) -> None:
        """
        Hand on no more requests, and close the connection.
        """
        self.paused = True
        super().stopProducing()
        if self.transport is not None:
            self.transport.loseConnection()


@implementer(IThriftServerFactory)
class ThriftServerFactory(protocol.ServerFactory):
    """
    Builds L{ThriftServerProtocol}s serving one processor.

    The same as Apache's, with the fixes of L{ThriftServerProtocol}; its
    C{connections} are the connections open now.
    """

    protocol = ThriftServerProtocol

    def __init__(self, processor: Any, iprot_factory: TProtocolFactory,
                 oprot_factory: TProtocolFactory | None = None) -> None:
        self.processor = processor
        self.iprot_factory = iprot_factory
        self.oprot_factory = iprot_factory if oprot_factory is None else oprot_factory
        self.connections: set[ServerProtocol] = set()


class ThriftResource(resource.Resource):
    """
    Apache's C{twisted.web} resource serving a processor over HTTP: each
    C{POST} body, to this resource's path or any below it, is one request,
    read with C{inputProtocolFactory}; what the processor writes with
    C{outputProtocolFactory} (the input one when omitted) is the body of a
    C{200} reply, C{application/x-thrift}, empty for a oneway call.

    A processor that raises or fails its Deferred gets the request a
    C{500}; a request whose client goes cancels the processor's Deferred.
    """

    allowedMethods = (b"POST",)

    def __init__(self, processor: Any, inputProtocolFactory: TProtocolFactory,
                 outputProtocolFactory: TProtocolFactory | None = None) -> None:
        super().__init__()
        self.processor = processor
        self.inputProtocolFactory = inputProtocolFactory
        self.outputProtocolFactory = (inputProtocolFactory if outputProtocolFactory is None
                                      else outputProtocolFactory)

    def getChild(self, path: bytes, request: Any) -> ThriftResource:
        return self

    def render(self, request: Any) -> bytes | int:
        if request.method != b"POST":
            # What twisted.web's own answer would say, without its deprecated page.
            body = b"Thrift over HTTP takes POST\n"
            request.setResponseCode(http.NOT_ALLOWED)
            request.setHeader(b"allow", b"POST")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.setHeader(b"content-length", b"%d" % len(body))
            return body
        return self.render_POST(request)

    def render_POST(self, request: Any) -> int:
        request.content.seek(0, 0)
        tmo = TMemoryBuffer()
        iprot = self.inputProtocolFactory.getProtocol(TMemoryBuffer(request.content.read()))
        oprot = self.outputProtocolFactory.getProtocol(tmo)
        processing = maybeDeferred(self.processor.process, iprot, oprot)
        gone: list[Failure] = []
        request.notifyFinish().addErrback(self._lost, processing, gone)
        # Sending the reply failing (a subclass's _cbProcess) gets a 500 too.
        processing.addCallback(self._processed, request, tmo, gone)
        processing.addErrback(self._ebProcess, request, gone)
        return server.NOT_DONE_YET

    def _processed(self, result: object, request: Any, tmo: TMemoryBuffer,
                   gone: list[Failure]) -> None:
        if not gone:  # Else the client went: nobody to answer.
            self._cbProcess(result, request, tmo)

    @staticmethod
    def _lost(reason: Failure, processing: Deferred[Any], gone: list[Failure]) -> None:
        gone.append(reason)
        processing.cancel()

    def _cbProcess(self, _: object, request: Any, tmo: TMemoryBuffer) -> None:
        """
        Send what the processor wrote (Apache's name for it).
        """
        reply = tmo.getvalue()
        request.setResponseCode(http.OK)
        request.setHeader(b"content-type", b"application/x-thrift")
        request.setHeader(b"content-length", b"%d" % len(reply))
        request.write(reply)
        request.finish()

    def _ebProcess(self, failure: Failure, request: Any, gone: list[Failure]) -> None:
        if gone:
            if not failure.check(CancelledError):
                log.failure("processing a request over HTTP failed", failure)
            return
        log.failure("processing a request over HTTP failed", failure)
        body = b"Internal error processing the request\n"
        request.setResponseCode(http.INTERNAL_SERVER_ERROR)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()
