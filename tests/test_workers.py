"""
Tests for C{twistd thrift --workers N}: real twistd processes on 127.0.0.1
(port 0, the bound port read from the startup line), whose worker processes
are found from the log; twistd is killed with its workers (the session it
leads) when each test ends.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from thrift.Thrift import TException
from twisted.python import usage

from tests._handlers import HANDLERS
from tests._processes import HELLO, REPO, WAIT, Twistd, run
from tests.gen.py.txthrift_test import Echo
from tests.test_tap import REPLY, apacheClient, seedClient
from txthrift._appservice import ThriftService
from txthrift._tap import Options, makeService

HANDLER = f"{HANDLERS}.PidEcho"
LOCAL = "tcp:0:interface=127.0.0.1"
STARTED = re.compile(r"Worker (?P<index>\d+) started \(pid (?P<pid>\d+)\)")
READY = r"Worker \d+ \(pid \d+\) serving"


def alive(pid: int) -> bool:
    """
    Whether a process runs (a zombie does not).
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def waitGone(pids: list[int], timeout: float = WAIT) -> list[int]:
    """
    The processes among C{pids} still running after up to C{timeout}s.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def workerPids(server: Twistd) -> list[int]:
    """
    Every worker process the server said it started.
    """
    return [int(found.group("pid")) for found in STARTED.finditer(server.output)]


@pytest.fixture
def workers(twistd: Callable[..., Twistd]) -> Callable[..., Twistd]:
    """
    Start C{twistd -n thrift --workers}, each killed with its workers when
    the test ends (by the C{twistd} fixture).
    """

    def start(*args: str, **kwargs: Any) -> Twistd:
        kwargs.setdefault("pythonpath", [REPO, HELLO, HELLO / "gen"])
        return twistd("thrift", *args, **kwargs)

    return start


def servingPort(server: Twistd, count: int = 2) -> int:
    """
    The port of the startup line, once C{count} workers serve it.
    """
    match = server.serving()
    assert "workers=" in match.string, match.string
    found = re.search(r"tcp:127\.0\.0\.1:(\d+)", match.group("where"))
    assert found, match.string
    for _ in range(count):
        server.waitFor(READY)
    return int(found.group(1))


def pingPids(port: int, connections: int = 8) -> set[int]:
    """
    The pids answering C{ping} on C{connections} connections open at once.
    """
    opened = [apacheClient(Echo, port) for _ in range(connections)]
    try:
        return {client.ping(0) for client, _ in opened}
    finally:
        for _, transport in opened:
            transport.close()


def test_workersShareThePort(workers: Callable[..., Twistd]) -> None:
    """
    Two workers serve one port: the seed's client is answered on every
    connection, and the connections are spread over both workers.
    """
    server = workers("--handler", HANDLER, "--port", LOCAL, "--workers", "2")
    port = servingPort(server)
    pids = workerPids(server)
    assert len(pids) == 2 and all(alive(pid) for pid in pids), server.output
    for _ in range(20):
        assert seedClient(port) == ["ping()", REPLY]
    seen: set[int] = set()
    deadline = time.monotonic() + WAIT
    while len(seen) < 2 and time.monotonic() < deadline:
        seen |= pingPids(port)
    assert seen == set(pids), server.output
    assert server.stop() == 0, server.output
    assert waitGone(pids) == []


def test_aBurstOfConnectionsIsShared(workers: Callable[..., Twistd]) -> None:
    """
    32 connections opened one after the other (a client pool starting up)
    go to both workers, not nearly all to whichever woke first.
    """
    server = workers("--handler", HANDLER, "--port", LOCAL, "--workers", "2")
    port = servingPort(server)
    opened = [apacheClient(Echo, port) for _ in range(32)]
    try:
        served = Counter(client.ping(0) for client, _ in opened)
    finally:
        for _, transport in opened:
            transport.close()
    assert set(served) == set(workerPids(server)), server.output
    assert min(served.values()) >= 8, served
    assert server.stop() == 0, server.output


def test_sigtermDrainsEveryWorker(workers: Callable[..., Twistd]) -> None:
    """
    On SIGTERM twistd tells its workers to stop: the call in flight is
    answered, then every process exits, twistd with status 0.
    """
    server = workers("--handler", HANDLER, "--port", LOCAL, "--workers", "2",
                     "--shutdown-timeout", "10")
    port = servingPort(server)
    pids = workerPids(server)
    replies: queue.Queue[object] = queue.Queue()

    def call() -> None:
        try:
            client, transport = apacheClient(Echo, port, framed=True)
            try:
                replies.put(client.slow(1.5, "drained"))
            finally:
                transport.close()
        except (OSError, TException) as error:
            replies.put(error)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    server.waitFor("slow call drained started")
    sentAt = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert replies.get(timeout=WAIT) == "drained"
    assert server.wait() == 0, server.output
    assert time.monotonic() - sentAt < 8
    assert waitGone(pids, timeout=1) == [], server.output
    assert "Traceback" not in server.output
    caller.join(WAIT)


def test_deadWorkerIsRestarted(workers: Callable[..., Twistd]) -> None:
    """
    A worker killed is started anew and the port keeps serving; when twistd
    itself is killed, its workers stop by themselves.
    """
    server = workers("--handler", HANDLER, "--port", LOCAL, "--workers", "2")
    port = servingPort(server)
    first = workerPids(server)
    os.kill(first[0], signal.SIGKILL)
    server.waitFor(rf"Worker 0 \(pid {first[0]}\) exited: killed by signal 9; restarting")
    restarted = int(server.waitFor(STARTED).group("pid"))
    server.waitFor(READY)
    assert restarted not in first
    assert waitGone([first[0]]) == []
    seen: set[int] = set()
    deadline = time.monotonic() + WAIT
    while len(seen) < 2 and time.monotonic() < deadline:
        seen |= pingPids(port)
    assert seen == {restarted, first[1]}, server.output

    server.process.kill()
    server.wait()
    assert waitGone([restarted, first[1]]) == [], server.output


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_badWorkers(value: str) -> None:
    with pytest.raises(usage.UsageError) as raised:
        Options().parseOptions(["--handler", HANDLER, "--workers", value])
    assert str(raised.value) == f"--workers: expected a whole number, at least 1, not {value!r}"


def test_workersTakeTCPPortsOnly() -> None:
    port = "unix:txthrift-workers.sock"
    with pytest.raises(usage.UsageError) as raised:
        Options().parseOptions(["--handler", HANDLER, "--port", LOCAL, "--port", port,
                                "--workers", "2"])
    assert "\n" not in str(raised.value)
    assert str(raised.value) == (f"--port: {port!r}: --workers takes TCP ports only"
                                 " (tcp:PORT or tcp6:PORT)")


def test_oneWorkerIsTheSingleProcessService() -> None:
    options = Options()
    options.parseOptions(["--handler", HANDLER, "--port", "unix:txthrift-one.sock"])
    assert options["workers"] == 1
    assert isinstance(makeService(options), ThriftService)


def test_twistdSaysBadWorkersInOneLine() -> None:
    done = run("thrift", "--handler", HANDLER, "--workers", "0")
    assert done.returncode != 0
    assert "--workers: expected a whole number, at least 1, not '0'" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_workersDyingTooOftenStopTwistd(workers: Callable[..., Twistd]) -> None:
    """
    Past as many restarts as workers in ten seconds, twistd gives up,
    saying why, takes its workers with it, and exits 1.
    """
    server = workers("--handler", HANDLER, "--port", LOCAL, "--workers", "2")
    servingPort(server)
    pid = workerPids(server)[-1]
    for kill in range(3):
        os.kill(pid, signal.SIGKILL)
        server.waitFor(rf"Worker \d+ \(pid {pid}\) exited: killed by signal 9")
        if kill < 2:
            pid = int(server.waitFor(STARTED).group("pid"))
    assert server.wait() == 1, server.output
    assert "2 restarts in 10s already, stopping" in server.output
    assert waitGone(workerPids(server)) == [], server.output
