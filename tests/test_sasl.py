"""
Tests for SASL (L{txthrift._sasl}): servers that require SASL PLAIN, from
C{serve(sasl=...)} and C{twistd thrift --sasl PLAIN --auth ...}, called by
the clients Hive and Impala users have -- C{thrift_sasl} with C{pure-sasl}
(what impyla and PyHive use) and Apache's C{TSaslClientTransport}, each in a
thread, over a real socket on 127.0.0.1 -- and by txthrift's own SASL
client and its C{TTwisted.ThriftSASLClientProtocol}; and every way a
handshake can fail, each with its one outcome and a log line that never
holds the password.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import thrift_sasl  # type: ignore[import-untyped,unused-ignore]
from puresasl.client import SASLClient  # type: ignore[import-untyped,unused-ignore]
from thrift.protocol.TBinaryProtocol import TBinaryProtocol, TBinaryProtocolFactory
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.Thrift import TMessageType
from thrift.transport import TTwisted as apacheTTwisted
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import (
    TBufferedTransport,
    TFramedTransport,
    TMemoryBuffer,
    TSaslClientTransport,
    TTransportException,
)
from twisted.cred.checkers import (
    FilePasswordDB,
    ICredentialsChecker,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import Portal
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientCreator
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.internet.threads import deferToThread
from twisted.python import usage
from zope.interface import implementer

import txthrift
from tests._identity import IdentityHandler
from tests._processes import WAIT, Twistd, run
from tests.gen.py.txthrift_test import Echo
from tests.gen.pytwisted.txthrift_test import Echo as TwistedEcho
from txthrift import TTwisted, _sasl
from txthrift._sasl import (
    BAD,
    COMPLETE,
    ERROR,
    OK,
    START,
    SaslFrames,
    SASLServerFactory,
    checkersOf,
    handshakeFrame,
)
from txthrift._tap import Options

USER, PASSWORD = "alice", "s3cret-Pa55"
WRONG = "not-the-Pa55word"


def checker() -> InMemoryUsernamePasswordDatabaseDontUse:
    db = InMemoryUsernamePasswordDatabaseDontUse()
    db.addUser(USER.encode(), PASSWORD.encode())
    return db


class PureSASL:
    """
    The C{sasl}-module interface C{thrift_sasl} drives, on C{pure-sasl}: the
    adapter impyla and PyHive make (their C{sasl_compat.PureSASLClient}).
    """

    def __init__(self, host: str, service: str = "thrift", **props: Any) -> None:
        self._host, self._service, self._props = host, service, props
        self._client: Any = None
        self._error = ""

    def start(self, mechanism: str) -> tuple[bool, str, bytes]:
        self._client = SASLClient(self._host, self._service, mechanism, **self._props)
        return True, mechanism, self._client.process()

    def step(self, challenge: bytes) -> tuple[bool, bytes]:
        return True, self._client.process(challenge)

    def encode(self, data: bytes) -> tuple[bool, bytes]:
        return True, self._client.wrap(data)

    def decode(self, data: bytes) -> tuple[bool, bytes]:
        return True, self._client.unwrap(data)

    def getError(self) -> str:
        return self._error


def _socket(port: int) -> TSocket:
    sock = TSocket("127.0.0.1", port)
    sock.setTimeout(WAIT * 1000)  # Every blocking read bounded.
    return sock


def thriftSaslCall(port: int, password: str = PASSWORD, compact: bool = False,
                   mechanism: str = "PLAIN") -> str:
    """
    What impyla and PyHive do: C{thrift_sasl} over a C{TSocket}, PLAIN on
    C{pure-sasl}; one call.
    """
    transport = thrift_sasl.TSaslClientTransport(
        lambda: PureSASL("127.0.0.1", username=USER, password=password), mechanism,
        _socket(port))
    protocol = TCompactProtocol(transport) if compact else TBinaryProtocol(transport)
    transport.open()
    try:
        result: str = Echo.Client(protocol).getData("impyla")
        return result
    finally:
        transport.close()


def apacheSaslCall(port: int, password: str = PASSWORD, framed: bool = False) -> str:
    """
    Apache's own C{TSaslClientTransport} (PLAIN), unframed inside SASL as
    Hive expects, or framed inside as a Java C{TFramedTransport} over SASL.
    """
    sasl = TSaslClientTransport(_socket(port), "127.0.0.1", "thrift", mechanism="PLAIN",
                                username=USER, password=password)
    transport = TFramedTransport(sasl) if framed else sasl
    transport.open()
    try:
        result: str = Echo.Client(TBinaryProtocol(transport)).getData("apache")
        return result
    finally:
        transport.close()


def plainCall(port: int) -> str:
    """
    A client that speaks no SASL at all.
    """
    transport = TBufferedTransport(_socket(port))
    transport.open()
    try:
        result: str = Echo.Client(TBinaryProtocol(transport)).getData("plain")
        return result
    finally:
        transport.close()


async def serving(**keywords: Any) -> tuple[Any, int]:
    keywords.setdefault("sasl", checker())
    port = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", IdentityHandler(),
                                **keywords)
    return port, port.getHost().port  # type: ignore[attr-defined]


@pytest.fixture
def sasl() -> Iterator[Callable[..., Deferred[tuple[Any, int]]]]:
    """
    Serve L{IdentityHandler} with SASL on 127.0.0.1; stopped at the end.
    """
    ports: list[Any] = []

    async def serve(**keywords: Any) -> tuple[Any, int]:
        port, number = await serving(**keywords)
        ports.append(port)
        return port, number

    yield lambda **keywords: Deferred.fromCoroutine(serve(**keywords))
    for port in ports:
        pytest_twisted.blockon(port.stopListening())


def loggedText(events: list[dict[str, Any]]) -> str:
    from twisted.logger import formatEvent

    return "\n".join(formatEvent(event) for event in events)


def refusals(events: list[dict[str, Any]]) -> list[str]:
    return [line for line in loggedText(events).splitlines() if "SASL" in line]


# Real peers, through serve().


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("compact", [False, True])
async def test_thriftSaslClientSeesItsIdentity(sasl: Any, compact: bool) -> None:
    """
    C{thrift_sasl} with C{pure-sasl} PLAIN, as impyla and PyHive call Hive,
    gets its call answered, and the handler sees the user it authenticated
    as; binary and compact alike.
    """
    _, port = await sasl()
    assert await deferToThread(thriftSaslCall, port, compact=compact) == "impyla as alice"


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("framed", [False, True])
async def test_apacheSaslClientTransport(sasl: Any, framed: bool) -> None:
    """
    Apache's C{TSaslClientTransport}, with Thrift unframed inside its SASL
    frames or framed there, is answered in kind, its identity seen.
    """
    _, port = await sasl()
    assert await deferToThread(apacheSaslCall, port, framed=framed) == "apache as alice"


@pytest_twisted.ensureDeferred
async def test_txthriftClient(sasl: Any) -> None:
    """
    C{connect(..., sasl=...)} authenticates, then calls as usual, many in
    flight.
    """
    _, port = await sasl()
    client: Any = await txthrift.connect(reactor, f"tcp:127.0.0.1:{port}", Echo, timeout=WAIT,
                                    sasl={"mechanism": "PLAIN", "username": USER,
                                          "password": PASSWORD})
    try:
        results = [client.getData(str(n)) for n in range(20)]
        assert [await result for result in results] == [f"{n} as alice" for n in range(20)]
        assert await client.add(2, 3) == 5
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_ttwistedDropIn(sasl: Any) -> None:
    """
    C{TTwisted.ThriftSASLClientProtocol}, made as Apache's is, authenticates
    on Python 3 and its C{py:twisted} client calls.
    """
    _, port = await sasl()
    proto = await ClientCreator(
        reactor, TTwisted.ThriftSASLClientProtocol, TwistedEcho.Client,
        TBinaryProtocolFactory(), host="127.0.0.1", service="thrift", mechanism="PLAIN",
        username=USER, password=PASSWORD).connectTCP("127.0.0.1", port)
    try:
        client = await proto.started
        assert await client.getData("twisted") == "twisted as alice"
        assert await client.add(40, 2) == 42
    finally:
        proto.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_ttwistedDropInRefused(sasl: Any) -> None:
    """
    A refused drop-in's C{started} fails with the server's reason.
    """
    _, port = await sasl()
    proto = await ClientCreator(
        reactor, TTwisted.ThriftSASLClientProtocol, TwistedEcho.Client,
        TBinaryProtocolFactory(), host="127.0.0.1", service="thrift", mechanism="PLAIN",
        username=USER, password=WRONG).connectTCP("127.0.0.1", port)
    with pytest.raises(txthrift.SASLError, match=r"refused SASL PLAIN \(BAD\): authentication"):
        await proto.started


@pytest_twisted.ensureDeferred
async def test_checkersOfAPortalAndAFile(sasl: Any, tmp_path: Path) -> None:
    """
    A C{Portal}'s checkers are used; of several checkers, any that accepts
    (here Twisted's C{FilePasswordDB}, the C{file:} of C{--auth}) lets in.
    """
    users = tmp_path / "users"
    users.write_text("bob:hunter2\n")
    _, port = await sasl(sasl=Portal(None, [FilePasswordDB(str(users))]))  # type: ignore[arg-type]
    client: Any = await txthrift.connect(reactor, f"tcp:127.0.0.1:{port}", Echo, timeout=WAIT,
                                    sasl={"mechanism": "PLAIN", "username": "bob",
                                          "password": "hunter2"})
    assert await client.getData("file") == "file as bob"
    await client.close()
    _, port = await sasl(sasl=[checker(), FilePasswordDB(str(users))])
    for user, password in (("bob", "hunter2"), (USER, PASSWORD)):
        client = await txthrift.connect(reactor, f"tcp:127.0.0.1:{port}", Echo, timeout=WAIT,
                                        sasl={"mechanism": "PLAIN", "username": user,
                                              "password": password})
        assert await client.getData("any") == f"any as {user}"
        await client.close()


# Refusals, from real peers.


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("user, password", [(USER, WRONG), ("mallory", PASSWORD)])
async def test_wrongCredentialsRefused(sasl: Any, logged: list[dict[str, Any]], user: str,
                                       password: str) -> None:
    """
    A wrong password or an unknown user gets a BAD frame (the same reason
    for both, which tells an attacker nothing) and a closed connection; the
    server logs who tried, never the password.
    """
    _, port = await sasl()
    with pytest.raises(txthrift.SASLError, match=r"refused SASL PLAIN \(BAD\): authentication"
                                                 " failed"):
        await txthrift.connect(reactor, f"tcp:127.0.0.1:{port}", Echo, timeout=WAIT,
                               sasl={"mechanism": "PLAIN", "username": user,
                                     "password": password})
    with pytest.raises(TTransportException, match="Bad status: 3"):
        await deferToThread(thriftSaslCall, port, password=WRONG)
    lines = refusals(logged)
    assert any(f"SASL PLAIN: user {user!r}: unknown user or wrong password" in line
               for line in lines), lines
    assert password not in loggedText(logged) and WRONG not in loggedText(logged)


@pytest_twisted.ensureDeferred
async def test_unknownMechanismRefused(sasl: Any, logged: list[dict[str, Any]]) -> None:
    """
    A mechanism the server does not offer gets BAD naming those it does.
    """
    _, port = await sasl()
    with pytest.raises(txthrift.SASLError, match="unsupported SASL mechanism 'CRAM-MD5'; this"
                                                 " server offers PLAIN"):
        await txthrift.connect(reactor, f"tcp:127.0.0.1:{port}", Echo, timeout=WAIT,
                               sasl={"mechanism": "CRAM-MD5", "username": USER,
                                     "password": PASSWORD})
    assert any("unsupported SASL mechanism" in line for line in refusals(logged))
    assert PASSWORD not in loggedText(logged)


@pytest_twisted.ensureDeferred
async def test_plainClientRefused(sasl: Any, logged: list[dict[str, Any]]) -> None:
    """
    A client that does not speak SASL gets its connection closed, unanswered.
    """
    _, port = await sasl()
    with pytest.raises(TTransportException):
        await deferToThread(plainCall, port)
    assert any("did not begin with a SASL handshake (first byte 0x80): this server requires"
               " SASL PLAIN" in line for line in refusals(logged)), refusals(logged)


@pytest_twisted.ensureDeferred
async def test_stalledHandshakeDropped(sasl: Any, logged: list[dict[str, Any]]) -> None:
    """
    A client that begins a handshake and never finishes it is dropped after
    idle_timeout, over a real socket.
    """
    _, port = await sasl(idle_timeout=0.3)

    def stall() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.sendall(handshakeFrame(START, b"PLAIN"))
            return sock.recv(100)

    assert await deferToThread(stall) == b""
    assert any("SASL handshake did not finish within 0.3s" in line
               for line in refusals(logged)), refusals(logged)


# Refusals, in memory, time on a Clock.


class Connection:
    """
    A L{SASLServerFactory} connection over a string transport, time from a
    L{Clock}.
    """

    def __init__(self, checkers: Any = None, **limits: Any) -> None:
        self.clock = Clock()
        factory = SASLServerFactory(IdentityHandler(), checkers or checker(), clock=self.clock,
                                    limits=txthrift.Limits(**limits))
        self.proto = factory.buildProtocol(None)
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.proto
        self.proto.makeConnection(self.transport)

    def frames(self) -> list[tuple[int, bytes]]:
        data, found = self.transport.value(), []
        while data:
            status, length = struct.unpack(">BI", data[:5])
            found.append((status, data[5:5 + length]))
            data = data[5 + length:]
        self.transport.clear()
        return found

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or not self.transport.connected


def test_stallAfterStartClosesAfterPartialTimeout(logged: list[dict[str, Any]]) -> None:
    """
    Without idle_timeout, partial_timeout bounds the handshake; with it,
    the smaller of the two.
    """
    for limits, after in (({}, 60.0), ({"idle_timeout": 5.0}, 5.0),
                          ({"partial_timeout": None}, 60.0)):
        connection = Connection(**limits)
        connection.proto.dataReceived(handshakeFrame(START, b"PLAIN"))
        connection.clock.advance(after - 0.1)
        assert not connection.closed
        connection.clock.advance(0.1)
        assert connection.closed, limits
    assert any(f"did not finish within {60:g}s" in line for line in refusals(logged))


def test_nothingAtAllClosesToo() -> None:
    """
    A client that connects and sends nothing is dropped as well.
    """
    connection = Connection()
    connection.clock.advance(60)
    assert connection.closed


def test_otherAuthorizationIdRefused(logged: list[dict[str, Any]]) -> None:
    """
    An authorization id other than the user's own is refused: this server
    lets nobody act for another.
    """
    connection = Connection()
    connection.proto.dataReceived(handshakeFrame(START, b"PLAIN") + handshakeFrame(
        OK, f"root\0{USER}\0{PASSWORD}".encode()))
    [(status, reason)] = connection.frames()
    assert status == BAD and b"may not act as 'root'" in reason
    assert connection.closed
    assert PASSWORD not in loggedText(logged)


def test_ownAuthorizationIdAndJavaCompleteAccepted() -> None:
    """
    An authorization id equal to the user's is fine, and so is the response
    sent as COMPLETE, as Java's client sends PLAIN's; then framed messages.
    """
    connection = Connection()
    connection.proto.dataReceived(handshakeFrame(START, b"PLAIN") + handshakeFrame(
        COMPLETE, f"{USER}\0{USER}\0{PASSWORD}".encode()))
    assert connection.frames() == [(COMPLETE, b"")]
    assert connection.proto.identity == USER and not connection.closed


def test_idleAfterTheHandshake(logged: list[dict[str, Any]]) -> None:
    """
    Once authenticated, a connection is idle for idle_timeout from then.
    """
    connection = Connection(idle_timeout=5.0)
    connection.clock.advance(4)
    connection.proto.dataReceived(handshakeFrame(START, b"PLAIN") + handshakeFrame(
        OK, f"\0{USER}\0{PASSWORD}".encode()))
    connection.clock.advance(4.9)
    assert not connection.closed
    connection.clock.advance(0.1)
    assert connection.closed
    assert "closing idle Thrift connection" in loggedText(logged)


@pytest.mark.parametrize("data, reason", [
    (handshakeFrame(OK, b"x"), b"expected a SASL START frame, got OK"),
    (handshakeFrame(START, b"PLAIN") + handshakeFrame(OK, b"no-nul-here"),
     b"a malformed PLAIN response"),
    (struct.pack(">BI", START, 4097), b"over the 4096-byte limit on handshake frames"),
])
def test_brokenHandshakesAnswered(data: bytes, reason: bytes) -> None:
    """
    A handshake broken by the client is answered with why, then closed;
    a frame over the limit before it is read.
    """
    connection = Connection()
    connection.proto.dataReceived(data)
    [(status, said)] = connection.frames()
    assert status in (BAD, ERROR) and reason in said, said
    assert connection.closed


def test_emptySaslFramesSkipped() -> None:
    """
    An empty SASL frame (a flush with nothing written) is skipped; a frame
    over max_frame_size (and 4) is refused.
    """
    frames = SaslFrames("auto", "auto", txthrift.Limits(max_frame_size=100))
    message = b"\x80\x01\x00\x01\x00\x00\x00\x04ping\x00\x00\x00\x01\x00"
    assert frames.feed(b"\0\0\0\0" + struct.pack(">I", len(message)) + message) == [message]
    with pytest.raises(txthrift.FrameError, match="SASL frame length 105 is outside 0..104"):
        frames.feed(struct.pack(">I", 105))


# Configuration.


def test_badConfigurations() -> None:
    """
    What cannot work says so when it is configured.
    """
    with pytest.raises(ValueError, match="sasl= is for Thrift on a byte stream"):
        txthrift.serve(reactor, "tcp:0", IdentityHandler(), transport="http", sasl=checker())
    with pytest.raises(ValueError, match="transport='zlib' inside SASL is not supported"):
        txthrift.serve(reactor, "tcp:0", IdentityHandler(), transport="zlib", sasl=checker())
    with pytest.raises(TypeError, match="sasl= takes a twisted.cred checker"):
        checkersOf("memory:alice:secret")
    with pytest.raises(ValueError, match="not for sasl="):
        txthrift.connect(reactor, "tcp:127.0.0.1:1", Echo, transport="buffered",
                         sasl={"mechanism": "PLAIN"})
    with pytest.raises(ValueError, match="sasl= needs a 'mechanism'"):
        txthrift.connect(reactor, "tcp:127.0.0.1:1", Echo, sasl={"username": USER})
    with pytest.raises(ValueError, match="sasl=: Unknown mechanism NOPE"):
        txthrift.connect(reactor, "tcp:127.0.0.1:1", Echo, sasl={"mechanism": "NOPE"})


def test_missingExtraNamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without C{pure-sasl}, the error names the extra that brings it.
    """
    monkeypatch.setitem(sys.modules, "puresasl.client", None)
    with pytest.raises(ImportError, match=r"pip install 'txthrift\[sasl\]'"):
        txthrift.connect(reactor, "tcp:127.0.0.1:1", Echo,
                         sasl={"mechanism": "PLAIN", "username": USER, "password": PASSWORD})
    with pytest.raises(ImportError, match=r"txthrift\[sasl\]"):
        TTwisted.ThriftSASLClientProtocol(TwistedEcho.Client, TBinaryProtocolFactory())


@pytest.mark.parametrize("argv, message", [
    (["--sasl", "PLAIN"], "--sasl: needs --auth"),
    (["--auth", "memory:alice:secret"], "--auth: needs --sasl PLAIN"),
    (["--sasl", "GSSAPI", "--auth", "memory:a:b"], "server-side GSSAPI is not supported"),
    (["--sasl", "NOPE", "--auth", "memory:a:b"], "unknown SASL mechanism 'NOPE'"),
    (["--sasl", "PLAIN", "--auth", "memory:a:b", "--http-port", "tcp:0"],
     "--sasl: applies to --port ports only"),
])
def test_twistdOptionMistakes(argv: list[str], message: str) -> None:
    """
    Each mistake is one line naming the option.
    """
    with pytest.raises(usage.UsageError, match=message):
        Options().parseOptions(["--handler", "tests._identity.IdentityHandler", *argv])


# twistd thrift --sasl PLAIN --auth ...


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("workers", [1, 2])
async def test_twistdSasl(twistd: Callable[..., Twistd], workers: int) -> None:
    """
    C{twistd thrift --sasl PLAIN --auth memory:...} (with workers too)
    answers C{thrift_sasl}, Apache's C{TSaslClientTransport} and txthrift's
    client as the users they are, and refuses a wrong password, logging it
    without the password.
    """
    process = twistd("thrift", "--handler", "tests._identity.IdentityHandler", "--port",
                     "tcp:0:interface=127.0.0.1", "--sasl", "PLAIN", "--auth",
                     f"memory:{USER}:{PASSWORD}", "--workers", str(workers))
    port = process.tcpPort()
    if workers > 1:
        for _ in range(workers):
            process.waitFor(r"Worker \d \(pid \d+\) serving")
    assert await deferToThread(thriftSaslCall, port) == "impyla as alice"
    assert await deferToThread(apacheSaslCall, port) == "apache as alice"
    client: Any = await txthrift.connect(reactor, f"tcp:127.0.0.1:{port}", Echo, timeout=WAIT,
                                    sasl={"mechanism": "PLAIN", "username": USER,
                                          "password": PASSWORD})
    assert await client.getData("txthrift") == "txthrift as alice"
    await client.close()
    with pytest.raises(TTransportException, match="Bad status: 3"):
        await deferToThread(thriftSaslCall, port, password=WRONG)
    process.waitFor(r"SASL PLAIN: user 'alice': unknown user or wrong password")
    process.stop()
    assert WRONG not in process.output and "SASL PLAIN is required" in process.output


# In memory: messages after the handshake, a client's own timeout, its
# security layer, and Apache's names.


def callBytes(text: str) -> bytes:
    buffer = TMemoryBuffer()
    Echo.Client(TBinaryProtocol(buffer)).send_getData(text)
    return buffer.getvalue()


def test_callInTheSameReadAsTheHandshake() -> None:
    """
    A call sent right behind the handshake, in the same read, is answered
    once the credentials are accepted, in a SASL frame of its own.
    """
    connection = Connection()
    call = callBytes("eager")
    connection.proto.dataReceived(
        handshakeFrame(START, b"PLAIN") + handshakeFrame(OK, f"\0{USER}\0{PASSWORD}".encode())
        + struct.pack(">I", len(call)) + call)
    data = connection.transport.value()
    assert data[:5] == handshakeFrame(COMPLETE, b"")
    (length,) = struct.unpack(">I", data[5:9])
    reply = TMemoryBuffer(data[9:])
    assert length == len(data) - 9
    assert Echo.Client(TBinaryProtocol(reply)).recv_getData() == "eager as alice"


def test_checkerOutcomeAfterTheConnectionWentIsDropped(logged: list[dict[str, Any]]) -> None:
    """
    A checker still checking when its connection goes is cancelled; one that
    fails unexpectedly refuses the client with BAD, the failure logged.
    """
    waiting: list[Deferred[bytes | tuple[()]]] = []

    @implementer(ICredentialsChecker)
    class Slow:
        credentialInterfaces = (IUsernamePassword,)

        def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
            waiting.append(Deferred())
            return waiting[-1]

    @implementer(ICredentialsChecker)
    class Broken:
        credentialInterfaces = (IUsernamePassword,)

        def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
            raise OSError("the user database is unreachable")

    hello = handshakeFrame(START, b"PLAIN") + handshakeFrame(
        OK, f"\0{USER}\0{PASSWORD}".encode())
    connection = Connection(Slow())
    connection.proto.dataReceived(hello)
    assert connection.transport.producerState == "paused"
    connection.transport.loseConnection()
    assert waiting and waiting[0].called  # Cancelled.
    connection = Connection(Broken())
    connection.proto.dataReceived(hello)
    assert connection.frames() == [(BAD, b"authentication failed")] and connection.closed
    assert any(event.get("log_failure") is not None and event["log_failure"].check(OSError)
               for event in logged)
    assert PASSWORD not in loggedText(logged)


class FakeSASL:
    """
    A C{pure-sasl} client that negotiated a security layer: it wraps by
    reversing the bytes.
    """

    mechanism, qop, complete = "FAKE", b"auth-int", False

    def process(self, challenge: bytes | None = None) -> bytes:
        self.complete = challenge == b"go"
        return b"hello" if challenge is None else b"ready"

    def wrap(self, outgoing: bytes) -> bytes:
        return outgoing[::-1]

    def unwrap(self, incoming: bytes) -> bytes:
        return incoming[::-1]


def memoryClient(monkeypatch: pytest.MonkeyPatch, **limits: Any) -> tuple[Any, Any, Clock]:
    monkeypatch.setattr(_sasl, "saslClient", lambda options, host=None: FakeSASL())
    clock = Clock()
    factory = _sasl.SASLClientFactory(Echo, {"mechanism": "PLAIN"}, clock=clock,
                                      limits=txthrift.Limits(**limits))
    proto = factory.buildProtocol(None)
    transport = StringTransportWithDisconnection()
    transport.protocol = proto
    proto.makeConnection(transport)
    return proto, transport, clock


def test_clientSecurityLayerWrapsEachFrame(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Under a security layer the client answers challenges, then wraps each
    call's SASL frame and unwraps each reply's.
    """
    proto, transport, _ = memoryClient(monkeypatch)
    assert transport.value() == handshakeFrame(START, b"FAKE") + handshakeFrame(OK, b"hello")
    transport.clear()
    proto.dataReceived(handshakeFrame(OK, b"go"))
    assert transport.value() == handshakeFrame(OK, b"ready")
    transport.clear()
    proto.dataReceived(handshakeFrame(COMPLETE, b""))
    assert proto.authenticated.called
    result = proto.client.getData("x")
    sent = transport.value()
    (length,) = struct.unpack(">I", sent[:4])
    unwrapped = sent[4:][::-1]
    assert length == len(unwrapped) and unwrapped.startswith(b"\x80\x01\x00\x01")
    assert unwrapped[4:19] == b"\x00\x00\x00\x07getData\x00\x00\x00\x01"
    reply = TMemoryBuffer()
    protocol = TBinaryProtocol(reply)
    protocol.writeMessageBegin("getData", TMessageType.REPLY, 1)
    Echo.getData_result(success="y").write(protocol)
    protocol.writeMessageEnd()
    proto.dataReceived(struct.pack(">I", len(reply.getvalue())) + reply.getvalue()[::-1])
    assert result.result == "y"


async def until(predicate: Callable[[], object]) -> None:
    for _ in range(int(WAIT * 100)):
        if predicate():
            return
        await deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("not within WAIT")


@pytest_twisted.ensureDeferred
async def test_gssapiStepsRunInThreads(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    GSSAPI's steps (which may wait on the KDC) run in the reactor's thread
    pool, not in the reactor's thread, as Apache's TTwisted ran them.
    """
    threads: list[threading.Thread] = []

    class Kerberos(FakeSASL):
        mechanism = "GSSAPI"

        def process(self, challenge: bytes | None = None) -> bytes:
            threads.append(threading.current_thread())
            return super().process(challenge)

    monkeypatch.setattr(_sasl, "saslClient", lambda options, host=None: Kerberos())
    factory = _sasl.SASLClientFactory(Echo, {"mechanism": "PLAIN"}, clock=reactor)
    proto = factory.buildProtocol(None)
    transport = StringTransportWithDisconnection()
    transport.protocol = proto
    transport.reactor = reactor  # type: ignore[attr-defined]
    proto.makeConnection(transport)
    await until(transport.value)
    assert transport.value() == handshakeFrame(START, b"GSSAPI") + handshakeFrame(OK, b"hello")
    transport.clear()
    proto.dataReceived(handshakeFrame(OK, b"go"))
    await until(transport.value)
    assert transport.value() == handshakeFrame(OK, b"ready")
    proto.dataReceived(handshakeFrame(COMPLETE, b""))
    await proto.authenticated
    assert len(threads) == 2 and threading.main_thread() not in threads
    transport.loseConnection()


def test_clientHandshakeBounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A server that never finishes the handshake fails the connection after
    partial_timeout; one that says COMPLETE too soon, at once.
    """
    proto, transport, clock = memoryClient(monkeypatch, partial_timeout=5)
    failures: list[Any] = []
    proto.authenticated.addErrback(failures.append)
    clock.advance(5)
    assert "did not finish within 5s" in str(failures[0].value)
    assert not transport.connected
    proto, transport, clock = memoryClient(monkeypatch)
    proto.authenticated.addErrback(failures.append)
    proto.dataReceived(handshakeFrame(COMPLETE, b""))
    assert "complete before this client was" in str(failures[1].value)


def test_gssapiWithoutKerberosSaysSo(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    GSSAPI on the client needs the C{kerberos} module pure-sasl drives; the
    error says so at once.  (The handshake itself needs a KDC: not run
    here.)  On a server, GSSAPI is refused when configured.
    """
    import puresasl.mechanisms  # type: ignore[import-untyped,unused-ignore]

    monkeypatch.setattr(puresasl.mechanisms, "have_kerberos", False)
    monkeypatch.delitem(puresasl.mechanisms.mechanisms, "GSSAPI", raising=False)
    with pytest.raises(ValueError, match="kerberos module not installed"):
        txthrift.connect(reactor, "tcp:127.0.0.1:1", Echo,
                         sasl={"mechanism": "GSSAPI", "host": "thrift.example.com"})
    with pytest.raises(ValueError, match="server-side GSSAPI is not supported"):
        _sasl.checkServerMechanism("GSSAPI")


def test_ttwistedDropInHandshakeBounded() -> None:
    """
    Unlike Apache's, the drop-in gives up on a server that never finishes
    the handshake, after partial_timeout: C{started} fails saying so.
    """
    clock = Clock()
    proto = TTwisted.ThriftSASLClientProtocol(
        TwistedEcho.Client, TBinaryProtocolFactory(), host="127.0.0.1", service="thrift",
        mechanism="PLAIN", username=USER, password=PASSWORD)
    transport = StringTransportWithDisconnection()
    transport.protocol = proto
    transport.reactor = clock  # type: ignore[attr-defined]
    proto.makeConnection(transport)
    assert transport.value() == handshakeFrame(START, b"PLAIN") + handshakeFrame(
        OK, f"\0{USER}\0{PASSWORD}".encode())
    failures: list[Any] = []
    proto.started.addErrback(failures.append)
    clock.advance(59)
    assert not failures
    clock.advance(1)
    assert "did not finish within 60s" in str(failures[0].value)
    assert not transport.connected


def test_apacheNames() -> None:
    """
    Every public name of Apache's C{ThriftSASLClientProtocol}, on the class
    and on an instance, is on ours.
    """
    theirs = apacheTTwisted.ThriftSASLClientProtocol(TwistedEcho.Client,
                                                     TBinaryProtocolFactory())
    mine = TTwisted.ThriftSASLClientProtocol(TwistedEcho.Client, TBinaryProtocolFactory())
    names = {name for name in dir(theirs) if not name.startswith("_")}
    assert sorted(names - set(dir(mine))) == []
    for status in ("START", "OK", "BAD", "ERROR", "COMPLETE", "MAX_LENGTH"):
        assert getattr(mine, status) == getattr(theirs, status)


def test_helpAuthListsTheCheckers(capsys: pytest.CaptureFixture[str]) -> None:
    """
    C{--help-auth} lists the checkers C{--auth} takes, and exits.
    """
    options = Options()
    options.authOutput = sys.stdout
    with pytest.raises(SystemExit) as exited:
        options.parseOptions(["--help-auth"])
    assert exited.value.code == 0
    listed = capsys.readouterr().out
    assert "memory" in listed and "file" in listed


def test_twistdOptionMistakeExits() -> None:
    """
    A real C{twistd thrift --sasl PLAIN} without C{--auth} ends with the one
    line saying so, and status 1, no traceback.
    """
    done = run("thrift", "--handler", "tests._identity.IdentityHandler", "--sasl", "PLAIN")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "--sasl: needs --auth" in done.stdout + done.stderr
