"""
Handlers that tests/test_tap.py serves with C{twistd thrift}, in a twistd
subprocess (as C{--handler tests._tap_handlers.Name}) or in-process.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from tests._echo import EchoBasics
from tests.gen.py.txthrift_test import Calc, Echo

log = Logger(namespace="tests.tap")


class EchoHandler(EchoBasics):
    """
    A non-blocking C{Echo}: C{slow} waits on the reactor, and says in the
    log when it starts, so a test knows the call is in flight.
    """

    def __init__(self, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor

    def slow(self, seconds: float, tag: str) -> Deferred[str]:
        log.info("slow call {tag} started", tag=tag)
        return deferLater(self.reactor, seconds, lambda: tag)


class BlockingEcho(Echo.Iface):
    """
    A blocking C{Echo}, for C{--threads}: C{slow} sleeps, C{getData} says
    which thread it ran in.
    """

    def ping(self, x: int) -> int:
        return x + 1

    def getData(self, input: str) -> str:
        return threading.current_thread().name

    def slow(self, seconds: float, tag: str) -> str:
        time.sleep(seconds)
        return tag


class CalcHandler(Calc.Iface):
    def multiply(self, a: int, b: int) -> int:
        return a * b


class Unmarked:
    """
    Implements C{Calc} without saying so: serving it takes C{--service}.
    """

    def multiply(self, a: int, b: int) -> int:
        return a * b


def brokenFactory() -> object:
    raise RuntimeError("no database today")
