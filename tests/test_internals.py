"""
Tests for what txthrift takes from inside Twisted
(L{txthrift._twistedinternals}) and Apache's thrift package
(L{txthrift._thriftinternals}): each reliance still holds in the installed
version, and failing that says which module to update; each public fallback
works when the private is gone.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import signal
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from thrift.protocol.TBase import TBase
from thrift.protocol.TBinaryProtocol import (
    TBinaryProtocol,
    TBinaryProtocolAccelerated,
    TBinaryProtocolAcceleratedFactory,
    TBinaryProtocolFactory,
)
from thrift.protocol.TCompactProtocol import TCompactProtocol, TCompactProtocolAccelerated
from thrift.protocol.TJSONProtocol import TJSONProtocol
from thrift.protocol.TProtocol import TProtocolBase
from thrift.Thrift import TMessageType, TType
from thrift.TMultiplexedProcessor import TMultiplexedProcessor
from thrift.transport.TTransport import TMemoryBuffer
from twisted.application.app import ApplicationRunner
from twisted.internet import abstract, tcp
from twisted.internet.base import ReactorBase
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from zope.interface import implementer

import twisted
import txthrift
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Item
from tests.gen.pytwisted.txthrift_test import Echo as TwistedEcho
from txthrift import CallbackTransport, Codec, _thriftinternals, _twistedinternals
from txthrift._codec import acceleration
from txthrift._json import JSONProtocol
from txthrift._thriftinternals import (
    STRUCT_HOOKS,
    WholeStructProtocol,
    awaitingReplies,
    decodeBinary,
    decodeCompact,
    encodeBinary,
    encodeCompact,
    lastSeqid,
    processorParts,
    restartingEachMessage,
    setLastSeqid,
    withHandler,
    withStoredHeader,
)
from txthrift._twistedinternals import canSendDirectly, forgetStopSignal, send

TWISTED = f"Twisted {twisted.__version__}"
THRIFT = f"thrift {importlib.metadata.version('thrift')}"
UPDATE_TWISTED = "update txthrift/_twistedinternals.py"
UPDATE_THRIFT = "update txthrift/_thriftinternals.py"


# -- Twisted ---------------------------------------------------------------

@pytest.fixture
def connection() -> Iterator[tuple[tcp.Server, socket.socket]]:
    """
    A Twisted TCP server transport over one end of a socket pair, on a
    memory reactor, and the other end.
    """
    ours, peer = socket.socketpair()
    transport = tcp.Server(ours, Protocol(), ("127.0.0.1", 1), None,  # type: ignore[arg-type]
                           0, MemoryReactor())
    peer.settimeout(5)
    try:
        yield transport, peer
    finally:
        ours.close()
        peer.close()


def test_twistedCountsWhatWriteBuffers(connection: tuple[tcp.Server, socket.socket]) -> None:
    """
    C{_tempDataLen} and C{dataBuffer} say what C{write()} holds back, and
    are empty once it has gone.
    """
    transport, peer = connection
    empty = transport._tempDataLen == 0 and transport.dataBuffer == b""
    assert empty, f"{TWISTED} starts a transport's buffers otherwise: {UPDATE_TWISTED}"
    transport.write(b"abc")
    assert transport._tempDataLen == 3 and transport.dataBuffer == b"", (
        f"{TWISTED} no longer counts what write() holds in FileDescriptor._tempDataLen:"
        f" {UPDATE_TWISTED}")
    transport.doWrite()
    assert transport._tempDataLen == 0 and transport.dataBuffer == b"", (
        f"{TWISTED} no longer empties _tempDataLen and dataBuffer once written: {UPDATE_TWISTED}")
    assert peer.recv(16) == b"abc"


def test_twistedTransportsSendOnTheirHandle(
        connection: tuple[tcp.Server, socket.socket]) -> None:
    """
    A TCP transport's C{getHandle()} is its socket, and C{SEND_LIMIT} the
    most it sends at once.
    """
    transport, _ = connection
    assert transport.getHandle() is transport.socket, (
        f"{TWISTED}'s getHandle() is no longer a TCP transport's socket: {UPDATE_TWISTED}")
    limit = getattr(abstract.FileDescriptor, "SEND_LIMIT", None)
    assert isinstance(limit, int) and limit > 0, (
        f"{TWISTED} has no FileDescriptor.SEND_LIMIT: {UPDATE_TWISTED}")
    assert _twistedinternals._DIRECT_LIMIT == limit


def test_twistedMarksTLSConnections(connection: tuple[tcp.Server, socket.socket]) -> None:
    """
    C{TLS} says a connection's writes go through TLS: then L{send} puts no
    clear text on the socket.
    """
    ssl = pytest.importorskip("twisted.internet.ssl")
    transport, peer = connection
    assert transport.TLS is False, f"{TWISTED}'s TCP transports have no TLS flag: {UPDATE_TWISTED}"
    transport.startTLS(ssl.CertificateOptions())
    assert transport.TLS is True, (
        f"{TWISTED}'s startTLS no longer sets a transport's TLS flag: {UPDATE_TWISTED}")
    send(transport, b"secret")
    peer.setblocking(False)
    try:
        seen = peer.recv(65536)
    except BlockingIOError:
        seen = b""
    assert b"secret" not in seen


def test_theProbeFindsTheBuffers() -> None:
    assert _twistedinternals._buffersKnown, (
        f"{TWISTED}'s transports no longer count buffered bytes in _tempDataLen and"
        f" dataBuffer: replies go through write(); {UPDATE_TWISTED}")


def test_sendGoesOnTheSocketWhenNothingWaits(
        connection: tuple[tcp.Server, socket.socket]) -> None:
    transport, peer = connection
    assert canSendDirectly(transport)
    send(transport, b"hello")
    assert transport._tempDataLen == 0 and transport.dataBuffer == b""
    assert peer.recv(16) == b"hello"


def test_sendQueuesBehindWhatWaits(connection: tuple[tcp.Server, socket.socket]) -> None:
    transport, peer = connection
    transport.write(b"first ")
    send(transport, b"second")
    assert transport._tempDataLen == 12
    transport.doWrite()
    assert peer.recv(16) == b"first second"


def test_aSocketErrorLeavesTheBytesToWrite(
        connection: tuple[tcp.Server, socket.socket], monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A send the socket refuses goes to C{write()}, which finds the error
    itself when it writes.
    """
    transport, _ = connection

    class Refusing:
        def send(self, data: bytes) -> int:
            raise BrokenPipeError()

    monkeypatch.setattr(transport, "getHandle", Refusing)
    send(transport, b"abc")
    assert transport._tempDataLen == 3


def test_withoutTheBuffersRepliesGoThroughWrite(
        connection: tuple[tcp.Server, socket.socket], monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Where a Twisted counts its buffers elsewhere, no transport is written on
    directly: a connection hands its replies to C{write()} at once.
    """
    transport, peer = connection
    monkeypatch.setattr(_twistedinternals, "_buffersKnown", False)
    assert not canSendDirectly(transport)
    server = txthrift.ServerFactory(_Echo()).buildProtocol(None)
    transport.protocol = server
    server.makeConnection(transport)
    codec = Codec("binary")
    message = codec.encode("getData", TMessageType.CALL, 1, Echo.getData_args("x"))
    server.dataReceived(len(message).to_bytes(4, "big") + message)
    assert transport._tempDataLen > 0
    transport.doWrite()
    reply = peer.recv(65536)
    assert codec.readHeader(reply[4:])[1:] == ("getData", TMessageType.REPLY, 1)


def test_sendWritesWhereItCannotSeeTheBuffers() -> None:
    transport = StringTransport()
    send(transport, b"abc")
    assert transport.value() == b"abc"


class _Echo(Echo.Iface):
    def getData(self, input: str) -> str:
        return input


# -- Apache: the C coder ---------------------------------------------------

needsExtension = pytest.mark.skipif(
    encodeBinary is None, reason="the thrift package was built without its C extension")


@needsExtension
def test_acceleratedProtocolsUseTheCoderWeCall() -> None:
    protocol = TBinaryProtocolAccelerated(TMemoryBuffer())
    same = protocol._fast_decode is decodeBinary and protocol._fast_encode is encodeBinary
    assert same, (f"{THRIFT}'s TBinaryProtocolAccelerated no longer codes with fastbinary's"
                  f" decode_binary and encode_binary: {UPDATE_THRIFT}")


@needsExtension
def test_theCoderWritesAndReadsWhatTheProtocolDoes() -> None:
    assert encodeBinary is not None and decodeBinary is not None
    cls: Any = Echo.getData_args
    args = cls("x" * 300)
    typeArgs = [cls, cls.thrift_spec]
    plain = TMemoryBuffer()
    args.write(TBinaryProtocol(plain))
    assert encodeBinary(args, typeArgs) == plain.getvalue(), (
        f"{THRIFT}'s encode_binary(struct, [cls, spec]) writes other bytes: {UPDATE_THRIFT}")
    read = cls()
    decodeBinary(read, TBinaryProtocolAccelerated(TMemoryBuffer(plain.getvalue())), typeArgs)
    assert read == args, (
        f"{THRIFT}'s decode_binary(struct, iprot, [cls, spec]) reads otherwise: {UPDATE_THRIFT}")
    limited = TBinaryProtocolAccelerated(TMemoryBuffer(plain.getvalue()), string_length_limit=10)
    with pytest.raises(Exception, match="limit"):
        decodeBinary(cls(), limited, typeArgs)


@needsExtension
def test_acceleratedCompactProtocolsUseTheCoderWeCall() -> None:
    protocol = TCompactProtocolAccelerated(TMemoryBuffer())
    same = protocol._fast_decode is decodeCompact and protocol._fast_encode is encodeCompact
    assert same, (f"{THRIFT}'s TCompactProtocolAccelerated no longer codes with fastbinary's"
                  f" decode_compact and encode_compact: {UPDATE_THRIFT}")


@needsExtension
def test_theCompactCoderWritesAndReadsWhatTheProtocolDoes() -> None:
    """
    C{encode_compact} writes what Apache's pure Python compact protocol
    does; C{decode_compact} reads it back, within the string and container
    limits of the protocol it is given.
    """
    assert encodeCompact is not None and decodeCompact is not None
    cls: Any = Echo.getData_args
    args = cls("x" * 300)
    typeArgs = [cls, cls.thrift_spec]
    plain = TMemoryBuffer()
    args.write(TCompactProtocol(plain))
    assert encodeCompact(args, typeArgs) == plain.getvalue(), (
        f"{THRIFT}'s encode_compact(struct, [cls, spec]) writes other bytes: {UPDATE_THRIFT}")
    read = cls()
    decodeCompact(read, TCompactProtocolAccelerated(TMemoryBuffer(plain.getvalue())), typeArgs)
    assert read == args, (
        f"{THRIFT}'s decode_compact(struct, iprot, [cls, spec]) reads otherwise: {UPDATE_THRIFT}")
    limited = TCompactProtocolAccelerated(TMemoryBuffer(plain.getvalue()),
                                          string_length_limit=10)
    with pytest.raises(Exception, match="limit"):
        decodeCompact(cls(), limited, typeArgs)
    itemCls: Any = Item
    listed = TMemoryBuffer()
    itemCls(id=1, values=[1, 2, 3]).write(TCompactProtocol(listed))
    limited = TCompactProtocolAccelerated(TMemoryBuffer(listed.getvalue()),
                                          container_length_limit=2)
    with pytest.raises(Exception, match="limit"):
        decodeCompact(itemCls(), limited, [itemCls, itemCls.thrift_spec])


def test_accelerationIsReportedTruthfully() -> None:
    built = importlib.util.find_spec("txthrift._speedups") is not None
    assert acceleration.codec is (encodeBinary is not None) is txthrift.accelerated
    assert acceleration.scanner is built
    assert bool(acceleration) is (acceleration.codec and built)


# -- Apache: generated code's whole-struct hooks ---------------------------

class _Recording(WholeStructProtocol):
    def __init__(self, trans: Any) -> None:
        super().__init__(trans)
        self.calls: list[tuple[Any, ...]] = []

    def decodeStruct(self, obj: Any, iprot: Any, typeArgs: list[Any]) -> Any:
        self.calls.append(("decode", obj, iprot, typeArgs))

    def encodeStruct(self, obj: Any, typeArgs: list[Any]) -> bytes:
        self.calls.append(("encode", obj, typeArgs))
        return b"whole"


class _Slotted(TBase):
    __slots__ = ("text",)
    thrift_spec = (None, (1, TType.STRING, "text", "UTF8", None))

    def __init__(self, text: str | None = None) -> None:
        self.text = text


@pytest.mark.parametrize("cls", [Echo.getData_args, _Slotted], ids=["generated", "TBase"])
def test_generatedCodeHandsWholeStructsToTheHooks(cls: Any) -> None:
    buffer = TMemoryBuffer(b"")
    protocol = _Recording(buffer)
    struct = cls("x")
    struct.read(protocol)
    struct.write(protocol)
    expected = [("decode", struct, protocol, [cls, cls.thrift_spec]),
                ("encode", struct, [cls, cls.thrift_spec])]
    assert protocol.calls == expected, (
        f"{cls.__name__}.read/write no longer hand whole structs to a protocol's"
        f" {' and '.join(STRUCT_HOOKS)} ({THRIFT}): {UPDATE_THRIFT}")
    assert buffer.getvalue() == b"whole"


def test_theBaseProtocolSetsTheHooks() -> None:
    """
    C{TProtocolBase.__init__} sets both hooks to C{None} on the instance,
    which L{WholeStructProtocol} undoes.
    """
    base = vars(TProtocolBase(None))
    assert all(hook in base and base[hook] is None for hook in STRUCT_HOOKS), (
        f"{THRIFT}'s TProtocolBase.__init__ no longer sets {' and '.join(STRUCT_HOOKS)}"
        f" to None: {UPDATE_THRIFT}")
    assert _thriftinternals._HOOKS_ON_INSTANCES
    protocol = _Recording(TMemoryBuffer(b""))
    assert not any(hook in vars(protocol) for hook in STRUCT_HOOKS)


def test_withoutTheHooksJSONGoesThroughItsAPI(monkeypatch: pytest.MonkeyPatch) -> None:
    for hook in STRUCT_HOOKS:
        monkeypatch.setattr(JSONProtocol, hook, None)
    codec = Codec("json")
    args = Echo.getData_args("x" * 100)
    message = codec.encode("getData", TMessageType.CALL, 3, args)
    iprot, name, _, seqid = codec.readHeader(message)
    read = Echo.getData_args()
    codec.readBody(iprot, read)
    assert (name, seqid, read) == ("getData", 3, args)


# -- Apache: protocols moved to a subclass ---------------------------------

PROTOCOLS = [TBinaryProtocol, TBinaryProtocolAccelerated, TCompactProtocol,
             TCompactProtocolAccelerated, TJSONProtocol, JSONProtocol]


def _call(protocol: type, name: str = "getData") -> bytes:
    buffer = TMemoryBuffer()
    oprot = protocol(buffer)
    oprot.writeMessageBegin(name, TMessageType.CALL, 5)
    Echo.getData_args("x").write(oprot)
    oprot.writeMessageEnd()
    return buffer.getvalue()


class _ReplyBuffer(TMemoryBuffer):
    def restart(self) -> None:
        TMemoryBuffer.__init__(self)


def _process(processor: Any, protocol: type, iprot: Any) -> tuple[Any, ...]:
    oprot = restartingEachMessage(protocol(_ReplyBuffer()))
    processor.process(iprot, oprot)
    back = protocol(TMemoryBuffer(oprot.trans.getvalue()))
    name, mtype, seqid = back.readMessageBegin()
    result = Echo.getData_result()
    result.read(back)
    return name, mtype, seqid, result.success


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_protocolsMoveToASubclass(protocol: type) -> None:
    iprot = protocol(TMemoryBuffer(_call(protocol, "renamed")))
    iprot.readMessageBegin()
    stored = withStoredHeader(iprot, ("getData", TMessageType.CALL, 5))
    assert stored is iprot and isinstance(stored, protocol), (
        f"{THRIFT}'s {protocol.__name__} objects can no longer be moved to a subclass:"
        f" {UPDATE_THRIFT}")
    assert _process(Echo.Processor(_Echo()), protocol, stored) == (
        "getData", TMessageType.REPLY, 5, "x")


def test_multiplexedProcessorsDecorateTheMovedProtocol() -> None:
    """
    Apache's C{TMultiplexedProcessor} builds a class from the instance for
    each service's processor: the header it stores wins over ours.
    """
    processor = TMultiplexedProcessor()
    processor.registerProcessor("Echo", Echo.Processor(_Echo()))
    iprot = TBinaryProtocol(TMemoryBuffer(_call(TBinaryProtocol, "anything")))
    iprot.readMessageBegin()
    stored = withStoredHeader(iprot, ("Echo:getData", TMessageType.CALL, 5))
    assert _process(processor, TBinaryProtocol, stored) == (
        "getData", TMessageType.REPLY, 5, "x"), (
        f"{THRIFT}'s TMultiplexedProcessor no longer reads the header of a protocol moved to"
        f" a subclass: {UPDATE_THRIFT}")


def test_aWriterStartsOverAtEachMessage() -> None:
    oprot = restartingEachMessage(TBinaryProtocol(_ReplyBuffer()))
    oprot.writeMessageBegin("broken", TMessageType.REPLY, 1)
    oprot.writeI32(7)
    oprot.writeMessageBegin("getData", TMessageType.EXCEPTION, 1)
    oprot.writeMessageEnd()
    back = TBinaryProtocol(TMemoryBuffer(oprot.trans.getvalue()))
    assert back.readMessageBegin() == ("getData", TMessageType.EXCEPTION, 1)


class _Fixed:
    """
    A protocol whose class cannot be changed (slots, as a C type has none
    to add): what the proxies stand in for.
    """

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_aProtocolThatCannotMoveIsProxied() -> None:
    iprot = _Fixed(TBinaryProtocolAccelerated(TMemoryBuffer(_call(TBinaryProtocol, "x"))))
    iprot.readMessageBegin()
    stored = withStoredHeader(iprot, ("getData", TMessageType.CALL, 5))
    assert stored is not iprot and stored.readMessageBegin() == ("getData", TMessageType.CALL, 5)

    def fixed(trans: Any) -> Any:
        return _Fixed(TBinaryProtocolAcceleratedFactory().getProtocol(trans))

    assert _process(Echo.Processor(_Echo()), fixed, stored) == (  # type: ignore[arg-type]
        "getData", TMessageType.REPLY, 5, "x")
    oprot = restartingEachMessage(_Fixed(TBinaryProtocol(_ReplyBuffer())))
    oprot.writeMessageBegin("broken", TMessageType.REPLY, 1)
    oprot.writeI32(7)
    oprot.writeMessageBegin("getData", TMessageType.EXCEPTION, 1)
    back = TBinaryProtocol(TMemoryBuffer(oprot.trans.getvalue()))
    assert back.readMessageBegin() == ("getData", TMessageType.EXCEPTION, 1)


class _SignalledReactor:
    """
    Just enough of a reactor for Twisted's own signal handlers to run on.
    """

    def __init__(self) -> None:
        self.stops: list[object] = []

    def stop(self) -> None:
        pass

    def callFromThread(self, function: object, *args: object) -> None:
        self.stops.append(function)


@pytest.mark.parametrize("handler, number", [("sigTerm", signal.SIGTERM),
                                             ("sigInt", signal.SIGINT)])
def test_twistedRecordsTheSignalThatStoppedIt(handler: str, number: int) -> None:
    """
    Twisted's reactor notes the signal that stopped it where
    L{forgetStopSignal} clears it, and twistd reads it from there.
    """
    reactor = _SignalledReactor()
    getattr(ReactorBase, handler)(reactor, number, None)
    assert getattr(reactor, "_exitSignal", None) == number, (
        f"Twisted {twisted.__version__} no longer records the stop signal in"
        " ReactorBase._exitSignal: update txthrift/_twistedinternals.py")
    assert "_exitSignal" in inspect.getsource(ApplicationRunner.startReactor), (
        f"twistd of Twisted {twisted.__version__} no longer reads ReactorBase._exitSignal:"
        " update txthrift/_twistedinternals.py")
    forgetStopSignal(reactor)
    assert vars(reactor)["_exitSignal"] is None


def test_forgetStopSignalLeavesOtherSignals() -> None:
    reactor = _SignalledReactor()
    ReactorBase.sigTerm(reactor, signal.SIGHUP, None)  # type: ignore[arg-type]
    forgetStopSignal(reactor)
    assert vars(reactor)["_exitSignal"] == signal.SIGHUP
    forgetStopSignal(object())  # a reactor that records nothing: nothing to do


@pytest.mark.parametrize("generated", [Echo, TwistedEcho], ids=["py", "py:twisted"])
def test_generatedProcessorsKeepTheirHandlerAndMethodTable(generated: Any) -> None:
    handler = (_Echo() if isinstance(generated.Iface, type)  # py: a class; py:twisted: zope
               else implementer(generated.Iface)(type("Handler", (_Echo,), {}))())
    processor = generated.Processor(handler)
    parts = processorParts(processor)
    assert parts is not None, (
        f"{THRIFT}'s generated processors no longer keep _processMap and _handler:"
        " update txthrift/_thriftinternals.py")
    functions, kept = parts
    assert "getData" in functions and callable(functions["getData"])
    assert kept is handler or getattr(kept, "_handler", kept) is handler
    other = object()
    changed = withHandler(processor, other)
    assert processorParts(changed) is not None
    assert processorParts(changed)[1] is other  # type: ignore[index]
    assert processorParts(processor)[1] is kept  # type: ignore[index]
    assert processorParts(TMultiplexedProcessor()) is None


def test_generatedTwistedClientsKeepSeqidAndCallsAwaitingReplies() -> None:
    sent: list[bytes] = []
    transport = CallbackTransport(sent.append)
    client = TwistedEcho.Client(transport, TBinaryProtocolFactory())
    start = lastSeqid(client)
    pending = awaitingReplies(client)
    assert start is not None and pending == {}, (
        f"{THRIFT}'s py:twisted clients no longer keep _seqid and _reqs:"
        " update txthrift/_thriftinternals.py")
    waiting = client.getData("x")
    assert lastSeqid(client) == start + 1 and set(pending) == {start + 1}
    assert pending[start + 1] is not None and sent
    setLastSeqid(client, 41)
    client.getData("y")
    assert 42 in pending
    waiting.addErrback(lambda failure: None)


def test_twistedPortsAcceptAsManyAsNumberAccepts() -> None:
    """
    C{--workers} shares a listening socket by making each worker's port
    accept one connection per wake-up (C{tcp.Port.numberAccepts}, public but
    in no interface) and pausing it with C{stopReading}/C{startReading}.
    """
    port = tcp.Port(0, Factory(), interface="127.0.0.1", reactor=MemoryReactor())
    message = (f"Twisted {twisted.__version__}'s tcp.Port no longer has {{}}: update"
               " txthrift/_workers.py (_OneAtATime)")
    assert "self.numberAccepts" in inspect.getsource(tcp.Port.doRead), (
        message.format("an accept loop bounded by numberAccepts"))
    for name in ("stopReading", "startReading", "connected", "disconnecting"):
        assert hasattr(port, name), message.format(name)


# twisted.web: what HTTPChannel calls on a request as its body arrives
# (_twistedinternals.WatchedRequest, for txthrift.web).


class _Watching(_twistedinternals.WatchedRequest):
    """
    Records what the channel told it; refuses a body over C{refuseOver}.
    """

    refuseOver = 10**9
    #: The request the channel made last.
    last: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[Any] = []
        _Watching.last = self

    def bodyComing(self, length: int | None) -> bool:
        self.seen.append(("length", length))
        return length is None or length <= self.refuseOver

    def bodyPiece(self, data: bytes) -> bool:
        self.seen.append(("piece", data))
        return sum(len(d) for kind, d in self.seen if kind == "piece") <= self.refuseOver

    def bodyEnded(self) -> None:
        content: Any = self.content
        self.seen.append(("ended", content.getvalue()))

    def process(self) -> None:
        self.seen.append(("processed", None))


def _channel(refuseOver: int = 10**9) -> tuple[Any, StringTransport]:
    from twisted.web.http import HTTPChannel
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    _Watching.refuseOver = refuseOver
    channel = HTTPChannel()
    channel.requestFactory = _Watching
    channel.site = Site(Resource())  # type: ignore[attr-defined]
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


def test_twistedWebTellsARequestOfItsBodyAsItComes() -> None:
    """
    The channel calls gotLength with the declared length once the headers
    are in, handleContentChunk per piece, requestReceived once it is whole.
    """
    channel, _ = _channel()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    channel.dataReceived(b"def")
    assert _Watching.last.seen == [("length", 6), ("piece", b"abc"), ("piece", b"def"),
                                   ("ended", b"abcdef"), ("processed", None)]
    channel, _ = _channel()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert _Watching.last.seen == [("length", None), ("piece", b"abc"), ("piece", b"de"),
                                   ("ended", b"abcde"), ("processed", None)]


def test_aRefusedBodyIsDroppedAndNeverProcessed() -> None:
    channel, _ = _channel(refuseOver=4)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabcdef")
    assert _Watching.last.seen == [("length", 6)]
    channel, _ = _channel(refuseOver=4)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n3\r\ndef\r\n3\r\nghi\r\n0\r\n\r\n")
    assert _Watching.last.seen == [("length", None), ("piece", b"abc"), ("piece", b"def")]
    content: Any = _Watching.last.content
    assert content.getvalue() == b"abc"


def test_aBodyRefusedUpFrontIsNotAskedFor() -> None:
    """
    The channel reads C{Expect} after gotLength: taken away, no C{100
    Continue} is sent for a body refused.
    """
    channel, transport = _channel(refuseOver=4)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
                         b"Expect: 100-continue\r\n\r\n")
    assert transport.value() == b""
    channel, transport = _channel()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
                         b"Expect: 100-continue\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 100 Continue")


def test_twistedWebListsTheRequestsUnderWay() -> None:
    """
    C{HTTPChannel.requests} holds a request from its first line until it is
    answered (txthrift.web times requests by it), and C{persistent} says
    whether the connection is kept after the response.
    """
    channel, _ = _channel()
    assert channel.requests == []
    channel.dataReceived(b"POST / HTTP/1.1\r\n")
    assert len(channel.requests) == 1
    channel.dataReceived(b"Host: x\r\nContent-Length: 2\r\n\r\nab")
    (request,) = channel.requests
    assert request is _Watching.last and channel.persistent
    request.finish()
    assert channel.requests == []
