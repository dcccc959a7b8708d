"""
OpenTelemetry tracing of a server's calls: L{Tracing}, an observer that
starts a span per call, continuing the trace its caller sent in W3C
C{traceparent} (THeader or HTTP headers), and ends it with the call.

opentelemetry-api is the extra C{txthrift[tracing]}, imported only when a
L{Tracing} is made: a server without one neither imports it nor calls it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from zope.interface import implementer

from ._context import CallContext
from ._extras import fromExtra
from ._observing import CallObserver, ICallObserver

__all__ = ["ANSWERED", "Tracing", "openTelemetry"]

#: The outcomes whose spans end with status unset (not an error): the
#: call was answered as its IDL says, or needed no answer.
ANSWERED: Final = frozenset({"ok", "declared_exception", "oneway"})
#: The most characters of a name from the peer kept in a span's name and
#: attributes.
LONGEST_NAME: Final = 256
#: The most (connection, name) pairs whose span name and attributes are kept.
MOST_NAMED: Final = 1000


def openTelemetry() -> Any:
    """
    C{opentelemetry.trace}, from the extra C{txthrift[tracing]}.

    @raise ImportError: naming the extra, when it is not installed.
    """
    return fromExtra("tracing", "tracing needs opentelemetry-api", "opentelemetry.trace")


def _cut(name: str) -> str:
    return name if len(name) <= LONGEST_NAME else f"{name[:LONGEST_NAME]}..."


@implementer(ICallObserver)
class Tracing(CallObserver):
    """
    A span per call (pass it as C{observer=}), named C{Service/method}, of
    kind C{SERVER}, with the RPC attributes of OpenTelemetry's semantic
    conventions (C{rpc.system} C{"apache_thrift"}, C{rpc.service},
    C{rpc.method}), C{network.peer.address} and C{network.peer.port} where
    there is a peer, and C{txthrift.outcome}; its status is an error for
    outcomes other than L{ANSWERED}.  A call whose headers carry a trace
    context (C{traceparent}) is a child of its caller's span.

    The span is current while the handler runs (and in a coroutine it
    started), so that spans the handler makes are its children.

    @param tracerProvider: where spans go; OpenTelemetry's global one when
        omitted.
    @param propagator: reads the trace context from a call's headers;
        OpenTelemetry's global one (W3C trace context and baggage unless
        configured otherwise) when omitted.
    @raise ImportError: without opentelemetry-api, naming the extra.
    """

    def __init__(self, tracerProvider: Any = None, propagator: Any = None) -> None:
        trace = openTelemetry()
        from opentelemetry import context, propagate

        from ._version import __version__

        self._tracer = trace.get_tracer("txthrift", __version__, tracer_provider=tracerProvider)
        self._propagator = propagate.get_global_textmap() if propagator is None else propagator
        self._server = trace.SpanKind.SERVER
        self._error = trace.StatusCode.ERROR
        self._status = trace.Status
        #: (origin, name): the span name and attributes of its calls.
        self._named: dict[tuple[Any, str], tuple[str, Mapping[str, Any]]] = {}
        self._current = trace.set_span_in_context
        self._attach, self._detach = context.attach, context.detach

    # ICallObserver: calls only
    def callStarted(self, call: tuple[Any, ...], size: int) -> object:
        origin, name = call[0], call[1]
        named = self._named.get((origin, name)) or self._name(origin, name)
        context = CallContext(*call)
        headers = context.headers
        parent = self._propagator.extract(headers) if headers else None
        span = self._tracer.start_span(named[0], context=parent, kind=self._server,
                                       attributes=named[1])
        return span, self._attach(self._current(span))

    def _name(self, origin: Any, name: str) -> tuple[str, Mapping[str, Any]]:
        """
        The span name and attributes of the calls of C{name} from C{origin},
        made once for all of them (up to L{MOST_NAMED} pairs).
        """
        context = CallContext(origin, name, 0, None)
        service, method = _cut(context.service), _cut(context.method)
        attributes: dict[str, Any] = {"rpc.system": "apache_thrift", "rpc.service": service,
                                      "rpc.method": method}
        peer = context.peer
        host, port = getattr(peer, "host", None), getattr(peer, "port", None)
        if isinstance(host, str) and isinstance(port, int):
            attributes["network.peer.address"] = host
            attributes["network.peer.port"] = port
        named = (f"{service}/{method}", MappingProxyType(attributes))
        if len(self._named) >= MOST_NAMED:
            self._named.clear()
        if len(name) <= LONGEST_NAME:
            self._named[origin, name] = named
        return named

    def dispatched(self, started: Any) -> None:
        self._detach(started[1])

    def callEnded(self, started: object, outcome: str, size: int) -> None:
        span: Any = started[0]  # type: ignore[index]
        span.set_attribute("txthrift.outcome", outcome)
        if outcome not in ANSWERED:
            span.set_status(self._status(self._error, outcome))
        span.end()
