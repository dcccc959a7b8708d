"""
The resilient client: one service's calls spread over many endpoints, each
kept connected by Twisted's C{ClientService}, balanced by the power of two
choices, failing endpoints ejected and probed back, and calls retried on
another endpoint only when that is safe, within a retry budget.

Owned here: L{connectPool}, L{PoolClient}, L{RetryBudget} and
L{PoolUnavailable}.  It builds on L{txthrift._client} (one connection's
calls, timeouts, cancellation) and L{txthrift._hosting} (endpoint strings);
it knows nothing of servers.

What "never written" means here: a call counts as written from the moment
the pool hands it to a connection's L{ClientProtocol.call}, even if its
bytes still wait in a buffer, because from then on the pool cannot know
whether the server read it.  Only a call that was never handed to any
connection (none was up, or the one chosen refused it as not open) is
unwritten, and only such a call, or one of a method named in
C{idempotent}, is ever sent again.
"""

from __future__ import annotations

import random as _random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any, cast

from thrift.transport.TTransport import TTransportException
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IReactorTime,
    IResolutionReceiver,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._client import CallTimeout, Client, ClientFactory, ClientProtocol
from ._hosting import _clientEndpoint, oneLine
from ._limits import Limits
from ._service import Method, describe

__all__ = ["PoolClient", "PoolUnavailable", "RetryBudget", "connectPool"]

log = Logger(namespace="txthrift.pool")

#: The most times one call is sent (or tried), whatever the budget says.
MOST_ATTEMPTS = 8

#: How long L{connectPool} waits for every member to connect or fail before
#: it gives the client, if one is up by then.
STARTUP_GRACE = 1.0


class PoolUnavailable(TTransportException):
    """
    A call could not be placed on any connection: every endpoint is
    connecting, down, ejected or removed, or the pool is closed.  Nothing
    was sent.

    @ivar states: each endpoint's description and its state, as the
        message names them.
    """

    def __init__(self, message: str, states: dict[str, str]) -> None:
        super().__init__(TTransportException.NOT_OPEN, message)
        self.states = states


class RetryBudget:
    """
    How many retries a pool may make: within any C{window} seconds, a
    C{share} of the calls made in them, plus a reserve of C{minPerSecond}
    times C{window} (so that a client making few calls can still retry
    some).  As in Finagle's C{RetryBudget}, whose reserve is the same, the
    reserve is not spread over the window: all of it may be spent in one
    second, and then none until the window moves on.  An outage does not
    multiply the load it meets by the number of attempts a call may make.

    Calls and retries are counted per whole second of C{clock}, so its
    memory is C{window} counters whatever the rate.
    """

    def __init__(self, clock: IReactorTime, share: float = 0.2, minPerSecond: float = 10.0,
                 window: float = 10.0) -> None:
        if share < 0 or minPerSecond < 0 or window <= 0:
            raise ValueError("a retry budget needs share >= 0, minPerSecond >= 0, window > 0")
        self._clock = clock
        self.share = share
        self.minPerSecond = minPerSecond
        self.window = window
        # [second, calls, retries], oldest first, and their sums.
        self._seconds: deque[list[int]] = deque()
        self._calls = self._retries = 0

    def _now(self) -> list[int]:
        second = int(self._clock.seconds())
        seconds = self._seconds
        while seconds and seconds[0][0] <= second - self.window:
            _, calls, retries = seconds.popleft()
            self._calls -= calls
            self._retries -= retries
        if not seconds or seconds[-1][0] != second:
            seconds.append([second, 0, 0])
        return seconds[-1]

    def deposit(self) -> None:
        """
        Count one call (not a retry).
        """
        # Once per call: the second's counters are reused while it lasts.
        seconds = self._seconds
        if seconds and seconds[-1][0] == int(self._clock.seconds()):
            seconds[-1][1] += 1
        else:
            self._now()[1] += 1
        self._calls += 1

    def tryWithdraw(self) -> bool:
        """
        Take one retry from the budget.

        @return: whether there was one to take.
        """
        now = self._now()
        if self._retries + 1 > self.minPerSecond * self.window + self.share * self._calls:
            return False
        now[2] += 1
        self._retries += 1
        return True

    def balance(self) -> float:
        """
        How many retries could be made now.
        """
        self._now()
        return self.minPerSecond * self.window + self.share * self._calls - self._retries


@implementer(IHandshakeListener)
class _PoolConnection(ClientProtocol):
    """
    One connection of a pool: tells its slot when it is up and, before its
    pending calls fail, when it is lost, so that no retry picks it.

    Up means usable: connected, and over TLS once the handshake is done
    (Twisted's TLS tells a protocol providing C{IHandshakeListener}), so an
    endpoint whose certificate is refused never counts as up.
    """

    slot: _Slot
    #: Whether it is usable and not lost: only then are calls sent on it.
    isOpen = False

    def connectionMade(self) -> None:
        super().connectionMade()
        if not ISSLTransport.providedBy(self.transport):
            self.handshakeCompleted()

    def handshakeCompleted(self) -> None:
        if self._lostReason is None:
            self.isOpen = True
            self.slot.connectionUp(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.isOpen = False
        self.slot.connectionDown(self, reason, self._answered or self._closing)
        super().connectionLost(reason)


class _PoolFactory(ClientFactory):
    """
    Builds the L{_PoolConnection}s of one slot.
    """

    def __init__(self, slot: _Slot, service: ModuleType, **options: Any) -> None:
        super().__init__(service, **options)
        self.slot = slot

    def buildProtocol(self, addr: Any) -> _PoolConnection:
        proto = _PoolConnection(self.clock, self.transport, self.protocolName, self.limits,
                                headers=self.headers, transforms=self.transforms)
        proto.factory = self
        proto.slot = self.slot
        return proto


@implementer(IStreamClientEndpoint)
class _Watched:
    """
    An endpoint whose connection attempts an L{_Endpoint} hears of.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, member: _Endpoint) -> None:
        self._endpoint = endpoint
        self._member = member

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        def failed(failure: Failure) -> Failure:
            if not failure.check(CancelledError):
                self._member.connectFailed(failure)
            return failure

        return self._endpoint.connect(protocolFactory).addErrback(failed)


class _Slot:
    """
    One kept connection of an endpoint: its C{ClientService} and, while it
    is up, its connection.
    """

    def __init__(self, member: _Endpoint) -> None:
        self.member = member
        self.connection: _PoolConnection | None = None
        pool = member.pool
        factory = _PoolFactory(self, pool.service, **pool.factoryOptions)
        self.service = ClientService(_Watched(member.endpoint, member), factory,
                                     retryPolicy=pool.retryPolicy, clock=pool.clock)

    def connectionUp(self, connection: _PoolConnection) -> None:
        self.connection = connection
        self.member.connections.append(connection)
        self.member.connected()

    def connectionDown(self, connection: _PoolConnection, reason: Failure, fine: bool) -> None:
        """
        A connection was lost.  Unless it had a reply, or the pool closed
        it, that is a failure of the endpoint's (a server that accepts and
        then closes, a TLS handshake refused or cut short), unless it was up,
        idle and closed cleanly (a server drained, or a balancer's idle
        timeout).
        """
        member = self.member
        wasUp = self.connection is connection
        if wasUp:
            self.connection = None
            member.connections.remove(connection)
        if not fine and not member.removed and (
                not wasUp or connection.pending or not reason.check(ConnectionDone)):
            member.connectFailed(reason)
        else:
            member.pool.noticeChange()


class _Endpoint:
    """
    One member of a pool: its slots, and whether calls may go to it.

    Its consecutive failures (connection attempts that failed, connections
    lost before any reply, calls that timed out) eject it for C{ejectFor}
    seconds once there are C{ejectAfter} of them; then it is probed: one
    call at a time goes to it until one is answered.  Calls that time out
    together are one failure, not many: a timeout counts only for a call
    sent after the endpoint's last reply and its last failure (see
    L{_Attempts._charge}).
    """

    def __init__(self, pool: _Pool, key: object, description: str,
                 endpoint: IStreamClientEndpoint, connections: int) -> None:
        self.pool = pool
        self.key = key
        self.description = description
        self.endpoint = endpoint
        self.failures = 0
        #: Counts its replies and failures: a call remembers it when sent.
        self.events = 0
        self.lastError: str | None = None
        self.ejectedUntil: float | None = None
        self.probing = False
        self.removed = False
        self.stopping: Deferred[Any] | None = None
        #: Its connections that are up.
        self.connections: list[_PoolConnection] = []
        self.slots = [_Slot(self) for _ in range(connections)]
        for slot in self.slots:
            slot.service.startService()

    def load(self) -> int:
        """
        The calls awaiting their reply on its connections.
        """
        connections = self.connections
        if len(connections) == 1:
            return connections[0].pending
        return sum(connection.pending for connection in connections)

    def placeable(self, now: float) -> bool:
        if self.removed or not self.connections:
            return False
        return self.ejectedUntil is None or (now >= self.ejectedUntil and not self.probing)

    def settled(self) -> bool:
        """
        Whether every one of its connections is up, or it has failed.
        """
        return self.lastError is not None or len(self.connections) == len(self.slots)

    def connected(self) -> None:
        self.lastError = None
        self.pool.noticeChange()

    def connectFailed(self, failure: Failure) -> None:
        self.lastError = oneLine(cast(BaseException, failure.value))
        self.failed()
        self.pool.noticeChange()

    def failed(self) -> None:
        """
        One more failure in a row: past C{ejectAfter}, eject it (again).
        """
        self.failures += 1
        self.events += 1
        self.probing = False
        pool = self.pool
        if self.failures >= pool.ejectAfter and not self.removed:
            if self.ejectedUntil is None:
                log.warn("ejecting {endpoint} for {seconds}s after {count} failures in a row",
                         endpoint=self.description, seconds=pool.ejectFor, count=self.failures)
            self.ejectedUntil = pool.clock.seconds() + pool.ejectFor
            pool.refresh()

    def answered(self) -> None:
        """
        A reply came: it is healthy.
        """
        self.failures = 0
        self.probing = False
        if self.ejectedUntil is not None:
            log.info("{endpoint} is back", endpoint=self.description)
            self.ejectedUntil = None
            self.pool.refresh()

    def state(self, now: float) -> str:
        up = len(self.connections)
        if self.removed:
            return "removed"
        if self.ejectedUntil is not None and now < self.ejectedUntil:
            return (f"ejected for {self.ejectedUntil - now:.1f}s more after {self.failures}"
                    f" failures in a row{self._last()}")
        if self.probing:
            return "probing: its one trial call has no reply yet"
        if up:
            return f"up ({up} connection{'s' if up > 1 else ''})"
        return f"connecting{self._last()}"

    def _last(self) -> str:
        return f" (last error: {self.lastError})" if self.lastError else ""

    def stop(self) -> Deferred[Any]:
        """
        Stop keeping its connections, closing them: closed by the client
        first, so that calls in flight fail saying the pool closed them,
        not the server.
        """
        if self.stopping is None:
            self.removed = True
            self.pool.leaving.pop(self.key, None)
            for connection in list(self.connections):
                connection.close()
            self.stopping = DeferredList([s.service.stopService() for s in self.slots],
                                         consumeErrors=True)
        return self.stopping


def _pendingOf(connection: ClientProtocol) -> int:
    return connection.pending


def _notOpen(failure: Failure) -> bool:
    """
    Whether a call failed because its connection is not, or no longer, open.
    """
    error = failure.value
    return isinstance(error, TTransportException) and error.type == TTransportException.NOT_OPEN


class _Attempts:
    """
    One call through a pool: placed, and maybe placed again, until it has
    its outcome.  Each attempt's Deferred is chained to the one before, so
    that the caller's Deferred is the first attempt's, and cancelling it
    cancels whichever attempt is under way.
    """

    # Made for every call: the fewest objects it can be (each one allocated
    # brings the collector's next pass nearer).
    __slots__ = ("args", "deadline", "given", "kwargs", "member", "method", "name", "options",
                 "pool", "sent", "timeout", "tried")

    def __init__(self, pool: _Pool, method: Method, name: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any], timeout: float | None,
                 options: dict[str, Any] | None) -> None:
        self.pool = pool
        self.method = method
        self.name = name
        self.args = args
        self.kwargs = kwargs
        self.timeout = timeout
        self.options = options
        self.deadline = None if timeout is None else pool.clock.seconds() + timeout
        #: The member of the latest attempt, and (once retried) of every one.
        self.member: _Endpoint | None = None
        self.tried: list[_Endpoint] | None = None
        #: The member's C{events} when the latest attempt was sent, and the
        #: seconds that attempt was given.
        self.sent = 0
        self.given: float | None = None

    def place(self, retrying: Failure | None = None) -> Deferred[Any]:
        """
        Send the call on the best connection (again, after C{retrying}).

        @return: a Deferred of its outcome, after any attempts to come.
        @raise TypeError: for arguments the method does not take, when no
            connection can take the call (otherwise the connection raises it).
        """
        pool = self.pool
        remaining = None
        if self.deadline is not None:
            remaining = self.deadline - pool.clock.seconds()
            if remaining <= 0:
                return fail(self._timedOut())
        tried = self.tried
        if retrying is not None and tried is None:
            tried = self.tried = [cast(_Endpoint, self.member)]
        connection = pool.pick(tried)
        if connection is None:
            if self.member is None:
                self.method.args(*self.args, **self.kwargs)  # TypeError, as connect's raises
            if retrying is not None and self.member is not None:
                return fail(self._notAgain(retrying, f"no other endpoint can take it now"
                                                     f" ({pool.named()})"))
            return fail(pool.unavailable(self.method.name))
        if retrying is not None:
            if not pool.budget.tryWithdraw():
                return fail(self._notAgain(retrying, "the retry budget is spent"))
            pool.retries += 1
        member = self.member = connection.slot.member
        if tried is not None:
            tried.append(member)
        self.sent = member.events
        self.given = remaining
        if self.options is None:
            attempt = connection.call(self.method, self.name, self.args, self.kwargs, remaining)
        else:
            attempt = connection.call(self.method, self.name, self.args, self.kwargs, remaining,
                                      **self.options)
        if self.method.oneway:
            return attempt
        if attempt.called:
            return attempt.addErrback(self._refused, connection)
        if member.ejectedUntil is not None:
            member.probing = True
        return attempt.addBoth(self._ended)

    def attempts(self) -> int:
        """
        How many times the call was sent (or handed to a connection).
        """
        return len(self.tried) if self.tried else int(self.member is not None)

    def _refused(self, failure: Failure, connection: _PoolConnection) -> Any:
        """
        The connection failed the call at once, so nothing was written: if
        it was not open, the call goes elsewhere; otherwise (it cannot be
        encoded, or is over C{max_frame_size}) it fails.
        """
        if not connection.isOpen and _notOpen(failure):
            return self._again(failure, written=False)
        return failure

    def _ended(self, outcome: Any) -> Any:
        member = self.member
        assert member is not None
        try:
            if isinstance(outcome, Failure):
                if outcome.check(CallTimeout):
                    self._charge(member)
                    return Failure(self._timedOut())
                if _notOpen(outcome):
                    member.probing = False
                    return self._again(outcome, written=True)
                if outcome.check(CancelledError):
                    member.probing = False
                    return outcome
            member.events += 1
            if member.failures or member.probing or member.ejectedUntil is not None:
                member.answered()
            return outcome
        finally:
            if member.removed and member.stopping is None and not member.load():
                self.pool.retire(member)

    def _charge(self, member: _Endpoint) -> None:
        """
        Count a timeout against C{member}, if it is its fault: not if a
        reply or another failure came from it since the call was sent (it
        was answering, or this is one of many calls timing out together),
        nor if the attempt had less than half the call's timeout (the tail
        of a deadline spent elsewhere).
        """
        member.probing = False
        if self.sent != member.events:
            return
        if self.given is not None and self.timeout and self.given < self.timeout / 2:
            return
        member.failed()

    def _again(self, failure: Failure, written: bool) -> Any:
        """
        Place the call again if that is safe and allowed, or fail it.
        """
        why = self.pool.whyNotRetry(self.method, written, self.attempts())
        if why is None:
            return self.place(failure)
        return self._notAgain(failure, why)

    def _notAgain(self, failure: Failure, why: str) -> Failure:
        """
        C{failure}, as a C{NOT_OPEN} error saying why it was not retried.
        """
        error = failure.value
        message = error.message if isinstance(error, TTransportException) else str(error)
        return Failure(TTransportException(TTransportException.NOT_OPEN,
                                           f"{message}; not sent again: {why}"))

    def _timedOut(self) -> CallTimeout:
        tries = self.attempts()
        return CallTimeout(f"{self.method.name} got no reply within {self.timeout} seconds"
                           f" ({tries} attempt{'s' if tries != 1 else ''})")


class _Pool:
    """
    What a L{PoolClient} calls through, in place of one L{ClientProtocol}:
    the members, the balancer, the budget.
    """

    def __init__(self, reactor: Any, service: ModuleType, *, idempotent: Iterable[str],
                 budget: RetryBudget, connections: int, ejectAfter: int, ejectFor: float,
                 retryPolicy: Callable[[int], float], random: Any,
                 factoryOptions: dict[str, Any]) -> None:
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.service = service
        spec = describe(service)
        unknown = sorted(set(idempotent) - set(spec.methods))
        if unknown:
            raise ValueError(f"idempotent names no method of {spec.name}: {', '.join(unknown)}")
        self.idempotent = frozenset(idempotent)
        self.budget = budget
        self.connections = connections
        self.ejectAfter = ejectAfter
        self.ejectFor = ejectFor
        self.retryPolicy = retryPolicy
        self.random: Callable[[], float] = random.random
        self.factoryOptions = factoryOptions
        #: The members by key: an endpoint string, or the endpoint object.
        self.members: dict[object, _Endpoint] = {}
        #: Members left out by L{replace} and not yet stopped: they take
        #: calls only while no member is up, and close once none is pending.
        self.leaving: dict[object, _Endpoint] = {}
        #: The members up and not ejected, and whether any is ejected.
        self.ready: list[_Endpoint] = []
        self.anyEjected = False
        self.closed = False
        #: How many calls were made, and how many times any was sent again.
        self.calls = self.retries = 0
        #: How many times the membership was asked for: the latest wins.
        self.generation = 0
        self._waiting: list[Deferred[None]] = []
        self._grace: IDelayedCall | None = None

    def call(self, method: Method, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
             timeout: float | None, *, headers: Any = None,
             replyHeaders: bool = False) -> Deferred[Any]:
        """
        L{ClientProtocol.call}, placed on the best connection of the pool,
        and placed again where that is safe.
        """
        options = None
        if headers is not None or replyHeaders:
            options = {"headers": headers, "replyHeaders": replyHeaders}
        self.calls += 1
        self.budget.deposit()
        return _Attempts(self, method, name, args, kwargs, timeout, options).place()

    def pick(self, tried: Sequence[_Endpoint] | None) -> _PoolConnection | None:
        """
        The less loaded of two members chosen at random among those that may
        take a call (those not yet tried by this call, if there are any),
        and its least loaded connection.

        When none may, because every member that is up is ejected or
        probing, those take calls all the same (Finagle's panic mode): an
        ejection keeps load off one bad endpoint among good ones, and must
        not turn a slowdown of every endpoint into refusing every call.
        When no member is up, members left out by L{replace} that still are
        take the call.
        """
        # Once per call: the common case (no member ejected, first attempt)
        # builds no list.
        if self.closed:
            return None
        candidates = self.ready
        if self.anyEjected:
            now = self.clock.seconds()
            candidates = [m for m in self.members.values() if m.placeable(now)]
        if not candidates:
            candidates = ([m for m in self.members.values() if m.connections]
                          or [m for m in self.leaving.values() if m.connections])
        if tried:
            candidates = [m for m in candidates if m not in tried] or candidates
        count = len(candidates)
        if count > 1:
            draw = self.random
            first = int(draw() * count)
            second = int(draw() * (count - 1))
            if second >= first:
                second += 1
            a, b = candidates[first], candidates[second]
            member = a if a.load() <= b.load() else b
        elif count:
            member = candidates[0]
        else:
            return None
        connections = member.connections
        if len(connections) == 1:
            return connections[0]
        return min(connections, key=_pendingOf)

    def refresh(self) -> None:
        """
        Work out again which members take calls with no question asked:
        those up and not ejected.
        """
        members = self.members.values()
        self.ready = [m for m in members if m.connections and m.ejectedUntil is None]
        self.anyEjected = any(m.ejectedUntil is not None for m in members)

    def whyNotRetry(self, method: Method, written: bool, tries: int) -> str | None:
        """
        Why a failed call must not be sent again, or C{None} if it may be
        (if there is somewhere to send it, and the budget allows).
        """
        if self.closed:
            return "the pool was closed"
        if written and method.name not in self.idempotent:
            return (f"{method.name} may have run (it was written to the connection) and is not"
                    " in idempotent=")
        if tries >= MOST_ATTEMPTS:
            return f"{tries} attempts made"
        return None

    def states(self) -> dict[str, str]:
        now = self.clock.seconds()
        return {m.description: m.state(now) for m in self.members.values()}

    def named(self) -> str:
        """
        Each endpoint and its state, for a message.
        """
        return "; ".join(f"{where}: {state}" for where, state in self.states().items()) or "none"

    def unavailable(self, what: str | None) -> PoolUnavailable:
        """
        Why a call of C{what} (or, for C{None}, the pool's first
        connection) cannot be had, naming each endpoint's state.
        """
        states = self.states()
        doing = f"cannot call {what}" if what else "cannot connect"
        if self.closed:
            return PoolUnavailable(f"{doing}: the pool is closed", states)
        if what is None:
            return PoolUnavailable(f"{doing}: every endpoint failed ({self.named()})", states)
        return PoolUnavailable(f"{doing}: no endpoint can take it now ({self.named()})", states)

    def noticeChange(self) -> None:
        """
        A member connected, failed or was removed: retire the members left
        out once one is up; wake those waiting for the start once every
        member has connected or failed (or the grace is over and one is
        up), or fail them if every member has failed.
        """
        self.refresh()
        members = [m for m in self.members.values() if not m.removed]
        up = any(m.connections for m in members)
        if up and self.leaving:
            for member in list(self.leaving.values()):
                if not member.load():
                    member.stop()
        if not self._waiting:
            return
        if up and (self._grace is None or all(m.settled() for m in members)):
            self._release(None)
        elif self.closed or all(m.lastError for m in members):
            self._release(self.unavailable(None))

    def _release(self, error: PoolUnavailable | None) -> None:
        waiting, self._waiting = self._waiting, []
        if self._grace is not None:
            if self._grace.active():
                self._grace.cancel()
            self._grace = None
        for waiter in waiting:
            if error is None:
                waiter.callback(None)
            else:
                waiter.errback(error)

    def _graceOver(self) -> None:
        self._grace = None
        self.noticeChange()

    def whenReady(self, grace: float) -> Deferred[None]:
        """
        Wait until every member has connected or failed once, or C{grace}
        seconds have passed and one is up, so that the first calls do not
        all go to the first member up; cancelling the wait ends it.
        """
        def cancel(waiter: Deferred[None]) -> None:
            self._waiting.remove(waiter)
            if not self._waiting and self._grace is not None:
                self._grace.cancel()
                self._grace = None

        waiter: Deferred[None] = Deferred(cancel)
        self._waiting.append(waiter)
        if self._grace is None:
            self._grace = self.clock.callLater(grace, self._graceOver)
        self.noticeChange()
        return waiter

    def replace(self, endpoints: list[tuple[object, str, IStreamClientEndpoint]]) -> None:
        """
        Make C{endpoints} (key, description, endpoint) the members: new ones
        start connecting, kept ones keep their connections; the ones left
        out take calls only until a member is up, and close once their calls
        have ended.

        @raise PoolUnavailable: if the pool is closed.
        """
        if self.closed:
            raise self.unavailable("setEndpoints")
        wanted = {key: (description, endpoint) for key, description, endpoint in endpoints}
        for key, member in list(self.members.items()):
            if key not in wanted:
                del self.members[key]
                member.removed = True
                self.leaving[key] = member
        for key, (description, endpoint) in wanted.items():
            if key in self.members:
                continue
            back = self.leaving.pop(key, None)
            if back is not None and back.stopping is None:
                back.removed = False
                self.members[key] = back
            else:
                self.members[key] = _Endpoint(self, key, description, endpoint,
                                              self.connections)
        for member in list(self.leaving.values()):
            if not member.connections and not member.load():
                member.stop()
        self.noticeChange()

    def retire(self, member: _Endpoint) -> None:
        """
        A member left out has no call pending: stop it, unless it is still
        needed because no member is up.
        """
        if self.closed or any(m.connections for m in self.members.values()):
            member.stop()

    def close(self) -> Deferred[None]:
        self.closed = True
        members = [*self.members.values(), *self.leaving.values()]
        self.members = {}
        stopped = DeferredList([m.stop() for m in members], consumeErrors=True)
        self.noticeChange()
        return stopped.addCallback(lambda _: None)


def _poolOf(client: Client) -> _Pool:
    return cast(_Pool, client.protocol)


#: The L{PoolClient} subclass of each service module.
_poolClasses: dict[ModuleType, type[PoolClient]] = {}


class PoolClient(Client):
    """
    A client of one service over a pool of endpoints (see L{connectPool}):
    the same Deferred-returning methods as L{connect}'s client, with
    C{timeout=} per call a deadline across the call's attempts.  A service
    method named like one of the methods below wins, as with L{Client}:
    reach this one as C{PoolClient.setEndpoints(client, ...)}.

    @ivar pool: what the methods call through; its C{calls} and
        C{retries} count the calls made and the times any was sent again.
    """

    @property
    def pool(self) -> _Pool:
        return _poolOf(self)

    @classmethod
    def forService(cls, service: ModuleType) -> type[PoolClient]:
        sub = _poolClasses.get(service)
        if sub is None:
            base = Client.forService(service)
            sub = _poolClasses[service] = type(f"{base.service.name}PoolClient",
                                               (base, PoolClient), {})
        return sub

    def setEndpoints(self, endpoints: Any) -> Deferred[None]:
        """
        Replace the pool's endpoints (as L{connectPool} takes them): calls go
        to the new ones as they connect; the ones left out take calls only
        while none of the new ones is up, and close once one is and their
        own calls have ended.  An endpoint string, or the same endpoint
        object (an equal one, for a class defining equality), that is in
        both keeps its connections.

        @return: a Deferred firing once the new membership is in place
            (after resolving a C{dns:} name), or at once with nothing
            changed if a later call was made meanwhile (the last call wins);
            failing with L{PoolUnavailable} once the pool is closed, or
            with C{ValueError} for endpoints it cannot use.
        """
        pool = _poolOf(self)
        if pool.closed:
            return fail(pool.unavailable("setEndpoints"))
        pool.generation += 1
        generation = pool.generation

        def resolved(members: list[tuple[object, str, IStreamClientEndpoint]]) -> None:
            if generation == pool.generation:
                pool.replace(members)

        return _resolveAll(pool.reactor, endpoints).addCallback(resolved)

    def endpointStates(self) -> dict[str, str]:
        """
        Each endpoint's description and state: C{up (N connections)},
        C{connecting}, C{ejected ...}, C{probing ...}.
        """
        return _poolOf(self).states()

    def close(self) -> Deferred[None]:
        """
        Stop connecting and close every connection, those of endpoints
        left out by L{setEndpoints} too; calls in flight fail with a
        C{TTransportException} saying the pool was closed, and later ones
        with L{PoolUnavailable}.
        """
        return _poolOf(self).close()


_Members = list[tuple[object, str, IStreamClientEndpoint]]


def _resolveAll(reactor: Any, endpoints: Any) -> Deferred[_Members]:
    """
    Endpoints as C{(key, description, endpoint)}: strings parsed (their key
    the string), objects kept (their key the object, described by
    C{repr}), and C{dns:HOST:PORT} resolved to one TCP endpoint per address
    (keyed C{tcp:ADDRESS:PORT}).
    """
    if isinstance(endpoints, str) or IStreamClientEndpoint.providedBy(endpoints):
        endpoints = [endpoints]
    found: list[Deferred[_Members]] = []
    for endpoint in endpoints:
        if isinstance(endpoint, str) and endpoint.startswith("dns:"):
            found.append(_resolve(reactor, endpoint))
        elif isinstance(endpoint, str) and endpoint[:8].lower().startswith(
                ("ws://", "wss://", "http://", "https://")):
            return fail(ValueError(f"a pool connects to byte-stream endpoints, not to URLs"
                                   f" ({endpoint}): use connect for HTTP or WebSocket"))
        else:
            try:
                parsed = _clientEndpoint(reactor, endpoint)
            except Exception as error:
                return fail(ValueError(f"not a client endpoint: {endpoint!r}: {oneLine(error)}"))
            found.append(succeed([(_keyOf(endpoint), endpoint if isinstance(endpoint, str)
                                   else repr(endpoint), parsed)]))
    if not found:
        return fail(ValueError("a pool needs at least one endpoint"))
    # A plain Deferred, not the DeferredList: cancelling what is chained to
    # a DeferredList's callbacks does not reach them.
    resolved: Deferred[_Members] = Deferred()
    DeferredList(found, fireOnOneErrback=True, consumeErrors=True).addCallbacks(
        lambda results: [pair for _, pairs in results for pair in pairs],
        lambda failure: failure.value.subFailure).chainDeferred(resolved)
    return resolved


def _keyOf(endpoint: object) -> object:
    """
    What tells one endpoint from another: a string, or an endpoint object
    by equality (identity, unless its class defines equality).
    """
    try:
        hash(endpoint)
    except TypeError:
        return ("unhashable endpoint", id(endpoint))
    return endpoint


def _resolve(reactor: Any, description: str) -> Deferred[_Members]:
    """
    C{dns:HOST:PORT} as one TCP endpoint per address of C{HOST}.
    """
    host, _, port = description[4:].rpartition(":")
    if not host or not port.isdigit():
        return fail(ValueError(f"{description!r} is not dns:HOST:PORT"))
    addresses: list[Any] = []
    done: Deferred[_Members] = Deferred()

    @implementer(IResolutionReceiver)
    class Receiver:
        def resolutionBegan(self, resolution: Any) -> None:
            pass

        def addressResolved(self, address: Any) -> None:
            addresses.append(address)

        def resolutionComplete(self) -> None:
            found: _Members = []
            for ip in dict.fromkeys(a.host for a in addresses):
                make = TCP6ClientEndpoint if ":" in ip else TCP4ClientEndpoint
                where = f"tcp:[{ip}]:{port}" if ":" in ip else f"tcp:{ip}:{port}"
                found.append((where, where, make(reactor, ip, int(port))))
            if found:
                done.callback(found)
            else:
                done.errback(ValueError(f"{host} has no address ({description})"))

    reactor.nameResolver.resolveHostName(Receiver(), host, int(port))
    return done


def connectPool(reactor: Any, endpoints: Any, service: ModuleType, *,
                idempotent: Iterable[str] = (), retry_budget: float = 0.2,
                min_retries_per_second: float = 10.0, connections: int = 1,
                eject_after: int = 5, eject_for: float = 10.0,
                retry_policy: Callable[[int], float] | None = None, random: Any = None,
                wait: bool = True, **connect_options: Any) -> Deferred[PoolClient]:
    """
    Connect a client of a generated service to every one of C{endpoints},
    spreading its calls over them.  See the README's "Many hosts".

    @param endpoints: client endpoint descriptions or objects (one, or a
        sequence), each C{dns:HOST:PORT} standing for every address of
        C{HOST}; L{PoolClient.setEndpoints} replaces them later.
    @param idempotent: names of methods that may run twice: a call of one
        is sent again on another endpoint when its connection is lost
        before its reply.  Other calls are sent again only if they were
        never written (see this module's docstring).
    @param retry_budget: the share of the calls of the last 10 seconds
        that may be retries, on top of a reserve of
        C{min_retries_per_second} times 10 (see L{RetryBudget}).
    @param connections: connections kept to each endpoint.
    @param eject_after: consecutive failures (connection attempts failed,
        connections lost before any reply, calls timed out) after which an
        endpoint takes no calls for C{eject_for} seconds while another can;
        then one trial call at a time goes to it until one is answered.
    @param retry_policy: seconds to wait before each reconnection attempt,
        by the number of failures in a row (C{ClientService}'s
        C{retryPolicy}); by default from 0.2s, doubling up to 10s, jittered.
    @param random: the balancer's source of C{random()} (tests).
    @param wait: whether to wait for the endpoints: if false, the client
        is returned at once (after resolving C{dns:} names), its calls
        failing with L{PoolUnavailable} until an endpoint is up, for an
        application that must start before its servers.
    @param connect_options: as L{connect} takes them (C{timeout},
        C{transport}, C{protocol}, C{service_name}, C{headers},
        C{transforms}, limits); C{timeout} is a deadline across attempts.
    @return: a Deferred firing with a L{PoolClient} once every endpoint has
        connected or failed once (or after L{STARTUP_GRACE} seconds, if one
        is up by then), or failing with L{PoolUnavailable} once every endpoint
        has failed to connect (the pool then closed).
    """
    for unsupported in ("sasl",):
        if connect_options.get(unsupported) is not None:
            raise ValueError(f"{unsupported}= is not supported by connectPool")
    if connections < 1 or eject_after < 1 or eject_for < 0:
        raise ValueError("connectPool needs connections >= 1, eject_after >= 1, eject_for >= 0")
    options = _factoryOptions(reactor, connect_options)
    ClientFactory(service, **options)  # A bad choice fails here, not at connection time.
    pool = _Pool(reactor, service, idempotent=idempotent,
                 budget=RetryBudget(reactor, retry_budget, min_retries_per_second),
                 connections=connections, ejectAfter=eject_after, ejectFor=eject_for,
                 retryPolicy=retry_policy or backoffPolicy(0.2, 10.0, 2.0),
                 random=random or _random.Random(), factoryOptions=options)
    client = PoolClient.forService(service)(cast(ClientProtocol, pool),
                                            timeout=options["timeout"],
                                            service_name=options["service_name"])
    return _resolveAll(reactor, endpoints).addCallback(_start, pool, client, wait)


def _start(members: _Members, pool: _Pool, client: PoolClient, wait: bool) -> Any:
    """
    Give C{pool} its first members, and C{client} once they are ready (or
    at once, unless C{wait}); if none can be had, close the pool.
    """
    pool.replace(members)
    if not wait:
        return client

    def failed(failure: Failure) -> Deferred[Any]:
        return pool.close().addCallback(lambda _: failure)

    return pool.whenReady(STARTUP_GRACE).addCallbacks(lambda _: client, failed)


def _factoryOptions(reactor: Any, options: dict[str, Any]) -> dict[str, Any]:
    """
    L{connect}'s keywords as a L{ClientFactory} takes them, checked now.
    """
    options = dict(options)
    made = {"transport": options.pop("transport", "framed"),
            "protocol": options.pop("protocol", "binary"),
            "timeout": options.pop("timeout", None),
            "service_name": options.pop("service_name", None),
            "headers": options.pop("headers", None),
            "transforms": options.pop("transforms", ()),
            "clock": reactor}
    made["limits"] = Limits.from_keywords(**options)
    return made
