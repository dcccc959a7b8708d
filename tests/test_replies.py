"""
One reply per call, to its caller, never lost: the server's failure paths.

Each test here names the path it pins; every request must end in exactly
one of its own reply, a logged oneway failure, or a closed connection, and
release its slot in C{max_pending} whichever it is.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer
from twisted.internet import reactor
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    fail,
    inlineCallbacks,
    succeed,
)
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.python import usage
from zope.interface import implementer

import txthrift
from tests._handlers import SUFFIX, EchoBasics, Stubborn
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Oops
from tests.gen.pytwisted.txthrift_test import Echo as TwistedEcho
from tests.test_server import Handler, Wire, serving
from tests.test_tap import _selfSigned
from txthrift import Limits, ServerFactory
from txthrift._tap import Options

#: Seconds any one wait in these tests may take.
WAIT = 20.0
LOOPBACK = "tcp:0:interface=127.0.0.1"


def settle(d: Deferred[Any]) -> Deferred[Any]:
    return d.addTimeout(WAIT, reactor)


# ---------------------------------------------------------------------------
# 1, 2. Threads: processors own their input; async methods run on the reactor
# ---------------------------------------------------------------------------


class Blocking(EchoBasics):
    """
    Plain methods: under C{threads}, each runs in the pool.
    """


@implementer(TwistedEcho.Iface)
class Asynchronous:  # type: ignore[misc]  # implements only what the tests call
    """
    Every way a method can be asynchronous; under C{threads} none of them
    may run in the pool.
    """

    async def getData(self, input: str) -> str:
        await deferLater(reactor, 0)
        return input + " async"

    @inlineCallbacks
    def echo(self, text: str, repeat: int) -> Any:
        yield deferLater(reactor, 0)
        return text * repeat

    def ping(self, x: int) -> Deferred[int]:
        # Decided only when called: a plain method returning a Deferred.
        return succeed(x + 1)


@pytest_twisted.async_yield_fixture
async def hosted() -> AsyncIterator[Any]:
    """
    Start a L{txthrift.thriftService} on loopback; stopped after the test.
    """
    services: list[Any] = []

    def host(handler: object, port: str = LOOPBACK, **kwargs: Any) -> int:
        service = txthrift.thriftService(handler, port=port, shutdown_timeout=1, **kwargs)
        service.startService()
        services.append(service)
        address: Any = service.ports[0].getHost()
        return int(address.port)

    yield host
    for service in services:
        await settle(service.stopService())


async def pipelined(port: int, protocol: str, connections: int = 3, calls: int = 30,
                    **kwargs: Any) -> list[tuple[str, str]]:
    """
    Many calls in flight on each of several connections: (expected, got) pairs.
    """
    clients = [await settle(txthrift.connect(reactor, f"tcp:127.0.0.1:{port}", Echo,
                                             protocol=protocol, **kwargs))
               for _ in range(connections)]
    try:
        sent = [(c, f"c{c}-{i}-" + "x" * (i % 7)) for c in range(connections) for i in range(calls)]
        results = await settle(DeferredList(
            [clients[c].getData(text) for c, text in sent], consumeErrors=True))
        return [(text + SUFFIX, value if ok else repr(value.value))
                for (_, text), (ok, value) in zip(sent, results)]
    finally:
        for client in clients:
            await client.close()


@pytest.mark.parametrize("threads", [0, 4])
@pytest.mark.parametrize("kind", ["handler", "processor"])
@pytest.mark.parametrize("protocol", ["binary", "compact", "json"])
@pytest_twisted.ensureDeferred
async def test_everyCallGetsItsOwnReply(hosted: Any, protocol: str, kind: str,
                                        threads: int) -> None:
    handler: object = Blocking() if kind == "handler" else Echo.Processor(Blocking())
    port = hosted(handler, threads=threads)
    pairs = await pipelined(port, protocol)
    wrong = [(expected, got) for expected, got in pairs if expected != got]
    assert wrong == [], f"{len(wrong)} of {len(pairs)} calls got another reply: {wrong[:3]}"


@pytest_twisted.ensureDeferred
async def test_asyncMethodsUnderThreadsRunOnTheReactor(hosted: Any) -> None:
    port = hosted(Asynchronous(), service=TwistedEcho, threads=2)
    client = await settle(txthrift.connect(reactor, f"tcp:127.0.0.1:{port}", Echo))
    try:
        assert await settle(client.getData("a")) == "a async"
        assert await settle(client.echo("ab", 2)) == "abab"
        assert await settle(client.ping(1)) == 2
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_blockingAndAsyncHandlersSideBySideUnderThreads(hosted: Any) -> None:
    port = hosted({"Blocking": Blocking(), "Async": (Asynchronous(), TwistedEcho)}, threads=2)
    where = f"tcp:127.0.0.1:{port}"
    blocking = await settle(txthrift.connect(reactor, where, Echo, service_name="Blocking"))
    asynchronous = await settle(txthrift.connect(reactor, where, Echo, service_name="Async"))
    try:
        assert await settle(DeferredList([blocking.getData("b"), asynchronous.getData("a")],
                                         fireOnOneErrback=True, consumeErrors=True)) == [
            (True, "b" + SUFFIX), (True, "a async")]
    finally:
        await blocking.close()
        await asynchronous.close()


# ---------------------------------------------------------------------------
# 3, 4. Failures that cannot be encoded; a handler's own CancelledError
# ---------------------------------------------------------------------------


@implementer(TwistedEcho.Iface)
class Unencodable(Handler):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def fail(self, kind: str) -> Any:
        error: Exception
        if kind == "declared":
            error = Oops(why=12345, code="not an i32")
        elif kind == "application":
            error = TApplicationException(TApplicationException.UNKNOWN, 12345)
        else:
            error = CancelledError()
        if self.mode == "raise":
            raise error
        if self.mode == "deferred":
            return fail(error)
        d: Deferred[str] = Deferred()
        self.waiting[kind] = d

        async def later() -> str:
            await d
            raise error

        return Deferred.fromCoroutine(later())


@pytest.mark.parametrize("mode", ["raise", "deferred", "coroutine"])
@pytest.mark.parametrize("kind", ["declared", "application", "cancelled"])
def test_anyFailureGetsAnInternalErrorAndFreesTheSlot(mode: str, kind: str) -> None:
    handler = Unencodable(mode)
    wire, _ = serving(handler, limits=Limits(max_pending=1))
    wire.call("fail", kind)
    wire.call("getData", "next")
    if kind in handler.waiting:
        handler.waiting[kind].callback("go")
    (name, mtype, _, error), (_, _, _, ok) = wire.replies()
    assert (name, mtype, error.type) == (
        "fail", TMessageType.EXCEPTION, TApplicationException.INTERNAL_ERROR)
    assert ok.success == "next" + SUFFIX
    assert wire.proto.inFlight == 0


@pytest.mark.parametrize("kind", ["declared", "application", "cancelled"])
def test_processorFailuresAreAnswered(kind: str) -> None:
    wire, _ = serving(TwistedEcho.Processor(Unencodable("coroutine")))
    seqid = wire.call("fail", kind)
    handler = wire.proto.factory.dispatcher._processor._handler  # type: ignore[attr-defined]
    handler.waiting[kind].callback(None)
    [(_, mtype, replied, error)] = wire.replies()
    assert (mtype, replied, error.type) == (
        TMessageType.EXCEPTION, seqid, TApplicationException.INTERNAL_ERROR)
    assert wire.proto.inFlight == 0


def test_ourOwnTimeoutStillSaysTimedOut(logged: list[dict[str, Any]]) -> None:
    clock = Clock()
    wire = Wire(ServerFactory(Handler(), clock=clock, limits=Limits(call_timeout=3)))
    wire.call("slow", 1.0, "t")
    clock.advance(3)
    [(_, _, _, error)] = wire.replies()
    assert "did not finish within 3 seconds" in error.message
    # Our own cancellation is no handler failure: no traceback for it.
    assert not [e for e in logged if "log_failure" in e]


# ---------------------------------------------------------------------------
# 5. A peer that shuts down its sending side still gets its replies
# ---------------------------------------------------------------------------


def _request(name: str, seqid: int, args: Any) -> bytes:
    buffer = TMemoryBuffer()
    oprot = TBinaryProtocol(buffer)
    oprot.writeMessageBegin(name, TMessageType.CALL, seqid)
    args.write(oprot)
    oprot.writeMessageEnd()
    return buffer.getvalue()


def sendThenHalfClose(port: int, data: bytes) -> bytes:
    """
    Send C{data}, shut down the sending side, read until the server closes.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def _tlsConnect(port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=WAIT))


class Later(EchoBasics):
    def getData(self, input: str) -> Deferred[str]:  # type: ignore[override]
        return deferLater(reactor, 0.05, lambda: input + " later")


@pytest.mark.parametrize("transport", ["framed", "buffered"])
@pytest.mark.parametrize("handler", [Blocking, Later])
@pytest_twisted.ensureDeferred
async def test_halfClosedPeerGetsEveryReplyThenTheClose(hosted: Any, transport: str,
                                                       handler: type) -> None:
    port = hosted(handler())
    requests = [_request("getData", seqid, Echo.getData_args(input=str(seqid)))
                for seqid in (1, 2, 3)]
    if transport == "framed":
        requests = [struct.pack(">I", len(r)) + r for r in requests]
    received = await settle(deferToThread(sendThenHalfClose, port, b"".join(requests)))
    codec = txthrift.Codec("binary")
    framer = txthrift._framing.makeFramer(transport, "binary", Limits())
    replies = []
    for message in framer.feed(received):
        iprot, _, _, seqid = codec.readHeader(message)
        result = Echo.getData_result()
        codec.readBody(iprot, result)
        replies.append((seqid, result.success))
    suffix = SUFFIX if handler is Blocking else " later"
    assert replies == [(seqid, f"{seqid}{suffix}") for seqid in (1, 2, 3)]


class AbortingWire(Wire):
    """
    A L{Wire} whose transport notes being aborted.
    """

    transport: Aborting


def aborting(handler: object, clock: Clock, **limits: Any) -> AbortingWire:
    """
    A L{Wire} whose transport notes being aborted.
    """
    proto = ServerFactory(handler, clock=clock, limits=Limits(**limits)).buildProtocol(None)
    transport = Aborting()
    proto.makeConnection(transport)
    wire = AbortingWire.__new__(AbortingWire)
    wire.codec, wire.proto, wire.transport, wire._seqid = (
        txthrift.Codec("binary"), proto, transport, 0)
    wire.framer = txthrift._framing.makeFramer("framed", "binary", Limits())
    return wire


def test_halfClosedPeerGetsEachReplyWithinTheTimeoutOfTheLast() -> None:
    clock = Clock()
    handler = Handler()
    wire = aborting(handler, clock, half_closed_timeout=7)
    for tag in ("first", "second", "never"):
        wire.call("slow", 1.0, tag)
    wire.proto.readConnectionLost()
    clock.advance(6)
    handler.waiting["first"].callback("1")
    clock.advance(6)  # 12 s since the peer stopped, 6 since the last reply
    handler.waiting["second"].callback("2")
    assert [body.success for *_, body in wire.replies()] == ["1", "2"]
    assert not wire.transport.aborted
    clock.advance(7)
    assert wire.transport.aborted
    wire.proto.connectionLost()
    assert handler.waiting["never"].called  # cancelled


def test_halfClosedTimeoutOffWaitsForEver() -> None:
    clock = Clock()
    handler = Handler()
    wire = aborting(handler, clock, half_closed_timeout=None)
    wire.call("slow", 1.0, "late")
    wire.proto.readConnectionLost()
    clock.advance(3600)
    handler.waiting["late"].callback("at last")
    assert [body.success for *_, body in wire.replies()] == ["at last"]
    assert wire.transport.disconnecting and not wire.transport.aborted


def test_idleTimeoutIsNoHalfClosedGrace() -> None:
    clock = Clock()
    handler = Handler()
    wire = aborting(handler, clock, idle_timeout=1, half_closed_timeout=5)
    wire.call("slow", 1.0, "two seconds")
    wire.proto.readConnectionLost()
    clock.advance(2)
    handler.waiting["two seconds"].callback("done")
    assert [body.success for *_, body in wire.replies()] == ["done"]
    assert not wire.transport.aborted


# ---------------------------------------------------------------------------
# 8. A lost connection cancels its calls
# ---------------------------------------------------------------------------


def test_lostConnectionCancelsItsCallsInFlight() -> None:
    wire, handler = serving()
    for tag in "abc":
        wire.call("slow", 1.0, tag)
    wire.proto.connectionLost()
    assert [d.called for d in handler.waiting.values()] == [True, True, True]
    for d in handler.waiting.values():
        d.addErrback(lambda f: f.trap(CancelledError))
    assert wire.proto.inFlight == 0


@pytest.mark.parametrize(("how", "calls", "maxPending", "halfClosed"), [
    ("abort", 4, 128, None),   # the connection is lost at once
    ("close", 10, 128, 0.2),   # as a half-close, until half_closed_timeout
    # Reading paused for the backlog: the end of the stream is seen all the
    # same, and a reset at once.
    ("close", 10, 4, 0.2),
    ("abort", 10, 4, None),
    ("tls", 10, 4, 0.2),
])
@pytest_twisted.ensureDeferred
async def test_clientsThatGoCancelTheirServersCalls(hosted: Any, tmp_path: Path, how: str,
                                                    calls: int, maxPending: int,
                                                    halfClosed: float | None) -> None:
    cancelled: list[str] = []
    started: list[str] = []

    class Never(EchoBasics):
        def getData(self, input: str) -> Deferred[str]:  # type: ignore[override]
            started.append(input)
            return Deferred(lambda d: cancelled.append(input))

    expected = 5 * min(calls, maxPending)
    deadline = reactor.seconds() + WAIT
    if how == "tls":
        # A TLS client whose process ends: its socket closes without a
        # close_notify (which a server that reads nothing would not see).
        key, cert = _selfSigned(tmp_path)
        port = hosted(Never(), port=f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                      max_pending=maxPending, half_closed_timeout=halfClosed)
        requests = b"".join(
            struct.pack(">I", len(r)) + r for r in
            (_request("getData", i, Echo.getData_args(input=f"tls-{i}")) for i in range(calls)))
        sockets = [await settle(deferToThread(_tlsConnect, port)) for _ in range(5)]
        for sock in sockets:
            sock.sendall(requests)
        while len(started) < expected and reactor.seconds() < deadline:
            await deferLater(reactor, 0.005)
        for sock in sockets:
            sock.close()
    else:
        port = hosted(Never(), max_pending=maxPending, half_closed_timeout=halfClosed)
        clients = [await settle(txthrift.connect(reactor, f"tcp:127.0.0.1:{port}", Echo))
                   for _ in range(5)]
        pending = [client.getData(f"{n}-{i}") for n, client in enumerate(clients)
                   for i in range(calls)]
        for call in pending:
            call.addErrback(lambda f: None)
        while len(started) < expected and reactor.seconds() < deadline:
            await deferLater(reactor, 0.005)
        for client in clients:
            if how == "abort":
                client.protocol.transport.abortConnection()
            else:
                await settle(client.close())
    while len(cancelled) < expected and reactor.seconds() < deadline:
        await deferLater(reactor, 0.005)
    assert len(started) == expected
    assert sorted(cancelled) == sorted(started)


@pytest_twisted.ensureDeferred
async def test_aTimedOutHandlerThatCarriesOnStillGetsTheCallerAnswered(hosted: Any) -> None:
    finished: list[str] = []

    class Stubborn(EchoBasics):
        async def getData(self, input: str) -> str:  # type: ignore[override]
            for _ in range(10):
                try:
                    await deferLater(reactor, 0.05)
                except CancelledError:
                    continue  # ignores being cancelled
            finished.append(input)
            return "too late"

    port = hosted(Stubborn(), call_timeout=0.1, max_pending=1)
    client = await settle(txthrift.connect(reactor, f"tcp:127.0.0.1:{port}", Echo))
    try:
        with pytest.raises(TApplicationException, match="did not finish within 0.1 seconds"):
            await settle(client.getData("slow"))
        assert await settle(client.ping(1)) == 2  # the slot was freed
        # Both answered while the handler was still at it.
        assert finished == []
        deadline = reactor.seconds() + WAIT
        while not finished and reactor.seconds() < deadline:
            await deferLater(reactor, 0.01)
    finally:
        await client.close()


@pytest.mark.parametrize("handler", [Blocking, Later])
@pytest_twisted.ensureDeferred
async def test_wholeCallsBeforeBadBytesAreAnsweredThenTheClose(hosted: Any,
                                                             handler: type) -> None:
    port = hosted(handler(), transport="framed", protocol="binary")
    requests = [_request("getData", seqid, Echo.getData_args(input=str(seqid)))
                for seqid in (1, 2, 3)]
    data = b"".join(struct.pack(">I", len(r)) + r for r in requests) + b"\xff" * 8
    received = await settle(deferToThread(sendThenHalfClose, port, data))
    codec = txthrift.Codec("binary")
    framer = txthrift._framing.makeFramer("framed", "binary", Limits())
    seqids = [codec.readHeader(message)[3] for message in framer.feed(received)]
    assert seqids == [1, 2, 3]


# ---------------------------------------------------------------------------
# 9. idle_timeout drops a peer that does not read its replies
# ---------------------------------------------------------------------------


class Aborting(StringTransport):
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


def test_idlePeerNotReadingIsAbortedAfterTheGrace() -> None:
    clock = Clock()
    transport = Aborting()
    proto = ServerFactory(Handler(), clock=clock,
                          limits=Limits(idle_timeout=5)).buildProtocol(None)
    proto.makeConnection(transport)
    proto.pauseProducing()  # the peer's receive window is full
    request = _request("getData", 1, Echo.getData_args(input="held"))
    proto.dataReceived(struct.pack(">I", len(request)) + request)
    assert proto.queued == 1
    clock.advance(5)
    assert transport.disconnecting and not transport.aborted  # asked nicely first
    clock.advance(5)
    assert transport.aborted


# ---------------------------------------------------------------------------
# 12. Names the peer chose are cut short in logs and replies
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["handler", "multiplexed", "processor"])
def test_hugeUnknownNamesAreCutShort(target: str, logged: list[dict[str, Any]]) -> None:
    handler: object = {"handler": Handler(), "multiplexed": {"Echo": Handler()},
                       "processor": Echo.Processor(Handler())}[target]
    wire, _ = serving(handler)
    huge = "m" * (1024 * 1024)
    for seqid in range(3):
        wire.send(wire.codec.encode(f"{huge}:x{seqid}" if target == "multiplexed" else huge,
                                    TMessageType.CALL, seqid, Echo.sayHello_args()))
    replies = wire.transport.value()
    assert 0 < len(replies) < 3 * 2048
    assert sum(len(repr(event)) for event in logged) < 3 * 8192
    assert not wire.transport.disconnecting


# ---------------------------------------------------------------------------
# twistd: --half-closed-timeout
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("2.5", 2.5), ("off", None)])
def test_halfClosedTimeoutOption(value: str, expected: float | None) -> None:
    options = Options()
    options.parseOptions(["--handler", "tests._handlers.EchoHandler",
                          "--half-closed-timeout", value])
    assert options["limits"]["half_closed_timeout"] == expected
    assert Limits().half_closed_timeout == 10.0


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_badHalfClosedTimeout(value: str) -> None:
    with pytest.raises(usage.UsageError) as raised:
        Options().parseOptions(["--handler", "tests._handlers.EchoHandler",
                                "--half-closed-timeout", value])
    assert str(raised.value) == ("--half-closed-timeout: expected a number of seconds more"
                                 f" than 0, or off, not {value!r}")


# ---------------------------------------------------------------------------
# Review findings: work that outlives its timeout, bad bytes, partial messages
# ---------------------------------------------------------------------------


def test_handlerWorkOutlivingItsTimeoutIsBounded() -> None:
    """
    Calls whose handlers carry on past call_timeout are answered and leave
    their slot, but past max_pending of them reading pauses until some end.
    """
    clock = Clock()
    handler = Stubborn()
    gates = handler.gates
    wire = aborting(handler, clock, max_pending=1, call_timeout=1)
    for n in range(4):
        wire.call("getData", str(n))
    clock.advance(1)  # 0 times out and carries on; 1 starts
    clock.advance(1)  # 1 times out too: two carry on, past max_pending
    assert [error.type for *_, error in wire.replies()] == [
        TApplicationException.INTERNAL_ERROR] * 2
    assert len(gates) == 4 and wire.proto.queued == 2  # 2 and 3 wait
    gates[-1].callback(None)  # 1's work ends at last
    assert wire.proto.queued == 1 and wire.proto.inFlight == 1
    assert wire.replies() == []  # 1 was answered already


def test_queuedRequestsAfterAnUnreadableOneAreNotAnswered() -> None:
    wire, handler = serving(limits=Limits(max_pending=1))
    wire.call("slow", 1.0, "first")
    wire.send(b"\x80\x01\x00\x01\x7f\xff\xff\xff" + b"\x00" * 8)  # a name length past its end
    wire.call("getData", "after")
    handler.waiting["first"].callback("1")
    assert [(name, body.success) for name, _, _, body in wire.replies()] == [("slow", "1")]
    assert wire.transport.disconnecting


def test_partialTimeoutLetsTheCallsInFlightBeAnswered() -> None:
    clock = Clock()
    handler = Handler()
    wire = aborting(handler, clock, partial_timeout=5, half_closed_timeout=30)
    wire.call("slow", 1.0, "long")
    wire.proto.dataReceived(b"\x00\x00\x01\x00" + b"\x80")  # a frame begun
    clock.advance(5)
    assert not wire.transport.disconnecting  # refused, its call still in flight
    clock.advance(20)
    assert not wire.transport.aborted
    handler.waiting["long"].callback("done")
    assert [body.success for *_, body in wire.replies()] == ["done"]
    assert wire.transport.disconnecting and not wire.transport.aborted
