"""
Behaviour the documentation promises, checked against the documentation.

Each test here reads what README.md (or a docstring) says, where it says a
number, so that the two cannot drift apart: a default changed in the code
but not in the docs (or the other way round) fails here.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import pytest_twisted
from thrift.Thrift import TMessageType
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.testing import MemoryReactorClock

import txthrift
from tests._handlers import HANDLERS, Hardened
from tests._hardening import Raw, bounded, request, until
from tests.gen.conformance_py.txthrift_conformance import Conformance
from tests.gen.conformance_py.txthrift_conformance.ttypes import Containers, Primitives
from tests.gen.py.txthrift_test import Echo
from txthrift import Codec, Limits, _appservice, _scanning
from txthrift._framing import makeFramer
from txthrift._tap import Options

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
WAIT = 20.0


# ---------------------------------------------------------------------------
# Limits: the README's table is the truth for every default.
# ---------------------------------------------------------------------------


def documentedLimits() -> dict[str, str]:
    """
    The README's table of limits: keyword to the text of its default.
    """
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.MULTILINE)
    assert rows, "README.md's Limits section has no table of keywords"
    return {name: default.strip() for name, default in rows}


_UNITS = {"": 1, "bytes": 1, "KiB": 1024, "MiB": MiB, "GiB": 1024 * MiB, "s": 1,
          "seconds": 1}


def documentedValue(text: str) -> Any:
    """
    A default as the README writes it: C{None} (however explained), or a
    number with an optional unit.
    """
    if text.startswith("`None`"):
        return None
    found = re.fullmatch(r"([\d,._]+)\s*(\w*)", text)
    assert found and found.group(2) in _UNITS, f"cannot read the documented default {text!r}"
    number = float(found.group(1).replace(",", "").replace("_", ""))
    value = number * _UNITS[found.group(2)]
    return int(value) if value == int(value) else value


def test_everyLimitIsDocumentedWithItsDefault() -> None:
    """
    The README names every field of L{Limits}, and no other, and each
    default it gives is the one L{Limits} has.
    """
    documented = documentedLimits()
    assert sorted(documented) == sorted(f.name for f in fields(Limits))
    defaults = Limits()
    for name, text in documented.items():
        assert getattr(defaults, name) == documentedValue(text), (name, text)


def test_documentedMeaningOfNone() -> None:
    """
    What the README and L{Limits}'s docstring say C{None} means.
    """
    documented = documentedLimits()
    defaults = Limits()
    doc = Limits.__doc__ or ""
    for name, limit in (("max_string_length", "string_limit"),
                        ("max_container_length", "container_limit")):
        # "`None`: `max_frame_size`", and "C{None} means C{max_frame_size}".
        assert documented[name] == "`None`: `max_frame_size`"
        assert re.search(rf"@ivar {name}:[^@]*C{{None}} means C{{max_frame_size}}", doc), name
        assert getattr(defaults, limit) == defaults.max_frame_size
    for name in ("idle_timeout", "call_timeout"):
        assert documented[name] == "`None` (off)"


def test_serveConnectAndTwistdStartFromTheDocumentedDefaults() -> None:
    expected = Limits(**{name: documentedValue(text)
                         for name, text in documentedLimits().items()})
    reactor = MemoryReactorClock()
    txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", Hardened(reactor))
    txthrift.connect(reactor, "tcp:host=127.0.0.1:port=1", Echo)
    serverFactory: Any = reactor.tcpServers[0][1]
    clientFactory: Any = reactor.tcpClients[0][2]
    assert serverFactory.limits == expected
    assert clientFactory._wrappedFactory.limits == expected
    options = Options()
    options.parseOptions(["--handler", f"{HANDLERS}.EchoHandler"])
    assert Limits.from_keywords(**options["limits"]) == expected


UNKNOWN = r"unknown limit max_framesize; known limits: .*\bmax_frame_size\b"


def test_unknownLimitKeywordIsATypeError() -> None:
    """
    README: "an unknown name raises C{TypeError}", from C{serve}, C{connect},
    C{thriftService} and L{Limits.from_keywords}, naming the keyword and
    the known ones, before anything listens or connects.
    """
    reactor = MemoryReactorClock()
    with pytest.raises(TypeError, match=UNKNOWN):
        txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", Hardened(reactor),
                       max_framesize=1024)
    with pytest.raises(TypeError, match=UNKNOWN):
        txthrift.connect(reactor, "tcp:host=127.0.0.1:port=1", Echo, max_framesize=1024)
    with pytest.raises(TypeError, match=UNKNOWN):
        txthrift.thriftService(Hardened(reactor), port="tcp:0", reactor=reactor,
                               max_framesize=1024)
    with pytest.raises(TypeError, match=UNKNOWN):
        Limits.from_keywords(max_framesize=1024)
    with pytest.raises(TypeError, match=UNKNOWN):
        Limits.from_keywords(Limits(max_depth=3), max_pending=2, max_framesize=1024)
    assert reactor.tcpServers == [] and reactor.tcpClients == []
    # Known ones are taken, over a base when there is one.
    assert Limits.from_keywords(Limits(max_depth=3), max_pending=2) == Limits(max_depth=3,
                                                                              max_pending=2)


# ---------------------------------------------------------------------------
# Unframed scanning is linear in the message size, for every protocol.
# ---------------------------------------------------------------------------


def scanningWork(message: bytes, protocol: str, piece: int, budget: int) -> int:
    """
    Feed C{message} to an unframed framer in pieces of C{piece} bytes and
    count the lines of L{txthrift._scanning} that ran: the scanner's work,
    whatever its inner workings.  Counting stops past C{budget} (a
    quadratic scanner would take minutes to count).
    """
    framer = makeFramer("buffered", protocol, Limits())
    where = _scanning.__file__
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if count > budget:
            return None
        if event == "line":
            count += 1
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        if count > budget or frame.f_code.co_filename != where:
            return None
        return local

    got = []
    sys.settrace(calls)
    try:
        for start in range(0, len(message), piece):
            got += framer.feed(message[start:start + piece])
    finally:
        sys.settrace(None)
    assert got == [message]
    return count


@pytest.fixture
def pythonWalker() -> Iterator[None]:
    """
    Flat containers walked in Python, so that their walk is counted too.
    """
    saved = _scanning._skipFlat
    _scanning._skipFlat = _scanning._skipFlatInPython
    try:
        yield
    finally:
        _scanning._skipFlat = saved


@pytest.mark.parametrize("protocol", ["binary", "compact", "json"])
def test_unframedScanningIsLinearForEveryProtocol(protocol: str,
                                                  pythonWalker: None) -> None:
    """
    A message of structs, lists, maps and strings fed in 1 KiB pieces costs
    the scanner about what it costs fed whole: it resumes where it stopped,
    never from the start of the message.
    """
    value = Containers(structs=[Primitives(anI32=i, aString=f"s{i}") for i in range(3000)],
                       i32Map={i: i for i in range(3000)},
                       strings=[f"x{i}" for i in range(3000)])
    message = Codec(protocol).encode("echoContainers", TMessageType.CALL, 1,
                                     Conformance.echoContainers_args(v=value))
    pieces = -(-len(message) // 1024)
    assert pieces > 50
    whole = scanningWork(message, protocol, len(message), 10**9)
    # Each piece may cost a little (a field cut in two is read again).
    budget = whole + whole // 4 + 200 * pieces
    inPieces = scanningWork(message, protocol, 1024, budget)
    print(f"\n{protocol}: {len(message):,} bytes scanned in {pieces} pieces:"
          f" {inPieces / whole:.3f} times the lines run scanning it whole")
    assert inPieces <= budget, (protocol, len(message), pieces, whole, inPieces)


# ---------------------------------------------------------------------------
# Stopping cuts off peers that do not read.
# ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_stoppingAbortsAPeerThatNeverReads(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A client that stops reading while big replies are written to it cannot
    hold a stopping service: once the calls in flight are done and the
    grace for closing connections has passed, its connection is aborted
    and C{stopService} fires.
    """
    from twisted.internet import reactor

    monkeypatch.setattr(_appservice, "_CLOSE_GRACE", 0.5)
    service = txthrift.thriftService(Hardened(reactor), port="tcp:0:interface=127.0.0.1",
                                     shutdown_timeout=1.0)
    service.startService()
    stopped = None
    hog: Any = None
    try:
        address: Any = service.ports[0].getHost()
        hog = await bounded(connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", address.port), Raw()), WAIT)
        hog.transport.pauseProducing()  # never reads again
        # 24 replies of 1 MiB: more than the sockets between us can hold.
        hog.transport.write(b"".join(request("binary", "blob", i + 1, 4096, transport="framed")
                                     for i in range(24)))
        server: Any
        (server,) = service.factory.connections

        def stuck() -> bool:
            return server._readPaused and bool(
                server.transport.dataBuffer or server.transport._tempDataLen)

        await until(stuck, WAIT, "replies to pile up in the server")
        stopped = service.stopService()
        await bounded(stopped, 1.0 + 0.5 + 5.0)
        # Aborted (its connectionLost comes at the reactor's next turn).
        await until(lambda: not service.factory.connections, 1.0, "the peer to be aborted")
        # Reading again, the client finds its connection cut short.
        hog.transport.resumeProducing()
        await bounded(hog.lost, WAIT)
        assert len(hog.data) < 24 * MiB
    finally:
        if hog is not None and not hog.lost.called:
            hog.transport.abortConnection()
        if stopped is None:
            await service.stopService()


def test_everyTestTheReliabilityNotesNameExists() -> None:
    """
    docs/reliability.md names the test pinning each failure path: each of
    those tests is defined, so a renamed or removed one cannot leave the
    notes pointing at nothing.
    """
    named = set(re.findall(r"`(test_\w+)`", (REPO / "docs" / "reliability.md").read_text()))
    defined = {found for path in (REPO / "tests").glob("*.py")
               for found in re.findall(r"def (test_\w+)\(", path.read_text())}
    assert len(named) > 100
    assert sorted(named - defined) == []
