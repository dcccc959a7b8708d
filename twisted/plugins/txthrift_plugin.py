"""
The C{twistd thrift} plugin: serve a Thrift handler under twistd.

This module only names the plugin, so that listing twistd's plugins stays
cheap; the options, and the service they make, live in L{txthrift._tap}.
It is a dropin: there is no C{twisted/__init__.py} nor
C{twisted/plugins/__init__.py} in this project, so that it never shadows
Twisted's own packages.
"""

from twisted.application.service import ServiceMaker

txthrift = ServiceMaker(
    "txthrift",
    "txthrift._tap",
    "Serve a Thrift service handler over TCP, TLS or UNIX sockets.",
    "thrift",
)
