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
  - frames are limited to C{MAX_LENGTH} bytes (16 MiB), and a connection
    closed for announcing a bigger one says so in the log;
  - sequence ids wrap before they overflow an i32;
  - a request that cannot be decoded gets a L{TApplicationException} reply;
  - a call that fails while it is being encoded leaves no bytes behind to
    corrupt the next call.

Apache's C{ThriftSASLClientProtocol} and C{ThriftResource} are not provided.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from io import BytesIO
from typing import Any, cast

from thrift.protocol.TProtocol import TProtocolBase, TProtocolFactory
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TTransportBase, TTransportException
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from ._codec import Codec
from ._framing import ThriftMessageProtocol, makeFramer
from ._limits import Limits, MiB
from ._server import Dispatcher, ServerProtocol, makeDispatcher
from ._transport import CallbackTransport, MessageSenderTransport

__all__ = [
    "IThriftClientFactory",
    "IThriftServerFactory",
    "TCallbackTransport",
    "TMessageSenderTransport",
    "ThriftClientFactory",
    "ThriftClientProtocol",
    "ThriftServerFactory",
    "ThriftServerProtocol",
]

log = Logger(namespace="txthrift.TTwisted")

#: The largest seqid: a seqid is an i32 on the wire.
_MAX_SEQID = 0x7FFFFFFF
#: The default C{MAX_LENGTH}: the largest frame either end accepts.
_DEFAULT_MAX_LENGTH = 16 * MiB

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


def _applyMaxLength(proto: ThriftMessageProtocol, maxLength: int) -> None:
    """
    Honour a C{MAX_LENGTH} changed after C{proto} was built, as Apache's
    protocols do; called before any byte is received.
    """
    if maxLength != proto.limits.max_frame_size:
        proto.limits = replace(proto.limits, max_frame_size=maxLength)
        proto.framer = makeFramer(proto.transportName, proto.protocolName, proto.limits)


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


class ThriftClientProtocol(ThriftMessageProtocol):
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
      - a reply frame longer than C{MAX_LENGTH} (16 MiB) closes the
        connection with the reason logged.
    """

    #: The largest reply frame accepted, in bytes.
    MAX_LENGTH: int = _DEFAULT_MAX_LENGTH

    def __init__(self, client_class: Callable[..., Any], iprot_factory: TProtocolFactory,
                 oprot_factory: TProtocolFactory | None = None) -> None:
        super().__init__("framed", "binary", Limits(max_frame_size=self.MAX_LENGTH))
        self._client_class = client_class
        self._iprot_factory = iprot_factory
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
        _applyMaxLength(self, self.MAX_LENGTH)
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
            self.sendMessage(msg)
        finally:
            self._advanceSeqid()

    def _advanceSeqid(self) -> None:
        # Generated code takes _seqid + 1 for its next call without bound;
        # leave _seqid so that the next one is free and within an i32.
        client = self.client
        seqid = getattr(client, "_seqid", None)
        if not isinstance(seqid, int) or seqid < 0:
            return
        pending = getattr(client, "_reqs", None) or {}
        following = seqid % _MAX_SEQID + 1
        while following in pending:
            following = following % _MAX_SEQID + 1
        if following != seqid + 1:
            client._seqid = following - 1

    def _closed(self, kind: int) -> TTransportException:
        if self.refusal is not None:
            why = f"reply refused: {self.refusal}"
        else:
            why = self._lost.getErrorMessage() if self._lost is not None else "not connected"
        return TTransportException(kind, f"Thrift connection closed ({why})")

    def messageReceived(self, message: bytes) -> None:
        self.stringReceived(message)

    def stringReceived(self, frame: bytes) -> None:
        """
        Hand one reply frame to the client's C{recv_<name>} method.
        """
        try:
            iprot, name, mtype, rseqid = self._codec.readHeader(frame)
        except Exception as error:
            self.frameError(f"unreadable reply header: {error}")
            return
        pending: dict[int, Deferred[Any]] | None = getattr(self.client, "_reqs", None)
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
                    f"malformed reply to {name}: {error}"))

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
        pending: dict[int, Deferred[Any]] | None = getattr(self.client, "_reqs", None)
        # Errbacks may make new calls; those fail as they are sent.
        while pending:
            _, waiting = pending.popitem()
            waiting.errback(self._closed(TTransportException.END_OF_FILE))


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


class ThriftServerProtocol(ServerProtocol):
    """
    One framed server connection, answering with its factory's
    C{processor} (any processor, Deferred-returning C{py:twisted} ones
    included), reading with its C{iprot_factory} and writing with its
    C{oprot_factory}.

    Unlike Apache's:
      - a failing handler never closes the connection or leaves its caller
        waiting: an undeclared exception, a L{TTransportException} or a
        result that cannot be encoded gets that caller a
        L{TApplicationException}, never part of a broken reply;
      - a request that cannot be decoded gets a L{TApplicationException};
      - a frame longer than C{MAX_LENGTH} (16 MiB) closes the connection with
        the reason logged;
      - reading pauses while many requests are in flight or the peer does not
        read its replies, so one connection's memory stays bounded.
    """

    #: The largest request frame accepted, in bytes.
    MAX_LENGTH: int = _DEFAULT_MAX_LENGTH

    # Any IThriftServerFactory provider; ServerProtocol declares its own.
    factory: Any

    def __init__(self) -> None:
        from twisted.internet import reactor

        # The dispatcher comes from the factory's processor on connection.
        super().__init__(cast(Dispatcher, None), cast(IReactorTime, reactor), "framed",
                         "binary", Limits(max_frame_size=self.MAX_LENGTH))

    def connectionMade(self) -> None:
        _applyMaxLength(self, self.MAX_LENGTH)
        self._dispatcher = makeDispatcher(self.factory.processor)
        super().connectionMade()

    def framingDetected(self) -> None:
        self._codec = Codec(self.protocolName, self.limits, factory=self.factory.iprot_factory,
                            outputFactory=self.factory.oprot_factory)


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
