"""
The examples in examples/hello run as real processes on 127.0.0.1: txthrift's
server and client against each other and against the seed's blocking ones.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TMessageType
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TBufferedTransport, TTransportException

from tests._processes import HELLO, Process, Processes

REPLY = "client access from server 1024"

#: Seconds any one wait may take: a process starting, listening, or finishing.
WAIT = 30.0


def script(name: str) -> str:
    return str(HELLO / name)


def txthriftServer(processes: Processes, cwd: Path | None = None) -> int:
    """
    Start examples/hello/server.py on an ephemeral port.

    @return: the port it logged.
    """
    server = processes.python(script("server.py"), "tcp:0:interface=127.0.0.1", cwd=cwd)
    found = server.nextMatch(r"listening on 127\.0\.0\.1:(\d+)", WAIT)
    assert found, f"server.py ended before listening:\n{server.output}"
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


def serving(port: int, server: Process, timeout: float = WAIT) -> bool:
    """
    Wait until C{server} answers on C{port}.

    @return: C{False} if it ended first.
    """
    deadline = time.monotonic() + timeout
    while server.process.poll() is None:
        if answersSayHello(port):
            return True
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer on port {port} after {timeout}s:\n{server.output}")
        time.sleep(0.05)
    return False


def seedServer(processes: Processes, cwd: Path | None = None, attempts: int = 5) -> int:
    """
    Start the seed's blocking server, which takes a fixed port: pick a free
    one, and pick again if another process took it first.

    @return: the port it listens on.
    """
    for _ in range(attempts):
        port = freePort()
        server = processes.python(script("seed_server.py"), str(port), cwd=cwd)
        # It prints this just before it listens, or fails to.
        if server.nextMatch(r"^Starting the server", WAIT) and serving(port, server):
            return port
        server.kill()
    raise AssertionError(f"seed_server.py failed to listen {attempts} times")


def runClient(processes: Processes, *args: str, cwd: Path | None = None) -> str:
    status, output = processes.python(*args, cwd=cwd).finish(WAIT)
    assert status == 0, f"{args} exited with status {status}:\n{output}"
    return output


def test_seedClientCallsTxthriftServer(processes: Processes) -> None:
    port = txthriftServer(processes)
    output = runClient(processes, script("seed_client.py"), str(port))
    assert output.splitlines() == ["ping()", REPLY]


def test_txthriftClientCallsSeedServer(processes: Processes) -> None:
    port = seedServer(processes)
    output = runClient(processes, script("client.py"), "127.0.0.1", str(port))
    assert output.splitlines() == [REPLY]


def test_txthriftClientCallsTxthriftServer(processes: Processes) -> None:
    port = txthriftServer(processes)
    output = runClient(processes, script("client.py"), "127.0.0.1", str(port))
    assert output.splitlines() == [REPLY]


def test_examplesRunFromAnyDirectory(processes: Processes, tmp_path: Path) -> None:
    """
    Each script finds its own generated code, wherever it is started from.
    """
    port = txthriftServer(processes, cwd=tmp_path)
    output = runClient(processes, script("seed_client.py"), str(port), cwd=tmp_path)
    assert output.splitlines() == ["ping()", REPLY]
    port = seedServer(processes, cwd=tmp_path)
    output = runClient(processes, script("client.py"), "127.0.0.1", str(port), cwd=tmp_path)
    assert output.splitlines() == [REPLY]
