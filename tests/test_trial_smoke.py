"""
A smoke test over real sockets, written for trial: the test Echo service
served with L{txthrift.serve} and called with L{txthrift.connect}.

It runs under both C{trial tests.test_trial_smoke} and pytest, beside
pytest-twisted tests: L{txthrift.testing.TestCase} sees to that.
"""

from __future__ import annotations

from typing import Any

from thrift.transport.TTransport import TTransportException
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater

import txthrift
from tests._handlers import EchoBasics
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Denied, Oops
from txthrift.testing import TestCase


class EchoHandler(EchoBasics):
    """
    A plain handler: no Twisted in it, apart from telling the test of a
    oneway call.
    """

    def __init__(self) -> None:
        self.fired: Deferred[str] = Deferred()

    def fail(self, kind: str) -> str:
        if kind == "oops":
            raise Oops(why="asked to fail", code=42)
        raise Denied(who=kind)

    def fire(self, message: str) -> None:
        self.fired.callback(message)


class ServeAndConnectTests(TestCase):
    """
    A served handler answers a connected client over TCP on 127.0.0.1.
    """

    timeout = 30

    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        self.handler = EchoHandler()
        return ensureDeferred(self._listen())

    async def _listen(self) -> None:
        self.port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1",
                                              self.handler)
        self.addCleanup(self.port.stopListening)

    async def _connect(self, **options: Any) -> Any:
        """
        Connect a client; when the test ends it is closed and the server's
        end of its connection has gone too.
        """
        client = await txthrift.connect(
            reactor, f"tcp:host=127.0.0.1:port={self.port.getHost().port}", Echo, timeout=10,
            **options)
        self.addCleanup(lambda: ensureDeferred(self._closed(client)))
        return client

    async def _closed(self, client: Any) -> None:
        await client.close()
        # Trial fails a test that leaves a socket open: wait for the server's end.
        connections = self.port.factory.connections
        for _ in range(500):
            if not connections:
                return
            await deferLater(reactor, 0.01, lambda: None)
        self.fail(f"the server still has {len(connections)} connection(s) open")

    def test_framedBinary(self) -> Deferred[None]:
        async def check() -> None:
            client = await self._connect(transport="framed", protocol="binary")
            self.assertEqual(await client.ping(1), 2)
            self.assertEqual(await client.getData("framed"), "framed from server 1024")
            self.assertEqual(await client.add(40, 2), 42)

        return ensureDeferred(check())

    def test_bufferedCompact(self) -> Deferred[None]:
        async def check() -> None:
            client = await self._connect(transport="buffered", protocol="compact")
            self.assertEqual(await client.getData("compact"), "compact from server 1024")
            self.assertEqual(await client.add(-1, 1), 0)

        return ensureDeferred(check())

    def test_declaredException(self) -> Deferred[None]:
        async def check() -> None:
            client = await self._connect()
            oops = await self.assertFailure(client.fail("oops"), Oops)
            self.assertEqual((oops.why, oops.code), ("asked to fail", 42))
            denied = await self.assertFailure(client.fail("mallory"), Denied)
            self.assertEqual(denied.who, "mallory")
            # The connection carries on after a declared exception.
            self.assertEqual(await client.ping(7), 8)

        return ensureDeferred(check())

    def test_oneway(self) -> Deferred[None]:
        async def check() -> None:
            client = await self._connect()
            self.assertIsNone(await client.fire("hello"))
            self.assertEqual(await self.handler.fired, "hello")

        return ensureDeferred(check())

    def test_clientClose(self) -> Deferred[None]:
        async def check() -> None:
            client = await self._connect()
            self.assertEqual(await client.ping(0), 1)
            await client.close()
            error = await self.assertFailure(client.ping(1), TTransportException)
            self.assertEqual(error.type, TTransportException.NOT_OPEN)
            # Closing again is harmless.
            await client.close()

        return ensureDeferred(check())
