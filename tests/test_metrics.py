"""
Tests for L{txthrift.metrics}: a server's calls, connections and refusals
counted exactly by outcome, over TCP and HTTP, as Prometheus scrapes them
from L{metricsResource}; label values bounded.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from thrift.Thrift import TApplicationException
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater
from twisted.web.client import Agent, readBody
from twisted.web.server import Site

import txthrift
from tests._handlers import Hardened
from tests._processes import Twistd
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Oops
from tests.test_interop import inThread, within
from txthrift._codec import Codec
from txthrift.metrics import Metrics, metricsResource

#: Seconds any one wait may take.
WAIT = 10.0


async def settled(check: Any) -> None:
    for _ in range(int(WAIT / 0.01)):
        if check():
            return
        await deferLater(reactor, 0.01)
    raise AssertionError("never settled")


@pytest_twisted.ensureDeferred
async def test_everyOutcomeIsCountedOnce() -> None:
    metrics = Metrics()
    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", Hardened(reactor),
                                     observer=metrics, call_timeout=0.2)
    where = f"tcp:host=127.0.0.1:port={port.getHost().port}"
    client: Any = await within(txthrift.connect(reactor, where, Echo, timeout=WAIT))
    try:
        assert await client.add(1, 2) == 3
        assert await client.add(2, 2) == 4
        with pytest.raises(Oops):
            await client.fail("oops")
        with pytest.raises(TApplicationException):
            await client.fail("boom")
        with pytest.raises(TApplicationException):
            await client.slow(1.0, "late")  # past call_timeout
        await client.fire("x")
        unknown: Any = await within(txthrift.connect(reactor, where, Echo, timeout=WAIT,
                                                     service_name="Nope"))
        with pytest.raises(TApplicationException):
            await unknown.add(1, 1)
        await unknown.close()
    finally:
        await client.close()
    await settled(lambda: metrics.connections == 0)
    await port.stopListening()
    calls = {key: count for key, count in metrics.calls.items()}
    assert calls == {
        ("Echo", "add", "ok"): 2,
        ("Echo", "fail", "declared_exception"): 1,
        ("Echo", "fail", "internal_error"): 1,
        ("Echo", "slow", "timeout"): 1,
        ("Echo", "fire", "oneway"): 1,
        ("(unknown)", "(unknown)", "unknown_method"): 1,
    }
    assert metrics.inFlight == 0
    assert metrics.connectionsTotal == 2
    assert sum(counts[-2] + sum(counts[:-2]) for counts in metrics.durations.values()) == 7


@pytest_twisted.ensureDeferred
async def test_refusalsAndCancelledCallsAreCounted() -> None:
    metrics = Metrics()
    holding: list[Deferred[str]] = []

    class Holds(Hardened):
        def slow(self, seconds: float, tag: str) -> Deferred[str]:
            holding.append(Deferred())
            return holding[-1]

    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", Holds(reactor),
                                     observer=metrics, max_frame_size=1024, half_closed_timeout=0.5)
    number = port.getHost().port

    def misbehave() -> None:
        with socket.create_connection(("127.0.0.1", number), timeout=WAIT) as peer:
            peer.sendall(struct.pack(">i", 4096) + b"\x80\x01")  # over max_frame_size
            assert peer.recv(10) == b""
        with socket.create_connection(("127.0.0.1", number), timeout=WAIT) as peer:
            message = Codec("binary").encode("slow", 1, 1, Echo.slow_args(seconds=1.0, tag="t"))
            peer.sendall(struct.pack(">i", len(message)) + message)

    await inThread(misbehave)
    # The second connection closes only after its call was dispatched.
    await settled(lambda: metrics.connectionsTotal == 2 and metrics.connections == 0
                  and metrics.inFlight == 0)
    await port.stopListening()
    assert metrics.refusals == {"frame_too_big": 1}
    assert metrics.calls == {("Echo", "slow", "cancelled"): 1}


@pytest_twisted.ensureDeferred
async def test_httpCallsAreCountedAndScraped() -> None:
    metrics = Metrics()
    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", Hardened(reactor),
                                     transport="http", observer=metrics)
    web: Any = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Site(metricsResource(metrics)))
    try:
        client: Any = await within(txthrift.connect(
            reactor, f"http://127.0.0.1:{port.getHost().port}/", Echo, timeout=WAIT))
        try:
            assert await client.add(1, 2) == 3
            with pytest.raises(Oops):
                await client.fail("oops")
        finally:
            await client.close()
        agent = Agent(reactor)
        base = f"http://127.0.0.1:{web.getHost().port}"
        response = await within(agent.request(b"GET", f"{base}/metrics".encode()))
        text = (await within(readBody(response))).decode()
        health = await within(agent.request(b"GET", f"{base}/healthz".encode()))
        ready = await within(agent.request(b"GET", f"{base}/readyz".encode()))
        await readBody(health)
        await readBody(ready)
    finally:
        await port.stopListening()
        await web.stopListening()
    assert 'txthrift_calls_total{method="add",outcome="ok",service="Echo"} 1.0' in text
    assert ('txthrift_calls_total{method="fail",outcome="declared_exception",service="Echo"} 1.0'
            in text)
    assert 'txthrift_call_duration_seconds_count{method="add",service="Echo"} 1.0' in text
    assert (health.code, ready.code) == (200, 200)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    Every sample of a scrape, by name and labels (durations' buckets left out).
    """
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if not sample.name.endswith(("_bucket", "_created", "_sum"))}


@pytest_twisted.ensureDeferred
async def test_aServiceScrapedDuringAndAfterAMixedRun() -> None:
    """
    C{thriftService(metrics_port=...)}, as a library user serves metrics:
    each counter and gauge exact on C{/metrics} while a call is held and
    after a run of every kind of call and a refusal; C{/readyz} 503 once
    stopping starts, while the held call drains, and the port closed last.
    """
    from twisted.internet.error import ConnectionRefusedError

    from txthrift import thriftService

    holding: list[Deferred[str]] = []

    class Holds(Hardened):
        def slow(self, seconds: float, tag: str) -> Deferred[str]:
            holding.append(Deferred())
            return holding[-1]

    service = thriftService(Holds(reactor), port="tcp:0:interface=127.0.0.1",
                            metrics_port="tcp:0:interface=127.0.0.1", max_frame_size=1024,
                            shutdown_timeout=WAIT, reactor=reactor)
    service.startService()
    await settled(lambda: service.metricsPort is not None and len(service.ports) == 1)
    assert service.metricsPort is not None
    address: Any = service.metricsPort.getHost()
    base = f"http://127.0.0.1:{address.port}"
    agent = Agent(reactor)

    async def get(path: str) -> tuple[int, str]:
        response = await within(agent.request(b"GET", f"{base}{path}".encode()))
        return response.code, (await within(readBody(response))).decode()

    listening: Any = service.ports[0].getHost()
    number = listening.port

    def refused() -> None:
        with socket.create_connection(("127.0.0.1", number), timeout=WAIT) as peer:
            peer.sendall(struct.pack(">i", 4096) + b"\x80\x01")  # over max_frame_size
            assert peer.recv(10) == b""

    await inThread(refused)
    where = f"tcp:host=127.0.0.1:port={number}"
    client: Any = await within(txthrift.connect(reactor, where, Echo, timeout=WAIT))
    unknown: Any = await within(txthrift.connect(reactor, where, Echo, timeout=WAIT,
                                                 service_name="Nope"))
    assert await client.add(1, 2) == 3
    with pytest.raises(Oops):
        await client.fail("oops")
    with pytest.raises(TApplicationException):
        await client.fail("boom")
    with pytest.raises(TApplicationException):
        await unknown.add(1, 1)
    await unknown.close()
    held = client.slow(1.0, "held")
    await settled(lambda: len(holding) == 1)
    status, during = await get("/metrics")
    assert status == 200
    duringSamples = _samples(during)
    assert duringSamples[("txthrift_calls_in_flight", ())] == 1
    assert duringSamples[("txthrift_connections", ())] == 1
    assert await get("/readyz") == (200, "ready\n")
    holding[0].callback("held")
    assert await within(held) == "held"
    await client.close()
    metrics: Any = service.factory.observer
    await settled(lambda: metrics.connections == 0)
    status, after = await get("/metrics")
    samples = _samples(after)
    received = samples.pop(("txthrift_bytes_received_total", ()))
    sent = samples.pop(("txthrift_bytes_sent_total", ()))
    assert received > 0 and sent > 0
    echo = (("service", "Echo"),)
    assert samples == {
        ("txthrift_calls_total", (("method", "add"), ("outcome", "ok"), *echo)): 1,
        ("txthrift_calls_total", (("method", "fail"), ("outcome", "declared_exception"),
                                  *echo)): 1,
        ("txthrift_calls_total", (("method", "fail"), ("outcome", "internal_error"), *echo)): 1,
        ("txthrift_calls_total", (("method", "slow"), ("outcome", "ok"), *echo)): 1,
        ("txthrift_calls_total", (("method", "(unknown)"), ("outcome", "unknown_method"),
                                  ("service", "(unknown)"))): 1,
        ("txthrift_call_duration_seconds_count", (("method", "add"), *echo)): 1,
        ("txthrift_call_duration_seconds_count", (("method", "fail"), *echo)): 2,
        ("txthrift_call_duration_seconds_count", (("method", "slow"), *echo)): 1,
        ("txthrift_call_duration_seconds_count", (("method", "(unknown)"),
                                                  ("service", "(unknown)"))): 1,
        ("txthrift_calls_in_flight", ()): 0,
        ("txthrift_connections", ()): 0,
        ("txthrift_connections_total", ()): 3,
        ("txthrift_refused_total", (("reason", "frame_too_big"),)): 1,
    }
    client = await within(txthrift.connect(reactor, where, Echo, timeout=WAIT))
    held = client.slow(1.0, "draining")
    await settled(lambda: len(holding) == 2)
    stopping = service.stopService()
    assert await get("/readyz") == (503, "draining\n")
    assert await get("/healthz") == (200, "ok\n")
    holding[1].callback("answered")
    assert await within(held) == "answered"
    await client.close()
    await within(stopping)
    with pytest.raises(ConnectionRefusedError):
        await get("/readyz")


def test_labelsAreBounded() -> None:
    from txthrift._context import Origin
    from txthrift.metrics import MOST_METHODS

    metrics = Metrics()
    origin = Origin(None, "Echo")
    for index in range(MOST_METHODS + 50):
        started = metrics.callStarted((origin, f"S{index}:m{index}", 1, None, None), 10)
        metrics.callEnded(started, "ok", 5)
    # Past MOST_METHODS pairs, the rest are (other).
    assert len(metrics.durations) == MOST_METHODS + 1
    assert metrics.calls[("(other)", "(other)", "ok")] == 50


def test_twistdServesMetricsAndReadinessThroughTheDrain(
        twistd: Callable[..., Twistd]) -> None:
    """
    C{twistd thrift --metrics-port}: calls counted on C{/metrics}; C{/readyz}
    says 503 from the moment SIGTERM starts the drain, while a call still
    runs, and the metrics port closes last.
    """
    import re
    import signal
    import threading
    import urllib.error
    import urllib.request

    from tests._handlers import HANDLERS
    from tests.test_tap import apacheClient

    server = twistd("thrift", "--handler", f"{HANDLERS}.EchoHandler", "--port",
                    "tcp:0:interface=127.0.0.1", "--metrics-port", "tcp:0:interface=127.0.0.1",
                    "--shutdown-timeout", "10")
    port = server.tcpPort()
    found = server.waitFor(r"metrics, /healthz and /readyz on http://127\.0\.0\.1:(\d+)/")
    base = f"http://127.0.0.1:{found.group(1)}"

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=WAIT) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    client, transport = apacheClient(Echo, port, framed=True)
    try:
        assert client.add(1, 2) == 3
    finally:
        transport.close()
    status, text = get("/metrics")
    assert status == 200
    assert 'txthrift_calls_total{method="add",outcome="ok",service="Echo"} 1.0' in text
    assert get("/readyz")[0] == 200 and get("/healthz")[0] == 200
    slow: list[str] = []
    caller, callerTransport = apacheClient(Echo, port, framed=True)
    thread = threading.Thread(target=lambda: slow.append(caller.slow(2.0, "t")))
    thread.start()
    server.waitFor("slow call t started")
    server.process.send_signal(signal.SIGTERM)
    for _ in range(int(WAIT / 0.05)):
        if get("/readyz")[0] == 503:
            break
        time.sleep(0.05)
    assert get("/readyz") == (503, "draining\n")
    thread.join(WAIT)
    callerTransport.close()
    assert slow == ["t"]
    assert server.wait() == 0
    assert re.search(r"Stopped serving", server.output)


def test_workersMetricsAreSummedByTheParent(twistd: Callable[..., Twistd]) -> None:
    """
    With C{--workers 2}, the parent's C{/metrics} shows every worker's
    calls, each worker dumping its counters for the parent to sum.
    """
    import urllib.request

    from tests._handlers import HANDLERS
    from tests.test_tap import apacheClient

    server = twistd("thrift", "--handler", f"{HANDLERS}.PidEcho", "--port",
                    "tcp:0:interface=127.0.0.1", "--metrics-port", "tcp:0:interface=127.0.0.1",
                    "--workers", "2")
    port = server.tcpPort()
    found = server.waitFor(r"metrics, /healthz and /readyz on http://127\.0\.0\.1:(\d+)/")
    calls = 40
    for _ in range(calls):
        client, transport = apacheClient(Echo, port, framed=True)
        try:
            assert client.add(1, 2) == 3
        finally:
            transport.close()
    expected = f'txthrift_calls_total{{method="add",outcome="ok",service="Echo"}} {calls}.0'
    text = ""
    for _ in range(int(WAIT / 0.2)):
        with urllib.request.urlopen(f"http://127.0.0.1:{found.group(1)}/metrics",
                                    timeout=WAIT) as response:
            text = response.read().decode()
        if expected in text:
            break
        time.sleep(0.2)
    assert expected in text, text


@pytest.mark.parametrize("compiled", [False, True])
def test_tallyCountsInCAsInPython(compiled: bool) -> None:
    """
    The C tally and its Python twin keep the same records for the same
    calls, unknown methods apart, with the durations the clock gives.
    """
    from tests._speedups import compiled as builtIn
    from txthrift.metrics import _PythonTally

    base: Any = builtIn("Tally") if compiled else _PythonTally
    now = [0.0]

    class Tally(base):
        def _record(self, call: tuple[Any, ...], outcome: str) -> list[float]:
            key = "?" if outcome == "unknown_method" else call[1]
            record = kept.setdefault(key, [0, 0, 0, 0, 0, 0.0])
            if key != "?":
                self._records[call[1]] = (None, record)
            return record

    kept: dict[str, list[float]] = {}
    tally = Tally(("ok", "unknown_method"), (0.5, 2.0), "unknown_method", lambda: now[0])
    for name, outcome, seconds in [("a", "ok", 0.25), ("a", "ok", 0.5), ("b", "ok", 1.0),
                                   ("a", "ok", 9.0), ("zz", "unknown_method", 0.125)]:
        token = tally.callStarted((None, name, 1), 10)
        assert tally.inFlight == 1
        now[0] += seconds
        tally.callEnded(token, outcome, 3)
    assert (tally.inFlight, tally.received, tally.sent) == (0, 50, 15)
    assert kept == {"a": [3, 0, 2, 0, 1, 9.75], "b": [1, 0, 0, 1, 0, 1.0],
                    "?": [0, 1, 1, 0, 0, 0.125]}
    assert tally._records == {"a": (None, kept["a"]), "b": (None, kept["b"])}
    with pytest.raises(ValueError, match="no such outcome: 'no such outcome'"):
        tally.callEnded(tally.callStarted((None, "a", 1), 1), "no such outcome", 0)


def test_withoutTheExtraTheErrorNamesIt(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Counting needs nothing; serving the counts needs prometheus_client, and
    its absence is one error naming the extra, in a program and on twistd's
    command line.
    """
    import sys

    from twisted.internet.task import Clock
    from twisted.python import usage

    from txthrift._tap import Options

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    from txthrift._context import Origin

    metrics = Metrics()
    metrics.callEnded(metrics.callStarted((Origin(None, "S"), "m", 1, None, None), 1), "oneway", 0)
    assert metrics.calls == {("S", "m", "oneway"): 1}
    with pytest.raises(ImportError, match=r"pip install 'txthrift\[metrics\]'"):
        txthrift.thriftService(Hardened(Clock()), port="tcp:0", reactor=Clock(),
                               metrics_port="tcp:0")
    with pytest.raises(usage.UsageError, match=r"^--metrics-port: metrics need prometheus_client:"
                                               r" pip install 'txthrift\[metrics\]' \(.+\)$"):
        Options().parseOptions(["--handler", "tests._handlers.Hardened", "--metrics-port",
                                "tcp:0"])


def test_oneMetricsWatchingSeveralServicesLabelsEachCall() -> None:
    """
    One L{Metrics} given to several servers labels each call by its own
    service, though their methods share a name.
    """
    from txthrift._context import Origin

    metrics = Metrics()
    for _ in range(2):
        for service in ("Echo", "Calc"):
            call = (Origin(None, service), "ping", 1, None, None)
            metrics.callEnded(metrics.callStarted(call, 10), "ok", 5)
        call = (Origin(None, "Echo"), "Calc:ping", 1, None, None)
        metrics.callEnded(metrics.callStarted(call, 10), "ok", 5)
    assert metrics.calls == {("Echo", "ping", "ok"): 2, ("Calc", "ping", "ok"): 4}


@pytest_twisted.ensureDeferred
async def test_namesAPeerMadeUpAreNeverLabels() -> None:
    """
    Unknown methods of a generated processor, of a service it multiplexes,
    and undecodable arguments of a method never answered are counted under
    C{(unknown)}: a peer cannot fill the label space with names of its own.
    """
    from thrift.TMultiplexedProcessor import TMultiplexedProcessor

    from tests.gen.py.txthrift_test import Calc as CalcService

    multiplexed = TMultiplexedProcessor()
    multiplexed.registerProcessor("Echo", Echo.Processor(Hardened(reactor)))
    for processor, name in ((Echo.Processor(Hardened(reactor)), None), (multiplexed, "Echo")):
        metrics = Metrics()
        port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", processor,
                                         observer=metrics)
        where = f"tcp:host=127.0.0.1:port={port.getHost().port}"
        calc: Any = await within(txthrift.connect(reactor, where, CalcService, timeout=WAIT,
                                                  service_name=name))
        echo: Any = await within(txthrift.connect(reactor, where, Echo, timeout=WAIT,
                                                  service_name=name))
        try:
            for _ in range(3):
                with pytest.raises(TApplicationException):
                    await calc.multiply(2, 3)
            assert await echo.add(1, 2) == 3
        finally:
            await calc.close()
            await echo.close()
            await port.stopListening()
        assert metrics.calls == {("(unknown)", "(unknown)", "unknown_method"): 3,
                                 ("Echo", "add", "ok"): 1}, name
    from txthrift._context import Origin

    metrics = Metrics()
    bad = (Origin(None, "Echo"), "madeUp", 1, None, None)
    metrics.callEnded(metrics.callStarted(bad, 10), "protocol_error", 5)
    good = (Origin(None, "Echo"), "add", 1, None, None)
    for outcome in ("ok", "protocol_error"):
        metrics.callEnded(metrics.callStarted(good, 10), outcome, 5)
    assert metrics.calls == {("(unknown)", "(unknown)", "protocol_error"): 1,
                             ("Echo", "add", "ok"): 1, ("Echo", "add", "protocol_error"): 1}


def test_anObserverThatRaisesSparesTheOthers() -> None:
    """
    Observers given together are told apart: one raising is logged, the
    others count every call all the same.
    """
    from twisted.logger import globalLogPublisher

    from txthrift._context import Origin
    from txthrift._observing import observing

    class Broken:
        def __getattr__(self, name: str) -> Any:
            def broken(*args: Any) -> None:
                raise RuntimeError(f"broken {name}")
            return broken

    failures: list[str] = []

    def logged(event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None:
            failures.append(str(event["log_failure"].value))

    observed: Any = logged

    metrics = Metrics()
    both = observing(Broken(), metrics)
    globalLogPublisher.addObserver(observed)
    try:
        both.connectionOpened()
        both.callEnded(both.callStarted((Origin(None, "Echo"), "add", 1, None, None), 10),
                       "ok", 5)
        both.connectionClosed()
    finally:
        globalLogPublisher.removeObserver(observed)
    assert metrics.calls == {("Echo", "add", "ok"): 1}
    assert (metrics.connectionsTotal, metrics.connections, metrics.inFlight) == (1, 0, 0)
    assert failures == ["broken connectionOpened", "broken callStarted", "broken callEnded",
                        "broken connectionClosed"]


def test_aWorkerKeepsDumpingAfterAFailedDump(tmp_path: Any) -> None:
    """
    Under C{--workers}, a dump that fails (a full disk, a folder gone) is
    logged and leaves no partial file; the next dump is made all the same.
    """
    import json
    import shutil

    from twisted.internet.task import Clock

    from txthrift._workers import DUMP_INTERVAL, _dumpedMetrics

    folder = tmp_path / "metrics"
    folder.mkdir()
    class Reactor(Clock):
        def addSystemEventTrigger(self, *args: Any) -> None:
            pass

    clock = Reactor()
    metrics = _dumpedMetrics(clock, {"metrics_dir": str(folder)})
    assert metrics is not None
    assert len(list(folder.iterdir())) == 1
    shutil.rmtree(folder)
    clock.advance(DUMP_INTERVAL)  # fails: logged, not raised
    folder.mkdir()
    metrics.connectionOpened()
    clock.advance(DUMP_INTERVAL)
    (dumped,) = folder.iterdir()
    assert json.loads(dumped.read_text())["connectionsTotal"] == 1
