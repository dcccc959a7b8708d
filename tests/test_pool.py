"""
Tests for L{txthrift.connectPool} in memory: endpoints whose connections
are L{txthrift.testing} pumps to real server connections, time a L{Clock};
balancing, ejection and probing, retries and their budget, the deadline
across retries, cancellation, membership changes and the fail-fast error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from thrift.transport.TTransport import TTransportException
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

import txthrift
from tests._handlers import EchoBasics
from tests.gen.py.txthrift_test import Echo
from txthrift._loopback import Pump
from txthrift._pool import MOST_ATTEMPTS, PoolClient, _resolveAll
from txthrift._server import ServerFactory

ADDRESS = IPv4Address("TCP", "127.0.0.1", 9090)


class Server(EchoBasics):
    """
    An C{Echo} counting each method's runs; C{slow} answers when the test
    fires it, C{ping} too while C{stuck}.
    """

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}
        self.held: list[Deferred[str]] = []
        self.stuck = False

    def ping(self, x: int) -> Any:
        self.runs["ping"] = self.runs.get("ping", 0) + 1
        if self.stuck:
            return Deferred()
        return x

    def slow(self, seconds: float, tag: str) -> Deferred[str]:
        self.runs["slow"] = self.runs.get("slow", 0) + 1
        held: Deferred[str] = Deferred()
        self.held.append(held)
        return held


@implementer(IStreamClientEndpoint)
class Memory:
    """
    An endpoint whose connections are pumps to a server held in memory; it
    refuses to connect while C{refusing}, and while C{holding} its attempts
    wait for L{release}.
    """

    def __init__(self, clock: Clock, name: str) -> None:
        self.clock = clock
        self.name = name
        self.server = Server()
        self.serverFactory = ServerFactory(self.server, clock=clock)
        self.pumps: list[Pump] = []
        self.attempts = 0
        self.refusing = False
        self.holding = False
        self.held: list[tuple[Deferred[Any], Any]] = []

    def __repr__(self) -> str:
        return f"<memory {self.name}>"

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts += 1
        if self.refusing:
            return fail(ConnectionRefusedError(self.name))
        if self.holding:
            self.held.append((Deferred(), factory))
            return self.held[-1][0]
        return succeed(self.connected(factory))

    def connected(self, factory: Any) -> Any:
        client = factory.buildProtocol(ADDRESS)
        server = self.serverFactory.buildProtocol(ADDRESS)
        self.pumps.append(Pump(None, self.clock, self.serverFactory, server, client))
        return client

    def release(self) -> None:
        """
        Connect the attempts held.
        """
        self.holding = False
        held, self.held = self.held, []
        for waiting, factory in held:
            waiting.callback(self.connected(factory))

    def live(self) -> list[Pump]:
        return [pump for pump in self.pumps if pump.connected]

    def drop(self) -> None:
        """
        The server closes every connection.
        """
        for pump in self.live():
            transport = pump.serverProtocol.transport
            assert transport is not None
            transport.loseConnection()


class Scripted:
    """
    A random source answering C{random} from a script, then 0.
    """

    def __init__(self, *answers: float) -> None:
        self.answers = list(answers)

    def random(self) -> float:
        return self.answers.pop(0) if self.answers else 0.0


class World:
    def __init__(self, count: int) -> None:
        self.clock = Clock()
        self.endpoints = [Memory(self.clock, name) for name in "abcdefgh"[:count]]

    def flush(self) -> None:
        for _ in range(10):
            for endpoint in self.endpoints:
                for pump in list(endpoint.pumps):
                    pump.flush()

    def advance(self, seconds: float) -> None:
        self.flush()
        self.clock.advance(seconds)
        self.flush()

    def settle(self, d: Deferred[Any]) -> Any:
        """
        Flush, then what C{d} fired with.
        """
        self.flush()
        return result(d)

    def pool(self, **options: Any) -> Any:
        options.setdefault("retry_policy", lambda attempt: 1.0)
        d = txthrift.connectPool(self.clock, self.endpoints, Echo, **options)
        self.flush()
        return result(d)


def result(d: Deferred[Any]) -> Any:
    """
    What C{d} has fired with, raising what it failed with.
    """
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    assert outcome, f"{d!r} has not fired"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def fired(d: Deferred[Any]) -> bool:
    """
    Whether C{d} has its outcome (not just a Deferred it waits on).
    """
    return d.called and not isinstance(d.result, Deferred)


@pytest.fixture
def world() -> Callable[[int], World]:
    """
    Make L{World}s: in memory, nothing outlives the test.
    """
    return World


def test_balancesByLeastPendingOfTwoRandomChoices(world: Callable[[int], World]) -> None:
    """
    Of the two members the random source picks, the one with fewer calls
    pending takes the call; over many calls, loads stay level.
    """
    w = world(3)
    a, b, c = w.endpoints
    random = Scripted(0, 0, 0, 0, 0.5, 0)
    client = w.pool(random=random)
    client.slow(1, "1")  # a (0) vs b (0): a tie, the first
    client.slow(1, "2")  # a (1) vs b (0): b
    client.slow(1, "3")  # b (1) vs a (1): a tie, the first
    w.flush()
    assert [len(e.server.held) for e in (a, b, c)] == [1, 2, 0]
    other = w.pool(random=__import__("random").Random(7))
    for index in range(300):
        other.slow(1, str(index))
    w.flush()
    loads = [len(e.server.held) for e in (a, b, c)]
    assert sum(loads) == 303 and max(loads) - min(loads) <= 4, loads


def test_ejectsAfterTimeoutsAndProbesBackIn(world: Callable[[int], World]) -> None:
    """
    After C{eject_after} timeouts in a row an endpoint takes no calls for
    C{eject_for} seconds; then one trial call goes to it, and once one is
    answered it takes calls again.
    """
    w = world(2)
    a, b = w.endpoints
    a.server.stuck = True
    client = w.pool(random=Scripted(), eject_after=2, eject_for=5, timeout=1)
    for _ in range(2):
        call = client.ping(1)
        w.advance(1)
        with pytest.raises(txthrift.CallTimeout):
            result(call)
    assert client.endpointStates()["<memory a>"].startswith("ejected for 5.0s more after 2")
    assert [w.settle(client.ping(n)) for n in range(5)] == list(range(5))
    assert a.server.runs["ping"] == 2 and b.server.runs["ping"] == 5
    w.advance(5)
    a.server.stuck = False
    probe = client.ping(10)
    assert client.endpointStates()["<memory a>"].startswith("probing")
    w.flush()
    assert result(probe) == 10 and a.server.runs["ping"] == 3
    assert client.endpointStates()["<memory a>"] == "up (1 connection)"


def test_aProbeThatTimesOutEjectsAgain(world: Callable[[int], World]) -> None:
    w = world(2)
    a, _ = w.endpoints
    a.server.stuck = True
    client = w.pool(random=Scripted(), eject_after=1, eject_for=5, timeout=1)
    client.ping(1).addErrback(lambda _: None)
    w.advance(1)
    w.advance(5)
    probe = client.ping(2)
    second = client.ping(3)  # the probe is in flight: b takes this one
    w.flush()
    assert result(second) == 3
    w.advance(1)
    with pytest.raises(txthrift.CallTimeout):
        result(probe)
    assert client.endpointStates()["<memory a>"].startswith("ejected for 5.0s")


def test_connectionFailuresEjectAndReconnectingBacksOff(world: Callable[[int], World]) -> None:
    """
    An endpoint refusing connections is tried again per the retry policy,
    never in a tight loop, and ejected after C{eject_after} failures.
    """
    w = world(2)
    a, b = w.endpoints
    a.refusing = True
    client = w.pool(eject_after=3, eject_for=60, retry_policy=lambda n: 0.5 * 2 ** min(n, 4))
    for _ in range(100):
        w.advance(0.1)
    # 10 seconds: attempts at 0, 1, 3, 7 (then every 8s).
    assert a.attempts == 4
    state = client.endpointStates()["<memory a>"]
    assert state.startswith("ejected for") and "ConnectionRefusedError" in state, state
    a.refusing = False
    w.advance(8)
    assert a.live() and client.endpointStates()["<memory a>"].startswith("ejected")
    assert b.attempts == 1


def test_retriesWrittenCallsOfIdempotentMethodsOnly(world: Callable[[int], World]) -> None:
    """
    A call whose connection is lost before its reply goes to another
    endpoint if its method is idempotent; otherwise it fails saying why.
    """
    w = world(2)
    a, b = w.endpoints
    client = w.pool(random=Scripted(), idempotent=["slow"])
    moved = client.slow(1, "x")
    w.flush()
    assert a.server.runs == {"slow": 1}
    a.drop()
    w.flush()
    assert b.server.runs == {"slow": 1}
    b.server.held[0].callback("x")
    w.flush()
    assert result(moved) == "x" and client.pool.retries == 1
    other = w.pool(random=Scripted())
    stays = other.slow(1, "y")
    w.flush()
    owner = next(e for e in w.endpoints if any(pump.pending for pump in e.live()))
    owner.drop()
    w.flush()
    with pytest.raises(TTransportException, match="not sent again: slow may have run"):
        result(stays)
    assert other.pool.retries == 0


def test_deadlineSpansRetries(world: Callable[[int], World]) -> None:
    """
    A call's C{timeout} counts from the call, not from each attempt.
    """
    w = world(2)
    a, b = w.endpoints
    client = w.pool(random=Scripted(), idempotent=["slow"])
    call = client.slow(1, "x", timeout=5)
    w.advance(3)
    a.drop()
    w.advance(1.5)
    assert not fired(call) and b.server.runs == {"slow": 1}
    w.advance(0.5)
    with pytest.raises(txthrift.CallTimeout, match="within 5 seconds .2 attempts"):
        result(call)


def test_cancellingForgetsTheCall(world: Callable[[int], World]) -> None:
    w = world(2)
    client = w.pool(random=Scripted(), idempotent=["slow"])
    call = client.slow(1, "x")
    w.flush()
    call.cancel()
    with pytest.raises(CancelledError):
        result(call)
    connection = w.endpoints[0].live()[0].clientProtocol
    assert connection.pending == 0
    w.endpoints[0].drop()
    w.flush()
    assert w.endpoints[1].server.runs == {} and client.pool.retries == 0


def test_noEndpointFailsAtOnceNamingEachState(world: Callable[[int], World]) -> None:
    w = world(2)
    a, b = w.endpoints
    b.server.stuck = True
    client = w.pool(random=Scripted(0, 0, 0.5, 0), eject_after=1, timeout=1)
    client.ping(1).addErrback(lambda _: None)  # a
    client.ping(1).addErrback(lambda _: None)  # b, which times out
    w.advance(1)
    for endpoint in (a, b):
        endpoint.refusing = True
        endpoint.drop()
    w.flush()
    call = client.ping(2)
    with pytest.raises(txthrift.PoolUnavailable) as caught:
        result(call)
    message = str(caught.value)
    assert "cannot call ping: no endpoint can take it now" in message
    assert "<memory a>: connecting" in message
    assert "<memory b>: ejected for 10.0s more after 1 failures in a row" in message
    assert caught.value.type == TTransportException.NOT_OPEN
    assert set(caught.value.states) == {"<memory a>", "<memory b>"}


def test_connectPoolFailsWhenEveryEndpointFails(world: Callable[[int], World]) -> None:
    w = world(2)
    for endpoint in w.endpoints:
        endpoint.refusing = True
    with pytest.raises(txthrift.PoolUnavailable) as caught:
        w.pool()
    assert str(caught.value).startswith(
        "cannot connect: every endpoint failed (<memory a>: connecting (last error:"
        " ConnectionRefusedError: Connection was refused by other side: a.)")
    w.advance(100)
    assert [e.attempts for e in w.endpoints] == [1, 1]


def test_setEndpointsClosesRemovedOnesAfterTheirCalls(world: Callable[[int], World]) -> None:
    w = world(3)
    a, b, c = w.endpoints
    client = w.pool(random=Scripted())
    held = client.slow(1, "x")
    w.flush()
    assert a.server.runs == {"slow": 1}
    result(client.setEndpoints([b, c]))
    w.flush()
    assert a.live(), "closed before its call ended"
    assert [w.settle(client.ping(n)) for n in range(4)] == list(range(4))
    assert "ping" not in a.server.runs
    a.server.held[0].callback("x")
    w.flush()
    assert result(held) == "x" and not a.live()
    assert set(client.endpointStates()) == {"<memory b>", "<memory c>"}
    result(client.setEndpoints([a]))
    w.flush()
    assert w.settle(client.ping(9)) == 9 and a.server.runs["ping"] == 1
    assert not b.live() and not c.live()


def test_closeFailsCallsAndRefusesNewOnes(world: Callable[[int], World]) -> None:
    w = world(2)
    client = w.pool(idempotent=["slow"])
    call = client.slow(1, "x")
    w.flush()
    closed = client.close()
    w.flush()
    assert result(closed) is None
    with pytest.raises(TTransportException, match="not sent again: the pool was closed") as caught:
        result(call)
    assert "server closed" not in str(caught.value)
    with pytest.raises(txthrift.PoolUnavailable, match="the pool is closed"):
        result(client.ping(1))
    assert not any(e.live() for e in w.endpoints) and client.pool.retries == 0


def test_severalConnectionsPerEndpoint(world: Callable[[int], World]) -> None:
    w = world(1)
    client = w.pool(connections=3)
    for index in range(6):
        client.slow(1, str(index))
    w.flush()
    assert [pump.clientProtocol.pending for pump in w.endpoints[0].live()] == [2, 2, 2]


def test_retriesStopAtMostAttempts(world: Callable[[int], World]) -> None:
    w = world(2)
    client = w.pool(idempotent=["slow"], retry_policy=lambda n: 0.0)
    call = client.slow(1, "x")
    for _ in range(MOST_ATTEMPTS):
        w.flush()
        for endpoint in w.endpoints:
            if any(pump.pending for pump in endpoint.live()):
                endpoint.drop()
                break
        w.advance(0)
    with pytest.raises(TTransportException, match=f"{MOST_ATTEMPTS} attempts made"):
        result(call)


def test_retryBudgetIsAShareOfRecentCallsPlusAMinimum() -> None:
    clock = Clock()
    budget = txthrift.RetryBudget(clock, 0.2, minPerSecond=1, window=10)
    for _ in range(100):
        budget.deposit()
    assert sum(budget.tryWithdraw() for _ in range(50)) == 30
    clock.advance(5)
    assert not budget.tryWithdraw()
    for _ in range(10):
        budget.deposit()
    assert sum(budget.tryWithdraw() for _ in range(50)) == 2
    clock.advance(5)  # the first 100 calls and 30 retries are out of the window
    assert budget.balance() == pytest.approx(10 + 2 - 2)
    clock.advance(10)
    assert sum(budget.tryWithdraw() for _ in range(50)) == 10
    with pytest.raises(ValueError):
        txthrift.RetryBudget(clock, -1)


def test_anIdempotentNameMustBeAMethod(world: Callable[[int], World]) -> None:
    w = world(1)
    with pytest.raises(ValueError, match="idempotent names no method of Echo: pong"):
        w.pool(idempotent=["pong"])


def test_urlsAndEmptyMembershipAreRefused() -> None:
    clock = Clock()
    with pytest.raises(ValueError, match="not to URLs"):
        result(txthrift.connectPool(clock, ["http://127.0.0.1:1/"], Echo))
    with pytest.raises(ValueError, match="at least one endpoint"):
        result(txthrift.connectPool(clock, [], Echo))


class Resolver:
    def resolveHostName(self, receiver: Any, host: str, port: int) -> None:
        receiver.resolutionBegan(None)
        if host == "db.test":
            receiver.addressResolved(IPv4Address("TCP", "10.0.0.1", port))
            receiver.addressResolved(IPv6Address("TCP", "::1", port))
            receiver.addressResolved(IPv4Address("TCP", "10.0.0.1", port))
        receiver.resolutionComplete()


def test_dnsNamesEveryAddress() -> None:
    clock: Any = Clock()
    clock.nameResolver = Resolver()
    found = result(_resolveAll(clock, "dns:db.test:9090"))
    assert [description for _, description, _ in found] == ["tcp:10.0.0.1:9090",
                                                            "tcp:[::1]:9090"]
    with pytest.raises(ValueError, match="nothing.test has no address"):
        result(_resolveAll(clock, ["dns:nothing.test:1"]))
    with pytest.raises(ValueError, match="is not dns:HOST:PORT"):
        result(_resolveAll(clock, ["dns:nothing.test"]))


def test_ttwistedStyleServiceModulesWork(world: Callable[[int], World]) -> None:
    """
    The Twisted flavour of generated code (Apache's C{TTwisted} users')
    gives the same pool client.
    """
    from tests.gen.pytwisted.txthrift_test import Echo as TwistedEcho

    w = world(2)
    d = txthrift.connectPool(w.clock, w.endpoints, TwistedEcho)
    w.flush()
    client = result(d)
    call = client.add(2, 3)
    w.flush()
    assert result(call) == 5


def test_cancellingDuringARetryCancelsThatAttempt(world: Callable[[int], World]) -> None:
    w = world(2)
    a, b = w.endpoints
    client = w.pool(random=Scripted(), idempotent=["slow"])
    call = client.slow(1, "x")
    w.flush()
    a.drop()
    w.flush()
    assert b.server.runs == {"slow": 1} and not fired(call)
    call.cancel()
    with pytest.raises(CancelledError):
        result(call)
    assert [pump.clientProtocol.pending for pump in b.live()] == [0]


def test_cancellingConnectPoolStopsConnecting(world: Callable[[int], World]) -> None:
    w = world(1)
    attempts: list[Deferred[Any]] = []

    def connect(factory: Any) -> Deferred[Any]:
        attempts.append(Deferred())
        return attempts[-1]

    w.endpoints[0].connect = connect  # type: ignore[method-assign]
    d = txthrift.connectPool(w.clock, w.endpoints, Echo, retry_policy=lambda n: 1.0)
    d.cancel()
    w.advance(10)
    with pytest.raises(CancelledError):
        result(d)
    assert len(attempts) == 1 and attempts[0].called  # cancelled, and not tried again


def test_aCallThatCannotBeEncodedFailsAndLeavesNoProbeBehind(
        world: Callable[[int], World]) -> None:
    w = world(1)
    client = w.pool(eject_after=1, eject_for=1, timeout=1)
    w.endpoints[0].server.stuck = True
    client.ping(1).addErrback(lambda _: None)
    w.advance(1)
    w.advance(1)
    with pytest.raises(TypeError):
        client.ping("not", "a", "ping")
    w.endpoints[0].server.stuck = False
    assert w.settle(client.ping(3)) == 3


def test_badOptionsFailAtOnce() -> None:
    clock = Clock()
    with pytest.raises(TypeError):
        txthrift.connectPool(clock, ["tcp:127.0.0.1:1"], Echo, max_frame_sise=1)
    with pytest.raises(ValueError, match="auto"):
        txthrift.connectPool(clock, ["tcp:127.0.0.1:1"], Echo, transport="auto")
    with pytest.raises(ValueError, match="sasl= is not supported"):
        txthrift.connectPool(clock, ["tcp:127.0.0.1:1"], Echo, sasl={"mechanism": "PLAIN"})
    with pytest.raises(ValueError, match="connections >= 1"):
        txthrift.connectPool(clock, ["tcp:127.0.0.1:1"], Echo, connections=0)


def test_theDefaultReconnectionBacksOff(world: Callable[[int], World]) -> None:
    """
    By default a refusing endpoint is tried again from 0.2 s, doubling
    (plus up to a second of jitter): a handful of times in 10 s.
    """
    w = world(2)
    w.endpoints[0].refusing = True
    d = txthrift.connectPool(w.clock, w.endpoints, Echo)
    w.flush()
    client = result(d)
    for _ in range(200):
        w.advance(0.05)
    assert 3 <= w.endpoints[0].attempts <= 7, w.endpoints[0].attempts
    assert w.endpoints[1].attempts == 1
    assert "(last error: ConnectionRefusedError" in \
        PoolClient.endpointStates(client)["<memory a>"]


def memberOf(client: Any, name: str) -> Any:
    """
    The pool's member for the L{Memory} endpoint called C{name}.
    """
    return next(m for m in client.pool.members.values() if m.description == f"<memory {name}>")


def test_aSlowdownOfEveryServerDoesNotShutThePool(world: Callable[[int], World]) -> None:
    """
    With the defaults (eject after 5, for 10 s), a dozen calls timing out
    together while every server stalls are not a dozen failures in a row:
    once the servers answer again, so does the pool.
    """
    w = world(2)
    client = w.pool(timeout=0.2)
    for endpoint in w.endpoints:
        endpoint.server.stuck = True
    calls = [client.ping(n) for n in range(12)]
    w.advance(0.2)
    for call in calls:
        with pytest.raises(txthrift.CallTimeout):
            result(call)
    for endpoint in w.endpoints:
        endpoint.server.stuck = False
    assert [w.settle(client.ping(n)) for n in range(4)] == list(range(4))
    assert all(state.startswith("up") for state in client.endpointStates().values())


def test_whenEveryMemberUpIsEjectedTheyTakeCallsAllTheSame(
        world: Callable[[int], World]) -> None:
    """
    Panic mode: an endpoint ejected but connected takes calls when no
    other can, and its first answer ends its ejection.
    """
    w = world(2)
    a, b = w.endpoints
    client = w.pool(random=Scripted(0, 0, 0.5, 0), eject_after=1, timeout=1)
    a.server.stuck = b.server.stuck = True
    first, second = client.ping(1), client.ping(2)
    w.advance(1)
    for call in (first, second):
        with pytest.raises(txthrift.CallTimeout):
            result(call)
    assert all(s.startswith("ejected") for s in client.endpointStates().values())
    a.server.stuck = b.server.stuck = False
    assert w.settle(client.ping(3)) == 3
    assert "up (1 connection)" in client.endpointStates().values()


def test_aTimeoutCountsOnlyWhenNothingCameSinceItsCallWasSent(
        world: Callable[[int], World]) -> None:
    """
    Calls timing out together are one failure; a call sent before another
    was answered is not charged; nor is an attempt given only the tail of
    a deadline spent elsewhere.
    """
    w = world(1)
    client = w.pool(eject_after=2, timeout=1, idempotent=["slow"])
    a = w.endpoints[0]
    a.server.stuck = True
    together = [client.ping(n) for n in range(3)]
    w.advance(1)
    assert [fired(call) for call in together] == [True] * 3
    assert memberOf(client, "a").failures == 1
    before = client.ping(4)
    held = client.slow(1, "x")
    w.advance(0.5)
    a.server.held.pop().callback("x")
    w.advance(0.5)
    assert result(held) == "x" and fired(before)
    assert memberOf(client, "a").failures == 0
    for call in together + [before]:
        call.addErrback(lambda _: None)
    w2 = world(2)
    pool = w2.pool(random=Scripted(), idempotent=["slow"], eject_after=1)
    late = pool.slow(1, "y", timeout=5)
    w2.advance(4.9)
    w2.endpoints[0].drop()
    w2.advance(0.1)
    with pytest.raises(txthrift.CallTimeout, match="2 attempts"):
        result(late)
    # a: lost before any reply (a failure); b: the last 0.1 s of 5 (none).
    assert memberOf(pool, "a").failures == 1 and memberOf(pool, "b").failures == 0


def test_removedMembersCloseOnEveryOutcomeAndOnClose(world: Callable[[int], World]) -> None:
    """
    An endpoint left out closes once its last call ends, however it ends
    (a timeout, a cancellation), and close() closes it with its calls.
    """
    for ending in ("timeout", "cancel", "close"):
        w = world(2)
        a, b = w.endpoints
        client = w.pool(random=Scripted(), timeout=5)
        held = client.slow(1, "x")
        w.flush()
        result(client.setEndpoints([b]))
        w.flush()
        assert a.live(), ending
        if ending == "timeout":
            w.advance(5)
        elif ending == "cancel":
            held.cancel()
        else:
            w.settle(client.close())
        w.flush()
        assert not a.live() and fired(held), ending
        held.addErrback(lambda _: None)
        w.settle(client.close())
        w.advance(10)
        assert not a.live() and not b.live() and a.attempts == b.attempts == 1, ending


class HeldResolver:
    """
    A name resolver whose resolutions finish when the test says.
    """

    def __init__(self) -> None:
        self.waiting: list[tuple[Any, str, int]] = []

    def resolveHostName(self, receiver: Any, host: str, port: int) -> None:
        self.waiting.append((receiver, host, port))

    def finish(self, index: int, address: str) -> None:
        receiver, _, port = self.waiting[index]
        receiver.resolutionBegan(None)
        receiver.addressResolved(IPv4Address("TCP", address, port))
        receiver.resolutionComplete()


def test_setEndpointsOnAClosedPoolFails(world: Callable[[int], World]) -> None:
    """
    Once closed, a pool connects nowhere again: setEndpoints fails, also
    when the pool was closed while a name resolved.
    """
    w = world(2)
    a, b = w.endpoints
    w.clock.nameResolver = HeldResolver()  # type: ignore[attr-defined]
    client = w.pool()
    resolving = client.setEndpoints(["dns:db.test:9090"])
    w.settle(client.close())
    w.clock.nameResolver.finish(0, "10.0.0.1")  # type: ignore[attr-defined]
    with pytest.raises(txthrift.PoolUnavailable, match="setEndpoints: the pool is closed"):
        result(resolving)
    with pytest.raises(txthrift.PoolUnavailable, match="the pool is closed"):
        result(client.setEndpoints([a]))
    w.advance(10)
    assert a.attempts == b.attempts == 1 and client.endpointStates() == {}


def test_theLastSetEndpointsWins(world: Callable[[int], World]) -> None:
    w = world(1)
    resolver = HeldResolver()
    w.clock.nameResolver = resolver  # type: ignore[attr-defined]
    client = w.pool()
    older = client.setEndpoints(["dns:old.test:1"])
    newer = client.setEndpoints(["dns:new.test:2"])
    resolver.finish(1, "10.0.0.2")
    resolver.finish(0, "10.0.0.1")
    result(newer), result(older)
    assert list(client.endpointStates()) == ["tcp:10.0.0.2:2"]
    w.settle(client.close())


def test_leftOutMembersServeUntilANewOneIsUp(world: Callable[[int], World]) -> None:
    """
    Calls made while the new members connect go to the old ones, which
    close once a new one is up; the same endpoint objects keep their
    connections.
    """
    w = world(3)
    a, b, c = w.endpoints
    client = w.pool()
    result(client.setEndpoints([b, a]))
    assert a.attempts == b.attempts == 1
    c.holding = True
    result(client.setEndpoints([c]))
    assert [w.settle(client.ping(n)) for n in range(4)] == list(range(4))
    assert a.server.runs.get("ping", 0) + b.server.runs.get("ping", 0) == 4
    c.release()
    w.flush()
    assert not a.live() and not b.live()
    assert w.settle(client.ping(5)) == 5 and c.server.runs == {"ping": 1}
    assert list(client.endpointStates()) == ["<memory c>"]


def test_aConnectionLostBeforeAnyReplyIsAFailure(world: Callable[[int], World]) -> None:
    """
    A server that accepts, then closes with a call pending and nothing
    answered, fails like one refusing: its error is named, and it is
    ejected; one closing an idle connection cleanly is not blamed.
    """
    w = world(2)
    a = w.endpoints[0]
    client = w.pool(random=Scripted(), eject_after=1)
    a.drop()
    w.flush()
    assert client.endpointStates()["<memory a>"] == "connecting"
    w.advance(1)
    call = client.slow(1, "x")
    w.flush()
    a.drop()
    w.flush()
    with pytest.raises(TTransportException, match="slow may have run"):
        result(call)
    state = client.endpointStates()["<memory a>"]
    assert state.startswith("ejected") and "(last error: ConnectionDone" in state, state


def test_aRetryWithNowhereToGoKeepsItsError(world: Callable[[int], World]) -> None:
    """
    An idempotent call whose connection is lost, with no endpoint to take
    it again, fails saying it may have run and why it was not sent again,
    and spends no retry.
    """
    w = world(1)
    client = w.pool(idempotent=["slow"])
    call = client.slow(1, "x")
    w.flush()
    balance = client.pool.budget.balance()
    w.endpoints[0].refusing = True
    w.endpoints[0].drop()
    w.flush()
    with pytest.raises(TTransportException) as caught:
        result(call)
    assert not isinstance(caught.value, txthrift.PoolUnavailable)
    assert "not sent again: no other endpoint can take it now (<memory a>" in str(caught.value)
    assert client.pool.retries == 0 and client.pool.budget.balance() == balance


def test_badArgumentsRaiseEvenWithNothingUp(world: Callable[[int], World]) -> None:
    w = world(1)
    w.endpoints[0].refusing = True
    client = w.pool(wait=False)
    with pytest.raises(TypeError):
        client.ping("not", "a", "ping")


def test_connectPoolWaitsForEveryMemberOrAGrace(world: Callable[[int], World]) -> None:
    """
    connectPool waits until each endpoint has connected or failed, so that
    the first calls spread; one slow to connect is waited for only a
    second once another is up.
    """
    w = world(2)
    a, b = w.endpoints
    b.holding = True
    d = txthrift.connectPool(w.clock, w.endpoints, Echo, random=Scripted(0, 0, 0, 0))
    w.flush()
    assert not fired(d)
    b.release()
    client = w.settle(d)
    client.slow(1, "x"), client.slow(1, "y")
    w.flush()
    assert len(a.server.held) == len(b.server.held) == 1
    b.holding = True
    d = txthrift.connectPool(w.clock, w.endpoints, Echo)
    w.advance(0.9)
    assert not fired(d)
    w.advance(0.1)
    assert PoolClient.endpointStates(result(d))["<memory b>"] == "connecting"


def test_waitFalseGivesThePoolAtOnce(world: Callable[[int], World]) -> None:
    """
    With C{wait=False} an application starts before its servers: calls
    fail fast until one is up, then go through.
    """
    w = world(1)
    w.endpoints[0].refusing = True
    client = w.pool(wait=False)
    with pytest.raises(txthrift.PoolUnavailable, match="connecting .last error"):
        result(client.ping(1))
    w.endpoints[0].refusing = False
    w.advance(1)
    assert w.settle(client.ping(2)) == 2
