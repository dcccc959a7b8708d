"""
Tests for L{txthrift._server}: dispatch, replies, limits, backpressure.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from thrift.Thrift import TApplicationException, TMessageType
from thrift.TMultiplexedProcessor import TMultiplexedProcessor
from thrift.transport.TTransport import TTransportException
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from tests._handlers import Holding, Stubborn
from tests._hardening import frameFor, resultStruct
from tests.gen.py.txthrift_test import Calc, Echo
from tests.gen.py.txthrift_test.ttypes import Denied, Item, Oops
from tests.gen.pytwisted.txthrift_test import Echo as TwistedEcho
from txthrift import Codec, Limits, ServerFactory, ServerProtocol
from txthrift._framing import makeFramer
from txthrift._service import describe

METHODS = describe(Echo).methods


class Handler(Holding):
    def __init__(self) -> None:
        super().__init__()
        self.fired: list[str] = []

    def item(self, it: Item) -> Item:
        return Item(id=it.id * 2, values=[it.id])

    def add(self, a: int, b: int) -> Any:
        return "not an i32" if a < 0 else a + b

    def fail(self, kind: str) -> str:
        if kind == "oops":
            raise Oops(why="asked to", code=7)
        if kind == "denied":
            raise Denied(who="you")
        if kind == "app":
            raise TApplicationException(TApplicationException.INVALID_TRANSFORM, "told you")
        if kind == "transport":
            raise TTransportException(TTransportException.UNKNOWN, "downstream died")
        raise RuntimeError("secret internals")

    async def blob(self, size: int) -> bytes:
        return bytes(range(256)) * size

    def fire(self, message: str) -> None:
        if message == "explode":
            raise ValueError("oneway failure")
        self.fired.append(message)


class Wire:
    """
    The client end of one server connection, speaking by hand.
    """

    def __init__(self, factory: ServerFactory, transport: str = "framed",
                 protocol: str = "binary") -> None:
        self.codec = Codec(protocol)
        self.framer = makeFramer(transport, protocol, Limits())
        self.proto: ServerProtocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self._seqid = 0

    def call(self, name: str, *args: Any, mtype: int = TMessageType.CALL,
             wireName: str | None = None) -> int:
        self._seqid += 1
        body = METHODS[name].args(*args)
        self.send(self.codec.encode(wireName or name, mtype, self._seqid, body))
        return self._seqid

    def send(self, message: bytes) -> None:
        self.proto.dataReceived(frameFor(self.framer, message))

    def replies(self) -> list[tuple[str, int, int, Any]]:
        data = self.transport.value()
        self.transport.clear()
        found = []
        for message in self.framer.feed(data):
            iprot, name, mtype, seqid = self.codec.readHeader(message)
            if mtype == TMessageType.EXCEPTION:
                body: Any = TApplicationException()
            else:
                body = resultStruct(name)()
            body.read(iprot)
            found.append((name, mtype, seqid, body))
        return found


def serving(handler: object = None, **kwargs: Any) -> tuple[Wire, Any]:
    handler = Handler() if handler is None else handler
    clock = Clock()
    limits = kwargs.pop("limits", None)
    transport = kwargs.pop("transport", "framed")
    protocol = kwargs.pop("protocol", "binary")
    factory = ServerFactory(handler, clock=clock, limits=limits, **kwargs)
    return Wire(factory, transport, protocol), handler


def test_valuesDeferredsAndCoroutinesAllReply() -> None:
    wire, handler = serving()
    s1 = wire.call("getData", "a")
    s2 = wire.call("slow", 1.0, "t")
    s3 = wire.call("blob", 2)
    s4 = wire.call("ping", 9)  # inherited from Base
    handler.waiting["t"].callback("done")
    replies = {seqid: (name, body.success) for name, _, seqid, body in wire.replies()}
    assert replies == {
        s1: ("getData", "a from server 1024"),
        s2: ("slow", "done"),
        s3: ("blob", bytes(range(256)) * 2),
        s4: ("ping", 10),
    }


def test_repliesGoOutAsTheyAreReadyEachWithItsSeqid() -> None:
    wire, handler = serving()
    first = wire.call("slow", 1.0, "first")
    second = wire.call("slow", 1.0, "second")
    handler.waiting["second"].callback("2")
    handler.waiting["first"].callback("1")
    assert [(seqid, body.success) for _, _, seqid, body in wire.replies()] == [
        (second, "2"), (first, "1")]


def test_declaredExceptionsAreReplies() -> None:
    wire, _ = serving()
    wire.call("fail", "oops")
    wire.call("fail", "denied")
    (_, t1, _, r1), (_, t2, _, r2) = wire.replies()
    assert (t1, r1.oops, t2, r2.denied) == (
        TMessageType.REPLY, Oops(why="asked to", code=7), TMessageType.REPLY, Denied(who="you"))


def test_undeclaredExceptionIsAnInternalErrorThatLeaksNothing(
        logged: list[dict[str, Any]]) -> None:
    wire, _ = serving()
    wire.call("fail", "other")
    [(_, mtype, _, error)] = wire.replies()
    assert (mtype, error.type) == (TMessageType.EXCEPTION, TApplicationException.INTERNAL_ERROR)
    assert "secret" not in error.message
    failures = [e["log_failure"] for e in logged if "log_failure" in e]
    assert any(isinstance(f.value, RuntimeError) for f in failures)


def test_applicationExceptionPassesThrough() -> None:
    wire, _ = serving()
    wire.call("fail", "app")
    [(_, mtype, _, error)] = wire.replies()
    assert (mtype, error.type, error.message) == (
        TMessageType.EXCEPTION, TApplicationException.INVALID_TRANSFORM, "told you")


def test_transportExceptionFromTheHandlerFailsOnlyThatCall() -> None:
    wire, _ = serving()
    wire.call("fail", "transport")
    wire.call("getData", "still here")
    (_, _, _, error), (_, _, _, ok) = wire.replies()
    assert error.type == TApplicationException.INTERNAL_ERROR
    assert ok.success == "still here from server 1024"
    assert not wire.transport.disconnecting


def test_unencodableResultIsOneCleanException(logged: list[dict[str, Any]]) -> None:
    wire, _ = serving()
    wire.call("add", -1, 1)
    [(name, mtype, _, error)] = wire.replies()
    assert (name, mtype, error.type) == (
        "add", TMessageType.EXCEPTION, TApplicationException.INTERNAL_ERROR)
    assert any("cannot encode" in e.get("log_format", "") for e in logged)


def test_unknownMethodIsAnsweredAndTheConnectionStays() -> None:
    wire, _ = serving()
    wire.send(wire.codec.encode("nope", TMessageType.CALL, 41, Echo.sayHello_args()))
    [(name, mtype, seqid, error)] = wire.replies()
    assert (name, mtype, seqid, error.type) == (
        "nope", TMessageType.EXCEPTION, 41, TApplicationException.UNKNOWN_METHOD)
    assert not wire.transport.disconnecting


def test_badArgumentsAreAProtocolError() -> None:
    wire, _ = serving()
    message = wire.codec.encode("add", TMessageType.CALL, 3, Echo.getData_args(input="x"))
    # Field 1 of add is an i32; rewrite the STRING field type byte into I32.
    broken = message.replace(b"\x0b\x00\x01", b"\x08\x00\x01", 1)
    wire.send(broken[:-2])
    [(_, mtype, seqid, error)] = wire.replies()
    assert (mtype, seqid, error.type) == (
        TMessageType.EXCEPTION, 3, TApplicationException.PROTOCOL_ERROR)
    assert not wire.transport.disconnecting


def test_unreadableHeaderClosesThatConnection(logged: list[dict[str, Any]]) -> None:
    wire, _ = serving()
    wire.send(b"\x80\x01\x00\x01\x7f\xff\xff\xff")
    assert wire.transport.disconnecting
    assert wire.replies() == []
    assert any("unreadable message header" in str(e.get("reason")) for e in logged)


def test_onewayNeverReplies(logged: list[dict[str, Any]]) -> None:
    wire, handler = serving()
    wire.call("fire", "hello", mtype=TMessageType.ONEWAY)
    wire.call("fire", "explode", mtype=TMessageType.ONEWAY)
    assert handler.fired == ["hello"]
    assert wire.replies() == []
    assert any(isinstance(e.get("log_failure", Failure(Exception())).value, ValueError)
               for e in logged)


def test_lateReplyAfterDisconnectIsDropped(logged: list[dict[str, Any]]) -> None:
    wire, handler = serving()
    wire.call("slow", 1.0, "x")
    wire.proto.connectionLost(Failure(ConnectionError("gone")))
    handler.waiting["x"].callback("too late")
    assert wire.transport.value() == b""
    assert not [e for e in logged if e.get("log_level") and e["log_level"].name == "error"]


def test_maxPendingPausesReadingUntilACallCompletes() -> None:
    wire, handler = serving(limits=Limits(max_pending=2))
    for tag in "abcd":
        wire.call("slow", 1.0, tag)
    assert set(handler.waiting) == {"a", "b"}
    assert wire.transport.producerState == "paused"
    handler.waiting["a"].callback("A")
    assert set(handler.waiting) == {"a", "b", "c"}
    assert wire.transport.producerState == "paused"
    handler.waiting["b"].callback("B")
    assert set(handler.waiting) == {"a", "b", "c", "d"}
    assert wire.transport.producerState == "producing"
    assert wire.proto.inFlight == 2


def test_aPeerNotReadingRepliesPausesReading() -> None:
    wire, _ = serving()
    assert wire.transport.producer is wire.proto
    wire.proto.pauseProducing()  # what the transport does when its buffer fills
    assert wire.transport.producerState == "paused"
    wire.proto.resumeProducing()
    assert wire.transport.producerState == "producing"


def test_idleTimeoutClosesOnlyIdleConnections() -> None:
    clock = Clock()
    factory = ServerFactory(Handler(), clock=clock, limits=Limits(idle_timeout=10))
    wire = Wire(factory)
    clock.advance(9)
    wire.call("slow", 1.0, "t")
    clock.advance(15)
    assert not wire.transport.disconnecting  # a call is in flight
    factory.dispatcher._handler.waiting["t"].callback("ok")  # type: ignore[attr-defined]
    clock.advance(9.5)
    assert not wire.transport.disconnecting
    clock.advance(1)
    assert wire.transport.disconnecting


def test_autoAnswersInTheClientsTransportAndProtocol() -> None:
    for transport in ("framed", "buffered"):
        for protocol in ("binary", "compact", "json"):
            factory = ServerFactory(Handler(), clock=Clock())
            wire = Wire(factory, transport, protocol)
            wire.call("getData", protocol)
            [(_, _, _, result)] = wire.replies()
            assert result.success == f"{protocol} from server 1024"


def test_twistedFlavourHandlerWithoutIfaceSubclass() -> None:
    @implementer(TwistedEcho.Iface)
    class Plain:  # type: ignore[misc]  # implements only what the test calls
        def getData(self, input: str) -> Deferred[str]:
            return succeed(input.upper())

    wire, _ = serving(Plain())
    wire.call("getData", "quiet")
    [(_, _, _, result)] = wire.replies()
    assert result.success == "QUIET"


def test_serviceGivenExplicitly() -> None:
    class Duck:
        def multiply(self, a: int, b: int) -> int:
            return a * b

    factory = ServerFactory(Duck(), service=Calc, clock=Clock())
    wire = Wire(factory)
    wire.send(wire.codec.encode("multiply", TMessageType.CALL, 1, Calc.multiply_args(6, 7)))
    [message] = wire.framer.feed(wire.transport.value())
    iprot, _, _, _ = wire.codec.readHeader(message)
    result = Calc.multiply_result()
    result.read(iprot)
    assert result.success == 42


def test_handlerWithoutAServiceIsATypeError() -> None:
    with pytest.raises(TypeError, match="cannot tell which Thrift service"):
        ServerFactory(object())


def test_processorsAreServed() -> None:
    wire, _ = serving(Echo.Processor(Handler()))
    wire.call("getData", "p")
    wire.call("fail", "oops")
    (_, _, _, data), (_, _, _, oops) = wire.replies()
    assert (data.success, oops.oops.code) == ("p from server 1024", 7)


def test_aProcessorCanReadTheWholeRequest() -> None:
    """
    Processors written for Apache's servers get their input in a
    C{TMemoryBuffer}; some ask it for the whole request.
    """
    seen: list[bytes] = []

    class Peeking(Echo.Processor):
        def process(self, iprot: Any, oprot: Any) -> Any:
            seen.append(iprot.trans.getvalue())
            return super().process(iprot, oprot)

    wire, _ = serving(Peeking(Handler()))
    wire.call("getData", "peek")
    [(_, _, _, data)] = wire.replies()
    assert data.success == "peek from server 1024"
    assert len(seen) == 1 and seen[0].endswith(b"peek\x00")


def test_twistedProcessorHalfWrittenReplyBecomesOneException() -> None:
    @implementer(TwistedEcho.Iface)
    class Bad:  # type: ignore[misc]  # implements only what the test calls
        def add(self, a: int, b: int) -> str:
            return "not an i32"

    wire, _ = serving(TwistedEcho.Processor(Bad()), protocol="binary")
    seqid = wire.call("add", 1, 2)
    sent = wire.transport.value()
    [(_, mtype, _, error)] = wire.replies()
    assert (mtype, error.type) == (TMessageType.EXCEPTION, TApplicationException.INTERNAL_ERROR)
    # Nothing of the half-written reply went out: the generated processor's
    # exception is all that was sent.
    assert sent == frameFor(wire.framer, wire.codec.encodeException(
        "add", seqid, TApplicationException.INTERNAL_ERROR, "Internal error"))


def test_multiplexedMappingRoutesByServiceName() -> None:
    class Multiplier(Calc.Iface):
        def multiply(self, a: int, b: int) -> int:
            return a * b

    wire, _ = serving({"Echo": Handler(), "Calc": Multiplier(), "": Handler()})
    wire.call("getData", "m", wireName="Echo:getData")
    wire.call("getData", "plain")
    wire.send(wire.codec.encode("Calc:multiply", TMessageType.CALL, 9, Calc.multiply_args(3, 4)))
    wire.send(wire.codec.encode("Nope:x", TMessageType.CALL, 10, Calc.multiply_args(3, 4)))
    data = wire.framer.feed(wire.transport.value())
    headers = [wire.codec.readHeader(m)[1:] for m in data]
    assert headers == [("getData", TMessageType.REPLY, 1), ("getData", TMessageType.REPLY, 2),
                       ("multiply", TMessageType.REPLY, 9), ("x", TMessageType.EXCEPTION, 10)]


def test_multiplexedProcessorUnknownServiceGetsAnException() -> None:
    processor = TMultiplexedProcessor()
    processor.registerProcessor("Echo", Echo.Processor(Handler()))
    wire, _ = serving(processor)
    wire.call("getData", "x", wireName="Other:getData")
    wire.call("getData", "y", wireName="Echo:getData")
    (_, mtype, _, error), (_, _, _, ok) = wire.replies()
    assert (mtype, error.type) == (TMessageType.EXCEPTION, TApplicationException.PROTOCOL_ERROR)
    assert ok.success == "y from server 1024"


def test_serverFactoryTracksConnections() -> None:
    factory = ServerFactory(Handler(), clock=Clock())
    wire = Wire(factory)
    assert factory.connections == {wire.proto}
    wire.proto.connectionLost(Failure(ConnectionError()))
    assert factory.connections == set()


def test_whenIdleFiresOnceTheCallsOnEveryConnectionEnd() -> None:
    handler = Handler()
    factory = ServerFactory(handler, clock=Clock())
    first, second = Wire(factory), Wire(factory)
    first.call("slow", 1.0, "one")
    second.call("slow", 1.0, "two")
    idle = factory.whenIdle()
    other = factory.whenIdle()
    assert idle is not other
    handler.waiting["one"].callback("1")
    assert not idle.called
    handler.waiting["two"].callback("2")
    assert idle.called and other.called
    assert idle.result is None and other.result is None


def test_whenIdleFiresAtOnceWhenNoCallRuns() -> None:
    factory = ServerFactory(Handler(), clock=Clock())
    wire = Wire(factory)
    wire.call("getData", "answered at once")
    idle = factory.whenIdle()
    assert idle.called and idle.result is None


def test_whenIdleDoesNotWaitForWorkOutlivingItsTimeout() -> None:
    """
    A call answered with its timeout is over for its caller, and so for a
    graceful stop, even while its handler carries on.
    """
    handler = Stubborn()
    clock = Clock()
    factory = ServerFactory(handler, clock=clock, limits=Limits(call_timeout=1))
    wire = Wire(factory)
    wire.call("getData", "stubborn")
    idle = factory.whenIdle()
    clock.advance(0.5)
    assert not idle.called
    clock.advance(0.5)
    [(_, mtype, _, _)] = wire.replies()
    assert mtype == TMessageType.EXCEPTION and wire.proto.inFlight == 0
    assert idle.called and len(handler.gates) == 2  # still at work


def test_whenIdleCancellingOneWaiterLeavesTheOthers() -> None:
    handler = Handler()
    factory = ServerFactory(handler, clock=Clock())
    Wire(factory).call("slow", 1.0, "held")
    cancelled, kept = factory.whenIdle(), factory.whenIdle()
    cancelled.cancel()
    assert isinstance(cancelled.result, Failure)
    cancelled.addErrback(lambda failure: failure.trap(CancelledError))
    assert not kept.called
    handler.waiting["held"].callback("done")
    assert kept.called and kept.result is None


def test_whenIdleFiresWhenTheLastBusyConnectionGoes() -> None:
    factory = ServerFactory(Handler(), clock=Clock())
    wire = Wire(factory)
    wire.call("slow", 1.0, "abandoned")
    idle = factory.whenIdle()
    wire.proto.connectionLost(Failure(ConnectionError()))
    assert idle.called


def test_whenDisconnectedFiresOnceTheLastConnectionGoes() -> None:
    factory = ServerFactory(Handler(), clock=Clock())
    first, second = Wire(factory), Wire(factory)
    gone, cancelled = factory.whenDisconnected(), factory.whenDisconnected()
    cancelled.cancel()
    cancelled.addErrback(lambda failure: failure.trap(CancelledError))
    first.proto.connectionLost(Failure(ConnectionError()))
    assert not gone.called
    second.proto.connectionLost(Failure(ConnectionError()))
    assert gone.called and gone.result is None
    again = factory.whenDisconnected()
    assert again.called and again.result is None


def test_closeSendsWhatIsWrittenThenAbortsAPeerThatDoesNotTakeIt() -> None:
    clock = Clock()
    handler = Handler()
    factory = ServerFactory(handler, clock=clock, limits=Limits(idle_timeout=7))
    wire = Wire(factory)
    wire.call("slow", 1.0, "last")
    handler.waiting["last"].callback("answered")
    wire.proto.close()
    [(_, mtype, _, result)] = wire.replies()
    assert mtype == TMessageType.REPLY and result.success == "answered"
    assert wire.transport.disconnecting and not wire.transport.disconnected
    clock.advance(7)
    assert wire.transport.disconnected


def test_callTimeoutAnswersAndFreesTheSlot(logged: list[dict[str, Any]]) -> None:
    clock = Clock()
    handler = Handler()
    factory = ServerFactory(handler, clock=clock,
                            limits=Limits(call_timeout=5, max_pending=1))
    wire = Wire(factory)
    wire.call("slow", 1.0, "never")
    wire.call("getData", "queued")
    assert wire.replies() == []
    clock.advance(5)
    (name, mtype, _, error), (_, _, _, ok) = wire.replies()
    assert (name, mtype, error.type) == (
        "slow", TMessageType.EXCEPTION, TApplicationException.INTERNAL_ERROR)
    assert "did not finish within 5 seconds" in error.message
    assert ok.success == "queued from server 1024"
    assert wire.proto.inFlight == 0
    handler.waiting["never"].callback("too late")  # ignored: the call was cancelled
    assert wire.replies() == []
    assert not [e for e in logged if "log_failure" in e]


def test_callTimeoutCancelsACoroutineHandler() -> None:
    cancelled: list[bool] = []

    class Waiting(Handler):
        async def blob(self, size: int) -> bytes:
            try:
                await Deferred()
            except CancelledError:
                cancelled.append(True)
                raise
            return b""

    clock = Clock()
    wire = Wire(ServerFactory(Waiting(), clock=clock, limits=Limits(call_timeout=2)))
    wire.call("blob", 1)
    clock.advance(2)
    [(_, mtype, _, _)] = wire.replies()
    assert mtype == TMessageType.EXCEPTION
    assert cancelled == [True]


def test_deepQueueOfSynchronousRepliesStaysFlat() -> None:
    # Each queued request answers with an already-fired Deferred: draining
    # them must loop, not recurse once per request.
    class Fired(Handler):
        def getData(self, input: str) -> Deferred[str]:  # type: ignore[override]
            return succeed(input)

    handler = Fired()
    wire = Wire(ServerFactory(handler, clock=Clock(), limits=Limits(max_pending=1)))
    wire.call("slow", 1.0, "gate")
    batch = b"".join(
        frameFor(wire.framer, wire.codec.encode("getData", TMessageType.CALL, 10 + i,
                                            Echo.getData_args(input=str(i))))
        for i in range(3000))
    wire.proto.dataReceived(batch)
    handler.waiting["gate"].callback("open")
    replies = wire.replies()
    assert len(replies) == 3001
    assert [body.success for _, _, _, body in replies[1:]] == [str(i) for i in range(3000)]


def test_replyOverMaxFrameSizeBecomesAnException() -> None:
    wire, _ = serving(limits=Limits(max_frame_size=1024))
    wire.call("blob", 10)  # 2,560 bytes: no peer within the same limits could read it
    [(name, mtype, _, error)] = wire.replies()
    assert (name, mtype, error.type) == (
        "blob", TMessageType.EXCEPTION, TApplicationException.INTERNAL_ERROR)
    assert "max_frame_size" in error.message


def test_aReplyDoesNotKeepTheHandlersValueAlive() -> None:
    # One result struct per method serves every reply: it must let go of
    # each value once encoded.
    class Returned(Item):
        pass

    kept: list[weakref.ref[Item]] = []

    class Keeping(Handler):
        def item(self, it: Item) -> Item:
            value = Returned(id=it.id * 10)
            kept.append(weakref.ref(value))
            return value

    wire, _ = serving(Keeping())
    wire.call("item", Item(id=1))
    wire.call("add", -1, 2)  # an unencodable result between two good ones
    wire.call("item", Item(id=2))
    wire.call("add", 1, 2)
    replies = wire.replies()
    assert [(mtype, body.success.id if mtype == TMessageType.REPLY else None)
            for name, mtype, _, body in replies if name == "item"] == [
        (TMessageType.REPLY, 10), (TMessageType.REPLY, 20)]
    assert [(mtype, getattr(body, "success", None))
            for name, mtype, _, body in replies if name == "add"] == [
        (TMessageType.EXCEPTION, None), (TMessageType.REPLY, 3)]
    gc.collect()
    assert [ref() for ref in kept] == [None, None]


def test_voidMethodsReplyWithAnEmptyResult() -> None:
    wire, _ = serving()
    wire.call("sayHello")
    wire.call("getData", "x")
    wire.call("sayHello")
    replies = wire.replies()
    assert [(name, mtype) for name, mtype, _, _ in replies] == [
        ("sayHello", TMessageType.REPLY), ("getData", TMessageType.REPLY),
        ("sayHello", TMessageType.REPLY)]
    assert not hasattr(replies[2][3], "success")


def test_manyRepliesToOneReadGoOutInFewWrites() -> None:
    # Gathered, not one write per reply; but 32 at most to a write, so that
    # a peer with many calls in flight starts on the first replies while the
    # rest are handled, instead of the two ends taking turns.
    wire, _ = serving()
    writes: list[bytes] = []
    wire.transport.write = writes.append  # type: ignore[method-assign]
    wire.proto.dataReceived(b"".join(
        frameFor(wire.framer, wire.codec.encode("getData", TMessageType.CALL, i,
                                            Echo.getData_args(input=str(i))))
        for i in range(80)))
    assert [len(wire.framer.feed(write)) for write in writes] == [32, 32, 16]


def test_namesChosenByPeersAreNotRemembered() -> None:
    # Encoded headers are cached by name; a peer calling made-up names must
    # not grow that cache.
    wire, _ = serving()
    for i in range(300):
        wire.send(wire.codec.encode(f"nope{i}", TMessageType.CALL, i, Echo.sayHello_args()))
    wire.call("getData", "x")
    replies = wire.replies()
    assert len(replies) == 301
    codec = wire.proto.factory.codec("binary")
    assert [key[:2] for key in codec._encoders] == [("getData", TMessageType.REPLY)]


@pytest.mark.parametrize("name, value", [
    ("getData", "snow ☃ " * 60_000),  # a string past the size the C encoder is bypassed at
    ("blob", bytes(range(256)) * 2_000),  # binary
    ("getData", "small"),
    ("getData", "ü" * 1500),  # just past the size the C encoder is bypassed at, in characters
    ("blob", bytes(1024)),
])
def test_bigStringsAreEncodedAsApacheEncodesThem(name: str, value: Any) -> None:
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.transport.TTransport import TMemoryBuffer

    result = resultStruct(name)(success=value)
    buffer = TMemoryBuffer()
    apache = TBinaryProtocol(buffer)
    apache.writeMessageBegin(name, TMessageType.REPLY, 9)
    result.write(apache)
    apache.writeMessageEnd()
    assert Codec("binary").encode(name, TMessageType.REPLY, 9, result) == buffer.getvalue()
    assert result.success is value  # lent to the encoder, given back
