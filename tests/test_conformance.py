"""
Conformance: every Thrift type, every transport and protocol, between
txthrift and Apache Thrift's Python implementation (and thriftpy2), over
real sockets on 127.0.0.1.

Each cell of the matrix (client x server x transport x protocol, see
L{tests._conformance.allCells}) makes every call of
L{tests._conformance.cases} on one connection and checks that every value
came back exactly: NaN as NaN, the sign of -0.0, C{str} as C{str} and
C{bytes} as C{bytes}.  Cells that cannot exist (a framed-only end with the
buffered transport, ...) are not generated; the report lists them with why.

Set C{TXTHRIFT_CONFORMANCE_JSON} to a file name to have the run written
there, for C{scripts/conformance_report.py}.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from thrift.protocol.THeaderProtocol import PROTOCOLS_BY_ID
from thrift.transport.TTransport import TMemoryBuffer
from thrift.transport.TZlibTransport import TZlibTransport
from twisted.internet.threads import deferToThread

import txthrift
from tests._conformance import (
    CLIENTS,
    NON_FINITE_DOUBLES,
    RESULTS_ENV,
    SERVERS,
    TRANSPORTS,
    WIRE,
    Case,
    Cell,
    ConformanceHandler,
    Outcome,
    Results,
    allCells,
    cases,
    checkOutcomes,
    describeError,
    mismatch,
    show,
    summarize,
)
from tests._conformance_peers import (
    CALL_WAIT,
    MAIN_NAME,
    ServerPool,
    TxthriftServer,
    bounded,
    describeEnd,
    runApacheSync,
    runApacheTwisted,
    runThriftpy2,
    runTxthrift,
    startApacheThreaded,
    thriftpy2Module,
    typesFor,
)
from tests.gen.conformance_py.txthrift_conformance import ttypes as pyTypes

ACCELERATED: bool = txthrift.accelerated
CELLS = [cell for cell, reason in allCells(ACCELERATED) if reason is None]
RESULTS = Results()


@pytest.fixture(scope="module", autouse=True)
def results() -> Any:
    """
    Write what the module found when L{RESULTS_ENV} names a file.
    """
    yield RESULTS
    path = os.environ.get(RESULTS_ENV)
    if path:
        command = [os.path.basename(sys.executable), "-m", "pytest", *sys.argv[1:]]
        RESULTS.write(path, command, ACCELERATED)


@pytest_twisted.async_yield_fixture(scope="module")
async def servers() -> AsyncIterator[ServerPool]:
    pool = ServerPool()
    try:
        yield pool
    finally:
        await pool.stopAll()


async def runClient(cell: Cell, port: int, calls: list[Case]) -> list[Outcome]:
    mainName = MAIN_NAME if cell.server == "thriftpy2" else None
    if cell.client == "txthrift":
        return await runTxthrift(port, cell.transport, WIRE[cell.protocol], calls, mainName)
    if cell.client == "apache-twisted":
        return await runApacheTwisted(port, cell.protocol, calls, mainName)
    if cell.client == "apache-sync":
        run: Any = runApacheSync
    else:
        assert cell.client == "thriftpy2"
        run = runThriftpy2
    outcomes: list[Outcome] = await bounded(
        deferToThread(run, port, cell.transport, cell.protocol, calls), 4 * CALL_WAIT)
    return outcomes


def ends(cell: Cell) -> str:
    client = "txthrift" if cell.client == "txthrift" else (
        "thriftpy2" if cell.client == "thriftpy2" else "apache")
    server = cell.server if cell.server in ("txthrift", "thriftpy2") else "apache"
    return (f"{describeEnd(client, cell.transport, cell.protocol)} →"
            f" {describeEnd(server, cell.transport, cell.protocol)}")


@pytest.mark.parametrize("cell", CELLS, ids=[cell.id for cell in CELLS])
@pytest_twisted.ensureDeferred
async def test_cell(cell: Cell, servers: ServerPool) -> None:
    """
    One client makes every call to one server over one transport and
    protocol, and every value comes back exactly.
    """
    started = time.monotonic()
    problems: list[str] = ["did not finish"]
    calls: list[Case] = []
    try:
        server = await servers.get(cell.server, cell.transport, cell.protocol)
        calls = cases(typesFor(cell.client), nonFinite=WIRE[cell.protocol] != "json",
                      tag=cell.id, undeclared=cell.server != "thriftpy2",
                      big=cell.server != "nonblocking")
        outcomes = await runClient(cell, server.port, calls)
        problems = checkOutcomes(calls, outcomes, setsAsLists=cell.client == "thriftpy2")
    except Exception as error:
        problems = [f"{type(error).__name__}: {error}"]
        raise
    finally:
        RESULTS.record(cell, not problems, summarize(problems) or ends(cell),
                       time.monotonic() - started, len(calls))
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# Limits: a value over a configured limit is refused, never truncated
# ---------------------------------------------------------------------------

LIMIT = 1000
LIMIT_COMBOS = [(t, p) for t in TRANSPORTS for p in ("binary", "compact", "json")]

#: Defects these tests find, by the (transport, protocol) they show in.
C_CODEC_MAP_MESSAGE = (
    "Apache's C codec reports a map over container_length_limit as 'got wrong ttype while"
    " reading field', which does not name the limit")


class LimitProblems(AssertionError):
    """
    What a limit test found wrong with the refusals it checked.
    """


def limitParams(known: dict[tuple[str, str], str]) -> list[Any]:
    """
    The (transport, protocol) parameters, those with a known defect marked
    as strict expected failures.  A defect shows as L{LimitProblems}: any
    other error (a timeout, a crash) is not the defect, and fails.
    """
    return [pytest.param(t, p, id=f"{t}-{p}", marks=[
        pytest.mark.xfail(reason=known[t, p], strict=True, raises=LimitProblems)]
        if (t, p) in known else [])
        for t, p in LIMIT_COMBOS]


def knownDefect(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("xfail")
    return str(marker.kwargs.get("reason", "")) if marker is not None else ""


def refused(got: Any) -> str:
    return f"returned {show(got)} instead of being refused"


def refusal(case: Case, outcome: Outcome) -> str | None:
    """
    Why C{outcome} is not the refusal of an over-limit request: a
    TApplicationException, or the connection closed.
    """
    error = outcome.error
    if error is None:
        return f"{case.name}: {refused(outcome.value)}"
    names = {cls.__name__ for cls in type(error).__mro__}
    if not names & {"TApplicationException", "TTransportException"}:
        return f"{case.name}: failed with {describeError(error)}, not a Thrift refusal"
    return None


#: Words that, with the limit's value, make an error say which limit it broke.
LIMIT_WORDS = ("limit", "exceed", "max_string_length", "max_container_length")


def clearLimitError(case: Case, outcome: Outcome) -> str | None:
    """
    Why C{outcome} is not a failure saying that a reply broke the client's
    limit.
    """
    error = outcome.error
    if error is None:
        return f"{case.name}: {refused(outcome.value)}"
    text = str(error).lower()
    if str(LIMIT) not in text or not any(word in text for word in LIMIT_WORDS):
        return (f"{case.name}: failed with {describeError(error)}, which does not name the"
                f" limit ({LIMIT})")
    return None


def overLimitStrings(T: Any) -> list[Case]:
    return [
        Case("string over the limit", "echoString", ("b" * (LIMIT + 1),)),
        Case("binary over the limit", "echoBinary", (b"c" * (LIMIT + 1),)),
        Case("string over the limit in a list", "echoNames", (["", "d" * (LIMIT + 1)],)),
        Case("string over the limit in a struct", "echoPrimitives",
             (T.Primitives(aString="e" * (LIMIT + 1)),)),
    ]


def overLimitContainers(T: Any) -> list[Case]:
    return [
        Case("list over the limit", "echoNames", (["f"] * (LIMIT + 1),)),
        Case("set over the limit", "echoIndex", ({"g": [set(range(LIMIT + 1))]},)),
        Case("map over the limit", "echoContainers",
             (T.Containers(i32Map={i: i for i in range(LIMIT + 1)}),)),
    ]


async def oneConnectionEach(client: str, port: int, transport: str, protocol: str,
                            calls: list[Case], **limits: Any) -> list[Outcome]:
    """
    Make each call on a connection of its own: a refusal may close one.
    """
    outcomes = []
    for case in calls:
        if client == "txthrift":
            outcomes += await runTxthrift(port, transport, protocol, [case], **limits)
        else:
            outcomes += await bounded(deferToThread(
                runApacheSync, port, transport, protocol, [case]), 2 * CALL_WAIT)
    return outcomes


def noteLimit(test: str, peer: str, transport: str, protocol: str, problems: list[str],
              known: str) -> None:
    RESULTS.note("limits", test=test, peer=peer, transport=transport, protocol=protocol,
                 status="fail" if problems else "pass", detail=summarize(problems),
                 known=known)


async def checkServerRefuses(request: pytest.FixtureRequest, client: str, transport: str,
                             protocol: str, what: str, overLimit: list[Case]) -> None:
    handler = ConformanceHandler(pyTypes, record=True)
    server = await TxthriftServer.start(transport, protocol, handler, max_string_length=LIMIT,
                                        max_container_length=LIMIT)
    atLimit = Case("string at the limit", "echoString", ("a" * LIMIT,), expect="a" * LIMIT)
    after = Case("still serving", "echoString", ("ok",), expect="ok")
    problems: list[str] = ["did not finish"]
    try:
        calls = [atLimit, *overLimit, after]
        outcomes = await oneConnectionEach(client, server.port, transport, protocol, calls)
        problems = checkOutcomes([atLimit], outcomes[:1]) + checkOutcomes([after], outcomes[-1:])
        for case, outcome in zip(overLimit, outcomes[1:-1]):
            why = refusal(case, outcome)
            if why:
                problems.append(why)
        # The handler got the two good values and nothing else: nothing over
        # the limit, nothing cut down to it.
        if handler.seen != {"echoString": ["a" * LIMIT, "ok"]}:
            seen = {name: [f"{type(v).__name__} of length {len(v)}" for v in values]
                    for name, values in handler.seen.items()}
            problems.append(f"the handler saw {seen}")
    finally:
        await server.stop()
        noteLimit(f"txthrift server refuses requests with {what} over its limit",
                  CLIENTS[client], transport, protocol, problems, knownDefect(request))
    if problems:
        raise LimitProblems("\n".join(problems))


@pytest.mark.parametrize(("transport", "protocol"), limitParams({}))
@pytest.mark.parametrize("client", ["apache-sync", "txthrift"])
@pytest_twisted.ensureDeferred
async def test_serverRefusesLongStrings(request: pytest.FixtureRequest, client: str,
                                        transport: str, protocol: str) -> None:
    """
    A txthrift server with C{max_string_length} refuses a request carrying a
    longer string or binary, however deep, without its handler seeing it;
    one exactly at the limit passes, and the server goes on serving.
    """
    await checkServerRefuses(request, client, transport, protocol, "strings",
                             overLimitStrings(pyTypes))


@pytest.mark.parametrize(("transport", "protocol"), limitParams({}))
@pytest.mark.parametrize("client", ["apache-sync", "txthrift"])
@pytest_twisted.ensureDeferred
async def test_serverRefusesLongContainers(request: pytest.FixtureRequest, client: str,
                                           transport: str, protocol: str) -> None:
    """
    The same for C{max_container_length} and lists, sets and maps.
    """
    await checkServerRefuses(request, client, transport, protocol, "containers",
                             overLimitContainers(pyTypes))


async def checkClientRefuses(request: pytest.FixtureRequest, server: str, transport: str,
                             protocol: str, what: str, overLimit: list[Case]) -> None:
    if server == "txthrift":
        running: Any = await TxthriftServer.start(transport, protocol)
    else:
        running = startApacheThreaded(transport, protocol)
    atLimit = Case("string at the limit", "echoString", ("a" * LIMIT,), expect="a" * LIMIT)
    problems: list[str] = ["did not finish"]
    try:
        outcomes = await oneConnectionEach("txthrift", running.port, transport, protocol,
                                           [atLimit, *overLimit], max_string_length=LIMIT,
                                           max_container_length=LIMIT)
        problems = checkOutcomes([atLimit], outcomes[:1])
        for case, outcome in zip(overLimit, outcomes[1:]):
            why = clearLimitError(case, outcome)
            if why:
                problems.append(why)
    finally:
        if server == "txthrift":
            await running.stop()
        else:
            running.stop()
        noteLimit(f"txthrift client refuses replies with {what} over its limit",
                  SERVERS[server], transport, protocol, problems, knownDefect(request))
    if problems:
        raise LimitProblems("\n".join(problems))


@pytest.mark.parametrize(("transport", "protocol"), limitParams({}))
@pytest.mark.parametrize("server", ["txthrift", "threaded"])
@pytest_twisted.ensureDeferred
async def test_clientRefusesLongStrings(request: pytest.FixtureRequest, server: str,
                                        transport: str, protocol: str) -> None:
    """
    A txthrift client with C{max_string_length} fails a call whose reply
    carries a longer string or binary with an error naming the limit; a
    reply exactly at the limit passes.
    """
    await checkClientRefuses(request, server, transport, protocol, "strings",
                             overLimitStrings(pyTypes))


@pytest.mark.parametrize(("transport", "protocol"), limitParams({
    **({("framed", "binary"): C_CODEC_MAP_MESSAGE,
        ("framed", "compact"): C_CODEC_MAP_MESSAGE} if ACCELERATED else {}),
}))
@pytest.mark.parametrize("server", ["txthrift", "threaded"])
@pytest_twisted.ensureDeferred
async def test_clientRefusesLongContainers(request: pytest.FixtureRequest, server: str,
                                           transport: str, protocol: str) -> None:
    """
    The same for C{max_container_length} and lists, sets and maps.
    """
    await checkClientRefuses(request, server, transport, protocol, "containers",
                             overLimitContainers(pyTypes))


# ---------------------------------------------------------------------------
# Non-finite doubles over JSON
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_jsonNonFiniteDoubles(request: pytest.FixtureRequest, transport: str) -> None:
    """
    NaN and the infinities cross JSON between txthrift ends, as the Thrift
    JSON protocol writes them: as the strings "NaN", "Infinity", "-Infinity".
    """
    server = await TxthriftServer.start(transport, "json")
    calls = [Case(f"double {v!r}", "echoDouble", (v,), expect=v) for v in NON_FINITE_DOUBLES]
    calls.append(Case("double list", "echoDoubles", (NON_FINITE_DOUBLES,),
                      expect=NON_FINITE_DOUBLES))
    problems: list[str] = ["did not finish"]
    try:
        outcomes = await oneConnectionEach("txthrift", server.port, transport, "json", calls)
        problems = checkOutcomes(calls, outcomes)
    finally:
        await server.stop()
        RESULTS.note("json-non-finite", test="NaN and infinities over JSON",
                     peer="txthrift client → txthrift server", transport=transport,
                     protocol="json", status="fail" if problems else "pass",
                     detail=summarize(problems), known=knownDefect(request))
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# What never goes on the wire: constants and declared defaults
# ---------------------------------------------------------------------------

CONSTANTS = {"ANSWER": 42, "BIG": 2**63 - 1, "RATIO": 0.25, "GREETING": "gr\u00fc\u00dfe \u2603",
             "PRIMES": [2, 3, 5, 7], "WORDS": {"alpha", "beta"},
             "WEIGHTS": {"light": 1, "heavy": 100}, "FAVOURITE": 4}
DEFAULTS = {"id": None, "note": None, "count": 7, "label": "d\u00e9faut", "numbers": [1, 2, 3],
            "color": 2, "limit": 99, "ratio": 0.5, "enabled": True, "tags": {"k": "v"},
            "small": {1, 2}, "extra": None, "name": None}
FLAVOURS = {"py": "apache-sync", "py:twisted": "apache-twisted", "thriftpy2": "thriftpy2"}


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_constantsAndDefaults(flavour: str) -> None:
    """
    Each flavour of generated code (and thriftpy2's reading of the IDL) has
    the IDL's constants and its structs' declared defaults, exactly.
    """
    T = typesFor(FLAVOURS[flavour])
    constants = thriftpy2Module() if flavour == "thriftpy2" else importlib.import_module(
        T.__name__.rpartition(".")[0] + ".constants")
    checked = [mismatch(value, getattr(constants, name, None), name)
               for name, value in CONSTANTS.items()]
    defaults = T.Defaults()
    checked += [mismatch(value, getattr(defaults, name, None), f"Defaults().{name}")
                for name, value in DEFAULTS.items()]
    problems = [problem for problem in checked if problem]
    assert not problems, "\n".join(problems)


def test_apacheZlibStillDropsInflatedBytes() -> None:
    """
    The defect that keeps accelerated Apache ends out of the zlib columns
    (L{tests._conformance.APACHE_ZLIB_REFILL}) is still there: Apache's
    C{TZlibTransport.cstringio_refill}, as its C decoder calls it, drops the
    bytes it inflated past those asked for.  When a thrift release fixes
    it, this fails: then those cells should run.
    """
    data = bytes(range(256)) * 40
    deflater = zlib.compressobj()
    compressed = TMemoryBuffer(deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH))
    trans = TZlibTransport(compressed)
    readable = trans.read(4) + trans.cstringio_refill(b"", 100).read()
    assert compressed.read(1) == b""  # every compressed byte was taken
    assert len(readable) < len(data)


def test_apacheHeaderProtocolIsAlwaysAccelerated() -> None:
    """
    What keeps Apache's THeader ends out of the pure-Python columns:
    C{THeaderProtocol} picks Apache's accelerated protocol classes itself.
    """
    assert sorted(cls.__name__ for cls in PROTOCOLS_BY_ID.values()) == [
        "TBinaryProtocolAccelerated", "TCompactProtocolAccelerated"]


# ---------------------------------------------------------------------------
# The checks can fail
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("expected", "got"), [
    (-0.0, 0.0),
    (0.0, -0.0),
    (float("nan"), 1.0),
    (1.0, float("nan")),
    (1.5, 1),
    (True, 1),
    (1, True),
    ("a", b"a"),
    (b"a", "a"),
    ("abc", "ab"),
    ([1, 2], [2, 1]),
    ([1, 2], (1, 2)),
    ({1, 2}, [1, 2]),
    ({1, 2}, {1, 3}),
    ({1: "a"}, {1: "b"}),
    ({1: "a"}, {2: "a"}),
    ({-0.0: "z"}, {0.0: "z"}),
    (pyTypes.Primitives(aDouble=-0.0), pyTypes.Primitives(aDouble=0.0)),
    (pyTypes.Primitives(aString="x"), pyTypes.Inner(tag="x")),
    (pyTypes.Defaults(id=1, name="n"), pyTypes.Defaults(id=1, name="n", limit=None)),
    (pyTypes.Node(value=1, children=[pyTypes.Node(value=2)]),
     pyTypes.Node(value=1, children=[pyTypes.Node(value=3)])),
])
def test_comparisonIsExact(expected: Any, got: Any) -> None:
    """
    The comparison every cell relies on tells apart what Python's C{==}
    does not: the sign of zero, C{True} and C{1}, a set and a list.
    """
    assert mismatch(expected, got) is not None
    assert mismatch(expected, expected) is None
    assert mismatch(float("nan"), float("nan")) is None


class LyingHandler(ConformanceHandler):
    """
    Gets a few answers subtly wrong.
    """

    def __init__(self) -> None:
        super().__init__(pyTypes)
        echoes = {"echoDouble": lambda v: 0.0 if v == 0 else v,
                  "echoString": lambda v: v[:-1] if len(v) > 1000 else v,
                  "echoColor": lambda v: 1 if v == 99 else v,
                  "echoContainers": lambda v: pyTypes.Containers(
                      **{**vars(v), "i64Set": {1, 2}}) if v.i64Set else v}
        for name, echo in echoes.items():
            setattr(self, name, echo)


@pytest_twisted.ensureDeferred
async def test_cellCatchesWrongAnswers() -> None:
    """
    A cell's check finds every answer a server gets wrong, and only those.
    """
    server = await TxthriftServer.start("framed", "binary", LyingHandler())
    try:
        calls = cases(pyTypes, tag="lying")
        outcomes = await runTxthrift(server.port, "framed", "binary", calls)
    finally:
        await server.stop()
    wrong = {problem.split(":")[0] for problem in checkOutcomes(calls, outcomes)}
    assert wrong == {"double -0.0", "1 MiB string", "unknown enum value",
                     "containers"}
