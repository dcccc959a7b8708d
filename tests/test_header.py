"""
Tests for THeader (L{txthrift._header}): Apache's Python C{THeaderProtocol}
client (binary and compact inside, with and without the zlib transform,
with info headers) calling a txthrift server, in-process and under
C{twistd thrift}; txthrift's C{transport="header"} client calling Apache's
server built on C{THeaderProtocolFactory}; headers both ways; and what is
refused: unknown transforms, bombs, broken headers, headers over the limits.
"""

from __future__ import annotations

import json
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_twisted
from thrift.protocol.THeaderProtocol import THeaderProtocol, THeaderProtocolFactory
from thrift.Thrift import TApplicationException
from thrift.transport.THeaderTransport import (
    THeaderClientType,
    THeaderSubprotocolID,
    THeaderTransformID,
)
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import (
    TFramedTransport,
    TTransportException,
    TTransportFactoryBase,
)
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater

import txthrift
from tests._apache import ApacheServer, SyncHandler
from tests._handlers import HANDLERS, EchoBasics, WhoIsCalling
from tests._processes import Twistd
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Oops
from tests.test_interop import inThread, within
from txthrift._codec import Codec
from txthrift._header import ZLIB, openFrame, sealFrame

#: Seconds any one wait may take.
WAIT = 10.0
SUBPROTOCOLS = {"binary": THeaderSubprotocolID.BINARY, "compact": THeaderSubprotocolID.COMPACT}


class Replying(WhoIsCalling):
    """
    A L{WhoIsCalling} that sends back, as a reply header, the request's
    C{x-trace} header with C{"-back"} added.
    """

    def getData(self, input: str) -> str:
        call = txthrift.currentCall()
        if "x-trace" in call.headers:
            call.replyHeaders["x-trace"] = call.headers["x-trace"] + "-back"
        return super().getData(input)


def apacheHeaderCalls(port: int, protocol: str, transform: bool, headers: dict[bytes, bytes],
                      inFrames: bool = False) -> tuple[list[Any], dict[bytes, bytes]]:
    """
    Calls by Apache's blocking THeader client (over C{TFramedTransport}
    with C{inFrames}, as Apache's cross-language tests run it): what they
    returned, and the headers of the last reply.
    """
    sock = TSocket("127.0.0.1", port)
    sock.setTimeout(WAIT * 1000)
    proto = THeaderProtocol(TFramedTransport(sock) if inFrames else sock,
                            [THeaderClientType.HEADERS], default_protocol=SUBPROTOCOLS[protocol])
    sock.open()
    try:
        if transform:
            proto.add_transform(THeaderTransformID.ZLIB)
        client = Echo.Client(proto)
        got: list[Any] = [client.add(2, 3), json.loads(client.echo("ab", 1000))]
        for key, value in headers.items():
            proto.set_header(key, value)
        got.append(json.loads(client.getData("x")))
        return got, dict(proto.get_headers())
    finally:
        sock.close()


@asynccontextmanager
async def serving(handler: object, **options: Any) -> AsyncIterator[int]:
    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", handler, **options)
    try:
        yield port.getHost().port
    finally:
        await port.stopListening()


@pytest.mark.parametrize("transform", [False, True], ids=["plain", "zlib"])
@pytest.mark.parametrize("protocol", ["binary", "compact"])
@pytest_twisted.ensureDeferred
async def test_apachesHeaderClientOnTheAutoPort(protocol: str, transform: bool) -> None:
    async with serving(Replying()) as port:
        got, replyHeaders = await inThread(apacheHeaderCalls, port, protocol, transform,
                                           {b"x-trace": b"t1", b"caf\xc3\xa9": b"\xe2\x82\xac"})
    assert got[0] == 5 and got[1]["method"] == "echo" and got[1]["headers"] == {}
    assert got[2]["headers"] == {"x-trace": "t1", "café": "€"}
    assert got[2]["method"] == "getData"
    assert replyHeaders == {b"x-trace": b"t1-back"}


@pytest.mark.parametrize("protocol", ["binary", "compact"])
@pytest_twisted.ensureDeferred
async def test_apachesHeaderClientOverAFramedTransport(protocol: str) -> None:
    """
    C{THeaderProtocol} over C{TFramedTransport}: each THeader frame inside
    a frame of its own, and each reply so too.
    """
    async with serving(Replying()) as port:
        got, replyHeaders = await inThread(apacheHeaderCalls, port, protocol, True,
                                           {b"x-trace": b"t2"}, True)
    assert got[0] == 5 and got[2]["headers"] == {"x-trace": "t2"}
    assert replyHeaders == {b"x-trace": b"t2-back"}


@pytest_twisted.ensureDeferred
async def test_headerIsSelectableAndRefusesOtherFraming() -> None:
    async with serving(Replying(), transport="header") as port:
        got, _ = await inThread(apacheHeaderCalls, port, "compact", False, {})
        assert got[0] == 5
        def framed() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as peer:
                message = _call("add", 1, Echo.add_args(a=1, b=2))
                peer.sendall(struct.pack(">i", len(message)) + message)
                return peer.recv(100)

        assert await inThread(framed) == b""  # closed: a framed message is no THeader frame


def test_twistdServesApachesHeaderClients(twistd: Callable[..., Twistd]) -> None:
    server = twistd("thrift", "--handler", f"{HANDLERS}.WhoIsCalling", "--port",
                    "tcp:0:interface=127.0.0.1")
    port = server.tcpPort()
    for protocol in ("binary", "compact"):
        got, _ = apacheHeaderCalls(port, protocol, True, {b"x-trace": b"abc"})
        assert got[0] == 5 and got[2]["headers"] == {"x-trace": "abc"}
    assert "Traceback" not in server.output


@pytest.mark.parametrize("protocol", ["binary", "compact"])
@pytest_twisted.ensureDeferred
async def test_txthriftHeaderClientAgainstApachesHeaderServer(protocol: str) -> None:
    class Echoing(SyncHandler):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[dict[bytes, bytes]] = []

    class Answering(THeaderProtocol):
        """
        Apache's server protocol, answering each request's headers with
        the same, C{"-back"} added (a handler has no access to them).
        """

        def readMessageBegin(self) -> Any:
            begun = super().readMessageBegin()
            for key, value in self.get_headers().items():
                self.set_header(key, value + b"-back")
            return begun

    class AnsweringFactory(THeaderProtocolFactory):
        def getProtocol(self, trans: Any) -> THeaderProtocol:
            return Answering(trans, self.allowed_client_types, self.default_protocol)

    handler = Echoing()
    factory = AnsweringFactory(allowed_client_types=[THeaderClientType.HEADERS])
    server = ApacheServer("threaded", Echo.Processor(handler), TTransportFactoryBase(),
                          factory)
    try:
        client: Any = await within(txthrift.connect(
            reactor, f"tcp:host=127.0.0.1:port={server.port}", Echo, transport="header",
            protocol=protocol, timeout=WAIT, headers={"client": "txthrift"}))
        try:
            results = await within(gatherResults([client.add(i, 1) for i in range(20)]))
            assert results == [i + 1 for i in range(20)]
            result, headers = await client.withReplyHeaders.echo("ab", 3, headers={"k": "v"})
            assert result == "ababab"
            assert headers == {"client": "txthrift-back", "k": "v-back"}
            with pytest.raises(Oops) as failed:
                await client.withReplyHeaders.fail("oops")
            assert failed.value.replyHeaders == {"client": "txthrift-back"}
        finally:
            await client.close()
    finally:
        server.stop()


@pytest_twisted.ensureDeferred
async def test_headersMakeTheRoundTripBetweenTxthriftEnds() -> None:
    async with serving(Replying()) as port:
        client: Any = await within(txthrift.connect(
            reactor, f"tcp:host=127.0.0.1:port={port}", Echo, transport="header",
            protocol="compact", timeout=WAIT, headers={"who": "default"}))
        try:
            raw, headers = await client.withReplyHeaders.getData("x", headers={"x-trace": "q"})
            got = json.loads(raw)
            assert got["headers"] == {"who": "default", "x-trace": "q"}
            assert headers == {"x-trace": "q-back"}
            # The plain call form is unchanged; later calls send the defaults only.
            assert json.loads(await client.getData("x"))["headers"] == {"who": "default"}
        finally:
            await client.close()


def test_headersNeedTheHeaderTransport() -> None:
    with pytest.raises(ValueError, match="headers= needs transport='header'"):
        txthrift.ClientFactory(Echo, headers={"a": "b"})
    with pytest.raises(ValueError, match="transforms= needs transport='header'"):
        txthrift.ClientFactory(Echo, transforms=("zlib",))
    with pytest.raises(ValueError, match="unknown THeader transform 'gzip'; known: zlib"):
        txthrift.ClientFactory(Echo, transport="header", transforms=("gzip",))


@pytest_twisted.ensureDeferred
async def test_aClientsZlibTransformGoesBothWays(logged: list[dict[str, Any]]) -> None:
    """
    A client sending zlib-transformed calls gets zlib-transformed replies,
    a 1 MiB string too (each inflated within max_frame_size).
    """
    from twisted.internet.protocol import Factory, Protocol

    async with serving(WhoIsCalling()) as port:
        client: Any = await within(txthrift.connect(
            reactor, f"tcp:host=127.0.0.1:port={port}", Echo, transport="header",
            transforms=("zlib",), timeout=WAIT))
        try:
            assert json.loads(await client.getData("x"))["method"] == "getData"
            big = "é" * (1 << 19)
            assert await client.echo(big, 1) != big  # WhoIsCalling describes the call
        finally:
            await client.close()
    # What the client sends, as a bare socket sees it: the zlib transform.
    received = bytearray()

    class Recording(Protocol):
        def dataReceived(self, data: bytes) -> None:
            received.extend(data)

    listening: Any = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(Recording))
    try:
        client = await within(txthrift.connect(
            reactor, f"tcp:host=127.0.0.1:port={listening.getHost().port}", Echo,
            transport="header", transforms=("zlib",), timeout=0.2))
        with pytest.raises(txthrift.CallTimeout):
            await client.getData("x")
        await client.close()
    finally:
        await listening.stopListening()
    envelope, message = openFrame(bytes(received[4:]), txthrift.Limits())
    assert envelope is not None and envelope.transforms == (ZLIB,)
    assert Codec("binary").readHeader(message)[1] == "getData"


def _frame(message: bytes, seqid: int, transforms: tuple[int, ...] = (),
           headers: dict[str, str] | None = None) -> bytes:
    return sealFrame(message, seqid, 0, 0, transforms, headers)


def _call(name: str, seqid: int, args: Any) -> bytes:
    return Codec("binary").encode(name, 1, seqid, args)


def _replies(peer: socket.socket, count: int) -> list[tuple[Any, bytes]]:
    """
    The next C{count} THeader frames from C{peer}, opened.
    """
    data = b""
    frames: list[tuple[Any, bytes]] = []
    while len(frames) < count:
        chunk = peer.recv(65536)
        assert chunk, f"closed after {len(frames)} frames"
        data += chunk
        while len(data) >= 4 and len(data) >= 4 + struct.unpack(">i", data[:4])[0]:
            size = struct.unpack(">i", data[:4])[0]
            frames.append(openFrame(data[4:4 + size], txthrift.Limits()))
            data = data[4 + size:]
    return frames


@pytest_twisted.ensureDeferred
async def test_anUnknownTransformClosesTheConnectionSayingWhy(
        logged: list[dict[str, Any]]) -> None:
    """
    A payload no transform we know can read cannot be told a oneway call
    or not: the calls before it are answered, then the connection closes
    (an answer the peer may not expect would be taken for the next one).
    """
    from twisted.logger import formatEvent

    async with serving(EchoBasics()) as port:
        def talk() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as peer:
                unknown = bytearray(_frame(_call("add", 8, Echo.add_args(a=1, b=2)), 8))
                unknown[15] = 1  # one transform...
                framed = bytes(unknown[:16]) + b"\x09" + bytes(unknown[17:])  # ...id 9
                peer.sendall(_frame(_call("add", 7, Echo.add_args(a=1, b=2)), 7) + framed)
                return b"".join(iter(lambda: peer.recv(65536), b""))

        data = await inThread(talk)
    size, = struct.unpack(">i", data[:4])
    assert len(data) == 4 + size
    _, answer = openFrame(data[4:], txthrift.Limits())
    assert Codec("binary").readHeader(answer)[1:] == ("add", 2, 7)
    said = [formatEvent(e) for e in logged if "closing Thrift connection" in formatEvent(e)]
    assert any("went through transform 9, which is not zlib (1)" in line for line in said), said


@pytest_twisted.ensureDeferred
async def test_aZlibBombIsRefusedWhileInflating(logged: list[dict[str, Any]]) -> None:
    from twisted.logger import formatEvent

    bomb = _frame(b"\x00" * (64 * 1024 * 1024), 1, (ZLIB,))
    assert len(bomb) < 128 * 1024
    async with serving(EchoBasics(), max_frame_size=1024 * 1024) as port:
        def talk() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as peer:
                peer.sendall(bomb)
                return peer.recv(100)

        assert await inThread(talk) == b""
    said = [formatEvent(e) for e in logged if "closing Thrift connection" in formatEvent(e)]
    assert any("inflates to more than max_frame_size 1048576" in line for line in said), said


@pytest.mark.parametrize("broken, why", [
    (lambda f: f[:4] + b"\x0f\xfe" + f[6:], "no THeader magic"),
    (lambda f: f[:12] + b"\x00\x40" + f[14:], "longer than its frame"),
    (lambda f: f[:14] + b"\x01" + f[15:], "in protocol 1 on a binary connection"),
], ids=["magic", "header-length", "protocol"])
@pytest_twisted.ensureDeferred
async def test_brokenHeadersCloseTheConnection(logged: list[dict[str, Any]],
                                               broken: Callable[[bytes], bytes],
                                               why: str) -> None:
    from twisted.logger import formatEvent

    good = _frame(_call("add", 1, Echo.add_args(a=1, b=2)), 1)
    async with serving(EchoBasics()) as port:
        def talk() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as peer:
                peer.sendall(good + broken(good))
                return b"".join(iter(lambda: peer.recv(65536), b""))

        data = await inThread(talk)
    assert len(data) == 4 + struct.unpack(">i", data[:4])[0]  # the good one's reply, then closed
    said = [formatEvent(e) for e in logged if "closing Thrift connection" in formatEvent(e)]
    assert any(why in line for line in said), said


@pytest_twisted.ensureDeferred
async def test_headersOverTheLimitsAreRefused(logged: list[dict[str, Any]]) -> None:
    from twisted.logger import formatEvent

    many = _frame(_call("add", 1, Echo.add_args(a=1, b=2)), 1,
                  headers={f"h{i}": "v" for i in range(20)})
    long = _frame(_call("add", 2, Echo.add_args(a=1, b=2)), 2, headers={"h": "v" * 200})
    for frame, why in ((many, "more headers than 10"), (long, "over max_string_length 100")):
        async with serving(EchoBasics(), max_container_length=10,
                           max_string_length=100) as port:
            def talk(frame: bytes = frame) -> bytes:
                with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as peer:
                    peer.sendall(frame)
                    return peer.recv(100)

            assert await inThread(talk) == b""
        said = [formatEvent(e) for e in logged if "closing Thrift connection" in formatEvent(e)]
        assert any(why in line for line in said), said


def test_sealAndOpenAreInverse() -> None:
    message = _call("echo", 5, Echo.echo_args(text="é" * 100, repeat=2))
    for transforms in ((), (ZLIB,), (ZLIB, ZLIB)):
        frame = sealFrame(message, 5, 3, 0, transforms, {"a": "b", "ü": "€"})
        size, = struct.unpack(">i", frame[:4])
        assert size == len(frame) - 4
        envelope, opened = openFrame(frame[4:], txthrift.Limits())
        assert opened == message
        assert envelope is not None
        assert (envelope.seqid, envelope.flags, envelope.transforms) == (5, 3, transforms)
        assert dict(envelope.headers) == {"a": "b", "ü": "€"}
    plain = sealFrame(message, 5, 0, 0, (), None)
    assert openFrame(plain[4:], txthrift.Limits()) == (None, message)
    assert zlib.decompress(sealFrame(message, 5, 0, 0, (ZLIB,), None)[18:]) == message


class Remembering(EchoBasics):
    """
    An C{Echo} remembering the headers each call saw (after an await, for
    C{slow}) and answering with reply headers of its own.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    def fire(self, message: str) -> None:
        call = txthrift.currentCall()
        self.seen.append((message, dict(call.headers)))
        call.replyHeaders["x-from"] = "oneway"  # no reply carries it

    async def slow(self, seconds: float, tag: str) -> str:
        try:
            await deferLater(reactor, seconds)
        except CancelledError:
            await deferLater(reactor, seconds)  # carries on, as handlers may
        call = txthrift.currentCall()
        self.seen.append((tag, dict(call.headers)))
        call.replyHeaders["x-from"] = tag
        return tag

    def getData(self, input: str) -> str:
        call = txthrift.currentCall()
        self.seen.append((input, dict(call.headers)))
        call.replyHeaders["x-from"] = input
        return input


def apacheSession(port: int, steps: Callable[[Any, Any], Any]) -> Any:
    """
    Run C{steps(protocol, client)} with Apache's blocking THeader client,
    whose every call has seqid 0.
    """
    sock = TSocket("127.0.0.1", port)
    sock.setTimeout(WAIT * 1000)
    proto = THeaderProtocol(sock, [THeaderClientType.HEADERS])
    sock.open()
    try:
        return steps(proto, Echo.Client(proto))
    finally:
        sock.close()


@pytest_twisted.ensureDeferred
async def test_eachCallKeepsItsOwnEnvelopeWhateverItsSeqid() -> None:
    """
    Apache's client sends seqid 0 every time: a oneway call's headers reach
    its handler, and its reply headers go nowhere; a call past its
    call_timeout, whose handler goes on, still sees its own headers, and
    the next call's reply keeps its transform and headers.
    """
    handler = Remembering()

    def steps(proto: Any, client: Any) -> list[Any]:
        proto.set_header(b"h", b"one")
        client.fire("oneway")
        got: list[Any] = [client.getData("plain"), dict(proto.get_headers())]
        proto.set_header(b"x-user", b"alice")
        with pytest.raises(TApplicationException):
            client.slow(0.5, "late")
        proto.set_header(b"x-user", b"bob")
        proto.add_transform(THeaderTransformID.ZLIB)
        got += [client.getData("next"), dict(proto.get_headers())]
        return got

    async with serving(handler, call_timeout=0.2) as port:
        got = await inThread(apacheSession, port, steps)
        await deferLater(reactor, 1.2)  # the late handler finishes
    assert got == ["plain", {b"x-from": b"plain"}, "next", {b"x-from": b"next"}]
    assert dict(handler.seen) == {"oneway": {"h": "one"}, "plain": {},
                                  "late": {"x-user": "alice"}, "next": {"x-user": "bob"}}


@pytest_twisted.ensureDeferred
async def test_sizeLimitsCountTheMessageNotItsCompressedFrame() -> None:
    """
    With the zlib transform a message far over max_frame_size compresses
    small: the client refuses to send such a call, the server answers such
    a reply with an exception, each failing that call alone.
    """
    class Big(EchoBasics):
        def blob(self, size: int) -> bytes:
            return b"\0" * size

    limit = 1 << 20
    async with serving(Big(), max_frame_size=limit) as port:
        client: Any = await within(txthrift.connect(
            reactor, f"tcp:host=127.0.0.1:port={port}", Echo, transport="header",
            transforms=("zlib",), timeout=WAIT, max_frame_size=limit))
        try:
            with pytest.raises(TTransportException) as refused:
                await client.echo("x" * (2 * limit), 1)
            assert refused.value.type == TTransportException.SIZE_LIMIT
            with pytest.raises(TApplicationException, match="larger than the server's"
                               " max_frame_size"):
                await client.blob(2 * limit)
            assert await client.add(1, 2) == 3  # the connection carries on
        finally:
            await client.close()


def test_theaderWithJsonIsRefusedWhereItIsChosen() -> None:
    for make in (lambda: txthrift.ServerFactory(EchoBasics(), transport="header",
                                                protocol="json"),
                 lambda: txthrift.ClientFactory(Echo, transport="header", protocol="json")):
        with pytest.raises(ValueError, match="THeader carries the binary or compact protocol"):
            make()
