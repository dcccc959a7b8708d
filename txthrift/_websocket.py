"""
Thrift over WebSocket: one Thrift message per WebSocket message, served
and called through the very connection logic of TCP.

Each WebSocket connection (autobahn's) owns one L{ServerProtocol} or
L{ClientProtocol} and feeds it every WebSocket message whole, as the one
frame of a framed stream, so that protocol detection, limits, seqids,
timeouts, cancellation, backpressure and draining are theirs; what they
send goes out as one WebSocket message each: binary, or text for JSON whose
peer sends text (as Apache's JavaScript library does).  This module knows
autobahn and C{ws://} URLs, not handlers, codecs or other endpoints.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, cast

from thrift.transport.TTransport import TTransportException
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._extras import fromExtra

fromExtra("websocket", "Thrift over WebSocket needs autobahn", "autobahn.twisted.websocket")
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.util import parse_url

from ._client import Client, ClientProtocol
from ._context import Origin, originOf
from ._framing import peerText
from ._limits import Limits
from ._server import ServerFactory, ServerProtocol
from ._service import resolve
from ._threads import Threads, threaded

__all__ = ["connectWebSocket", "websocketFactory"]

log = Logger(namespace="txthrift.websocket")

_U32 = struct.Struct(">I")

# Close codes (RFC 6455, section 7.4.1).
_NORMAL = 1000
_GOING_AWAY = 1001
_INVALID_PAYLOAD = 1007
_POLICY_VIOLATION = 1008
#: Seconds a closing handshake may take before the TCP connection is cut,
#: as long as a TCP peer is given to take what is written when closing
#: (autobahn's default, one second, cuts a busy peer off, and a cut loses
#: the close frame and its code).
_CLOSING = 10.0
#: The most bytes a close frame's reason may take.
_MOST_REASON_BYTES = 123


def _closeReason(text: str) -> str:
    """
    C{text} cut to what a close frame carries (whole UTF-8 characters).
    """
    data = text.encode()[:_MOST_REASON_BYTES]
    return data.decode(errors="ignore")


class _MessageTransport:
    """
    The transport a L{ServerProtocol} or L{ClientProtocol} sees: one
    WebSocket connection, on which it sends whole messages, which it closes,
    pauses and names the peer of.  Backpressure is the TCP connection's
    beneath it.

    @ivar text: whether messages go as text frames (JSON to a peer that
        sends text), not binary ones.
    """

    text = False

    def __init__(self, websocket: _ThriftWebSocket, closeCode: int) -> None:
        self._websocket = websocket
        self._closeCode = closeCode

    def sendThriftMessage(self, message: bytes) -> None:
        """
        Send one Thrift message as one WebSocket message; dropped once the
        WebSocket is closing, as a reply to a peer gone is on TCP.
        """
        websocket = self._websocket
        if websocket.state == websocket.STATE_OPEN:
            websocket.sendMessage(message, isBinary=not self.text)

    def loseConnection(self) -> None:
        """
        Close with the WebSocket closing handshake: saying what was wrong
        with what the peer sent (1007), or with this end's code.
        """
        refusal = self._websocket.thrift.refusal if self._websocket.thrift else None
        if refusal is not None:
            self._websocket.closeWith(_INVALID_PAYLOAD, refusal)
        else:
            self._websocket.closeWith(self._closeCode, None)

    def abortConnection(self) -> None:
        self._stream().abortConnection()

    def _stream(self) -> Any:
        return self._websocket.transport

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._stream().registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._stream().unregisterProducer()

    def pauseProducing(self) -> None:
        self._stream().pauseProducing()

    def resumeProducing(self) -> None:
        self._stream().resumeProducing()

    def stopProducing(self) -> None:
        self._stream().stopProducing()

    def getPeer(self) -> Any:
        return self._stream().getPeer()

    def getHost(self) -> Any:
        return self._stream().getHost()


class _OneMessageEach:
    """
    For a L{ServerProtocol} or L{ClientProtocol} on a WebSocket: every
    message it sends is a WebSocket message of its own, neither framed nor
    gathered with others (the TCP path's batching would join them).
    """

    transport: Any

    def sendMessage(self, message: bytes) -> None:
        transport = self.transport
        if transport is not None:
            transport.sendThriftMessage(message)


class _MessageServerProtocol(_OneMessageEach, ServerProtocol):
    """
    A L{ServerProtocol} whose replies are WebSocket messages.
    """

    def _makeOrigin(self) -> Origin:
        # The peer, its certificate and the opening request's headers are
        # the WebSocket's, beneath the message transport.
        websocket = self.transport._websocket
        served = getattr(self.dispatcher, "serviceName", "")
        origin = self._origin = originOf(websocket.transport, served, identity=self.identity,
                                         headers=dict(websocket.http_headers or {}))
        return origin


class _MessageClientProtocol(_OneMessageEach, ClientProtocol):
    """
    A L{ClientProtocol} whose calls are WebSocket messages.
    """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # A WebSocket has one framing: no other to suggest when the server
        # closes before its first reply.
        self._answered = True
        super().connectionLost(reason)


class _WebSocketServerFactory(ServerFactory):
    """
    A L{ServerFactory} whose connections answer over WebSockets.
    """

    def buildProtocol(self, addr: Any) -> ServerProtocol:  # type: ignore[override]
        proto = _MessageServerProtocol(self.dispatcher, self.clock, self.transport,
                                       self.protocolName, self.limits)
        proto.factory = self
        return proto


class _ThriftWebSocket:
    """
    What the server and client WebSocket protocols share: the Thrift
    protocol they feed whole messages, and how they close.

    @ivar thrift: the Thrift end of this connection, once it is open.
    """

    thrift: ServerProtocol | ClientProtocol | None = None
    # Autobahn's protocols have these (only annotated here: a value would
    # hide theirs).
    state: int
    STATE_OPEN: int
    transport: Any
    factory: Any
    sendMessage: Callable[..., None]
    sendCloseFrame: Callable[..., None]
    dropConnection: Callable[..., None]
    failedByMe: bool
    _partialCall: IDelayedCall | None = None
    #: Bytes of the message arriving, counted against the partial budget.
    _arriving = 0

    def startThrift(self, proto: ServerProtocol | ClientProtocol, closeCode: int) -> None:
        """
        Hand this open WebSocket to C{proto}, as its transport.
        """
        self.thrift = proto
        messages = _MessageTransport(self, closeCode)
        if proto.protocolName == "json" and not isinstance(proto, ServerProtocol):
            messages.text = True  # A client sends JSON as text, as a browser does.
        proto.makeConnection(messages)

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)  # type: ignore[misc]
        timeout = self._limits().partial_timeout
        if timeout is not None:
            self._partialCall = self.factory.reactor.callLater(timeout, self._tooSlow, timeout)

    def onMessageFrameData(self, payload: bytes) -> None:
        super().onMessageFrameData(payload)  # type: ignore[misc]
        thrift = self.thrift
        if thrift is not None and not self.failedByMe:
            self._arriving += len(payload)
            thrift.arriving(self._arriving)

    def onMessageEnd(self) -> None:
        if self._arriving and self.thrift is not None:
            self._arriving = 0
            self.thrift.arriving(0)
        super().onMessageEnd()  # type: ignore[misc]

    def _limits(self) -> Limits:
        limits: Limits = self.factory.limits
        return limits

    def _tooSlow(self, timeout: float) -> None:
        self._partialCall = None
        reason = f"a WebSocket message was not complete within {timeout:g}s (partial_timeout)"
        log.warn("closing Thrift WebSocket connection from {peer}: {reason}",
                 peer=peerText(self.transport), reason=reason)
        self.closeWith(_POLICY_VIOLATION, reason)
        # A peer part-way through a frame cannot answer with its own close
        # frame (what it sends is that frame's payload): waiting for one
        # would hold the connection for the closing handshake's timeout.
        # The close frame goes first; then the connection is closed.
        self.dropConnection(abort=False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._partialCall is not None:
            if self._partialCall.active():
                self._partialCall.cancel()
            self._partialCall = None
        thrift = self.thrift
        if thrift is None or not thrift.receiving:
            return
        if not payload:
            thrift.frameError("an empty WebSocket message holds no Thrift message")
            return
        if isinstance(thrift, ServerProtocol):
            transport: Any = thrift.transport
            # Replies go as the requests come: text for JSON sent as text (a
            # binary or compact message is never valid UTF-8, as text must be).
            transport.text = not isBinary
        # The message is the one frame of a framed stream, for the framer and
        # the detection every TCP connection has.
        thrift.dataReceived(_U32.pack(len(payload)) + payload)

    def closeWith(self, code: int, reason: str | None) -> None:
        """
        Start the closing handshake with C{code} and C{reason} (cut to fit).
        """
        if self.state != self.STATE_OPEN:
            return
        reasonBytes = None if reason is None else _closeReason(reason).encode()
        self.sendCloseFrame(code=code, reasonUtf8=reasonBytes, isReply=False)
        # Reading may be paused (a backlog of calls): the peer's answering
        # close frame must be read, or the closing handshake times out.
        self.transport.resumeProducing()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._partialCall is not None and self._partialCall.active():
            self._partialCall.cancel()
        self._partialCall = None
        thrift = self.thrift
        if thrift is None:
            return
        why = f"WebSocket closed ({_closeText(code, reason)})"
        lost = ConnectionDone(why) if wasClean and code in (_NORMAL, _GOING_AWAY) else (
            ConnectionLost(why))
        thrift.connectionLost(Failure(lost))


def _closeText(code: int | None, reason: str | None) -> str:
    text = "no close code" if code is None else f"code {code}"
    return f"{text}: {reason}" if reason else text


class _ServerWebSocket(_ThriftWebSocket, WebSocketServerProtocol):  # type: ignore[misc]
    """
    One WebSocket a Thrift client opened: its own L{ServerProtocol}.
    """

    def onOpen(self) -> None:
        self.startThrift(self.factory.serverFactory.buildProtocol(self.transport.getPeer()),
                         _GOING_AWAY)


class ThriftWebSocketFactory(WebSocketServerFactory):
    """
    Serves Thrift on WebSockets at any path, with no subprotocol asked for
    (as Node's C{createWSConnection} and Apache's JavaScript clients open
    them).

    @ivar serverFactory: the L{ServerFactory} whose C{connections} are the
        open WebSockets' L{ServerProtocol}s: what limits, in-flight calls
        and draining are counted on.
    """

    protocol = _ServerWebSocket

    def __init__(self, serverFactory: ServerFactory, reactor: Any) -> None:
        super().__init__(reactor=reactor)
        self.serverFactory = serverFactory
        self.limits = serverFactory.limits
        size = serverFactory.limits.max_frame_size
        # A message over max_frame_size closes its WebSocket (1009) before
        # it is held whole; nothing is compressed (no deflate bombs).
        self.setProtocolOptions(maxFramePayloadSize=size, maxMessagePayloadSize=size,
                                webStatus=False, failByDrop=False, closeHandshakeTimeout=_CLOSING)


def websocketFactory(handler: object, *, service: ModuleType | None = None,
                     protocol: str = "auto", limits: Limits, clock: IReactorTime,
                     threads: Threads | None = None,
                     observer: Any = None) -> ThriftWebSocketFactory:
    """
    A factory serving a Thrift handler over WebSockets, one Thrift message
    per WebSocket message, many calls in flight per WebSocket.

    @param handler: what L{txthrift.serve} accepts.
    @param protocol: C{"binary"}, C{"compact"}, C{"json"}, or C{"auto"} to
        detect it per connection from its first message.
    @param limits: every WebSocket's, as a TCP connection's; a message over
        C{max_frame_size} closes its WebSocket (1009).
    @param clock: the reactor, for timeouts.
    @param threads: the pool a blocking handler's plain methods run in.
    @param observer: told of the WebSockets and their calls.
    @raise TypeError: for a handler whose service cannot be found.
    @raise ValueError: for an unknown protocol.
    """
    served = resolve(handler, service)
    if threads is not None:
        served = threaded(served, threads)
    serverFactory = _WebSocketServerFactory(served, transport="framed", protocol=protocol,
                                            limits=limits, clock=clock, observer=observer)
    return ThriftWebSocketFactory(serverFactory, clock)


class _ClientWebSocket(_ThriftWebSocket, WebSocketClientProtocol):  # type: ignore[misc]
    """
    The WebSocket of one client: its L{ClientProtocol} once it is open.
    """

    def onOpen(self) -> None:
        factory: _ClientFactory = self.factory
        proto = _MessageClientProtocol(factory.reactor, "framed", factory.protocolName,
                                       factory.limits)
        proto.client = factory.clientClass(proto, timeout=factory.timeout,
                                           service_name=factory.serviceName)
        self.startThrift(proto, _NORMAL)
        factory.opened(proto.client)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.thrift is None:
            self.factory.refused(code, reason)
        super().onClose(wasClean, code, reason)


class _ClientFactory(WebSocketClientFactory):
    """
    Opens one WebSocket to a URL and fires L{result} with its L{Client}.
    """

    protocol = _ClientWebSocket

    def __init__(self, reactor: Any, url: str, service: ModuleType, protocol: str,
                 limits: Limits, timeout: float | None, serviceName: str | None,
                 headers: dict[str, str] | None) -> None:
        super().__init__(url, reactor=reactor, headers=headers)
        self.url = url
        self.clientClass = Client.forService(service)
        self.protocolName = protocol
        self.limits = limits
        self.timeout = timeout
        self.serviceName = serviceName
        # A message over max_frame_size closes the WebSocket (1009), failing
        # the calls in flight, before it is held whole.
        size = limits.max_frame_size
        self.setProtocolOptions(maxFramePayloadSize=size, maxMessagePayloadSize=size,
                                failByDrop=False, closeHandshakeTimeout=_CLOSING)
        self.websocket: _ClientWebSocket | None = None
        self.result: Deferred[Client] = Deferred(self._cancel)
        self.connecting: Deferred[Any] | None = None

    def buildProtocol(self, addr: Any) -> _ClientWebSocket:
        websocket = cast(_ClientWebSocket, super().buildProtocol(addr))
        self.websocket = websocket
        return websocket

    def opened(self, client: Client) -> None:
        if not self.result.called:
            self.result.callback(client)

    def refused(self, code: int | None, reason: str | None) -> None:
        """
        The WebSocket closed before it was open: the handshake failed.
        """
        if not self.result.called:
            self.result.errback(TTransportException(
                TTransportException.NOT_OPEN,
                f"no WebSocket to {self.url}: {_closeText(code, reason)}"))

    def _cancel(self, result: Deferred[Client]) -> None:
        if self.websocket is not None and self.websocket.transport is not None:
            self.websocket.transport.abortConnection()
        elif self.connecting is not None:
            self.connecting.cancel()


def connectWebSocket(reactor: Any, url: str, service: ModuleType, *, protocol: str = "binary",
                     timeout: float | None = None, service_name: str | None = None,
                     headers: Mapping[str, str] | None = None, contextFactory: Any = None,
                     trustRoot: Any = None, **limits: Any) -> Deferred[Client]:
    """
    Open a WebSocket to C{url} (C{ws://} or C{wss://}) and call the service
    on it, one Thrift message per WebSocket message, JSON as text; as
    L{txthrift.connect} documents.

    @param headers: extra headers for the opening handshake.
    @param contextFactory: for C{wss://}, an C{IPolicyForHTTPS}, as for
        C{https://}; or C{trustRoot}, as for C{https://}: the server's
        certificate and name are verified against it, or the system's CAs.
    @return: a Deferred firing with a L{Client}, or failing with the
        connection's error, or a L{TTransportException} (C{NOT_OPEN}) naming
        the URL when the opening handshake fails; cancelling it stops
        connecting.
    @raise ValueError: for a URL that is no WebSocket URL, a bad protocol,
        or TLS options for C{ws://}.
    @raise TypeError: for an unknown limit.
    """
    try:
        secure, host, port, _, _, _ = parse_url(url)
    except Exception as error:
        raise ValueError(f"not a WebSocket URL: {url!r} ({error})") from error
    chosen = Limits.from_keywords(**limits)
    ClientProtocol(reactor, "framed", protocol, chosen)  # Fails now on a bad choice.
    endpoint: Any = HostnameEndpoint(reactor, host, port)
    if secure:
        # The same trust, and the same options, as https:// URLs.
        from ._httpclient import tlsPolicy

        policy = tlsPolicy("https", contextFactory, trustRoot)
        endpoint = wrapClientTLS(policy.creatorForNetloc(host.encode(), port), endpoint)
    elif contextFactory is not None or trustRoot is not None:
        raise ValueError("contextFactory and trustRoot apply to wss:// URLs only")
    factory = _ClientFactory(reactor, url, service, protocol, chosen, timeout, service_name,
                             dict(headers) if headers else None)
    factory.connecting = endpoint.connect(factory)

    def failed(failure: Failure) -> None:
        if not factory.result.called:
            factory.result.errback(failure)

    factory.connecting.addErrback(failed)
    return factory.result
