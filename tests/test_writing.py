"""
Tests for L{txthrift._writing}, and for how a L{ThriftMessageProtocol} given
a clock sends: at the reactor's next turn, straight onto the socket.
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

import pytest
import pytest_twisted
from thrift.Thrift import TMessageType
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogPublisher

import txthrift
from tests._handlers import EchoBasics
from tests._hardening import bounded, frameFor, until
from tests.gen.py.txthrift_test import Echo
from txthrift import Codec, Limits, ServerFactory, _framing
from txthrift._framing import makeFramer
from txthrift._writing import atNextTurn, canSendDirectly, send, sendParts

WAIT = 20.0


def test_sendWritesOnTransportsItCannotSendOnItself() -> None:
    transport = StringTransport()
    assert not canSendDirectly(transport)
    send(transport, b"abc")
    assert transport.value() == b"abc"


def test_sendersAskedForDuringATurnRunTogetherAtTheNext() -> None:
    clock = Clock()
    calls: list[str] = []
    atNextTurn(clock, lambda: calls.append("a"))
    atNextTurn(clock, lambda: calls.append("b"))
    assert calls == [] and len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert calls == ["a", "b"] and clock.getDelayedCalls() == []
    atNextTurn(clock, lambda: calls.append("c"))
    clock.advance(0)
    assert calls == ["a", "b", "c"]


def test_aFailingSenderDoesNotStopTheOthers() -> None:
    clock = Clock()
    calls: list[str] = []
    events: list[dict[str, Any]] = []

    def failing() -> None:
        raise RuntimeError("broken sender")

    atNextTurn(clock, failing)
    atNextTurn(clock, lambda: calls.append("after"))
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        clock.advance(0)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert calls == ["after"]
    assert any(e.get("log_format") == "sending failed" for e in events)


class Collect(Protocol):
    def __init__(self) -> None:
        self.data = bytearray()

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class Accepted(Protocol):
    accepted: Deferred[Any]

    def connectionMade(self) -> None:
        self.accepted.callback(self)


async def connectedPair() -> tuple[Any, Collect, Any]:
    """
    A server-side TCP transport on 127.0.0.1, the client protocol at the
    other end, and the listening port.
    """
    from twisted.internet import reactor

    accepted: Deferred[Any] = Deferred()
    factory = Factory.forProtocol(Accepted)
    factory.buildProtocol = lambda addr: _accepting(accepted)  # type: ignore[method-assign]
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
    client = Collect()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
    server = await bounded(accepted, WAIT)
    return server.transport, client, port


def _accepting(accepted: Deferred[Any]) -> Accepted:
    protocol = Accepted()
    protocol.accepted = accepted
    return protocol


@pytest_twisted.ensureDeferred
async def test_sendGoesStraightOntoTheSocket() -> None:
    from twisted.internet import reactor

    transport, client, port = await connectedPair()
    try:
        assert canSendDirectly(transport)
        send(transport, b"x" * 1000)
        # Nothing was buffered, and the reactor was not asked to write.
        assert transport.dataBuffer == b"" and transport._tempDataLen == 0
        assert transport not in reactor.getWriters()
        await until(lambda: len(client.data) == 1000, WAIT)
    finally:
        transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_whatTheSocketDoesNotTakeWaitsInTheTransport() -> None:
    transport, client, port = await connectedPair()
    peer: Any = client.transport
    try:
        peer.pauseProducing()  # the peer does not read for now
        data = bytes(range(256)) * (64 * 1024)  # 16 MiB: more than the socket buffers take
        send(transport, data)
        assert transport._tempDataLen > 0
        send(transport, b"and then this")  # behind what waits, not before it
        peer.resumeProducing()
        await until(lambda: len(client.data) == len(data) + 13, WAIT)
        assert hashlib.sha256(client.data).digest() == hashlib.sha256(
            data + b"and then this").digest()
    finally:
        transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_sendPartsGathersThemOntoTheSocket() -> None:
    """
    Parts go onto the socket as they are, in order, without being joined
    first, however big.
    """
    transport, client, port = await connectedPair()
    try:
        parts = [b"head", bytes(range(256)) * 1024, b"tail"]
        sendParts(transport, parts)
        # The kernel took at least some of it straight from the parts.
        assert transport._tempDataLen < sum(map(len, parts))
        await until(lambda: len(client.data) == sum(map(len, parts)), WAIT)
        assert client.data == b"".join(parts)
    finally:
        transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_whatTheSocketDoesNotTakeOfThePartsWaitsInTheTransport() -> None:
    transport, client, port = await connectedPair()
    peer: Any = client.transport
    try:
        peer.pauseProducing()  # the peer does not read for now
        parts = [b"head", bytes(range(256)) * (64 * 1024), b"tail"]  # 16 MiB
        sendParts(transport, parts)
        assert transport._tempDataLen > 0
        sendParts(transport, [b"and then ", b"this"])  # behind what waits
        peer.resumeProducing()
        data = b"".join(parts) + b"and then this"
        await until(lambda: len(client.data) == len(data), WAIT)
        assert hashlib.sha256(client.data).digest() == hashlib.sha256(data).digest()
    finally:
        transport.loseConnection()
        await port.stopListening()


def test_sendPartsWritesOnTransportsItCannotSendOnItself() -> None:
    transport = StringTransport()
    sendParts(transport, [b"a", b"bc"] * 20)
    assert transport.value() == b"abc" * 20


def test_aBigReplyGoesOutAsItsPrefixAndItself(monkeypatch: pytest.MonkeyPatch,
                                              sent: list[bytes]) -> None:
    """
    A reply past the batch size is handed over at once, as its length
    prefix and the message itself: not joined into one more copy.
    """
    gathered: list[list[bytes]] = []
    monkeypatch.setattr(_framing, "sendParts", lambda transport, parts: gathered.append(parts))
    clock = Clock()
    proto = ServerFactory(Deferring(), clock=clock).buildProtocol(None)
    proto.makeConnection(onReactor(clock))
    proto.framer = makeFramer("framed", "binary", Limits())
    message = b"\x80\x01" + bytes(1024 * 1024)
    proto.sendMessage(message)
    [[prefix, itself]] = gathered
    assert prefix == len(message).to_bytes(4, "big") and itself is message
    clock.advance(0)
    assert sent == []


class Deferring(EchoBasics):
    def __init__(self) -> None:
        self.waiting: list[Deferred[str]] = []

    def slow(self, seconds: float, tag: str) -> Deferred[str]:
        self.waiting.append(Deferred())
        return self.waiting[-1]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """
    Make every transport count as one L{send} writes on itself (its reactor
    is its C{reactor} attribute), and record what it sends.
    """
    sent: list[bytes] = []
    monkeypatch.setattr(_framing, "canSendDirectly", lambda transport: True)
    monkeypatch.setattr(_framing, "send", lambda transport, data: sent.append(data))
    return sent


def request(codec: Codec, seqid: int, name: str = "getData", *args: Any) -> bytes:
    body = getattr(Echo, f"{name}_args")(*(args or (str(seqid),)))
    return frameFor(makeFramer("framed", "binary", Limits()), 
        codec.encode(name, TMessageType.CALL, seqid, body))


def onReactor(clock: Clock) -> StringTransport:
    transport = StringTransport()
    transport.reactor = clock  # type: ignore[attr-defined]
    return transport


def test_repliesToOneReadGoOutTogetherAtTheNextTurn(sent: list[bytes]) -> None:
    clock = Clock()
    handler = Deferring()
    proto = ServerFactory(handler, clock=clock).buildProtocol(None)
    proto.makeConnection(onReactor(clock))
    codec = Codec("binary")
    proto.dataReceived(b"".join(request(codec, i) for i in range(1, 21))
                       + request(codec, 21, "slow", 1.0, "late"))
    assert sent == []
    clock.advance(0)
    [batch] = sent
    replies = makeFramer("framed", "binary", Limits()).feed(batch)
    assert [codec.readHeader(m)[3] for m in replies] == list(range(1, 21))
    # A reply answered later goes at the turn after it is ready.
    handler.waiting[0].callback("late")
    assert len(sent) == 1
    clock.advance(0)
    assert [codec.readHeader(m)[3] for m in makeFramer(
        "framed", "binary", Limits()).feed(sent[1])] == [21]
    assert clock.getDelayedCalls() == []


def test_aRefusedConnectionSendsWhatWaitedBeforeClosing(sent: list[bytes]) -> None:
    clock = Clock()
    proto = ServerFactory(Deferring(), clock=clock).buildProtocol(None)
    transport = onReactor(clock)
    proto.makeConnection(transport)
    codec = Codec("binary")
    proto.dataReceived(request(codec, 1) + b"\xff\xff\xff\xff")
    assert len(sent) == 1 and transport.disconnecting
    clock.advance(0)  # the turn finds nothing left to send
    assert len(sent) == 1


def test_aLostConnectionDropsWhatWaited(sent: list[bytes]) -> None:
    clock = Clock()
    proto = ServerFactory(Deferring(), clock=clock).buildProtocol(None)
    proto.makeConnection(onReactor(clock))
    proto.dataReceived(request(Codec("binary"), 1))
    proto.connectionLost()
    clock.advance(0)
    assert sent == []


@pytest_twisted.ensureDeferred
async def test_repliesDoNotWaitForAnInjectedClock() -> None:
    """
    The next turn is the connection's own reactor's: a factory given a
    test clock (for its timeouts) still answers over a real socket.
    """
    from twisted.internet import reactor

    factory = ServerFactory(EchoBasics(), clock=Clock())
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
    try:
        client: Any = await txthrift.connect(
            reactor, f"tcp:127.0.0.1:{port.getHost().port}", Echo)
        try:
            assert await bounded(client.getData("x"), WAIT) == "x from server 1024"
        finally:
            await client.close()
    finally:
        await port.stopListening()
