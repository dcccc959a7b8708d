"""
Tests for L{txthrift._httphead}: which request heads a L{ThriftSite}'s
connection reads itself, and what it reads of them; everything else is
left to C{twisted.web}.
"""

from __future__ import annotations

import pytest

from txthrift._httphead import INCOMPLETE, MOST_HEAD, NOT_PLAIN, Head, readHead

LINE = b"POST /thrift HTTP/1.1"


def head(*fields: bytes, line: bytes = LINE) -> bytes:
    return line + b"\r\n" + b"".join(field + b"\r\n" for field in fields) + b"\r\n"


def test_aPlainHead() -> None:
    data = b"junk" + head(b"Host: x", b"Content-Type: application/x-thrift",
                          b"Content-Length:  12 ", b"X-Trace:\tabc\t", b"x-trace: def") + b"body"
    read = readHead(data, 4, LINE)
    assert isinstance(read, Head)
    assert data[read.end:] == b"body"
    assert read.length == 12 and not read.close
    assert read.headers == {"host": "x", "content-type": "application/x-thrift",
                            "content-length": "12", "x-trace": "abc, def"}


@pytest.mark.parametrize(("connection", "close"), [
    (b"close", True), (b"keep-alive", False), (b"Keep-Alive ", False), (b"CLOSE", True)])
def test_connection(connection: bytes, close: bool) -> None:
    read = readHead(head(b"Content-Length: 0", b"Connection: " + connection), 0, LINE)
    assert isinstance(read, Head) and read.close is close


def test_incomplete() -> None:
    whole = head(b"Host: x", b"Content-Length: 3")
    for end in range(len(whole)):
        assert readHead(whole[:end], 0, LINE) == INCOMPLETE, end
    assert isinstance(readHead(whole, 0, LINE), Head)


@pytest.mark.parametrize("start", [
    b"GET ", b"POST /thrift HTTP/1.0\r\n", b"POST /other", b"\r\n",
    LINE + b"\r\nHost: x\n", LINE + b"\r\nHost: x\r\n\nX"])
def test_aHeadThatCannotBePlainIsToldBeforeItIsWhole(start: bytes) -> None:
    """
    twisted.web can answer (or refuse) such a request at once: it is not
    held until its head would be whole.
    """
    assert readHead(start, 0, LINE) == NOT_PLAIN


def test_tooLongIsNotPlain() -> None:
    assert readHead(LINE + b"\r\nX: " + b"a" * MOST_HEAD, 0, LINE) == NOT_PLAIN
    assert readHead(head(b"X: " + b"a" * MOST_HEAD, b"Content-Length: 0"), 0, LINE) == NOT_PLAIN
    many = [b"X-%d: y" % n for n in range(101)]
    assert readHead(head(*many, b"Content-Length: 0"), 0, LINE) == NOT_PLAIN


@pytest.mark.parametrize("data", [
    head(b"Content-Length: 1", line=b"GET /thrift HTTP/1.1"),
    head(b"Content-Length: 1", line=b"POST /thrift HTTP/1.0"),
    head(b"Content-Length: 1", line=b"POST /thrift/ HTTP/1.1"),
    head(b"Content-Length: 1", line=b"POST /thrift?x=1 HTTP/1.1"),
    head(b"Content-Length: 1", line=b"post /thrift HTTP/1.1"),
    b"\r\n" + head(b"Content-Length: 1"),
    head(b"Host: x"),
    head(b"Transfer-Encoding: chunked"),
    head(b"Content-Length: 1", b"Transfer-Encoding: identity"),
    head(b"Content-Length: 1", b"Expect: 100-continue"),
    head(b"Content-Length: 1", b"Upgrade: websocket", b"Connection: Upgrade"),
    head(b"Content-Length: 1", b"Connection: Upgrade"),
    head(b"Content-Length: 1", b"Connection: close, keep-alive"),
    head(b"Content-Length: 1", b"Connection: close,"),
    head(b"Content-Length: 1", b"Connection: keep-alive", b"Connection: close"),
    head(b"Content-Length: 1", b"Connection: "),
    head(b"Content-Length: 1", b"TE: trailers"),
    head(b"Content-Length: 1", b"Content-Length: 1"),
    head(b"Content-Length: +1"),
    head(b"Content-Length: 1 2"),
    head(b"Content-Length: 0x10"),
    head(b"Content-Length: \xc2\xb2"),
    head(b"Content-Length: " + b"9" * 19),
    head(b"Content-Length: 1", b"X-Folded: a", b" b"),
    head(b"Content-Length: 1", b"X-Bare: a\nb"),
    head(b"Content-Length: 1", b"X-Bare: a\rb"),
    head(b"Content-Length: 1", b"X-Nul: a\x00b"),
    head(b"Content-Length: 1", b"X-Space : a"),
    head(b"Content-Length: 1", b"X(Bad): a"),
    head(b"Content-Length: 1", b"no colon"),
    head(b"Content-Length: 1", b": no name"),
])
def test_notPlain(data: bytes) -> None:
    assert readHead(data, 0, LINE) == NOT_PLAIN
