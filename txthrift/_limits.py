"""
Size and concurrency limits shared by every connection of a server or client:
one frozen L{Limits}, checked once where it is made, with the defaults the
README's table documents.  Knows nothing of what enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Final

MiB = 1024 * 1024

#: The depth past which Apache's C decoders (C{thrift.protocol.fastbinary},
#: binary and compact) refuse a message themselves, in C{txthrift._scanning.DepthError}'s
#: terms: more than 64 nested structs, the message's own included, and an
#: unknown field's value nested past depth 64.  They count leaves too where
#: they skip (an unknown field at depth 64 holding a value is refused), and
#: do not count the containers of declared fields, which nest only as deep
#: between two structs as the IDL says.
APACHE_C_DEPTH: Final = 64


def defaultReactor() -> Any:
    """
    The global reactor, for callers that did not pass one.
    """
    from twisted.internet import reactor

    return reactor


@dataclass(frozen=True)
class Limits:
    """
    What one connection may ask of us.

    Every limit is enforced before anything of the claimed size is allocated.

    @ivar max_frame_size: largest message (framed or not) in bytes.
    @ivar max_string_length: largest string or binary value, in bytes;
        C{None} means C{max_frame_size}.
    @ivar max_container_length: most elements in one list, set or map;
        C{None} means C{max_frame_size} (each element takes at least a byte).
    @ivar max_depth: deepest nesting of structs and containers: the
        message's own struct (a call's arguments, a reply's result) is depth
        1, a struct or container in one of its fields depth 2; strings and
        numbers add none.  Apache's C decoders refuse more than
        L{APACHE_C_DEPTH} nested structs whatever it says.
    @ivar max_pending: requests processed at once on one server connection;
        past it, reading from that connection pauses.
    @ivar idle_timeout: seconds a server connection may go without a whole
        request while none is in flight; C{None} disables it.
    @ivar call_timeout: seconds a server gives a handler to answer; past
        them the call is cancelled and the client gets a
        C{TApplicationException}.  C{None} waits for ever.
    @ivar half_closed_timeout: seconds a server waits for each next reply
        to a peer that has stopped sending (it shut down its sending side,
        or closed: the two look the same until a reply is refused); past
        them its calls are cancelled and the connection dropped.  C{None}
        waits for ever, as Apache's blocking servers do.
    @ivar partial_timeout: seconds a message may take to arrive, from its
        first byte to its last (a request on a server, a reply on a
        client); past them the connection is closed.  The default lets a
        16 MiB message come at 2.25 Mbit/s.  C{None} disables it.
    @ivar partial_budget: bytes that all the connections of one server (one
        factory) may hold in messages begun but not complete; past it,
        connections reading more of theirs pause until there is room, save
        one, which may finish its message.  C{None} disables it.
    """

    max_frame_size: int = 16 * MiB
    max_string_length: int | None = None
    max_container_length: int | None = None
    max_depth: int = 64
    max_pending: int = 128
    idle_timeout: float | None = None
    call_timeout: float | None = None
    half_closed_timeout: float | None = 10.0
    partial_timeout: float | None = 60.0
    partial_budget: int | None = 64 * MiB

    def __post_init__(self) -> None:
        for name in ("max_frame_size", "max_depth", "max_pending"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.max_frame_size > 0x7FFFFFFF:
            raise ValueError("max_frame_size must be below 2 GiB (a frame length is an i32)")
        for name in ("max_string_length", "max_container_length"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, not {value!r}")
        budget = self.partial_budget
        if budget is not None and (not isinstance(budget, int) or budget < 1):
            raise ValueError(f"partial_budget must be a positive integer or None, not {budget!r}")
        for name in ("idle_timeout", "call_timeout", "half_closed_timeout", "partial_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, not {value!r}")

    @property
    def string_limit(self) -> int:
        return self.max_frame_size if self.max_string_length is None else self.max_string_length

    @property
    def container_limit(self) -> int:
        if self.max_container_length is None:
            return self.max_frame_size
        return self.max_container_length

    @classmethod
    def from_keywords(cls, base: Limits | None = None, **keywords: Any) -> Limits:
        """
        Build limits from the C{**limits} keywords of L{serve} and L{connect}.

        @raise TypeError: for a keyword that names no limit, as a bad keyword
            argument to any function would.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(keywords) - known)
        if unknown:
            raise TypeError(
                f"unknown limit {', '.join(unknown)}; known limits: {', '.join(sorted(known))}"
            )
        return replace(base or cls(), **keywords)
