"""
The front door: serve a handler on an endpoint, connect a client to one;
and what every way of hosting shares: turning a port spec into an endpoint
(L{parseEndpoint}) and a listening address into endpoint syntax
(L{addressOf}).

This module knows endpoints and factories, not application services,
thread pools, processes or command lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
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
from ._sasl import connectSASL, serverFactory
from ._tls import requireClientCertificates
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
        if endpoint.startswith("ssl:") and "caCertsDir=" not in endpoint:
            # Twisted's ssl: client then takes any certificate at all.
            raise ValueError(
                "an ssl: client endpoint verifies nothing without caCertsDir=; use"
                " tls:HOST:PORT (the server's certificate and name checked against the"
                " system's CAs, or trustRoots=DIR), add caCertsDir=DIR, or pass an endpoint"
                " object to decide otherwise")
        return clientFromString(reactor, endpoint)
    return endpoint


#: What C{serve} takes as C{transport}.
_SERVED_OVER = (*TRANSPORTS, "http", "websocket")


def serve(reactor: Any, endpoint: IStreamServerEndpoint | str, handler: object, *,
          service: ModuleType | None = None, transport: str = "auto", protocol: str = "auto",
          path: str = "/", tls_client_ca: str | None = None, sasl: object = None,
          **limits: Any) -> Deferred[IListeningPort]:
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
    @param transport: C{"framed"}, C{"buffered"}, C{"zlib"} (Apache's
        C{TZlibTransport}, around either), or C{"auto"} to detect it per
        connection; or C{"http"}, or C{"websocket"}.
    @param protocol: C{"binary"}, C{"compact"}, C{"json"}, or C{"auto"}.
    @param path: where C{transport="http"} serves.
    @param tls_client_ca: a PEM file of CA certificates, for an C{ssl:}
        endpoint string: the port then refuses, during the TLS handshake,
        clients without a certificate signed by one of them (the
        C{mtls:} endpoint string says the same).
    @param sasl: a C{twisted.cred} checker of user names and passwords
        (C{ICredentialsChecker} for C{IUsernamePassword}), a sequence of
        them (the first to accept wins), or a C{Portal} (its checkers): then
        every connection must authenticate with SASL PLAIN first, and its
        calls see the user in C{currentCall().identity}.  Not for HTTP or
        WebSocket.
    @param limits: keywords of L{Limits}.
    @return: a Deferred firing with the listening port.
    @raise TypeError: for a handler whose service cannot be found, a class
        given instead of an instance of it, or an unknown limit.
    @raise ValueError: for a bad endpoint description, transport, protocol,
        path or limit value.
    @raise ImportError: for C{transport="websocket"} without autobahn.
    """
    if transport not in _SERVED_OVER:
        raise ValueError(f"unknown transport {transport!r}; choose one of"
                         f" {', '.join(_SERVED_OVER)}")
    if path != "/" and transport != "http":
        raise ValueError(f"path={path!r} is for transport='http'")
    if tls_client_ca is not None:
        if not isinstance(endpoint, str):
            raise ValueError("tls_client_ca is for ssl: endpoint strings; an endpoint object"
                             " brings its own TLS options")
        endpoint = requireClientCertificates(endpoint, tls_client_ca)
    factory = _serverFactory(reactor, handler, service=service, transport=transport,
                             protocol=protocol, path=path, limits=limits, sasl=sasl)
    return parseEndpoint(reactor, endpoint)[1].listen(factory)


def _serverFactory(reactor: Any, handler: object, *, service: ModuleType | None,
                   transport: str, protocol: str, path: str,
                   limits: dict[str, Any], sasl: object = None) -> IProtocolFactory:
    """
    The factory of what L{serve} serves over C{transport}.
    """
    if sasl is not None and transport in ("http", "websocket"):
        raise ValueError(f"sasl= is for Thrift on a byte stream (TCP, UNIX, TLS), not"
                         f" transport={transport!r}")
    observer = limits.pop("observer", None)
    if transport == "http":
        resource = ThriftResource(handler, service=service, protocol=protocol, clock=reactor,
                                  observer=observer, **limits)
        return ThriftSite(resource, path=path, reactor=reactor)
    if transport == "websocket":
        from ._websocket import websocketFactory  # autobahn: the extra txthrift[websocket]

        return websocketFactory(handler, service=service, protocol=protocol,
                                limits=Limits.from_keywords(**limits), clock=reactor,
                                observer=observer)
    return serverFactory(handler, sasl, service=service, transport=transport, protocol=protocol,
                         limits=Limits.from_keywords(**limits), clock=reactor, observer=observer)


def _connectURL(reactor: Any, url: str, service: ModuleType, *, transport: str, protocol: str,
                timeout: float | None, service_name: str | None,
                **options: Any) -> Deferred[Client]:
    """
    L{connect} to a C{ws://}, C{wss://}, C{http://} or C{https://} URL.
    """
    if url[:6].lower().startswith(("ws://", "wss://")):
        if transport != "framed":
            raise ValueError(f"transport={transport!r} is for TCP: a WebSocket carries one"
                             " Thrift message per WebSocket message")
        from ._websocket import connectWebSocket  # autobahn: the extra txthrift[websocket]

        return connectWebSocket(reactor, url, service, protocol=protocol, timeout=timeout,
                                service_name=service_name, **options)
    if transport != "framed":
        raise ValueError(f"transport={transport!r} is for TCP: over HTTP each Thrift"
                         " message is one request or response body")
    from ._httpclient import connectHTTP  # twisted.web's client, loaded for URLs only

    return connectHTTP(reactor, url, service, protocol=protocol, timeout=timeout,
                       service_name=service_name, **options)


def connect(reactor: Any, endpoint: IStreamClientEndpoint | str, service: ModuleType, *,
            transport: str = "framed", protocol: str = "binary", timeout: float | None = None,
            service_name: str | None = None, sasl: Mapping[str, Any] | None = None,
            **limits: Any) -> Deferred[Client]:
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

    With C{transport="header"} (THeader, around C{protocol="binary"} or
    C{"compact"}), C{headers} go with every call, through C{transforms}
    (C{("zlib",)}); see L{Client}.
    C{transport="zlib"} speaks as Apache's C{TZlibTransport} around
    C{TFramedTransport}: each batch of calls one frame of a zlib stream;
    C{"zlib-buffered"} as one around C{TBufferedTransport} (the stream
    bare: Apache's C{TZlibTransportFactory} servers, and its
    cross-language tests' C{zlib}).

    @param endpoint: an C{IStreamClientEndpoint} or a client endpoint
        description such as C{"tcp:host=127.0.0.1:port=9090"}; for TLS,
        C{"tls:HOST:PORT"} (see the README's "Who is calling": an C{ssl:}
        string without C{caCertsDir=} verifies nothing, so is refused).
    @param service: the generated service module (either flavour).
    @param timeout: default seconds each call waits for its reply.
    @param service_name: the name the service has on a multiplexed server.
    @param sasl: authenticate first, as C{{"mechanism": "PLAIN", "username": ..., "password":
        ...}} says (see L{txthrift._sasl.connectSASL}; the extra C{txthrift[sasl]}).
    @return: a Deferred firing with a client with one Deferred-returning
        method per service method.
    """
    if sasl is not None:
        return connectSASL(reactor, endpoint, service, sasl, transport=transport, protocol=protocol,
                           timeout=timeout, service_name=service_name, **limits)
    if isinstance(endpoint, str) and endpoint[:8].lower().startswith(
            ("ws://", "wss://", "http://", "https://")):
        return _connectURL(reactor, endpoint, service, transport=transport, protocol=protocol,
                           timeout=timeout, service_name=service_name, **limits)
    # THeader's, for every call: its headers and transforms.
    headers, transforms = limits.pop("headers", None), limits.pop("transforms", ())
    factory = ClientFactory(service, transport=transport, protocol=protocol,
                            limits=Limits.from_keywords(**limits), timeout=timeout,
                            service_name=service_name, clock=reactor, headers=headers,
                            transforms=transforms)
    return _clientEndpoint(reactor, endpoint).connect(factory).addCallback(
        attrgetter("client"))
