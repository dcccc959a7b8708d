"""
Tests for L{txthrift.Tracing}: an OpenTelemetry span per call with the RPC
attributes and status, continuing the trace of a C{traceparent} sent in
THeader or HTTP headers, through real sockets; C{trace=True} and C{twistd
thrift --trace}; a clear error without the extra; nothing imported when off.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_twisted
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from thrift.Thrift import TApplicationException
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.python import usage

import txthrift
from tests._handlers import Hardened
from tests.gen.py.txthrift_test import Calc, Echo
from tests.gen.py.txthrift_test.ttypes import Oops
from tests.test_interop import within
from txthrift._tap import Options, makeService
from txthrift._tracing import Tracing, openTelemetry

HANDLERS = "tests._handlers"
WAIT = 10.0
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"


@pytest.fixture
def spans() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(tracerProvider=provider), exporter
    provider.shutdown()


@asynccontextmanager
async def calling(observer: Any, transport: str, headers: dict[str, str] | None,
                  service: Any = Echo, handler: Any = None) -> AsyncIterator[Any]:
    """
    A client of a L{Hardened} C{Echo} traced by C{observer}, over THeader
    (C{transport="header"}) or HTTP (C{"http"}).
    """
    handler = Hardened(reactor) if handler is None else handler
    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", handler,
                                     transport="http" if transport == "http" else "auto",
                                     observer=observer)
    number = port.getHost().port
    extra: dict[str, Any] = {} if headers is None else {"headers": headers}
    if transport == "http":
        connecting = txthrift.connect(reactor, f"http://127.0.0.1:{number}/", service,
                                      timeout=WAIT, **extra)
    else:
        connecting = txthrift.connect(reactor, f"tcp:host=127.0.0.1:port={number}", service,
                                      transport=transport, timeout=WAIT, **extra)
    client: Any = await within(connecting)
    try:
        yield client
    finally:
        await client.close()
        await port.stopListening()


@pytest.mark.parametrize("transport", ["header", "http"])
@pytest_twisted.ensureDeferred
async def test_aSpanPerCallContinuingTheCallersTrace(
        spans: tuple[Tracing, InMemorySpanExporter], transport: str) -> None:
    tracing, exporter = spans
    async with calling(tracing, transport, {"traceparent": TRACEPARENT}) as client:
        await client.getData("x")
        with pytest.raises(Oops):
            await client.fail("oops")
        with pytest.raises(TApplicationException):
            await client.fail("raise")
    ok, declared, failed = exporter.get_finished_spans()
    for span, method, outcome in ((ok, "getData", "ok"), (declared, "fail", "declared_exception"),
                                  (failed, "fail", "internal_error")):
        assert span.name == f"Echo/{method}"
        assert span.kind == SpanKind.SERVER
        assert span.parent is not None and span.parent.is_remote
        assert format(span.parent.span_id, "016x") == PARENT
        assert format(span.context.trace_id, "032x") == TRACE
        attributes: dict[str, Any] = dict(span.attributes or {})
        assert attributes.pop("network.peer.port") > 0
        assert attributes == {"rpc.system": "apache_thrift", "rpc.service": "Echo",
                              "rpc.method": method, "network.peer.address": "127.0.0.1",
                              "txthrift.outcome": outcome}
    assert ok.status.status_code == declared.status.status_code == StatusCode.UNSET
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "internal_error"


@pytest.mark.parametrize("transport,metered", [("framed", False), ("http", False),
                                               ("framed", True)])
@pytest_twisted.ensureDeferred
async def test_theCallsSpanIsCurrentInItsHandler(
        spans: tuple[Tracing, InMemorySpanExporter], transport: str, metered: bool) -> None:
    """
    While a handler runs, and in a coroutine it starts across an await, its
    call's span is current, so spans it makes are the call's children; once
    the dispatch has returned, the reactor is back in no span.  So too when
    metrics watch the same server.
    """
    from opentelemetry import trace
    from twisted.internet.task import deferLater

    from txthrift._observing import observing
    from txthrift.metrics import Metrics

    seen: dict[str, int] = {}

    class Spanning(Hardened):
        def getData(self, input: str) -> str:
            seen["plain"] = trace.get_current_span().get_span_context().span_id
            return input

        async def echo(self, text: str, repeat: int) -> str:  # type: ignore[override]
            await deferLater(reactor, 0, lambda: None)
            seen["coroutine"] = trace.get_current_span().get_span_context().span_id
            return text

    tracing, exporter = spans
    observer = observing(Metrics(), tracing) if metered else tracing
    async with calling(observer, transport, None, handler=Spanning(reactor)) as client:
        assert await client.getData("x") == "x"
        assert await client.echo("y", 1) == "y"
        afterwards: Any = await deferLater(reactor, 0, trace.get_current_span)
    plain, coroutine = exporter.get_finished_spans()
    assert seen == {"plain": plain.context.span_id, "coroutine": coroutine.context.span_id}
    assert afterwards is trace.INVALID_SPAN


@pytest_twisted.ensureDeferred
async def test_withoutTraceparentASpanStartsATrace(
        spans: tuple[Tracing, InMemorySpanExporter]) -> None:
    tracing, exporter = spans
    async with calling(tracing, "framed", None) as client:
        await client.getData("x")
        await client.fire("m")
    async with calling(tracing, "header", {"traceparent": "garbage"}, Calc) as calc:
        with pytest.raises(TApplicationException):
            await calc.multiply(2, 3)
    plain, oneway, unknown = exporter.get_finished_spans()
    assert plain.parent is None and oneway.parent is None and unknown.parent is None
    assert plain.context.trace_id != unknown.context.trace_id
    assert (oneway.name, oneway.status.status_code) == ("Echo/fire", StatusCode.UNSET)
    assert (unknown.name, unknown.status.status_code) == ("Echo/multiply", StatusCode.ERROR)
    assert unknown.status.description == "unknown_method"


@pytest_twisted.ensureDeferred
async def test_namesFromThePeerAreCut(spans: tuple[Tracing, InMemorySpanExporter]) -> None:
    tracing, exporter = spans
    async with calling(tracing, "framed", None, Calc) as calc:
        calc._prefix = "S" * 1000 + ":"
        with pytest.raises(TApplicationException):
            await calc.multiply(2, 3)
    (span,) = exporter.get_finished_spans()
    assert span.name == f"{'S' * 256}.../multiply"
    assert dict(span.attributes or {})["rpc.service"] == f"{'S' * 256}..."


def test_thriftServiceTraces() -> None:
    clock = Clock()
    service = txthrift.thriftService(Hardened(clock), port="tcp:0", reactor=clock, trace=True)
    assert isinstance(service.factory.observer, Tracing)
    assert txthrift.thriftService(Hardened(clock), port="tcp:0", reactor=clock).factory.observer \
        is None


def test_twistdTrace() -> None:
    options = Options()
    options.parseOptions(["--handler", f"{HANDLERS}.Hardened", "--port", "tcp:0", "--trace"])
    service: Any = makeService(options)
    assert isinstance(service.factory.observer, Tracing)


def test_withoutTheExtraTheErrorNamesIt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'txthrift\[tracing\]'"):
        openTelemetry()
    with pytest.raises(ImportError, match=r"txthrift\[tracing\]"):
        txthrift.thriftService(Hardened(Clock()), port="tcp:0", reactor=Clock(), trace=True)
    options = Options()
    with pytest.raises(usage.UsageError, match=r"^--trace: tracing needs opentelemetry-api:"
                                               r" pip install 'txthrift\[tracing\]' \(.+\)$"):
        options.parseOptions(["--handler", f"{HANDLERS}.Hardened", "--trace"])


def test_offImportsNothing() -> None:
    """
    Serving without tracing imports no part of OpenTelemetry.
    """
    code = ("import sys, txthrift, txthrift._tap, txthrift.web\n"
            "from twisted.internet.task import Clock\n"
            "from tests._handlers import Hardened\n"
            "txthrift.thriftService(Hardened(Clock()), port='tcp:0', reactor=Clock())\n"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout == "[]\n", done.stderr
