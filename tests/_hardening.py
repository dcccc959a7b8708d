"""
Helpers for tests/test_hardening.py and scripts/fuzz.py: hostile bytes,
raw peers, bounded waits, and the fuzz invariants shared by both.
"""

from __future__ import annotations

import array
import fcntl
import os
import struct
import termios
from collections import Counter
from collections.abc import Callable
from typing import Any

from thrift.Thrift import TApplicationException, TException, TMessageType
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tests._handlers import Hardened
from tests.gen.py.txthrift_test import Echo
from txthrift import ClientProtocol, Codec, FrameError, Limits, ServerFactory
from txthrift._framing import makeFramer
from txthrift._service import describe

METHODS = describe(Echo).methods
COMBOS = [(t, p) for t in ("framed", "buffered") for p in ("binary", "compact", "json")]
_I32 = struct.Struct(">i")


def request(protocol: str, name: str, seqid: int, *args: Any, mtype: int = TMessageType.CALL,
            transport: str | None = None) -> bytes:
    """
    One encoded call, framed when C{transport} is C{"framed"}.
    """
    message = Codec(protocol).encode(name, mtype, seqid, METHODS[name].args(*args))
    if transport == "framed":
        return _I32.pack(len(message)) + message
    return message


def resultStruct(name: str) -> type:
    """
    The result struct of C{Echo}'s two-way method C{name}.
    """
    struct = METHODS[name].result
    assert struct is not None, f"{name} is oneway: it has no result"
    return struct


def reply(protocol: str, name: str, seqid: int, value: Any) -> bytes:
    result = resultStruct(name)()
    result.success = value
    return Codec(protocol).encode(name, TMessageType.REPLY, seqid, result)


def binaryHeader(name: bytes = b"getData", seqid: int = 1, mtype: int = 1) -> bytes:
    return struct.pack(">iI", -0x7FFF0000 | mtype, len(name)) + name + _I32.pack(seqid)


def framed(message: bytes) -> bytes:
    return _I32.pack(len(message)) + message


def frameFor(framer: Any, message: bytes) -> bytes:
    """
    C{message} as C{framer} expects it on the wire: length-prefixed for a
    framed one, as it is for an unframed one.
    """
    return framed(message) if framer.transport == "framed" else message


def decodeAll(data: bytes, transport: str, protocol: str) -> list[tuple[str, int, int, Any]]:
    """
    Every message in C{data}, decoded; raises if any is not a valid reply.
    """
    codec = Codec(protocol)
    found = []
    for message in makeFramer(transport, protocol, Limits()).feed(data):
        iprot, name, mtype, seqid = codec.readHeader(message)
        if mtype == TMessageType.EXCEPTION:
            body: Any = TApplicationException()
        elif mtype == TMessageType.REPLY:
            body = resultStruct(name)()
        else:
            raise AssertionError(f"the server sent a message of type {mtype}")
        codec.readBody(iprot, body)
        found.append((name, mtype, seqid, body))
    return found


class Served:
    """
    One server connection over a StringTransport, on a fake clock.
    """

    def __init__(self, transport: str = "auto", protocol: str = "auto", **limits: Any) -> None:
        self.clock = Clock()
        self.factory = ServerFactory(Hardened(self.clock), clock=self.clock, transport=transport,
                                     protocol=protocol, limits=Limits(**limits))
        self.proto = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)


def _i32(number: int) -> int:
    return (number + 2**31) % 2**32 - 2**31


def callsToAnswer(stream: bytes, transport: str, protocol: str) -> list[int]:
    """
    The seqids of the calls in C{stream} that a server must answer: every
    whole message (as C{transport} cuts it, up to any bytes it refuses)
    whose header reads as a call, whatever its body.  C{slow} calls are
    left out: they may ask to be answered never.  Seqids are compared as
    the i32 they are on the wire (a compact varint may hold more bits).
    """
    try:
        messages = makeFramer(transport, protocol, Limits()).feed(stream)
    except FrameError as error:
        messages = error.messages
    codec = Codec(protocol)
    seqids = []
    for message in messages:
        header = _header(codec, message)
        if header is not None and header[1] == TMessageType.CALL and header[0] != "slow":
            seqids.append(_i32(header[2]))
    return seqids


def _header(codec: Codec, message: bytes) -> tuple[str, int, int] | None:
    """
    A message's name, type and seqid; C{None} where the header is unreadable
    (a server closes such a connection, answering nothing).
    """
    try:
        _, name, mtype, seqid = codec.readHeader(message)
    except Exception:
        return None
    return name, mtype, seqid


def checkServerIntake(data: bytes, transport: str, protocol: str, *,
                      wrap: Callable[[bytes], bytes] | None = None,
                      unwrap: Callable[[bytes], bytes] | None = None) -> str:
    """
    Feed C{data} to a fresh auto-detecting server connection, then a valid
    C{ping}; check the fuzz invariants and say which outcome it was:
    C{"closed"}, C{"answered"} or C{"idle"} (waiting for the rest of a
    message it was promised, until the idle timeout closed it).

    Whatever the outcome, every call the stream holds whole gets a reply
    (L{callsToAnswer}): a server that ignores one fails here, even when the
    idle timeout closes it later.

    @param wrap: what each of the two sends goes through (a zlib stream's
        flush, say), and C{unwrap} what the server sent back.
    """
    served = Served(idle_timeout=5.0)
    served.send(wrap(data) if wrap else data)  # nothing may escape
    served.clock.advance(1.0)
    stream = data
    if not served.transport.disconnecting:
        ping = request(protocol, "ping", 0x7FFF0001, 41, transport=transport)
        served.send(wrap(ping) if wrap else ping)
        served.clock.advance(0)
        stream += ping
    out = served.transport.value()
    if unwrap is not None:
        out = unwrap(out)
    # The detected framing decides how replies are cut; before detection
    # nothing may have been sent.
    framer = served.proto.framer
    if framer is None:
        assert out == b"", out
        answered = False
    else:
        replies = decodeAll(out, framer.transport, framer.protocol)
        assert all(mtype in (TMessageType.REPLY, TMessageType.EXCEPTION)
                   for _, mtype, _, _ in replies)
        missing = Counter(callsToAnswer(stream, framer.transport, framer.protocol))
        missing.subtract(_i32(seqid) for _, _, seqid, _ in replies)
        assert not +missing, f"calls never answered: seqids {sorted((+missing).elements())}"
        pings = [body.success for name, mtype, seqid, body in replies
                 if (name, mtype, seqid) == ("ping", TMessageType.REPLY, 0x7FFF0001)]
        assert pings in ([], [42]), pings
        answered = bool(pings)
    if answered:
        return "answered"
    if served.transport.disconnecting:
        return "closed"
    served.clock.advance(6.0)
    assert served.transport.disconnecting, "neither answered nor closed nor timed out"
    return "idle"


def checkClientIntake(data: bytes, transport: str, protocol: str) -> list[Any]:
    """
    Three pending calls; feed C{data} as the server's reply stream, then
    lose the connection: every call must have fired, each with a string or
    a Thrift failure, and nothing may escape.
    """
    clock = Clock()
    proto = ClientProtocol(clock, transport, protocol)
    wire = StringTransport()
    proto.makeConnection(wire)
    outcomes: list[Any] = []
    calls = [proto.call(METHODS["getData"], "getData", (str(i),), {}, None) for i in range(3)]
    for call in calls:
        call.addBoth(outcomes.append)
    proto.dataReceived(data)
    proto.connectionLost(Failure(ConnectionError("test over")))
    assert len(outcomes) == 3, outcomes
    for outcome in outcomes:
        if isinstance(outcome, Failure):
            assert isinstance(outcome.value, TException), outcome
        else:
            assert isinstance(outcome, str), outcome
    assert proto.pending == 0
    return outcomes


def mutate(message: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """
    Apply edits: (0, index, _) flips a bit, (1, index, _) truncates, (2,
    index, junk) inserts junk.
    """
    data = bytearray(message)
    for kind, index, junk in edits:
        if not data:
            break
        at = index % len(data)
        if kind == 0:
            data[at] ^= 1 << (index % 8)
        elif kind == 1:
            del data[at:]
        else:
            data[at:at] = junk
    return bytes(data)


VALID_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("getData", ("hello",)), ("ping", (7,)), ("echo", ("ab", 3)), ("add", (1, 2)),
    ("fail", ("oops",)), ("blob", (1,)), ("fire", ("x",)),
]


def validMessage(transport: str, protocol: str, which: int, seqid: int) -> bytes:
    name, args = VALID_CALLS[which % len(VALID_CALLS)]
    mtype = TMessageType.ONEWAY if name == "fire" else TMessageType.CALL
    return request(protocol, name, seqid, *args, mtype=mtype, transport=transport)


class Raw(Protocol):
    """
    A raw peer: records what it gets and when it is closed.
    """

    transport: ITransport

    def __init__(self, onData: Callable[[Raw, bytes], None] | None = None) -> None:
        self.data = bytearray()
        self.made: Deferred[Raw] = Deferred()
        self.lost: Deferred[bytes] = Deferred()
        self.onData = onData

    def connectionMade(self) -> None:
        self.made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.onData is not None:
            self.onData(self, data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.callback(bytes(self.data))


def bounded(d: Deferred[Any], seconds: float, reactor: Any = None) -> Deferred[Any]:
    if reactor is None:
        from twisted.internet import reactor
    return d.addTimeout(seconds, reactor)


async def until(condition: Callable[[], bool], seconds: float, what: str = "") -> None:
    """
    Wait (on the reactor) until C{condition()} holds, or fail after C{seconds}.
    """
    import time

    from twisted.internet import reactor

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {seconds}s waiting for {what or condition}")
        await deferLater(reactor, 0.02, lambda: None)


def unread(connection: Any) -> int:
    """
    Bytes the kernel holds for C{connection} (a connected protocol) that it
    has not read: what a peer sent to a connection that stopped reading.
    """
    count = array.array("i", [0])
    fcntl.ioctl(connection.transport.fileno(), termios.FIONREAD, count)
    return count[0]


def fdCount(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rssKiB(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
