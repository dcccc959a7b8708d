"""
Tests for the C{txthrift} command line (C{txthrift/_cli.py}): C{txthrift
call} and C{txthrift describe}, run as the installed console script and as
C{python -m txthrift}, in subprocesses (each bounded by L{WAIT}), against
a txthrift server in this process and Apache's threaded server in a thread.

Every conformance value goes out as JSON on the command line (or standard
input, for the 1 MiB ones), crosses the wire both ways, and comes back as
JSON, read back into Thrift values and compared exactly.
"""

from __future__ import annotations

import enum
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from thrift.protocol.TBinaryProtocol import TBinaryProtocolFactory
from thrift.Thrift import TType
from thrift.transport.TTransport import TFramedTransportFactory
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

import txthrift
from tests._apache import ApacheServer
from tests._certs import Certificates, makeCertificates
from tests._conformance import (
    ALL_BYTES,
    I64,
    NON_ASCII,
    UNKNOWN_COLOR,
    ConformanceHandler,
    SecondHandler,
    cases,
    mismatch,
    raised,
)
from tests._conformance_peers import apacheProcessor
from tests._handlers import WhoIsCalling
from tests._processes import REPO, WAIT, environment
from tests.gen.conformance_py.txthrift_conformance import Base, Conformance
from tests.gen.conformance_py.txthrift_conformance import ttypes as T
from txthrift._cli import endpointOf, fromJSON, toJSON

SCRIPT = Path(sys.executable).parent / "txthrift"
SERVICE = "tests.gen.conformance_py.txthrift_conformance.Conformance"
SECOND = "tests.gen.conformance_py.txthrift_conformance.Second"
ECHO = "tests.gen.py.txthrift_test.Echo"
LOCAL = "tcp:0:interface=127.0.0.1"
#: Arguments longer than this go through standard input: one argument of a
#: command line may not be much longer (Linux: 128 KiB).
LONGEST_ARGUMENT = 64 * 1024


def txthriftCall(*args: str, stdin: str | None = None,
                 module: bool = False) -> subprocess.CompletedProcess[str]:
    """
    Run the console script (or C{python -m txthrift}) from the repository
    to its end, within L{WAIT}.
    """
    command = [sys.executable, "-m", "txthrift"] if module else [str(SCRIPT)]
    return subprocess.run([*command, *args], check=False, input=stdin, capture_output=True, text=True,
                          encoding="utf-8", cwd=REPO, env=environment([REPO]), timeout=WAIT)


def oneLine(result: subprocess.CompletedProcess[str], status: int = 2) -> str:
    """
    The one line a failed run wrote, checking it is all it wrote.
    """
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def specOf(method: str, part: str = "args") -> dict[str, Any]:
    cls = getattr(Conformance, f"{method}_{part}", None) or getattr(Base, f"{method}_{part}")
    return {entry[2]: entry for entry in cls.thrift_spec if entry is not None}


def roundTrip(endpoint: str, case: Any, *extra: str, service: str = SERVICE) -> str | None:
    """
    Make one conformance call through the command line (C{extra} options
    before the endpoint; C{service} as the command line names it); what is
    wrong with its answer, or C{None}.
    """
    args = specOf(case.method)
    names = list(args) if len(case.args) == len(args) else []
    given = {name: toJSON(value, args[name][1], args[name][3])
             for name, value in zip(names, case.args)}
    text = json.dumps(given, allow_nan=False)
    stdin = text if len(text) > LONGEST_ARGUMENT else None
    result = txthriftCall("call", *extra, endpoint, service, case.method,
                          "-" if stdin else text, stdin=stdin)
    if result.returncode != 0 or result.stderr:
        return f"{case.name}: exit {result.returncode}: {result.stderr[:300]}"
    entry = specOf(case.method, "result").get("success")
    got = None if entry is None else fromJSON(json.loads(result.stdout), entry[1], entry[3])
    problem = mismatch(case.expect, got)
    return None if problem is None else f"{case.name}: {problem}"


def echoCases() -> list[Any]:
    """
    The conformance calls that answer with a value, on the main service.
    """
    return [case for case in cases(T) if case.service == "main" and case.raises is None
            and case.check is None and case.method != "notify"]


def roundTripAll(endpoint: str, *extra: str, service: str = SERVICE) -> list[str]:
    with ThreadPoolExecutor(3) as pool:
        found = pool.map(lambda case: roundTrip(endpoint, case, *extra, service=service),
                         echoCases())
        return [problem for problem in found if problem is not None]


@pytest.fixture
def apacheServer() -> Iterator[ApacheServer]:
    """
    Apache's threaded server of both conformance services, multiplexed
    (the main one also under plain names), framed binary.
    """
    server = ApacheServer("threaded", apacheProcessor(ConformanceHandler(T), SecondHandler()),
                          TFramedTransportFactory(), TBinaryProtocolFactory())
    try:
        yield server
    finally:
        server.stop()


async def serving(handler: object, endpoint: str = LOCAL, **options: Any) -> Any:
    port = await txthrift.serve(reactor, endpoint, handler, **options)
    return port


# Every type of the conformance IDL, both servers


def test_everyTypeRoundTripsThroughApachesServer(apacheServer: ApacheServer) -> None:
    """
    Each conformance value (every type, edge values, 1 MiB string and
    binary) goes out as JSON and comes back exactly, from Apache's server.
    """
    assert len(echoCases()) > 60
    assert roundTripAll(f"127.0.0.1:{apacheServer.port}") == []


@pytest_twisted.ensureDeferred
async def test_everyTypeRoundTripsThroughTxthrift() -> None:
    """
    The same, from a txthrift server, over compact this time.
    """
    port = await serving(ConformanceHandler(T), service=Conformance)
    try:
        problems = await deferToThread(
            roundTripAll, f"tcp:host=127.0.0.1:port={port.getHost().port}",
            "--protocol", "compact")
    finally:
        await port.stopListening()
    assert problems == []


# What the JSON looks like


def test_jsonShapes(apacheServer: ApacheServer) -> None:
    """
    Binary is base64, sets are sorted lists, maps with other than string
    keys are [key, value] pairs (an object with keys written as JSON is
    taken too), non-finite doubles are strings, i64 exact, enums by name or
    number in, numbers out, structs by field name with unset fields left out.
    """
    endpoint = f"127.0.0.1:{apacheServer.port}"
    given = {"v": {"i64s": [I64[1]], "binaries": [""], "stringSet": ["b", "a"],
                   "i32Map": {"-1": I64[0]}, "doubles": ["NaN", "-Infinity", 1],
                   "colors": ["BLUE", "Color.RED", UNKNOWN_COLOR],
                   "colorMap": [[1, 4]], "binaryMap": [["AP8=", True]],
                   "stringMap": {"k": "AAE="}}}
    result = txthriftCall("call", endpoint, SERVICE, "echoContainers", json.dumps(given))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "i64s": [I64[1]], "binaries": [""], "stringSet": ["a", "b"],
        "i32Map": [[-1, I64[0]]], "doubles": ["NaN", "-Infinity", 1.0],
        "colors": [4, 1, UNKNOWN_COLOR], "colorMap": [[1, 4]], "binaryMap": [["AP8=", True]],
        "stringMap": {"k": "AAE="}}
    assert str(I64[1]) in result.stdout
    binary = txthriftCall("call", endpoint, SERVICE, "echoBinary",
                          json.dumps({"v": toJSON(ALL_BYTES, TType.STRING, "BINARY")}),
                          module=True)
    assert json.loads(binary.stdout) == toJSON(ALL_BYTES, TType.STRING, "BINARY")
    void = txthriftCall("call", endpoint, SERVICE, "nothing")
    assert (void.returncode, void.stdout, void.stderr) == (0, "null\n", "")
    oneway = txthriftCall("call", endpoint, SERVICE, "notify", '{"tag": "cli"}')
    assert (oneway.returncode, oneway.stdout, oneway.stderr) == (0, "null\n", "")
    notified = txthriftCall("call", endpoint, SERVICE, "notified")
    assert json.loads(notified.stdout) == ["cli"]


def test_declaredExceptionIsJSONOnStandardError(apacheServer: ApacheServer) -> None:
    """
    A declared exception: its type name and fields as JSON on standard
    error, nothing on standard output, exit status 1.
    """
    endpoint = f"127.0.0.1:{apacheServer.port}"
    for which, name in ((1, "NotFound"), (3, "Overloaded")):
        result = txthriftCall("call", endpoint, SERVICE, "raises", json.dumps({"which": which}))
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        shown = json.loads(result.stderr)
        assert shown["exception"] == name
        expected = raised(T, which)
        got = fromJSON(shown["fields"], TType.STRUCT, [type(expected), None])
        assert mismatch(expected, got) is None
    assert json.loads(txthriftCall("call", endpoint, SERVICE, "raises", '{"which": 1}'
                                   ).stderr)["fields"] == {"key": NON_ASCII}


def test_multiplexedAtApachesServer(apacheServer: ApacheServer) -> None:
    """
    C{--service-name} calls a service of a multiplexed server.
    """
    result = txthriftCall("call", "--service-name", "Second", f"127.0.0.1:{apacheServer.port}",
                          SECOND, "multiply", json.dumps({"a": 2**31, "b": -3}))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{-3 * 2**31}\n", "")


# Failures: exit 2, one line


def test_badInputIsOneLine(apacheServer: ApacheServer) -> None:
    """
    Each mistake a user can make ends with one line naming it, exit 2.
    """
    endpoint = f"127.0.0.1:{apacheServer.port}"
    expected = {
        ("echoI32", '{"v": '): "the arguments are not JSON",
        ("echoI32", "[1]"): 'a JSON object by argument name, such as {"v": "..."}',
        ("echoI32", "{}"): "missing argument 'v' of echoI32",
        ("echoI32", '{"w": 1}'): "echoI32 has no argument 'w' (its arguments: v)",
        ("echoI32", '{"v": "x"}'): "v: expected an integer or an enum value's name, not 'x'",
        ("echoI32", '{"v": 2147483648}'): "v: 2147483648 is out of range for an i32",
        ("echoDouble", '{"v": 9007199254740993}'): "v: 9007199254740993 has no exact double",
        ("echoBinary", '{"v": "not base64!"}'): "v: binary is written in base64",
        ("echoPrimitives", '{"v": {"nope": 1}}'): "v: Primitives has no field 'nope'",
        ("echoNames", '{"v": [1]}'): "v[0]: expected a string, not 1",
        ("noSuchMethod", "{}"): f"{SERVICE} has no method 'noSuchMethod'",
    }
    for (method, arguments), message in expected.items():
        line = oneLine(txthriftCall("call", endpoint, SERVICE, method, arguments))
        assert line.startswith("txthrift: ") and message in line, (method, arguments, line)
    line = oneLine(txthriftCall("call", endpoint, "no_such_module.Service", "m"))
    assert "no module named 'no_such_module'" in line, line
    line = oneLine(txthriftCall("call", "--timeout", "soon", endpoint, SERVICE, "version"))
    assert line == "txthrift call: --timeout: expected seconds above 0, not 'soon'", line
    for late, option in ((["version", "{}", "--timeout", "1"], "--timeout"),
                         (["--timeout", "5"], "--timeout"), (["version", "-h"], "-h")):
        line = oneLine(txthriftCall("call", endpoint, SERVICE, *late))
        assert f"options go before ENDPOINT: {option} came after it" in line, line
    line = oneLine(txthriftCall("describe", SERVICE, "--json"))
    assert "options go before MODULE.Service: --json" in line, line
    assert oneLine(txthriftCall()) == "txthrift: name a command: call or describe (txthrift --help)"


def test_setsOfStructsCannotBeMadeSaysSo() -> None:
    """
    Apache's generated structs cannot be hashed: a set of them, or a map
    keyed by them, is refused with one line saying why.
    """
    from thrift.Thrift import TType

    from tests.gen.conformance_py.txthrift_conformance.ttypes import Primitives
    from txthrift._cli import BadInput, fromJSON

    struct = (TType.STRUCT, [Primitives, None], False)
    with pytest.raises(BadInput, match="v: a set of, or map keyed by, structs or containers"):
        fromJSON([{"anI32": 1}], TType.SET, struct, "v", {})
    with pytest.raises(BadInput, match="cannot hash them"):
        fromJSON([[{"anI32": 1}, 1]], TType.MAP, (TType.STRUCT, [Primitives, None],
                                                     TType.I32, None, False), "v", {})


def test_versionIsTxthriftsEverywhere() -> None:
    for args in (["--version"], ["call", "--version"], ["describe", "--version"]):
        done = txthriftCall(*args)
        assert (done.returncode, done.stdout.strip()) == (0, f"txthrift {txthrift.__version__}")


def test_undeclaredExceptionIsOneLine(apacheServer: ApacheServer) -> None:
    """
    A C{TApplicationException} (here, an undeclared handler exception) is a
    failure of the call: one line, exit 2.
    """
    line = oneLine(txthriftCall("call", f"127.0.0.1:{apacheServer.port}", SERVICE, "raises",
                                '{"which": 4}'))
    assert line.startswith("txthrift: TApplicationException"), line


def test_connectionRefusedIsOneLine() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    line = oneLine(txthriftCall("call", f"127.0.0.1:{port}", SERVICE, "version"))
    assert line.startswith(f"txthrift: cannot connect to 127.0.0.1:{port}: "), line
    assert "refused" in line, line


def test_timeoutIsOneLine() -> None:
    """
    A server that takes the connection and never answers: C{--timeout}
    bounds the wait, one line, exit 2.
    """
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        result = txthriftCall("call", "--timeout", "0.5",
                              f"127.0.0.1:{silent.getsockname()[1]}", SERVICE, "version")
    line = oneLine(result)
    assert line.startswith("txthrift: CallTimeout") and "0.5" in line, line
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    line = oneLine(txthriftCall("call", "--timeout", "1e-9", f"127.0.0.1:{port}", SERVICE,
                                "version"))
    assert line == f"txthrift: cannot connect to 127.0.0.1:{port}: no connection within 1e-09 s"


# Headers, HTTP, describe


@pytest_twisted.ensureDeferred
async def test_theaderHeadersReachTheHandler() -> None:
    """
    C{--transport header --header k=v}: the handler sees the header in
    C{currentCall().headers}; without THeader, C{--header} is refused.
    """
    port = await serving(WhoIsCalling())
    endpoint = f"127.0.0.1:{port.getHost().port}"
    try:
        result = await deferToThread(
            txthriftCall, "call", "--transport", "header", "--header", "x-tenant=acme",
            "--header", "x-request-id=42", endpoint, ECHO, "getData", '{"input": "x"}')
        refused = await deferToThread(txthriftCall, "call", "--header", "x-tenant=acme",
                                      endpoint, ECHO, "getData", '{"input": "x"}')
    finally:
        await port.stopListening()
    assert result.returncode == 0, result.stderr
    seen = json.loads(json.loads(result.stdout))
    assert seen["headers"] == {"x-tenant": "acme", "x-request-id": "42"}
    assert seen["method"] == "getData"
    assert oneLine(refused) == ("txthrift: --header needs --transport header, or an http(s)://"
                                " or ws(s):// URL")


@pytest_twisted.ensureDeferred
async def test_httpURL() -> None:
    """
    An http:// URL calls over HTTP, C{--header}s going as HTTP headers.
    """
    port = await serving(WhoIsCalling(), transport="http", path="/thrift")
    try:
        result = await deferToThread(
            txthriftCall, "call", "--header", "X-Tenant=acme",
            f"http://127.0.0.1:{port.getHost().port}/thrift", ECHO, "getData", '{"input": "x"}',
            module=True)
    finally:
        await port.stopListening()
    assert result.returncode == 0, result.stderr
    assert json.loads(json.loads(result.stdout))["headers"]["x-tenant"] == "acme"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return makeCertificates(tmp_path_factory.mktemp("certificates"))


@pytest_twisted.ensureDeferred
async def test_tls(certificates: Certificates) -> None:
    """
    TLS: a C{tls:} endpoint string carries the trust roots and the client's
    certificate (the handler sees who called); C{--ca} is an https:// URL's
    trust root, without which the server is not trusted.
    """
    cert, key = certificates.server
    tcp = await serving(WhoIsCalling(), tls_client_ca=str(certificates.ca), endpoint=(
        f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"))
    https = await serving(WhoIsCalling(), transport="http", endpoint=(
        f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"))
    alice = ":".join(f"{name}={path}" for name, path in zip(
        ("certificate", "privateKey"), certificates.alice))
    url = f"https://127.0.0.1:{https.getHost().port}/"
    try:
        mutual = await deferToThread(
            txthriftCall, "call", f"tls:127.0.0.1:{tcp.getHost().port}:trustRoots="
            f"{certificates.trust}:{alice}", ECHO, "getData", '{"input": "x"}')
        trusted = await deferToThread(txthriftCall, "call", "--ca", str(certificates.ca), url,
                                      ECHO, "getData", '{"input": "x"}')
        untrusted = await deferToThread(txthriftCall, "call", url, ECHO, "getData",
                                        '{"input": "x"}')
        misplaced = await deferToThread(txthriftCall, "call", "--ca", str(certificates.ca),
                                        f"127.0.0.1:{tcp.getHost().port}", ECHO, "getData",
                                        '{"input": "x"}')
    finally:
        await tcp.stopListening()
        await https.stopListening()
    assert mutual.returncode == 0, mutual.stderr
    assert json.loads(json.loads(mutual.stdout))["identity"] == "alice"
    assert trusted.returncode == 0, trusted.stderr
    assert "txthrift: " in oneLine(untrusted)
    assert "--ca is for https:// and wss:// URLs" in oneLine(misplaced)


def test_describe() -> None:
    """
    C{describe} lists every method (inherited ones too) with its types;
    C{--json} says the same for a program.
    """
    result = txthriftCall("describe", SERVICE)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("service Conformance (") and "30 methods" in lines[0]
    for line in (("  i32 raises(i32 which) throws (NotFound notFound, Invalid invalid,"
                  " Overloaded overloaded)"),
                 "  map<string, list<set<i32>>> echoIndex(map<string, list<set<i32>>> v)",
                 "  oneway void notify(string tag)", "  i64 add(i64 a, i64 b)"):
        assert line in lines, result.stdout
    described = json.loads(txthriftCall("describe", "--json", SERVICE, module=True).stdout)
    byName = {method["name"]: method for method in described["methods"]}
    assert byName["manyArgs"]["arguments"][12] == {"name": "m", "type": "Primitives"}
    assert byName["raisesVoid"]["throws"][1] == {"name": "invalid", "type": "Invalid"}
    assert oneLine(txthriftCall("describe", "json")).startswith("txthrift: ")


def test_pythonEnumsPrintByName() -> None:
    """
    A value that is a Python enum (not what plain C{--gen py} code decodes
    to, which holds enums as ints) prints as its name.
    """
    Color = enum.IntEnum("Color", {"RED": 1, "BLUE": 4})
    assert toJSON([Color.BLUE, 1], TType.LIST, (TType.I32, None, False)) == ["BLUE", 1]


def test_endpoints() -> None:
    """
    C{host:port} is TCP; endpoint strings and URLs are taken as they are.
    """
    assert endpointOf("example.com:9090") == "tcp:host=example.com:port=9090"
    assert endpointOf("[::1]:9090") == r"tcp:host=\:\:1:port=9090"
    for text in ("tcp:host=h:port=1", "unix:/run/x.sock", "tls:h:9443", "unix:9090",
                 "http://h:1/x", "tcp:9090"):
        assert endpointOf(text) == text
