"""
Tests for L{txthrift.AccessLog}: one JSON line per call, every field right,
under load and for every outcome, through real sockets; names from the peer
cut short; written once per reactor turn and at stop; C{twistd thrift
--access-log} in a real process, and its one-line mistakes.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport import TSocket
from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater

import txthrift
from tests._handlers import SUFFIX, Hardened
from tests._hardening import binaryHeader, framed, request
from tests._processes import Twistd, run
from tests.gen.py.txthrift_test import Calc, Echo
from tests.gen.py.txthrift_test.ttypes import Oops
from tests.test_interop import within
from txthrift import Codec
from txthrift._accesslog import LONGEST_FIELD, MOST_BUFFERED, MOST_NAMES, AccessLog, peerText

HANDLERS = "tests._handlers"
WAIT = 20.0
FIELDS = ["time", "peer", "identity", "service", "method", "seqid", "outcome", "duration_us",
          "request_bytes", "reply_bytes"]


def readLines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text("ascii")
    assert text.endswith("\n") or text == ""
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert list(line) == FIELDS
    return lines


def stamp(text: str) -> float:
    """
    The time of a line's C{time} field, in seconds since the epoch.
    """
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text), text
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + int(text[20:26]) / 1e6


def replySize(name: str, value: Any = None, **fields: Any) -> int:
    """
    The size of C{Echo}'s reply to C{name}, as the server encodes it.
    """
    result = getattr(Echo, f"{name}_result")(success=value, **fields)
    return len(Codec("binary").encode(name, TMessageType.REPLY, 1, result))


async def until(condition: Any, seconds: float = WAIT) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"not so within {seconds} seconds: {condition}")


@pytest_twisted.ensureDeferred
async def test_oneLinePerCallUnderLoadEveryOutcome(tmp_path: Path) -> None:
    """
    2,000 calls pipelined on one connection (answered, declared exceptions,
    handler failures, oneway, timed out) and unknown methods on another:
    one line each, nothing lost, every field as the call was.
    """
    path = tmp_path / "access.log"
    handler = Hardened(reactor)
    service = txthrift.thriftService(handler, port="tcp:0:interface=127.0.0.1",
                                     access_log=str(path), call_timeout=0.5, reactor=reactor)
    service.startService()
    began = time.time()
    try:
        port = service.ports[0].getHost().port  # type: ignore[attr-defined]
        where = f"tcp:host=127.0.0.1:port={port}"
        client: Any = await within(txthrift.connect(reactor, where, Echo, timeout=WAIT))
        calc: Any = await within(txthrift.connect(reactor, where, Calc, timeout=WAIT))
        expected: list[tuple[str, str]] = []
        calls = []
        for index in range(2000):
            kind = index % 10
            if kind < 6:
                calls.append(client.getData("x"))
                expected.append(("getData", "ok"))
            elif kind == 6:
                calls.append(client.fail("oops"))
                expected.append(("fail", "declared_exception"))
            elif kind == 7:
                calls.append(client.fail("raise"))
                expected.append(("fail", "internal_error"))
            elif kind == 8:
                calls.append(client.fire("m"))
                expected.append(("fire", "oneway"))
            elif index % 100 == 9:
                calls.append(client.slow(-1, "t"))
                expected.append(("slow", "timeout"))
            else:
                calls.append(calc.multiply(2, 3))
                expected.append(("multiply", "unknown_method"))
        results = await within(gatherResults([call.addErrback(lambda f: f.value)
                                              for call in calls]), WAIT * 2)
        assert sum(isinstance(result, Oops) for result in results) == 200
        assert sum(isinstance(result, TApplicationException) for result in results) == 400
        echo = client.protocol.transport.getHost().port
        multiplier = calc.protocol.transport.getHost().port
        await client.close()
        await calc.close()
    finally:
        await service.stopService()
    ended = time.time()
    lines = readLines(path)
    assert len(lines) == 2000
    assert sorted((line["method"], line["outcome"]) for line in lines) == sorted(expected)
    sizes = {("getData", "ok"): (len(request("binary", "getData", 1, "x")),
                                 replySize("getData", "x" + SUFFIX)),
             ("fail", "declared_exception"): (len(request("binary", "fail", 1, "oops")),
                                              replySize("fail", oops=Oops("declared", 3))),
             ("fire", "oneway"): (len(request("binary", "fire", 1, "m")), 0)}
    for line in lines:
        key = (line["method"], line["outcome"])
        mine = echo if line["method"] != "multiply" else multiplier
        assert line["peer"] == f"127.0.0.1:{mine}"
        assert line["service"] == "Echo"
        assert line["identity"] is None
        assert began - 0.001 <= stamp(line["time"]) <= ended
        assert 0 <= line["duration_us"] < WAIT * 2e6
        assert line["request_bytes"] > 0
        if key in sizes:
            assert (line["request_bytes"], line["reply_bytes"]) == sizes[key], line
        elif line["outcome"] != "oneway":
            assert line["reply_bytes"] > 0
        if line["outcome"] == "timeout":
            assert line["duration_us"] >= 0.5e6
    # One connection's seqids: each once.
    seqids = [line["seqid"] for line in lines if line["method"] != "multiply"]
    assert len(set(seqids)) == len(seqids)


class Collect(Protocol):
    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


@pytest_twisted.ensureDeferred
async def test_namesFromThePeerAreCut(tmp_path: Path) -> None:
    """
    An unknown method's name, and a service name, as long as the peer likes:
    cut at L{LONGEST_FIELD} characters, saying how long they were.
    """
    path = tmp_path / "access.log"
    service = txthrift.thriftService(Hardened(reactor), port="tcp:0:interface=127.0.0.1",
                                     access_log=str(path), reactor=reactor)
    service.startService()
    try:
        number = service.ports[0].getHost().port  # type: ignore[attr-defined]
        raw = Collect()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", number), raw)
        wire: Any = raw.transport
        long = "m\"\n" * 1000
        wire.write(framed(binaryHeader(long.encode(), 7) + b"\x00"))
        wire.write(framed(binaryHeader(b"S" * 300 + b":getData", 8) + b"\x00"))
        await until(lambda: raw.received.count(b"\x80\x01\x00\x03") == 2)
        wire.loseConnection()
    finally:
        await service.stopService()
    first, second = readLines(path)
    assert first["method"] == f"{long[:LONGEST_FIELD]}...(3000 characters)"
    assert (first["service"], first["seqid"], first["outcome"]) == ("Echo", 7, "unknown_method")
    assert first["request_bytes"] == 4 + 4 + 3000 + 4 + 1
    assert second["service"] == f"{'S' * 256}...(300 characters)"
    assert (second["method"], second["seqid"]) == ("getData", 8)
    for line in (first, second):
        assert len(json.dumps(line)) < 1024


class Call:
    """
    What a server gives an observer: a call of one origin.
    """

    def __init__(self, peer: Any, identity: str | None = None) -> None:
        self.peer = peer
        self.identity = identity
        self.service = "Echo"


def test_linesWaitForTheTurnsEnd(tmp_path: Path) -> None:
    """
    Lines are written when the reactor's turn ends (a C{callLater(0)}), in
    one write; L{MOST_BUFFERED} of them are written at once; C{close} writes
    what waits.
    """
    clock = Clock()
    clock.advance(1700000000.25)
    ticks = iter(range(10**6))
    with (tmp_path / "a.log").open("ab", buffering=0) as output:
        log = AccessLog(output, clock, timer=lambda: float(next(ticks)))
        origin = Call(IPv6Address("TCP", "::1", 9), identity="alice")
        log.callEnded(log.callStarted((origin, "Calc:ping", 3, None, None), 10), "ok", 20)
        assert (tmp_path / "a.log").read_bytes() == b""
        assert len(clock.getDelayedCalls()) == 1
        clock.advance(0)
        (line,) = readLines(tmp_path / "a.log")
        assert line == {"time": "2023-11-14T22:13:20.250000Z", "peer": "[::1]:9",
                        "identity": "alice", "service": "Calc", "method": "ping", "seqid": 3,
                        "outcome": "ok", "duration_us": 1000000, "request_bytes": 10,
                        "reply_bytes": 20}
        for seqid in range(MOST_BUFFERED):
            log.callEnded(log.callStarted((origin, "ping", seqid, None, None), 1), "ok", 1)
        assert len(readLines(tmp_path / "a.log")) == 1 + MOST_BUFFERED
        assert clock.getDelayedCalls() == []
        log.callEnded(log.callStarted((origin, "ping", 0, None, None), 1), "timeout", 0)
        log.close()
        assert clock.getDelayedCalls() == []
        assert readLines(tmp_path / "a.log")[-1]["outcome"] == "timeout"
        assert output.closed
        log.callEnded(log.callStarted((origin, "ping", 0, None, None), 1), "ok", 0)
        assert clock.getDelayedCalls() == []


def test_namesKeptAreBounded() -> None:
    """
    The JSON of names is kept for the next lines, up to L{MOST_NAMES} of
    them, and none longer than L{LONGEST_FIELD}.
    """
    clock = Clock()
    read, write = os.pipe()
    try:
        log = AccessLog(write, clock)
        origin = Call(None)
        for index in range(3 * MOST_NAMES):
            log.callEnded(log.callStarted((origin, f"m{index}", 1, None, None), 1),
                          "unknown_method", 1)
            log.callEnded(log.callStarted((origin, "x" * 300 + str(index), 1, None, None), 1),
                          "unknown_method", 1)
            if index % 10 == 0:
                clock.advance(0)
                assert len(log._names) <= MOST_NAMES + 10
                os.read(read, 1 << 20)
        assert all(len(name) <= LONGEST_FIELD for _, name in log._names)
    finally:
        os.close(read)
        os.close(write)


def test_peersOfEveryKind() -> None:
    assert peerText(IPv4Address("TCP", "10.0.0.1", 5)) == '"10.0.0.1:5"'
    assert peerText(IPv6Address("TCP", "::1", 5)) == '"[::1]:5"'
    assert peerText(UNIXAddress(b"/run/calc.sock")) == '"/run/calc.sock"'
    assert peerText(None) == "null"


def test_aFailingFileIsLoggedOnceAndServingGoesOn() -> None:
    from twisted.logger import globalLogPublisher

    events: list[Any] = []
    observer: Any = events.append
    globalLogPublisher.addObserver(observer)
    read, write = os.pipe()
    os.close(read)
    try:
        clock = Clock()
        log = AccessLog(write, clock)
        origin = Call(None)
        for _ in range(3):
            log.callEnded(log.callStarted((origin, "ping", 1, None, None), 1), "ok", 1)
            clock.advance(0)
    finally:
        globalLogPublisher.removeObserver(observer)
        os.close(write)
    failures = [event for event in events if "access log" in event.get("log_format", "")]
    assert len(failures) == 1


def test_aBadAccessLogPathIsOneLine(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "access.log"
    done = run("thrift", "--handler", f"{HANDLERS}.EchoHandler", "--access-log", str(missing))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last == (f"twistd thrift: --access-log: cannot append to {str(missing)!r}:"
                    " No such file or directory"), last


def apacheCalls(port: int) -> None:
    sock = TSocket.TSocket("127.0.0.1", port)
    from thrift.protocol import TBinaryProtocol
    from thrift.transport import TTransport

    transport = TTransport.TFramedTransport(sock)
    transport.open()
    try:
        client = Echo.Client(TBinaryProtocol.TBinaryProtocol(transport))
        assert client.getData("x") == "x" + SUFFIX
        with pytest.raises(Oops):
            client.fail("oops")
    finally:
        transport.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_twistdWritesTheAccessLog(twistd: Any, tmp_path: Path, workers: int) -> None:
    """
    C{twistd thrift --access-log -}: the lines on standard output among
    twistd's own; with C{--workers 2} and a file, each worker's lines whole.
    """
    target = "-" if workers == 1 else str(tmp_path / "access.log")
    server: Twistd = twistd("thrift", "--handler", f"{HANDLERS}.Hardened", "--port",
                            "tcp:0:interface=127.0.0.1", "--access-log", target,
                            "--workers", str(workers))
    port = server.tcpPort()
    for _ in range(5 * workers):
        apacheCalls(port)
    assert server.stop() == 0
    if workers == 1:
        text = server.output
    else:
        text = (tmp_path / "access.log").read_text("ascii")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith('{"time"')]
    assert len(lines) == 10 * workers
    assert sorted({line["outcome"] for line in lines}) == ["declared_exception", "ok"]
    for line in lines:
        assert list(line) == FIELDS
        assert re.fullmatch(r"127\.0\.0\.1:\d+", line["peer"])
        assert line["service"] == "Echo"


def test_offByDefault(twistd: Any) -> None:
    server: Twistd = twistd("thrift", "--handler", f"{HANDLERS}.Hardened", "--port",
                            "tcp:0:interface=127.0.0.1")
    apacheCalls(server.tcpPort())
    assert server.stop() == 0
    assert '{"time"' not in server.output


@pytest.mark.parametrize("compiled", [False, True])
def test_linesMadeInCAsInPython(compiled: bool) -> None:
    """
    The C line maker and its Python twin make the same bytes, asking for
    each shared piece once, keeping no name over the longest.
    """
    from tests._speedups import compiled as builtIn
    from txthrift._accesslog import _formatLines, prefixOf, stampOf
    from txthrift._context import Origin

    make: Any = builtIn("accessLines") if compiled else _formatLines
    asked: list[Any] = []

    def prefix(origin: Any, name: str) -> str:
        asked.append(name)
        return prefixOf(origin, name)

    def stamp(second: int) -> str:
        asked.append(second)
        return stampOf(second)

    from twisted.internet.address import IPv6Address

    here = Origin(IPv6Address("TCP", "::1", 4321), "Echo", identity='al"ice')
    there = Origin(None, "Echo")
    long = "m" * 300
    entries = [(1_800_000_000.25, 0.0000125, (here, "add", 1), 28, "ok", 45),
               (1_800_000_000.5, 1.5, (here, "add", 2**40), 28, "declared_exception", 0),
               (1_800_000_001.0625, 0.0, (there, "Calc:mul", -3), 0, "oneway", 0),
               (1_800_000_001.75, 2.0, (here, long, 4), 9, "unknown_method", 61),
               (1_800_000_001.8, 2.0, (here, long, 5), 9, "unknown_method", 61)]
    prefixes: dict[Any, str] = {}
    stamps: dict[int, str] = {}
    lines = make(entries, prefixes, prefix, stamps, stamp, 256)
    assert lines == _formatLines(entries, {}, prefixOf, {}, stampOf, 256)
    assert asked == [1_800_000_000, "add", 1_800_000_001, "Calc:mul", long, long] or \
        asked == ["add", 1_800_000_000, "Calc:mul", 1_800_000_001, long, long]
    assert set(prefixes) == {(here, "add"), (there, "Calc:mul")}
    first, second, third, fourth, _ = (json.loads(line) for line in lines.decode().splitlines())
    assert first == {"time": "2027-01-15T08:00:00.250000Z", "peer": "[::1]:4321",
                     "identity": 'al"ice', "service": "Echo", "method": "add", "seqid": 1,
                     "outcome": "ok", "duration_us": 12, "request_bytes": 28, "reply_bytes": 45}
    assert (second["seqid"], second["duration_us"]) == (2**40, 1500000)
    assert (third["time"], third["peer"], third["service"], third["method"]) == (
        "2027-01-15T08:00:01.062500Z", None, "Calc", "mul")
    assert fourth["method"] == f"{'m' * 256}...(300 characters)"
