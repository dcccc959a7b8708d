"""
The front door: serve a handler on an endpoint, connect a client to one;
and what every way of hosting shares: turning a port spec into an endpoint
(L{parseEndpoint}) and a listening address into endpoint syntax
(L{addressOf}).

This module knows endpoints and factories, not application services,
thread pools, processes or command lines.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, TypeAlias

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)

from ._client import Client, ClientFactory
from ._framing import TRANSPORTS
from ._limits import Limits
from ._server import ServerFactory
from .web import ThriftResource, ThriftSite

__all__ = ["PortSpec", "addressOf", "connect", "oneLine", "parseEndpoint", "serve"]


#: Where to listen: a server endpoint description (C{"tcp:9090"},
#: C{"unix:/run/app.sock"}, C{"ssl:9443:privateKey=k.pem:certKey=c.pem"}),
#: a bare port number (TCP on every interface), or an endpoint.
PortSpec: TypeAlias = "str | int | IStreamServerEndpoint"


def oneLine(error: BaseException) -> str:
    """
    An error as one line naming its type, for a message or a log line.
    """
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def parseEndpoint(reactor: Any, port: PortSpec) -> tuple[str, IStreamServerEndpoint]:
    """
    A port spec as (description for messages, endpoint).

    @raise ValueError: for a description no endpoint parser accepts, or a
        port number out of range.
    @raise TypeError: for something that is no port spec at all.
    """
    if isinstance(port, bool):
        raise TypeError(f"not a port: {port!r}")
    if isinstance(port, int) or (isinstance(port, str) and port.strip().isdigit()):
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError(f"TCP port {number} is not between 0 and 65535")
        port = f"tcp:{number}"
    if isinstance(port, str):
        try:
            return port, serverFromString(reactor, port)
        except Exception as error:
            raise ValueError(f"not a server endpoint description: {oneLine(error)}") from error
    if IStreamServerEndpoint.providedBy(port):
        return repr(port), port
    raise TypeError(f"not a port: {port!r}")


def addressOf(host: IAddress, tls: bool = False) -> str:
    """
    Where a port really listens (its C{getHost()}), in endpoint syntax.

    @param tls: whether the port speaks TLS (C{ssl:}) rather than TCP.
    """
    if isinstance(host, IPv6Address):
        return f"tcp6:[{host.host}]:{host.port}"
    if isinstance(host, IPv4Address):
        return f"{'ssl' if tls else 'tcp'}:{host.host}:{host.port}"
    if isinstance(host, UNIXAddress):
        name = host.name
        return "unix:" + (name.decode(errors="replace") if isinstance(name, bytes)
                          else str(name))
    return str(host)


def _clientEndpoint(reactor: Any, endpoint: IStreamClientEndpoint | str) -> IStreamClientEndpoint:
    if isinstance(endpoint, str):
        return clientFromString(reactor, endpoint)
    return endpoint


#: What C{serve} takes as C{transport}.
_SERVED_OVER = (*TRANSPORTS, "http", "websocket")


def serve(reactor: Any, endpoint: IStreamServerEndpoint | str, handler: object, *,
          service: ModuleType | None = None, transport: str = "auto", protocol: str = "auto",
          path: str = "/", **limits: Any) -> Deferred[IListeningPort]:
    """
    Serve a Thrift handler or processor on an endpoint.

    With C{transport="http"}, Thrift over HTTP: each C{POST} to C{path} (or
    below it) is one call, answered by a L{txthrift.web.ThriftResource} in
    a L{txthrift.web.ThriftSite}.  With C{transport="websocket"}, one
    Thrift message per WebSocket message, on any path (autobahn: the extra
    C{txthrift[websocket]}).

    @param endpoint: an C{IStreamServerEndpoint} or a server endpoint
        description such as C{"tcp:9090:interface=127.0.0.1"}.
    @param handler: an object implementing a generated service's methods
        (returning values, Deferreds or coroutines), any Thrift processor, or
        a mapping of service names to either, served multiplexed.
    @param service: the generated service module, when it cannot be found
        from the handler's C{Iface}.
    @param transport: C{"framed"}, C{"buffered"}, or C{"auto"} to detect it
        per connection; or C{"http"}, or C{"websocket"}.
    @param protocol: C{"binary"}, C{"compact"}, C{"json"}, or C{"auto"}.
    @param path: where C{transport="http"} serves.
    @param limits: keywords of L{Limits}.
    @return: a Deferred firing with the listening port.
    @raise TypeError: for a handler whose service cannot be found, a class
        given instead of an instance of it, or an unknown limit.
    @raise ValueError: for a bad endpoint description, transport, protocol,
        path or limit value.
    @raise ImportError: for C{transport="websocket"} without autobahn.
    """
    factory: IProtocolFactory
    if transport not in _SERVED_OVER:
        raise ValueError(f"unknown transport {transport!r}; choose one of"
                         f" {', '.join(_SERVED_OVER)}")
    if path != "/" and transport != "http":
        raise ValueError(f"path={path!r} is for transport='http'")
    if transport == "http":
        resource = ThriftResource(handler, service=service, protocol=protocol, clock=reactor,
                                  **limits)
        factory = ThriftSite(resource, path=path, reactor=reactor)
    elif transport == "websocket":
        from ._websocket import websocketFactory  # autobahn: the extra txthrift[websocket]

        factory = websocketFactory(handler, service=service, protocol=protocol,
                                   limits=Limits.from_keywords(**limits), clock=reactor)
    else:
        factory = ServerFactory(handler, service=service, transport=transport,
                                protocol=protocol, limits=Limits.from_keywords(**limits),
                                clock=reactor)
    return parseEndpoint(reactor, endpoint)[1].listen(factory)


def connect(reactor: Any, endpoint: IStreamClientEndpoint | str, service: ModuleType, *,
            transport: str = "framed", protocol: str = "binary", timeout: float | None = None,
            service_name: str | None = None, **limits: Any) -> Deferred[Client]:
    """
    Connect a client of a generated service.

    A C{ws://} or C{wss://} URL as C{endpoint} calls over a WebSocket, one
    Thrift message per WebSocket message (autobahn: the extra
    C{txthrift[websocket]}), with C{headers} for its opening handshake, and
    for C{wss://} the same C{trustRoot=} and C{contextFactory=} as below.

    An C{http://} or C{https://} URL as C{endpoint} calls over HTTP: each
    call one POST of the message, answered by the reply, on up to
    C{max_connections} (default 8) kept-alive connections at once, the
    other calls queued; C{headers} (a mapping) are sent with every call.
    An answer other than 200 fails its call with a C{TTransportException}
    naming the status and URL.  C{https://} verifies the server's
    certificate and name against the system's CAs, or against
    C{trustRoot=} (a PEM file's path or a C{twisted.internet.ssl}
    certificate), or as C{contextFactory=} (an C{IPolicyForHTTPS})
    decides.  Nothing connects until the first call.

    @param endpoint: an C{IStreamClientEndpoint} or a client endpoint
        description such as C{"tcp:host=127.0.0.1:port=9090"}.
    @param service: the generated service module (either flavour).
    @param timeout: default seconds each call waits for its reply.
    @param service_name: the name the service has on a multiplexed server.
    @return: a Deferred firing with a client with one Deferred-returning
        method per service method.
    """
    if isinstance(endpoint, str) and endpoint[:6].lower().startswith(("ws://", "wss://")):
        if transport != "framed":
            raise ValueError(f"transport={transport!r} is for TCP: a WebSocket carries one"
                             " Thrift message per WebSocket message")
        from ._websocket import connectWebSocket  # autobahn: the extra txthrift[websocket]

        return connectWebSocket(reactor, endpoint, service, protocol=protocol, timeout=timeout,
                                service_name=service_name, **limits)
    if isinstance(endpoint, str) and endpoint[:8].lower().startswith(("http://", "https://")):
        if transport != "framed":
            raise ValueError(f"transport={transport!r} is for TCP: over HTTP each Thrift"
                             " message is one request or response body")
        from ._httpclient import connectHTTP  # twisted.web's client, loaded for URLs only

        return connectHTTP(reactor, endpoint, service, protocol=protocol, timeout=timeout,
                           service_name=service_name, **limits)
    factory = ClientFactory(service, transport=transport, protocol=protocol,
                            limits=Limits.from_keywords(**limits), timeout=timeout,
                            service_name=service_name, clock=reactor)

    def connected(proto: Any) -> Client:
        client: Client = proto.client
        return client

    return _clientEndpoint(reactor, endpoint).connect(factory).addCallback(connected)
