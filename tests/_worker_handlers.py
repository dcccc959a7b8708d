"""
Handlers that tests/test_workers.py serves with C{twistd thrift --workers}.
"""

from __future__ import annotations

import os

from tests._tap_handlers import EchoHandler


class PidEcho(EchoHandler):
    """
    An C{Echo} whose C{ping} says which process answered.
    """

    def ping(self, x: int) -> int:
        return os.getpid()
