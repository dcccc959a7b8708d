"""
Tests for the requests a L{ThriftSite}'s connection reads itself (the plain
ones Thrift clients send) and what it leaves to C{twisted.web}: answers in
the order their requests came whatever order their handlers answer in,
C{max_pending}, refusals and hand-overs behind answers still due, closing,
and the timeouts.  In memory, with a clock; the same connections over real
sockets and real clients are C{tests/test_web.py}'s.
"""

from __future__ import annotations

from typing import Any

import pytest
from thrift.protocol.TCompactProtocol import TCompactProtocolFactory
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from tests._handlers import Holding
from tests.test_web import reply, request
from txthrift.web import CONTENT_TYPES, ThriftResource, ThriftSite

PATH = "/thrift"


class Connection:
    """
    One connection to a L{ThriftSite} serving a L{Holding} handler, in memory.
    """

    def __init__(self, handler: Any = None, **limits: Any) -> None:
        self.clock = MemoryReactorClock()
        self.handler = handler or Holding()
        resource = ThriftResource(self.handler, clock=self.clock, **limits)
        self.site = ThriftSite(resource, path=PATH, reactor=self.clock)
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        self.channel: Any = self.site.buildProtocol(address)
        self.transport = StringTransport(peerAddress=address,
                                         hostAddress=IPv4Address("TCP", "127.0.0.1", 80))
        self.channel.makeConnection(self.transport)

    def send(self, *pieces: bytes) -> None:
        self.channel.dataReceived(b"".join(pieces))

    def answers(self) -> list[tuple[int, dict[str, str], bytes]]:
        """
        The whole answers written so far, each taken off what was written.
        """
        found = []
        data = self.transport.value()
        while b"\r\n\r\n" in data:
            head, rest = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            if lines[0] == "HTTP/1.1 100 Continue":
                data = rest
                continue
            headers = dict(line.split(": ", 1) for line in lines[1:])
            if "Content-Length" in headers:
                length = int(headers["Content-Length"])
                if len(rest) < length:
                    break
                body, data = rest[:length], rest[length:]
            elif headers.get("Transfer-Encoding") == "chunked":
                body = b""
                while True:
                    size, rest = rest.split(b"\r\n", 1)
                    body, rest = body + rest[:int(size, 16)], rest[int(size, 16) + 2:]
                    if size == b"0":
                        break
                data = rest[2:]
            else:
                body, data = rest, b""
            found.append((int(lines[0].split()[1]), headers, body))
        self.transport.clear()
        self.transport.io.write(data)
        return found


def post(body: bytes, *fields: str, path: str = PATH) -> bytes:
    """
    A plain POST of C{body}, as Thrift clients send one.
    """
    extra = "".join(field + "\r\n" for field in fields)
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
            .encode() + body)


def chunked(body: bytes) -> bytes:
    """
    A POST of C{body} in one chunk: left to twisted.web.
    """
    return (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))


def test_answersKeepTheOrderOfTheirRequests() -> None:
    """
    Pipelined calls run at once, but a quick answer waits for the slow one
    asked before it; each goes to its own request, with its protocol's
    content type and a date.
    """
    connection = Connection()
    compact, json = TCompactProtocolFactory(), TJSONProtocolFactory()
    connection.send(post(request("slow", 1.0, "a", seqid=1)),
                    post(request("echo", "x", 2, seqid=2, factory=compact)),
                    post(request("ping", 41, seqid=3, factory=json)))
    assert set(connection.handler.waiting) == {"a"}
    assert connection.answers() == []
    connection.handler.waiting["a"].callback("slow a")
    answers = connection.answers()
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert [reply("slow", answers[0][2]), reply("echo", answers[1][2], compact),
            reply("ping", answers[2][2], json)] == ["slow a", "xx", 42]
    assert [headers["Content-Type"] for _, headers, _ in answers] == [
        CONTENT_TYPES[protocol].decode() for protocol in ("binary", "compact", "json")]
    assert all(headers["Date"].endswith(" GMT") for _, headers, _ in answers)
    assert not connection.transport.disconnecting


def test_aRequestLeftToTwistedWebWaitsForTheAnswersBeforeIt() -> None:
    """
    From a request it does not read itself on (a chunked one here), the
    connection is twisted.web's, once the answers due before it are out.
    """
    connection = Connection()
    connection.send(post(request("slow", 1.0, "a", seqid=1)),
                    chunked(request("ping", 1, seqid=2)))
    assert connection.answers() == []
    assert connection.transport.producerState == "paused"
    connection.handler.waiting["a"].callback("slow a")
    answers = connection.answers()
    assert [reply("slow", answers[0][2]), reply("ping", answers[1][2])] == ["slow a", 2]
    assert connection.transport.producerState == "producing"
    # Plain requests and others still answered, in turn, by twisted.web.
    connection.send(post(request("ping", 5, seqid=3)), chunked(request("ping", 7, seqid=4)))
    assert [reply("ping", body) for _, _, body in connection.answers()] == [6, 8]


@pytest.mark.parametrize(("data", "status"), [
    (f"GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 405),
    (b"POST /other HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 404),
    (b"POST /thrift HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (post(request("ping", 1), "Expect: 100-continue"), 200),
    (post(request("ping", 1), "X-Folded: a", " b"), 200),
    (post(request("ping", 1)).replace(b"HTTP/1.1", b"HTTP/1.0", 1), 200),
])
def test_whatTwistedWebAnswers(data: bytes, status: int) -> None:
    connection = Connection()
    connection.send(data)
    answers = connection.answers()
    assert [answer[0] for answer in answers] == [status], answers


def test_maxPendingPausesReading() -> None:
    """
    Past C{max_pending} requests in flight, the rest wait unread and
    reading pauses; each answer lets one more in.
    """
    connection = Connection(max_pending=2)
    connection.send(*(post(request("slow", 1.0, tag, seqid=n)) for n, tag in enumerate("abcd")))
    waiting = connection.handler.waiting
    assert set(waiting) == {"a", "b"}
    assert connection.transport.producerState == "paused"
    waiting["b"].callback("b")
    assert connection.answers() == [] and set(waiting) == {"a", "b"}
    waiting["a"].callback("a")
    assert set(waiting) == {"a", "b", "c", "d"}
    assert connection.transport.producerState == "paused"
    waiting["d"].callback("d")
    waiting["c"].callback("c")
    assert connection.transport.producerState == "producing"
    assert [reply("slow", body) for _, _, body in connection.answers()] == list("abcd")


def test_aRefusalComesAfterTheAnswersDueBeforeIt() -> None:
    """
    A body over C{max_frame_size} is refused from its head, but after the
    answer still due to the request before it; the rest is dropped.
    """
    connection = Connection(max_frame_size=1024)
    connection.send(post(request("slow", 1.0, "a", seqid=1)),
                    f"POST {PATH} HTTP/1.1\r\nContent-Length: 5000\r\n\r\n".encode())
    connection.send(post(request("ping", 1, seqid=2)))
    assert connection.answers() == []
    connection.handler.waiting["a"].callback("a")
    (first, _, body), (refused, headers, why) = connection.answers()
    assert (first, reply("slow", body)) == (200, "a")
    assert (refused, headers["Connection"]) == (413, "close")
    assert b"1024 bytes (max_frame_size)" in why
    assert connection.transport.disconnecting
    connection.send(post(request("ping", 1, seqid=3)))
    assert connection.answers() == []


def test_connectionCloseIsTheLastRequestRead() -> None:
    connection = Connection()
    connection.send(post(request("ping", 1, seqid=1), "Connection: close"),
                    post(request("ping", 2, seqid=2)))
    [(status, headers, body)] = connection.answers()
    assert (status, headers["Connection"], reply("ping", body)) == (200, "close", 2)
    assert connection.transport.disconnecting


def test_eachRequestIsTimedFromItsOwnStart() -> None:
    """
    C{partial_timeout} times each request from the read that began it: a
    client whose every read ends with the start of its next request is not
    slow; one that stops half-way through a request is.
    """
    connection = Connection(partial_timeout=1.0)
    data = b"".join(post(request("ping", n, seqid=n)) for n in range(6))
    # Each read ends part-way into a request: 1.3 requests a read.
    step = len(data) // 6 * 13 // 10
    for start in range(0, 4 * step, step):
        connection.send(data[start:start + step])
        connection.clock.advance(0.6)
    answered = connection.answers()
    assert [reply("ping", body) for _, _, body in answered] == [1, 2, 3, 4, 5]
    connection.clock.advance(0.5)
    [(status, _, why)] = connection.answers()
    assert status == 408 and b"partial_timeout" in why


def test_idleTimeoutWaitsForCallsInFlight() -> None:
    connection = Connection(idle_timeout=1.0)
    connection.send(post(request("slow", 1.0, "a", seqid=1)))
    connection.clock.advance(3.0)
    assert not connection.transport.disconnecting
    connection.handler.waiting["a"].callback("a")
    assert [reply("slow", body) for _, _, body in connection.answers()] == ["a"]
    connection.clock.advance(1.1)
    assert connection.transport.disconnecting


class Cancellable(Holding):
    """
    A L{Holding} that notes which of its slow calls were cancelled.
    """

    def __init__(self) -> None:
        super().__init__()
        self.cancelled: list[str] = []

    def slow(self, seconds: float, tag: str) -> Deferred[str]:
        self.waiting[tag] = Deferred(lambda waiting: self.cancelled.append(tag))
        return self.waiting[tag]


def test_aClientThatGoesCancelsItsCallsInFlight() -> None:
    handler = Cancellable()
    connection = Connection(handler)
    connection.send(post(request("slow", 1.0, "a", seqid=1)),
                    post(request("slow", 1.0, "b", seqid=2)),
                    post(request("slow", 1.0, "c", seqid=3)))
    connection.handler.waiting["a"].callback("a")
    connection.handler.waiting["c"].callback("c")
    connection.channel.connectionLost(Failure(ConnectionDone()))
    assert handler.cancelled == ["b"]
    assert connection.site.connections == set()


def test_partsOfABodyHoldTheBudget() -> None:
    connection = Connection(partial_budget=10_000)
    body = request("echo", "x" * 900, 1, seqid=1)
    data = post(body)
    budget = connection.site.partialBudget
    assert budget is not None
    connection.send(data[:-200])
    assert budget.held == len(body) - 200
    connection.send(data[-200:])
    assert budget.held == 0
    assert [reply("echo", answer) for _, _, answer in connection.answers()] == ["x" * 900]


def test_aSiteOfAnotherResourceReadsNothingItself() -> None:
    resource = ThriftResource(Holding())
    assert ThriftSite(resource, path="/a b").plainRequestLine is None
    assert ThriftSite(resource, path="/api/thrift/").plainRequestLine == (
        b"POST /api/thrift HTTP/1.1")


def test_aClientThatStopsSendingHasHalfClosedTimeoutPerAnswer() -> None:
    """
    After a half-close, each answer due must come within
    C{half_closed_timeout} of the one before; the calls still in flight
    past it are cancelled and the connection dropped.
    """
    handler = Cancellable()
    connection = Connection(handler, half_closed_timeout=1.0)
    connection.send(*(post(request("slow", 1.0, tag, seqid=n)) for n, tag in enumerate("abc")))
    connection.channel.readConnectionLost()
    connection.clock.advance(0.8)
    handler.waiting["a"].callback("a")
    connection.clock.advance(0.8)
    assert [reply("slow", body) for _, _, body in connection.answers()] == ["a"]
    assert not connection.transport.disconnecting
    connection.clock.advance(0.3)
    assert connection.transport.disconnecting
    connection.channel.connectionLost(Failure(ConnectionDone()))
    assert handler.cancelled == ["b", "c"]


def test_aClientThatStopsSendingIsClosedOnceAnswered() -> None:
    connection = Connection()
    connection.send(post(request("slow", 1.0, "a", seqid=1)), post(request("ping", 1, seqid=2))[:20])
    connection.channel.readConnectionLost()
    assert not connection.transport.disconnecting
    connection.handler.waiting["a"].callback("a")
    assert [reply("slow", body) for _, _, body in connection.answers()] == ["a"]
    assert connection.transport.disconnecting


def test_aHandOverWaitingBehindASlowCallIsNotTimed() -> None:
    """
    A request that arrived whole, but is left to twisted.web behind a call
    still in flight, waits for that call without being timed: the wait is
    the server's.
    """
    connection = Connection(partial_timeout=1.0)
    later = chunked(request("ping", 1, seqid=2))
    connection.send(post(request("slow", 1.0, "a", seqid=1)), later[:20])
    connection.clock.advance(0.1)
    connection.send(later[20:])
    connection.clock.advance(2.0)
    assert connection.answers() == []
    connection.handler.waiting["a"].callback("a")
    answers = connection.answers()
    assert [reply("slow", answers[0][2]), reply("ping", answers[1][2])] == ["a", 2]


def test_aBodyArrivingInManyPiecesIsAnsweredOnceWhole() -> None:
    connection = Connection(partial_budget=100_000)
    body = request("echo", "y" * 20_000, 1, seqid=1)
    data = post(body) + post(request("ping", 1, seqid=2))
    budget = connection.site.partialBudget
    assert budget is not None
    for start in range(0, len(data), 100):
        connection.send(data[start:start + 100])
        if start + 100 < len(body):
            assert connection.answers() == [] and 0 < budget.held <= len(body)
    answers = connection.answers()
    assert [reply("echo", answers[0][2]), reply("ping", answers[1][2])] == ["y" * 20_000, 2]
    assert budget.held == 0


def test_idleTimeoutCountsFromTheLastAnswer() -> None:
    connection = Connection(idle_timeout=1.0)
    connection.send(post(request("slow", 1.0, "a", seqid=1)))
    for _ in range(15):
        connection.clock.advance(0.1)
    connection.handler.waiting["a"].callback("a")
    connection.clock.advance(0.9)
    assert not connection.transport.disconnecting
    connection.clock.advance(0.2)
    assert connection.transport.disconnecting


def test_aFullTransportHoldsTheRequestsBehind() -> None:
    """
    While the transport's buffer is full, requests read are held, not
    answered into it; they are answered once it drains.
    """
    connection = Connection()
    connection.channel.pauseProducing()
    connection.send(post(request("ping", 1, seqid=1)), post(request("ping", 2, seqid=2)))
    assert connection.answers() == []
    connection.channel.resumeProducing()
    assert [reply("ping", body) for _, _, body in connection.answers()] == [2, 3]


@pytest.mark.parametrize("pending", [1, 2])
def test_theLastRequestClosesWithoutReadingOn(pending: int) -> None:
    """
    A connection whose last request (C{Connection: close}) is in flight
    reads no more, at the pending limit or below it: once it is answered,
    the connection closes.
    """
    connection = Connection(max_pending=pending)
    connection.send(post(request("slow", 1.0, "a", seqid=1), "Connection: close"))
    resource = connection.site.thriftResource
    assert resource is not None
    idle = resource.whenIdle()
    connection.handler.waiting["a"].callback("a")
    assert idle.called
    [(status, headers, body)] = connection.answers()
    assert (status, reply("slow", body), headers["Connection"]) == (200, "a", "close")
    assert connection.transport.disconnecting


def test_aDrainedTransportLeavesTwistedWebItsBackpressure() -> None:
    """
    Once the transport's buffer has filled and drained, a request later
    left to twisted.web still has twisted.web pause reading while it is
    handled.
    """
    connection = Connection()
    connection.channel.pauseProducing()
    connection.channel.resumeProducing()
    connection.send(chunked(request("slow", 1.0, "a", seqid=1)))
    # More than twisted.web reads ahead of the request it handles (16 KiB).
    connection.send(post(request("echo", "x" * 20_000, 1, seqid=2)))
    assert connection.transport.producerState == "paused"
    connection.handler.waiting["a"].callback("a")
    answers = connection.answers()
    assert [reply("slow", answers[0][2]), reply("echo", answers[1][2])] == ["a", "x" * 20_000]


class Holder:
    """
    Another connection holding part of a budget.
    """

    def pauseForBudget(self) -> None:
        pass

    def resumeForBudget(self) -> None:
        pass


def test_roomInTheBudgetDoesNotResumeAConnectionWaitingToWrite() -> None:
    connection = Connection(partial_budget=1000)
    budget = connection.site.partialBudget
    assert budget is not None
    other = Holder()
    budget.hold(other, 2000, True)
    data = post(request("echo", "x" * 900, 1, seqid=1))
    connection.send(data[:-300])
    assert connection.transport.producerState == "paused"
    connection.channel.pauseProducing()  # Its buffer is full too.
    budget.release(other)
    assert connection.transport.producerState == "paused"
    connection.channel.resumeProducing()
    assert connection.transport.producerState == "producing"
    connection.send(data[-300:])
    assert [reply("echo", body) for _, _, body in connection.answers()] == ["x" * 900]


def test_readingGoesOnOnceFewerThanMaxPendingAreInFlight() -> None:
    connection = Connection(max_pending=2)
    connection.send(*(post(request("slow", 1.0, tag, seqid=n)) for n, tag in enumerate("abc")))
    waiting = connection.handler.waiting
    assert set(waiting) == {"a", "b"}
    waiting["a"].callback("a")
    assert set(waiting) == {"a", "b", "c"}
    waiting["c"].callback("c")
    waiting["b"].callback("b")
    assert [reply("slow", body) for _, _, body in connection.answers()] == ["a", "b", "c"]


def test_aClientThatStopsSendingGetsWhatTwistedWebReadAnswered() -> None:
    """
    After a hand-over, a half-close still gets every request twisted.web
    read answered, then the connection closes.
    """
    connection = Connection()
    connection.send(chunked(request("slow", 1.0, "a", seqid=1)),
                    post(request("ping", 1, seqid=2)), post(request("ping", 2, seqid=3)))
    connection.channel.readConnectionLost()
    connection.clock.advance(0.1)
    assert not connection.transport.disconnecting
    connection.handler.waiting["a"].callback("a")
    connection.clock.advance(0.1)
    answers = connection.answers()
    assert [reply("slow", answers[0][2]), reply("ping", answers[1][2]),
            reply("ping", answers[2][2])] == ["a", 2, 3]
    assert connection.transport.disconnecting
