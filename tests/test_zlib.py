"""
Tests for C{transport="zlib"} (L{txthrift._zlib}): Apache's
C{TZlibTransport} clients (bare, around C{TBufferedTransport} or
C{TFramedTransport}) against txthrift servers detecting it, txthrift's zlib
client against Apache's servers, over real sockets on 127.0.0.1; and
decompression bombs and broken streams, bounded by what the connection
holds.
"""

from __future__ import annotations

import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thrift.protocol.TBinaryProtocol import TBinaryProtocol, TBinaryProtocolFactory
from thrift.protocol.TCompactProtocol import TCompactProtocol, TCompactProtocolFactory
from thrift.Thrift import TMessageType
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import (
    TBufferedTransport,
    TFramedTransport,
    TMemoryBuffer,
    TTransportException,
)
from thrift.transport.TZlibTransport import TZlibTransport
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from zope.interface import alsoProvides

import txthrift
from tests._apache import ApacheServer, SyncHandler
from tests._handlers import HANDLERS, EchoBasics
from tests._hardening import COMBOS, checkServerIntake, decodeAll, mutate, request, validMessage
from tests._hardening import Served as HardenedServed
from tests._processes import Twistd
from tests.gen.py.txthrift_test import Echo
from txthrift._server import ServerProtocol
from txthrift._zlib import _STEP, ZlibStream, zlibShape

#: Seconds any one wait may take before the test fails.
WAIT = 20.0
#: A string of 1 MiB.
MIB = "z" * (1 << 20)
PROTOCOLS = {"binary": TBinaryProtocol, "compact": TCompactProtocol}


def within(d: Deferred[Any], seconds: float = WAIT) -> Deferred[Any]:
    return d.addTimeout(seconds, reactor)


def apacheTransport(port: int, shape: str) -> Any:
    """
    An Apache client transport speaking zlib to C{port}, in one of the
    shapes Apache's library composes: C{TZlibTransport} around
    C{TBufferedTransport} (a bare stream, as Apache's cross-language tests
    run it) or around C{TFramedTransport} (the stream in frames), or
    C{TFramedTransport} around C{TZlibTransport} (frames in the stream).
    """
    sock = TSocket("127.0.0.1", port)
    sock.setTimeout(5000)
    if shape == "buffered":
        return TZlibTransport(TBufferedTransport(sock))
    if shape == "framed":
        return TZlibTransport(TFramedTransport(sock))
    assert shape == "framed-inside"
    return TFramedTransport(TZlibTransport(sock))


def apacheSession(port: int, shape: str, protocol: str,
                  calls: Callable[[Echo.Client], Any]) -> Any:
    """
    Run C{calls} with a blocking Apache client; meant for a thread.
    """
    transport = apacheTransport(port, shape)
    transport.open()
    try:
        return calls(Echo.Client(PROTOCOLS[protocol](transport)))
    finally:
        transport.close()


def everyCall(client: Echo.Client) -> list[Any]:
    """
    Plain calls, a 1 MiB string both ways, and calls sent ahead of their
    replies (pipelined), each answer checked by the caller.
    """
    answers: list[Any] = [client.ping(1), client.getData("hi"), client.echo("ab", 3)]
    answers.append(len(client.echo(MIB, 1)))
    for index in range(20):
        client.send_ping(index)
    answers.append([client.recv_ping() for _ in range(20)])
    answers.append(client.add(2, 3))
    return answers


def checkEveryCall(answers: list[Any]) -> None:
    assert answers[:3] == [2, "hi" + EchoBasics().getData(""), "ababab"]
    assert answers[3] == len(MIB)
    assert answers[4] == [index + 1 for index in range(20)]
    assert answers[5] == 5


class Served:
    """
    A handler served by L{txthrift.serve} on 127.0.0.1 and a free port,
    every connection it made kept in C{built}.
    """

    port: Any
    number: int

    def __init__(self) -> None:
        self.built: list[ServerProtocol] = []

    def recording(self, build: Callable[[Any], ServerProtocol]) -> Callable[[Any], ServerProtocol]:
        def buildProtocol(addr: Any) -> ServerProtocol:
            proto = build(addr)
            self.built.append(proto)
            return proto
        return buildProtocol

    @property
    def connections(self) -> set[ServerProtocol]:
        connections: set[ServerProtocol] = self.port.factory.connections
        return connections


@asynccontextmanager
async def listen(handler: object, **options: Any) -> AsyncIterator[Served]:
    """
    Serve C{handler} (with C{options} for L{txthrift.serve}) while the
    block runs; then stop, dropping any connection left.
    """
    served = Served()
    served.port = await within(txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", handler,
                                              **options))
    served.number = served.port.getHost().port
    factory = served.port.factory
    factory.buildProtocol = served.recording(factory.buildProtocol)
    try:
        yield served
    finally:
        await within(served.port.stopListening())
        for proto in list(served.connections):
            transport: Any = proto.transport
            transport.abortConnection()


def test_zlibShape() -> None:
    """
    A bare stream starts with its header, a framed one with a frame length
    and then the header; Thrift's own first bytes are none of them.
    """
    header = zlib.compressobj().compress(b"x") + zlib.compressobj().flush()
    limit = 1 << 24
    assert zlibShape(header[:2], limit) == "stream"
    assert zlibShape(b"\x78", limit) == ""
    assert zlibShape(b"\x78\x00", limit) is None
    assert zlibShape(b"\x00\x00\x00\x10" + header[:2], limit) == "framed"
    assert zlibShape(b"\x00\x00\x00\x10\x78", limit) == ""
    assert zlibShape(b"\x00\x00\x00\x10\x80\x01", limit) is None
    assert zlibShape(b"\x00\x00\x00\x10\x0f\xff", limit) is None  # THeader
    for first in (b"\x80\x01", b"\x82\x21", b"[1", b"\x81", b"G"):
        assert zlibShape(first, limit) is None


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("shape", ["buffered", "framed", "framed-inside"])
@pytest.mark.parametrize("transport", ["auto", "zlib"])
@pytest_twisted.ensureDeferred
async def test_apacheZlibClient(transport: str, shape: str, protocol: str) -> None:
    """
    Apache's C{TZlibTransport} client, in each shape, calls a txthrift
    server detecting zlib (C{"auto"}) or requiring it: every call is
    answered, deflated, as the client reads it.
    """
    async with listen(EchoBasics(), transport=transport) as served:
        answers = await within(deferToThread(
            apacheSession, served.number, shape, protocol, everyCall))
        checkEveryCall(answers)
        (proto,) = served.built
        stream = proto._zlib
        assert isinstance(stream, ZlibStream) and stream.inflated > len(MIB)
        assert proto.protocolName == protocol
        assert proto.transportName == ("framed" if shape == "framed-inside" else "buffered")


@pytest.mark.parametrize("protocol", ["binary", "compact"])
@pytest_twisted.ensureDeferred
async def test_plainAndZlibOnOnePort(protocol: str, logged: list[dict[str, Any]]) -> None:
    """
    On C{"auto"}, plain framed and buffered clients are answered beside
    zlib ones; C{"zlib"} refuses a plain client, with the reason logged.
    """
    def plain(port: int, framed: bool) -> int:
        sock = TSocket("127.0.0.1", port)
        sock.setTimeout(5000)
        transport = TFramedTransport(sock) if framed else TBufferedTransport(sock)
        transport.open()
        try:
            result: int = Echo.Client(PROTOCOLS[protocol](transport)).ping(41)
            return result
        finally:
            transport.close()

    async with listen(EchoBasics()) as served:
        assert await within(deferToThread(plain, served.number, True)) == 42
        assert await within(deferToThread(plain, served.number, False)) == 42
        assert [proto._zlib for proto in served.built] == [None, None]
    async with listen(EchoBasics(), transport="zlib") as served:
        with pytest.raises(TTransportException):
            await within(deferToThread(plain, served.number, True))
        assert "start no zlib stream" in (served.built[0].refusal or "")
        assert any("start no zlib stream" in str(event.get("reason", "")) for event in logged)


async def connect(port: int, protocol: str, transport: str = "zlib") -> Any:
    """
    txthrift's zlib client of C{Echo} on 127.0.0.1:C{port}.
    """
    return await within(txthrift.connect(reactor, f"tcp:host=127.0.0.1:port={port}", Echo,
                                         transport=transport, protocol=protocol, timeout=WAIT))


@pytest.mark.parametrize("protocol", ["binary", "compact"])
@pytest.mark.parametrize("transport", ["zlib", "zlib-buffered"])
@pytest_twisted.ensureDeferred
async def test_txthriftZlibClientPipelines(transport: str, protocol: str) -> None:
    """
    txthrift's zlib clients against a txthrift server on C{"auto"}: many
    calls in flight at once, and 1 MiB both ways.
    """
    async with listen(EchoBasics()) as served:
        client = await connect(served.number, protocol, transport)
        try:
            answers = await within(gatherResults([client.ping(i) for i in range(500)]))
            assert answers == [i + 1 for i in range(500)]
            assert await within(client.echo(MIB, 1)) == MIB
        finally:
            await within(client.close())
        assert served.built[0].transportName == "buffered"
        assert isinstance(served.built[0]._zlib, ZlibStream)


class ZlibFramedTransportFactory:
    """
    Apache's C{TZlibTransportFactory} around C{TFramedTransportFactory}:
    each connection a C{TZlibTransport} around a C{TFramedTransport}.
    """

    def getTransport(self, client: Any) -> TZlibTransport:
        return TZlibTransport(TFramedTransport(client))


class ZlibTransportFactory:
    """
    Apache's C{TZlibTransportFactory}, a new transport per connection (its
    own keeps only the last, which threads would share).
    """

    def getTransport(self, client: Any) -> TZlibTransport:
        return TZlibTransport(client)


@pytest.mark.parametrize("protocol", ["binary", "compact"])
@pytest.mark.parametrize("kind", ["simple", "threaded"])
@pytest.mark.parametrize("transport", ["zlib", "zlib-buffered"])
@pytest_twisted.ensureDeferred
async def test_txthriftZlibClientAgainstApache(transport: str, kind: str, protocol: str) -> None:
    """
    txthrift's zlib clients call Apache's servers built on
    C{TZlibTransport} around C{TFramedTransport} (C{"zlib"}) and on
    C{TZlibTransport} alone (C{"zlib-buffered"}): plain calls, calls in
    flight at once, 1 MiB both ways.
    """
    factory = {"binary": TBinaryProtocolFactory, "compact": TCompactProtocolFactory}[protocol]
    transports = ZlibFramedTransportFactory() if transport == "zlib" else ZlibTransportFactory()
    server = ApacheServer(kind, Echo.Processor(SyncHandler()), transports, factory())
    try:
        client = await connect(server.port, protocol, transport)
        try:
            assert await within(client.ping(1)) == 2
            answers = await within(gatherResults([client.echo("ab", i) for i in range(50)]))
            assert answers == ["ab" * i for i in range(50)]
            assert await within(client.echo(MIB, 1)) == MIB
        finally:
            await within(client.close())
    finally:
        await deferToThread(server.stop)


def test_twistdServesZlib(twistd: Callable[..., Twistd]) -> None:
    """
    C{twistd thrift} on its default C{"auto"} answers Apache's zlib
    clients; C{--transport zlib} is accepted, and answers them too.
    """
    servers = [twistd("thrift", "--handler", f"{HANDLERS}.EchoHandler",
                      "--port", "tcp:0:interface=127.0.0.1", *extra)
               for extra in ((), ("--transport", "zlib"))]
    for server in servers:
        port = server.tcpPort()
        for shape in ("buffered", "framed"):
            for protocol in PROTOCOLS:
                checkEveryCall(apacheSession(port, shape, protocol, everyCall))


def callBytes(protocol: str, name: str, write: Callable[[Any], None], seqid: int = 1) -> bytes:
    """
    One encoded call of C{Echo.name}, its arguments written by C{write}.
    """
    buffer = TMemoryBuffer()
    oprot = PROTOCOLS[protocol](buffer)
    oprot.writeMessageBegin(name, TMessageType.CALL, seqid)
    write(oprot)
    oprot.writeMessageEnd()
    return buffer.getvalue()


def slowCall(protocol: str = "binary", seqid: int = 1) -> bytes:
    def write(oprot: Any) -> None:
        Echo.slow_args(seconds=0.0, tag="t").write(oprot)
    return callBytes(protocol, "slow", write, seqid)


class Holding(EchoBasics):
    """
    An C{Echo} whose C{slow} calls wait until the test releases them.
    """

    def __init__(self) -> None:
        self.held: list[Deferred[str]] = []
        #: Whether calls are answered at once, not held.
        self.answering = False

    def slow(self, seconds: float, tag: str) -> Deferred[str]:
        waiting: Deferred[str] = Deferred()
        if self.answering:
            waiting.callback("done")
        else:
            self.held.append(waiting)
        return waiting

    def release(self) -> int:
        held, self.held = self.held, []
        for waiting in held:
            waiting.callback("done")
        return len(held)


def rawConnection(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def readToEnd(sock: socket.socket) -> bytes:
    """
    What the server sends until it closes the connection (a reset counts
    as closing); fails if it does not within the socket's timeout.
    """
    got: list[bytes] = []
    for _ in range(10000):
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            piece = b""
        if not piece:
            return b"".join(got)
        got.append(piece)
    raise AssertionError("the server did not close the connection")


async def settle(check: Callable[[], bool], seconds: float = WAIT) -> None:
    """
    Wait (on the reactor) until C{check()} holds.
    """
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await deferLater(reactor, 0.02, lambda: None)


#: What each bomb's refusal says.
BOMBS = {"frame": "max_frame_size", "fields": "max_frame_size", "string": "max_string_length"}


@pytest.mark.parametrize("kind", list(BOMBS))
@pytest_twisted.ensureDeferred
async def test_bombOfOneMessage(kind: str, logged: list[dict[str, Any]]) -> None:
    """
    100 MiB inflated from a few KiB: one frame that long (after a first
    small one), an unframed call whose arguments go on for that long, or a
    string that long: refused once the limit is passed, having inflated no
    more than C{max_frame_size} and a step.
    """
    maxFrame = 1 << 20
    deflater = zlib.compressobj()
    big = 100 << 20
    call = slowCall()
    if kind == "frame":
        start = struct.pack(">i", len(call)) + call + struct.pack(">i", big)
        filler = bytes(1 << 20)
    elif kind == "fields":
        # An i32 field 99 (unknown to slow_args), over and over.
        start, filler = call[:-1], b"\x08\x00\x63\x00\x00\x00\x00" * (1 << 17)
    else:
        # slow(seconds, tag) with a tag 100 MiB long.
        start = call[: call.rindex(b"\x0b\x00\x02")] + b"\x0b\x00\x02" + struct.pack(">i", big)
        filler = bytes(1 << 20)
    compressed = [deflater.compress(start)]
    for _ in range(big // len(filler)):
        compressed.append(deflater.compress(filler))
    compressed.append(deflater.flush(zlib.Z_SYNC_FLUSH))
    bomb = b"".join(compressed)
    assert len(bomb) < 200_000
    async with listen(EchoBasics(), max_frame_size=maxFrame) as served:
        def send() -> None:
            with rawConnection(served.number) as sock:
                try:
                    sock.sendall(bomb)
                except OSError:
                    pass  # Closed on us already.
                readToEnd(sock)
        await within(deferToThread(send))
        (proto,) = served.built
        stream = proto._zlib
        assert isinstance(stream, ZlibStream)
        assert stream.inflated <= maxFrame + 2 * _STEP
        assert BOMBS[kind] in (proto.refusal or "")
        assert any(BOMBS[kind] in str(event.get("reason", "")) for event in logged)


@pytest_twisted.ensureDeferred
async def test_bombOfManyMessagesStopsWhilePaused() -> None:
    """
    A few KiB inflating to 100 MiB of small calls: while the calls in
    flight are at C{max_pending}, nothing more is inflated or read (what
    the connection holds stays near one step); once they are answered, the
    rest is inflated with nothing more sent by the peer.
    """
    handler = Holding()
    message = slowCall()
    deflater = zlib.compressobj()
    batch = message * 10000
    compressed = [deflater.compress(batch) for _ in range((100 << 20) // len(batch))]
    compressed.append(deflater.flush(zlib.Z_SYNC_FLUSH))
    bomb = b"".join(compressed)
    async with listen(handler, max_pending=4) as served:
        sock = await deferToThread(rawConnection, served.number)
        try:
            await within(deferToThread(sock.sendall, bomb))
            await settle(lambda: len(served.built) == 1 and len(handler.held) == 4)
            (proto,) = served.built
            stream = proto._zlib
            assert isinstance(stream, ZlibStream)
            # Turns in which it could go on, were it going to.
            await deferLater(reactor, 0.3, lambda: None)
            assert len(handler.held) == 4
            assert stream.inflated <= 2 * _STEP
            assert proto.queued * len(message) <= 2 * _STEP
            # Answered from now on, its calls let it go on inflating what
            # came, the peer sending nothing more.
            before = stream.inflated
            handler.answering = True
            handler.release()
            await settle(lambda: stream.inflated > before + 4 * _STEP)
            assert proto.connected
        finally:
            sock.close()


@pytest_twisted.ensureDeferred
async def test_invalidZlibClosesThatConnectionOnly(logged: list[dict[str, Any]]) -> None:
    """
    Bytes that are not a zlib stream after its header close that
    connection, saying why; a zlib client beside it carries on.
    """
    async with listen(EchoBasics()) as served:
        client = await connect(served.number, "binary")
        try:
            assert await within(client.ping(1)) == 2

            def broken() -> bytes:
                with rawConnection(served.number) as sock:
                    sock.sendall(b"\x78\x9c" + b"\xff" * 64)
                    return readToEnd(sock)
            assert await within(deferToThread(broken)) == b""
            assert "invalid zlib stream" in (served.built[1].refusal or "")
            assert any("invalid zlib stream" in str(event.get("reason", ""))
                       for event in logged)
            assert await within(client.ping(2)) == 3
        finally:
            await within(client.close())


@pytest_twisted.ensureDeferred
async def test_partialTimeoutOnZlib() -> None:
    """
    A message begun inside the stream and not finished is timed as on a
    plain connection (what counts is the inflated bytes held).
    """
    async with listen(EchoBasics(), partial_timeout=0.3) as served:
        def stall() -> bytes:
            with rawConnection(served.number) as sock:
                deflater = zlib.compressobj()
                sock.sendall(deflater.compress(slowCall()[:10])
                             + deflater.flush(zlib.Z_SYNC_FLUSH))
                return readToEnd(sock)
        assert await within(deferToThread(stall)) == b""
        (proto,) = served.built
        assert "partial_timeout" in (proto.refusal or "")
        assert proto.transportName == "buffered"


class Deflating:
    """
    One zlib stream as Apache's C{TZlibTransport} writes it, bare or in
    frames: C{chunk} deflates and flushes what one flush sends.
    """

    def __init__(self, framed: bool) -> None:
        self._deflater = zlib.compressobj()
        self._framed = framed

    def chunk(self, data: bytes) -> bytes:
        out = self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        return struct.pack(">I", len(out)) + out if self._framed else out


def checkZlibIntake(data: bytes, transport: str, protocol: str, framed: bool) -> str:
    """
    L{tests._hardening.checkServerIntake} inside a zlib stream: C{data},
    then a valid C{ping}, each deflated as one flush; whatever the bytes,
    every whole call is answered (deflated), or the connection closes, or
    its idle timeout closes it, and nothing escapes.
    """
    deflating = Deflating(framed)

    def inflated(out: bytes) -> bytes:
        return zlib.decompressobj().decompress(b"".join(deflatedFrames(out)) if framed else out)

    return checkServerIntake(data, transport, protocol, wrap=deflating.chunk, unwrap=inflated)


def deflatedFrames(data: bytes) -> list[bytes]:
    """
    The payloads of the frames in C{data}.
    """
    payloads = []
    while data:
        (length,) = struct.unpack_from(">I", data)
        payloads.append(data[4:4 + length])
        data = data[4 + length:]
    return payloads


FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(combo=st.sampled_from(COMBOS), framed=st.booleans(), which=st.integers(0, 20),
       seqid=st.integers(1, 1000),
       edits=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 16),
                                st.binary(min_size=1, max_size=8)), min_size=0, max_size=4))
def test_fuzzInsideZlib(combo: tuple[str, str], framed: bool, which: int, seqid: int,
                        edits: list[tuple[int, int, bytes]]) -> None:
    transport, protocol = combo
    data = mutate(validMessage(transport, protocol, which, seqid), edits) if edits else (
        validMessage(transport, protocol, which, seqid))
    assert checkZlibIntake(data, transport, protocol, framed) in ("closed", "answered", "idle")


@FUZZ
@given(data=st.binary(max_size=200), framed=st.booleans())
def test_fuzzRandomCompressedBytes(data: bytes, framed: bool) -> None:
    """
    Random bytes after a zlib header (or in a frame after one): closed with
    a reason, or waited on until the idle timeout, never an exception.
    """
    served = HardenedServed(idle_timeout=5.0)
    header = b"\x78\x9c"
    served.send(struct.pack(">I", len(header) + len(data)) + header + data if framed
                else header + data)
    served.clock.advance(1.0)
    if not served.transport.disconnecting:
        served.clock.advance(6.0)
    assert served.transport.disconnecting


@pytest_twisted.ensureDeferred
async def test_partialBudgetCountsInflatedBytes() -> None:
    """
    The bytes a zlib connection holds of a message begun are its inflated
    ones, counted against C{partial_budget} as a plain connection's are:
    past it, the second connection stops inflating (and reading) until the
    first has finished its message; then both are answered.
    """
    def echoCall() -> bytes:
        def write(oprot: Any) -> None:
            Echo.echo_args(text=MIB, repeat=1).write(oprot)
        call = callBytes("binary", "echo", write)
        return struct.pack(">i", len(call)) + call

    message = echoCall()
    cut = 300 * 1024
    async with listen(EchoBasics(), partial_budget=65536) as served:
        socks = [await deferToThread(rawConnection, served.number) for _ in range(2)]
        deflating = [Deflating(framed=False) for _ in socks]
        try:
            for sock, deflater in zip(socks, deflating):
                await deferToThread(sock.sendall, deflater.chunk(message[:cut]))
            await settle(lambda: len(served.built) == 2 and all(
                isinstance(proto._zlib, ZlibStream) for proto in served.built))
            streams = [proto._zlib for proto in served.built]
            await settle(lambda: max(s.inflated for s in streams  # type: ignore[union-attr]
                                     ) == cut)
            await deferLater(reactor, 0.3, lambda: None)
            inflated = sorted(s.inflated for s in streams)  # type: ignore[union-attr]
            assert inflated[0] <= 2 * _STEP and inflated[1] == cut
            for sock, deflater in zip(socks, deflating):
                await deferToThread(sock.sendall, deflater.chunk(message[cut:]))
            for sock in socks:
                reply = await within(deferToThread(inflatedReply, sock, len(MIB)))
                assert MIB.encode() in reply
        finally:
            for sock in socks:
                sock.close()


def inflatedReply(sock: socket.socket, atLeast: int) -> bytes:
    """
    The inflated bytes of a bare zlib stream read from C{sock}, once there
    are more than C{atLeast}.
    """
    inflater = zlib.decompressobj()
    got = b""
    for _ in range(10000):
        piece = sock.recv(65536)
        assert piece, "closed before the reply came"
        got += inflater.decompress(piece)
        if len(got) > atLeast:
            return got
    raise AssertionError("no whole reply")


def test_emptyAndOversizedFramesOfAFramedStream(logged: list[dict[str, Any]]) -> None:
    """
    In a stream in frames, an empty frame (Apache's C{TFramedTransport}
    sends one for a flush with nothing to send) holds nothing; a frame
    over C{max_frame_size} closes the connection before it is read.
    """
    served = HardenedServed(max_frame_size=1 << 16)
    deflating = Deflating(framed=True)
    ping = request("binary", "ping", 7, 41)
    served.send(deflating.chunk(ping[:5]) + struct.pack(">I", 0) + deflating.chunk(ping[5:]))
    served.clock.advance(0)
    assert not served.transport.disconnecting
    replies = decodeAll(zlib.decompressobj().decompress(
        b"".join(deflatedFrames(served.transport.value()))), "buffered", "binary")
    assert [(name, seqid, body.success) for name, _, seqid, body in replies] == [("ping", 7, 42)]
    served.send(struct.pack(">I", (1 << 16) + 1))
    assert served.transport.disconnecting
    assert "max_frame_size" in (served.proto.refusal or "")


def test_zlibOverTLSTellsTheCertificate() -> None:
    """
    A zlib stream over TLS still says it is TLS, and gives the peer's
    certificate, for C{currentCall()}.
    """
    secure: Any = StringTransport()
    alsoProvides(secure, ISSLTransport)
    secure.getPeerCertificate = lambda: "certificate"
    stream = ZlibStream(HardenedServed().proto, framed=False)
    assert stream.wrap(secure) is stream
    assert ISSLTransport.providedBy(stream)
    assert stream.getPeerCertificate() == "certificate"
    plain = ZlibStream(HardenedServed().proto, framed=False)
    plain.wrap(StringTransport())
    assert not ISSLTransport.providedBy(plain)


@pytest_twisted.ensureDeferred
async def test_aStreamThatEndsHasItsLastCallsAnswered() -> None:
    """
    A peer that finishes its zlib stream (Z_FINISH, as C{zlib.compress}
    does) has the calls in its last block answered; bytes after the end of
    the stream close the connection, saying so.
    """
    call = callBytes("binary", "add", Echo.add_args(a=2, b=3).write)
    async with listen(EchoBasics()) as served:
        def finished() -> tuple[bytes, bytes]:
            with rawConnection(served.number) as sock:
                sock.sendall(zlib.compress(call))
                reply = inflatedReply(sock, 10)
                sock.sendall(b"more")
                return reply, readToEnd(sock)

        reply, rest = await within(deferToThread(finished))
        assert TBinaryProtocol(TMemoryBuffer(reply)).readMessageBegin() == ("add", 2, 1)
        assert rest == b""
        assert served.built[0].refusal == "bytes follow the end of the zlib stream"
