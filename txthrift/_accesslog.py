"""
The access log: L{AccessLog}, an observer of a server's calls writing one
JSON line per call as it ends, to a file or standard output.

Per call a tuple is kept; at the end of the reactor's turn (sooner once
L{MOST_BUFFERED} are waiting) the lines are made (in C where
C{txthrift._speedups} was built), what calls share (peer, names, the
second) once, and written in one C{write}: no line waits longer than the
turn it ended in, and a call costs no system call of its own.  The file is opened to append and unbuffered, so each
write is whole lines, and the processes of C{--workers} may share it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import IO, TYPE_CHECKING, Any, Final

from twisted.logger import Logger
from zope.interface import implementer

from ._observing import CallObserver, ICallObserver

__all__ = ["LONGEST_FIELD", "MOST_BUFFERED", "AccessLog", "openAccessLog"]

log = Logger()

#: The most characters a name from the peer (service, method, identity)
#: keeps in a line; a longer one is cut, saying how long it was.
LONGEST_FIELD: Final = 256
#: Lines waiting past which they are written at once, not at the turn's end.
MOST_BUFFERED: Final = 1000
#: The most names whose JSON is kept for the next lines.
MOST_NAMES: Final = 1000


def bounded(text: str) -> str:
    """
    C{text} as a JSON string, cut to L{LONGEST_FIELD} characters.
    """
    if len(text) > LONGEST_FIELD:
        text = f"{text[:LONGEST_FIELD]}...({len(text)} characters)"
    return encode_basestring_ascii(text)


def peerText(peer: Any) -> str:
    """
    A peer address as C{host:port} (C{[host]:port} for IPv6), a UNIX
    socket's name, or C{null}, as JSON.
    """
    if peer is None:
        return "null"
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is not None and port is not None:
        return encode_basestring_ascii(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    name = getattr(peer, "name", None)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return bounded(name) if isinstance(name, str) else "null"


def prefixOf(origin: Any, name: str) -> str:
    """
    What the lines of the calls of C{name} from C{origin} share: their
    fields from C{peer} to C{seqid}'s name.
    """
    identity = origin.identity
    service, separator, method = name.rpartition(":")
    return (f'"peer":{peerText(origin.peer)},"identity":'
            f'{"null" if identity is None else bounded(identity)},'
            f'"service":{bounded(service if separator else origin.service)},'
            f'"method":{bounded(method)},"seqid":')


def stampOf(second: int) -> str:
    """
    The start of the lines of the calls ended in C{second}.
    """
    return time.strftime('{"time":"%Y-%m-%dT%H:%M:%S', time.gmtime(second))


def _formatLines(entries: list[tuple[Any, ...]], prefixes: dict[tuple[Any, str], str],
                 makePrefix: Callable[[Any, str], str], stamps: dict[int, str],
                 makeStamp: Callable[[int], str], longest: int) -> bytes:
    """
    The lines of C{entries} (time, seconds taken, call, request bytes,
    outcome, reply bytes), with the pieces many share from C{prefixes} and
    C{stamps}, made when missing (a name over C{longest} is not kept):
    C{txthrift._speedups.accessLines}, in Python.
    """
    lines = []
    for now, elapsed, call, received, outcome, size in entries:
        key = (call[0], call[1])
        prefix = prefixes.get(key)
        if prefix is None:
            prefix = makePrefix(*key)
            if len(call[1]) <= longest:
                prefixes[key] = prefix
        second = int(now)
        stamp = stamps.get(second)
        if stamp is None:
            stamp = stamps[second] = makeStamp(second)
        lines.append(f'{stamp}.{int((now - second) * 1e6):06d}Z",{prefix}{call[2]},'
                     f'"outcome":"{outcome}","duration_us":{int(elapsed * 1e6)},'
                     f'"request_bytes":{received},"reply_bytes":{size}}}\n')
    return "".join(lines).encode("ascii")


formatLines = _formatLines
if not TYPE_CHECKING:
    try:
        from ._speedups import accessLines as formatLines
    except ImportError:
        pass


@implementer(ICallObserver)
class AccessLog(CallObserver):
    """
    Writes a JSON line for each call a server tells it of (pass it as
    C{observer=}; one instance may watch several servers), with the fields
    C{time} (when the call ended, ISO 8601 UTC), C{peer}, C{identity}
    (C{null} where unknown), C{service}, C{method}, C{seqid}, C{outcome}
    (one of C{OUTCOMES}), C{duration_us}, C{request_bytes} and
    C{reply_bytes}.

    @param output: a file opened for writing, or a file descriptor: written
        through its descriptor, beneath any buffer of its own (opened to
        append, so that processes sharing it write whole lines).
    @param reactor: an C{IReactorTime}: the time lines are stamped with, and
        the turn's end they are written at; the global reactor when omitted.
    @param timer: seconds for durations, by default C{time.perf_counter}.
    """

    def __init__(self, output: IO[bytes] | int, reactor: Any = None,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        if reactor is None:
            from twisted.internet import reactor as globalReactor
            reactor = globalReactor
        self._fd = output if isinstance(output, int) else output.fileno()
        self._output = None if isinstance(output, int) else output
        self._reactor = reactor
        self._timer = timer
        self._lines: list[tuple[Any, ...]] = []
        self._flushing: Any = None
        #: The JSON of the (origin, name) pairs seen lately, and of the
        #: seconds being logged.
        self._names: dict[tuple[Any, str], str] = {}
        self._seconds: dict[int, str] = {}
        self._failing = False
        self.closed = False

    # ICallObserver: calls only
    def callStarted(self, call: tuple[Any, ...], size: int) -> object:
        return self._timer(), call, size

    def callEnded(self, started: object, outcome: str, size: int) -> None:
        # Per call only a tuple is kept: the line is made at the turn's end,
        # with what the calls before it on its connection had in common.
        began: float
        call: tuple[Any, ...]
        received: int
        began, call, received = started  # type: ignore[misc]
        if self.closed:
            return
        ended = self._timer()
        lines = self._lines
        lines.append((self._reactor.seconds(), ended - began, call, received, outcome, size))
        if len(lines) >= MOST_BUFFERED:
            self.flush()
        elif self._flushing is None:
            self._flushing = self._reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Write the lines waiting, in one write (more only if the file takes
        part of it).  A file that fails is logged once, until it works again;
        its lines are dropped, and serving goes on.
        """
        flushing, self._flushing = self._flushing, None
        if flushing is not None and flushing.active():
            flushing.cancel()
        if not self._lines:
            return
        if len(self._names) > MOST_NAMES:
            self._names.clear()
        if len(self._seconds) > 2:
            self._seconds.clear()
        lines, self._lines = self._lines, []  # gone whatever happens below
        data = formatLines(lines, self._names, prefixOf, self._seconds, stampOf, LONGEST_FIELD)
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as error:
            if not self._failing:
                log.error("The access log cannot be written: {error}; its lines are dropped",
                          error=error)
            self._failing = True
        else:
            self._failing = False

    def close(self) -> None:
        """
        Write the lines waiting and close the file (not a file descriptor
        given as a number); calls ending later are not logged.
        """
        self.flush()
        self.closed = True
        if self._output is not None:
            self._output.close()


def openAccessLog(path: str, reactor: Any = None) -> AccessLog:
    """
    An L{AccessLog} appending to the file at C{path}, or writing to standard
    output for C{"-"} (its file descriptor, beneath any redirection of
    C{sys.stdout}, which twistd makes to its own log).  Writes wait for the
    file: standard output that nobody reads holds the server up.

    @raise OSError: when the file cannot be opened to append, saying why.
    """
    if path == "-":
        return AccessLog(sys.__stdout__.fileno() if sys.__stdout__ is not None else 1, reactor)
    return AccessLog(open(path, "ab", buffering=0), reactor)  # closed by close()
