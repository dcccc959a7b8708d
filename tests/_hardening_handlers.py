"""
Handlers that tests/test_hardening.py serves, in-process or with
C{twistd thrift} (as C{--handler tests._hardening_handlers.Name}).
"""

from __future__ import annotations

import time
from typing import Any

from thrift.Thrift import TApplicationException
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from tests._echo import EchoBasics
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Oops

log = Logger(namespace="tests.hardening")


class Hardened(EchoBasics):
    """
    An C{Echo} with every kind of fault on demand.

      - C{slow(seconds, tag)} answers C{tag} after C{seconds} on the reactor;
        a negative C{seconds} never answers.
      - C{fail(kind)}: C{"raise"} raises, C{"deferred"} returns a failing
        Deferred, C{"oops"} raises the declared exception, C{"app"} a
        C{TApplicationException}.
      - C{blob(size)} answers C{size} times 256 bytes.
    """

    def __init__(self, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.late: list[Deferred[str]] = []
        #: Tags of the C{slow} calls that have ended: answered, or cancelled
        #: ("tag cancelled").
        self.finished: list[str] = []
        self.blobs = 0

    def echo(self, text: str, repeat: int) -> str:
        # Fuzzed requests ask for anything: keep replies small.
        return text * min(repeat, 1000)

    def fail(self, kind: str) -> Any:
        if kind == "raise":
            raise RuntimeError("handler raised on purpose")
        if kind == "deferred":
            return fail(RuntimeError("handler failed its Deferred on purpose"))
        if kind == "oops":
            raise Oops(why="declared", code=3)
        raise TApplicationException(TApplicationException.INVALID_TRANSFORM, "told you")

    def slow(self, seconds: float, tag: str) -> Deferred[str]:
        log.info("slow call {tag} started", tag=tag)
        if seconds < 0:
            never: Deferred[str] = Deferred()
            self.late.append(never)
            return never

        def ended(result: Any) -> Any:
            cancelled = isinstance(result, Failure) and result.check(CancelledError)
            self.finished.append(f"{tag} cancelled" if cancelled else tag)
            return result

        return deferLater(self.reactor, seconds, lambda: tag).addBoth(ended)

    async def blob(self, size: int) -> bytes:
        self.blobs += 1
        return bytes(range(256)) * min(size, 4096)

    def fire(self, message: str) -> None:
        log.info("fired {message}", message=message)


class Blocking(Echo.Iface):
    """
    A blocking C{Echo} for C{--threads}: C{slow} sleeps in its thread.
    """

    def ping(self, x: int) -> int:
        return x + 1

    def slow(self, seconds: float, tag: str) -> str:
        # Logged from its thread, so that a test can wait for the thread to block.
        log.info("blocking slow call {tag} started", tag=tag)
        time.sleep(seconds)
        return tag
