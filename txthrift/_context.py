"""
Who is calling: L{currentCall} gives the handler the L{CallContext} of the
call it is handling.

Servers (a TCP connection, an HTTP request, a WebSocket) describe where
their calls come from once, as an L{Origin}, and run each call's dispatch
inside L{callingFrom}.  What they set is a C{contextvars} variable: a
coroutine (C{Deferred.fromCoroutine}) and an C{inlineCallbacks} generator
take a copy of it when they begin, so it holds across their awaits; a
handler run in a thread pool gets a copy too (L{txthrift._threads}).

Per call only a tuple is made; the L{CallContext} is built when asked for.
This module knows nothing of connections or framing.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.interfaces import IAddress, ISSLTransport

from ._header import Envelope

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

__all__ = ["CallContext", "Origin", "callingFrom", "currentCall", "originOf"]

_NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})


class Origin:
    """
    Where the calls of one connection (or HTTP request) come from: the same
    for each of them, so made once.

    @ivar peer: the peer's address, or C{None} where there is none.
    @ivar tlsCertificate: the certificate the peer presented and TLS
        verified, or C{None}.
    @ivar identity: who the peer proved to be: its SASL authorization id,
        else its certificate's subject common name, else C{None}.
    @ivar headers: request headers where the transport carries them.
    @ivar service: the name of the service answering names without a
        C{"Service:"} part.
    """

    __slots__ = ("headers", "identity", "peer", "service", "tlsCertificate")

    def __init__(self, peer: IAddress | None, service: str, *,
                 tlsCertificate: Certificate | None = None, identity: str | None = None,
                 headers: Mapping[str, str] = _NO_HEADERS) -> None:
        self.peer = peer
        self.service = service
        self.tlsCertificate = tlsCertificate
        self.identity = identity if identity is not None else commonName(tlsCertificate)
        self.headers = headers if isinstance(headers, MappingProxyType) else MappingProxyType(
            dict(headers))


def commonName(certificate: Certificate | None) -> str | None:
    """
    A certificate's subject common name (the last, if it has several).
    """
    if certificate is None:
        return None
    from cryptography.x509.oid import NameOID

    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    value = names[-1].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def peerCertificate(transport: Any) -> Certificate | None:
    """
    The certificate the peer of a TLS transport presented, once its
    handshake is done; C{None} for other transports, or none presented.
    """
    if transport is None or not ISSLTransport.providedBy(transport):
        return None
    try:
        certificate: Any = transport.getPeerCertificate()
    except Exception:  # a connection whose TLS has gone says so by raising
        return None
    if certificate is None:
        return None
    converted: Certificate = certificate.to_cryptography()
    return converted


def originOf(transport: Any, service: str, *, identity: str | None = None,
             headers: Mapping[str, str] = _NO_HEADERS) -> Origin:
    """
    The origin of calls arriving on C{transport}.
    """
    peer = None
    if transport is not None:
        try:
            peer = transport.getPeer()
        except Exception:  # pragma: no cover - a transport without a peer
            peer = None
    return Origin(peer, service, tlsCertificate=peerCertificate(transport), identity=identity,
                  headers=headers)


#: The call being handled: (origin, name as sent, seqid, deadline, and on
#: THeader its envelope in a list, so that a handler setting reply headers
#: can put one there, else None).
_current: ContextVar[tuple[Origin, str, int, float | None, list[Envelope | None] | None]] = (
    ContextVar("txthrift.currentCall"))

#: Set it as the call begins; reset it (with the token set returns) as
#: dispatch returns.  Servers call these two directly, a function call less
#: per message than a wrapper would cost.
callingFrom = _current.set
doneCalling = _current.reset


class CallContext:
    """
    The call a handler is handling, as L{currentCall} returns it.

    @ivar seqid: the call's sequence id.
    @ivar deadline: when the server stops waiting for its answer (in the
        reactor's C{seconds()}), or C{None} when it waits as long as it
        takes (no C{call_timeout}).
    """

    __slots__ = ("_envelope", "_name", "_origin", "deadline", "seqid")

    def __init__(self, origin: Origin, name: str, seqid: int, deadline: float | None,
                 envelope: list[Envelope | None] | None = None) -> None:
        self._origin = origin
        self._name = name
        self.seqid = seqid
        self.deadline = deadline
        self._envelope = envelope

    @property
    def service(self) -> str:
        """
        The service called: the name a multiplexed client gave it, else the
        name of the service served.
        """
        service, separator, _ = self._name.partition(":")
        return service if separator else self._origin.service

    @property
    def method(self) -> str:
        """
        The method called.
        """
        return self._name.rpartition(":")[2]

    @property
    def peer(self) -> IAddress | None:
        """
        The caller's address (an C{IAddress}), or C{None} in memory.
        """
        return self._origin.peer

    @property
    def tlsCertificate(self) -> Certificate | None:
        """
        The certificate the caller presented, verified by TLS (a
        C{cryptography.x509.Certificate}), or C{None}.
        """
        return self._origin.tlsCertificate

    @property
    def identity(self) -> str | None:
        """
        Who the caller proved to be: its SASL authorization id, else its
        certificate's subject common name, else C{None}.
        """
        return self._origin.identity

    @property
    def headers(self) -> Mapping[str, str]:
        """
        The request's headers, read-only, where the transport carries them
        (THeader, HTTP, a WebSocket's opening request); empty elsewhere.
        """
        if self._envelope is not None:
            envelope = self._envelope[0]
            return _NO_HEADERS if envelope is None else envelope.headers
        return self._origin.headers

    @property
    def replyHeaders(self) -> dict[str, str]:
        """
        Headers to send with the reply, for the handler to set: THeader
        carries them; on other transports nothing reads them.
        """
        if self._envelope is None:
            return {}
        envelope = self._envelope[0]
        if envelope is None:
            envelope = self._envelope[0] = Envelope(self.seqid, 0, (), _NO_HEADERS)
        return envelope.replyHeaders

    def __repr__(self) -> str:
        return (f"<CallContext {self.service}.{self.method} seqid={self.seqid}"
                f" peer={self.peer} identity={self.identity!r}>")


def currentCall() -> CallContext:
    """
    The call being handled now: in a handler, in the coroutine or
    C{inlineCallbacks} generator it runs, and in a thread that runs it.

    A callback added to a Deferred that the reactor fires later runs outside
    the call: read C{currentCall()} in the handler and keep it.

    @raise RuntimeError: when no call is being handled here.
    """
    call = _current.get(None)
    if call is None:
        raise RuntimeError(
            "txthrift.currentCall() is only available while a Thrift call is being handled:"
            " in its handler, a coroutine or inlineCallbacks it runs, or its thread")
    return CallContext(*call)
