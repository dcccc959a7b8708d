"""
Node.js peers: the npm C{thrift} package's WebSocket client
(C{createWSConnection}) and HTTP client (C{createHttpConnection}) call a
txthrift server, and txthrift's WebSocket client calls its web server
(C{createWebServer}), with the code C{thrift --gen js:node} made of the
test IDL (C{tests/gen/js}).

The package is installed with npm, once, into C{tests/.npm} (ignored by
git); these tests skip, saying why, only where there is no C{node}.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.threads import deferToThread

import txthrift
from tests._conformance import ConformanceHandler
from tests._handlers import EchoBasics
from tests._processes import Process, Processes
from tests.gen.conformance_py.txthrift_conformance import Conformance
from tests.gen.conformance_py.txthrift_conformance import ttypes as conformanceTypes
from tests.gen.py.txthrift_test import Echo
from tests.gen.py.txthrift_test.ttypes import Item, Oops
from txthrift import Client, Limits

REPO = Path(__file__).resolve().parent.parent
#: The generated Node.js code of tests/gen/Test.thrift and Conformance.thrift.
GEN = REPO / "tests" / "gen" / "js"
CONFORMANCE_GEN = REPO / "tests" / "gen" / "conformance_js"
#: Where npm installs the package, one folder per version.
NPM = REPO / "tests" / ".npm"
#: The npm thrift package tested with.
THRIFT_NPM = "0.24.0"
#: Seconds any one wait may take (npm's install has its own, longer).
WAIT = 20.0
INSTALL_TIMEOUT = 600

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None, reason="no `node` on this machine: the Node.js peers need Node.js and npm")

#: What the Node.js clients call, and check; each prints one JSON line of
#: results, and "ok" last.
CALLS = r"""
const thrift = require('thrift');
const Int64 = require('node-int64');
const gen = process.argv[2];
const Echo = require(gen + '/Echo');
const ttypes = require(gen + '/Test_types');

function call(client, method, ...args) {
  return new Promise((resolve, reject) => {
    client[method](...args, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

async function calls(client) {
  const out = {};
  out.ping = await call(client, 'ping', 4);
  const texts = Array.from({length: 20}, (_, i) => 'call ' + i);
  out.many = await Promise.all(texts.map((text) => call(client, 'getData', text)));
  // In JSON, Node's TJSONProtocol writes a negative Int64 with leading
  // zeros (-000000000003), which txthrift reads as Apache's reader does.
  const item = await call(client, 'item', new ttypes.Item({
    id: 1, name: 'n\u00e4me', values: [new Int64(2 ** 40), new Int64(-3)], counts: {a: 1}}));
  out.item = {id: item.id, name: item.name, values: item.values.map((v) => v.toNumber()),
              counts: item.counts};
  try {
    await call(client, 'fail', 'oops');
    out.oops = 'no exception';
  } catch (error) {
    out.oops = (error instanceof ttypes.Oops) ? [error.why, error.code] : String(error);
  }
  try {
    await call(client, 'fail', 'other');
    out.other = 'no exception';
  } catch (error) {
    out.other = (error instanceof thrift.Thrift.TApplicationException) ? 'TApplicationException'
      : String(error);
  }
  return out;
}

function protocolNamed(name) {
  return {binary: thrift.TBinaryProtocol, compact: thrift.TCompactProtocol,
          json: thrift.TJSONProtocol}[name];
}

module.exports = {thrift, Echo, calls, protocolNamed};
"""

WS_CLIENT = r"""
const {thrift, Echo, calls, protocolNamed} = require('./calls.js');
const [, , , port, path, protocol] = process.argv;
const connection = thrift.createWSConnection('127.0.0.1', Number(port), {
  path, transport: thrift.TBufferedTransport, protocol: protocolNamed(protocol)});
connection.on('error', (error) => { console.error('connection error', error); process.exit(2); });
connection.open();
const client = thrift.createWSClient(Echo, connection);
connection.on('open', async () => {
  try {
    console.log(JSON.stringify(await calls(client)));
    console.log('ok');
    connection.close();
  } catch (error) {
    console.error('failed', error);
    process.exit(1);
  }
});
"""

HTTP_CLIENT = r"""
const {thrift, Echo, calls, protocolNamed} = require('./calls.js');
const [, , , port, path, protocol] = process.argv;
const connection = thrift.createHttpConnection('127.0.0.1', Number(port), {
  path, transport: thrift.TBufferedTransport, protocol: protocolNamed(protocol),
  headers: {Connection: 'keep-alive'}});
connection.on('error', (error) => { console.error('connection error', error); process.exit(2); });
const client = thrift.createHttpClient(Echo, connection);
(async () => {
  try {
    console.log(JSON.stringify(await calls(client)));
    console.log('ok');
    process.exit(0);
  } catch (error) {
    console.error('failed', error);
    process.exit(1);
  }
})();
"""

#: The conformance IDL's calls over Node's WebSocket or HTTP client: each
#: value must come back exactly; prints the methods checked, then "ok".
CONFORMANCE = r"""
const assert = require('assert');
const thrift = require('thrift');
const Int64 = require('node-int64');
const gen = process.argv[2];
const Conformance = require(gen + '/Conformance');
const T = require(gen + '/Conformance_types');
const [, , , kind, port, protocolName] = process.argv;
const protocol = {binary: thrift.TBinaryProtocol, compact: thrift.TCompactProtocol,
                  json: thrift.TJSONProtocol}[protocolName];
const options = {path: '/conformance', transport: thrift.TBufferedTransport, protocol};

function call(client, method, ...args) {
  return new Promise((resolve, reject) => {
    client[method](...args, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

async function failure(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('no exception');
}

async function conformance(client) {
  const checked = [];
  const same = async (method, value, got = (v) => v) => {
    assert.deepStrictEqual(got(await call(client, method, value)), got(value), method);
    checked.push(method);
  };
  for (const v of [true, false]) await same('echoBool', v);
  for (const v of [-128, 0, 127]) await same('echoByte', v);
  for (const v of [-32768, 32767]) await same('echoI16', v);
  for (const v of [-2147483648, 2147483647]) await same('echoI32', v);
  // Negative Int64s too: in JSON Node writes them with leading zeros.
  const octets = (v) => (v instanceof Int64 ? v : new Int64(v)).toOctetString();
  for (const v of [new Int64('7fffffffffffffff'), new Int64(1), new Int64(-5),
                   -(2 ** 53 - 1)]) {
    await same('echoI64', v, octets);
  }
  // No -0: Node's own double encoder writes it as 0.
  for (const v of [1.5, 1e308, 5e-324, -2.25]) await same('echoDouble', v);
  await same('echoString', 'n\u00e4me \u2603 [{"\\"}] \u{1F600}');
  await same('echoBinary', Buffer.from(Array.from({length: 256}, (_, i) => i)));
  await same('echoColor', T.Color.NEGATIVE);
  await same('echoDoubles', [0.1, -2.5]);
  assert.strictEqual((await call(client, 'add', 2, 40)).toNumber(), 42);
  assert.strictEqual(typeof await call(client, 'version'), 'string');
  assert.ok((await failure(call(client, 'raises', 1))) instanceof T.NotFound);
  const invalid = await failure(call(client, 'raises', 2));
  assert.ok(invalid instanceof T.Invalid);
  assert.deepStrictEqual(invalid.fields, ['a', '']);
  assert.ok((await failure(call(client, 'raises', 3))) instanceof T.Overloaded);
  const undeclared = await failure(call(client, 'raises', 99));
  assert.ok(undeclared instanceof thrift.Thrift.TApplicationException, String(undeclared));
  if (kind === 'ws') {
    // Oneway, then a call on the same WebSocket: answered in order.
    client.notify('from node', () => {});
    assert.deepStrictEqual(await call(client, 'notified'), ['from node']);
  }
  checked.push('add', 'version', 'raises');
  return checked;
}

const connection = (kind === 'ws') ? thrift.createWSConnection('127.0.0.1', Number(port), options)
  : thrift.createHttpConnection('127.0.0.1', Number(port), options);
connection.on('error', (error) => { console.error('connection error', error); process.exit(2); });
const client = (kind === 'ws') ? thrift.createWSClient(Conformance, connection)
  : thrift.createHttpClient(Conformance, connection);
async function run() {
  try {
    console.log(JSON.stringify(await conformance(client)));
    console.log('ok');
    process.exit(0);
  } catch (error) {
    console.error('failed', error);
    process.exit(1);
  }
}
if (kind === 'ws') {
  connection.open();
  connection.on('open', run);
} else {
  run();
}
"""

WS_SERVER = r"""
const thrift = require('thrift');
const gen = process.argv[2];
const Echo = require(gen + '/Echo');
const protocol = {binary: thrift.TBinaryProtocol, json: thrift.TJSONProtocol}[process.argv[3]];
const handler = {
  ping: (x, result) => result(null, x + 1),
  getData: (input, result) => result(null, input + ' from node'),
};
const server = thrift.createWebServer({services: {'/thrift': {
  transport: thrift.TBufferedTransport, protocol, processor: Echo, handler}}});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
"""


def _install() -> Path:
    """
    The C{node_modules} folder holding the npm thrift package, installed
    now if it is not there yet (into a fresh folder, renamed into place
    once whole, so that a broken install is never taken for one).
    """
    target = NPM / f"thrift-{THRIFT_NPM}"
    modules = target / "node_modules"
    if (modules / "thrift" / "package.json").exists():
        return modules
    npm = shutil.which("npm")
    assert npm is not None, "node is installed but npm is not: install npm"
    NPM.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="installing-", dir=NPM))
    try:
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(staging),
             f"thrift@{THRIFT_NPM}"],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
        assert done.returncode == 0, f"npm install thrift@{THRIFT_NPM} failed:\n{done.stderr}"
        try:
            staging.rename(target)
        except OSError:  # Another run installed it meanwhile.
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    assert (modules / "thrift" / "package.json").exists()
    return modules


@pytest.fixture(scope="session")
def nodeModules() -> Path:
    return _install()


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    """
    A folder holding the Node.js scripts.
    """
    for name, text in (("calls.js", CALLS), ("ws_client.js", WS_CLIENT),
                       ("http_client.js", HTTP_CLIENT), ("ws_server.js", WS_SERVER),
                       ("conformance.js", CONFORMANCE)):
        (tmp_path / name).write_text(text)
    return tmp_path


def node(processes: Processes, nodeModules: Path, scripts: Path, script: str,
         *args: str, gen: Path = GEN) -> Process:
    """
    Start C{script} under node, the generated code's folder its first
    argument, the npm packages on its C{NODE_PATH}.
    """
    assert NODE is not None
    env = dict(os.environ, NODE_PATH=str(nodeModules))
    process = Process([NODE, script, str(gen), *args], cwd=scripts, env=env, mergeStderr=True)
    return processes._track(process)


class Handler(EchoBasics):
    def item(self, it: Item) -> Item:
        return Item(id=it.id + 1, name=it.name, values=list(reversed(it.values or [])),
                    counts=it.counts)

    def fail(self, kind: str) -> str:
        if kind == "oops":
            raise Oops(why="asked to", code=7)
        raise RuntimeError("secret internals")


async def finished(process: Process) -> dict[str, Any]:
    """
    The results a Node.js client printed, once it ended well.
    """
    status, output = await deferToThread(process.finish, WAIT)
    assert status == 0, output
    lines = output.splitlines()
    assert lines[-1] == "ok", output
    results: dict[str, Any] = json.loads(lines[-2])
    return results


def checkResults(results: dict[str, Any]) -> None:
    assert results == {
        "ping": 5,
        "many": [f"call {i} from server 1024" for i in range(20)],
        "item": {"id": 2, "name": "n\u00e4me", "values": [-3, 2**40], "counts": {"a": 1}},
        "oops": ["asked to", 7],
        "other": "TApplicationException",
    }


@pytest_twisted.async_yield_fixture
async def listening() -> AsyncIterator[list[Any]]:
    """
    The ports a test listens on, closed when it ends, with their WebSockets.
    """
    ports: list[Any] = []
    yield ports
    for port in ports:
        factory = getattr(port, "factory", None)
        serverFactory = getattr(factory, "serverFactory", None)
        if serverFactory is not None:
            for connection in list(serverFactory.connections):
                connection.transport.abortConnection()
        await port.stopListening()


@pytest.mark.parametrize("protocol", ["binary", "compact", "json"])
@pytest_twisted.ensureDeferred
async def test_nodeWebSocketClient(processes: Processes, nodeModules: Path, scripts: Path,
                                   listening: list[Any], protocol: str) -> None:
    """
    Node's C{createWSConnection} calls a txthrift WebSocket server, many
    calls in flight on its one WebSocket.
    """
    websocket = pytest.importorskip(
        "txthrift._websocket", reason="autobahn is missing: install txthrift[websocket]")
    factory = websocket.websocketFactory(Handler(), limits=Limits(), clock=reactor)
    port: Any = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
    listening.append(port)
    client = node(processes, nodeModules, scripts, "ws_client.js", str(port.getHost().port),
                  "/thrift", protocol)
    checkResults(await finished(client))


@pytest.mark.parametrize("protocol", ["binary", "json"])
@pytest_twisted.ensureDeferred
async def test_nodeHttpClient(processes: Processes, nodeModules: Path, scripts: Path,
                              listening: list[Any], protocol: str) -> None:
    """
    Node's C{createHttpConnection} calls a txthrift HTTP server.
    """
    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", Handler(),
                                transport="http", path="/thrift")
    listening.append(port)
    client = node(processes, nodeModules, scripts, "http_client.js", str(port.getHost().port),
                  "/thrift", protocol)
    checkResults(await finished(client))


@pytest.mark.parametrize("protocol", ["binary", "json"])
@pytest_twisted.ensureDeferred
async def test_txthriftClientOfNodeWebServer(processes: Processes, nodeModules: Path,
                                            scripts: Path, protocol: str) -> None:
    """
    txthrift's WebSocket client calls Node's C{createWebServer}.
    """
    pytest.importorskip("txthrift._websocket",
                        reason="autobahn is missing: install txthrift[websocket]")
    server = node(processes, nodeModules, scripts, "ws_server.js", protocol)
    found = await deferToThread(server.waitFor, r"listening (\d+)", WAIT)
    url = f"ws://127.0.0.1:{found.group(1)}/thrift"
    client: Any = await txthrift.connect(reactor, url, Echo, protocol=protocol, timeout=WAIT)
    try:
        assert await client.ping(1) == 2
        many: list[Deferred[str]] = [client.getData(f"c{i}") for i in range(10)]
        for i, call in enumerate(many):
            assert await call == f"c{i} from node"
    finally:
        await Client.close(client)


@pytest.mark.parametrize(("kind", "protocol"), [("ws", "binary"), ("ws", "compact"),
                                                ("ws", "json"), ("http", "binary"),
                                                ("http", "json")])
@pytest_twisted.ensureDeferred
async def test_nodeConformance(processes: Processes, nodeModules: Path, scripts: Path,
                               listening: list[Any], kind: str, protocol: str) -> None:
    """
    Node's WebSocket and HTTP clients make the conformance IDL's calls (edge
    values of every base type, binary, enums, declared and undeclared
    exceptions) against a txthrift server; each value comes back exactly.
    """
    if kind == "ws":
        pytest.importorskip("txthrift._websocket",
                            reason="autobahn is missing: install txthrift[websocket]")
    handler = ConformanceHandler(conformanceTypes)
    where: dict[str, Any] = {"path": "/conformance"} if kind == "http" else {}
    port: Any = await txthrift.serve(reactor, "tcp:0:interface=127.0.0.1", handler,
                                     service=Conformance,
                                     transport="websocket" if kind == "ws" else "http", **where)
    listening.append(port)
    client = node(processes, nodeModules, scripts, "conformance.js", kind,
                  str(port.getHost().port), protocol, gen=CONFORMANCE_GEN)
    status, output = await deferToThread(client.finish, WAIT)
    assert status == 0, output
    assert output.splitlines()[-1] == "ok", output
    assert "echoBinary" in json.loads(output.splitlines()[-2])
