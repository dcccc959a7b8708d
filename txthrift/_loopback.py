"""
A server connection and a client joined in memory, for fast tests of a
handler through the real wire encoding: no socket, no reactor; the bytes
move when the test says (L{Pump.flush}) and time is a L{Clock}.

The two ends are the very protocols L{txthrift.serve} and
L{txthrift.connect} build (L{ServerFactory}, L{ClientFactory}); only the
transports beneath them are Twisted's public in-memory C{StringTransport}.
Public as L{txthrift.testing.loopback}.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ._client import ClientFactory, ClientProtocol
from ._limits import Limits
from ._server import ServerFactory, ServerProtocol
from ._service import _isServiceModule, resolve

__all__ = ["Pump", "clientServiceOf", "loopback"]

#: The most exchanges one flush makes before deciding the two ends will
#: never fall quiet (a handler answering each reply with another call, say).
_MOST_ROUNDS = 10000


class _End(StringTransport):
    """
    One end of the in-memory connection: what its protocol writes waits
    here until the pump hands it to the other end.
    """

    def __init__(self, host: IPv4Address, peer: IPv4Address) -> None:
        super().__init__(host, peer, lenient=True)
        self.lost = False


def clientServiceOf(handler: object, service: ModuleType | None = None,
                    service_name: str | None = None) -> ModuleType:
    """
    The generated service module a client of what is served calls.

    @param handler: what L{txthrift.serve} takes: a handler, a processor or
        a mapping of service names to either (then C{service_name} says
        which one the client calls).
    @raise TypeError: when no service module can be told.
    """
    if isinstance(handler, Mapping):
        if service_name is None or service_name not in handler:
            raise TypeError(f"a multiplexed handler needs service_name= naming one of "
                            f"{', '.join(sorted(map(str, handler)))}")
        inner = handler[service_name]
        if isinstance(inner, tuple):
            return clientServiceOf(*inner)
        return clientServiceOf(inner, service)
    served = resolve(handler, service)
    if served.module is not None:
        return served.module
    # A processor: Apache's generator puts Processor in the service module.
    module = sys.modules.get(type(handler).__module__)
    if module is not None and _isServiceModule(module):
        return module
    raise TypeError(f"cannot tell the service {handler!r} processes: pass service=")


class Pump:
    """
    Moves bytes between a client and its server connection held in memory,
    and the clock they share.

    Nothing moves until L{flush} (or L{advance}, or L{resultOf}) is called:
    a call's Deferred fires once the pump has carried the call over and its
    reply back.  Reading paused by the server (backpressure) is honoured;
    writes are never refused.

    @ivar client: the L{Client} of the service.
    @ivar clock: the time of both ends: timeouts fire on L{advance}.
    @ivar serverFactory: the L{ServerFactory} that built the server end
        (C{whenIdle()}, C{connections}).
    @ivar serverProtocol: the server end, a L{ServerProtocol}.
    @ivar clientProtocol: the client end, a L{ClientProtocol}.
    """

    def __init__(self, client: Any, clock: Clock, serverFactory: ServerFactory,
                 serverProtocol: ServerProtocol, clientProtocol: ClientProtocol) -> None:
        self.client = client
        self.clock = clock
        self.serverFactory = serverFactory
        self.serverProtocol = serverProtocol
        self.clientProtocol = clientProtocol
        server, peer = IPv4Address("TCP", "127.0.0.1", 9090), IPv4Address("TCP", "127.0.0.1", 54321)
        self._serverEnd = _End(server, peer)
        self._clientEnd = _End(peer, server)
        serverProtocol.makeConnection(self._serverEnd)
        clientProtocol.makeConnection(self._clientEnd)

    @property
    def connected(self) -> bool:
        """
        Whether the connection is still open (neither end has closed it).
        """
        return not self._serverEnd.lost

    @property
    def pending(self) -> int:
        """
        The client's calls still awaiting their reply.
        """
        return self.clientProtocol.pending

    def flush(self) -> None:
        """
        Carry what each end has written to the other, again and again until
        neither has anything more to say; deliver a close once what came
        before it has been read.

        @raise RuntimeError: if the two ends are still talking after
            10,000 exchanges.
        """
        for _ in range(_MOST_ROUNDS):
            moved = self._carry(self._clientEnd, self._serverEnd, self.serverProtocol)
            moved = self._carry(self._serverEnd, self._clientEnd, self.clientProtocol) or moved
            if not moved and not self._closeIfAsked():
                return
        raise RuntimeError(f"the client and server were still exchanging bytes after"
                           f" {_MOST_ROUNDS} rounds")

    def advance(self, seconds: float) -> None:
        """
        Flush, move the clock on by C{seconds} (firing what is due, timeouts
        included), and flush what that caused.
        """
        self.flush()
        self.clock.advance(seconds)
        self.flush()

    def resultOf(self, deferred: Deferred[Any]) -> Any:
        """
        Flush, then give what C{deferred} fired with, or raise what it
        failed with.

        @raise AssertionError: if it has not fired even so (it waits for
            time: L{advance} the clock first).
        """
        self.flush()
        outcome: list[Any] = []
        deferred.addBoth(outcome.append)
        if not outcome:
            raise AssertionError(f"{deferred!r} has not fired after flushing; does it wait for"
                                 " time to pass (pump.advance(seconds))?")
        result = outcome[0]
        if isinstance(result, Failure):
            deferred.addErrback(lambda _: None)
            result.raiseException()
        return result

    def close(self) -> Deferred[None]:
        """
        Close the connection from the client's side, as C{client.close()}
        does, and flush: calls still pending fail, and the returned Deferred
        has fired.
        """
        closed = self.client.close()
        self.flush()
        return closed

    def disconnect(self) -> None:
        """
        Drop the connection at once, as a network failure would: both ends
        see it lost, with nothing more delivered.
        """
        self._lose(ConnectionLost("the in-memory connection was dropped by the test"),
                   ConnectionLost("the in-memory connection was dropped by the test"))

    def _carry(self, source: _End, target: _End, receiver: Any) -> bool:
        # Reading paused (backpressure) or closed: the bytes wait in source.
        if target.lost or target.producerState != "producing":
            return False
        data = source.value()
        if not data:
            return False
        source.clear()
        receiver.dataReceived(data)
        return True

    def _closeIfAsked(self) -> bool:
        """
        Deliver a close once what its end wrote has been read.
        """
        if self._serverEnd.lost:
            return False
        for end in (self._serverEnd, self._clientEnd):
            if end.disconnected:
                aborted = ConnectionAborted("aborted by this end")
                gone = ConnectionLost("the peer aborted the connection")
                self._lose(*((aborted, gone) if end is self._serverEnd else (gone, aborted)))
                return True
        for end in (self._serverEnd, self._clientEnd):
            if end.disconnecting and not end.value():
                self._lose(ConnectionDone("closed"), ConnectionDone("closed"))
                return True
        return False

    def _lose(self, serverReason: Exception, clientReason: Exception) -> None:
        if self._serverEnd.lost:
            return
        for end in (self._serverEnd, self._clientEnd):
            end.lost = True
            end.connected = False
            end.clear()
        self.serverProtocol.connectionLost(Failure(serverReason))
        self.clientProtocol.connectionLost(Failure(clientReason))


def loopback(handler: object, service: ModuleType | None = None, *, protocol: str = "binary",
             transport: str = "framed", clock: Clock | None = None,
             timeout: float | None = None, service_name: str | None = None,
             **limits: Any) -> tuple[Any, Pump]:
    """
    Serve C{handler} to a client over an in-memory connection.

    The server end detects the transport and protocol, as L{txthrift.serve}
    does by default; the client speaks C{transport} and C{protocol}, as
    L{txthrift.connect} does.

    @param handler: what L{txthrift.serve} takes.
    @param service: the generated service module, when it cannot be found
        from the handler.
    @param clock: the time of both ends; a new L{Clock} by default.
    @param timeout: the client's default call timeout, in C{clock} seconds.
    @param service_name: the service the client calls, for a mapping of
        handlers (served multiplexed).
    @param limits: keywords of L{Limits}, for both ends.
    @return: the client, a L{Client} (typed C{Any}: its methods, one
        returning a Deferred per service method, are made at run time), and
        the L{Pump} that carries its calls and replies.
    @raise TypeError: as L{txthrift.serve} and L{txthrift.connect} do.
    """
    clock = clock if clock is not None else Clock()
    limited = Limits.from_keywords(**limits)
    serverFactory = ServerFactory(handler, service=None if isinstance(handler, Mapping)
                                  else service, limits=limited, clock=clock)
    clientFactory = ClientFactory(clientServiceOf(handler, service, service_name),
                                  transport=transport, protocol=protocol, limits=limited,
                                  timeout=timeout, service_name=service_name, clock=clock)
    peer = IPv4Address("TCP", "127.0.0.1", 54321)
    serverProtocol = serverFactory.buildProtocol(peer)
    clientProtocol = clientFactory.buildProtocol(peer)
    pump = Pump(clientProtocol.client, clock, serverFactory, serverProtocol, clientProtocol)
    return pump.client, pump
