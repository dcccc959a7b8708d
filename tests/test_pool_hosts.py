"""
Tests for L{txthrift.connectPool} against real servers: three C{twistd
thrift} processes on 127.0.0.1, one killed and one drained mid-run; servers
that fail every call, for the retry budget; a TLS server whose certificate
the pool refuses; and HAProxy in front of two C{twistd thrift --workers 2}
backends, one drained and restarted while a pool and Apache's blocking
client call through it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_twisted
from thrift.transport.TTransport import TTransportException
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater

import txthrift
from tests._certs import makeCertificates
from tests._handlers import HANDLERS, EchoBasics
from tests._processes import WAIT, Processes, Twistd
from tests.gen.py.txthrift_test import Echo
from tests.test_interop import inThread, within
from tests.test_tap import apacheClient
from tests.test_tls import sslPort, tlsClient
from tests.test_workers import pingPids, workerPids

LOCAL = "127.0.0.1"
#: Idempotent calls made while servers are killed and drained.
CALLS = 20_000
#: Calls in flight at once.
CONCURRENCY = 16
#: Calls a second at most: paced so that the servers killed and drained are
#: back (a twistd takes about a second to start) while calls still go on.
RATE = 4000


def startCounting(processes: Processes, runs: Path, port: int = 0, *extra: str) -> Twistd:
    """
    A C{twistd thrift} serving L{tests._handlers.CountingEcho} on C{port},
    its C{add} runs written to C{runs}.
    """
    return processes.twistd("thrift", "--handler", f"{HANDLERS}.CountingEcho",
                            "--handler-option", f"runs={runs}",
                            "--port", f"tcp:{port}:interface={LOCAL}",
                            "--shutdown-timeout", "10", *extra)


async def waitUntil(check: Callable[[], bool], seconds: float = WAIT) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await deferLater(reactor, 0.02)
    raise AssertionError("never happened")


class Load:
    """
    C{CALLS} idempotent C{ping}s from C{CONCURRENCY} callers, every tenth
    followed by a C{add} of its own number (not idempotent).
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.started = time.monotonic()
        self.next = 0
        self.done = 0
        self.failed: list[str] = []
        self.added: list[int] = []
        self.addFailed: list[str] = []

    async def caller(self) -> None:
        while self.next < CALLS:
            index = self.next
            self.next += 1
            ahead = self.started + index / RATE - time.monotonic()
            if ahead > 0:
                await deferLater(reactor, ahead)
            try:
                assert await self.client.ping(index) == index + 1
            except Exception as error:
                self.failed.append(f"ping({index}): {error!r}")
            self.done += 1
            if index % 10 == 0:
                try:
                    assert await self.client.add(index, 1) == index + 1
                    self.added.append(index)
                except TTransportException as error:
                    self.addFailed.append(f"add({index}): {error}")

    def run(self) -> Deferred[Any]:
        return gatherResults([Deferred.fromCoroutine(self.caller())
                              for _ in range(CONCURRENCY)], consumeErrors=True)


def inFlightOn(client: Any, endpoint: str) -> list[tuple[str, Deferred[str]]]:
    """
    Slow idempotent calls made until one of them waits on C{endpoint}, each
    with the tag it is answered with.
    """
    held: list[tuple[str, Deferred[str]]] = []
    member = client.pool.members[endpoint]
    while not member.load() and len(held) < 50:
        tag = f"{endpoint} {len(held)}"
        held.append((tag, client.slow(0.5, tag)))
    assert member.load(), client.endpointStates()
    return held


def runsIn(folder: Path) -> Counter[int]:
    """
    How many times each C{add} ran, over every server's file.
    """
    counted: Counter[int] = Counter()
    for path in folder.glob("*.runs"):
        counted.update(int(line) for line in path.read_text().split())
    return counted


@pytest_twisted.ensureDeferred
async def test_callsSurviveAKillAndADrain(processes: Processes, tmp_path: Path) -> None:
    """
    20,000 idempotent calls over three servers, one SIGKILLed and started
    again, another SIGTERM-drained and started again: none fails; no
    C{add} (not idempotent) runs twice, each answered one ran once; slow
    calls in flight on the server killed are sent again and answered; the
    restarted servers take calls again before the calls end.
    """
    servers = [startCounting(processes, tmp_path / f"{name}1.runs") for name in "abc"]
    ports = [server.tcpPort() for server in servers]
    client = await within(txthrift.connectPool(
        reactor, [f"tcp:{LOCAL}:{port}" for port in ports], Echo,
        idempotent=["ping", "slow"],
        timeout=WAIT, eject_after=3, eject_for=0.5, retry_policy=lambda attempt: 0.1))
    try:
        load = Load(client)
        running = load.run()
        await waitUntil(lambda: load.done >= CALLS // 10, 60)
        held = inFlightOn(client, f"tcp:{LOCAL}:{ports[0]}")
        os.kill(servers[0].process.pid, signal.SIGKILL)
        killedAt = load.done
        await waitUntil(lambda: load.done >= CALLS * 2 // 5, 60)
        held += inFlightOn(client, f"tcp:{LOCAL}:{ports[1]}")
        servers[1].process.send_signal(signal.SIGTERM)
        drainedAt = load.done
        assert await inThread(servers[0].wait) == -signal.SIGKILL
        again = [startCounting(processes, tmp_path / "a2.runs", ports[0])]
        assert await inThread(servers[1].wait) == 0, servers[1].output
        # The drain closed the pool's connection, which was busy until then.
        assert re.search(r"closed [1-9]\d* connection", servers[1].output), servers[1].output
        again.append(startCounting(processes, tmp_path / "b2.runs", ports[1]))
        for server in again:
            await inThread(server.serving)
        backAt = load.done
        await within(running, 120)
        elapsed = time.monotonic() - load.started
        # Both came back while the calls went on, and took some of them.
        assert backAt < CALLS and (tmp_path / "a2.runs").read_text(), backAt
        assert (tmp_path / "b2.runs").read_text()
        assert load.failed == [] and load.done == CALLS
        # The slow calls in flight on the server killed were sent again.
        tags = [tag for tag, _ in held]
        assert await within(gatherResults([answer for _, answer in held])) == tags
        assert client.pool.retries >= 1
        assert killedAt < drainedAt < CALLS * 3 // 5, (killedAt, drainedAt)
        runs = runsIn(tmp_path)
        assert [index for index, count in runs.items() if count > 1] == []
        assert all(runs[index] == 1 for index in load.added)
        print(f"{CALLS} calls in {elapsed:.1f}s (killed at {killedAt}, drained at {drainedAt},"
              f" both back at {backAt}); {client.pool.retries} retries;"
              f" {len(load.addFailed)} of {len(load.added) + len(load.addFailed)} adds failed")
        await waitUntil(lambda: all(state.startswith("up")
                                    for state in client.endpointStates().values()), 30)
        for index in range(CALLS, CALLS + 30):
            assert await client.add(index, 0) == index
    finally:
        await client.close()


class Slam(Protocol):
    """
    Closes the connection as soon as anything arrives: a server failing
    every call after it was written.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_retriesStayWithinTheBudgetWhenEveryServerFails() -> None:
    """
    With every server failing every call, a burst of calls is retried only
    as the budget allows: C{min_retries_per_second} times 10 seconds plus
    C{retry_budget} of the calls, counted by the pool.
    """
    factory = Factory.forProtocol(Slam)
    listening: list[Any] = [cast(Any, reactor).listenTCP(0, factory, interface=LOCAL)
                            for _ in range(3)]
    client = await within(txthrift.connectPool(
        reactor, [f"tcp:{LOCAL}:{port.getHost().port}" for port in listening], Echo,
        idempotent=["ping"], retry_budget=0.1, min_retries_per_second=1, eject_after=1000,
        retry_policy=lambda attempt: 0.05, timeout=WAIT))
    calls = 0
    errors: Counter[str] = Counter()
    try:
        for _ in range(8):
            await waitUntil(lambda: all(state.startswith("up")
                                        for state in client.endpointStates().values()))
            burst = [client.ping(n) for n in range(60)]
            calls += len(burst)
            for call in burst:
                try:
                    await call
                except TTransportException as error:
                    errors["budget" if "retry budget is spent" in str(error) else
                           "unplaced" if isinstance(error, txthrift.PoolUnavailable) else
                           "other"] += 1
        retries = client.pool.retries
        assert sum(errors.values()) == calls
        assert retries <= 1 * 10 + 0.1 * calls, retries
        assert errors["budget"] > 0, errors
        print(f"{calls} calls, {retries} retries (budget {10 + 0.1 * calls:g}), {errors}")
    finally:
        await client.close()
        for port in listening:
            await port.stopListening()


HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None)

#: HAProxy in TCP mode in front of two backends, each health-checked on its
#: metrics port's /readyz (503 from the moment a drain begins).
HAPROXY_CONFIG = """\
global
    maxconn 1024
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
frontend thrift
    bind 127.0.0.1:{front}
    default_backend twistd
backend twistd
    balance leastconn
    option httpchk GET /readyz
    default-server inter 100ms fall 1 rise 2
    server a 127.0.0.1:{a} check port {aMetrics}
    server b 127.0.0.1:{b} check port {bMetrics}
frontend stats
    mode http
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /stats
"""


def freePorts(count: int) -> list[int]:
    """
    Ports free on 127.0.0.1 now: HAProxy's configuration names its ports,
    and a backend started again must listen where it did, so these are
    found by binding port 0 and letting go (another program could take one
    in between; nothing else on a test machine binds loopback ports so).
    """
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOCAL, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def serverStates(statsPort: int) -> dict[str, str]:
    """
    HAProxy's view of each backend server: C{UP}, C{DOWN}, ...
    """
    import urllib.request

    with urllib.request.urlopen(f"http://{LOCAL}:{statsPort}/stats;csv",
                                timeout=WAIT) as response:
        lines = response.read().decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
    return {row["svname"]: row["status"] for row in rows if row["pxname"] == "twistd"
            and row["svname"] not in ("BACKEND", "FRONTEND")}


def waitForStates(statsPort: int, wanted: dict[str, str]) -> None:
    deadline = time.monotonic() + WAIT
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            states = serverStates(statsPort)
        except OSError:  # HAProxy is starting
            time.sleep(0.05)
            continue
        if all(states.get(name, "").startswith(state) for name, state in wanted.items()):
            return
        time.sleep(0.05)
    raise AssertionError(f"HAProxy says {states}, not {wanted}")


def startBackend(processes: Processes, port: int, metrics: int) -> Twistd:
    server = processes.twistd("thrift", "--handler", f"{HANDLERS}.PidEcho", "--workers", "2",
                              "--port", f"tcp:{port}:interface={LOCAL}",
                              "--metrics-port", f"tcp:{metrics}:interface={LOCAL}",
                              "--shutdown-timeout", "10")
    server.serving()
    for _ in range(2):
        server.waitFor(r"Worker \d+ \(pid \d+\) serving")
    return server


class ApacheCaller:
    """
    Apache's blocking client calling C{add} through HAProxy in a thread,
    as its users do: on a transport error it opens a new connection and
    calls again (C{add} is safe to repeat here), up to L{ATTEMPTS} times,
    a tenth of a second apart; a call failing every time is a failure.
    (One retry is not always enough: a connection HAProxy made to the
    backend just as it stopped listening, still in its listening queue, is
    reset when the port closes.)
    """

    ATTEMPTS = 3

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = 0
        self.reconnects = 0
        self.failed: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

        self.connection = apacheClient(Echo, port, framed=True)
        #: The worker process its first connection reached.
        self.pid = self.connection[0].ping(0)

    def run(self) -> None:
        client, transport = self.connection
        index = 0
        while not self.stopping.is_set() and len(self.failed) < 10:
            index += 1
            for attempt in range(self.ATTEMPTS):
                try:
                    assert client.add(index, 1) == index + 1
                    self.ok += 1
                    break
                except TTransportException as error:
                    transport.close()
                    if attempt == self.ATTEMPTS - 1:
                        self.failed.append(f"add({index}): {error}")
                    if attempt:
                        time.sleep(0.1)
                    try:
                        client, transport = apacheClient(Echo, self.port, framed=True)
                        self.reconnects += 1
                    except TTransportException as reopening:
                        self.failed.append(f"reopening: {reopening}")
                        time.sleep(0.05)
            time.sleep(0.001)
        transport.close()


async def behindHAProxy(processes: Processes, folder: Path) -> tuple[list[int], list[Twistd],
                                                                      Any, list[ApacheCaller]]:
    """
    Two backends behind HAProxy, up, and Apache callers started through
    it until one is on the second backend.

    @return: the ports (front, stats, a, its metrics, b, its metrics), the
        backends, HAProxy, the callers.
    """
    ports = front, stats, a, aMetrics, b, bMetrics = freePorts(6)
    backends = [startBackend(processes, a, aMetrics), startBackend(processes, b, bMetrics)]
    config = folder / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(front=front, stats=stats, a=a, aMetrics=aMetrics,
                                            b=b, bMetrics=bMetrics))
    assert HAPROXY is not None
    proxy = processes.command(HAPROXY, "-db", "-f", str(config))
    await inThread(waitForStates, stats, {"a": "UP", "b": "UP"})
    apaches = [await inThread(ApacheCaller, front)]
    while len(apaches) < 8 and apaches[-1].pid not in workerPids(backends[1]):
        apaches.append(await inThread(ApacheCaller, front))
    for apache in apaches:
        apache.thread.start()
    return ports, backends, proxy, apaches


@pytest.mark.skipif(HAPROXY is None, reason="HAProxy is not installed (Debian: apt-get install"
                    " haproxy; scripts/setup.sh does it where it runs as root)")
@pytest_twisted.ensureDeferred
async def test_behindHAProxyABackendDrainsAndComesBack(processes: Processes,
                                                      tmp_path: Path) -> None:
    """
    HAProxy in TCP mode, health-checking C{/readyz}, in front of two
    C{twistd thrift --workers 2}: while one backend is drained (SIGTERM)
    and started again, a pool client and Apache's blocking client keep
    being answered, and the backend started again takes calls.
    """
    ports, backends, proxy, apaches = await behindHAProxy(processes, tmp_path)
    front, stats, _, _, b, bMetrics = ports
    client = await within(txthrift.connectPool(reactor, f"tcp:{LOCAL}:{front}", Echo,
                                               idempotent=["ping"], connections=4,
                                               timeout=WAIT, retry_policy=lambda n: 0.1))
    answered: Counter[int] = Counter()
    failed: list[str] = []
    stop = False

    async def calling() -> None:
        while not stop:
            try:
                answered[await client.ping(0)] += 1
            except Exception as error:
                failed.append(repr(error))
            await deferLater(reactor, 0.001)

    try:
        callers = gatherResults([Deferred.fromCoroutine(calling()) for _ in range(4)])
        await deferLater(reactor, 0.5)
        backends[1].process.send_signal(signal.SIGTERM)
        await inThread(waitForStates, stats, {"b": "DOWN"})
        assert await inThread(backends[1].wait) == 0, backends[1].output
        again = await inThread(startBackend, processes, b, bMetrics)
        await inThread(waitForStates, stats, {"a": "UP", "b": "UP"})
        # Connections stay where they were made: new ones (leastconn) reach
        # the backend started again.
        fresh = await inThread(pingPids, front)
        await deferLater(reactor, 0.5)
        stop = True
        await within(callers)
    finally:
        stop = True
        for apache in apaches:
            apache.stopping.set()
            await inThread(apache.thread.join, WAIT)
        await client.close()
    assert failed == [] and [a.failed for a in apaches if a.failed] == [], (failed, proxy.output)
    assert all(a.ok > 100 for a in apaches) and sum(answered.values()) > 100
    # The one on the drained backend saw its connection closed, and went on.
    assert sum(a.reconnects for a in apaches) >= 1
    assert fresh & set(workerPids(again)), (fresh, again.output)
    print(f"pool: {sum(answered.values())} calls, {client.pool.retries} retries; Apache:"
          f" {[a.ok for a in apaches]} calls, {[a.reconnects for a in apaches]} reconnections")


@pytest_twisted.ensureDeferred
async def test_aTLSEndpointIsUpOnlyOnceItsHandshakeIsDone(tmp_path: Path) -> None:
    """
    Over TLS a connection counts as up once the handshake is done: one to a
    server whose certificate the pool does not trust never is, so the pool
    fails to start naming the TLS error, and no call is sent on it.
    """
    certificates = makeCertificates(tmp_path)
    server = EchoBasics()
    port: Any = await txthrift.serve(reactor, sslPort(certificates), server)
    number = port.getHost().port
    try:
        client = await within(txthrift.connectPool(reactor, tlsClient(number, certificates),
                                                   Echo, timeout=WAIT))
        assert await client.add(2, 3) == 5
        await client.close()
        distrust = tmp_path / "distrust"
        distrust.mkdir()
        (distrust / "other.pem").write_bytes(certificates.otherCA.read_bytes())
        with pytest.raises(txthrift.PoolUnavailable, match="certificate verify failed"):
            await within(txthrift.connectPool(
                reactor, f"tls:{LOCAL}:{number}:trustRoots={distrust}", Echo))
        late = await within(txthrift.connectPool(
            reactor, f"tls:{LOCAL}:{number}:trustRoots={distrust}", Echo, wait=False))
        await deferLater(reactor, 0.5)
        with pytest.raises(txthrift.PoolUnavailable, match="connecting .last error: Error"):
            await late.add(2, 3)
        await late.close()
    finally:
        await port.stopListening()
