"""
Tests for L{txthrift._client}: pending calls, seqids, timeouts, failures.
"""

from __future__ import annotations

from typing import Any

import pytest
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TTransportException
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tests._hardening import frameFor, resultStruct
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Denied, Item, Oops
from tests.gen.pytwisted.txthrift_test import Echo as TwistedEcho
from txthrift import CallTimeout, Client, ClientFactory, Codec
from txthrift._framing import makeFramer
from txthrift._limits import Limits
from txthrift._service import describe

CODEC = Codec("binary")
METHODS = describe(Echo).methods


class Peer:
    """
    The server end of a client connection, replying by hand.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: StringTransport = client.protocol.transport  # type: ignore[assignment]
        self._framer = makeFramer("framed", "binary", Limits())

    def requests(self) -> list[tuple[str, int, int, Any]]:
        data = self.transport.value()
        self.transport.clear()
        found = []
        for message in self._framer.feed(data):
            iprot, name, mtype, seqid = CODEC.readHeader(message)
            method = METHODS[name.rpartition(":")[2]].args()
            method.read(iprot)
            found.append((name, mtype, seqid, method))
        return found

    def reply(self, name: str, seqid: int, **fields: Any) -> None:
        self.send(CODEC.encode(name, TMessageType.REPLY, seqid, resultStruct(name)(**fields)))

    def send(self, message: bytes) -> None:
        self.client.protocol.dataReceived(frameFor(self._framer, message))


def connected(service: Any = Echo, **kwargs: Any) -> tuple[Any, Peer, Clock]:
    """
    A client of C{service} (typed C{Any}: its methods are made at run time),
    the peer it talks to, and its clock.
    """
    clock = Clock()
    proto = ClientFactory(service, clock=clock, **kwargs).buildProtocol(None)
    proto.makeConnection(StringTransport())
    return proto.client, Peer(proto.client), clock


def result(d: Deferred[Any]) -> Any:
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    assert outcome, "the Deferred has not fired"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def test_repliesMatchCallsBySeqidNotOrder() -> None:
    client, peer, _ = connected()
    first, second = client.getData("a"), client.add(1, 2)
    (name1, _, seq1, args1), (name2, _, seq2, args2) = peer.requests()
    assert (name1, args1.input, name2, args2.a, args2.b) == ("getData", "a", "add", 1, 2)
    assert seq1 != seq2
    peer.reply("add", seq2, success=3)
    assert not first.called
    peer.reply("getData", seq1, success="a!")
    assert (result(first), result(second)) == ("a!", 3)


def test_bothGeneratedFlavoursGiveTheSameClient() -> None:
    client, peer, _ = connected(TwistedEcho)
    d = client.ping(4)
    [(name, mtype, seqid, args)] = peer.requests()
    assert (name, mtype, args.x) == ("ping", TMessageType.CALL, 4)
    peer.reply("ping", seqid, success=5)
    assert result(d) == 5
    assert set(client.service.methods) == set(Client.forService(Echo).service.methods)


def test_argumentsGoInDeclarationOrder() -> None:
    client, peer, _ = connected()
    client.echo("hi", 3)  # declared as (2: string text, 1: i32 repeat)
    client.echo(repeat=2, text="yo")
    (_, _, _, first), (_, _, _, second) = peer.requests()
    assert (first.text, first.repeat, second.text, second.repeat) == ("hi", 3, "yo", 2)


def test_badArgumentsRaiseTypeError() -> None:
    client, _, _ = connected()
    with pytest.raises(TypeError):
        client.add(1, 2, 3)


def test_declaredExceptionsErrbackAsThemselves() -> None:
    client, peer, _ = connected()
    oops, denied = client.fail("x"), client.fail("y")
    (_, _, seq1, _), (_, _, seq2, _) = peer.requests()
    peer.reply("fail", seq1, oops=Oops(why="no", code=2))
    peer.reply("fail", seq2, denied=Denied(who="me"))
    with pytest.raises(Oops) as caught:
        result(oops)
    assert caught.value.code == 2
    with pytest.raises(Denied):
        result(denied)


def test_applicationExceptionErrbacks() -> None:
    client, peer, _ = connected()
    d = client.getData("q")
    [(_, _, seqid, _)] = peer.requests()
    peer.send(CODEC.encodeException("getData", seqid, TApplicationException.INTERNAL_ERROR,
                                    "boom"))
    with pytest.raises(TApplicationException) as caught:
        result(d)
    assert caught.value.type == TApplicationException.INTERNAL_ERROR


def test_missingResultIsAnError() -> None:
    client, peer, _ = connected()
    d = client.getData("q")
    [(_, _, seqid, _)] = peer.requests()
    peer.reply("getData", seqid)
    with pytest.raises(TApplicationException) as caught:
        result(d)
    assert caught.value.type == TApplicationException.MISSING_RESULT


def test_voidAndStructResults() -> None:
    client, peer, _ = connected()
    void, item = client.sayHello(), client.item(Item(id=1))
    (_, _, seq1, _), (_, _, seq2, args) = peer.requests()
    peer.reply("sayHello", seq1)
    peer.reply("item", seq2, success=Item(id=args.it.id + 1, values=[1]))
    assert result(void) is None
    assert result(item) == Item(id=2, values=[1])


def test_onewayFiresOnceWritten() -> None:
    client, peer, _ = connected()
    d = client.fire("now")
    assert result(d) is None
    [(name, mtype, _, args)] = peer.requests()
    assert (name, mtype, args.message) == ("fire", TMessageType.ONEWAY, "now")
    assert client.protocol.pending == 0


def test_timeoutFailsTheCallAndDropsItsLateReply() -> None:
    client, peer, clock = connected(timeout=5)
    slow = client.getData("a")
    fast = client.getData("b", timeout=1)
    (_, _, seq1, _), (_, _, seq2, _) = peer.requests()
    clock.advance(1)
    with pytest.raises(CallTimeout, match="getData got no reply within 1 seconds"):
        result(fast)
    assert not slow.called
    peer.reply("getData", seq2, success="late")  # dropped, not delivered anywhere
    peer.reply("getData", seq1, success="a!")
    assert result(slow) == "a!"
    assert client.protocol.transport.connected
    assert clock.getDelayedCalls() == []


def test_timeoutIsATransportError() -> None:
    client, _, clock = connected()
    d = client.getData("a", timeout=0.5)
    clock.advance(0.5)
    with pytest.raises(TTransportException) as caught:
        result(d)
    assert caught.value.type == TTransportException.TIMED_OUT


def test_cancelForgetsTheCall() -> None:
    client, peer, clock = connected(timeout=10)
    d = client.getData("a")
    [(_, _, seqid, _)] = peer.requests()
    d.cancel()
    with pytest.raises(CancelledError):
        result(d)
    assert client.protocol.pending == 0
    assert clock.getDelayedCalls() == []
    peer.reply("getData", seqid, success="late")  # dropped without error


def test_unknownSeqidIsDroppedAndOtherCallsCarryOn() -> None:
    client, peer, _ = connected()
    d = client.getData("a")
    [(_, _, seqid, _)] = peer.requests()
    peer.reply("getData", seqid + 1000, success="stray")
    assert not d.called
    peer.reply("getData", seqid, success="mine")
    assert result(d) == "mine"


def test_malformedFramedReplyFailsOnlyThatCall() -> None:
    client, peer, _ = connected()
    broken, other = client.add(1, 1), client.add(2, 2)
    (_, _, seqid, _), (_, _, otherSeqid, _) = peer.requests()
    reply = CODEC.encode("add", TMessageType.REPLY, seqid, Echo.add_result(success=7))
    peer.send(reply[:-4])  # a field cut short inside its frame
    with pytest.raises(TApplicationException) as caught:
        result(broken)
    assert caught.value.type == TApplicationException.PROTOCOL_ERROR
    # The frame said where the message ended: the stream is still in sync.
    assert not peer.transport.disconnecting
    peer.send(CODEC.encode("add", TMessageType.REPLY, otherSeqid, Echo.add_result(success=4)))
    assert result(other) == 4


def test_lostConnectionFailsPendingAndLaterCalls() -> None:
    client, _, clock = connected(timeout=30)
    pending = [client.getData(str(i)) for i in range(3)]
    client.protocol.connectionLost(Failure(ConnectionError("peer went away")))
    for d in pending:
        with pytest.raises(TTransportException, match="peer went away"):
            result(d)
    assert clock.getDelayedCalls() == []
    later = client.getData("after")
    with pytest.raises(TTransportException) as caught:
        result(later)
    assert caught.value.type == TTransportException.NOT_OPEN


def test_seqidWrapsBeforeOverflowAndSkipsIdsInUse() -> None:
    client, peer, _ = connected()
    d = client.getData("held")  # seqid 1 stays pending
    client.protocol._seqid = 0x7FFFFFFF - 1
    client.getData("a")
    client.getData("b")
    seqids = [seqid for _, _, seqid, _ in peer.requests()]
    assert seqids == [1, 0x7FFFFFFF, 2]
    assert not d.called


def test_multiplexedNamesCarryTheService() -> None:
    client, peer, _ = connected(service_name="Echo")
    d = client.getData("m")
    [(name, _, seqid, _)] = peer.requests()
    assert name == "Echo:getData"
    peer.reply("getData", seqid, success="ok")
    assert result(d) == "ok"


def test_closeFiresWhenTheConnectionIsLost() -> None:
    client, peer, _ = connected()
    d = client.close()
    assert peer.transport.disconnecting and not d.called
    client.protocol.connectionLost(Failure(ConnectionError("closed")))
    assert result(d) is None
    assert result(client.close()) is None


def test_clientsMustChooseTransportAndProtocol() -> None:
    with pytest.raises(ValueError, match="'auto' is for servers"):
        ClientFactory(Echo, transport="auto")
    with pytest.raises(ValueError, match="unknown protocol 'xml'"):
        ClientFactory(Echo, protocol="xml")


def test_notAServiceModule() -> None:
    from tests.gen.py.txthrift_test import ttypes

    with pytest.raises(TypeError, match="not a generated Thrift service module"):
        Client.forService(ttypes)
