"""
Testing a Thrift service built on txthrift: its handler served to a real
client, in memory (L{loopback}) or over 127.0.0.1 (L{serveAndConnect}),
and a trial L{TestCase} that also runs beside pytest-twisted tests.

The pytest fixtures are in L{txthrift.testing.pytest_plugin}, which pytest
loads by itself wherever txthrift is installed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial import unittest

from .._client import Client
from .._hosting import connect, serve
from .._limits import defaultReactor
from .._loopback import Pump, clientServiceOf, loopback

__all__ = ["Cleanups", "Pump", "TestCase", "loopback", "serveAndConnect"]

#: Seconds a cleanup waits for the server's end of a closed client's
#: connection to go.
_CLOSE_WAIT = 10.0


class Cleanups(Protocol):
    """
    What L{serveAndConnect} registers its cleanups with: a trial or
    C{unittest} test case, or anything with the same C{addCleanup}.
    """

    def addCleanup(self, function: Callable[..., Any], /, *args: Any,
                   **kwargs: Any) -> None: ...


def serveAndConnect(cleanups: Cleanups, handler: object, service: ModuleType | None = None,
                    *, reactor: Any = None, transport: str = "framed",
                    protocol: str = "binary", timeout: float | None = 10.0,
                    service_name: str | None = None, **limits: Any) -> Deferred[Any]:
    """
    Serve C{handler} on C{127.0.0.1} (a port of the system's choosing) with
    L{txthrift.serve}, and connect a client to it with L{txthrift.connect}.

    When the test ends, the client is closed, the server's end of the
    connection waited for (trial fails a test that leaves a socket open)
    and the port closed.

    @param cleanups: where the cleanups go: the test case (C{self}).
    @param reactor: the reactor; the global one by default.
    @param timeout: the client's default call timeout in seconds: a call
        that gets no answer fails the test instead of hanging it.
    @param limits: keywords of L{txthrift.Limits}, for both ends.
    @return: a Deferred firing with the connected client, a
        L{txthrift.Client} (typed C{Any}, as its methods are made at run
        time).
    """
    if reactor is None:
        reactor = defaultReactor()
    module = clientServiceOf(handler, service, service_name)
    return ensureDeferred(_serveAndConnect(
        cleanups, reactor, handler, service, module, transport, protocol, timeout,
        service_name, limits))


async def _serveAndConnect(cleanups: Cleanups, reactor: Any, handler: object,
                           service: ModuleType | None, module: ModuleType, transport: str,
                           protocol: str, timeout: float | None, service_name: str | None,
                           limits: dict[str, Any]) -> Any:
    port: Any = await serve(reactor, "tcp:0:interface=127.0.0.1", handler, service=service,
                            **limits)
    cleanups.addCleanup(port.stopListening)
    client = await connect(reactor, f"tcp:host=127.0.0.1:port={port.getHost().port}", module,
                           transport=transport, protocol=protocol, timeout=timeout,
                           service_name=service_name, **limits)

    async def close() -> None:
        await Client.close(client)
        gone = port.factory.whenDisconnected()
        await gone.addTimeout(_CLOSE_WAIT, reactor)

    cleanups.addCleanup(lambda: ensureDeferred(close()))
    return client


class TestCase(unittest.TestCase):
    """
    trial's C{TestCase}, which also runs in one pytest run with
    pytest-twisted tests, in any order.

    pytest-twisted keeps the reactor running (in a greenlet of its own)
    once any of its tests has run; trial's C{TestCase} would run it again to
    wait for a test's Deferreds, and fail with C{DirtyReactorAggregateError}
    (or warn "coroutine ignored GeneratorExit").  This one waits in
    pytest-twisted's greenlet instead when the reactor is already running
    there; under C{trial} it is trial's own.
    """

    def _wait(self, d: Deferred[Any], running: Any = None) -> None:
        # trial's TestCase._wait (not public) runs the reactor until d fires;
        # tests/test_testing.py checks trial still waits through it.
        pytestTwisted = sys.modules.get("pytest_twisted")
        if pytestTwisted is not None and defaultReactor().running:
            pytestTwisted.blockon(d)
            return
        super()._wait(d)
