"""
Callers waiting for one condition, each with a Deferred of its own.

A graceful stop waits for several things to end (calls, connections, pool
threads, worker processes); each owner says when its condition holds and
this hands every waiter its own Deferred, so that one waiter cancelling
leaves the others waiting. It knows nothing of what is waited for.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed


class Waiters:
    """
    The Deferreds handed out for one condition, fired together when it holds.
    """

    def __init__(self) -> None:
        self._waiting: list[Deferred[None]] = []

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def wait(self, already: bool) -> Deferred[None]:
        """
        A Deferred of its own for one caller: fired with C{None} at once if
        the condition holds C{already}, else by L{fire}; cancelling it stops
        only that wait.
        """
        if already:
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._waiting.remove)
        self._waiting.append(waiter)
        return waiter

    def fire(self) -> None:
        """
        The condition holds: fire every waiter so far.
        """
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(None)
