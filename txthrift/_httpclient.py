"""
The client side of Thrift over HTTP: each call one POST whose body is the
message and whose answer's body is the reply, through twisted.web's
C{Agent} and a pool of kept-alive connections, behind the same L{Client}
surface (methods, timeouts, cancellation, C{close}) as over TCP.

Owned here: L{HTTPCaller}, the HTTP counterpart of L{ClientProtocol}'s
C{call}/C{close}, and L{connectHTTP}, which L{txthrift.connect} calls for
C{http://} and C{https://} URLs.  Replies are checked and decoded by
L{ReplyDecoding}, as on a connection.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Final

import hyperlink
from thrift.transport.TTransport import TTransportException
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, fail, succeed
from twisted.internet.interfaces import IConsumer, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

from ._client import CallTimeout, Client, ReplyDecoding, encodeCall, nextSeqid
from ._codec import CONTENT_TYPES, Codec
from ._limits import Limits
from ._scanning import largeMessageSizes
from ._service import Method
from ._version import __version__

__all__ = ["DEFAULT_MAX_CONNECTIONS", "HTTPCaller", "connectHTTP", "tlsPolicy"]

#: The media type of a Thrift message in each protocol, as Apache's HTTP
#: transports and servers name them; sent as C{Content-Type} and C{Accept}.
#: Calls in flight at once, each on a connection of its own, by default.
DEFAULT_MAX_CONNECTIONS: Final = 8

#: Headers Twisted writes itself, from the URL and the body.
_OWN_HEADERS: Final = frozenset({"content-length", "host", "transfer-encoding"})
#: Bytes of a non-200 answer's body read, for its first words in the error.
_SNIPPET_BYTES: Final = 1024
#: Characters of a peer's text (an answer's body, an error) shown in errors.
_SHOWN: Final = 200


def _shown(text: str) -> str:
    """
    A peer's text on one line, cut to L{_SHOWN} characters.
    """
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}..."


def _why(error: BaseException) -> str:
    """
    What went wrong, as one short line: twisted.web wraps the causes of a
    failed request in C{reasons}, which say more than the wrapper.
    """
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(_why(reason.value) for reason in reasons)
    text = _shown(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@implementer(IBodyProducer)
class _BytesProducer:
    """
    A request body that is whole already, written at once (twisted.web's
    C{FileBodyProducer} would write it from a cooperator task, a turn of the
    reactor later).
    """

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _TooBig(Exception):
    """
    A response body over the limit it was read within.

    @ivar head: the bytes read before it went over (none when its declared
        length was over).
    @ivar declared: its C{Content-Length}, when that was over.
    """

    def __init__(self, head: bytes, declared: int | None) -> None:
        super().__init__(head, declared)
        self.head = head
        self.declared = declared


class _SlowBody(Exception):
    """
    A response body that did not come whole within C{partial_timeout}.
    """


class _BoundedBody(Protocol):
    """
    Collects a response body of at most C{limit} bytes.  Past them, or when
    its declared length is past them, the connection is closed at once: no
    more than the limit is ever held, however much the server sends.  A
    body that takes longer than C{patience} seconds closes it too.
    """

    def __init__(self, finished: Deferred[bytes], limit: int, declared: int | None,
                 clock: IReactorTime, patience: float | None) -> None:
        self._finished = finished
        self._limit = limit
        self._declared = declared
        self._clock = clock
        self._patience = patience
        self._parts: list[bytes] = []
        self._size = 0
        self._timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        if self._declared is not None and self._declared > self._limit:
            self.stop(_TooBig(b"", self._declared))
        elif self._patience is not None:
            self._timer = self._clock.callLater(self._patience, self.stop, _SlowBody())

    def dataReceived(self, data: bytes) -> None:
        if self._finished.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            head = b"".join(self._parts) + data[: self._limit - (self._size - len(data))]
            self.stop(_TooBig(head, None))
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopTimer()
        if self._finished.called:
            return
        # A body without a length ends when the connection does: whole, as
        # far as HTTP can tell (a cut one fails to decode).
        if reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._parts))
        else:
            self._finished.errback(reason)

    def stop(self, error: Exception | None = None) -> None:
        """
        Close the connection, failing the body with C{error} if given (a
        cancelled read is failed by its Deferred).
        """
        self._stopTimer()
        self._parts = []
        producer: Any = self.transport
        if producer is not None:
            # twisted.web hands the body a proxy of the connection, a
            # producer which closes it for this (and ignores it once the
            # body is whole).
            producer.stopProducing()
        if error is not None and not self._finished.called:
            self._finished.errback(error)

    def _stopTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def _readBody(response: IResponse, limit: int, clock: IReactorTime, patience: float | None,
              declared: bool = True) -> Deferred[bytes]:
    """
    A response's body, read within C{limit} bytes and C{patience} seconds;
    cancelling it closes the connection.

    @param declared: whether to refuse at once a body whose declared length
        is over C{limit}, rather than read its first C{limit} bytes.
    @return: a Deferred failing with L{_TooBig} or L{_SlowBody}, or with
        twisted.web's reason when the connection was lost first.
    """
    length = response.length
    size = length if declared and isinstance(length, int) else None

    def cancel(_: Deferred[bytes]) -> None:
        body.stop()

    finished: Deferred[bytes] = Deferred(cancel)
    body = _BoundedBody(finished, limit, size, clock, patience)
    response.deliverBody(body)
    return finished


def _requestHeaders(protocol: str, extra: Mapping[str | bytes, str | bytes] | None) -> Headers:
    """
    The headers of every request: the protocol's media type as
    C{Content-Type} and C{Accept}, a C{User-Agent}, then C{extra}, which may
    replace those but not the ones Twisted writes from the URL and body.

    @raise ValueError: for a header Twisted writes itself.
    @raise TypeError: for a name or value that is not text or bytes.
    """
    media = CONTENT_TYPES[protocol]
    headers = Headers({"Content-Type": [media], "Accept": [media],
                       "User-Agent": [f"txthrift/{__version__}"]})
    for name, value in (extra or {}).items():
        if not isinstance(name, (str, bytes)) or not isinstance(value, (str, bytes)):
            raise TypeError(f"headers must map text (or bytes) to text, not {name!r}: {value!r}")
        key = name.decode("latin-1") if isinstance(name, bytes) else name
        if key.lower() in _OWN_HEADERS:
            raise ValueError(f"the {key} header is written by Twisted from the URL and the"
                             " request body; leave it out of headers")
        headers.setRawHeaders(name, [value])
    return headers


def _parseURL(url: str) -> tuple[str, bytes]:
    """
    An C{http://} or C{https://} URL's scheme, and the URL as the bytes
    C{Agent} takes (non-ASCII host and path encoded; path C{/} if none).

    @raise ValueError: for another scheme, a URL with no host, or one that
        does not parse.
    """
    try:
        parsed = hyperlink.URL.from_text(url)
    except Exception as error:
        raise ValueError(f"not a URL: {url!r}: {_why(error)}") from error
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"not an http:// or https:// URL: {url!r}")
    if not parsed.host:
        raise ValueError(f"the URL {url!r} names no host")
    parsed = parsed.replace(scheme=scheme, path=parsed.path or ("",))
    return scheme, parsed.to_uri().to_text().encode("ascii")


def _trustRootOf(trustRoot: Any) -> Any:
    """
    C{trustRoot=} as the trust root C{optionsForClientTLS} takes: a PEM
    file's path (every certificate in it trusted), a
    C{twisted.internet.ssl.Certificate}, or a list of them.  (Any other
    trust root goes in C{contextFactory=}, as C{BrowserLikePolicyForHTTPS}'s.)
    """
    from twisted.internet import ssl

    if isinstance(trustRoot, (str, os.PathLike)):
        with open(trustRoot, "rb") as pem:
            text = pem.read()
        marker = b"-----BEGIN CERTIFICATE-----"
        blocks = [marker + block for block in text.split(marker)[1:]]
        if not blocks:
            raise ValueError(f"trustRoot {os.fspath(trustRoot)!r} holds no PEM certificate")
        return ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(b) for b in blocks])
    certificates = trustRoot if isinstance(trustRoot, (list, tuple)) else [trustRoot]
    # A PrivateCertificate is a Certificate too.
    if certificates and all(isinstance(c, ssl.Certificate) for c in certificates):
        return ssl.trustRootFromCertificates(certificates)
    raise TypeError("trustRoot must be a PEM file's path or twisted.internet.ssl"
                    f" Certificates, not {trustRoot!r}; for another trust root, pass"
                    " contextFactory=BrowserLikePolicyForHTTPS(trustRoot)")


def tlsPolicy(scheme: str, contextFactory: Any, trustRoot: Any) -> Any:
    """
    The C{IPolicyForHTTPS} for C{Agent}: C{contextFactory} if given, else
    twisted.web's browser-like one, verifying the server's certificate and
    name against C{trustRoot} or, without it, the system's trusted CAs.
    """
    if scheme != "https":
        if contextFactory is not None or trustRoot is not None:
            raise ValueError("contextFactory and trustRoot apply to https:// URLs only")
        return None
    try:
        import OpenSSL  # noqa: F401
        import service_identity  # noqa: F401
        from twisted.web.client import BrowserLikePolicyForHTTPS
    except ImportError as error:
        raise ImportError(f"https:// URLs need Twisted's TLS support ({error}): install"
                          " it with pip install 'twisted[tls]'") from error
    if contextFactory is not None:
        if trustRoot is not None:
            raise ValueError("give contextFactory or trustRoot, not both: a contextFactory"
                             " decides whom to trust itself")
        return contextFactory
    return BrowserLikePolicyForHTTPS(None if trustRoot is None else _trustRootOf(trustRoot))


class _Exchange:
    """
    One call's POST, with its timeout, and whichever of the caller's
    cancellation, the timeout or L{HTTPCaller.close} stops it first.
    """

    __slots__ = ("cancelled", "deferred", "reason", "timer", "work")

    def __init__(self) -> None:
        self.deferred: Deferred[Any] = Deferred(self._cancel)
        self.work: Deferred[Any] | None = None
        self.timer: IDelayedCall | None = None
        #: Why we stopped it (a timeout, a close), if we did.
        self.reason: Exception | None = None
        #: Whether its caller cancelled it.
        self.cancelled = False

    def stop(self, reason: Exception) -> None:
        """
        Stop the POST, failing the call with C{reason}.
        """
        if self.reason is None and not self.deferred.called:
            self.reason = reason
            assert self.work is not None
            self.work.cancel()

    def _cancel(self, _: Deferred[Any]) -> None:
        # The caller's own cancellation: its Deferred fails with
        # CancelledError (Deferred.cancel's own) and the request is dropped.
        self.cancelled = True
        if self.work is not None:
            self.work.cancel()

    def finished(self, outcome: Any) -> None:
        """
        Hand the POST's outcome (the result, a L{Failure} of it, or of why
        it failed) to the call, unless it was stopped for a reason of ours.
        """
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.cancelled or self.deferred.called:
            return
        if self.reason is not None:
            self.deferred.errback(self.reason)
        elif isinstance(outcome, Failure):
            self.deferred.errback(outcome)
        else:
            self.deferred.callback(outcome)


class HTTPCaller(ReplyDecoding):
    """
    Sends a L{Client}'s calls to one URL, each as a POST on a connection of
    its own (kept alive for the next call), at most C{maxConnections} at
    once and the rest queued, with the interface L{Client} uses of a
    L{ClientProtocol}: L{call} and L{close}.

    @ivar url: the URL, as given.
    """

    def __init__(self, reactor: Any, url: str, *, protocol: str = "binary",
                 limits: Limits | None = None,
                 headers: Mapping[str | bytes, str | bytes] | None = None,
                 maxConnections: int = DEFAULT_MAX_CONNECTIONS, contextFactory: Any = None,
                 trustRoot: Any = None) -> None:
        """
        @raise ValueError: for a bad URL, protocol, connection count or
            header, or TLS options without C{https://}.
        @raise ImportError: for C{https://} without Twisted's TLS support.
        """
        if protocol == "auto":
            raise ValueError("a client must choose its protocol; 'auto' is for servers")
        if isinstance(maxConnections, bool) or not isinstance(maxConnections, int) or (
                maxConnections < 1):
            raise ValueError(f"max_connections must be a positive integer, not"
                             f" {maxConnections!r}")
        scheme, self._uri = _parseURL(url)
        self.url = url
        self.limits = limits or Limits()
        self.protocolName = protocol
        self._codec = Codec(protocol, self.limits)
        # A body is one whole message, as a frame is.
        self._depthFloor, self._largeFrom = largeMessageSizes(
            "framed", protocol, self.limits, self._codec.checksDepth)
        self._headers = _requestHeaders(protocol, headers)
        policy = tlsPolicy(scheme, contextFactory, trustRoot)
        self._clock: IReactorTime = reactor
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = maxConnections
        self._agent = (Agent(reactor, pool=self._pool) if policy is None
                       else Agent(reactor, contextFactory=policy, pool=self._pool))
        # Agent opens a connection per request in flight: the semaphore
        # queues those past maxConnections.
        self._slots = DeferredSemaphore(maxConnections)
        self._seqid = 0
        self._exchanges: set[_Exchange] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        """
        How many calls await their reply, queued ones included.
        """
        return len(self._exchanges)

    def call(self, method: Method, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
             timeout: float | None) -> Deferred[Any]:
        """
        Send one call, as L{ClientProtocol.call} does.

        @return: a Deferred firing with the result (C{None} for a oneway
            call, once the server answered the POST), failing with the
            declared exception, a L{TApplicationException}, a L{CallTimeout},
            or a L{TTransportException}: C{SIZE_LIMIT} for a call or reply
            over C{max_frame_size}, C{NOT_OPEN} when the server cannot be
            reached, the connection is lost or the client was closed, and
            C{UNKNOWN} (C{SIZE_LIMIT} for 413) for an answer other than 200.
            Cancelling it drops the request.
        @raise TypeError: for arguments the method does not take.
        """
        argsStruct = method.args(*args, **kwargs)
        if self._closed:
            return fail(TTransportException(
                TTransportException.NOT_OPEN,
                f"the client of {self.url} is closed; connect a new one"))
        seqid = self._seqid = nextSeqid(self._seqid, ())
        try:
            message = encodeCall(self._codec, self.limits, method, name, seqid, argsStruct)
        except Exception:
            return fail()
        exchange = _Exchange()
        self._exchanges.add(exchange)
        exchange.work = Deferred.fromCoroutine(self._exchange(method, name, seqid, message))
        if timeout is not None and not exchange.work.called:
            exchange.timer = self._clock.callLater(
                timeout, exchange.stop,
                CallTimeout(f"{name} got no reply within {timeout} seconds"))
        exchange.work.addBoth(self._finished, exchange)
        return exchange.deferred

    def _finished(self, outcome: Any, exchange: _Exchange) -> None:
        self._exchanges.discard(exchange)
        exchange.finished(outcome)

    async def _exchange(self, method: Method, name: str, seqid: int, message: bytes) -> Any:
        """
        POST C{message} once a connection is free; the reply's outcome.
        """
        await self._slots.acquire()
        try:
            response = await self._post(message)
            body = await self._body(response, method)
        finally:
            self._slots.release()
        if method.oneway:
            return None
        return self.replyOutcome(body, method, name, seqid)

    async def _post(self, message: bytes) -> IResponse:
        try:
            response: IResponse = await self._agent.request(
                b"POST", self._uri, self._headers, _BytesProducer(message))
        except CancelledError:
            raise
        except Exception as error:
            raise TTransportException(
                TTransportException.NOT_OPEN,
                f"the POST to {self.url} failed: {_why(error)}") from error
        return response

    async def _body(self, response: IResponse, method: Method) -> bytes:
        """
        The body of a 200 answer, within C{max_frame_size} and
        C{partial_timeout}.

        @raise TTransportException: for any other answer, or a body that
            is too big, too slow or cut short.
        """
        if response.code != 200:
            raise await self._refused(response)
        limits = self.limits
        try:
            body = await _readBody(response, limits.max_frame_size, self._clock,
                                   limits.partial_timeout)
            self._checkVersion(response)
            return body
        except _TooBig as error:
            size = (f"{error.declared} bytes" if error.declared is not None
                    else f"more than {limits.max_frame_size} bytes")
            raise TTransportException(
                TTransportException.SIZE_LIMIT,
                f"the reply to {method.name} from {self.url} is {size}, over this client's"
                f" max_frame_size of {limits.max_frame_size}; it was not read") from error
        except _SlowBody as error:
            raise TTransportException(
                TTransportException.TIMED_OUT,
                f"the reply to {method.name} from {self.url} did not come whole within"
                f" partial_timeout ({limits.partial_timeout} seconds)") from error
        except CancelledError:
            raise
        except Exception as error:
            raise TTransportException(
                TTransportException.NOT_OPEN,
                f"the reply to {method.name} from {self.url} was cut short: {_why(error)}",
            ) from error

    async def _refused(self, response: IResponse) -> TTransportException:
        """
        The error for an answer other than 200, with the first words of its
        body (read within L{_SNIPPET_BYTES}, the connection closed past them).
        """
        try:
            head = await _readBody(response, _SNIPPET_BYTES, self._clock,
                                   self.limits.partial_timeout, declared=False)
        except _TooBig as tooBig:
            head = tooBig.head
        except CancelledError:
            raise
        except Exception:
            head = b""
        self._checkVersion(response)
        phrase = _shown(response.phrase.decode("latin-1"))
        said = _shown(head.decode("utf-8", "replace"))
        kind = (TTransportException.SIZE_LIMIT if response.code == 413
                else TTransportException.UNKNOWN)
        return TTransportException(
            kind, f"{self.url} answered HTTP {response.code} {phrase}, not 200"
                  + (f": {said}" if said else ""))

    def _checkVersion(self, response: IResponse) -> None:
        """
        After a whole answer in HTTP/1.0, stop keeping connections alive.

        An HTTP/1.0 server (Apache's C{THttpServer} is one) closes the
        connection after each answer, but twisted.web's client looks only for
        C{Connection: close} and pools it: the next call, sent at once, would
        go out on a connection about to close, and fail.
        """
        if response.version[1:] < (1, 1):
            # Calls sent before it was known may still bring theirs back.
            self._pool.persistent = False
            self._pool.closeCachedConnections()

    def close(self) -> Deferred[None]:
        """
        Fail the calls still waiting and close the kept-alive connections;
        later calls fail.

        @return: a Deferred firing once the idle connections are closed.
        """
        if not self._closed:
            self._closed = True
            reason = TTransportException(TTransportException.NOT_OPEN,
                                         f"the client of {self.url} was closed")
            for exchange in list(self._exchanges):
                exchange.stop(reason)
        closed: Deferred[Any] = self._pool.closeCachedConnections()
        return closed.addCallback(lambda _: None)


def connectHTTP(reactor: Any, url: str, service: ModuleType, *, protocol: str = "binary",
                timeout: float | None = None, service_name: str | None = None,
                headers: Mapping[str | bytes, str | bytes] | None = None,
                max_connections: int = DEFAULT_MAX_CONNECTIONS, contextFactory: Any = None,
                trustRoot: Any = None, **limits: Any) -> Deferred[Client]:
    """
    A client of a generated service calling it at C{url}, as
    L{txthrift.connect} documents; nothing is connected until a call, so
    the Deferred has fired already.

    @raise ValueError: for any of L{HTTPCaller}'s reasons.
    @raise TypeError: for an unknown limit.
    """
    caller = HTTPCaller(reactor, url, protocol=protocol, limits=Limits.from_keywords(**limits),
                        headers=headers, maxConnections=max_connections,
                        contextFactory=contextFactory, trustRoot=trustRoot)
    # Client types its protocol as the TCP one, which its users reach into;
    # it uses only call() and close(), which HTTPCaller has.
    protocolLike: Any = caller
    return succeed(Client.forService(service)(protocolLike, timeout=timeout,
                                              service_name=service_name))
