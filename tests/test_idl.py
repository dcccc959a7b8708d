"""
Tests for C{txthrift.loadIDL} (C{txthrift/_idl.py}) and C{--idl} of the
C{txthrift} command: a C{.thrift} file loaded with no compiler gives the
module Apache's compiler would, so the conformance calls cross the wire
byte for byte as generated code sends them, through C{txthrift call},
C{connect} and C{serve}, against Apache's generated server and client.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_twisted
from thrift.protocol.TBinaryProtocol import TBinaryProtocolFactory
from thrift.protocol.TCompactProtocol import TCompactProtocolFactory
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TMessageType
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import (
    TFramedTransport,
    TFramedTransportFactory,
    TMemoryBuffer,
)
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

import txthrift
from tests._apache import ApacheServer
from tests._conformance import (
    IDL,
    MAIN,
    ConformanceHandler,
    cases,
    checkOutcomes,
    mismatch,
)
from tests._conformance_peers import _callAsync, runApacheSync
from tests._processes import REPO, WAIT, environment
from tests.gen.conformance_py.txthrift_conformance import Conformance
from tests.gen.conformance_py.txthrift_conformance import ttypes as T
from tests.test_cli_caller import (
    SERVICE,
    apacheServer,
    echoCases,
    oneLine,
    txthriftCall,
)
from tests.test_cli_caller import roundTripAll as cliRoundTripAll
from tests.test_walkthrough import compilerOrSkip
from txthrift import IDLError, loadIDL
from txthrift._codec import Codec
from txthrift._idl import _insideThriftpy2
from txthrift._service import describe

__all__ = ["apacheServer"]  # The fixture, shared with tests/test_cli_caller.py.

IDL_ARGS = ("--idl", str(IDL.relative_to(REPO)))


@pytest.fixture(scope="module")
def loaded() -> Any:
    return loadIDL(IDL, "Conformance")


def mainCases(types: Any) -> list[Any]:
    return [case for case in cases(types) if case.service == MAIN]


# txthrift call --idl: the module path's table of calls, both servers


def roundTripAll(endpoint: str, *extra: str) -> list[str]:
    """
    Every value-returning conformance call through C{txthrift call --idl},
    as L{tests.test_cli_caller} makes them with the generated module.
    """
    return cliRoundTripAll(endpoint, *IDL_ARGS, *extra, service="Conformance")


def test_callRoundTripsThroughApachesServer(apacheServer: ApacheServer) -> None:
    """
    Every value-returning conformance call, from the C{.thrift} file alone,
    against Apache's threaded server of the generated code.
    """
    assert len(echoCases()) > 60
    assert roundTripAll(f"127.0.0.1:{apacheServer.port}") == []


@pytest_twisted.ensureDeferred
async def test_callRoundTripsThroughTxthrift() -> None:
    """
    The same against a txthrift server of the generated module, in compact.
    """
    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1",
                                     ConformanceHandler(T), service=Conformance)
    try:
        problems = await deferToThread(roundTripAll, f"127.0.0.1:{port.getHost().port}",
                                       "--protocol", "compact")
    finally:
        await port.stopListening()
    assert problems == []


def test_declaredExceptionAndOneway(apacheServer: ApacheServer) -> None:
    endpoint = f"127.0.0.1:{apacheServer.port}"
    raised = txthriftCall("call", *IDL_ARGS, endpoint, "Conformance", "raises", '{"which": 2}')
    assert raised.returncode == 1, raised.stderr
    assert json.loads(raised.stderr) == {"exception": "Invalid", "fields": {
        "reason": "bad", "code": -2**31, "fields": ["a", ""]}}
    oneway = txthriftCall("call", *IDL_ARGS, endpoint, "Conformance", "notify", '{"tag": "i"}')
    assert (oneway.returncode, oneway.stdout) == (0, "null\n"), oneway.stderr
    enum = txthriftCall("call", *IDL_ARGS, endpoint, "Conformance", "echoColor", '{"v": "BLUE"}')
    assert (enum.returncode, enum.stdout) == (0, "4\n"), enum.stderr


# connect and serve, against Apache's generated server and client


@pytest_twisted.ensureDeferred
async def test_connectToApachesServer(apacheServer: ApacheServer, loaded: Any) -> None:
    """
    C{connect} with the loaded module: every call of the main service, its
    values made of the loaded classes, answered by Apache's server.
    """
    calls = mainCases(loaded)
    client = await txthrift.connect(reactor, f"tcp:host=127.0.0.1:port={apacheServer.port}",
                                    loaded, timeout=WAIT)
    try:
        outcomes = await _callAsync({MAIN: client}, calls)
    finally:
        await client.close()
    assert checkOutcomes(calls, outcomes) == []


@pytest.mark.parametrize("processor", [False, True])
@pytest_twisted.ensureDeferred
async def test_serveToApachesClient(loaded: Any, processor: bool) -> None:
    """
    C{serve} with the loaded module, a handler answering with the loaded
    classes (or the loaded C{Processor} of it): Apache's generated client
    gets every value as it sent it.
    """
    calls = mainCases(T)
    handler = ConformanceHandler(loaded)
    served = {"handler": loaded.Processor(handler)} if processor else {
        "handler": handler, "service": loaded}
    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", **served)
    try:
        outcomes = await deferToThread(runApacheSync, port.getHost().port, "framed",
                                       "compact", calls)
    finally:
        await port.stopListening()
    assert checkOutcomes(calls, outcomes) == []


@pytest.mark.parametrize("protocol", ["binary", "compact", "json"])
def test_wireIdentical(loaded: Any, protocol: str) -> None:
    """
    Every conformance call's arguments and every answer, encoded from the
    loaded classes, is the generated code's bytes, through the C coder and
    through Apache's Python protocols; and read back, what the generated
    classes read.
    """
    pure = {"binary": TBinaryProtocolFactory(), "compact": TCompactProtocolFactory()}
    codecs = [Codec(protocol)] + ([Codec(protocol, factory=pure[protocol])]
                                  if protocol in pure else [])
    generated, built = describe(Conformance).methods, describe(loaded).methods
    for case, ours in zip(mainCases(T), mainCases(loaded)):
        method = generated[case.method]
        bodies: list[tuple[Any, Any, Any, Any]] = [
            (method.args, built[case.method].args, case.args, ours.args)]
        if case.raises is None and case.check is None and method.returnsValue:
            bodies.append((method.result, built[case.method].result, (case.expect,),
                           (ours.expect,)))
        elif isinstance(case.raises, BaseException):
            field = next(name for name, cls in method.exceptions
                         if cls.__name__ == type(case.raises).__name__)
            bodies.append((method.result, built[case.method].result, {field: case.raises},
                           {field: ours.raises}))
        for theirClass, ourClass, theirs, mine in bodies:
            for codec in codecs:
                expected = codec.encode(case.method, TMessageType.REPLY, 7,
                                        made(theirClass, theirs))
                assert codec.encode(case.method, TMessageType.REPLY, 7,
                                    made(ourClass, mine)) == expected, case.name
                ourBack, theirBack = ourClass(), theirClass()
                for back in (ourBack, theirBack):
                    iprot, *_ = codec.readHeader(expected)
                    codec.readBody(iprot, back)
                assert mismatch(theirBack, ourBack) is None, case.name


def made(cls: Any, values: Any) -> Any:
    return cls(**values) if isinstance(values, dict) else cls(*values)


def test_generatedShape(loaded: Any) -> None:
    """
    The classes are as Apache's compiler makes them: the same C{thrift_spec}
    (classes by name), C{__init__} keywords and defaults, required fields
    checked by C{validate}, immutable exceptions, enums and constants.
    """
    import inspect

    def shape(value: Any) -> Any:
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], type):
            return value[0].__name__
        if isinstance(value, (list, tuple)):
            return tuple(shape(item) for item in value)
        return value

    for name, cls in vars(Conformance).items():
        if isinstance(cls, type) and hasattr(cls, "thrift_spec") and name != "TFrozenDict":
            ours = getattr(loaded, name)
            assert shape(ours.thrift_spec) == shape(cls.thrift_spec), name
            names = list(inspect.signature(cls).parameters)
            assert list(inspect.signature(ours).parameters) == names, name
            assert [getattr(ours(), field) for field in names] == [
                getattr(cls(), field) for field in names], name
    made = loaded.Defaults()
    assert (made.count, made.numbers, made.color, made.tags) == (7, [1, 2, 3], 2, {"k": "v"})
    made.numbers.append(4)
    assert loaded.Defaults().numbers == [1, 2, 3]
    with pytest.raises(TProtocolException, match="Required field id is unset"):
        made.validate()
    loaded.Defaults(id=1, name="n").validate()
    with pytest.raises(AttributeError):
        loaded.NotFound(key="k").key = "other"
    assert str(loaded.NotFound(key="k")) == "NotFound(key='k')"
    assert loaded.Color._NAMES_TO_VALUES == T.Color._NAMES_TO_VALUES
    constants = sys.modules[loaded.__name__.rpartition(".")[0] + ".constants"]
    from tests.gen.conformance_py.txthrift_conformance import constants as generated

    for name in ("ANSWER", "BIG", "RATIO", "GREETING", "PRIMES", "WORDS", "WEIGHTS",
                 "FAVOURITE"):
        assert getattr(constants, name) == getattr(generated, name), name


def test_processorAndClientWithApachesServer(tmp_path: Path) -> None:
    """
    The loaded C{Processor} serves in Apache's threaded server and the
    loaded C{Client} calls it: a service that extends one of an included
    file, with an enum default, recursion (direct, and through a struct
    declared after) and a declared exception.
    """
    module, shared = includingIDL(tmp_path)

    class Handler:
        def ping(self) -> None:
            return None

        def grow(self, tree: Any, times: int) -> Any:
            if times < 0:
                raise shared.Oops(why="negative")
            return shared.Tree(label=tree.label, kids=[tree] * times)

    server = ApacheServer("threaded", module.Processor(Handler()), TFramedTransportFactory(),
                          TBinaryProtocolFactory())
    socket = TSocket("127.0.0.1", server.port)
    socket.setTimeout(int(WAIT * 1000))
    transport = TFramedTransport(socket)
    client = module.Client(TBinaryProtocolFactory().getProtocol(transport))
    transport.open()
    try:
        client.ping()
        leaf = shared.Tree()
        assert (leaf.label, leaf.kind) == ("leaf", shared.Kind.B)
        grown = client.grow(leaf, 2)
        assert grown == shared.Tree(label="leaf", kids=[leaf, leaf])
        wooded = shared.Tree(forest=shared.Forest(trees={"x": shared.Tree(label="x")}))
        assert client.grow(wooded, 1) == shared.Tree(label="leaf", kids=[wooded])
        with pytest.raises(shared.Oops) as raised:
            client.grow(leaf, -1)
        assert raised.value.why == "negative"
    finally:
        transport.close()
        server.stop()


def includingIDL(folder: Path) -> tuple[Any, Any]:
    """
    A service extending one of an included file, loaded; and the included
    file's C{ttypes}.
    """
    (folder / "shared.thrift").write_text(
        "enum Kind { A, B = 5 }\n"
        "exception Oops { 1: string why }\n"
        "struct Tree { 1: string label = \"leaf\", 2: list<Tree> kids,"
        " 3: Kind kind = Kind.B, 4: optional Forest forest }\n"
        "struct Forest { 1: map<string, Tree> trees }\n"
        "service Pinger { void ping() }\n")
    (folder / "grow.thrift").write_text(
        "include \"shared.thrift\"\n"
        "typedef shared.Tree T\n"
        "const shared.Tree SEED = {\"label\": \"seed\"}\n"
        "service Grower extends shared.Pinger {\n"
        "  T grow(1: T tree, 2: i32 times) throws (1: shared.Oops oops)\n"
        "}\n")
    module = loadIDL(folder / "grow.thrift")
    shared = module.shared.ttypes
    constants = sys.modules[module.__name__.rpartition(".")[0] + ".constants"]
    assert constants.SEED == shared.Tree(label="seed")
    return module, shared


@pytest_twisted.ensureDeferred
async def test_readmeHello() -> None:
    """
    The README's lines: the Quickstart's service described and called from
    its IDL, served by a handler of the loaded module.
    """
    hello = loadIDL(REPO / "examples" / "hello" / "HelloService.thrift")

    class Handler(hello.Iface):  # type: ignore[name-defined]
        def getData(self, input: str) -> str:
            return input.upper()

    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", Handler())
    try:
        result = await deferToThread(
            txthriftCall, "call", "--idl",
            "examples/hello/HelloService.thrift", f"127.0.0.1:{port.getHost().port}",
            "HelloService", "getData", '{"input": "x"}')
    finally:
        await port.stopListening()
    assert (result.returncode, result.stdout, result.stderr) == (0, '"X"\n', "")
    described = txthriftCall("describe", "--idl", "examples/hello/HelloService.thrift",
                             "HelloService")
    assert described.stdout.splitlines()[1:] == ["  string getData(string input)",
                                                 "  void sayHello()"]
    unnamed = txthriftCall("describe", "--idl", "examples/hello/HelloService.thrift")
    assert (unnamed.returncode, unnamed.stdout) == (0, described.stdout), unnamed.stderr


# describe: the same for the module and the IDL


def test_describeIsTheSame() -> None:
    module = txthriftCall("describe", SERVICE)
    idl = txthriftCall("describe", *IDL_ARGS, "Conformance")
    assert (module.returncode, idl.returncode) == (0, 0), idl.stderr
    assert idl.stdout.splitlines()[0] == ("service Conformance (tests/gen/Conformance.thrift):"
                                          " 30 methods")
    assert idl.stdout.splitlines()[1:] == module.stdout.splitlines()[1:]
    moduleJSON = json.loads(txthriftCall("describe", "--json", SERVICE).stdout)
    idlJSON = json.loads(txthriftCall("describe", "--json", *IDL_ARGS, "Conformance").stdout)
    assert idlJSON["methods"] == moduleJSON["methods"]
    assert idlJSON["idl"] == "tests/gen/Conformance.thrift"


# What goes wrong: one line, exit 2


def test_errorsAreOneLine(tmp_path: Path) -> None:
    """
    A missing file, a mistake in it (its line named), an unknown service,
    what Apache's Python cannot have: one line each, exit 2.
    """
    broken = tmp_path / "broken.thrift"
    broken.write_text("struct A {\n  1: i32 x\n  2: i32\n}\n")
    unnumbered = tmp_path / "unnumbered.thrift"
    unnumbered.write_text("struct A { i32 x }\nservice S { A get() }\n")
    notThrift = tmp_path / "calc.txt"
    notThrift.write_text("service S {}\n")
    expected = {
        ("describe", "--idl", str(tmp_path / "none.thrift"), "S"): "none.thrift: no such file",
        ("describe", "--idl", str(broken), "S"): "at line 4",
        ("describe", "--idl", str(unnumbered), "S"): "A: field 'x' has no id",
        ("describe", "--idl", str(notThrift), "S"): "not a .thrift file",
        ("describe", *IDL_ARGS, "Nope"): ("has no service 'Nope' (its services: Base,"
                                          " Conformance, Second)"),
        ("describe", *IDL_ARGS): ("Conformance.thrift declares 3 services: name one (Base,"
                                  " Conformance, Second)"),
        ("call", *IDL_ARGS, "127.0.0.1:1", "Conformance", "nope"): (
            "Conformance has no method 'nope' (txthrift describe --idl"
            " tests/gen/Conformance.thrift Conformance lists them)"),
    }
    for args, message in expected.items():
        line = oneLine(txthriftCall(*args))
        assert line.startswith("txthrift: --idl ") or "no method" in line, line
        assert message in line, (args, line)


def test_loadIDLErrors(tmp_path: Path) -> None:
    several = tmp_path / "two.thrift"
    several.write_text("service A { void a() }\nservice B { void b() }\n")
    with pytest.raises(IDLError, match=r"declares 2 services: name one \(A, B\)"):
        loadIDL(several)
    assert loadIDL(several, "B").__name__.endswith(".B")
    keyword = tmp_path / "keyword.thrift"
    keyword.write_text("struct A { 1: i32 x }\n\nservice K { void f(1: i32 lambda) }\n")
    with pytest.raises(IDLError, match="keyword.thrift: .*'lambda' at line 3$"):
        loadIDL(keyword)
    none = tmp_path / "none.thrift"
    none.write_text("struct A { 1: i32 x }\n")
    with pytest.raises(IDLError, match="none.thrift declares no service$"):
        loadIDL(none)


def test_withoutThriftpy2TheExtraIsNamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without thriftpy2 (made unimportable), one line naming the extra.
    """
    code = ("import sys; sys.modules['thriftpy2'] = None\n"
            "from txthrift._cli import main\n"
            f"main(['describe', '--idl', {str(IDL)!r}, 'Conformance'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, env=environment([REPO]), timeout=WAIT, check=False)
    assert oneLine(result).startswith("txthrift: loading a .thrift file needs thriftpy2: pip"
                                      " install 'txthrift[idl]' (")
    monkeypatch.setitem(sys.modules, "thriftpy2.parser", None)
    with pytest.raises(ImportError, match=r"txthrift\[idl\]"):
        loadIDL(IDL)



# What Apache's compiler makes of the same file: values, names, refusals


@pytest.fixture
def apache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """
    A function compiling an IDL with Apache's C{thrift --gen py} and
    importing the package it makes (its C{namespace py}): forgotten after.
    """
    made: list[str] = []

    def generated(idl: Path, package: str) -> Any:
        compilerOrSkip()
        out = tmp_path / "apache"
        out.mkdir(exist_ok=True)
        subprocess.run(["thrift", "--gen", "py", "-out", str(out), str(idl)], check=True,
                       capture_output=True, timeout=WAIT)
        monkeypatch.syspath_prepend(str(out))
        made.append(package)
        return importlib.import_module(package + ".constants")

    yield generated
    for name in [name for name in sys.modules if name.split(".")[0] in made]:
        del sys.modules[name]


def compiles(idl: Path) -> subprocess.CompletedProcess[str]:
    """
    Apache's compiler run on C{idl}, into a folder beside it.
    """
    compilerOrSkip()
    out = idl.parent / (idl.stem + "_apache")
    out.mkdir(exist_ok=True)
    return subprocess.run(["thrift", "--gen", "py", "-out", str(out), str(idl)],
                          capture_output=True, text=True, timeout=WAIT, check=False)


def shape(value: Any) -> Any:
    """
    A value with its types spelt out (bytes or text, double or integer, a
    struct by class name and fields, a map's items in order), to compare
    loaded with generated.
    """
    if hasattr(type(value), "thrift_spec"):
        return (type(value).__name__, tuple(
            (entry[2], shape(getattr(value, entry[2])))
            for entry in type(value).thrift_spec if entry is not None))
    if isinstance(value, dict):
        return ("map", tuple((shape(key), shape(item)) for key, item in value.items()))
    if isinstance(value, (set, frozenset)):
        return ("set", tuple(sorted((shape(item) for item in value), key=repr)))
    if isinstance(value, list):
        return ("list", tuple(shape(item) for item in value))
    return (type(value).__name__, value)


VALUES_IDL = """\
namespace py apache_values
typedef i32 Count
const i32 EIGHT = 8
const i32 _HIDDEN = 11
const i32 ELEVEN = 11
typedef string Text
typedef i32 Later
struct P { 1: i32 x, 2: binary raw = "r" }
typedef list<P> Points
const binary BLOB = "x"
const list<binary> BLOBS = ["a", "b"]
const set<binary> BLOBSET = ["s"]
const map<binary, list<binary>> BLOBMAP = {"k": ["v"], "j": []}
const list<P> POINTS = [{"x": 1}, {"x": 2, "raw": "q"}]
const map<string, P> BYNAME = {"b": {"x": 2}, "a": {"x": 1}}
struct W {
  1: P p,
  2: list<P> ps = [{"x": 9}],
  3: map<i32, P> byId = {2: {"x": 2}, 1: {}},
  4: binary b = "bin",
  5: set<binary> bs = ["z"],
  6: list<list<P>> deep = [[{"x": 1}]],
  7: map<string, i32> m = {"z": 1, "a": 2},
  8: Points more = [{"raw": "m"}],
  9: list<double> ratios = [1, 2.5],
}
const W NESTED = {"p": {"x": 1}, "ps": [{"x": 2}], "byId": {3: {"x": 3}, 1: {"x": 1}}}
const map<i32, string> BYID = {3: "c", -1: "a", 2: "b"}
const map<string, i32> BYTEXT = {"b": 1, "B": 2, "\u00e9": 3, "a": 4}
const map<double, i32> BYDOUBLE = {2.5: 1, -1.0: 2, 1: 3}
const map<bool, i32> BYBOOL = {true: 1, false: 0}
const list<double> RATIOS = [1, 2.5]
const Count TEN = 10
const Points MORE = [{"x": 5}]
const set<Text> WORDS = ["b", "a"]
service S { W get(1: W w) }
"""


def test_valuesAreApaches(tmp_path: Path, apache: Any) -> None:
    """
    Constants and defaults are what Apache's compiler makes of them, by
    their declared types: binary as bytes (in containers too), structs in
    lists and maps as classes, maps ordered by key, every constant by its
    name (one after a typedef, one starting with C{_}); and encode to the
    same bytes in every protocol.
    """
    idl = tmp_path / "values.thrift"
    idl.write_text(VALUES_IDL, encoding="utf-8")
    theirs = apache(idl, "apache_values")
    loaded = loadIDL(idl)
    ours = sys.modules[loaded.__name__.rpartition(".")[0] + ".constants"]

    def constants(module: Any) -> dict[str, Any]:
        return {name: shape(value) for name, value in vars(module).items()
                if not name.startswith("__") and not callable(value)
                and not isinstance(value, ModuleType)}

    assert constants(ours) == constants(theirs)
    assert "_HIDDEN" in constants(ours) and "Text" not in constants(ours)
    generated = importlib.import_module("apache_values.ttypes")
    factories = [TBinaryProtocolFactory(), TCompactProtocolFactory(), TJSONProtocolFactory()]
    for name in ("P", "W"):
        assert shape(getattr(loaded, name)()) == shape(getattr(generated, name)()), name
    for ourValue, theirValue in [(loaded.W(), generated.W()), (ours.NESTED, theirs.NESTED),
                                 (loaded.P(), generated.P())]:
        for factory in factories:
            assert encoded(ourValue, factory) == encoded(theirValue, factory), factory


def encoded(value: Any, factory: Any) -> bytes:
    buffer = TMemoryBuffer()
    value.write(factory.getProtocol(buffer))
    return buffer.getvalue()


def test_namesApacheTakes(tmp_path: Path, apache: Any) -> None:
    """
    Field names other languages reserve, which Apache's compiler takes
    (thriftpy2 alone refuses them), are loaded; Python's keywords and
    C{self} still refused, as Apache's compiler refuses them.
    """
    names = ["next", "end", "args", "float", "default", "begin", "delete", "alias", "BEGIN",
             "END", "match", "type"]
    idl = tmp_path / "names.thrift"
    fields = ", ".join(f"{fid}: i32 {name}" for fid, name in enumerate(names, 1))
    idl.write_text(f"namespace py apache_names\nstruct K {{ {fields} }}\n"
                   "service S { K get(1: K k) }\n")
    loaded = loadIDL(idl)
    assert [entry[2] for entry in loaded.K.thrift_spec[1:]] == names
    apache(idl, "apache_names")
    generated = importlib.import_module("apache_names.ttypes")
    assert shape(loaded.K(next=1, end=2)) == shape(generated.K(next=1, end=2))
    assert encoded(loaded.K(next=1, end=2), TBinaryProtocolFactory()) == encoded(
        generated.K(next=1, end=2), TBinaryProtocolFactory())
    for name in ("lambda", "self", "None", "async"):
        refused = tmp_path / f"refused_{name}.thrift"
        refused.write_text(f"struct K {{ 1: i32 {name} }}\nservice S {{ void f() }}\n")
        with pytest.raises(IDLError, match=f"'{name}' at line 1$"):
            loadIDL(refused)
        # Apache's compiler takes self, into an __init__(self, self=None) that Python refuses.
        assert (compiles(refused).returncode != 0) is (name != "self"), name


def test_throwsOnlyExceptions(tmp_path: Path) -> None:
    """
    A throws clause holding what is not an exception is refused, as Apache's
    compiler refuses it; an exception by a typedef is taken, as there.
    """
    bad = tmp_path / "bad.thrift"
    bad.write_text("service S { void f() throws (1: i32 e) }\n")
    with pytest.raises(IDLError, match=r"bad.thrift: S.f: throws 'e', which is not an"
                                       " exception"):
        loadIDL(bad)
    assert "non-exception" in compiles(bad).stderr
    good = tmp_path / "good.thrift"
    good.write_text("exception E { 1: string why }\ntypedef E Alias\n"
                    "service S { void f() throws (1: Alias e) }\n")
    assert loadIDL(good).f_result.thrift_spec[1][3][0].__name__ == "E"
    assert compiles(good).returncode == 0


def test_includesAreReadAfresh(tmp_path: Path) -> None:
    """
    Two files including a C{common.thrift} of their own folder each get
    theirs (thriftpy2 alone caches the first by its name), and an edited
    include is read again; what thriftpy2 itself cached is kept.
    """
    for folder, declared in [("a", "1: i32 a"), ("b", "1: string b, 2: i64 z")]:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "common.thrift").write_text(f"struct C {{ {declared} }}\n")
        (tmp_path / folder / "top.thrift").write_text(
            "include \"common.thrift\"\nservice S { common.C f() }\n")
    from thriftpy2.parser.parser import _thrift_cache

    _thrift_cache["txthrift-test"] = sentinel = ModuleType("sentinel")
    try:
        first = loadIDL(tmp_path / "a" / "top.thrift")
        second = loadIDL(tmp_path / "b" / "top.thrift")
        assert _thrift_cache["txthrift-test"] is sentinel
    finally:
        del _thrift_cache["txthrift-test"]

    def fields(module: Any) -> list[str]:
        return [entry[2] for entry in module.f_result.thrift_spec[0][3][0].thrift_spec[1:]]

    assert (fields(first), fields(second)) == (["a"], ["b", "z"])
    common = tmp_path / "b" / "common.thrift"
    common.write_text("struct C { 1: string b, 2: i64 z, 3: bool w }\n")
    later = common.stat().st_mtime_ns + 10**9
    os.utime(common, ns=(later, later))
    assert fields(loadIDL(tmp_path / "b" / "top.thrift")) == ["b", "z", "w"]


def test_loadedOnce(tmp_path: Path) -> None:
    """
    A file loaded again, unchanged, gives the same modules (a process
    loading it often does not grow); changed, new ones in their place.
    """
    idl = tmp_path / "again.thrift"
    idl.write_text("struct A { 1: i32 x }\nservice S { A get() }\n")
    first = loadIDL(idl)
    count = len(sys.modules)
    for _ in range(50):
        assert loadIDL(str(idl)) is first
    assert len(sys.modules) == count
    idl.write_text("struct A { 1: i32 x, 2: i32 y }\nservice S { A get() }\n")
    later = idl.stat().st_mtime_ns + 10**9
    os.utime(idl, ns=(later, later))
    changed = loadIDL(idl)
    assert changed is not first and len(changed.A.thrift_spec) == 3
    assert first.__name__ not in sys.modules and sys.modules[changed.__name__] is changed
    assert len(sys.modules) == count


def test_filesApacheCompiles(tmp_path: Path) -> None:
    """
    A byte order mark, and a comment in Latin-1, are taken as Apache's
    compiler takes them; Latin-1 in a string is refused (Apache's would
    write Python that is not valid).
    """
    files = {"bom": b"\xef\xbb\xbfservice S { void f() }\n",
             "latin": b"// caf\xe9\r\nservice S { void f() }\r\n"}
    for name, text in files.items():
        (tmp_path / f"{name}.thrift").write_bytes(text)
        assert loadIDL(tmp_path / f"{name}.thrift").__name__ == f"{name}_idl.S"
        assert compiles(tmp_path / f"{name}.thrift").returncode == 0
    (tmp_path / "string.thrift").write_bytes(b'const string X = "caf\xe9"\nservice S {}\n')
    with pytest.raises(IDLError, match=r"string.thrift: X: 'caf\\udce9' is not UTF-8"):
        loadIDL(tmp_path / "string.thrift")


def test_errorsNameTheirFile(tmp_path: Path) -> None:
    """
    A mistake in an included file names that file; what thriftpy2 fails at
    otherwise is one line too; a negative field id is named as such.
    """
    (tmp_path / "bad.thrift").write_text("struct Z { 1: i32 a }\nstruct Q { 1: Nope n }\n")
    (tmp_path / "worse.thrift").write_text("struct Z { 1: i32 a\n 2 i32 }\n")
    for included, message in [("bad", "No type found: 'Nope', at line 2"),
                              ("worse", "Grammar error 'i32' at line 2")]:
        top = tmp_path / f"top_{included}.thrift"
        top.write_text(f"include \"{included}.thrift\"\nservice S {{ void f() }}\n")
        with pytest.raises(IDLError) as raised:
            loadIDL(top)
        assert str(raised.value).startswith(
            f"{tmp_path / included}.thrift (included by {top}): {message}")
    problems = {
        "recursive": ("struct A { 1: optional A a = {} }", "A"),
        "mutual": ("struct A { 1: optional B b = {} }\nstruct B { 1: optional A a = {} }",
                   "A: its defaults hold a A again, without end"),
        "deep": (f"struct A {{ 1: {'list<' * 2000}i32{'>' * 2000} x }}",
                 "nested too deeply"),
        "negative": ("struct A { -1: i32 x }", "field 'x' has no id, or a negative one"),
    }
    for name, (text, message) in problems.items():
        idl = tmp_path / f"{name}.thrift"
        idl.write_text(text + "\nservice S { void f() }\n")
        with pytest.raises(IDLError) as raised:
            loadIDL(idl)
        assert str(raised.value).startswith(f"{idl}: ") and message in str(raised.value)
        assert "\n" not in str(raised.value)


def test_thriftpy2InternalsAreWhereExpected(tmp_path: Path) -> None:
    """
    What C{_insideThriftpy2} changes in thriftpy2 is where it looks: if a
    thriftpy2 moves it, this fails (and the tests above with it), and a
    load says so.  Everything is put back after.  A default of a struct
    declared after, which thriftpy2 leaves as written, is made.
    """
    later = tmp_path / "later.thrift"
    later.write_text("struct A { 1: B b = {\"x\": 2} }\nstruct B { 1: i32 x, 2: binary r = \"q\" }"
                     "\nservice S { A f() }\n")
    made = loadIDL(later)
    assert made.A() == made.A(b=made.B(x=2, r=b"q"))
    from thriftpy2.parser import lexer, parser

    assert isinstance(parser._thrift_cache, dict)
    assert hasattr(parser._parse_lock, "acquire")
    assert "next" in lexer.thrift_reserved_keywords
    assert lexer.t_IDENTIFIER.__globals__ is vars(lexer)
    assert "open" in parser.parse.__code__.co_names and "open" not in vars(parser)
    assert "parse" in parser.p_include.__code__.co_names
    before = (parser.parse, lexer.thrift_reserved_keywords, dict(parser._thrift_cache))
    with _insideThriftpy2() as (parse, parsing):
        assert parser.parse is not before[0] and "next" not in lexer.thrift_reserved_keywords
        assert vars(parser)["open"] == parsing.open and parser._thrift_cache == {}
        parse(str(IDL))
    assert (parser.parse, lexer.thrift_reserved_keywords, dict(parser._thrift_cache)) == before
    assert "open" not in vars(parser)
