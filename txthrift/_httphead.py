"""
The head of an HTTP/1.1 request read in one step, for the plain kind Thrift
clients send: a C{POST} to one path, its body's length declared.

Anything else (a chunked body, C{Expect}, an upgrade, HTTP/1.0, another
method or path, a head not strictly well formed) is not read here but left
to C{twisted.web}, which answers all of HTTP.  So what is read here is only
what both read the same way: a head this module takes, C{twisted.web} would
take with the same meaning, and whatever the two could disagree on goes to
C{twisted.web}.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

__all__ = ["INCOMPLETE", "MOST_HEAD", "NOT_PLAIN", "Head", "readHead"]

#: The longest head read here, in bytes; a longer one is C{twisted.web}'s
#: to judge (its own limit is 16 KiB a line).
MOST_HEAD: Final = 8192

#: What L{readHead} returns for a head not whole yet, and for a request it
#: leaves to C{twisted.web}.
INCOMPLETE: Final = 0
NOT_PLAIN: Final = 1

# A header line: a token, a colon, the value between optional blanks, and
# the line's end.  A value holds no control character but a tab: no bare
# CR or LF, no NUL (a head with one is C{twisted.web}'s to refuse).
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*\r\n")

#: Headers that ask for more than a body of declared length: chunked or
#: other codings, C{100 Continue}, a protocol switch.
_NOT_PLAIN_HEADERS: Final = frozenset({"transfer-encoding", "expect", "upgrade", "te"})

#: The most headers read here (C{twisted.web} allows 500).
_MOST_FIELDS: Final = 100

#: The longest C{Content-Length} read here, in digits.
_MOST_DIGITS: Final = 18


class Head(NamedTuple):
    """
    A request's head, read.

    @ivar end: where its body begins in the bytes read.
    @ivar length: its body's length.
    @ivar headers: its headers, names in lower case, repeated ones joined
        by commas as HTTP allows.
    @ivar close: whether its client asked for the connection to be closed
        after the answer (C{Connection: close}).
    """

    end: int
    length: int
    headers: dict[str, str]
    close: bool


def readHead(data: bytes, start: int, requestLine: bytes) -> Head | int:
    """
    Read the head of the request starting at C{start} in C{data}.

    @param requestLine: the only request line read here (C{POST /path
        HTTP/1.1}).
    @return: the L{Head}; L{INCOMPLETE} if it is not whole yet; L{NOT_PLAIN}
        if it is not one read here.
    """
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        return _beginning(data, start, requestLine)
    if end - start > MOST_HEAD:
        return NOT_PLAIN
    position = start + len(requestLine)
    if data[start:position + 2] != requestLine + b"\r\n":
        return NOT_PLAIN
    position += 2
    stop = end + 2
    headers: dict[str, str] = {}
    length = -1
    close = False
    match = _FIELD.match
    while position < stop:
        field = match(data, position, stop)
        if field is None or len(headers) >= _MOST_FIELDS:
            return NOT_PLAIN
        position = field.end()
        name = field[1].decode("ascii").lower()
        raw = field[2]
        value = raw.decode("latin-1")
        if name == "content-length":
            if length >= 0 or not raw.isdigit() or len(raw) > _MOST_DIGITS:
                return NOT_PLAIN
            length = int(raw)
        elif name == "connection":
            # twisted.web reads one Connection header, as one token: more
            # (a list, another header) are its to read.
            token = value.lower()
            if name in headers or token not in ("close", "keep-alive"):
                return NOT_PLAIN
            close = token == "close"
        elif name in _NOT_PLAIN_HEADERS:
            return NOT_PLAIN
        seen = headers.get(name)
        headers[name] = value if seen is None else seen + ", " + value
    if length < 0:
        return NOT_PLAIN
    return Head(end + 4, length, headers, close)


def _beginning(data: bytes, start: int, requestLine: bytes) -> int:
    """
    Whether the start of a head not yet whole may still be that of a plain
    request (L{INCOMPLETE}), or cannot (L{NOT_PLAIN}): C{twisted.web} then
    reads it, and answers it as soon as it can.
    """
    size = len(data) - start
    if size > MOST_HEAD:
        return NOT_PLAIN
    lineEnd = start + len(requestLine) + 2
    if not (requestLine + b"\r\n").startswith(data[start:min(lineEnd, len(data))]):
        return NOT_PLAIN
    # A line ending in a bare LF: no CRLF CRLF may ever end this head.
    if data.count(b"\n", start) != data.count(b"\r\n", start):
        return NOT_PLAIN
    return INCOMPLETE
