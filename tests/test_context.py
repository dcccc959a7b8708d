"""
Tests for L{txthrift.currentCall}: what a handler learns of the call it is
handling, over TCP, HTTP and WebSocket, in plain, coroutine,
C{inlineCallbacks} and threaded handlers, multiplexed or not, from a
handler object or a processor; and the clear error outside a call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater

import txthrift
from tests._handlers import WhoIsCalling, describeCall
from tests.gen.py.txthrift_test import Calc, Echo
from tests.test_interop import within

#: Seconds any one wait may take.
WAIT = 10.0


@asynccontextmanager
async def calling(handler: object, *, service_name: str | None = None, url: str = "",
                  headers: dict[str, str] | None = None, transport: str = "auto",
                  **limits: Any) -> AsyncIterator[Any]:
    """
    An C{Echo} client of C{handler} served on 127.0.0.1 (over TCP, or
    C{transport="http"} / C{"websocket"}).
    """
    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", handler,
                                transport=transport, **limits)
    number = port.getHost().port
    extra: dict[str, Any] = {} if headers is None else {"headers": headers}
    where = (f"{url}://127.0.0.1:{number}/" if url
             else f"tcp:host=127.0.0.1:port={number}")
    client: Any = await within(txthrift.connect(reactor, where, Echo, timeout=WAIT,
                                           service_name=service_name, **extra))
    try:
        yield client
    finally:
        await client.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_aPlainHandlerSeesItsCall() -> None:
    async with calling(WhoIsCalling()) as client:
        first = json.loads(await client.getData("x"))
        second = json.loads(await client.getData("x"))
    assert first["service"] == "Echo"
    assert first["method"] == "getData"
    assert first["host"] == "127.0.0.1"
    assert first["identity"] is None and first["subject"] is None
    assert first["headers"] == {} and first["deadline"] is None
    assert second["seqid"] != first["seqid"]


@pytest_twisted.ensureDeferred
async def test_theDeadlineIsWhenCallTimeoutEnds() -> None:
    before = reactor.seconds()
    async with calling(WhoIsCalling(), call_timeout=30) as client:
        got = json.loads(await client.getData("x"))
    assert before + 30 <= got["deadline"] <= reactor.seconds() + 30


@pytest_twisted.ensureDeferred
async def test_eachOfManyCallsInFlightKeepsItsOwnAcrossAwaits() -> None:
    """
    Coroutines that interleave on one connection each see their own call
    after their awaits, not the last one to arrive.
    """
    async with calling(WhoIsCalling()) as client:
        # Later calls wait less: they finish before the earlier ones.
        calls = [client.slow(0.05 - i * 0.002, f"t{i}") for i in range(20)]
        got = [json.loads(reply) for reply in await within(gatherResults(calls))]
    assert [reply["tag"] for reply in got] == [f"t{i}" for i in range(20)]
    assert {reply["method"] for reply in got} == {"slow"}
    seqids = [reply["seqid"] for reply in got]
    assert seqids == sorted(seqids) and len(set(seqids)) == 20


@pytest_twisted.ensureDeferred
async def test_inlineCallbacksSeesItsCallAfterAYield() -> None:
    async with calling(WhoIsCalling()) as client:
        got = json.loads(await client.echo("x", 1))
    assert got["method"] == "echo" and got["service"] == "Echo"


@pytest_twisted.ensureDeferred
async def test_aProcessorsHandlerSeesTheServiceItServes() -> None:
    async with calling(Echo.Processor(WhoIsCalling())) as client:
        got = json.loads(await client.getData("x"))
    assert (got["service"], got["method"]) == ("Echo", "getData")


@pytest_twisted.ensureDeferred
async def test_multiplexedCallsNameTheirService() -> None:
    class Multiply(Calc.Iface):
        def multiply(self, a: int, b: int) -> int:
            return a * b

    async with calling({"Who": WhoIsCalling(), "Calc": Multiply()},
                       service_name="Who") as client:
        got = json.loads(await client.getData("x"))
    assert (got["service"], got["method"]) == ("Who", "getData")


@pytest_twisted.ensureDeferred
async def test_threadedHandlersAndProcessorsSeeTheirCall() -> None:
    """
    Under C{threads=}, a plain method runs in a pool thread and still sees
    its own call, whether served as a handler or through a processor.
    """
    for handler in (WhoIsCalling(), Echo.Processor(WhoIsCalling())):
        service = txthrift.thriftService(handler, port="tcp:0:interface=127.0.0.1",
                                         threads=4, reactor=reactor)
        service.startService()
        try:
            number = service.ports[0].getHost().port  # type: ignore[attr-defined]
            client: Any = await within(txthrift.connect(
                reactor, f"tcp:host=127.0.0.1:port={number}", Echo, timeout=WAIT))
            try:
                got = [json.loads(reply) for reply in await within(gatherResults(
                    [client.getData(str(i)) for i in range(8)]))]
            finally:
                await client.close()
        finally:
            await service.stopService()
        assert {reply["method"] for reply in got} == {"getData"}
        assert len({reply["seqid"] for reply in got}) == 8


@pytest_twisted.ensureDeferred
async def test_httpCallsSeeTheirRequestHeaders() -> None:
    async with calling(WhoIsCalling(), transport="http", url="http",
                       headers={"Authorization": "Bearer t0ken", "X-Trace": "abc"}) as client:
        got = json.loads(await client.getData("x"))
    assert got["headers"]["authorization"] == "Bearer t0ken"
    assert got["headers"]["x-trace"] == "abc"
    assert (got["service"], got["method"], got["host"]) == ("Echo", "getData", "127.0.0.1")


@pytest_twisted.ensureDeferred
async def test_webSocketCallsSeeTheOpeningRequestsHeaders() -> None:
    async with calling(WhoIsCalling(), transport="websocket", url="ws",
                       headers={"X-Trace": "abc"}) as client:
        got = json.loads(await client.getData("x"))
    assert got["headers"]["x-trace"] == "abc"
    assert (got["method"], got["host"]) == ("getData", "127.0.0.1")


def test_outsideACallIsAClearError() -> None:
    with pytest.raises(RuntimeError, match="only available while a Thrift call is being handled"):
        txthrift.currentCall()


@pytest_twisted.ensureDeferred
async def test_aCallbackTheReactorFiresLaterRunsOutsideTheCall() -> None:
    """
    As documented: a Deferred's callback run later by the reactor is not
    in the call (read currentCall() in the handler and keep it).
    """
    seen: list[object] = []

    class Later(WhoIsCalling):
        def getData(self, input: str) -> Deferred[str]:  # type: ignore[override]
            kept = txthrift.currentCall()

            def later(_: object) -> str:
                try:
                    describeCall()
                except RuntimeError as error:
                    seen.append(error)
                return kept.method

            return deferLater(reactor, 0).addCallback(later)

    async with calling(Later()) as client:
        assert await client.getData("x") == "getData"
    assert len(seen) == 1 and isinstance(seen[0], RuntimeError)


def test_theContextReprNamesTheCall() -> None:
    from txthrift._context import CallContext, Origin

    call = CallContext(Origin(None, "Echo", identity="alice"), "Who:getData", 7, None)
    assert (call.service, call.method, call.identity) == ("Who", "getData", "alice")
    assert repr(call) == "<CallContext Who.getData seqid=7 peer=None identity='alice'>"


@pytest_twisted.ensureDeferred
async def test_theReadmesHandlerSeesItsCaller() -> None:
    """
    The README's C{whoami.py} ("Who is calling"), served and called.
    """
    import sys
    import types

    from tests import _readme

    source = _readme.files(_readme.section("### The call context"))["whoami.py"]
    gen = str(_readme.REPO / "examples" / "hello" / "gen")
    sys.path.insert(0, gen)
    try:
        module = types.ModuleType("whoami")
        exec(compile(source, "whoami.py", "exec"), module.__dict__)  # noqa: S102 - the README's own
        hello = sys.modules["HelloService.HelloService"]
    finally:
        sys.path.remove(gen)
    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", module.Handler())
    try:
        client: Any = await within(txthrift.connect(
            reactor, f"tcp:host=127.0.0.1:port={port.getHost().port}", hello, timeout=WAIT))
        try:
            assert await client.getData("x") == "anonymous called getData from 127.0.0.1"
        finally:
            await client.close()
    finally:
        await port.stopListening()
