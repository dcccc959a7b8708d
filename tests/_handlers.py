"""
The handlers several test files serve: the plain answers of the test
service C{Echo} (L{EchoBasics}) that every test handler builds on, and the
handlers C{twistd thrift} serves in a subprocess, named as
C{--handler tests._handlers.Name} (L{HANDLERS}).

A handler only one test file needs stays in that file; nothing here knows
what a test checks.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Generator
from typing import Any

from thrift.Thrift import TApplicationException
from twisted.internet.defer import CancelledError, Deferred, fail, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

import txthrift
from tests.gen.py.txthrift_test import Calc, Echo
from tests.gen.py.txthrift_test.ttypes import Oops

#: This module, as C{--handler} names what it holds: C{f"{HANDLERS}.EchoHandler"}.
HANDLERS = "tests._handlers"

#: What the seed example's getData appends to its input.
SUFFIX = " from server 1024"

log = Logger(namespace="tests.handlers")


class EchoBasics(Echo.Iface):
    """
    The plain answers of C{Echo}; each handler adds or changes what its
    tests are about (threads, Deferreds, coroutines, faults).
    """

    def ping(self, x: int) -> int:
        return x + 1

    def sayHello(self) -> None:
        return None

    def getData(self, input: str) -> str:
        return input + SUFFIX

    def echo(self, text: str, repeat: int) -> str:
        return text * repeat

    def add(self, a: int, b: int) -> int:
        return a + b


def describeCall() -> str:
    """
    What C{txthrift.currentCall()} says of the call being handled, as JSON
    (so that a handler in another process can tell a test).
    """
    call = txthrift.currentCall()
    certificate = call.tlsCertificate
    return json.dumps({
        "service": call.service, "method": call.method, "seqid": call.seqid,
        "host": getattr(call.peer, "host", None), "identity": call.identity,
        "subject": None if certificate is None else certificate.subject.rfc4514_string(),
        "headers": dict(call.headers), "deadline": call.deadline})


class WhoIsCalling(EchoBasics):
    """
    An C{Echo} answering with what C{currentCall()} says (L{describeCall}):
    at once (C{getData}), after an await in a coroutine (C{slow}), and
    after a yield under C{inlineCallbacks} (C{echo}).
    """

    def __init__(self, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor

    def getData(self, input: str) -> str:
        return describeCall()

    async def slow(self, seconds: float, tag: str) -> str:
        await deferLater(self.reactor, seconds)
        return json.dumps({"tag": tag, **json.loads(describeCall())})

    @inlineCallbacks
    def echo(  # type: ignore[override]
            self, text: str, repeat: int) -> Generator[Deferred[None], None, str]:
        yield deferLater(self.reactor, 0)
        return describeCall()


class Holding(EchoBasics):
    """
    An C{Echo} whose C{slow} answers when the test fires C{waiting[tag]}.
    """

    def __init__(self) -> None:
        self.waiting: dict[str, Deferred[str]] = {}

    def slow(self, seconds: float, tag: str) -> Deferred[str]:
        self.waiting[tag] = Deferred()
        return self.waiting[tag]


class Stubborn(Holding):
    """
    An C{Echo} whose C{getData} carries on when cancelled: it answers only
    once the test fires the latest of its C{gates}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[Deferred[None]] = []

    async def getData(self, input: str) -> str:  # type: ignore[override]
        while True:
            gate: Deferred[None] = Deferred()
            self.gates.append(gate)
            try:
                await gate
                return input
            except CancelledError:
                continue  # ignores being cancelled


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


class Hardened(EchoHandler):
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
        super().__init__(reactor)
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
    A blocking C{Echo}, for C{--threads}: C{slow} sleeps in its thread
    (saying in the log, from that thread, that it started), C{getData} says
    which thread it ran in.
    """

    def ping(self, x: int) -> int:
        return x + 1

    def getData(self, input: str) -> str:
        return threading.current_thread().name

    def slow(self, seconds: float, tag: str) -> str:
        log.info("blocking slow call {tag} started", tag=tag)
        time.sleep(seconds)
        return tag


class PidEcho(EchoHandler):
    """
    An C{Echo} whose C{ping} says which process answered (for C{--workers}).
    """

    def ping(self, x: int) -> int:
        return os.getpid()


class CountingEcho(EchoBasics):
    """
    An C{Echo} whose C{add(a, b)} writes C{a} as a line to the file C{runs}
    (C{--handler-option runs=PATH}) each time it runs: a test's proof that
    a call that is not idempotent ran at most once, whatever happened to
    the process.  Each line is one C{write} on a file opened to append, so
    a SIGKILL loses none that was answered.
    """

    def __init__(self, runs: str) -> None:
        self._fd = os.open(runs, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def add(self, a: int, b: int) -> int:
        os.write(self._fd, b"%d\n" % a)
        return a + b

    def slow(self, seconds: float, tag: str) -> Deferred[str]:
        from twisted.internet import reactor

        return deferLater(reactor, seconds, lambda: tag)


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
