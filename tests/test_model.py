"""
A model-based test of a server and its clients: random calls of every kind
of handler outcome, big and small, oneway or not, with client timeouts,
cancels, client and server disconnects and half-closes, checked against what
each caller must get.

The state machine runs txthrift's own client and server protocols against
each other in memory (L{twisted.test.iosim}) on one L{Clock}, so that every
interleaving it finds replays exactly; a short test over real loopback
sockets checks the same invariants on the reactor.

Invariants: every call's Deferred fires exactly once, with its own argument
echoed back (which proves no cross-talk) or an error of the class its path
calls for; a call over the client's max_frame_size fails at once, unsent; a
oneway call is never answered; a connection closes only when something the
test did allows it; a half-closed client still gets its replies; and once a
connection is gone, its server side holds nothing: no request in flight or
queued, no handler Deferred left running, and at the end no timer left in
the clock.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest_twisted
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorTime
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect

import txthrift
from tests._hardening import until
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Oops
from txthrift import (
    CallTimeout,
    ClientFactory,
    ClientProtocol,
    Limits,
    ServerFactory,
    ServerProtocol,
)

# ---------------------------------------------------------------------------
# The handler: what each call does is written in its argument.
# ---------------------------------------------------------------------------

#: What a handler may do with a call.  C{value} answers the argument itself;
#: C{declared} raises the declared C{Oops} carrying it; C{app} raises a
#: C{TApplicationException} carrying it; C{undeclared} raises anything else;
#: C{cancelled} raises C{CancelledError} itself; C{badValue} returns an int
#: where a string is declared; C{badDeclared} raises an C{Oops} that cannot be
#: encoded; C{inflate} answers more than the client's C{max_frame_size};
#: C{never} never answers.
MODES = ("value", "declared", "app", "undeclared", "cancelled", "badValue", "badDeclared",
         "inflate", "never")
ONEWAY_MODES = ("value", "undeclared", "never")
#: How it gets there: C{sync} returns or raises; C{done} returns an already
#: fired Deferred; C{later} returns a Deferred the test fires; C{coro} is a
#: coroutine awaiting a Deferred the test fires.
TIMINGS = ("sync", "done", "later", "coro")
#: The modes whose callers get C{INTERNAL_ERROR}.
INTERNAL = frozenset(("undeclared", "cancelled", "badValue", "badDeclared"))
#: What a call may do, and how: a C{never} call returns a Deferred.
KINDS = [(mode, timing) for mode in MODES for timing in TIMINGS
         if mode != "never" or timing in ("later", "coro")]
ONEWAY_KINDS = [(mode, timing) for mode, timing in KINDS if mode in ONEWAY_MODES]
#: The clients' max_frame_size (the server keeps its default, 16 MiB): an
#: argument of C{OVERSIZED} bytes is over it, and so is an inflated reply.
CLIENT_MAX = 256 * 1024
OVERSIZED = CLIENT_MAX + 1
INFLATE = CLIENT_MAX


def argument(ident: int, mode: str, timing: str, size: int) -> str:
    """
    The string a call carries: its own id (echoed back), what the handler is
    to do, and C{size} bytes of padding.
    """
    return f"{ident}|{mode}|{timing}|" + "x" * size


@dataclass
class Started:
    """
    A handler call that answers when the test says so (or never).
    """

    ident: int
    mode: str
    timing: str
    arg: str
    deferred: Deferred[Any]


def outcome(mode: str, arg: str) -> Any:
    """
    Return or raise what C{mode} asks for.
    """
    if mode == "value":
        return arg
    if mode == "declared":
        raise Oops(why=arg, code=1)
    if mode == "app":
        raise TApplicationException(TApplicationException.INVALID_TRANSFORM, arg)
    if mode == "undeclared":
        raise RuntimeError(f"undeclared failure of {arg[:20]}")
    if mode == "cancelled":
        raise CancelledError(f"the handler's own cancellation in {arg[:20]}")
    if mode == "badValue":
        return 12345
    if mode == "badDeclared":
        raise Oops(why=12345, code=1)
    if mode == "inflate":
        return arg + "y" * INFLATE
    raise AssertionError(mode)


class ModelHandler(Echo.Iface):
    """
    An C{Echo} whose C{fail} (two-way) and C{fire} (oneway) do what their
    argument says (see L{argument}).

    @ivar runs: how many times each call id reached the handler.
    @ivar started: the calls waiting for the test to answer them.
    """

    def __init__(self) -> None:
        self.runs: dict[int, int] = {}
        self.started: dict[int, Started] = {}

    def fail(self, kind: str) -> Any:
        return self._run(kind)

    def fire(self, message: str) -> Any:
        return self._run(message)

    def _run(self, arg: str) -> Any:
        ident, mode, timing, _ = arg.split("|", 3)
        key = int(ident)
        self.runs[key] = self.runs.get(key, 0) + 1
        if timing == "sync":
            return outcome(mode, arg)
        if timing == "done":
            try:
                return succeed(outcome(mode, arg))
            except Exception:
                return fail()
        waiting: Deferred[Any] = Deferred()
        self.started[key] = Started(key, mode, timing, arg, waiting)
        if timing == "later":
            return waiting

        async def answer() -> Any:
            await waiting
            return outcome(mode, arg)

        return answer()

    def answer(self, ident: int) -> None:
        """
        Let a started call finish as its mode says.
        """
        started = self.started[ident]
        assert started.mode != "never"
        if started.timing == "coro":
            started.deferred.callback(None)
            return
        try:
            value = outcome(started.mode, started.arg)
        except Exception:
            started.deferred.errback(Failure())
        else:
            started.deferred.callback(value)

    def unanswered(self) -> list[Started]:
        return [s for s in self.started.values() if not s.deferred.called]


# ---------------------------------------------------------------------------
# What each caller may get.
# ---------------------------------------------------------------------------

@dataclass
class Call:
    """
    One call as its caller sees it, and what it got.
    """

    ident: int
    conn: int
    mode: str
    timing: str
    arg: str
    oneway: bool
    deadline: float | None
    deferred: Deferred[Any]
    framed: bool = True
    outcomes: list[Any] = field(default_factory=list)
    #: The time by the test's clock when it fired.
    firedAt: float | None = None
    cancelled: bool = False
    checked: bool = False

    @property
    def oversized(self) -> bool:
        return len(self.arg) > CLIENT_MAX

    @property
    def fired(self) -> bool:
        return bool(self.outcomes)


def describeOutcome(value: Any) -> str:
    if isinstance(value, Failure):
        error = value.value
        detail = getattr(error, "type", "")
        return f"{type(error).__name__}({detail!r}, {str(error)[:80]!r})"
    return repr(value)[:80]


def wrongOutcome(call: Call, got: Any, *, now: float, clientLost: bool,
                 callTimeout: float | None) -> str | None:
    """
    Why C{got} is not what C{call}'s caller may get, or C{None} if it is.
    """
    if call.oversized:
        if isinstance(got, Failure) and isinstance(got.value, TTransportException) and (
                got.value.type == TTransportException.SIZE_LIMIT
                and "max_frame_size" in str(got.value)):
            return None
        return "a call over max_frame_size that did not fail at once with SIZE_LIMIT"
    if call.oneway:
        return None if got is None else "a oneway call must fire with None once sent"
    if not isinstance(got, Failure):
        if call.mode == "value" and got == call.arg:
            return None
        return "a result that is not the call's own argument"
    error = got.value
    if isinstance(error, TTransportException) and error.type == TTransportException.SIZE_LIMIT:
        if call.mode == "inflate" and call.framed:
            return None if "max_frame_size" in str(error) else "SIZE_LIMIT not naming the limit"
        return "SIZE_LIMIT for a call and reply within the limits"
    if isinstance(error, CancelledError):
        return None if call.cancelled else "CancelledError for a call nobody cancelled"
    if isinstance(error, CallTimeout):
        if call.deadline is not None and call.deadline <= now:
            return None
        return "CallTimeout before its deadline"
    if isinstance(error, TTransportException):
        if clientLost and error.type == TTransportException.NOT_OPEN:
            return None
        return "a transport error while the connection is open"
    if isinstance(error, Oops):
        return None if call.mode == "declared" and error.why == call.arg else "a wrong Oops"
    if isinstance(error, TApplicationException):
        message = str(error.message)
        if (callTimeout is not None and error.type == TApplicationException.INTERNAL_ERROR
                and "did not finish within" in message and call.timing in ("later", "coro")):
            return None
        if call.mode == "app":
            if error.type == TApplicationException.INVALID_TRANSFORM and message == call.arg:
                return None
        elif call.mode in INTERNAL and error.type == TApplicationException.INTERNAL_ERROR:
            return None
        return "a TApplicationException the handler's outcome does not call for"
    return "an error of a class no path should produce"


def recorder(call: Call, clock: IReactorTime) -> Callable[[Any], None]:
    def record(result: Any) -> None:
        call.outcomes.append(result)
        call.firedAt = clock.seconds()

    return record


def leakedReplies(events: list[dict[str, Any]]) -> list[str]:
    """
    Log events saying a reply was lost between handler and connection.
    """
    return [e["log_format"] for e in events if e.get("log_namespace") == "txthrift.server"
            and str(e.get("log_format", "")).startswith("replying to")]


# ---------------------------------------------------------------------------
# The in-memory state machine.
# ---------------------------------------------------------------------------

@dataclass
class Conn:
    """
    One client connection to the server, pumped in memory.
    """

    index: int
    client: ClientProtocol
    server: ServerProtocol
    pump: IOPump
    received: list[str] = field(default_factory=list)
    closing: Deferred[None] | None = None
    #: Why this connection may close: the test closed it, or something it
    #: allowed for (an idle timeout, an unframed reply over the limit).
    mayClose: str | None = None
    #: When the client shut down its sending side, if it did.
    halfClosedAt: float | None = None

    @property
    def halfClosed(self) -> bool:
        return self.halfClosedAt is not None

    @property
    def framed(self) -> bool:
        return self.client.transportName == "framed"

    @property
    def clientLost(self) -> bool:
        return self.client._lostReason is not None

    @property
    def serverLost(self) -> bool:
        return not self.server.connected

    def flush(self) -> bool:
        """
        Move bytes both ways until nothing moves; whether any did.
        """
        moved = False
        for _ in range(200):
            if not self.pump.pump(advanceClock=False):
                return moved
            moved = True
        raise AssertionError("the connection still chatters after 200 pumps")


#: Small arguments mostly, some big ones, and a few over the client's limit.
SIZES = st.sampled_from([0, 1, 2, 3, 5, 8, 12, 70_000, 70_000, OVERSIZED])
TIMEOUTS = st.sampled_from([None, None, 1.0, 4.0])
PICK = st.integers(0, 1000)


class ConnectionsModel(RuleBasedStateMachine):
    """
    One server factory, up to three client connections to it, one clock.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.handler = ModelHandler()
        self.conns: list[Conn] = []
        self.calls: list[Call] = []
        self.events: list[dict[str, Any]] = []
        self.observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(self.observer)
        self.factory: ServerFactory | None = None
        self.limits = Limits()

    @initialize(maxPending=st.sampled_from([1, 2, 128]),
                callTimeout=st.sampled_from([None, None, 3.0]),
                idleTimeout=st.sampled_from([None, None, 6.0]))
    def start(self, maxPending: int, callTimeout: float | None,
              idleTimeout: float | None) -> None:
        self.limits = Limits(max_pending=maxPending, call_timeout=callTimeout,
                             idle_timeout=idleTimeout)
        self.factory = ServerFactory(self.handler, service=Echo, clock=self.clock,
                                     limits=self.limits)

    def teardown(self) -> None:
        try:
            # After a failed step, its own error is the one to report.
            if self.factory is not None and sys.exc_info()[0] is None:
                self.finish()
        finally:
            globalLogPublisher.removeObserver(self.observer)

    # -- helpers ----------------------------------------------------------

    def live(self) -> list[Conn]:
        return [c for c in self.conns if not c.clientLost and not c.serverLost]

    def open(self) -> list[Conn]:
        """
        The live connections a call may be made on.
        """
        return [c for c in self.live() if not c.halfClosed]

    def pending(self) -> list[Call]:
        return [c for c in self.calls if not c.fired and not c.oneway]

    def fireable(self) -> list[Started]:
        # Only calls of live connections: a lost connection's are cancelled.
        alive = {c.index for c in self.live()}
        return [s for s in self.handler.unanswered()
                if s.mode != "never" and self.calls[s.ident].conn in alive]

    def check(self, call: Call) -> None:
        assert len(call.outcomes) <= 1, f"call {call.ident} fired {len(call.outcomes)} times"
        if call.checked or not call.fired:
            return
        conn = self.conns[call.conn]
        wrong = wrongOutcome(call, call.outcomes[0], now=self.clock.seconds(),
                             clientLost=conn.clientLost, callTimeout=self.limits.call_timeout)
        assert wrong is None, (
            f"call {call.ident} ({call.mode}/{call.timing}) got {wrong}: "
            f"{describeOutcome(call.outcomes[0])}")
        call.checked = True

    def send(self, conn: Conn, mode: str, timing: str, size: int, timeout: float | None,
             oneway: bool) -> Call:
        ident = len(self.calls)
        arg = argument(ident, mode, timing, size)
        client: Any = conn.client.client
        if oneway:
            d = client.fire(arg)
            deadline = None
        else:
            d = client.fail(arg, timeout=timeout)
            deadline = None if timeout is None else self.clock.seconds() + timeout
        call = Call(ident, conn.index, mode, timing, arg, oneway, deadline, d, conn.framed)
        self.calls.append(call)
        if mode == "inflate" and not conn.framed:
            # An unframed stream cannot skip a message: the client closes it.
            conn.mayClose = conn.mayClose or "an unframed reply over max_frame_size"
        d.addBoth(recorder(call, self.clock))
        if call.oversized:
            # Refused before anything is written: nothing else is affected.
            assert call.fired, f"call {ident}, over max_frame_size, did not fail at once"
            self.check(call)
        return call

    def settle(self) -> None:
        """
        Answer every call a handler holds (bar C{never}) and move every byte,
        until nothing changes.
        """
        for _ in range(len(self.calls) + 2):
            moved = False
            for started in self.fireable():
                self.handler.answer(started.ident)
                moved = True
            for conn in self.conns:
                moved = conn.flush() or moved
            if not moved:
                return
        raise AssertionError("still busy after answering every call")

    def checkSettled(self) -> None:
        """
        After L{settle}: every call of a live connection has its answer,
        unless its handler never answers or it waits behind C{max_pending}
        that never answer.
        """
        for conn in self.live():
            held = [s for s in self.handler.unanswered() if self.calls[s.ident].conn == conn.index]
            assert conn.server.inFlight == len(held), (
                f"connection {conn.index}: {conn.server.inFlight} in flight on the server,"
                f" {len(held)} handler calls unanswered")
            if len(held) >= self.limits.max_pending:
                continue
            assert not conn.server.queued, f"connection {conn.index}: requests left queued"
            for call in self.calls:
                if call.conn != conn.index:
                    continue
                if call.oversized:
                    assert call.ident not in self.handler.runs, (
                        f"call {call.ident}, over max_frame_size, was sent")
                    continue
                if call.mode == "never":
                    continue
                if call.oneway:
                    assert self.handler.runs.get(call.ident) == 1, (
                        f"oneway call {call.ident} ({call.mode}/{call.timing}) ran"
                        f" {self.handler.runs.get(call.ident, 0)} times")
                else:
                    assert call.fired, (
                        f"call {call.ident} ({call.mode}/{call.timing}) never fired on a live,"
                        " settled connection")

    def finish(self) -> None:
        self.settle()
        self.checkSettled()
        for conn in self.live():
            conn.mayClose = "the test is over"
            conn.client.close()
        for conn in self.conns:
            conn.flush()
        self.allChecks()
        for call in self.calls:
            assert call.fired, f"call {call.ident} ({call.mode}/{call.timing}) never fired"
        assert self.factory is not None
        assert not self.factory.connections, "the factory still counts closed connections"
        left = [getattr(call, "func", call) for call in self.clock.getDelayedCalls()]
        assert not left, f"timers left after every connection closed: {left}"

    # -- rules ------------------------------------------------------------

    @precondition(lambda self: self.factory is not None and len(self.live()) < 3)
    @rule(transport=st.sampled_from(["framed", "buffered"]),
          protocol=st.sampled_from(["binary", "compact", "json"]))
    def connect(self, transport: str, protocol: str) -> None:
        assert self.factory is not None
        server = self.factory.buildProtocol(None)
        client = ClientFactory(Echo, transport=transport, protocol=protocol, clock=self.clock,
                               limits=Limits(max_frame_size=CLIENT_MAX)).buildProtocol(None)
        # Every reply's method name, to see that no oneway call is answered.
        names: list[str] = []
        original = client.messageReceived
        probe = txthrift.Codec(protocol)

        def received(message: bytes) -> None:
            names.append(probe.readHeader(message)[1])
            original(message)

        client.messageReceived = received  # type: ignore[method-assign]
        pump = connect(server, FakeTransport(server, True), client, FakeTransport(client, False),
                       greet=False, clock=self.clock)
        self.conns.append(Conn(len(self.conns), client, server, pump, names))

    @precondition(lambda self: self.open())
    @rule(pick=PICK, kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=4),
          size=SIZES, timeout=TIMEOUTS)
    def call(self, pick: int, kinds: list[tuple[str, str]], size: int,
             timeout: float | None) -> None:
        conns = self.open()
        for kind in kinds:
            self.send(conns[pick % len(conns)], *kind, size, timeout, oneway=False)

    @precondition(lambda self: self.open())
    @rule(pick=PICK, kinds=st.lists(st.sampled_from(ONEWAY_KINDS), min_size=1, max_size=3),
          size=SIZES)
    def oneway(self, pick: int, kinds: list[tuple[str, str]], size: int) -> None:
        conns = self.open()
        for kind in kinds:
            call = self.send(conns[pick % len(conns)], *kind, size, None, oneway=True)
            assert call.fired, "a oneway call fires once sent"

    @precondition(lambda self: self.conns)
    @rule(pick=PICK, steps=st.integers(1, 3))
    def pump(self, pick: int, steps: int) -> None:
        conn = self.conns[pick % len(self.conns)]
        for _ in range(steps):
            conn.pump.pump(advanceClock=False)

    @precondition(lambda self: self.conns)
    @rule()
    def pumpAll(self) -> None:
        for conn in self.conns:
            conn.flush()

    @precondition(lambda self: self.fireable())
    @rule(pick=PICK)
    def answer(self, pick: int) -> None:
        ready = self.fireable()
        self.handler.answer(ready[pick % len(ready)].ident)

    @precondition(lambda self: self.pending())
    @rule(pick=PICK)
    def cancel(self, pick: int) -> None:
        pending = self.pending()
        call = pending[pick % len(pending)]
        call.cancelled = True
        call.deferred.cancel()
        assert call.fired and isinstance(call.outcomes[0], Failure), (
            f"cancelling call {call.ident} did not fail it")
        assert isinstance(call.outcomes[0].value, CancelledError), (
            f"cancelled call {call.ident} got {describeOutcome(call.outcomes[0])}")

    @precondition(lambda self: self.conns)
    @rule(seconds=st.sampled_from([0.5, 1.5, 5.0]))
    def advance(self, seconds: float) -> None:
        due = [c for c in self.pending()
               if c.deadline is not None and c.deadline <= self.clock.seconds() + seconds]
        self.clock.advance(seconds)
        for call in due:
            assert call.fired and isinstance(call.outcomes[0], Failure) and isinstance(
                call.outcomes[0].value, CallTimeout), (
                f"call {call.ident} past its deadline got"
                f" {describeOutcome(call.outcomes[0]) if call.fired else 'nothing'}")

    @precondition(lambda self: self.live())
    @rule(pick=PICK, side=st.sampled_from(["client", "server", "client half"]))
    def disconnect(self, pick: int, side: str) -> None:
        live = self.live()
        conn = live[pick % len(live)]
        if side == "client half":
            if not conn.halfClosed:
                self.halfClose(conn)
            return
        conn.mayClose = f"the {side} closed it"
        if side == "client":
            conn.closing = conn.client.close()
        else:
            transport: Any = conn.server.transport
            transport.loseConnection()

    def halfClose(self, conn: Conn) -> None:
        """
        The client shuts down its sending side, as Apache's blocking clients
        may: what it sent is delivered, then the server reads end of file.
        """
        conn.halfClosedAt = self.clock.seconds()
        if conn.pump.serverIO.disconnecting:
            # Too late: the server was closing it already (idle, say).
            conn.mayClose = "the server closed it"
        conn.mayClose = conn.mayClose or "half-closed"
        clientIO, serverIO = conn.pump.clientIO, conn.pump.serverIO
        data = clientIO.getOutBuffer()
        if data:
            serverIO.bufferReceived(data)
        clientIO.write = lambda data: None
        if IHalfCloseableProtocol.providedBy(conn.server):
            conn.server.readConnectionLost()
        else:
            # What Twisted does on end of file for a protocol that cannot
            # take half a connection.
            clientIO.loseConnection()

    @precondition(lambda self: self.conns)
    @rule()
    def settleAndCheck(self) -> None:
        self.settle()
        self.checkSettled()

    # -- invariants -------------------------------------------------------

    @invariant()
    def allChecks(self) -> None:
        for call in self.calls:
            self.check(call)
        assert self.handler.runs == {} or max(self.handler.runs.values()) == 1, (
            "a call reached its handler twice")
        for conn in self.conns:
            assert "fire" not in conn.received, f"connection {conn.index}: a oneway was answered"
            if conn.mayClose == "half-closed":
                # The server answers what a half-closed client sent; it may
                # give up on calls after a grace period, so only time
                # standing still since the half-close proves one lost.
                for call in self.calls:
                    if (call.conn == conn.index and call.fired
                            and call.firedAt == conn.halfClosedAt):
                        got = call.outcomes[0]
                        assert not (isinstance(got, Failure) and isinstance(
                            got.value, TTransportException) and got.value.type
                            == TTransportException.NOT_OPEN), (
                            f"call {call.ident} ({call.mode}/{call.timing}) of half-closed"
                            f" connection {conn.index} got no reply: {describeOutcome(got)}")
            if conn.clientLost:
                assert conn.mayClose or self.limits.idle_timeout is not None, (
                    f"connection {conn.index} closed unasked: {conn.client.refusal}")
                assert conn.client.pending == 0
                for call in self.calls:
                    assert call.conn != conn.index or call.fired, (
                        f"call {call.ident} of closed connection {conn.index} never fired")
                assert conn.closing is None or conn.closing.called
            if conn.serverLost:
                server = conn.server
                assert server not in (self.factory.connections if self.factory else ())
                held = [s.ident for s in self.handler.unanswered()
                        if self.calls[s.ident].conn == conn.index]
                assert not held, (
                    f"connection {conn.index} is closed, handler calls {held} still running")
                assert server.inFlight == 0, (
                    f"connection {conn.index} is closed with {server.inFlight} in flight")
                assert not server.queued, f"connection {conn.index} is closed with a queue"
        leaked = leakedReplies(self.events)
        assert not leaked, f"replies lost on the server: {leaked}"


def test_modelInMemory() -> None:
    """
    Random calls, answers, timeouts, cancels and disconnects on in-memory
    connections: every caller gets exactly its own outcome, and a closed
    connection leaves nothing behind on the server.
    """
    run_state_machine_as_test(
        ConnectionsModel,
        settings=settings(max_examples=500, stateful_step_count=50, deadline=None))


# ---------------------------------------------------------------------------
# The same invariants over real loopback sockets.
# ---------------------------------------------------------------------------

WAIT = 10.0


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


async def allFired(calls: list[Call], what: str) -> None:
    """
    Wait until every call in C{calls} has fired, or fail naming those that
    did not.
    """
    try:
        await until(lambda: all(call.fired for call in calls), WAIT, what)
    except AssertionError:
        missing = [f"{call.ident} ({call.mode}/{call.timing})" for call in calls
                   if not call.fired]
        raise AssertionError(f"{what}: calls {', '.join(missing)} never fired") from None


@pytest_twisted.ensureDeferred
async def test_modelOverRealSockets() -> None:
    """
    Every mode and timing on real loopback connections (three: each
    transport and protocol once), with timeouts, a cancel, calls over the
    client's limit, and each side closing a connection with calls in flight.
    """
    reactor = _reactor()
    handler = ModelHandler()
    events: list[dict[str, Any]] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    # A closed client looks half-closed to a server, which gives its calls
    # half_closed_timeout to be answered (and idle_timeout to be sent): both
    # kept short here, well within the WAIT the test gives the server.
    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", handler, service=Echo,
                                idle_timeout=1.0, half_closed_timeout=1.0)
    factory: ServerFactory = port.factory
    address = f"tcp:host=127.0.0.1:port={port.getHost().port}"
    clients: list[Any] = [
        await txthrift.connect(reactor, address, Echo, transport=transport, protocol=protocol,
                               max_frame_size=CLIENT_MAX)
        for transport, protocol in [("framed", "binary"), ("buffered", "compact"),
                                    ("framed", "json")]]
    calls: list[tuple[Call, Any]] = []

    def send(which: int, mode: str, timing: str, size: int = 3, timeout: float | None = None,
             oneway: bool = False) -> Call:
        ident = len(calls)
        arg = argument(ident, mode, timing, size)
        client = clients[which]
        d = client.fire(arg) if oneway else client.fail(arg, timeout=timeout)
        deadline = None if timeout is None else reactor.seconds() + timeout
        call = Call(ident, which, mode, timing, arg, oneway, deadline, d)
        calls.append((call, client))
        d.addBoth(recorder(call, reactor))
        return call

    try:
        # Client 1 will close with calls in flight, and the server will close
        # client 2's (sent first, so that neither is idle meanwhile).
        send(1, "never", "later")
        send(1, "value", "coro")
        send(2, "never", "coro")
        send(2, "value", "later", size=70_000)
        # Client 0 gets every mode and timing, big and small, and stays up.
        for mode in MODES:
            for timing in TIMINGS:
                if mode != "never" or timing in ("later", "coro"):
                    send(0, mode, timing, size=70_000 if timing == "done" else 5,
                         timeout=0.5 if mode == "never" else None)
        for mode in ONEWAY_MODES:
            send(0, mode, "later" if mode == "never" else "sync", oneway=True)
        oversized = [send(0, "value", "sync", size=OVERSIZED, oneway=oneway)
                     for oneway in (False, True)]
        assert all(call.fired for call in oversized)
        cancelled = send(0, "value", "later")
        await until(lambda: cancelled.ident in handler.started, WAIT, "the call to be started")
        cancelled.cancelled = True
        cancelled.deferred.cancel()
        expected = sum(1 for call, _ in calls
                       if call.timing in ("later", "coro") and not call.oneway or
                       call.oneway and call.mode == "never")
        await until(lambda: len(handler.started) == expected, WAIT, "every call to be started")
        await clients[1].close()
        (server2,) = [p for p in factory.connections if p.protocolName == "json"]
        transport: Any = server2.transport
        transport.loseConnection()
        await until(lambda: clients[2].protocol._lostReason is not None, WAIT,
                    "client 2 to be closed")
        await until(lambda: len(factory.connections) == 1, WAIT, "the server to drop both")
        for started in handler.unanswered():
            if started.mode != "never" and calls[started.ident][0].conn == 0:
                handler.answer(started.ident)
        await allFired([call for call, _ in calls], "every call")
        for call, client in calls:
            lost = client.protocol._lostReason is not None
            wrong = wrongOutcome(call, call.outcomes[0], now=reactor.seconds(), clientLost=lost,
                                 callTimeout=None)
            assert wrong is None, (f"call {call.ident} ({call.mode}/{call.timing}) got {wrong}:"
                                   f" {describeOutcome(call.outcomes[0])}")
            assert len(call.outcomes) == 1
        assert max(handler.runs.values()) == 1
        assert not [call.ident for call in oversized if call.ident in handler.runs]
        # The closed connections' handler calls were cancelled, and the live
        # one holds only its never-answering calls.
        closed = [s.ident for s in handler.unanswered() if calls[s.ident][0].conn != 0]
        assert closed == [], f"handler calls of closed connections still running: {closed}"
        (server0,) = factory.connections
        held = [s for s in handler.unanswered() if calls[s.ident][0].conn == 0]
        assert server0.inFlight == len(held) and not server0.queued
    finally:
        for client in clients:
            await client.close()
        await until(lambda: not factory.connections, WAIT, "the server to see every client go")
        await port.stopListening()
        globalLogPublisher.removeObserver(observer)
    assert [s.ident for s in handler.unanswered()] == [], "handler calls left running"
    assert leakedReplies(events) == []
