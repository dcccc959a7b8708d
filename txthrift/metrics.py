"""
Prometheus metrics of a Thrift server, and the endpoints a load balancer
and a scraper ask: L{Metrics} watches a server's calls (an
L{ICallObserver}: pass it as C{observer=}), and L{metricsResource} serves
C{/metrics}, C{/healthz} and C{/readyz} in a C{twisted.web} site.

Per call L{Metrics} adds to plain numbers, in C where
C{txthrift._speedups} was built (prometheus_client's own metric objects
take a lock and a label lookup per update, a third of a small call's
cost); the Prometheus families are made from them when scraped.
prometheus_client is the extra C{txthrift[metrics]}.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from twisted.web import http
from twisted.web.resource import Resource
from zope.interface import implementer

from ._extras import fromExtra
from ._observing import OUTCOMES, ICallObserver

__all__ = ["BUCKETS", "Metrics", "SummedMetrics", "metricsResource"]

#: The upper bounds, in seconds, of the call duration histogram's buckets.
BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                  5.0, 10.0)
#: The most (service, method) label pairs kept apart; calls beyond them are
#: counted under C{(other)}, so that no peer can grow the label space.
MOST_METHODS: Final = 1000
_UNKNOWN = ("(unknown)", "(unknown)")
_OTHER = ("(other)", "(other)")


def _labels(call: tuple[Any, ...]) -> tuple[str, str]:
    """
    The service and method of a call, as C{currentCall()} names them.
    """
    origin, name = call[0], call[1]
    service, separator, method = name.rpartition(":")
    return (service if separator else origin.service), method


def prometheusClient() -> Any:
    """
    C{prometheus_client}, from the extra C{txthrift[metrics]}.

    @raise ImportError: naming the extra, when it is not installed.
    """
    return fromExtra("metrics", "metrics need prometheus_client", "prometheus_client",
                     "prometheus_client.core")


class _PythonTally:
    """
    The per-call counting of L{Metrics}, where C{txthrift._speedups} (which
    has the same in C, a fifth of a small call's cost less) was not built.

    A record is a list: a count per outcome (in the order given), one per
    duration bucket (C{bounds}, then +Inf), and the sum of the seconds.
    Records are kept by the name a call was sent by, with the service they
    are for (C{None}: any, the name says its service); a name not seen or
    kept for another service, or a call of an unknown method, asks
    C{_record(call, outcome)} for one.
    """

    def __init__(self, outcomes: tuple[str, ...], bounds: tuple[float, ...], unknown: str,
                 clock: Callable[[], float] | None = None) -> None:
        self._outcomes = {outcome: index for index, outcome in enumerate(outcomes)}
        self._bounds = bounds
        self._unknown = unknown
        self._clock = time.perf_counter if clock is None else clock
        self._records: dict[str, tuple[str | None, list[float]]] = {}
        self.inFlight = 0
        self.received = 0
        self.sent = 0

    def callStarted(self, call: tuple[Any, ...], size: int) -> object:
        self.inFlight += 1
        self.received += size
        return self._clock(), call

    def callEnded(self, started: object, outcome: str, size: int) -> None:
        began: float
        call: tuple[Any, ...]
        began, call = started  # type: ignore[misc]
        index = self._outcomes.get(outcome)
        if index is None:
            raise ValueError(f"no such outcome: {outcome!r}")
        elapsed = self._clock() - began
        self.inFlight -= 1
        self.sent += size
        record = None
        if outcome != self._unknown:
            kept = self._records.get(call[1])
            if kept is not None and (kept[0] is None or kept[0] == call[0].service):
                record = kept[1]
        if record is None:
            record = self._record(call, outcome)
        record[index] += 1
        record[len(self._outcomes) + bisect_left(self._bounds, elapsed)] += 1
        record[-1] += elapsed

    def _record(self, call: tuple[Any, ...], outcome: str) -> list[float]:
        raise NotImplementedError


_Tally = _PythonTally
if not TYPE_CHECKING:
    try:
        from ._speedups import Tally as _Tally
    except ImportError:
        pass

#: The length of a record: a count per outcome and per bucket, and a sum.
_RECORD: Final = len(OUTCOMES) + len(BUCKETS) + 2


@implementer(ICallObserver)
class Metrics(_Tally):
    """
    The counters of one process's Thrift servers (pass the same instance to
    each), registered with a prometheus_client registry as a collector.

    @ivar inFlight: calls dispatched and not ended.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        super().__init__(OUTCOMES, BUCKETS, "unknown_method", clock)
        self.connections = 0
        self.connectionsTotal = 0
        #: (service, method): its record (see L{_Tally}); several names sent
        #: may share one (a name and its multiplexed form).
        self._byLabels: dict[tuple[str, str], list[float]] = {}
        #: kind: connections refused.
        self.refusals: dict[str, int] = {}

    # ICallObserver, with callStarted and callEnded from _Tally
    def connectionOpened(self) -> None:
        self.connections += 1
        self.connectionsTotal += 1

    def connectionClosed(self) -> None:
        self.connections -= 1

    def refused(self, kind: str) -> None:
        self.refusals[kind] = self.refusals.get(kind, 0) + 1

    def _labelled(self, labels: tuple[str, str]) -> list[float]:
        """
        The record of C{labels}, made if new.
        """
        record = self._byLabels.get(labels)
        if record is None:
            record = self._byLabels[labels] = [0] * (_RECORD - 1) + [0.0]
        return record

    def _record(self, call: tuple[Any, ...], outcome: str) -> list[float]:
        """
        The record of the calls of the name C{call} was sent by: its
        (service, method)'s, or C{(other)}'s past L{MOST_METHODS} of them;
        C{(unknown)}'s for an unknown method, whose name is never kept, and
        for arguments that do not decode of a method not seen answered (the
        peer chose that name: it is not a label until the service vouches
        for it).
        """
        labels = _labels(call)
        if outcome == "unknown_method" or (outcome == "protocol_error"
                                           and labels not in self._byLabels):
            return self._labelled(_UNKNOWN)
        if labels not in self._byLabels and len(self._byLabels) >= MOST_METHODS:
            labels = _OTHER
        record = self._labelled(labels)
        name = call[1]
        if name not in self._records and len(self._records) < 2 * MOST_METHODS:
            # The first service to call a plain name has it kept: another's
            # calls of the same name (one instance watching several
            # servers) are labelled here each time.
            self._records[name] = (None if ":" in name else call[0].service, record)
        return record

    @property
    def durations(self) -> dict[tuple[str, str], list[float]]:
        """
        (service, method): [calls in each bucket..., in +Inf, sum of seconds].
        """
        return {labels: record[len(OUTCOMES):] for labels, record in self._byLabels.items()
                if any(record[:len(OUTCOMES)])}

    @property
    def calls(self) -> dict[tuple[str, str, str], int]:
        """
        (service, method, outcome): calls.
        """
        return {(*labels, outcome): int(count) for labels, record in self._byLabels.items()
                for outcome, count in zip(OUTCOMES, record) if count}

    def snapshot(self) -> dict[str, Any]:
        """
        The counters, as JSON holds them.
        """
        return {"inFlight": self.inFlight, "connections": self.connections,
                "connectionsTotal": self.connectionsTotal, "received": self.received,
                "sent": self.sent, "refusals": dict(self.refusals),
                "records": [[*labels, record] for labels, record in self._byLabels.items()]}

    def dump(self, path: str, gauges: bool = True) -> None:
        """
        Write L{snapshot} to C{path} whole (a reader sees the last one or
        this one, never half of it); without C{gauges}, as if nothing were in
        flight or connected (a worker that has ended).
        """
        state = self.snapshot()
        if not gauges:
            state["inFlight"] = state["connections"] = 0
        partial = f"{path}.{os.getpid()}.partial"
        try:
            with open(partial, "w", encoding="utf-8") as file:
                json.dump(state, file)
            os.replace(partial, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise

    def add(self, state: Mapping[str, Any]) -> None:
        """
        Add the counters of a L{snapshot} (another process's) to these.
        """
        self.inFlight += state["inFlight"]
        self.connections += state["connections"]
        self.connectionsTotal += state["connectionsTotal"]
        self.received += state["received"]
        self.sent += state["sent"]
        for kind, count in state["refusals"].items():
            self.refusals[kind] = self.refusals.get(kind, 0) + count
        for service, method, counts in state["records"]:
            record = self._labelled((service, method))
            for index, value in enumerate(counts):
                record[index] += value

    # prometheus_client's collector protocol
    def collect(self) -> Iterator[Any]:
        """
        The metric families, made now from the counters.
        """
        core = prometheusClient().core
        calls = core.CounterMetricFamily("txthrift_calls", "Thrift calls ended, by outcome",
                                         labels=("service", "method", "outcome"))
        for key, count in sorted(self.calls.items()):
            calls.add_metric(key, count)
        yield calls
        durations = core.HistogramMetricFamily(
            "txthrift_call_duration_seconds", "Seconds from a call's dispatch to its end",
            labels=("service", "method"))
        for labels, counts in sorted(self.durations.items()):
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, inBucket in zip((*map(str, BUCKETS), "+Inf"), counts[:-1]):
                cumulative += inBucket
                buckets.append((bound, cumulative))
            durations.add_metric(labels, buckets, counts[-1])
        yield durations
        yield core.GaugeMetricFamily("txthrift_calls_in_flight", "Calls dispatched, not ended",
                                     value=self.inFlight)
        yield core.GaugeMetricFamily("txthrift_connections", "Connections open",
                                     value=self.connections)
        yield core.CounterMetricFamily("txthrift_connections", "Connections made",
                                       value=self.connectionsTotal)
        yield core.CounterMetricFamily("txthrift_bytes_received", "Bytes of Thrift requests",
                                       value=self.received)
        yield core.CounterMetricFamily("txthrift_bytes_sent", "Bytes of Thrift replies",
                                       value=self.sent)
        refused = core.CounterMetricFamily("txthrift_refused", "Connections refused, by why",
                                           labels=("reason",))
        for kind, count in sorted(self.refusals.items()):
            refused.add_metric((kind,), count)
        yield refused


class SummedMetrics:
    """
    The metrics of several processes (C{--workers}), each of which dumps
    its L{Metrics} into C{folder} now and then: summed when scraped.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def collect(self) -> Iterator[Any]:
        total = Metrics()
        for name in sorted(os.listdir(self.folder)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.folder, name), encoding="utf-8") as file:
                    total.add(json.load(file))
            except (OSError, ValueError, KeyError):
                continue  # replaced as it was read: the next scrape has it
        yield from total.collect()


class _Text(Resource):
    isLeaf = True

    def __init__(self, answer: Callable[[], tuple[int, bytes, bytes]]) -> None:
        super().__init__()
        self._answer = answer

    def render_GET(self, request: Any) -> bytes:
        status, kind, body = self._answer()
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", kind)
        return body


def metricsResource(metrics: Metrics | SummedMetrics, ready: Callable[[], bool] = lambda: True,
                    registry: Any = None) -> Resource:
    """
    A C{twisted.web} resource with C{/metrics} (C{registry}'s metrics in
    Prometheus's text format; a registry of C{metrics} alone when omitted),
    C{/healthz} (200 while the process runs) and C{/readyz} (200 while
    C{ready()}, else 503: a server draining says so).
    """
    client = prometheusClient()
    if registry is None:
        registry = client.CollectorRegistry()
        registry.register(metrics)

    def scraped() -> tuple[int, bytes, bytes]:
        return http.OK, client.CONTENT_TYPE_LATEST.encode(), client.generate_latest(registry)

    def readiness() -> tuple[int, bytes, bytes]:
        if ready():
            return http.OK, b"text/plain", b"ready\n"
        return http.SERVICE_UNAVAILABLE, b"text/plain", b"draining\n"

    root = Resource()
    root.putChild(b"metrics", _Text(scraped))
    root.putChild(b"healthz", _Text(lambda: (http.OK, b"text/plain", b"ok\n")))
    root.putChild(b"readyz", _Text(readiness))
    return root
