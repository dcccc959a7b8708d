"""
The examples in examples/hello run as real processes on 127.0.0.1: txthrift's
server and client against each other and against the seed's blocking ones.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TMessageType
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TBufferedTransport, TTransportException

HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello"
REPLY = "client access from server 1024"

#: Seconds any one wait may take: a process starting, listening, or finishing.
WAIT = 30.0


class Running:
    """
    A process whose output lines are collected as they come.
    """

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def output(self) -> str:
        return "".join(self.lines)

    def waitFor(self, pattern: str, timeout: float = WAIT) -> re.Match[str] | None:
        """
        Wait for a line matching C{pattern}.

        @return: its match, or C{None} if the process ended first.
        @raise AssertionError: if neither happens in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} from {self.args} within {timeout}s:\n"
                    f"{self.output()}") from None
            if line is None:
                self._queue.put(None)  # Later waits see the end too.
                return None
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def finish(self, timeout: float = WAIT) -> tuple[int, str]:
        """
        Wait for the process to end.

        @return: its exit status and whole output.
        """
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.args} still running after {timeout}s:\n{self.output()}") from None
        self._reader.join(timeout)
        try:
            while (line := self._queue.get_nowait()) is not None:
                self.lines.append(line)
        except queue.Empty:
            raise AssertionError(f"{self.args} ended but its output did not") from None
        self._queue.put(None)
        return status, self.output()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def run() -> Iterator[type[Running]]:
    """
    Start example processes; every one is stopped when the test ends.
    """
    started: list[Running] = []

    class Tracked(Running):
        def __init__(self, *args: str, cwd: Path | None = None) -> None:
            super().__init__(*args, cwd=cwd)
            started.append(self)

    try:
        yield Tracked
    finally:
        for process in started:
            process.stop()


def script(name: str) -> str:
    return str(HELLO / name)


def txthriftServer(run: type[Running], cwd: Path | None = None) -> int:
    """
    Start examples/hello/server.py on an ephemeral port.

    @return: the port it logged.
    """
    server = run(script("server.py"), "tcp:0:interface=127.0.0.1", cwd=cwd)
    found = server.waitFor(r"listening on 127\.0\.0\.1:(\d+)")
    assert found, f"server.py ended before listening:\n{server.output()}"
    return int(found.group(1))


def freePort() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answersSayHello(port: int) -> bool:
    """
    Whether a Thrift server answers a buffered binary sayHello() on C{port},
    as the seed's server does and a stranger on that port would not.
    """
    sock = TSocket("127.0.0.1", port)
    sock.setTimeout(2000)
    transport = TBufferedTransport(sock)
    protocol = TBinaryProtocol(transport)
    try:
        transport.open()
        protocol.writeMessageBegin("sayHello", TMessageType.CALL, 1)
        protocol.writeStructBegin("sayHello_args")
        protocol.writeFieldStop()
        protocol.writeStructEnd()
        protocol.writeMessageEnd()
        transport.flush()
        return protocol.readMessageBegin() == ("sayHello", TMessageType.REPLY, 1)
    except (TTransportException, OSError):
        return False
    finally:
        transport.close()


def serving(port: int, server: Running, timeout: float = WAIT) -> bool:
    """
    Wait until C{server} answers on C{port}.

    @return: C{False} if it ended first.
    """
    deadline = time.monotonic() + timeout
    while server.process.poll() is None:
        if answersSayHello(port):
            return True
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer on port {port} after {timeout}s:\n{server.output()}")
        time.sleep(0.05)
    return False


def seedServer(run: type[Running], cwd: Path | None = None, attempts: int = 5) -> int:
    """
    Start the seed's blocking server, which takes a fixed port: pick a free
    one, and pick again if another process took it first.

    @return: the port it listens on.
    """
    for _ in range(attempts):
        port = freePort()
        server = run(script("seed_server.py"), str(port), cwd=cwd)
        # It prints this just before it listens, or fails to.
        if server.waitFor(r"^Starting the server") and serving(port, server):
            return port
        server.stop()
    raise AssertionError(f"seed_server.py failed to listen {attempts} times")


def runClient(run: type[Running], *args: str, cwd: Path | None = None) -> str:
    status, output = run(*args, cwd=cwd).finish()
    assert status == 0, f"{args} exited with status {status}:\n{output}"
    return output


def test_seedClientCallsTxthriftServer(run: type[Running]) -> None:
    port = txthriftServer(run)
    output = runClient(run, script("seed_client.py"), str(port))
    assert output.splitlines() == ["ping()", REPLY]


def test_txthriftClientCallsSeedServer(run: type[Running]) -> None:
    port = seedServer(run)
    output = runClient(run, script("client.py"), "127.0.0.1", str(port))
    assert output.splitlines() == [REPLY]


def test_txthriftClientCallsTxthriftServer(run: type[Running]) -> None:
    port = txthriftServer(run)
    output = runClient(run, script("client.py"), "127.0.0.1", str(port))
    assert output.splitlines() == [REPLY]


def test_examplesRunFromAnyDirectory(run: type[Running], tmp_path: Path) -> None:
    """
    Each script finds its own generated code, wherever it is started from.
    """
    port = txthriftServer(run, cwd=tmp_path)
    output = runClient(run, script("seed_client.py"), str(port), cwd=tmp_path)
    assert output.splitlines() == ["ping()", REPLY]
    port = seedServer(run, cwd=tmp_path)
    output = runClient(run, script("client.py"), "127.0.0.1", str(port), cwd=tmp_path)
    assert output.splitlines() == [REPLY]
