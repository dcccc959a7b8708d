"""
L{txthrift._heap.keepFreedMemory}: freed big blocks reused, not faulted in
again; each case runs in a process of its own, since it changes the whole
process's allocator.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests._processes import HELLO, REPO, Twistd, tcpPortOf
from txthrift._heap import keepFreedMemory

glibcOnly = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc",
    reason="mallopt's thresholds are glibc's; elsewhere keepFreedMemory does nothing")

# Eight 1 MiB blocks live at once, as a few connections' messages are, then
# freed, twenty times over: the page faults per MiB allocated.
_FAULTS = """
import json, resource, sys
from txthrift._heap import keepFreedMemory
took = keepFreedMemory(int(sys.argv[1])) if int(sys.argv[1]) else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    held = [bytearray(1 << 20) for _ in range(8)]
    del held
start = faults()
for _ in range(20):
    held = [bytearray(1 << 20) for _ in range(8)]
    del held
print(json.dumps({"took": took, "perMiB": (faults() - start) / 160}))
"""


def faultsPerMiB(keep: int) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _FAULTS, str(keep)], capture_output=True,
                          text=True, timeout=60, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


@glibcOnly
def testFreedBlocksAreReused() -> None:
    """
    Without it, glibc hands freed megabytes back and faults fresh pages in
    for the next ones; with it, they are reused.
    """
    plain = faultsPerMiB(0)
    kept = faultsPerMiB(64 * 1024 * 1024)
    assert kept["took"] is True
    assert isinstance(plain["perMiB"], float) and isinstance(kept["perMiB"], float)
    assert plain["perMiB"] > 100  # 256 pages of 4 KiB per MiB, give or take
    assert kept["perMiB"] < 5


@glibcOnly
def testSmallKeepStillTakes() -> None:
    """
    A keep too small to hold the blocks takes effect and changes nothing
    for them: blocks past half of it are still mapped and unmapped.
    """
    kept = faultsPerMiB(1024 * 1024)
    assert kept["took"] is True
    assert isinstance(kept["perMiB"], float) and kept["perMiB"] > 100


def testKeepMustBePositive() -> None:
    with pytest.raises(ValueError, match="positive"):
        keepFreedMemory(0)


def _minorFaults(pid: int) -> int:
    # /proc/PID/stat: the 10th field, counted after the parenthesised name.
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[7])


def _bigCalls(port: int, pid: int, calls: int) -> float:
    """
    C{calls} 1 MiB getData calls from eight of Apache's blocking clients at
    once; the server's page faults per call.
    """
    from concurrent.futures import ThreadPoolExecutor

    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
    from thrift.transport.TSocket import TSocket
    from thrift.transport.TTransport import TFramedTransport

    if str(HELLO / "gen") not in sys.path:
        sys.path.append(str(HELLO / "gen"))
    from HelloService import HelloService  # type: ignore[import-not-found]

    big = "x" * (1 << 20)

    def connection(count: int) -> None:
        sock = TSocket("127.0.0.1", port)
        sock.setTimeout(30_000)
        transport = TFramedTransport(sock)
        client = HelloService.Client(TBinaryProtocolAccelerated(transport))
        transport.open()
        try:
            for _ in range(count):
                assert client.getData(big) == big + " from server 1024"
        finally:
            transport.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(connection, [2] * 8))  # warm up
        start = _minorFaults(pid)
        list(pool.map(connection, [calls // 8] * 8))
        return (_minorFaults(pid) - start) / calls


@glibcOnly
@pytest.mark.parametrize("keep", ["0", None])
def testTwistdThriftKeepsFreedMemory(twistd: Callable[..., Twistd], keep: str | None) -> None:
    """
    C{twistd thrift} keeps freed memory by default, so that a server of
    1 MiB calls from several connections at once stops faulting fresh pages
    in for each of them; C{--keep-freed-mib 0} leaves glibc's defaults.
    """
    server = twistd("thrift", "--handler", "hello_handler.HelloServiceHandler",
                    "--port", "tcp:0:interface=127.0.0.1",
                    *(["--keep-freed-mib", keep] if keep is not None else []),
                    pythonpath=[REPO, HELLO, HELLO / "gen"])
    port = tcpPortOf(server.serving())
    perCall = _bigCalls(port, server.process.pid, 48)
    assert server.stop() == 0
    if keep is None:
        assert perCall < 30, perCall
    else:
        # A MiB is 256 pages: each call's request, string and reply, mapped afresh.
        assert perCall > 200, perCall
