"""
txthrift: Thrift RPC on Twisted.

Serve a handler with L{serve}, call a service with L{connect}; the classes
below are the pieces both are built from, for composing your own.  Thrift
over HTTP in a C{twisted.web} site or a klein app: L{txthrift.web}.
"""

from ._accesslog import AccessLog
from ._appservice import thriftService
from ._client import CallTimeout, Client, ClientFactory, ClientProtocol
from ._codec import Acceleration, Codec, accelerated, acceleration
from ._context import CallContext, currentCall
from ._framing import PROTOCOLS, TRANSPORTS, ThriftMessageProtocol
from ._hosting import connect, serve
from ._idl import IDLError, loadIDL
from ._limits import Limits
from ._pool import PoolClient, PoolUnavailable, RetryBudget, connectPool
from ._sasl import SASLError
from ._scanning import FrameError
from ._server import ServerFactory, ServerProtocol
from ._tracing import Tracing
from ._transport import CallbackTransport, MessageSenderTransport
from ._version import __version__

__all__ = [
    "PROTOCOLS",
    "TRANSPORTS",
    "Acceleration",
    "AccessLog",
    "CallContext",
    "CallTimeout",
    "CallbackTransport",
    "Client",
    "ClientFactory",
    "ClientProtocol",
    "Codec",
    "FrameError",
    "IDLError",
    "Limits",
    "MessageSenderTransport",
    "PoolClient",
    "PoolUnavailable",
    "RetryBudget",
    "SASLError",
    "ServerFactory",
    "ServerProtocol",
    "ThriftMessageProtocol",
    "Tracing",
    "__version__",
    "accelerated",
    "acceleration",
    "connect",
    "connectPool",
    "currentCall",
    "loadIDL",
    "serve",
    "thriftService",
]
