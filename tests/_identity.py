"""
A handler that tells each caller who the server thinks it is, for the SASL
tests (C{twistd thrift --handler tests._identity.IdentityHandler}).
"""

from __future__ import annotations

from tests._handlers import EchoHandler
from txthrift import currentCall


class IdentityHandler(EchoHandler):
    """
    An C{Echo} whose C{getData} answers with the caller's identity.
    """

    def getData(self, input: str) -> str:
        return f"{input} as {currentCall().identity}"
