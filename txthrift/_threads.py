"""
Blocking handlers in a thread pool: L{Threads}, the pool a service runs
them in, and L{threaded}, which puts a handler (or processor) there.

What runs where is decided by a method's definition: a plain C{def} runs in
the pool, an C{async def} or C{inlineCallbacks} one in the reactor, where
Deferreds and coroutines belong.  A plain generated processor runs its whole
C{process} in the pool, since it calls its handler synchronously.

This module knows handlers and processors (through L{Served}), not bytes,
connections, endpoints or services that listen.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from contextvars import copy_context
from dataclasses import replace
from functools import partial
from threading import Thread
from types import CoroutineType
from typing import Any

from thrift.TMultiplexedProcessor import TMultiplexedProcessor
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ._service import Served, describe
from ._thriftinternals import processorParts, withHandler
from ._waiters import Waiters

__all__ = ["Threads", "threaded"]

log = Logger(namespace="txthrift.threads")


class _DaemonThreadPool(ThreadPool):
    """
    A thread pool whose threads do not keep a stopping process alive: a
    handler still blocked after the shutdown timeout is abandoned.
    """

    @staticmethod
    def threadFactory(*args: Any, **kwargs: Any) -> Thread:  # type: ignore[override]
        return Thread(*args, daemon=True, **kwargs)


class Threads:
    """
    The thread pool of a service, made anew each time the service starts
    (a stopped L{ThreadPool} cannot start again).

    @ivar size: the most threads the pool runs.
    """

    def __init__(self, reactor: Any, size: int) -> None:
        self._reactor = reactor
        self.size = size
        self.pool: ThreadPool | None = None
        # Calls handed to this pool that its threads have not finished with
        # (run or skipped), counted in the reactor; and who waits for none.
        self._pending = 0
        self._idleWaiters = Waiters()

    def start(self) -> None:
        if self.pool is None:
            self.pool = _DaemonThreadPool(0, self.size, name="txthrift")
            self.pool.start()

    @property
    def busy(self) -> int:
        """
        Calls handed to the pool and not over yet.
        """
        return self._pending

    def whenIdle(self) -> Deferred[None]:
        """
        Wait until the pool has no call left to run or finish.

        @return: a Deferred of its own for each caller, firing with C{None}
            when the last call ends (at once if none is left now, or when
            the pool stops); cancelling it stops only that wait.
        """
        return self._idleWaiters.wait(not self._pending)

    def _ended(self, pool: ThreadPool) -> None:
        """
        In the reactor: a call of C{pool} is over.
        """
        if pool is not self.pool:
            return  # Of a pool stopped since, whose count was dropped.
        self._pending -= 1
        if not self._pending:
            self._idleWaiters.fire()

    def stop(self) -> None:
        """
        Stop the pool, unless a thread is still running a call: not to wait
        for it, that thread (a daemon) is abandoned.
        """
        pool, self.pool = self.pool, None
        self._pending = 0
        self._idleWaiters.fire()
        if pool is None:
            return
        if pool.working:
            log.emit(LogLevel.warn, "abandoning {calls} handler thread(s) still running",
                     calls=len(pool.working))
        else:
            pool.stop()

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        Run C{function} in the pool.

        @return: a Deferred firing in the reactor with what C{function}
            returned (see L{_onReactor}).  Cancelling it before a thread
            takes the call up means the call never runs: the calls of a lost
            connection, or past their timeout, do not hold up newer ones
            behind them.  A call already running cannot be stopped; its
            Deferred fails with C{CancelledError} at once, and what it
            returns later is dropped (a Deferred cancelled, a coroutine
            closed).
        """
        self.start()
        pool = self.pool
        assert pool is not None
        # The thread runs it in a copy of the caller's context: currentCall().
        work = _PoolCall(self._reactor, partial(copy_context().run, function, *args, **kwargs),
                         partial(self._ended, pool))
        self._pending += 1
        pool.callInThread(work.run)
        return work.result.addCallback(_onReactor)


#: What a pool thread reports for a call cancelled before it started.
_SKIPPED = object()


class _PoolCall:
    """
    One call waiting for, or running in, a pool thread; its Deferred's
    canceller marks it, so that a thread taking it up later skips it.
    """

    def __init__(self, reactor: Any, function: Callable[[], Any],
                 ended: Callable[[], None]) -> None:
        self._reactor = reactor
        self._function: Callable[[], Any] | None = function
        self._ended = ended
        self._cancelled = False
        self.result: Deferred[Any] = Deferred(self._cancel)

    def _cancel(self, result: Deferred[Any]) -> None:
        # In the reactor; the thread reads the mark before it starts the call
        # (the GIL orders the two).  The Deferred then fails CancelledError.
        self._cancelled = True
        # Its arguments (a big request's, say) need not wait for a thread.
        self._function = None

    def run(self) -> None:
        """
        In a pool thread: make the call unless it was cancelled, and hand
        the outcome to the reactor.
        """
        function, self._function = self._function, None
        outcome: object = _SKIPPED
        if not self._cancelled and function is not None:
            try:
                outcome = function()
            except BaseException:
                outcome = Failure()
        self._reactor.callFromThread(self._deliver, outcome)

    def _deliver(self, outcome: object) -> None:
        try:
            self._handOver(outcome)
        finally:
            # After the reply went on its way, so the pool and the calls in
            # flight fall idle together.
            self._ended()

    def _handOver(self, outcome: object) -> None:
        if outcome is _SKIPPED:
            return
        if not self.result.called:
            if isinstance(outcome, Failure):
                self.result.errback(outcome)
            elif isinstance(outcome, Deferred):
                # Not handed to callback() itself, which Twisted releases
                # before 24.7 refused: carried past it to _onReactor, which
                # chains onto it, whatever Twisted makes of a Deferred result.
                self.result.callback(_Waited(outcome))
            else:
                self.result.callback(outcome)
        elif isinstance(outcome, Deferred):
            # Cancelled while it ran; nobody waits for the rest of its work.
            outcome.addErrback(lambda failure: failure.trap(CancelledError))
            outcome.cancel()
        elif isinstance(outcome, CoroutineType):
            outcome.close()


class _Waited:
    """
    A Deferred a method run in the pool returned, on its way to L{_onReactor}.
    """

    __slots__ = ("deferred",)

    def __init__(self, deferred: Deferred[Any]) -> None:
        self.deferred = deferred


def _onReactor(value: object) -> object:
    """
    What a method run in the pool returned, carried on in the reactor: a
    coroutine (not started yet) runs there, a Deferred is waited for.
    """
    if isinstance(value, CoroutineType):
        return Deferred.fromCoroutine(value)
    if isinstance(value, _Waited):
        return value.deferred
    return value


def _runsOnReactor(function: Callable[..., Any]) -> bool:
    """
    Whether C{function} is asynchronous by its definition, so that it must
    run in the reactor thread: an C{async def}, or a generator under
    C{inlineCallbacks}.
    """
    if inspect.iscoroutinefunction(function):
        return True
    return inspect.isgeneratorfunction(inspect.unwrap(function))


class _InThreads:
    """
    Stands for a blocking handler (or processor): each of its plain service
    methods returns a Deferred and runs the handler's in the pool, while its
    asynchronous ones (C{async def}, C{inlineCallbacks}) run in the reactor,
    where Deferreds and coroutines belong.
    """

    def __init__(self, handler: object, names: Sequence[str], threads: Threads) -> None:
        self._handler = handler
        for name in names:
            function = getattr(handler, name, None)
            if callable(function):
                setattr(self, name, function if _runsOnReactor(function)
                        else partial(threads.call, function))

    def __repr__(self) -> str:
        return f"<{self._handler!r} in threads>"


def threaded(served: Served, threads: Threads) -> Served:
    """
    What C{served} serves, with its blocking work run in C{threads}.
    """
    if served.kind == "multiplexed":
        return replace(served, services=tuple((name, threaded(inner, threads))
                                              for name, inner in served.services))
    if served.kind == "processor":
        return replace(served, target=_threadedProcessor(served.target, threads))
    assert served.module is not None
    methods = sorted(describe(served.module).methods)
    return replace(served, target=_InThreads(served.target, methods, threads))


def _returnsDeferreds(processor: object) -> bool:
    """
    Whether C{processor} was generated by C{thrift --gen py:twisted}: its
    C{process_X} methods return Deferreds, so it must run in the reactor.

    The code looked at is the code that runs: the functions of the
    processor's C{_processMap}, whose module the py:twisted generator (and
    only it) makes import Twisted's C{defer}.  That holds for a subclass
    defined elsewhere too, which the class's own module would not.
    """
    parts = processorParts(processor)
    if parts is None:
        return False
    return all(getattr(function, "__globals__", {}).get("defer") is defer
               for function in parts[0].values())


def _threadedProcessor(processor: object, threads: Threads) -> object:
    """
    A processor whose blocking work runs in C{threads}: a plain generated
    (or any other) processor's whole C{process}, since it calls its handler
    synchronously; for a py:twisted one, a copy running in the reactor over
    its handler's plain methods in the pool; for a C{TMultiplexedProcessor},
    a copy running in the reactor over its processors so threaded.  The
    user's processors are left as they are.
    """
    if isinstance(processor, TMultiplexedProcessor):
        multiplexed = copy.copy(processor)
        multiplexed.services = {name: _threadedProcessor(inner, threads)
                                for name, inner in processor.services.items()}
        if processor.defaultProcessor is not None:
            multiplexed.defaultProcessor = _threadedProcessor(processor.defaultProcessor, threads)
        return multiplexed
    parts = processorParts(processor)
    if parts is not None and _returnsDeferreds(processor):
        functions, handler = parts
        return withHandler(processor, _InThreads(handler, sorted(functions), threads))
    return _InThreads(processor, ["process"], threads)
