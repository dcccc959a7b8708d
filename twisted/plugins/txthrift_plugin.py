"""
The C{twistd thrift} plugin: serve a Thrift handler under twistd; and the
C{mtls:} server endpoint strings (TLS requiring client certificates).

This module only names the plugins, so that listing them stays cheap; the
options, and the service they make, live in L{txthrift._tap}, the endpoint
in L{txthrift._tls}.
It is a dropin: there is no C{twisted/__init__.py} nor
C{twisted/plugins/__init__.py} in this project, so that it never shadows
Twisted's own packages.
"""

from typing import Any

from twisted.application.service import ServiceMaker
from twisted.internet.interfaces import IStreamServerEndpoint, IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer

txthrift = ServiceMaker(
    "txthrift",
    "txthrift._tap",
    "Serve a Thrift service handler over TCP, TLS or UNIX sockets.",
    "thrift",
)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class _MutualTLS:
    """
    C{mtls:PORT:privateKey=...:certKey=...:clientCA=...}: C{ssl:} that
    requires a client certificate signed by a CA of C{clientCA}.
    """

    prefix = "mtls"

    def parseStreamServer(self, reactor: Any, *args: Any, **kwargs: Any) -> IStreamServerEndpoint:
        from txthrift._tls import mutualTLSEndpoint

        return mutualTLSEndpoint(reactor, *args, **kwargs)


mtls = _MutualTLS()
