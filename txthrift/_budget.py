"""
The server-wide budget for bytes held in partial messages: messages whose
first bytes have come but not their last.

A peer chooses how much of a message it sends and when it sends the rest;
each connection's share is bounded by C{max_frame_size} and, in time, by
C{partial_timeout}, but many connections together are bounded only here.
Knows nothing of framing or sockets: a holder is anything that can be told
to stop reading and to go on.
"""

from __future__ import annotations

from typing import Protocol as TypingProtocol

from twisted.logger import Logger

from ._limits import Limits

__all__ = ["PartialBudget", "budgetFor"]

log = Logger(namespace="txthrift.budget")


class BudgetHolder(TypingProtocol):
    """
    A connection that holds part of the budget: told to stop and to go on
    reading.
    """

    def pauseForBudget(self) -> None: ...

    def resumeForBudget(self) -> None: ...


class PartialBudget:
    """
    Bytes held in partial messages by all the connections that share it,
    and which of them wait for room.

    Past the budget, a connection that reads more of a partial message is
    paused (its bytes stay in the kernel and, past its window, on its
    peer), and resumed, oldest first, when there is room again.  One is let
    through instead: the first to go past the budget may finish its message,
    then the one that has waited longest goes through next.  So messages
    keep completing even when the budget is held by partial messages that
    all wait (it cannot deadlock); those that never complete are closed by
    C{partial_timeout}, which keeps running while a connection waits.

    At most C{limit} bytes, plus the message let through (up to
    C{max_frame_size}), plus one read (64 KiB) per connection, are held.

    @ivar limit: the budget in bytes.
    @ivar held: the bytes held now.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._holders: dict[BudgetHolder, int] = {}
        # Dicts keep order: the first waited longest.
        self._waiting: dict[BudgetHolder, None] = {}
        self._through: BudgetHolder | None = None
        self._full = False

    @property
    def waiting(self) -> int:
        """
        How many connections wait for room.
        """
        return len(self._waiting)

    def waits(self, holder: BudgetHolder) -> bool:
        """
        Whether C{holder} waits for room.
        """
        return holder in self._waiting

    def hold(self, holder: BudgetHolder, size: int, began: bool) -> None:
        """
        Note that C{holder} now holds C{size} bytes of a partial message,
        pausing or resuming whoever that concerns.

        @param began: whether the message is a new one (the last completed).
        """
        self.held += size - self._holders.pop(holder, 0)
        if size:
            self._holders[holder] = size
        if holder is self._through and (began or not size):
            # Its message is whole: the next may go through.
            self._through = None
        if not size:
            if holder in self._waiting:
                del self._waiting[holder]
                holder.resumeForBudget()
        elif self.held > self.limit:
            if not self._full:
                self._full = True
                log.warn("partial messages hold {held} bytes, over partial_budget ({limit}):"
                         " connections reading more of them wait", held=self.held,
                         limit=self.limit)
            if self._through is None and not self._waiting:
                self._through = holder
            elif holder is not self._through:
                # Already waiting (resumed by someone else), or from now.
                self._waiting.setdefault(holder, None)
                holder.pauseForBudget()
        self._wake()

    def release(self, holder: BudgetHolder) -> None:
        """
        C{holder} holds nothing any more, and waits for nothing: it is closing.
        """
        self.held -= self._holders.pop(holder, 0)
        self._waiting.pop(holder, None)
        if holder is self._through:
            self._through = None
        self._wake()

    def _wake(self) -> None:
        if self.held <= self.limit:
            self._full = False
            if self._waiting:
                waiting, self._waiting = list(self._waiting), {}
                for holder in waiting:
                    holder.resumeForBudget()
        elif self._through is None and self._waiting:
            first = next(iter(self._waiting))
            del self._waiting[first]
            self._through = first
            first.resumeForBudget()


def budgetFor(limits: Limits) -> PartialBudget | None:
    """
    A new budget for the connections of one factory, as C{limits} sets it
    (C{None} where it sets none).
    """
    if limits.partial_budget is None:
        return None
    return PartialBudget(limits.partial_budget)
