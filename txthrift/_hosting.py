"""
The front door: serve a handler on an endpoint, connect a client to one.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)

from ._client import Client, ClientFactory
from ._limits import Limits
from ._server import ServerFactory

__all__ = ["connect", "serve"]


def _serverEndpoint(reactor: Any, endpoint: IStreamServerEndpoint | str) -> IStreamServerEndpoint:
    if isinstance(endpoint, str):
        return serverFromString(reactor, endpoint)
    return endpoint


def _clientEndpoint(reactor: Any, endpoint: IStreamClientEndpoint | str) -> IStreamClientEndpoint:
    if isinstance(endpoint, str):
        return clientFromString(reactor, endpoint)
    return endpoint


def serve(reactor: Any, endpoint: IStreamServerEndpoint | str, handler: object, *,
          service: ModuleType | None = None, transport: str = "auto", protocol: str = "auto",
          **limits: Any) -> Deferred[IListeningPort]:
    """
    Serve a Thrift handler or processor on an endpoint.

    @param endpoint: an C{IStreamServerEndpoint} or a server endpoint
        description such as C{"tcp:9090:interface=127.0.0.1"}.
    @param handler: an object implementing a generated service's methods
        (returning values, Deferreds or coroutines), any Thrift processor, or
        a mapping of service names to either, served multiplexed.
    @param service: the generated service module, when it cannot be found
        from the handler's C{Iface}.
    @param transport: C{"framed"}, C{"buffered"}, or C{"auto"} to detect it
        per connection.
    @param protocol: C{"binary"}, C{"compact"}, C{"json"}, or C{"auto"}.
    @param limits: keywords of L{Limits}.
    @return: a Deferred firing with the listening port.
    @raise TypeError: for a handler whose service cannot be found, or an
        unknown limit.
    @raise ValueError: for a bad transport, protocol or limit value.
    """
    factory = ServerFactory(handler, service=service, transport=transport, protocol=protocol,
                            limits=Limits.from_keywords(**limits), clock=reactor)
    return _serverEndpoint(reactor, endpoint).listen(factory)


def connect(reactor: Any, endpoint: IStreamClientEndpoint | str, service: ModuleType, *,
            transport: str = "framed", protocol: str = "binary", timeout: float | None = None,
            service_name: str | None = None, **limits: Any) -> Deferred[Client]:
    """
    Connect a client of a generated service.

    @param endpoint: an C{IStreamClientEndpoint} or a client endpoint
        description such as C{"tcp:host=127.0.0.1:port=9090"}.
    @param service: the generated service module (either flavour).
    @param timeout: default seconds each call waits for its reply.
    @param service_name: the name the service has on a multiplexed server.
    @return: a Deferred firing with a client with one Deferred-returning
        method per service method.
    """
    factory = ClientFactory(service, transport=transport, protocol=protocol,
                            limits=Limits.from_keywords(**limits), timeout=timeout,
                            service_name=service_name, clock=reactor)

    def connected(proto: Any) -> Client:
        client: Client = proto.client
        return client

    return _clientEndpoint(reactor, endpoint).connect(factory).addCallback(connected)
