"""
SASL on Thrift's byte streams: the handshake Apache's C{TSaslTransport}
defines, then messages carried in SASL frames, at both ends.

The wire, as Apache's Java and Python transports and C{thrift_sasl} speak
it: handshake frames of one status byte (START, OK, BAD, ERROR, COMPLETE),
a 4-byte big-endian length and a payload; the client sends START with the
mechanism's name and OK with its first response, the server answers OK
with a challenge, COMPLETE, or BAD/ERROR with a reason and closes.  After
COMPLETE each SASL frame is a 4-byte length and a payload (wrapped, when a
security layer was negotiated), the payloads together one stream of Thrift
messages, framed or not.

The server checks PLAIN credentials with C{twisted.cred} checkers; the
client runs any mechanism of C{pure-sasl} (the extra C{txthrift[sasl]}).
Once the handshake is over, what carries messages is the framing and
server or client layers' own, with L{SaslFrames} as the framer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from types import ModuleType
from typing import Any, Final

from thrift.transport.TTransport import TTransportException
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._client import ClientFactory, ClientProtocol
from ._extras import fromExtra
from ._framing import _Framed, _Framer, detectFramer, peerText
from ._limits import Limits
from ._scanning import FrameError
from ._server import ServerFactory, ServerProtocol

__all__ = [
    "MECHANISMS",
    "ClientHandshake",
    "SASLClientFactory",
    "SASLClientProtocol",
    "SASLError",
    "SASLServerFactory",
    "SASLServerProtocol",
    "SaslFrames",
    "checkersOf",
    "saslClient",
    "serverFactory",
]

log = Logger(namespace="txthrift.sasl")

START, OK, BAD, ERROR, COMPLETE = 1, 2, 3, 4, 5
_NAMES: Final = {START: "START", OK: "OK", BAD: "BAD", ERROR: "ERROR", COMPLETE: "COMPLETE"}
_HEADER = struct.Struct(">BI")
_U32 = struct.Struct(">I")

#: The mechanisms a server checks.
MECHANISMS: Final = ("PLAIN",)

#: The most bytes one handshake frame may carry, at a client: a Kerberos
#: token with a large PAC takes some 12 to 48 KiB.
HANDSHAKE_LIMIT: Final = 65536

#: The most a server takes: it checks PLAIN, whose response is at most some
#: 770 bytes (RFC 4616: up to 255 for each of its three parts), and the peer
#: is not yet known when it sends them.
SERVER_HANDSHAKE_LIMIT: Final = 4096

#: Seconds a handshake may take where neither idle_timeout nor
#: partial_timeout bounds it.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 60.0

#: The most characters of a peer's reason kept in an error or a log line.
_REASON_MOST = 500


class SASLError(TTransportException):
    """
    A SASL handshake failed: the server refused it (its BAD or ERROR
    reason is in the message), or one end broke the protocol.
    """

    def __init__(self, message: str) -> None:
        super().__init__(TTransportException.NOT_OPEN, message)


def handshakeFrame(status: int, payload: bytes) -> bytes:
    """
    One handshake frame: status byte, length, payload.
    """
    return _HEADER.pack(status, len(payload)) + payload


def reasonText(payload: bytes) -> str:
    """
    A peer's reason, as text fit for a message: bounded, on one line.
    """
    text = payload[:_REASON_MOST].decode("utf-8", "replace")
    return " ".join(text.split()) or "(no reason given)"


class HandshakeReader:
    """
    Cuts handshake frames out of the bytes a connection reads, refusing
    any frame over C{limit} before it is buffered.
    """

    def __init__(self, limit: int = HANDSHAKE_LIMIT) -> None:
        self._buffer = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> tuple[int, bytes] | None:
        """
        The next whole frame, or C{None} until it has come.

        @raise ValueError: for an unknown status, or a frame over the limit.
        """
        buffer = self._buffer
        if len(buffer) < _HEADER.size:
            if buffer and buffer[0] not in _NAMES:
                raise ValueError(f"0x{buffer[0]:02x} is no SASL status")
            return None
        status, length = _HEADER.unpack_from(buffer)
        if status not in _NAMES:
            raise ValueError(f"0x{status:02x} is no SASL status")
        if length > self._limit:
            raise ValueError(f"a SASL {_NAMES[status]} frame of {length} bytes is over the"
                             f" {self._limit}-byte limit on handshake frames")
        end = _HEADER.size + length
        if len(buffer) < end:
            return None
        payload = bytes(buffer[_HEADER.size:end])
        del buffer[:end]
        return status, payload

    def rest(self) -> bytes:
        """
        The bytes read after the last frame taken: the first of the messages.
        """
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest

    @property
    def held(self) -> int:
        return len(self._buffer)

    def first(self) -> int:
        """
        The first byte held.
        """
        return self._buffer[0]


class _SaslFramed(_Framed):
    """
    SASL frames: framed messages, save that an empty one (a flush with
    nothing written: Java's and C{thrift_sasl}'s clients send them) is
    skipped rather than refused.
    """

    def _oversized(self, length: int, rest: bytes, messages: list[bytes]) -> bytes:
        if length == 0:
            return rest
        return super()._oversized(length, rest, messages)

    def _refusal(self, length: int) -> FrameError:
        return FrameError(f"SASL frame length {length} is outside 0..{self._max}"
                          " (max_frame_size, and 4 bytes for a frame inside it)")


class SaslFrames:
    """
    The framer of a connection after its SASL handshake: SASL frames, their
    payloads (unwrapped, under a security layer) one stream of Thrift
    messages, cut by an inner framer: framed or not, and of which
    protocol, detected from the first payload bytes as a connection's are,
    unless given.

    Replies and calls go out one per SASL frame (L{prefixed}: what
    C{sendMessage} prefixes); a sender whose inner framing is framed puts
    that frame's length inside it first.
    """

    transport = "framed"
    prefixed = True

    def __init__(self, transport: str, protocol: str, limits: Limits, *,
                 inner: _Framer | None = None, detected: Callable[[_Framer], None] | None = None,
                 unwrap: Callable[[bytes], bytes] | None = None) -> None:
        """
        @param transport: the inner framing allowed: C{"framed"},
            C{"buffered"} or C{"auto"}.
        @param protocol: the protocol allowed, or C{"auto"}.
        @param inner: the inner framer, when the sender's is known.
        @param detected: told the inner framer, once the first payload
            bytes have chosen it.
        @param unwrap: the security layer's, for each payload.
        """
        self._choice = (transport, protocol)
        self._limits = limits
        self._outer = _SaslFramed(protocol, replace(limits,
                                                    max_frame_size=limits.max_frame_size + 4))
        self._inner = inner
        self.protocol = inner.protocol if inner is not None else protocol
        self._detected = detected
        self._unwrap = unwrap
        self._head = b""

    def feed(self, data: bytes) -> list[bytes]:
        try:
            payloads = self._outer.feed(data)
            refused = None
        except FrameError as error:
            payloads, refused = error.messages, error
        messages: list[bytes] = []
        for payload in payloads:
            if self._unwrap is not None:
                try:
                    payload = self._unwrap(payload)
                except Exception as error:
                    raise self._broken(f"a SASL frame failed its security layer: {error}",
                                       messages) from error
            try:
                messages += self._feedInner(payload)
            except FrameError as error:
                error.messages = messages + error.messages
                raise
        if refused is not None:
            refused.messages = messages
            raise refused
        return messages

    @staticmethod
    def _broken(reason: str, messages: list[bytes]) -> FrameError:
        error = FrameError(reason)
        error.messages = messages
        return error

    def _feedInner(self, payload: bytes) -> list[bytes]:
        inner = self._inner
        if inner is None:
            self._head += payload
            transport, protocol = self._choice
            inner = detectFramer(self._head, transport, protocol, self._limits)
            if inner is None:
                return []
            self._inner, self.protocol = inner, inner.protocol
            payload, self._head = self._head, b""
            if self._detected is not None:
                self._detected(inner)
        return inner.feed(payload)

    def buffered(self) -> int:
        inner = self._inner
        return self._outer.buffered() + (inner.buffered() if inner is not None
                                         else len(self._head))


def checkersOf(sasl: object) -> list[ICredentialsChecker]:
    """
    The credentials checkers for PLAIN in what C{serve(sasl=...)} takes: a
    C{twisted.cred} checker, a sequence of them, or a L{Portal} (its
    checkers; its realm is not asked, there being no avatar to ask it for).

    @raise TypeError: for anything else, or none that checks a user name
        and password.
    """
    if isinstance(sasl, Portal):
        found: list[Any] = list(sasl.checkers.values())
    elif ICredentialsChecker.providedBy(sasl):
        found = [sasl]
    elif isinstance(sasl, Iterable) and not isinstance(sasl, (str, bytes, Mapping)):
        found = list(sasl)
    else:
        raise TypeError(f"sasl= takes a twisted.cred checker, a sequence of them or a Portal,"
                        f" not {sasl!r}")
    for checker in found:
        if not ICredentialsChecker.providedBy(checker):
            raise TypeError(f"sasl=: {checker!r} is no twisted.cred ICredentialsChecker")
    usable = [checker for checker in found if _checksPasswords(checker)]
    if not usable:
        raise TypeError("sasl=: no checker given checks a user name and password"
                        " (IUsernamePassword), as SASL PLAIN needs")
    # Unique, in order: a Portal lists one checker under each interface.
    return list(dict.fromkeys(usable))


def _checksPasswords(checker: Any) -> bool:
    probe = UsernamePassword(b"", b"")
    return any(interface.providedBy(probe) for interface in checker.credentialInterfaces)


def parsePlain(response: bytes) -> tuple[str, str, bytes]:
    """
    A PLAIN response (RFC 4616): authorization id, authentication id and
    password, separated by NUL bytes.

    @raise ValueError: for anything else.
    """
    parts = response.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise ValueError("a malformed PLAIN response (expected authzid NUL authcid NUL"
                         " password)")
    try:
        return parts[0].decode("utf-8"), parts[1].decode("utf-8"), parts[2]
    except UnicodeDecodeError:
        raise ValueError("a PLAIN response whose names are not UTF-8") from None


async def checkPlain(checkers: Sequence[ICredentialsChecker], user: str,
                     password: bytes) -> str:
    """
    The identity C{checkers} give C{user} with C{password}: the avatar id of
    the first to accept them.

    Twisted's checkers take names and passwords as bytes, except the
    C{memory:} one C{--auth} makes, which holds them as text: each checker
    gets them as bytes, then as text.

    @raise UnauthorizedLogin: when none accepts them.
    """
    for checker in checkers:
        for credentials in (UsernamePassword(user.encode("utf-8"), password),
                            UsernamePassword(user, password.decode("utf-8", "replace"))):  # type: ignore[arg-type]
            try:
                avatarId = await maybeDeferred(checker.requestAvatarId, credentials)
            except UnauthorizedLogin:
                continue
            if isinstance(avatarId, bytes):
                return avatarId.decode("utf-8", "replace")
            return user if avatarId == () else str(avatarId)
    raise UnauthorizedLogin("unknown user or wrong password")


class _Refused(Exception):
    """
    The handshake ends here: the reason is logged, C{answer} sent (if any),
    the connection closed.
    """

    def __init__(self, reason: str, answer: bytes | None = None) -> None:
        super().__init__(reason)
        self.answer = answer


class SASLServerProtocol(ServerProtocol):
    """
    A server connection that first runs a SASL handshake (PLAIN, checked
    by its factory's checkers), then serves what comes in SASL frames, its
    peer's identity (the authorization id) in C{currentCall().identity}.

    A connection that does not begin with START, names another mechanism,
    sends wrong credentials, a frame over L{SERVER_HANDSHAKE_LIMIT}, or does not
    finish within its handshake timeout, is told why (BAD or ERROR, where
    it speaks SASL), logged (never its password) and closed.
    """

    factory: SASLServerFactory

    def __init__(self, dispatcher: Any, clock: IReactorTime, transport: str = "auto",
                 protocol: str = "auto", limits: Limits | None = None) -> None:
        super().__init__(dispatcher, clock, transport, protocol, limits)
        # What comes first is SASL, not a zlib stream: nothing is sniffed.
        self._zlib = None
        self._choice = (self.transportName, self.protocolName)
        # Nothing is framed until the handshake is over.
        self.framer = None
        self._reader: HandshakeReader | None = HandshakeReader(SERVER_HANDSHAKE_LIMIT)
        self._mechanism: str | None = None
        self._checking: Deferred[str] | None = None
        self._handshakeCall: IDelayedCall | None = None
        self._innerFramed = False

    def connectionMade(self) -> None:
        super().connectionMade()
        limits = self.limits
        bounds = [t for t in (limits.idle_timeout, limits.partial_timeout) if t is not None]
        timeout = min(bounds) if bounds else DEFAULT_HANDSHAKE_TIMEOUT
        self._handshakeCall = self._clock.callLater(timeout, self._handshakeExpired, timeout)

    def dataReceived(self, data: bytes) -> None:
        reader = self._reader
        if reader is None:
            super().dataReceived(data)
            return
        if self._broken:
            return
        reader.feed(data)
        if self._checking is None:
            self._advance(reader)

    def _advance(self, reader: HandshakeReader) -> None:
        try:
            while self._checking is None and self._reader is not None:
                frame = reader.next()
                if frame is None:
                    return
                self._frameReceived(*frame)
        except ValueError as error:
            if self._mechanism is None and reader.held and reader.first() not in _NAMES:
                # Not SASL at all (a plain Thrift client, say): nothing it could read.
                self._refuseHandshake(_Refused(
                    f"it did not begin with a SASL handshake (first byte"
                    f" 0x{reader.first():02x}): this server requires SASL"
                    f" {'/'.join(MECHANISMS)}"))
                return
            self._refuseHandshake(_Refused(str(error), handshakeFrame(ERROR, str(error).encode())))
        except _Refused as refused:
            self._refuseHandshake(refused)

    def _frameReceived(self, status: int, payload: bytes) -> None:
        if self._mechanism is None:
            if status != START:
                why = f"expected a SASL START frame, got {_NAMES[status]}"
                raise _Refused(why, handshakeFrame(ERROR, why.encode()))
            self._start(payload)
        elif status in (OK, COMPLETE):
            # Java's client sends PLAIN's response as COMPLETE, others as OK.
            self._respond(payload)
        else:
            raise _Refused(f"the client ended the SASL handshake with {_NAMES[status]}:"
                           f" {reasonText(payload)}")

    def _start(self, payload: bytes) -> None:
        mechanism = payload.decode("ascii", "replace")
        if mechanism not in MECHANISMS:
            why = (f"unsupported SASL mechanism {mechanism[:64]!r}; this server offers"
                   f" {', '.join(MECHANISMS)}")
            raise _Refused(why, handshakeFrame(BAD, why.encode()))
        self._mechanism = mechanism

    def _respond(self, payload: bytes) -> None:
        try:
            authzid, authcid, password = parsePlain(payload)
        except ValueError as error:
            raise _Refused(str(error), handshakeFrame(BAD, str(error).encode())) from None
        if authzid and authzid != authcid:
            why = (f"{authcid[:64]!r} may not act as {authzid[:64]!r}: this server takes no"
                   " authorization id other than the user's own")
            raise _Refused(why, handshakeFrame(BAD, why.encode()))
        transport: Any = self.transport
        # Nothing more is read until the checkers have answered.
        transport.pauseProducing()
        checking = self._checking = Deferred.fromCoroutine(
            checkPlain(self.factory.checkers, authcid, password))
        checking.addCallbacks(self._accepted, self._rejected, errbackArgs=(authcid,))

    def _accepted(self, identity: str) -> None:
        self._checking = None
        if not self.connected or self._broken:
            return
        reader, self._reader = self._reader, None
        assert reader is not None
        self._endHandshake()
        self.identity = identity
        transport: Any = self.transport
        transport.write(handshakeFrame(COMPLETE, b""))
        transport.resumeProducing()
        inner, protocol = self._choice
        self.framer = SaslFrames(inner, protocol, self.limits, detected=self._innerDetected)
        # Idle from now on, as a connection is from its start without SASL.
        self._armIdle()
        rest = reader.rest()
        if rest:
            super().dataReceived(rest)

    def _rejected(self, failure: Failure, user: str) -> None:
        self._checking = None
        if not self.connected or self._broken:
            return
        if failure.check(UnauthorizedLogin):
            why = f"user {user[:64]!r}: unknown user or wrong password"
        else:
            log.failure("checking the SASL credentials of {user!r} failed", failure, user=user)
            why = f"user {user[:64]!r}: the credentials could not be checked"
        self._refuseHandshake(_Refused(why, handshakeFrame(BAD, b"authentication failed")))

    def _refuseHandshake(self, refused: _Refused) -> None:
        self._broken = True
        self.refusal = str(refused)
        self._endHandshake()
        checking, self._checking = self._checking, None
        if checking is not None:
            checking.cancel()
        mechanism = self._mechanism
        self.log.warn("closing Thrift connection from {peer}: {what}{reason}",
                      peer=peerText(self.transport), mechanism=mechanism, reason=self.refusal,
                      what=f"SASL {mechanism}: " if mechanism else "")
        transport: Any = self.transport
        if refused.answer is not None and transport is not None:
            transport.write(refused.answer)
        self.close()

    def _innerDetected(self, inner: _Framer) -> None:
        self.transportName, self.protocolName = inner.transport, inner.protocol
        self._innerFramed = inner.transport == "framed"
        self.framingDetected()

    def sendMessage(self, message: bytes) -> None:
        if self._innerFramed:
            message = _U32.pack(len(message)) + message
        super().sendMessage(message)

    def _handshakeExpired(self, timeout: float) -> None:
        self._handshakeCall = None
        if self._reader is not None and self.connected:
            self._refuseHandshake(_Refused(f"the SASL handshake did not finish within {timeout:g}s"))

    def _idle(self) -> None:
        # The handshake has a timer of its own, no longer than this one.
        if self._reader is None:
            super()._idle()

    def _endHandshake(self) -> None:
        self._reader = None
        if self._handshakeCall is not None and self._handshakeCall.active():
            self._handshakeCall.cancel()
        self._handshakeCall = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        checking, self._checking = self._checking, None
        self._endHandshake()
        super().connectionLost(reason)
        if checking is not None:
            checking.cancel()  # Its outcome finds the connection gone.


class SASLServerFactory(ServerFactory):
    """
    Builds L{SASLServerProtocol}s: every connection authenticates with SASL
    PLAIN against C{checkers} before its first call.

    @ivar checkers: the C{twisted.cred} checkers of user names and passwords.
    """

    def __init__(self, handler: object, sasl: object, **keywords: Any) -> None:
        """
        @param sasl: a C{twisted.cred} checker, a sequence of them, or a
            L{Portal} (see L{checkersOf}).
        @param keywords: as L{ServerFactory} takes them.
        """
        super().__init__(handler, **keywords)
        if self.transport == "zlib":
            raise ValueError("transport='zlib' inside SASL is not supported: SASL carries"
                             " framed or unframed messages")
        self.checkers = checkersOf(sasl)

    def startFactory(self) -> None:
        log.info("SASL {mechanisms} is required on {served}'s Thrift ports (not on its HTTP"
                 " or WebSocket ones)", mechanisms="/".join(MECHANISMS),
                 served=self.dispatcher.serviceName)

    def buildProtocol(self, addr: Any) -> SASLServerProtocol:  # type: ignore[override]
        proto = SASLServerProtocol(self.dispatcher, self.clock, self.transport,
                                   self.protocolName, self.limits)
        proto.factory = self
        return proto


def serverFactory(handler: object, sasl: object = None, **keywords: Any) -> ServerFactory:
    """
    A L{ServerFactory} (C{keywords} as it takes them) for C{handler}; a
    L{SASLServerFactory} when C{sasl} gives checkers.
    """
    if sasl is None:
        return ServerFactory(handler, **keywords)
    return SASLServerFactory(handler, sasl, **keywords)


def checkServerMechanism(mechanism: str) -> str:
    """
    The mechanism a server is configured with, if it checks it.

    @raise ValueError: for GSSAPI or any other.
    """
    if mechanism.upper() == "GSSAPI":
        raise ValueError("server-side GSSAPI is not supported; txthrift servers check SASL"
                         " PLAIN (put TLS beneath it), and its clients speak GSSAPI")
    if mechanism.upper() not in MECHANISMS:
        raise ValueError(f"unknown SASL mechanism {mechanism!r}; a server offers"
                         f" {', '.join(MECHANISMS)}")
    return mechanism.upper()


def pureSASL() -> ModuleType:
    """
    C{puresasl.client}, from the extra C{txthrift[sasl]}.

    @raise ImportError: naming the extra, when it is not installed.
    """
    return fromExtra("sasl", "a SASL client needs pure-sasl", "puresasl.client")


def saslClient(options: Mapping[str, Any], host: str | None = None) -> Any:
    """
    A C{puresasl} client for one handshake, from C{connect}'s C{sasl=}:
    C{mechanism} and C{host} (default: the server's address) and
    C{service} (default C{"thrift"}) for C{SASLClient}, the rest
    (C{username}, C{password}, C{authorization_id}, C{qops}, ...) as its
    keywords.

    @raise ValueError: for no or an unknown mechanism.
    @raise ImportError: without the extra C{txthrift[sasl]}.
    """
    client = pureSASL()
    settings = dict(options)
    mechanism = str(settings.pop("mechanism", "") or "")
    if not mechanism:
        raise ValueError("sasl= needs a 'mechanism', such as 'PLAIN' or 'GSSAPI'")
    host = settings.pop("host", host) or "localhost"
    service = settings.pop("service", "thrift")
    try:
        return client.SASLClient(host, service, mechanism, **settings)
    except Exception as error:  # puresasl.SASLError: unknown, or kerberos missing
        raise ValueError(f"sasl=: {error}") from None


def stepsFor(sasl: Any, transport: Any) -> Callable[..., Deferred[bytes]] | None:
    """
    Where the steps of C{sasl}'s mechanism run: GSSAPI's in the reactor's
    thread pool (a step of the C{kerberos} module may wait on the KDC, as
    Apache's C{TTwisted} knew), others at once (C{None}).
    """
    reactor: Any = getattr(transport, "reactor", None)
    if sasl.mechanism != "GSSAPI" or not hasattr(reactor, "getThreadPool"):
        return None
    return partial(deferToThreadPool, reactor, reactor.getThreadPool())


class ClientHandshake:
    """
    The client's end of a handshake, for any protocol: it writes frames
    with C{write}, is fed what the server sends, and fires L{done}.

    @ivar done: fires, once the server has said COMPLETE, with the bytes
        read after it (the first messages'); fails with L{SASLError} when
        the server refuses, or either end breaks the protocol.
    """

    def __init__(self, sasl: Any, write: Callable[[bytes], None],
                 steps: Callable[..., Deferred[bytes]] | None = None) -> None:
        """
        @param steps: runs C{sasl.process(challenge)} elsewhere (see
            L{stepsFor}), returning a Deferred; C{None} to run it at once.
        """
        self.sasl = sasl
        self.done: Deferred[bytes] = Deferred()
        self._write = write
        self._steps = steps
        self._reader = HandshakeReader()
        # A step of the mechanism is running: what comes waits for it.
        self._busy = False
        self._stopped = False

    def begin(self) -> None:
        """
        Send START, naming the mechanism, and the first response.
        """
        mechanism = self.sasl.mechanism.encode("ascii")
        self._step(None, lambda initial: handshakeFrame(START, mechanism)
                   + handshakeFrame(OK, initial or b""))

    def feed(self, data: bytes) -> None:
        """
        Take what the server sent.
        """
        self._reader.feed(data)
        self._advance()

    def stop(self) -> None:
        """
        Go no further (the connection has gone, or its protocol gave up):
        a step still running is not answered, and L{done} never fires.
        """
        self._stopped = True

    def _advance(self) -> None:
        mechanism = self.sasl.mechanism
        while not self._busy and not self.done.called and not self._stopped:
            try:
                frame = self._reader.next()
            except ValueError as error:
                self._fail(SASLError(f"SASL {mechanism}: {error}"))
                return
            if frame is None:
                return
            status, payload = frame
            if status == OK:
                self._step(payload, lambda response: handshakeFrame(OK, response or b""))
            elif status == COMPLETE:
                if payload:  # The server's last word (DIGEST-MD5's rspauth, say).
                    self._step(payload, lambda _: b"", complete=True)
                else:
                    self._complete()
            else:
                self._fail(SASLError(f"the server refused SASL {mechanism} ({_NAMES[status]}):"
                                     f" {reasonText(payload)}"))

    def _step(self, challenge: bytes | None, answer: Callable[[bytes], bytes],
              complete: bool = False) -> None:
        """
        Run the mechanism on C{challenge}; send what C{answer} makes of its
        response, then go on (or, after COMPLETE, end).
        """
        self._busy = True
        process = self.sasl.process
        running = (maybeDeferred(process, challenge) if self._steps is None
                   else self._steps(process, challenge))

        def stepped(response: bytes) -> None:
            self._busy = False
            if self.done.called or self._stopped:
                return
            reply = answer(response)
            if reply:
                self._write(reply)
            if complete:
                self._complete()
            else:
                self._advance()

        def failed(failure: Failure) -> None:
            self._fail(SASLError(f"SASL {self.sasl.mechanism}: {failure.getErrorMessage()}"))

        running.addCallbacks(stepped, failed)

    def _complete(self) -> None:
        if not self.sasl.complete:
            self._fail(SASLError(f"SASL {self.sasl.mechanism}: the server said the handshake"
                                 " was complete before this client was"))
            return
        self.done.callback(self._reader.rest())

    def _fail(self, error: SASLError) -> None:
        if not self.done.called and not self._stopped:
            self.done.errback(error)

    def securityLayer(self) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]] | None:
        """
        The wrap and unwrap of the security layer negotiated, or C{None}
        when there is none (PLAIN; GSSAPI with qop auth).
        """
        qop = getattr(self.sasl, "qop", b"auth")
        if qop in (None, b"auth", "auth"):
            return None
        return self.sasl.wrap, self.sasl.unwrap


class SaslClientSide:
    """
    What the client protocols that run a SASL handshake first share (this
    module's and C{TTwisted}'s drop-in): bytes go to the handshake until it
    is over, then to the framing, which it swaps for SASL frames around the
    framing it had, under any security layer the handshake negotiated.
    """

    _handshake: ClientHandshake | None = None
    _handshakeCall: IDelayedCall | None = None
    _wrap: Callable[[bytes], bytes] | None = None
    framer: Any
    limits: Limits

    def dataReceived(self, data: bytes) -> None:
        handshake = self._handshake
        if handshake is None:
            super().dataReceived(data)  # type: ignore[misc]
        else:
            handshake.feed(data)

    def _frameInSasl(self, handshake: ClientHandshake, transport: str, protocol: str) -> None:
        """
        The handshake is over: frame what follows in SASL frames, C{transport}
        and C{protocol} inside.
        """
        self._endHandshake()
        layer = handshake.securityLayer()
        unwrap = None
        if layer is not None:
            self._wrap, unwrap = layer
        inner = self.framer
        assert inner is not None
        self.framer = SaslFrames(transport, protocol, self.limits, inner=inner, unwrap=unwrap)

    def _endHandshake(self) -> None:
        handshake, self._handshake = self._handshake, None
        if self._handshakeCall is not None and self._handshakeCall.active():
            self._handshakeCall.cancel()
        self._handshakeCall = None
        if handshake is not None:
            handshake.stop()


class SASLClientProtocol(SaslClientSide, ClientProtocol):
    """
    The client end of a connection that first runs a SASL handshake with
    a C{puresasl} client, then sends each call in a SASL frame of its own,
    unframed inside (as C{thrift_sasl} and Apache's C{TSaslClientTransport}
    send them), wrapped under a security layer.

    @ivar authenticated: fires with C{None} once the server has said
        COMPLETE; fails with L{SASLError} when it refuses, or the handshake
        does not finish within C{partial_timeout}.
    """

    def __init__(self, clock: IReactorTime, protocol: str, limits: Limits | None,
                 options: Mapping[str, Any]) -> None:
        super().__init__(clock, "buffered", protocol, limits)
        self._options = options
        self.authenticated: Deferred[None] = Deferred(lambda d: self._abortHandshake())

    def connectionMade(self) -> None:
        super().connectionMade()
        transport: Any = self.transport
        timeout = self.limits.partial_timeout
        if timeout is not None:
            self._handshakeCall = self._clock.callLater(timeout, self._failHandshake, Failure(
                SASLError(f"the SASL handshake did not finish within {timeout:g}s"
                          " (partial_timeout)")))
        try:
            sasl = saslClient(self._options, getattr(transport.getPeer(), "host", None))
        except Exception as error:
            self._failHandshake(Failure(SASLError(f"cannot begin the SASL handshake: {error}")))
            return
        handshake = self._handshake = ClientHandshake(sasl, transport.write,
                                                      stepsFor(sasl, transport))
        handshake.done.addCallbacks(self._authenticatedWith, self._failHandshake,
                                    callbackArgs=(handshake,))
        handshake.begin()

    def _authenticatedWith(self, rest: bytes, handshake: ClientHandshake) -> None:
        self._frameInSasl(handshake, "buffered", self.protocolName)
        # The server has answered: a later close is not a framing mismatch.
        self._answered = True
        self.authenticated.callback(None)
        if rest and self.transport is not None:
            super().dataReceived(rest)

    def sendMessage(self, message: bytes) -> None:
        if self._wrap is not None:
            message = self._wrap(message)
        super().sendMessage(message)

    def _failHandshake(self, failure: Failure) -> None:
        self._endHandshake()
        self.refusal = failure.getErrorMessage()
        if not self.authenticated.called:
            self.authenticated.errback(failure)
        self._abortHandshake()

    def _abortHandshake(self) -> None:
        self._endHandshake()
        transport: Any = self.transport
        if transport is not None:
            transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._endHandshake()
        super().connectionLost(reason)
        if not self.authenticated.called:
            self.authenticated.errback(SASLError(
                f"the connection closed during the SASL handshake: {reason.getErrorMessage()}"))


class SASLClientFactory(ClientFactory):
    """
    Builds L{SASLClientProtocol}s, each with its own C{puresasl} client.
    """

    def __init__(self, service: ModuleType, sasl: Mapping[str, Any], *,
                 protocol: str = "binary", **keywords: Any) -> None:
        super().__init__(service, transport="buffered", protocol=protocol, **keywords)
        if not isinstance(sasl, Mapping):
            raise TypeError(f"sasl= takes a mapping such as {{'mechanism': 'PLAIN',"
                            f" 'username': ..., 'password': ...}}, not {type(sasl).__name__}")
        # Fail here, not at connection time, on a bad mechanism or no extra.
        saslClient(sasl)
        self.sasl = dict(sasl)

    def buildProtocol(self, addr: Any) -> SASLClientProtocol:
        proto = SASLClientProtocol(self.clock, self.protocolName, self.limits, self.sasl)
        proto.factory = self
        proto.client = self.clientClass(proto, timeout=self.timeout,
                                        service_name=self.serviceName)
        return proto


def connectSASL(reactor: Any, endpoint: Any, service: ModuleType, sasl: Mapping[str, Any], *,
                transport: str, protocol: str, timeout: float | None,
                service_name: str | None, **limits: Any) -> Deferred[Any]:
    """
    C{connect(..., sasl=...)}: connect, run the handshake with a
    C{puresasl.client.SASLClient} made from C{sasl} (its C{mechanism};
    C{host}, by default the server's address, and C{service}, by default
    C{"thrift"}, as GSSAPI needs them; any other key, such as C{username},
    C{password} or C{qops}, as its keyword), then fire with the client.

    @return: a Deferred failing with L{SASLError}, naming the server's
        reason, when it refuses; cancelling it closes the connection.
    @raise ValueError: for a URL, a transport other than C{"framed"} (each
        message travels in a SASL frame of its own), or a bad mechanism.
    @raise ImportError: without C{pure-sasl} (the extra C{txthrift[sasl]}).
    """
    if isinstance(endpoint, str) and "://" in endpoint[:8]:
        raise ValueError("sasl= is for Thrift on a byte stream (TCP, UNIX, TLS), not URLs")
    if transport != "framed":
        raise ValueError(f"transport={transport!r} is not for sasl=: each message travels in"
                         " a SASL frame of its own, as thrift_sasl and Apache's"
                         " TSaslClientTransport send them")
    factory = SASLClientFactory(service, sasl, protocol=protocol,
                                limits=Limits.from_keywords(**limits), timeout=timeout,
                                service_name=service_name, clock=reactor)
    if isinstance(endpoint, str):
        endpoint = clientFromString(reactor, endpoint)

    def connected(proto: SASLClientProtocol) -> Deferred[Any]:
        return proto.authenticated.addCallback(lambda _: proto.client)

    return endpoint.connect(factory).addCallback(connected)
