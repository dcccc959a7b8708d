"""
Size and concurrency limits shared by every connection of a server or client.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

MiB = 1024 * 1024


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
    @ivar max_depth: deepest nesting of structs and containers.
    @ivar max_pending: requests processed at once on one server connection;
        past it, reading from that connection pauses.
    @ivar idle_timeout: seconds a server connection may go without a whole
        request while none is in flight; C{None} disables it.
    @ivar call_timeout: seconds a server gives a handler to answer; past
        them the call is cancelled and the client gets a
        C{TApplicationException}.  C{None} waits for ever.
    """

    max_frame_size: int = 16 * MiB
    max_string_length: int | None = None
    max_container_length: int | None = None
    max_depth: int = 64
    max_pending: int = 128
    idle_timeout: float | None = None
    call_timeout: float | None = None

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
        for name in ("idle_timeout", "call_timeout"):
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
