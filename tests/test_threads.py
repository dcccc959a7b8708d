"""
Handlers in a thread pool (C{thriftService(threads=N)}, C{twistd thrift
--threads N}): what runs in the pool, what runs on the reactor, and what a
cancelled call costs the pool.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_twisted
from thrift.TMultiplexedProcessor import TMultiplexedProcessor
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.python.threadable import isInIOThread
from zope.interface import implementer

import txthrift
from tests._handlers import SUFFIX, EchoBasics
from tests.gen.py.txthrift_test import Echo
from tests.gen.pytwisted.txthrift_test import Echo as TwistedEcho
from txthrift._appservice import ThriftService
from txthrift._threads import Threads

#: Seconds any one wait in these tests may take.
WAIT = 20.0
LOOPBACK = "tcp:0:interface=127.0.0.1"


def settle(d: Deferred[Any]) -> Deferred[Any]:
    return d.addTimeout(WAIT, reactor)


async def until(condition: Callable[[], bool]) -> None:
    """
    Wait, a reactor turn at a time, for C{condition}; fail after L{WAIT}.
    """
    deadline = reactor.seconds() + WAIT
    while not condition():
        assert reactor.seconds() < deadline, "timed out waiting"
        await deferLater(reactor, 0.005)


@pytest_twisted.async_yield_fixture
async def hosted() -> AsyncIterator[Any]:
    """
    Start a L{txthrift.thriftService} on loopback; stopped after the test.
    """
    services: list[ThriftService] = []

    def host(handler: object, **kwargs: Any) -> ThriftService:
        service = txthrift.thriftService(handler, port=LOOPBACK, shutdown_timeout=1, **kwargs)
        service.startService()
        services.append(service)
        return service

    yield host
    for service in services:
        await settle(service.stopService())


def where(service: ThriftService) -> str:
    address: Any = service.ports[0].getHost()
    return f"tcp:127.0.0.1:{address.port}"


def poolThread() -> str:
    """
    Which thread runs the caller: C{"reactor"} or C{"pool"} (or its name).
    """
    if isInIOThread():
        return "reactor"
    name = threading.current_thread().name
    return "pool" if name.startswith("PoolThread-txthrift") else name


# ---------------------------------------------------------------------------
# Cancelled calls do not run
# ---------------------------------------------------------------------------


class Gate(EchoBasics):
    """
    C{slow} blocks its pool thread until the test opens the gate, and
    counts who got to run; C{started} is set once the first is running.
    """

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.started = threading.Event()
        self.ran: list[str] = []

    def slow(self, seconds: float, tag: str) -> str:
        self.ran.append(tag)
        self.started.set()
        self.opened.wait(WAIT)
        return tag


class Payload:
    """
    An argument whose lifetime a test follows.
    """


@pytest_twisted.ensureDeferred
async def test_cancelledQueuedCallsNeverRun() -> None:
    threads = Threads(reactor, 1)
    opened = threading.Event()
    ran: list[str] = []

    def work(tag: str) -> str:
        ran.append(tag)
        opened.wait(WAIT)
        return tag

    try:
        first = threads.call(work, "first")
        second = threads.call(work, "second")
        await until(lambda: ran == ["first"])
        arguments = weakref.ref(big := Payload())
        held = threads.call(work, big)
        del big
        second.cancel()
        held.cancel()
        # A cancelled call lets go of its arguments before a thread comes.
        gc.collect()
        assert arguments() is None
        failures: list[Any] = []
        second.addErrback(failures.append)
        held.addErrback(failures.append)
        assert failures[0].check(CancelledError) and failures[1].check(CancelledError)
        opened.set()
        assert await settle(first) == "first"
        assert await settle(threads.call(work, "third")) == "third"
        assert ran == ["first", "third"]
    finally:
        opened.set()
        threads.stop()


@pytest_twisted.ensureDeferred
async def test_callCancelledWhileRunningHasItsLaterDeferredCancelled() -> None:
    threads = Threads(reactor, 1)
    opened = threading.Event()
    started = threading.Event()
    abandoned: list[Deferred[str]] = []

    def work() -> Deferred[str]:
        started.set()
        opened.wait(WAIT)
        # A plain method returning a Deferred: nobody waits for it any more.
        return Deferred(abandoned.append)

    try:
        running = threads.call(work)
        await until(started.is_set)
        running.cancel()
        failures: list[Any] = []
        running.addErrback(failures.append)
        assert failures[0].check(CancelledError)
        opened.set()
        await until(lambda: bool(abandoned))
        assert len(failures) == 1
        assert await settle(threads.call(lambda: "next")) == "next"
    finally:
        opened.set()
        threads.stop()


@pytest_twisted.ensureDeferred
async def test_callsOfALostConnectionDoNotHoldThePool(hosted: Any) -> None:
    handler = Gate()
    service = hosted(handler, threads=1, max_pending=64)
    client = await settle(txthrift.connect(reactor, where(service), Echo))
    calls = [client.slow(0.25, f"t{n}") for n in range(40)]
    for call in calls:
        call.addErrback(lambda f: None)
    try:
        await until(lambda: [c.inFlight for c in service.factory.connections] == [40])
        # All 40 handed to the pool is no sign that its thread took up t0: wait
        # for that too, so that t0 is the one call running and 39 are queued.
        await until(handler.started.is_set)
        assert handler.ran == ["t0"]
        client.protocol.transport.abortConnection()
        # Losing the connection cancels its 40 calls: 39 of them still queued.
        await until(lambda: not service.factory.connections)
    finally:
        handler.opened.set()
    other = await settle(txthrift.connect(reactor, where(service), Echo))
    try:
        assert await settle(other.ping(1)) == 2
        assert await settle(other.slow(0, "new")) == "new"
    finally:
        await other.close()
    assert handler.ran == ["t0", "new"]


# ---------------------------------------------------------------------------
# py:twisted processors: process and async methods on the reactor
# ---------------------------------------------------------------------------


@implementer(TwistedEcho.Iface)
class Reporting:  # type: ignore[misc]  # implements only what the tests call
    """
    Says which thread ran each method: plain, C{async def}, and a plain
    method returning a Deferred.
    """

    def getData(self, input: str) -> str:
        return f"{input} {poolThread()}"

    async def echo(self, text: str, repeat: int) -> str:
        here = poolThread()
        await deferLater(reactor, 0)
        return f"{text * repeat} {here}"

    def ping(self, x: int) -> int:
        assert poolThread() == "pool", poolThread()
        return x + 1


class BlockingReport(EchoBasics):
    def getData(self, input: str) -> str:
        return f"{input} {poolThread()}"


async def askWhere(client: Any) -> tuple[str, str, int]:
    return (await settle(client.getData("plain")), await settle(client.echo("async ", 1)),
            await settle(client.ping(1)))


@pytest_twisted.ensureDeferred
async def test_twistedProcessorUnderThreadsRunsAsyncMethodsOnTheReactor(hosted: Any) -> None:
    handler = Reporting()
    processor = TwistedEcho.Processor(handler)
    service = hosted(processor, threads=2)
    client = await settle(txthrift.connect(reactor, where(service), Echo))
    try:
        assert await askWhere(client) == ("plain pool", "async  reactor", 2)
    finally:
        await client.close()
    assert processor._handler is handler


@pytest_twisted.ensureDeferred
async def test_multiplexedProcessorUnderThreadsThreadsEachProcessorByItsKind(
        hosted: Any) -> None:
    handler = Reporting()
    twisted = TwistedEcho.Processor(handler)
    plain = Echo.Processor(BlockingReport())
    multiplexed = TMultiplexedProcessor()
    multiplexed.registerProcessor("Twisted", twisted)
    multiplexed.registerProcessor("Plain", plain)
    service = hosted(multiplexed, threads=2)
    clients = [await settle(txthrift.connect(reactor, where(service), Echo, service_name=name))
               for name in ("Twisted", "Plain")]
    try:
        assert await askWhere(clients[0]) == ("plain pool", "async  reactor", 2)
        assert await settle(clients[1].getData("blocking")) == "blocking pool"
        assert await settle(clients[1].echo("ab", 2)) == "abab"
    finally:
        for client in clients:
            await client.close()
    # The user's objects are as they were.
    assert multiplexed.services == {"Twisted": twisted, "Plain": plain}
    assert twisted._handler is handler


@pytest_twisted.ensureDeferred
async def test_twistedProcessorBesideAHandlerUnderThreads(hosted: Any) -> None:
    service = hosted({"Twisted": TwistedEcho.Processor(Reporting()), "Plain": EchoBasics()},
                     threads=2)
    twisted = await settle(txthrift.connect(reactor, where(service), Echo,
                                            service_name="Twisted"))
    plain = await settle(txthrift.connect(reactor, where(service), Echo, service_name="Plain"))
    try:
        assert await askWhere(twisted) == ("plain pool", "async  reactor", 2)
        assert await settle(plain.getData("x")) == "x" + SUFFIX
    finally:
        await twisted.close()
        await plain.close()
