"""
Hardening: hostile input, faults and load, with nothing lost.

Every socket is on 127.0.0.1, every port 0 (or one first handed out by
port 0), every wait bounded, and every twistd process killed at the end.
Figures measured here are written up in docs/reliability.md.
"""

from __future__ import annotations

import gc
import resource
import struct
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TTransportException
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import LogLevel

import txthrift
from tests._handlers import HANDLERS, Hardened
from tests._hardening import (
    COMBOS,
    METHODS,
    VALID_CALLS,
    Raw,
    Served,
    binaryHeader,
    bounded,
    checkClientIntake,
    checkServerIntake,
    decodeAll,
    fdCount,
    framed,
    mutate,
    reply,
    request,
    resultStruct,
    rssKiB,
    unread,
    until,
    validMessage,
)
from tests._processes import Twistd, tcpPortOf
from tests.gen.py.txthrift_test import Echo
from txthrift import Codec

LOCAL = "tcp:0:interface=127.0.0.1"
WAIT = 20.0
_I32 = struct.Struct(">i")


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _errors(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events
            if "log_failure" in e or e.get("log_level") in (LogLevel.error, LogLevel.critical)]


# ---------------------------------------------------------------------------
# Hostile input, one connection over a StringTransport.
# ---------------------------------------------------------------------------

_BIG = 0x7FFFFFFF
#: name: (transport, protocol, bytes, what must happen, claims a big size)
HOSTILE: dict[str, tuple[str, str, bytes, str, bool]] = {
    "garbage": ("auto", "auto", b"GET / HTTP/1.1\r\n\r\n", "closed", False),
    "zero bytes": ("auto", "auto", b"\x00" * 64, "closed", False),
    "frame length 0": ("framed", "binary", _I32.pack(0) + b"\x80\x01", "closed", False),
    "frame length -4": ("framed", "binary", _I32.pack(-4) + b"\x80\x01", "closed", True),
    "frame length 0x7fffffff": ("framed", "binary", _I32.pack(_BIG) + b"\x80\x01", "closed",
                                True),
    "frame length 0x7fffffff auto": ("auto", "auto", _I32.pack(_BIG) + b"\x80\x01", "closed",
                                     True),
    "reply not call": ("auto", "auto", framed(binaryHeader(mtype=2) + b"\x00"), "closed", False),
    "invalid utf-8 name": ("auto", "auto", framed(binaryHeader(b"get\xffData") + b"\x00"),
                           "closed", False),
    "huge name length": ("auto", "auto", framed(struct.pack(">iI", -0x7FFEFFFF, _BIG) + b"ab"),
                         "closed", True),
    "huge string (framed)": ("auto", "auto", framed(
        binaryHeader() + b"\x0b\x00\x01" + _I32.pack(_BIG) + b"abc"), "exception", True),
    "negative string (framed)": ("auto", "auto", framed(
        binaryHeader() + b"\x0b\x00\x01" + _I32.pack(-5) + b"abc"), "exception", False),
    "huge list (framed)": ("auto", "auto", framed(
        binaryHeader() + b"\x0f\x00\x09\x0a" + _I32.pack(_BIG) + b"\x00"), "exception", True),
    "negative list (framed)": ("auto", "auto", framed(
        binaryHeader() + b"\x0f\x00\x09\x0a" + _I32.pack(-1) + b"\x00"), "exception", False),
    "huge map (framed)": ("auto", "auto", framed(
        binaryHeader() + b"\x0d\x00\x09\x0b\x0b" + _I32.pack(_BIG) + b"\x00"), "exception",
        True),
    "huge string (buffered)": ("auto", "auto",
                               binaryHeader() + b"\x0b\x00\x01" + _I32.pack(_BIG) + b"abc",
                               "closed", True),
    "huge list (buffered)": ("auto", "auto",
                             binaryHeader() + b"\x0f\x00\x09\x0a" + _I32.pack(_BIG) + b"\x00",
                             "closed", True),
    "negative map (buffered)": ("auto", "auto",
                                binaryHeader() + b"\x0d\x00\x09\x0b\x0b" + _I32.pack(-7),
                                "closed", False),
    "huge compact string (buffered)": ("auto", "auto", b"\x82\x21\x01\x07getData\x18"
                                       + b"\xff\xff\xff\xff\x07abc", "closed", True),
    "truncated (framed)": ("auto", "auto", framed(
        binaryHeader() + b"\x0b\x00\x01" + _I32.pack(30) + b"abc"), "exception", False),
    "wrong field type": ("auto", "auto", framed(
        binaryHeader() + b"\x08\x00\x01" + _I32.pack(3) + b"\x00"), "exception", False),
    "deep binary (framed)": ("auto", "auto", framed(
        binaryHeader() + b"\x0c\x00\x09" * 5000 + b"\x00" * 5001), "exception", False),
    "deep binary (buffered)": ("auto", "auto",
                               binaryHeader() + b"\x0c\x00\x09" * 5000 + b"\x00" * 5001,
                               "closed", False),
    "deep compact (framed)": ("auto", "auto", framed(
        b"\x82\x21\x01\x07getData" + b"\x9c" * 3000 + b"\x00" * 3001), "exception", False),
    "deep compact (buffered)": ("auto", "auto",
                                b"\x82\x21\x01\x07getData" + b"\x9c" * 3000 + b"\x00" * 3001,
                                "closed", False),
    "deep json (framed)": ("auto", "auto", framed(
        b'[1,"getData",1,1,{' + b'"1":{"rec":{' * 3000 + b"}}" * 3000 + b"}]"),
        "exception", False),
    "deep json (buffered)": ("auto", "auto",
                             b'[1,"getData",1,1,{' + b'"1":{"rec":{' * 3000 + b"}}" * 3000
                             + b"}]", "closed", False),
    "invalid utf-8 json string": ("auto", "auto", framed(
        b'[1,"getData",1,1,{"1":{"str":"\xff\xfe"}}]'), "exception", False),
    "bad json": ("auto", "auto", framed(b'[1,"getData",1,1,{"1":{"str":'), "exception",
                 False),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostileInputClosesOrAnswersWithoutBigAllocations(name: str) -> None:
    """
    Each hostile message closes its connection, or (when its seqid could be
    read) is answered with a TApplicationException; nothing escapes, and
    nothing near a claimed size is allocated.
    """
    transport, protocol, data, expected, _ = HOSTILE[name]
    served = Served(transport, protocol)
    gc.collect()
    tracemalloc.start()
    try:
        served.send(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"{name}: {peak} bytes allocated at peak"
    if expected == "closed":
        assert served.transport.disconnecting
        assert served.proto.refusal
        assert served.transport.value() == b""
    else:
        assert not served.transport.disconnecting
        framer = served.proto.framer
        assert framer is not None
        replies = decodeAll(served.transport.value(), framer.transport, framer.protocol)
        assert [(r[0], r[1], r[2]) for r in replies] == [("getData", TMessageType.EXCEPTION, 1)]
        assert replies[0][3].type in (TApplicationException.PROTOCOL_ERROR,
                                      TApplicationException.INTERNAL_ERROR)
        # The connection is still good.
        served.send(request(framer.protocol, "ping", 2, 1, transport=framer.transport))
        again = decodeAll(served.transport.value(), framer.transport, framer.protocol)
        assert again[-1][2] == 2 and again[-1][3].success == 2


def test_invalidUTF8StringArgumentDoesNotBreakTheConnection() -> None:
    served = Served()
    served.send(framed(binaryHeader() + b"\x0b\x00\x01" + _I32.pack(2) + b"\xff\xfe\x00"))
    replies = decodeAll(served.transport.value(), "framed", "binary")
    assert len(replies) == 1 and replies[0][2] == 1
    assert not served.transport.disconnecting


# ---------------------------------------------------------------------------
# Hostile input on real sockets: the good client never notices.
# ---------------------------------------------------------------------------

BAD_STREAMS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    _I32.pack(_BIG) + b"\x80\x01\x00\x01",
    binaryHeader() + b"\x0c\x00\x09" * 2000,
    b"\x82\x21\x01\x07getData" + b"\x9c" * 2000,
    b"[" * 5000,
    framed(binaryHeader(b"\xff\xfe") + b"\x00"),
    framed(binaryHeader(mtype=3) + b"\x00"),
]


@pytest.mark.parametrize(("transport", "protocol"), COMBOS)
@pytest_twisted.ensureDeferred
async def test_badConnectionsAreThrownOutWhileAGoodOneIsServed(
        transport: str, protocol: str) -> None:
    reactor = _reactor()
    port: Any = await txthrift.serve(reactor, LOCAL, Hardened(reactor))
    portNumber = port.getHost().port
    client: Any = await bounded(txthrift.connect(
        reactor, f"tcp:host=127.0.0.1:port={portNumber}", Echo, transport=transport,
        protocol=protocol, timeout=WAIT), WAIT)
    try:
        good = 0
        for index, stream in enumerate(BAD_STREAMS):
            bad = await bounded(connectProtocol(
                TCP4ClientEndpoint(reactor, "127.0.0.1", portNumber), Raw()), WAIT)
            assert isinstance(bad, Raw)
            # Alternate the bad bytes with good calls on the other connection.
            pending = client.getData(f"call {index}")
            bad.transport.write(stream)
            assert await bounded(pending, WAIT) == f"call {index} from server 1024"
            got = await bounded(bad.lost, WAIT)
            assert got == b"", got
            assert await bounded(client.echo("x", index), WAIT) == "x" * index
            good += 2
        assert good == 2 * len(BAD_STREAMS)
        assert len(port.factory.connections) == 1
    finally:
        await client.close()
        await port.stopListening()


# ---------------------------------------------------------------------------
# Property-based fuzzing of both intakes.
# ---------------------------------------------------------------------------

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
combos = st.sampled_from(COMBOS)
edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 16),
                           st.binary(min_size=1, max_size=8)), min_size=1, max_size=4)


@FUZZ
@given(combo=combos, data=st.binary(max_size=200))
def test_fuzzServerRandomBytes(combo: tuple[str, str], data: bytes) -> None:
    assert checkServerIntake(data, *combo) in ("closed", "answered", "idle")


@FUZZ
@given(combo=combos, which=st.integers(0, 20), seqid=st.integers(1, 1000), edits=edits)
def test_fuzzServerMutatedMessages(combo: tuple[str, str], which: int, seqid: int,
                                   edits: list[tuple[int, int, bytes]]) -> None:
    transport, protocol = combo
    data = mutate(validMessage(transport, protocol, which, seqid), edits)
    assert checkServerIntake(data, transport, protocol) in ("closed", "answered", "idle")


@FUZZ
@given(combo=combos, data=st.binary(max_size=200))
def test_fuzzClientRandomReplies(combo: tuple[str, str], data: bytes) -> None:
    checkClientIntake(data, *combo)


@FUZZ
@given(combo=combos, seqid=st.integers(1, 3), edits=edits)
def test_fuzzClientMutatedReplies(combo: tuple[str, str], seqid: int,
                                  edits: list[tuple[int, int, bytes]]) -> None:
    transport, protocol = combo
    message = reply(protocol, "getData", seqid, "fine")
    data = framed(message) if transport == "framed" else message
    outcomes = checkClientIntake(mutate(data, edits), transport, protocol)
    # Calls whose reply never came fail as a lost connection.
    assert sum(isinstance(o, str) for o in outcomes) <= 1


def test_fuzzInvariantsHoldForValidInput() -> None:
    """
    The fuzz checks can tell a good connection: an unmutated message is
    answered, and an unmutated reply is delivered.
    """
    for transport, protocol in COMBOS:
        for which in range(len(VALID_CALLS)):
            # The call itself gets its reply (checkServerIntake checks), and
            # the ping after it.
            assert checkServerIntake(validMessage(transport, protocol, which, 5),
                                     transport, protocol) == "answered"
        message = reply(protocol, "getData", 2, "fine")
        data = framed(message) if transport == "framed" else message
        outcomes = checkClientIntake(data, transport, protocol)
        assert outcomes.count("fine") == 1


# ---------------------------------------------------------------------------
# Slow clients.
# ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_slowlorisIsDroppedByTheIdleTimeout() -> None:
    reactor = _reactor()
    port: Any = await txthrift.serve(reactor, LOCAL, Hardened(reactor), idle_timeout=1.0)
    portNumber = port.getHost().port
    client: Any = await bounded(txthrift.connect(
        reactor, f"tcp:host=127.0.0.1:port={portNumber}", Echo, timeout=WAIT), WAIT)
    slow = await bounded(connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", portNumber), Raw()), WAIT)
    try:
        message = request("binary", "getData", 1, "x" * 40, transport="framed")
        started = time.monotonic()
        sent = 0
        goodCalls = 0
        while not slow.lost.called and time.monotonic() - started < 10:
            if sent < len(message):
                slow.transport.write(message[sent:sent + 1])  # a byte every 50 ms
                sent += 1
            assert await bounded(client.ping(sent), WAIT) == sent + 1
            goodCalls += 1
            await deferLater(reactor, 0.05, lambda: None)
        dropped = time.monotonic() - started
        print(f"\nslowloris: {sent} of {len(message)} bytes sent, dropped after {dropped:.2f} s,"
              f" {goodCalls} good calls meanwhile")
        assert slow.lost.called, "the trickling client was never dropped"
        assert sent < len(message), "the whole request got through"
        assert 0.7 < dropped < 2.5, dropped
        assert slow.data == b""
        assert goodCalls > 5
        assert await bounded(client.getData("after"), WAIT) == "after from server 1024"
    finally:
        await client.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_aClientThatNeverReadsIsPaused() -> None:
    """
    Replies pile up for a client that reads nothing: the server stops
    reading from it, so what it sends next is not read, and the buffered
    replies stop growing.
    """
    reactor = _reactor()
    handler = Hardened(reactor)
    port: Any = await txthrift.serve(reactor, LOCAL, handler)
    portNumber = port.getHost().port
    hog = await bounded(connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", portNumber), Raw()), WAIT)
    hog.transport.pauseProducing()  # never read
    try:
        calls = b"".join(request("binary", "blob", i + 1, 256, transport="framed")
                         for i in range(40))
        for _ in range(5):
            hog.transport.write(calls)
            await deferLater(reactor, 0.1, lambda: None)
        (server,) = port.factory.connections
        await until(lambda: server._readPaused, WAIT, "reading to pause")

        def buffered() -> int:
            return len(server.transport.dataBuffer) + server.transport._tempDataLen

        first, answered = buffered(), handler.blobs
        assert 0 < answered < 200
        before = unread(server)
        for _ in range(20):  # another 800 calls, 50 MiB of replies if read
            hog.transport.write(calls)
        # Every byte of them reaches the server's socket, and stays unread.
        await until(lambda: unread(server) >= before + 20 * len(calls), WAIT,
                    "the calls to reach the server and stay unread there")
        assert server._readPaused
        assert handler.blobs == answered, "the server read from a paused connection"
        assert buffered() <= first, (first, buffered())
        assert first < 40 * 1024 * 1024, first
    finally:
        hog.transport.abortConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_repliesBufferedForAClientThatNeverReadsStayBounded() -> None:
    reactor = _reactor()
    port: Any = await txthrift.serve(reactor, LOCAL, Hardened(reactor))
    hog = await bounded(connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Raw()), WAIT)
    hog.transport.pauseProducing()
    try:
        # 1,000 calls of 25 bytes each ask for 64 KiB each: 64 MiB.
        hog.transport.write(b"".join(request("binary", "blob", i + 1, 256, transport="framed")
                                     for i in range(1000)))
        (server,) = port.factory.connections
        await until(lambda: server._readPaused, WAIT, "reading to pause")
        # The server has stopped: one more call stays unread in its socket.
        hog.transport.write(request("binary", "blob", 1001, 256, transport="framed"))
        await until(lambda: unread(server) > 0, WAIT, "a call to stay unread")
        held = len(server.transport.dataBuffer) + server.transport._tempDataLen
        print(f"\nbuffered for a client that reads nothing: {held:,} bytes")
        # Past 64 KiB a batch of replies (here, each reply) goes to the
        # transport, which pauses us once it holds 64 KiB: it holds less
        # than that and one more reply.
        oneReply = len(framed(reply("binary", "blob", 1, bytes(range(256)) * 256)))
        assert held < 64 * 1024 + oneReply, (
            f"{held:,} bytes buffered for a client that reads nothing")
    finally:
        hog.transport.abortConnection()
        await port.stopListening()


# ---------------------------------------------------------------------------
# Handler faults.
# ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_handlerFaultsAnswerAndFreeTheirSlot(logged: list[dict[str, Any]]) -> None:
    reactor = _reactor()
    handler = Hardened(reactor)
    port: Any = await txthrift.serve(reactor, LOCAL, handler, call_timeout=0.5, max_pending=1)
    client: Any = await bounded(txthrift.connect(
        reactor, f"tcp:host=127.0.0.1:port={port.getHost().port}", Echo, timeout=WAIT), WAIT)
    try:
        for kind in ("raise", "deferred"):
            with pytest.raises(TApplicationException) as caught:
                await bounded(client.fail(kind), WAIT)
            assert caught.value.type == TApplicationException.INTERNAL_ERROR
            assert "on purpose" not in str(caught.value)
        started = time.monotonic()
        never = client.slow(-1.0, "never")
        # With max_pending=1 the ping waits for the hung call's slot.
        after = client.ping(1)
        with pytest.raises(TApplicationException) as caught:
            await bounded(never, WAIT)
        assert caught.value.type == TApplicationException.INTERNAL_ERROR
        assert "0.5 seconds" in str(caught.value)
        assert await bounded(after, WAIT) == 2
        elapsed = time.monotonic() - started
        print(f"\ncall_timeout=0.5: timed out, and the queued call answered, after {elapsed:.2f} s")
        assert 0.4 < elapsed < 3.0
        (server,) = port.factory.connections
        assert server.inFlight == 0
        assert handler.late and handler.late[0].called  # cancelled
        assert sum("on purpose" in str(e.get("log_failure", "")) for e in logged) == 2
    finally:
        await client.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_twistdCallTimeoutAndBlockingThreads(twistd: Callable[..., Twistd]) -> None:
    reactor = _reactor()
    timed = twistd("thrift", "--handler", f"{HANDLERS}.Hardened", "--call-timeout", "0.5",
                   "--port", LOCAL)
    blocking = twistd("thrift", "--handler", f"{HANDLERS}.Blocking", "--threads", "2",
                      "--port", LOCAL)
    timedPort, blockingPort = timed.tcpPort(), blocking.tcpPort()
    client: Any = await bounded(txthrift.connect(
        reactor, f"tcp:host=127.0.0.1:port={timedPort}", Echo, timeout=WAIT), WAIT)
    try:
        with pytest.raises(TApplicationException) as caught:
            await bounded(client.slow(-1.0, "hang"), WAIT)
        assert "0.5 seconds" in str(caught.value)
        assert await bounded(client.ping(3), WAIT) == 4
    finally:
        await client.close()

    endpoint = f"tcp:host=127.0.0.1:port={blockingPort}"
    sleepers = [await bounded(txthrift.connect(reactor, endpoint, Echo, timeout=WAIT), WAIT)
                for _ in range(2)]
    other: Any = await bounded(txthrift.connect(reactor, endpoint, Echo, timeout=WAIT), WAIT)
    try:
        first = sleepers[0].slow(1.5, "a")
        await until(lambda: "blocking slow call a started" in blocking.output, WAIT,
                    "the first thread to block")
        started = time.monotonic()
        assert await bounded(other.ping(1), WAIT) == 2  # the second thread
        assert time.monotonic() - started < 1.0
        second = sleepers[1].slow(1.5, "b")
        await until(lambda: "blocking slow call b started" in blocking.output, WAIT,
                    "the second thread to block")
        # Both threads block; the reactor still throws out a bad peer.
        bad = await bounded(connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", blockingPort), Raw()), WAIT)
        started = time.monotonic()
        bad.transport.write(b"GET / HTTP/1.0\r\n\r\n")
        await bounded(bad.lost, WAIT)
        assert time.monotonic() - started < 0.5
        assert [await bounded(first, WAIT), await bounded(second, WAIT)] == ["a", "b"]
    finally:
        for c in [*sleepers, other]:
            await c.close()


# ---------------------------------------------------------------------------
# Connection faults.
# ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_clientGoneMidCallDropsTheLateReplyQuietly(logged: list[dict[str, Any]]) -> None:
    reactor = _reactor()
    handler = Hardened(reactor)
    port: Any = await txthrift.serve(reactor, LOCAL, handler)
    client: Any = await bounded(txthrift.connect(
        reactor, f"tcp:host=127.0.0.1:port={port.getHost().port}", Echo, timeout=WAIT), WAIT)
    calls = [client.slow(0.3, f"t{i}") for i in range(5)]
    await until(lambda: sum(len(p._queue) + p.inFlight for p in port.factory.connections) == 5,
                WAIT, "the calls to arrive")
    await client.close()
    for call in calls:
        with pytest.raises(TTransportException):
            await bounded(call, WAIT)
    # The handler's calls end (answered late, or cancelled with their connection).
    await until(lambda: len(handler.finished) == 5, WAIT, "the handler's calls to end")
    await deferLater(reactor, 0, lambda: None)  # a turn, for replies sent at the next
    print(f"\nhandler calls of a client gone: {handler.finished}")
    try:
        assert not port.factory.connections
        assert _errors(logged) == []
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_serverKilledMidCallThenRestarted(twistd: Callable[..., Twistd]) -> None:
    import signal

    reactor = _reactor()
    server = twistd("thrift", "--handler", f"{HANDLERS}.Hardened", "--port", LOCAL)
    portNumber = server.tcpPort()
    endpoint = f"tcp:host=127.0.0.1:port={portNumber}"
    clients: list[Any] = [
        await bounded(txthrift.connect(reactor, endpoint, Echo, transport=t, protocol=p,
                                       timeout=WAIT), WAIT) for t, p in COMBOS]
    calls = [c.slow(30.0, f"k{i}-{j}") for i, c in enumerate(clients) for j in range(3)]
    await until(lambda: server.output.count("slow call k") == len(calls), WAIT,
                "every call to start")
    server.process.send_signal(signal.SIGKILL)
    started = time.monotonic()
    outcomes = await bounded(DeferredList(calls, consumeErrors=True), WAIT)
    failedAfter = time.monotonic() - started
    print(f"\nSIGKILL: {len(calls)} calls failed {failedAfter:.3f} s after the kill")
    assert failedAfter < 5.0
    assert all(not ok and isinstance(f.value, TTransportException) for ok, f in outcomes)
    with pytest.raises(TTransportException):
        await clients[0].ping(1)

    again = twistd("thrift", "--handler", f"{HANDLERS}.Hardened",
                   "--port", f"tcp:{portNumber}:interface=127.0.0.1")
    assert tcpPortOf(again.serving()) == portNumber
    fresh: Any = await bounded(txthrift.connect(reactor, endpoint, Echo, timeout=WAIT), WAIT)
    try:
        assert await bounded(fresh.ping(41), WAIT) == 42
    finally:
        await fresh.close()


# ---------------------------------------------------------------------------
# Client side: a server that misbehaves on purpose.
# ---------------------------------------------------------------------------


class Misbehaving(Protocol):
    """
    Reads framed binary calls and answers them as C{mode} says.
    """

    transport: ITransport

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.buffer = b""
        self.codec = Codec("binary")

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 4:
            (length,) = _I32.unpack_from(self.buffer)
            if len(self.buffer) < 4 + length:
                return
            message, self.buffer = self.buffer[4:4 + length], self.buffer[4 + length:]
            _, name, _, seqid = self.codec.readHeader(message)
            self.answer(name, seqid)

    def answer(self, name: str, seqid: int) -> None:
        good = framed(reply("binary", "getData", seqid, f"r{seqid}"))
        if self.mode == "garbage":
            self.transport.write(b"\x00\x00\x00\x08garbage!" if seqid == 3 else good)
        elif self.mode == "unknown seqid":
            self.transport.write(good if seqid != 4 else framed(
                reply("binary", "getData", seqid + 1000, "stray")))
        elif self.mode == "close mid-reply":
            if seqid == 3:
                self.transport.write(good[:len(good) // 2])
                self.transport.loseConnection()
            else:
                self.transport.write(good)


@pytest.mark.parametrize("mode", ["garbage", "unknown seqid", "close mid-reply"])
@pytest_twisted.ensureDeferred
async def test_misbehavingServerFailsOnlyAffectedCalls(mode: str) -> None:
    reactor = _reactor()
    factory = Factory.forProtocol(lambda: Misbehaving(mode))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client: Any = await bounded(txthrift.connect(
        reactor, f"tcp:host=127.0.0.1:port={port.getHost().port}", Echo, timeout=1.0), WAIT)
    try:
        outcomes: dict[int, Any] = {}
        for seqid in (1, 2):
            outcomes[seqid] = await bounded(client.getData("x"), WAIT)
        calls = {seqid: client.getData("x") for seqid in (3, 4, 5)}
        results = await bounded(DeferredList(list(calls.values()), consumeErrors=True), WAIT)
        for seqid, (ok, value) in zip(calls, results, strict=True):
            outcomes[seqid] = value if ok else value.value
    finally:
        await client.close()
        await port.stopListening()
    assert client.protocol.pending == 0
    print(f"\n{mode}: {outcomes!r}")
    if mode == "unknown seqid":
        assert [outcomes[s] for s in (1, 2, 3, 5)] == ["r1", "r2", "r3", "r5"]
        assert isinstance(outcomes[4], txthrift.CallTimeout)
    else:
        # Garbage where a reply's header should be, or a close: the
        # connection is gone, and with it every call still in flight.
        assert outcomes[1] == "r1" and outcomes[2] == "r2"
        assert all(isinstance(outcomes[s], TTransportException) for s in (3, 4, 5)), outcomes
        if mode == "garbage":
            assert all("unreadable reply header" in str(outcomes[s]) for s in (3, 4, 5))


# ---------------------------------------------------------------------------
# Load: thousands of connections, 100,000 calls, one twistd process.
# ---------------------------------------------------------------------------

CONNECTIONS = 2000
CALLS_PER_CONNECTION = 17
ROUNDS = 3


class Loader(Protocol):
    """
    Sends its pipelined pings at once; checks every reply byte for byte.
    """

    transport: ITransport

    def __init__(self, requests: bytes, expected: dict[int, bytes]) -> None:
        self.requests = requests
        self.expected = dict(expected)
        self.buffer = b""
        self.wrong = 0
        self.made: Deferred[None] = Deferred()
        self.done: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.made.callback(None)

    def go(self) -> None:
        self.transport.write(self.requests)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 4:
            (length,) = _I32.unpack_from(self.buffer)
            if len(self.buffer) < 4 + length:
                break
            message = self.buffer[:4 + length]
            self.buffer = self.buffer[4 + length:]
            (seqid,) = _I32.unpack_from(message, 4 + 8 + 4)
            if self.expected.pop(seqid, None) != message:
                self.wrong += 1
        if not self.expected and not self.done.called:
            self.done.callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(None)


def _raiseFileLimit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@pytest_twisted.ensureDeferred
async def test_loadThousandsOfConnectionsNothingLost(twistd: Callable[..., Twistd]) -> None:
    reactor = _reactor()
    limit = _raiseFileLimit(2 * CONNECTIONS + 1000)  # twistd inherits it
    connections = min(CONNECTIONS, (limit - 200) // 2)
    assert connections == CONNECTIONS, f"RLIMIT_NOFILE {limit} allows {connections} only"
    server = twistd("thrift", "--handler", f"{HANDLERS}.Hardened", "--port", LOCAL,
                    "--transport", "framed", "--protocol", "binary")
    portNumber = server.tcpPort()
    pid = server.process.pid
    codec = Codec("binary")
    result = resultStruct("ping")
    batches = []
    for c in range(connections):
        requests, expected = [], {}
        for k in range(1, CALLS_PER_CONNECTION + 1):
            x = c * 100 + k
            requests.append(framed(codec.encode("ping", TMessageType.CALL, k,
                                                METHODS["ping"].args(x))))
            expected[k] = framed(codec.encode("ping", TMessageType.REPLY, k, result(x + 1)))
        batches.append((b"".join(requests), expected))
    await deferLater(reactor, 0.3, lambda: None)
    baseline = (fdCount(pid), rssKiB(pid))
    figures = []
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", portNumber, timeout=WAIT)
    for _ in range(ROUNDS):
        started = time.monotonic()
        loaders = [Loader(*batch) for batch in batches]
        for start in range(0, connections, 50):  # within twistd's listen backlog
            await bounded(DeferredList([connectProtocol(endpoint, loader)
                                        for loader in loaders[start:start + 50]],
                                       fireOnOneErrback=True), WAIT)
        # Every connection accepted by the server, all open at once.
        await until(lambda: fdCount(pid) >= baseline[0] + connections, WAIT, "accepts")
        connectedAt = time.monotonic()
        peakFds = fdCount(pid)
        for loader in loaders:
            loader.go()
        await bounded(DeferredList([loader.done for loader in loaders]), 30.0)
        answeredAt = time.monotonic()
        wrong = sum(loader.wrong for loader in loaders)
        lost = sum(len(loader.expected) for loader in loaders)
        for loader in loaders:
            loader.transport.loseConnection()
        await until(lambda: fdCount(pid) <= baseline[0] + 5, WAIT, "server fds to close")
        await deferLater(reactor, 0.2, lambda: None)
        figures.append({"connect": connectedAt - started, "calls": answeredAt - connectedAt,
                        "peakFds": peakFds, "fds": fdCount(pid), "rss": rssKiB(pid),
                        "wrong": wrong, "lost": lost})
    print(f"\nload: {connections} connections x {CALLS_PER_CONNECTION} calls x {ROUNDS} rounds;"
          f" baseline fds={baseline[0]} rss={baseline[1]} KiB")
    for figure in figures:
        print("load round:", figure)
    assert all(f["wrong"] == 0 and f["lost"] == 0 for f in figures), figures
    assert all(f["peakFds"] >= baseline[0] + connections for f in figures), figures
    assert figures[-1]["fds"] <= baseline[0] + 5
    assert figures[2]["rss"] - figures[1]["rss"] < 8 * 1024, figures
    assert figures[-1]["rss"] - baseline[1] < 64 * 1024, figures
    assert connections * CALLS_PER_CONNECTION * ROUNDS >= 100_000
    assert server.process.poll() is None
    assert "Traceback" not in server.output
