"""
The conformance suite's data: the matrix of ends, the calls every cell
makes with the values they carry, the handler answering them, and an exact
comparison of what came back.

Nothing here opens a socket; L{tests._conformance_peers} runs the ends.

Values are built from a I{types namespace}: the C{ttypes} module of either
flavour of generated code, or the module C{thriftpy2.load} makes, so that
each client sends and expects values of its own classes.
"""

from __future__ import annotations

import json
import math
import platform
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as packageVersion
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent
IDL = ROOT / "tests" / "gen" / "Conformance.thrift"
#: The environment variable naming the JSON results file a run writes.
RESULTS_ENV = "TXTHRIFT_CONFORMANCE_JSON"

# ---------------------------------------------------------------------------
# The matrix
# ---------------------------------------------------------------------------

CLIENTS = {
    "txthrift": "txthrift client",
    "apache-sync": "Apache sync client",
    "apache-twisted": "Apache py:twisted client (txthrift.TTwisted)",
    "thriftpy2": "thriftpy2 client",
}
SERVERS = {
    "txthrift": "txthrift server",
    "threaded": "Apache TThreadedServer",
    "nonblocking": "Apache TNonblockingServer",
    "thriftpy2": "thriftpy2 TThreadedServer",
}
#: The transports of the limits and non-finite tests.
TRANSPORTS = ("framed", "buffered")
#: THeader (Apache's THeaderProtocol), plain and with its zlib transform on requests.
HEADER_TRANSPORTS = ("header", "header-zlib")
#: Apache's TZlibTransport around TFramedTransport, and around TBufferedTransport:
#: txthrift's client names them so.
ZLIB_TRANSPORTS = ("zlib", "zlib-buffered")
#: The matrix's transports: those, Thrift over HTTP (one message per POST body),
#: THeader and zlib.
MATRIX_TRANSPORTS = (*TRANSPORTS, "http", *HEADER_TRANSPORTS, *ZLIB_TRANSPORTS)
#: The report's tables of the matrix, by transport.
MATRIX_GROUPS = ((*TRANSPORTS, "http"), (*HEADER_TRANSPORTS, *ZLIB_TRANSPORTS))
#: How the report names a transport, where not by its own name.
TRANSPORT_NAMES = {"header-zlib": "header+zlib"}
#: Protocol columns.  Each names the encoder of the end that is not txthrift
#: (both ends, for txthrift.TTwisted, which takes Apache's factories); a
#: txthrift end always uses Apache's C codec for binary and compact when the
#: extension is installed, pure Python otherwise.
PROTOCOLS = {
    "binary": "binary",
    "binary-accel": "accelerated binary",
    "compact": "compact",
    "compact-accel": "accelerated compact",
    "json": "JSON",
}
#: The wire protocol of each column.
WIRE = {"binary": "binary", "binary-accel": "binary", "compact": "compact",
        "compact-accel": "compact", "json": "json"}
#: The (client, server) rows: every pair with txthrift on at least one end.
ROWS = [
    ("txthrift", "txthrift"),
    ("txthrift", "threaded"),
    ("txthrift", "nonblocking"),
    ("apache-sync", "txthrift"),
    ("apache-sync", "threaded"),
    ("apache-sync", "nonblocking"),
    ("apache-twisted", "txthrift"),
    ("apache-twisted", "threaded"),
    ("apache-twisted", "nonblocking"),
    ("thriftpy2", "txthrift"),
    ("txthrift", "thriftpy2"),
]


def notApplicable(client: str, server: str, transport: str, protocol: str,
                  accelerated: bool) -> str | None:
    """
    Why a cell cannot be run, or C{None} when it can.
    """
    if transport == "http" and server != "txthrift":
        return f"{SERVERS[server]} serves no HTTP (Apache's THttpServer is another server)"
    if transport == "http" and client == "apache-twisted":
        return "TTwisted.ThriftClientProtocol speaks Thrift over TCP only (as Apache's own)"
    why = _noHeaderOrZlib(client, server, transport, protocol, accelerated)
    if why is not None:
        return why
    if server == "nonblocking" and transport != "framed":
        return "TNonblockingServer reads framed messages only"
    if client == "apache-twisted" and transport != "framed":
        return "TTwisted.ThriftClientProtocol is framed only (as Apache's own)"
    thriftpy2 = "thriftpy2" in (client, server)
    if thriftpy2 and protocol == "compact-accel":
        return "thriftpy2 has no C-accelerated compact protocol"
    if thriftpy2 and protocol == "json":
        return ("thriftpy2's TApacheJSONProtocol reads one message per connection: its"
                " read_message_end does not drop the message read, so every later read"
                " returns the first one again")
    if protocol.endswith("-accel") and not accelerated and not thriftpy2:
        return "thrift's C extension (fastbinary) is not installed"
    if (client, server) == ("txthrift", "txthrift") and accelerated and protocol in (
            "binary", "compact"):
        return ("both ends are txthrift, which always uses the C codec when it is installed:"
                " see the accelerated column")
    if transport in HEADER_TRANSPORTS and accelerated and protocol in ("binary", "compact"):
        return ("Apache's THeaderProtocol always encodes with Apache's accelerated protocols"
                " (TBinaryProtocolAccelerated, TCompactProtocolAccelerated; pure Python only"
                " without the C extension), whatever the column: see the accelerated column")
    return None


def _noHeaderOrZlib(client: str, server: str, transport: str, protocol: str,
                    accelerated: bool) -> str | None:
    """
    Why a THeader or zlib cell cannot be run, or C{None}.
    """
    header, zlibbed = transport in HEADER_TRANSPORTS, transport in ZLIB_TRANSPORTS
    if not (header or zlibbed):
        return None
    if "thriftpy2" in (client, server):
        return f"thriftpy2 has no {'THeader' if header else 'zlib'} transport"
    if header and server == "nonblocking":
        return ("Apache's THeaderProtocol does not support TNonblockingServer (its docstring"
                " says so): that server hands the protocol each frame without its length")
    if zlibbed and server == "nonblocking":
        return ("Apache's TNonblockingServer takes no transport factory, so no"
                " TZlibTransport: it reads bare frames only")
    if client == "apache-twisted":
        return None  # framed only, as for the buffered transport
    if zlibbed and accelerated and protocol.endswith("-accel") and (
            client, server) != ("txthrift", "txthrift"):
        return APACHE_ZLIB_REFILL
    if header and protocol == "json":
        return ("THeader carries binary or compact: its JSON (protocol id 1) is in neither"
                " txthrift nor Apache's Python THeaderProtocol")
    return None


@dataclass(frozen=True)
class Cell:
    client: str
    server: str
    transport: str
    protocol: str

    @property
    def id(self) -> str:
        return f"{self.client}-client--{self.server}-server--{self.transport}--{self.protocol}"


def allCells(accelerated: bool) -> list[tuple[Cell, str | None]]:
    """
    Every cell of the matrix with why it is not run (C{None}: it is).
    """
    return [(Cell(c, s, t, p), notApplicable(c, s, t, p, accelerated))
            for c, s in ROWS for t in MATRIX_TRANSPORTS for p in PROTOCOLS]


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------

NAN = float("nan")
INF = float("inf")
DBL_MAX = 1.7976931348623157e308
DBL_MIN_NORMAL = 2.2250738585072014e-308
DBL_TRUE_MIN = 5e-324

#: Every byte value.
ALL_BYTES = bytes(range(256))
#: Text hard on every protocol: 2, 3 and 4 byte UTF-8, JSON's escapes and
#: brackets, control characters, and the edges of the BMP.
NON_ASCII = ('Gr\u00fc\u00dfe, \u4e16\u754c! \u041f\u0440\u0438\u0432\u0435\u0442 \u2211 '
             '\U0001f600 "quoted" \\ back\\slash /slash [{"]}: \n\t\r\b\f '
             '\x00\x01\x1f\x7f \u0080 \u0800 \ud7ff \ue000 \uffff \U0010ffff')
VERSION = "conformance/1"


def bigString() -> str:
    """
    A string of exactly 1 MiB of UTF-8, of 1, 2, 3 and 4 byte characters.
    """
    unit = "a\u00e9\u20ac\U0001f600"  # 1 + 2 + 3 + 4 bytes
    text = unit * (MiB // 10) + "x" * (MiB % 10)
    assert len(text.encode("utf-8")) == MiB
    return text


BIG_STRING = bigString()
BIG_BINARY = ALL_BYTES * (MiB // 256)

FINITE_DOUBLES = [0.0, -0.0, 1.0, -1.5, 0.1, 1 / 3, math.pi, 123456789.125, 2.0**53,
                  DBL_TRUE_MIN, -DBL_TRUE_MIN, DBL_MIN_NORMAL, 1e-310, DBL_MAX, -DBL_MAX]
NON_FINITE_DOUBLES = [NAN, INF, -INF]

I8 = (-(2**7), 2**7 - 1)
I16 = (-(2**15), 2**15 - 1)
I32 = (-(2**31), 2**31 - 1)
I64 = (-(2**63), 2**63 - 1)
#: Why cells with Apache's TNonblockingServer make no 1 MiB call.
BIG_NOTE = (
    "Apache's TNonblockingServer (thrift 0.25) closes a connection whenever a recv of a full"
    " 8192-byte chunk is followed by one that would block (Connection.read treats the"
    " BlockingIOError as a broken socket), so a message that does not arrive in one piece,"
    " as a 1 MiB one rarely does, gets its connection closed: its cells leave out the two"
    " 1 MiB calls")
#: Why JSON cells send no NaN or infinity.
NON_FINITE_NOTE = (
    "Apache's Python TJSONProtocol writes NaN and infinities as bare nan/inf, which no JSON"
    " reader (its own included) accepts, instead of the quoted \"NaN\"/\"Infinity\"/"
    "\"-Infinity\" of the Thrift JSON protocol.  txthrift's JSON protocol writes the quoted forms"
    " (test_jsonNonFiniteDoubles proves them between txthrift ends), but cells with an Apache"
    " JSON end leave out non-finite doubles")
#: Why no cell has an accelerated Apache end over Apache's TZlibTransport.
APACHE_ZLIB_REFILL = (
    "Apache's TZlibTransport (thrift 0.25) loses bytes under its C-accelerated protocols:"
    " its cstringio_refill replaces its read buffer, dropping what it inflated past the"
    " bytes asked for, so the decoder then waits for bytes that never come (a message of"
    " some 4 KiB is enough, Apache at both ends alike;"
    " test_apacheZlibStillDropsInflatedBytes fails once a release fixes it)")
#: What the report says about values some cells leave out or accept differently.
NOTES = [
    BIG_NOTE,
    NON_FINITE_NOTE,
    ("thriftpy2 decodes a set as a list: its cells accept a list of the same distinct elements"
    " for a set"),
    ("A thriftpy2 server answers an undeclared exception by closing the connection, so its"
    " cells do not provoke one"),
]
#: A value of the enum that the IDL does not declare.
UNKNOWN_COLOR = 99


def primitives(T: Any, nonFinite: bool) -> list[Any]:
    return [
        T.Primitives(aBool=True, aByte=I8[1], anI16=I16[1], anI32=I32[1], anI64=I64[1],
                     aDouble=DBL_MAX, aString=NON_ASCII, aBinary=ALL_BYTES),
        T.Primitives(aBool=False, aByte=I8[0], anI16=I16[0], anI32=I32[0], anI64=I64[0],
                     aDouble=-0.0, aString="", aBinary=b""),
        T.Primitives(aBool=False, aByte=0, anI16=-1, anI32=0, anI64=-1,
                     aDouble=NAN if nonFinite else DBL_TRUE_MIN, aString="ascii",
                     aBinary=b"\x00"),
        # Nothing set: nothing goes on the wire, nothing comes back.
        T.Primitives(),
    ]


def containers(T: Any, nonFinite: bool) -> Any:
    prims = primitives(T, nonFinite)
    C = T.Color
    extra = NON_FINITE_DOUBLES if nonFinite else []
    return T.Containers(
        bools=[True, False, True],
        bytes_=[I8[0], -1, 0, 1, I8[1]],
        i16s=[I16[0], 0, I16[1]],
        i32s=[I32[0], -1, 0, 1, I32[1]],
        i64s=[I64[0], -(2**40), 0, 2**40, I64[1]],
        doubles=FINITE_DOUBLES + extra,
        strings=["", NON_ASCII, "plain"],
        binaries=[b"", ALL_BYTES, b"\xff"],
        boolSet={True, False},
        byteSet={I8[0], 0, I8[1]},
        i16Set={I16[0], 0, I16[1]},
        i32Set={I32[0], 0, I32[1]},
        i64Set={I64[0], 0, I64[1]},
        doubleSet={-0.0, 0.5, DBL_MAX, DBL_TRUE_MIN} | ({INF, -INF} if nonFinite else set()),
        stringSet={"", NON_ASCII, "a"},
        binarySet={b"", ALL_BYTES, b"\x00"},
        boolMap={True: -1, False: 1},
        byteMap={I8[0]: I16[0], 0: 0, I8[1]: I16[1]},
        i16Map={I16[0]: I32[0], I16[1]: I32[1]},
        i32Map={I32[0]: I64[0], I32[1]: I64[1]},
        i64Map={I64[0]: -0.0, I64[1]: DBL_MAX, 0: DBL_TRUE_MIN} | ({1: NAN} if nonFinite else {}),
        doubleMap={-0.0: "negative zero", 0.5: "half", -1e300: NON_ASCII}
        | ({INF: "infinity"} if nonFinite else {}),
        stringMap={"": b"", NON_ASCII: ALL_BYTES, "k": b"\x00"},
        binaryMap={b"": True, ALL_BYTES: False, b"\xff": True},
        index=index(),
        cube=[[[1, 2], [3]], [[]], []],
        tables=[{1: "one", -1: NON_ASCII}, {}],
        deepMap={1: {"p": prims[0], "q": prims[1]}, -1: {}},
        structs=prims,
        colors=[C.RED, C.GREEN, C.BLUE, C.NEGATIVE, UNKNOWN_COLOR],
        colorSet={C.RED, UNKNOWN_COLOR},
        colorMap={C.RED: C.BLUE, UNKNOWN_COLOR: C.NEGATIVE},
        groups={"g": {"a", "b"}, "empty": set()},
        setList=[{1, 2**40}, set()],
        emptyList=[],
        emptySet=set(),
        emptyMap={},
    )


def index() -> dict[str, list[set[int]]]:
    return {"": [{I32[0], I32[1]}], "a": [{1, 2, 3}, set(), {0}], NON_ASCII: []}


def fullDefaults(T: Any, nonFinite: bool) -> Any:
    """
    A C{Defaults} with every field set, none to its default.
    """
    return T.Defaults(id=-5, note="a note", count=-1, label="", numbers=[], color=UNKNOWN_COLOR,
                      limit=I64[0], ratio=-0.0, enabled=False, tags={}, small=set(),
                      extra=primitives(T, nonFinite)[0], name=NON_ASCII)


def tree(T: Any) -> Any:
    """
    A recursive C{Node}: branches, named children, and a chain 12 deep.
    """
    chain = T.Node(value=-1)
    for depth in range(12):
        chain = T.Node(value=depth, children=[chain])
    leaf = T.Node(value=5, children=[], named={})
    return T.Node(value=0, children=[T.Node(value=1), T.Node(value=2, children=[leaf]), chain],
                  named={"x": T.Node(value=4, named={"y": leaf}), NON_ASCII: T.Node()})


def outer(T: Any, nonFinite: bool) -> Any:
    prims = primitives(T, nonFinite)
    return T.Outer(
        middle=T.Middle(inner=T.Inner(tag="i", prims=prims[0]),
                        inners=[T.Inner(tag="a", prims=prims[1]), T.Inner(tag="b")]),
        middles={"m": T.Middle(inner=T.Inner(tag="x", prims=prims[2]), inners=[],
                               maybe=T.Inner(tag="may", prims=prims[3])),
                 "": T.Middle()},
        tree=tree(T))


def choices(T: Any, nonFinite: bool) -> list[Any]:
    prims = primitives(T, nonFinite)
    return [T.Choice(number=I32[0]), T.Choice(text=NON_ASCII), T.Choice(prims=prims[0]),
            T.Choice(names=[]), T.Choice(raw=ALL_BYTES)]


def everything(T: Any, nonFinite: bool) -> Any:
    return T.Everything(
        prims=primitives(T, nonFinite)[0], containers=containers(T, nonFinite),
        defaults=fullDefaults(T, nonFinite), outer=outer(T, nonFinite),
        choice=T.Choice(prims=primitives(T, nonFinite)[1]), color=T.Color.NEGATIVE,
        stamp=I64[0], blob=ALL_BYTES, names=["a", NON_ASCII, ""],
        choices=choices(T, nonFinite))


MANY_ARGS_NAMES = "abcdefghijklmno"


def manyArgs(T: Any, nonFinite: bool) -> tuple[Any, ...]:
    return (True, I8[0], I16[1], I32[0], I64[1], NAN if nonFinite else -0.0, NON_ASCII,
            ALL_BYTES, T.Color.BLUE, [1, -1, 0], {"a", "\u00fc"}, {1: "one", -1: ""},
            primitives(T, nonFinite)[0], T.Choice(text="t"), 1700000000123)


def raised(T: Any, which: int) -> BaseException:
    """
    The declared exception C{raises(which)} answers with, for C{which} 1-3.
    """
    if which == 1:
        return T.NotFound(key=NON_ASCII)
    if which == 2:
        return T.Invalid(reason="bad", code=I32[0], fields=["a", ""])
    assert which == 3
    return T.Overloaded(retryAfter=-0.0, load=primitives(T, False)[0])


# ---------------------------------------------------------------------------
# The handler every server in the matrix serves
# ---------------------------------------------------------------------------

_ECHOES = ("echoBool", "echoByte", "echoI16", "echoI32", "echoI64", "echoDouble", "echoString",
           "echoBinary", "echoColor", "echoTimestamp", "echoBlob", "echoNames", "echoIndex",
           "echoDoubles", "echoPrimitives", "echoContainers", "echoDefaults", "echoNode",
           "echoOuter", "echoChoice", "echoEverything")


class Undeclared(RuntimeError):
    """
    What C{raises} answers with for an undeclared exception.
    """


class ConformanceHandler:
    """
    The C{Conformance} service (and its base), synchronous, for any server;
    echo methods answer with the very value they got.

    @ivar seen: when recording, every argument each echo method got, by
        method name.
    """

    def __init__(self, T: Any, *, record: bool = False) -> None:
        self.T = T
        self.record = record
        self.seen: dict[str, list[Any]] = {}
        self._notes: list[str] = []
        self._lock = threading.Lock()
        for name in _ECHOES:
            setattr(self, name, self._echo(name))

    def _echo(self, name: str) -> Callable[[Any], Any]:
        def echo(v: Any) -> Any:
            if self.record:
                with self._lock:
                    self.seen.setdefault(name, []).append(v)
            return v

        echo.__name__ = name
        return echo

    def version(self) -> str:
        return VERSION

    def add(self, a: int, b: int) -> int:
        return a + b

    def nothing(self) -> None:
        return None

    def notify(self, tag: str) -> None:
        with self._lock:
            self._notes.append(tag)

    def notified(self) -> list[str]:
        with self._lock:
            return list(self._notes)

    def makeDefaults(self, id: int, name: str) -> Any:
        return self.T.Defaults(id=id, name=name)

    def manyArgs(self, *args: Any) -> Any:
        assert len(args) == len(MANY_ARGS_NAMES)
        return self.T.Arguments(**dict(zip(MANY_ARGS_NAMES, args)))

    def raises(self, which: int) -> int:
        if which == 0:
            return 0
        if which in (1, 2, 3):
            raise raised(self.T, which)
        raise Undeclared(f"undeclared failure {which}")

    def raisesVoid(self, which: int) -> None:
        if which in (1, 2):
            raise raised(self.T, which)


class SecondHandler:
    """
    The C{Second} service, multiplexed beside C{Conformance}.
    """

    def whoami(self) -> str:
        return "Second"

    def multiply(self, a: int, b: int) -> int:
        return a * b


# ---------------------------------------------------------------------------
# Calls
# ---------------------------------------------------------------------------

MAIN, SECOND = "main", "second"


@dataclass
class Case:
    """
    One call and what it must give.

    @ivar raises: the declared exception it must fail with (compared as a
        value), or C{"undeclared"} for a L{TApplicationException} of type
        C{INTERNAL_ERROR}.
    @ivar check: a check of its own, replacing the comparison with C{expect}.
    """

    name: str
    method: str
    args: tuple[Any, ...] = ()
    expect: Any = None
    raises: Any = None
    service: str = MAIN
    check: Callable[[Any], str | None] | None = None


def cases(T: Any, *, nonFinite: bool = True, tag: str = "tag", undeclared: bool = True,
          big: bool = True) -> list[Case]:
    """
    Every call a cell makes, with values of C{T}'s classes.

    @param nonFinite: whether to send NaN and infinities (Apache's Python
        JSON protocol cannot read them back).
    @param tag: what the oneway call carries, unique per cell.
    @param undeclared: whether to provoke an undeclared exception (a
        thriftpy2 server answers one by closing the connection).
    @param big: whether to send 1 MiB values (Apache's TNonblockingServer
        drops connections that send big messages, see L{BIG_NOTE}).
    """
    C = T.Color
    doubles = FINITE_DOUBLES + (NON_FINITE_DOUBLES if nonFinite else [])
    out = [
        Case("version (inherited)", "version", expect=VERSION),
        Case("add (inherited)", "add", (2**62, 2**62 - 1), expect=I64[1]),
        Case("void", "nothing"),
        Case("oneway", "notify", (tag,)),
        Case("oneway arrived", "notified",
             check=lambda got: None if isinstance(got, list) and tag in got
             else f"the oneway call's {tag!r} is not among {got!r}"),
        Case("bool true", "echoBool", (True,), expect=True),
        Case("bool false", "echoBool", (False,), expect=False),
    ]
    out += [Case(f"byte {v}", "echoByte", (v,), expect=v) for v in (I8[0], -1, 0, I8[1])]
    out += [Case(f"i16 {v}", "echoI16", (v,), expect=v) for v in (I16[0], 0, I16[1])]
    out += [Case(f"i32 {v}", "echoI32", (v,), expect=v) for v in (I32[0], 0, I32[1])]
    out += [Case(f"i64 {v}", "echoI64", (v,), expect=v) for v in (I64[0], 0, I64[1])]
    out += [Case(f"double {v!r}", "echoDouble", (v,), expect=v) for v in doubles]
    out += [
        Case("double list", "echoDoubles", (doubles,), expect=doubles),
        Case("empty string", "echoString", ("",), expect=""),
        Case("non-ASCII string", "echoString", (NON_ASCII,), expect=NON_ASCII),
        Case("all 256 bytes", "echoBinary", (ALL_BYTES,), expect=ALL_BYTES),
        Case("empty binary", "echoBinary", (b"",), expect=b""),
    ]
    if big:
        out += [
            Case("1 MiB string", "echoString", (BIG_STRING,), expect=BIG_STRING),
            Case("1 MiB binary", "echoBinary", (BIG_BINARY,), expect=BIG_BINARY),
        ]
    out += [
        Case("enum", "echoColor", (C.BLUE,), expect=C.BLUE),
        Case("negative enum", "echoColor", (C.NEGATIVE,), expect=C.NEGATIVE),
        Case("unknown enum value", "echoColor", (UNKNOWN_COLOR,), expect=UNKNOWN_COLOR),
        Case("typedef i64", "echoTimestamp", (I64[0],), expect=I64[0]),
        Case("typedef binary", "echoBlob", (ALL_BYTES,), expect=ALL_BYTES),
        Case("typedef list", "echoNames", (["a", "", NON_ASCII],), expect=["a", "", NON_ASCII]),
        Case("typedef map<string, list<set<i32>>>", "echoIndex", (index(),), expect=index()),
    ]
    for i, prims in enumerate(primitives(T, nonFinite)):
        out.append(Case(f"primitives #{i}", "echoPrimitives", (prims,), expect=prims))
    out.append(Case("containers", "echoContainers", (containers(T, nonFinite),),
                    expect=containers(T, nonFinite)))
    out.append(Case("empty containers struct", "echoContainers", (T.Containers(),),
                    expect=T.Containers()))
    out += [
        Case("defaults: required only", "echoDefaults", (T.Defaults(id=1, name="n"),),
             expect=T.Defaults(id=1, name="n")),
        Case("defaults: every field set", "echoDefaults", (fullDefaults(T, nonFinite),),
             expect=fullDefaults(T, nonFinite)),
        # An optional field left unset is not sent: the reader keeps its default.
        Case("defaults: optionals unset", "echoDefaults",
             (T.Defaults(id=3, name="x", note=None, limit=None),),
             expect=T.Defaults(id=3, name="x")),
        Case("defaults made by the server", "makeDefaults", (7, "made"),
             expect=T.Defaults(id=7, name="made")),
        Case("recursive struct", "echoNode", (tree(T),), expect=tree(T)),
        Case("nested structs", "echoOuter", (outer(T, nonFinite),), expect=outer(T, nonFinite)),
    ]
    out += [Case(f"union #{i}", "echoChoice", (choice,), expect=choice)
            for i, choice in enumerate(choices(T, nonFinite))]
    out.append(Case("everything", "echoEverything", (everything(T, nonFinite),),
                    expect=everything(T, nonFinite)))
    args = manyArgs(T, nonFinite)
    out.append(Case("15 arguments", "manyArgs", args,
                    expect=T.Arguments(**dict(zip(MANY_ARGS_NAMES, args)))))
    out += [
        Case("declared exceptions: none", "raises", (0,), expect=0),
        Case("declared exception #1", "raises", (1,), raises=raised(T, 1)),
        Case("declared exception #2", "raises", (2,), raises=raised(T, 2)),
        Case("declared exception #3", "raises", (3,), raises=raised(T, 3)),
        Case("void, declared exceptions: none", "raisesVoid", (0,)),
        Case("void, declared exception #1", "raisesVoid", (1,), raises=raised(T, 1)),
        Case("void, declared exception #2", "raisesVoid", (2,), raises=raised(T, 2)),
    ]
    if undeclared:
        out.append(Case("undeclared exception", "raises", (4,), raises="undeclared"))
    out += [
        Case("second service", "whoami", expect="Second", service=SECOND),
        Case("second service, i64", "multiply", (2**31, -3), expect=-3 * 2**31,
             service=SECOND),
        # The connection is still good after all of the above.
        Case("still connected", "echoString", (tag,), expect=tag),
    ]
    return out


# ---------------------------------------------------------------------------
# Comparing exactly
# ---------------------------------------------------------------------------

_MISSING = object()
INTERNAL_ERROR = 6  # TApplicationException.INTERNAL_ERROR in every implementation


def fieldNames(value: Any) -> list[str]:
    """
    The field names of a generated struct or exception, of either
    implementation (Apache's spec is a tuple, thriftpy2's a dict).
    """
    spec = type(value).thrift_spec
    if isinstance(spec, dict):
        return [entry[1] for _, entry in sorted(spec.items())]
    return [entry[2] for entry in spec if entry is not None]


def isStruct(value: Any) -> bool:
    return getattr(type(value), "thrift_spec", None) is not None


def canonical(value: Any) -> Any:
    """
    A hashable form of a value in which equal means exactly equal: types
    count (C{True} is not C{1}, C{str} is not C{bytes}), a double is its
    bits, and every NaN is the same.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, float):
        return ("nan",) if math.isnan(value) else ("double", struct.pack(">d", value))
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, bytes):
        return ("bytes", value)
    if isinstance(value, list):
        return ("list", tuple(canonical(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(canonical(v) for v in value))
    if isinstance(value, dict):
        return ("map", frozenset((canonical(k), canonical(v)) for k, v in value.items()))
    if isStruct(value):
        return ("struct", type(value).__name__,
                tuple((name, canonical(getattr(value, name, None))) for name in fieldNames(value)))
    raise TypeError(f"no canonical form for {value!r}")


def show(value: Any) -> str:
    """
    A value's repr, cut short when long.
    """
    text = repr(value)
    if len(text) > 80:
        size = f" (length {len(value)})" if isinstance(value, (str, bytes, list)) else ""
        text = text[:60] + "..." + text[-12:] + size
    return text


def mismatch(expected: Any, got: Any, path: str = "value", *,
             setsAsLists: bool = False) -> str | None:
    """
    Where C{got} differs from C{expected}, or C{None} when it is exactly it.

    @param setsAsLists: accept a list of the same distinct elements for a
        set (thriftpy2 decodes sets as lists).
    """
    def differ(why: str = "") -> str:
        return f"{path}: expected {show(expected)}, got {show(got)}{why}"

    if isinstance(expected, float):
        if not isinstance(got, float):
            return differ(f" of type {type(got).__name__}")
        if math.isnan(expected):
            return None if math.isnan(got) else differ()
        if struct.pack(">d", expected) != struct.pack(">d", got):
            return differ(" (sign or bits differ)" if expected == got else "")
        return None
    if expected is None or isinstance(expected, (bool, str, bytes)):
        if type(got) is not type(expected):
            return differ(f" of type {type(got).__name__}")
        if got != expected:
            if isinstance(expected, (str, bytes)) and isinstance(got, (str, bytes)):
                at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b),
                          min(len(expected), len(got)))
                return differ(f" (first difference at index {at})")
            return differ()
        return None
    if isinstance(expected, int):
        if isinstance(got, bool) or not isinstance(got, int) or int(got) != int(expected):
            return differ()
        return None
    if isinstance(expected, list):
        if not isinstance(got, list):
            return differ(f" of type {type(got).__name__}")
        if len(got) != len(expected):
            return differ(f" ({len(got)} elements instead of {len(expected)})")
        for i, (e, g) in enumerate(zip(expected, got)):
            why = mismatch(e, g, f"{path}[{i}]", setsAsLists=setsAsLists)
            if why:
                return why
        return None
    if isinstance(expected, (set, frozenset)):
        if not (isinstance(got, (set, frozenset)) or (setsAsLists and isinstance(got, list))):
            return differ(f" of type {type(got).__name__}")
        have = [canonical(g) for g in got]
        if len(have) != len(set(have)) or set(have) != {canonical(e) for e in expected}:
            return differ()
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return differ(f" of type {type(got).__name__}")
        byKey = {canonical(k): v for k, v in got.items()}
        if set(byKey) != {canonical(k) for k in expected} or len(byKey) != len(got):
            return differ(" (keys differ)")
        for k, e in expected.items():
            why = mismatch(e, byKey[canonical(k)], f"{path}[{k!r}]", setsAsLists=setsAsLists)
            if why:
                return why
        return None
    if isStruct(expected):
        if not isStruct(got) or type(got).__name__ != type(expected).__name__:
            return differ(f" of type {type(got).__name__}")
        for name in fieldNames(expected):
            why = mismatch(getattr(expected, name, None), getattr(got, name, _MISSING),
                           f"{path}.{name}", setsAsLists=setsAsLists)
            if why:
                return why
        return None
    raise TypeError(f"cannot compare {expected!r}")


def describeError(error: BaseException) -> str:
    """
    An exception with its Thrift type code and message, which C{repr} of
    Apache's TApplicationException leaves out.
    """
    kind = getattr(error, "type", None)
    message = getattr(error, "message", None) or str(error)
    code = f"type {kind}, " if isinstance(kind, int) else ""
    return f"{type(error).__name__}({code}{message!r})"


@dataclass
class Outcome:
    """
    What one call gave: a value, or the exception it failed with.
    """

    value: Any = None
    error: BaseException | None = None


def checkOutcome(case: Case, outcome: Outcome, *, setsAsLists: bool = False) -> str | None:
    """
    Why C{outcome} is not what C{case} must give, or C{None}.
    """
    error = outcome.error
    if case.raises is None:
        if error is not None:
            return f"{case.name}: failed with {describeError(error)}"
        if case.check is not None:
            return case.check(outcome.value)
        why = mismatch(case.expect, outcome.value, f"{case.name}: {case.method}()",
                       setsAsLists=setsAsLists)
        return why
    if error is None:
        return f"{case.name}: returned {show(outcome.value)} instead of failing"
    if case.raises == "undeclared":
        if type(error).__name__ != "TApplicationException":
            return f"{case.name}: failed with {describeError(error)}, not a TApplicationException"
        kind = getattr(error, "type", None)
        if kind != INTERNAL_ERROR:
            return f"{case.name}: TApplicationException of type {kind}, not INTERNAL_ERROR"
        return None
    return mismatch(case.raises, error, f"{case.name}: {case.method}() raised",
                    setsAsLists=setsAsLists)


def checkOutcomes(calls: list[Case], outcomes: list[Outcome], *,
                  setsAsLists: bool = False) -> list[str]:
    """
    Every way C{outcomes} differ from what C{calls} must give.
    """
    problems = []
    if len(outcomes) != len(calls):
        problems.append(f"{len(outcomes)} outcomes for {len(calls)} calls")
    for case, outcome in zip(calls, outcomes):
        why = checkOutcome(case, outcome, setsAsLists=setsAsLists)
        if why:
            problems.append(why)
    return problems


# ---------------------------------------------------------------------------
# Results, for scripts/conformance_report.py
# ---------------------------------------------------------------------------


def _version(name: str) -> str:
    try:
        return packageVersion(name)
    except PackageNotFoundError:
        return "not installed"


def compilerVersion() -> str:
    stamp = ROOT / "tests" / "gen" / "conformance_py" / "COMPILER"
    try:
        stamped = stamp.read_text(encoding="utf-8").split(" (")[0]
    except OSError:
        return "unknown"
    return stamped.replace("Thrift version", "").strip()


@dataclass
class Results:
    """
    What a run found, cell by cell, written as JSON when L{RESULTS_ENV}
    names a file.
    """

    started: float = field(default_factory=time.monotonic)
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def record(self, cell: Cell, ok: bool, detail: str = "", seconds: float = 0.0,
               calls: int = 0) -> None:
        self.cells[cell.id] = {"client": cell.client, "server": cell.server,
                               "transport": cell.transport, "protocol": cell.protocol,
                               "status": "pass" if ok else "fail", "detail": detail,
                               "seconds": round(seconds, 3), "calls": calls}

    def note(self, section: str, **entry: Any) -> None:
        """
        Record the outcome of a test outside the matrix, under C{section}.
        """
        self.extra.setdefault(section, []).append(entry)

    def document(self, command: list[str], accelerated: bool) -> dict[str, Any]:
        matrix = []
        for cell, reason in allCells(accelerated):
            entry = self.cells.get(cell.id)
            if reason is not None:
                entry = {"client": cell.client, "server": cell.server,
                         "transport": cell.transport, "protocol": cell.protocol,
                         "status": "n/a", "detail": reason}
            elif entry is None:
                entry = {"client": cell.client, "server": cell.server,
                         "transport": cell.transport, "protocol": cell.protocol,
                         "status": "not run", "detail": "not selected in this run"}
            matrix.append(entry)
        return {
            "date": datetime.now(timezone.utc).strftime(  # noqa: UP017 - not in 3.10
                "%Y-%m-%d %H:%M UTC"),
            "command": command,
            "seconds": round(time.monotonic() - self.started, 1),
            "versions": {
                "python": platform.python_version(),
                "txthrift": _version("txthrift"),
                "thrift": _version("thrift"),
                "thrift C extension": "yes" if accelerated else "no",
                "thrift compiler": compilerVersion(),
                "twisted": _version("twisted"),
                "thriftpy2": _version("thriftpy2"),
            },
            "clients": CLIENTS,
            "servers": SERVERS,
            "transports": list(TRANSPORTS),
            "matrixTransports": list(MATRIX_TRANSPORTS),
            "matrixGroups": [list(group) for group in MATRIX_GROUPS],
            "transportNames": TRANSPORT_NAMES,
            "protocols": PROTOCOLS,
            "rows": [list(row) for row in ROWS],
            "matrix": matrix,
            "notes": NOTES,
            "sections": self.extra,
        }

    def write(self, path: str, command: list[str], accelerated: bool) -> None:
        Path(path).write_text(json.dumps(self.document(command, accelerated), indent=1,
                                         ensure_ascii=False) + "\n", encoding="utf-8")


def summarize(problems: Iterable[str], limit: int = 3) -> str:
    problems = list(problems)
    shown = "; ".join(problems[:limit])
    more = len(problems) - limit
    return shown + (f"; and {more} more" if more > 0 else "")
