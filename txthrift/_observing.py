"""
Watching a server: L{ICallObserver}, what a server tells of its
connections, calls and refusals, for metrics, access logs and tracing to
build on; and the bounded names it tells them by.

A server with no observer pays one attribute check per call; one with an
observer pays what the observer does, so observers keep per-call work to
plain Python arithmetic and leave formatting to when they are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from twisted.logger import Logger
from zope.interface import Interface

__all__ = ["OUTCOMES", "REFUSALS", "CallObserver", "ICallObserver", "Observers", "observing",
           "refusalKind"]

log = Logger(namespace="txthrift.observer")

#: What becomes of a call: answered (C{ok}, C{declared_exception}), failed
#: on the server (C{internal_error}, C{unknown_method}, C{protocol_error}:
#: arguments that do not decode), given up on (C{timeout}, C{cancelled}:
#: its connection went), or C{oneway}.
OUTCOMES: Final = ("ok", "declared_exception", "internal_error", "unknown_method",
                   "protocol_error", "timeout", "cancelled", "oneway")

#: Why a connection was refused, by the limit or rule it broke.
REFUSALS: Final = ("frame_too_big", "string_limit", "container_limit", "depth_limit",
                   "malformed", "idle_timeout", "partial_timeout")

#: Words of a refusal's reason that tell its kind, in the order tried.
_REASONS: Final = (("max_frame_size", "frame_too_big"), ("max_string_length", "string_limit"),
                   ("max_container_length", "container_limit"), ("max_depth", "depth_limit"),
                   ("partial_timeout", "partial_timeout"))


def refusalKind(reason: str) -> str:
    """
    The kind (one of L{REFUSALS}) of the reason a connection was refused.
    """
    for word, kind in _REASONS:
        if word in reason:
            return kind
    return "malformed"


class ICallObserver(Interface):
    """
    Told by a server of what happens on its connections, in the reactor
    thread.  A call is C{txthrift.currentCall()}'s tuple: (origin, name,
    seqid, deadline, envelope).

    An observer may also have C{dispatched(started)}, told with what
    L{callStarted} gave back when the dispatch has returned (its handler
    done, or waited on): one that made something current for the handler
    in C{callStarted} (a span) undoes it there.  One without it costs
    nothing for it.

    An observer must not raise: a server calls one observer directly, and
    what it raises is the server's (the connection is lost).  Several
    given together (L{observing}) are told apart, each one's failures
    logged.
    """

    def connectionOpened() -> None:
        """
        A connection was made.
        """

    def connectionClosed() -> None:
        """
        A connection went.
        """

    def refused(kind: str) -> None:
        """
        A connection was closed for what its peer sent or did not send
        (C{kind} one of L{REFUSALS}).
        """

    def callStarted(call: tuple[Any, ...], size: int) -> object:
        """
        A call of C{size} bytes is dispatched.

        @return: what L{callEnded} is given back for it.
        """

    def callEnded(started: object, outcome: str, size: int) -> None:
        """
        A call ended: its C{outcome} (one of L{OUTCOMES}), its reply's
        C{size} in bytes (0 for none).
        """


class CallObserver:
    """
    An L{ICallObserver} told nothing it has no method for: a base for one
    that watches calls only, or connections only.
    """

    def connectionOpened(self) -> None:
        pass

    def connectionClosed(self) -> None:
        pass

    def refused(self, kind: str) -> None:
        pass

    def callStarted(self, call: tuple[Any, ...], size: int) -> object:
        return None

    def callEnded(self, started: object, outcome: str, size: int) -> None:
        pass


class Observers:
    """
    Several observers as one, each told in turn; one that raises is logged
    and the others are told all the same.
    """

    def __init__(self, observers: list[Any]) -> None:
        self._observers = observers
        self._dispatching = [(index, observer.dispatched) for index, observer in
                             enumerate(observers) if hasattr(observer, "dispatched")]
        if self._dispatching:
            self.dispatched = self._dispatched

    def _dispatched(self, started: Any) -> None:
        # In the reverse order of callStarted, as contexts entered are left.
        for index, dispatched in reversed(self._dispatching):
            with _told(dispatched):
                dispatched(started[index])

    def connectionOpened(self) -> None:
        for observer in self._observers:
            with _told(observer):
                observer.connectionOpened()

    def connectionClosed(self) -> None:
        for observer in self._observers:
            with _told(observer):
                observer.connectionClosed()

    def refused(self, kind: str) -> None:
        for observer in self._observers:
            with _told(observer):
                observer.refused(kind)

    def callStarted(self, call: tuple[Any, ...], size: int) -> object:
        started = []
        for observer in self._observers:
            token = None
            with _told(observer):
                token = observer.callStarted(call, size)
            started.append(token)
        return started

    def callEnded(self, started: object, outcome: str, size: int) -> None:
        for observer, token in zip(self._observers, started):  # type: ignore[call-overload]
            with _told(observer):
                observer.callEnded(token, outcome, size)


@contextmanager
def _told(observer: object) -> Iterator[None]:
    """
    Tell C{observer} something, logging what it raises.
    """
    try:
        yield
    except Exception:
        log.failure("observer {observer!r} failed", observer=observer)


def observing(*observers: Any) -> Any:
    """
    What a server is given to tell C{observers} (C{None} among them left
    out): C{None} for none, the one itself, or L{Observers}.
    """
    found = [observer for observer in observers if observer is not None]
    if not found:
        return None
    return found[0] if len(found) == 1 else Observers(found)
