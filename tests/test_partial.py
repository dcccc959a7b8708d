"""
Tests for partial messages (messages begun but not complete): how long one
may take to arrive (C{partial_timeout}), and the server-wide budget for the
bytes they hold (C{partial_budget}, L{txthrift._budget.PartialBudget}).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import pytest_twisted
from thrift.transport.TTransport import TTransportException
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.python.failure import Failure

import txthrift
from tests._handlers import HANDLERS, SUFFIX, Holding
from tests._hardening import METHODS, Raw, bounded, framed, reply, request, until
from tests._processes import run
from tests.gen.py.txthrift_test import Echo
from txthrift import ClientProtocol, Limits, ServerFactory, ServerProtocol
from txthrift._budget import PartialBudget
from txthrift._framing import makeFramer
from txthrift._limits import MiB
from txthrift._tap import Options

LOCAL = "tcp:0:interface=127.0.0.1"
WAIT = 20.0


def connection(clock: Clock, transport: str = "framed",
               **limits: Any) -> tuple[ServerProtocol, StringTransport, Holding]:
    handler = Holding()
    factory = ServerFactory(handler, clock=clock, transport=transport, protocol="binary"
                            if transport != "auto" else "auto", limits=Limits(**limits))
    proto = factory.buildProtocol(None)
    wire = StringTransport()
    proto.makeConnection(wire)
    return proto, wire, handler


def answers(wire: StringTransport) -> list[bytes]:
    return makeFramer("framed", "binary", Limits()).feed(wire.value())


# ---------------------------------------------------------------------------
# partial_timeout
# ---------------------------------------------------------------------------


def test_aMessageNotCompleteInTimeClosesItsConnection(logged: list[dict[str, Any]]) -> None:
    """
    The connection is closed when its message has not come whole within
    C{partial_timeout} of its first byte, saying why; what it held is let
    go at once, and a peer that does not let the connection close is cut
    off after a grace period.
    """
    clock = Clock()
    proto, wire, _ = connection(clock, partial_timeout=30)
    message = request("binary", "getData", 1, "x" * 1000, transport="framed")
    proto.dataReceived(message[:500])
    clock.advance(29.9)
    assert not wire.disconnecting
    clock.advance(0.1)
    assert wire.disconnecting
    assert proto.refusal is not None
    assert "partial_timeout 30s" in proto.refusal and "500 bytes" in proto.refusal
    warned = [e for e in logged if "{reason}" in e.get("log_format", "")]
    assert [e["reason"] for e in warned] == [proto.refusal]
    assert proto.framer is not None and proto.framer.buffered() == 0
    assert proto.factory.partialBudget.held == 0
    assert not wire.disconnected
    clock.advance(10)
    assert wire.disconnected  # aborted: it would not go


def test_eachMessageHasItsOwnDeadline() -> None:
    """
    A message that comes whole in time is answered and keeps its connection
    open; the next message's time starts at its own first byte, even when
    that came in the same read as the end of the one before.
    """
    clock = Clock()
    proto, wire, _ = connection(clock, partial_timeout=30)
    first = request("binary", "getData", 1, "x" * 1000, transport="framed")
    second = request("binary", "getData", 2, "y" * 1000, transport="framed")
    proto.dataReceived(first[:500])
    clock.advance(25)
    proto.dataReceived(first[500:] + second[:10])
    clock.advance(0)  # replies go out at the reactor's next turn
    assert len(answers(wire)) == 1
    clock.advance(29.9)  # 54.9s since the first began, 29.9s since the second
    assert not wire.disconnecting
    clock.advance(0.1)
    assert wire.disconnecting
    assert proto.refusal is not None and "10 bytes" in proto.refusal


def test_messagesThatComeInTimeKeepTheConnection() -> None:
    """
    However long the connection lives, and however slowly its messages
    come: only a message that takes longer than the limit closes it.
    """
    clock = Clock()
    proto, wire, _ = connection(clock, partial_timeout=30)
    for seqid in range(1, 6):
        message = request("binary", "getData", seqid, "x" * 100, transport="framed")
        proto.dataReceived(message[:50])
        clock.advance(29)
        if seqid == 5:
            break
        proto.dataReceived(message[50:])
        clock.advance(100)
    assert not wire.disconnecting
    assert len(answers(wire)) == 4
    clock.advance(1)
    assert wire.disconnecting


def test_noPartialTimeout() -> None:
    clock = Clock()
    proto, wire, _ = connection(clock, partial_timeout=None)
    proto.dataReceived(request("binary", "getData", 1, "x" * 100, transport="framed")[:50])
    clock.advance(10**6)
    assert not wire.disconnecting
    assert not clock.getDelayedCalls()


def test_theFirstBytesOfAnAutoConnectionAreTimedToo() -> None:
    clock = Clock()
    proto, wire, _ = connection(clock, transport="auto", partial_timeout=5)
    proto.dataReceived(b"\x00\x00")  # too few to tell the framing
    clock.advance(5)
    assert wire.disconnecting
    assert proto.refusal is not None and "2 bytes" in proto.refusal


def test_ourOwnBacklogIsNotThePeersFault() -> None:
    """
    While the server holds reading back for requests it has not processed
    yet (C{max_pending}), the rest of a partial message cannot come: its
    deadline waits for that to end.
    """
    clock = Clock()
    proto, wire, handler = connection(clock, partial_timeout=60, max_pending=1)
    third = request("binary", "getData", 3, "x" * 100, transport="framed")
    proto.dataReceived(request("binary", "slow", 1, 1.0, "a", transport="framed")
                       + request("binary", "slow", 2, 1.0, "b", transport="framed")
                       + third[:50])
    assert wire.producerState == "paused"
    clock.advance(61)
    assert not wire.disconnecting
    handler.waiting["a"].callback("A")  # "b" goes in flight: reading resumes
    assert wire.producerState == "producing"
    clock.advance(60)
    # Timed out: nothing more is read, and the call in flight is answered
    # before the connection closes.
    assert wire.producerState == "paused" and not wire.disconnecting
    handler.waiting["b"].callback("B")
    assert wire.disconnecting


def test_aClientClosesOnAReplyThatNeverCompletes() -> None:
    """
    A reply is a partial message too: one that stops coming fails the calls
    of its connection with the reason, instead of leaving them waiting.
    """
    clock = Clock()
    proto = ClientProtocol(clock, limits=Limits(partial_timeout=5))
    wire = StringTransport()
    proto.makeConnection(wire)
    called = proto.call(METHODS["getData"], "getData", ("x",), {}, None)
    answer = framed(reply("binary", "getData", 1, "x" * 1000))
    proto.dataReceived(answer[:300])
    clock.advance(5)
    assert wire.disconnecting
    proto.connectionLost(Failure(ConnectionError("closed")))
    failure: list[Failure] = []
    called.addErrback(failure.append)
    assert failure and failure[0].check(TTransportException)
    assert "partial_timeout 5s" in str(failure[0].value)


# ---------------------------------------------------------------------------
# partial_budget
# ---------------------------------------------------------------------------


class Holder:
    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events

    def pauseForBudget(self) -> None:
        self.events.append(f"pause {self.name}")

    def resumeForBudget(self) -> None:
        self.events.append(f"resume {self.name}")

    def __repr__(self) -> str:
        return self.name


def test_budgetLetsOneMessageThroughAndTheOthersWaitInTurn() -> None:
    events: list[str] = []
    a, b, c, d = (Holder(name, events) for name in "abcd")
    budget = PartialBudget(100)
    budget.hold(a, 60, True)
    budget.hold(b, 30, True)
    assert events == []
    budget.hold(c, 20, True)  # over the budget: the first over goes through
    assert events == []
    budget.hold(d, 10, True)
    budget.hold(b, 40, False)
    assert events == ["pause d", "pause b"]
    assert (budget.held, budget.waiting) == (130, 2)
    budget.hold(c, 50, False)  # the one going through goes on
    assert events == ["pause d", "pause b"]
    budget.hold(c, 0, False)  # its message is whole: the longest waiting goes next
    assert events == ["pause d", "pause b", "resume d"]
    assert budget.waits(b) and not budget.waits(d)
    budget.hold(a, 0, False)  # room for everyone
    assert events == ["pause d", "pause b", "resume d", "resume b"]
    assert (budget.held, budget.waiting) == (50, 0)


def test_budgetResumesAWaiterWhoseMessageCameWholeAnyway() -> None:
    events: list[str] = []
    a, b = Holder("a", events), Holder("b", events)
    budget = PartialBudget(10)
    budget.hold(a, 20, True)
    budget.hold(b, 5, True)
    assert budget.waits(b)
    budget.hold(b, 0, False)
    assert events == ["pause b", "resume b"] and not budget.waits(b)


def test_budgetGoesOnWhenAConnectionCloses() -> None:
    events: list[str] = []
    a, b, c = (Holder(name, events) for name in "abc")
    budget = PartialBudget(9)
    budget.hold(a, 20, True)
    budget.hold(b, 5, True)
    budget.hold(c, 5, True)
    budget.release(a)  # the one going through is closed: b goes next
    assert events == ["pause b", "pause c", "resume b"]
    budget.release(b)
    assert events[-1] == "resume c"
    assert budget.held == 5


def test_theConnectionsOfAFactoryShareItsBudget() -> None:
    clock = Clock()
    factory = ServerFactory(Holding(), clock=clock, transport="framed", protocol="binary",
                            limits=Limits(partial_budget=1000))
    protos = [factory.buildProtocol(None) for _ in range(3)]
    wires = [StringTransport() for _ in protos]
    for proto, wire in zip(protos, wires):
        proto.makeConnection(wire)
    message = request("binary", "getData", 1, "x" * 2000, transport="framed")
    for proto in protos:
        proto.dataReceived(message[:600])
    budget = factory.partialBudget
    assert isinstance(budget, PartialBudget) and budget.held == 1800
    assert [wire.producerState for wire in wires] == ["producing", "producing", "paused"]
    protos[1].dataReceived(message[600:])  # the one let through completes
    clock.advance(0)
    assert answers(wires[1]) and budget.held == 1200
    assert [wire.producerState for wire in wires] == ["producing", "producing", "producing"]
    protos[0].connectionLost(Failure(ConnectionError("gone")))
    assert budget.held == 600


def test_theConnectionsOfAnyFactoryShareABudget() -> None:
    """
    Protocols built by a factory that holds no budget of its own (a plain
    Twisted one) still share one, and nothing is written on the factory.
    """

    class Receiver(txthrift.ThriftMessageProtocol):
        def messageReceived(self, message: bytes) -> None:
            pass

    factory = Factory.forProtocol(Receiver)
    limits = Limits(partial_budget=1000)
    protos = [Receiver("framed", "binary", limits) for _ in range(3)]
    wires = [StringTransport() for _ in protos]
    for proto, wire in zip(protos, wires):
        proto.factory = factory
        proto.makeConnection(wire)
    message = request("binary", "getData", 1, "x" * 2000, transport="framed")
    for proto in protos:
        proto.dataReceived(message[:600])
    assert [wire.producerState for wire in wires] == ["producing", "producing", "paused"]
    assert not hasattr(factory, "partialBudget")


def test_roomInTheBudgetDoesNotUndoTheServersOwnPause() -> None:
    """
    A connection the server paused for its own backlog stays paused when
    the budget has room again, until the server itself resumes it.
    """
    clock = Clock()
    handler = Holding()
    factory = ServerFactory(handler, clock=clock, transport="framed", protocol="binary",
                            limits=Limits(partial_budget=1000, max_pending=1))
    a, b, c = (factory.buildProtocol(None) for _ in range(3))
    wires = [StringTransport() for _ in range(3)]
    for proto, wire in zip((a, b, c), wires):
        proto.makeConnection(wire)
    message = request("binary", "getData", 9, "x" * 2000, transport="framed")
    b.dataReceived(message[:600])
    c.dataReceived(message[:500])  # over the budget first: goes through
    a.dataReceived(request("binary", "slow", 1, 1.0, "a", transport="framed")
                   + request("binary", "slow", 2, 1.0, "b", transport="framed")
                   + message[:100])  # paused by the server, and by the budget
    budget = factory.partialBudget
    assert budget is not None and budget.waits(a)
    c.connectionLost(Failure(ConnectionError("gone")))  # room again
    assert not budget.waits(a)
    assert wires[0].producerState == "paused"
    handler.waiting["a"].callback("A")  # the server's own reason ends
    assert wires[0].producerState == "producing"


@pytest_twisted.ensureDeferred
async def test_halfSentBigFramesHoldNoMoreThanTheBudget() -> None:
    """
    Real connections each send most of a big frame: the server reads them
    only while their bytes fit in the budget (one message may go past it),
    so the memory they hold stays bounded; when the rest comes, every
    call is answered.
    """
    from twisted.internet import reactor

    count, size, budget = 8, 1 * MiB, 2 * MiB
    port: Any = await txthrift.serve(reactor, LOCAL, Holding(), transport="framed",
                                     protocol="binary", partial_budget=budget)
    factory: ServerFactory = port.factory
    peers: list[Raw] = []
    try:
        messages = [request("binary", "getData", n, "x" * size, transport="framed")
                    for n in range(count)]
        for message in messages:
            peer = await bounded(connectProtocol(
                TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Raw()), WAIT)
            peer.transport.write(message[:-1000])
            peers.append(peer)
        shared = factory.partialBudget
        assert shared is not None

        def settled() -> bool:
            # Every connection has read all that was sent, or waits.
            protos = list(factory.connections)
            return len(protos) == count and all(
                shared.waits(proto) or proto.framer is not None
                and proto.framer.buffered() == len(messages[0]) - 1000 for proto in protos)

        await until(settled, WAIT, "the server to read what it will")
        held = sum(proto.framer.buffered() for proto in factory.connections
                   if proto.framer is not None)
        assert held == shared.held
        assert held <= budget + size + 4 + count * 65536, held
        assert held < count * size // 2, held  # all of it: 8 MiB
        assert shared.waiting >= count - budget // size - 2
        for peer, message in zip(peers, messages):
            peer.transport.write(message[-1000:])
        await until(lambda: all(len(peer.data) > size for peer in peers), WAIT,
                    "every call to be answered")
        for peer in peers:
            got = makeFramer("framed", "binary", Limits()).feed(bytes(peer.data))
            assert len(got) == 1 and got[0].endswith(SUFFIX.encode() + b"\x00")  # the struct's end
        assert shared.held == 0 and shared.waiting == 0
    finally:
        for peer in peers:
            peer.transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_aHalfSentFrameIsDroppedOnTheWire() -> None:
    from twisted.internet import reactor

    port: Any = await txthrift.serve(reactor, LOCAL, Holding(), partial_timeout=0.5)
    client: Any = await bounded(txthrift.connect(
        reactor, f"tcp:host=127.0.0.1:port={port.getHost().port}", Echo, timeout=WAIT), WAIT)
    slow = await bounded(connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Raw()), WAIT)
    try:
        started = time.monotonic()
        slow.transport.write(request("binary", "getData", 1, "x" * 100, transport="framed")[:60])
        assert await bounded(slow.lost, WAIT) == b""
        assert time.monotonic() - started >= 0.5
        assert await bounded(client.getData("still"), WAIT) == "still" + SUFFIX
    finally:
        await client.close()
        await port.stopListening()


# ---------------------------------------------------------------------------
# Limits and twistd options
# ---------------------------------------------------------------------------


def test_limitsDefaultsAndValidation() -> None:
    limits = Limits()
    assert (limits.partial_timeout, limits.partial_budget) == (60.0, 64 * MiB)
    assert Limits(partial_timeout=None, partial_budget=None).partial_budget is None
    for bad in ({"partial_timeout": 0}, {"partial_timeout": -1.0},
                {"partial_budget": 0}, {"partial_budget": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Limits(**bad)


def test_twistdOptions() -> None:
    options = Options()
    options.parseOptions(["--handler", f"{HANDLERS}.EchoHandler", "--partial-timeout", "30",
                          "--partial-budget", "1000000"])
    assert options["limits"]["partial_timeout"] == 30.0
    assert options["limits"]["partial_budget"] == 1000000
    options = Options()
    options.parseOptions(["--handler", f"{HANDLERS}.EchoHandler", "--partial-timeout", "off",
                          "--partial-budget", "off"])
    assert options["limits"]["partial_timeout"] is None
    assert options["limits"]["partial_budget"] is None
    options = Options()
    options.parseOptions(["--handler", f"{HANDLERS}.EchoHandler"])
    assert "partial_timeout" not in options["limits"]  # Limits' own default


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--partial-timeout", "0",
     "--partial-timeout: expected a number of seconds more than 0, or off, not '0'"),
    ("--partial-timeout", "soon",
     "--partial-timeout: expected a number of seconds more than 0, or off, not 'soon'"),
    ("--partial-budget", "1.5",
     "--partial-budget: expected a whole number of bytes more than 0, or off, not '1.5'"),
    ("--partial-budget", "-1",
     "--partial-budget: expected a whole number of bytes more than 0, or off, not '-1'"),
])
def test_badOptionValues(option: str, value: str, expected: str) -> None:
    with pytest.raises(usage.UsageError) as raised:
        Options().parseOptions(["--handler", f"{HANDLERS}.EchoHandler", option, value])
    assert str(raised.value) == expected


def test_twistdSaysWhatIsWrongInOneLine() -> None:
    done = run("thrift", "--handler", f"{HANDLERS}.EchoHandler", "--partial-budget", "lots")
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    last = [line for line in done.stdout.splitlines() if line.strip()][-1]
    assert last == ("twistd thrift: --partial-budget: expected a whole number of bytes more"
                    " than 0, or off, not 'lots'")
    shown = run("thrift", "--help")
    assert "--partial-timeout=" in shown.stdout and "--partial-budget=" in shown.stdout
