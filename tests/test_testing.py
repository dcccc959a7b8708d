"""
Tests for L{txthrift.testing}, the kit for testing a service: the in-memory
pair (L{txthrift.testing.loopback}), the real one on 127.0.0.1
(L{txthrift.testing.serveAndConnect}), the pytest plugin's fixtures and the
trial L{txthrift.testing.TestCase}.

This module mixes pytest-twisted tests (first) and trial test cases (after
them) on purpose: under pytest, the trial cases run with the reactor that
pytest-twisted keeps running, which is the trap the kit's C{TestCase}
avoids.  C{trial tests.test_testing} runs the trial cases alone.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock, deferLater
from twisted.trial import unittest

import txthrift
from tests._handlers import CalcHandler, EchoBasics
from tests.gen.py.txthrift_test import Calc, Echo
from tests.gen.py.txthrift_test.ttypes import Denied, Oops
from txthrift.testing import TestCase, loopback, serveAndConnect

REPO = Path(__file__).resolve().parent.parent


class Handler(EchoBasics):
    """
    C{Echo}, with a declared and an undeclared failure, and a C{slow} that
    answers when the test says (C{answers[tag]}).
    """

    def __init__(self) -> None:
        self.answers: dict[str, Deferred[str]] = {}

    def fail(self, kind: str) -> str:
        if kind == "oops":
            raise Oops(why="asked to fail", code=42)
        if kind == "undeclared":
            raise ValueError("not a Thrift exception")
        raise Denied(who=kind)

    def slow(self, seconds: float, tag: str) -> Deferred[str]:
        answer = self.answers[tag] = Deferred()
        return answer


# --- the in-memory pair ------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["framed", "buffered"])
@pytest.mark.parametrize("protocol", ["binary", "compact", "json"])
def test_loopbackSpeaksTheWireEncoding(protocol: str, transport: str) -> None:
    """
    A call goes over as bytes in the chosen encoding: the server end, which
    detects it as L{txthrift.serve} does, names the same.
    """
    client, pump = loopback(Handler(), protocol=protocol, transport=transport)
    assert pump.resultOf(client.getData("in memory")) == "in memory from server 1024"
    assert pump.resultOf(client.add(40, 2)) == 42
    assert (pump.serverProtocol.transportName, pump.serverProtocol.protocolName) == (
        transport, protocol)


def test_callsFireOnlyOncePumped() -> None:
    client, pump = loopback(Handler())
    answer = client.ping(1)
    assert not answer.called
    assert pump.pending == 1
    pump.flush()
    assert answer.called
    assert pump.pending == 0
    assert pump.resultOf(answer) == 2


def test_aDeclaredExceptionArrivesAsItself() -> None:
    client, pump = loopback(Handler())
    with pytest.raises(Oops) as oops:
        pump.resultOf(client.fail("oops"))
    assert (oops.value.why, oops.value.code) == ("asked to fail", 42)
    with pytest.raises(Denied):
        pump.resultOf(client.fail("mallory"))
    assert pump.resultOf(client.ping(7)) == 8


def test_anUndeclaredExceptionArrivesAsTApplicationException() -> None:
    client, pump = loopback(Handler())
    with pytest.raises(TApplicationException) as error:
        pump.resultOf(client.fail("undeclared"))
    assert error.value.type == TApplicationException.INTERNAL_ERROR
    assert "not a Thrift exception" not in str(error.value.message)
    assert pump.resultOf(client.ping(1)) == 2  # The connection carries on.


def test_aClientTimeoutFiresWhenTheClockIsAdvanced() -> None:
    handler = Handler()
    clock = Clock()
    client, pump = loopback(handler, clock=clock, timeout=5)
    assert pump.clock is clock
    answer = client.slow(1.0, "late")
    pump.advance(4.9)
    assert not answer.called
    pump.advance(0.2)
    with pytest.raises(txthrift.CallTimeout):
        pump.resultOf(answer)
    assert pump.pending == 0
    # The late reply is dropped; the connection carries on.
    handler.answers["late"].callback("too late")
    assert pump.resultOf(client.ping(1)) == 2


def test_anIdleServerConnectionClosesOnTheClock() -> None:
    client, pump = loopback(Handler(), idle_timeout=30)
    assert pump.resultOf(client.ping(1)) == 2
    pump.advance(29)
    assert pump.connected
    pump.advance(1)
    assert not pump.connected
    with pytest.raises(TTransportException) as error:
        pump.resultOf(client.ping(2))
    assert error.value.type == TTransportException.NOT_OPEN


def test_resultOfSaysWhenACallWaitsForTime() -> None:
    client, pump = loopback(Handler())
    with pytest.raises(AssertionError, match=r"advance"):
        pump.resultOf(client.slow(1.0, "never"))


def test_closeFailsPendingCalls() -> None:
    handler = Handler()
    client, pump = loopback(handler)
    answer = client.slow(1.0, "pending")
    pump.flush()
    assert pump.pending == 1
    closed = pump.close()
    assert closed.called and not pump.connected and pump.pending == 0
    with pytest.raises(TTransportException):
        pump.resultOf(answer)
    # The server's end went too: the handler's work was cancelled.
    assert pump.serverFactory.connections == set()
    assert handler.answers["pending"].called


def test_disconnectDropsBothEnds() -> None:
    client, pump = loopback(Handler())
    answer = client.ping(1)
    pump.disconnect()
    assert not pump.connected and pump.serverFactory.connections == set()
    with pytest.raises(TTransportException, match="dropped"):
        pump.resultOf(answer)


def test_backpressureHoldsRequestsUntilThereIsRoom() -> None:
    handler = Handler()
    client, pump = loopback(handler, max_pending=1)
    first, second = client.slow(1.0, "a"), client.slow(1.0, "b")
    pump.flush()
    assert list(handler.answers) == ["a"]
    handler.answers["a"].callback("A")
    pump.flush()
    handler.answers["b"].callback("B")
    assert (pump.resultOf(first), pump.resultOf(second)) == ("A", "B")


def test_aMultiplexedServiceIsCalledByName() -> None:
    client, pump = loopback({"Echo": Handler(), "Calc": CalcHandler()}, service_name="Calc")
    assert pump.resultOf(client.multiply(6, 7)) == 42
    with pytest.raises(TypeError, match="service_name"):
        loopback({"Echo": Handler(), "Calc": CalcHandler()})


def test_aProcessorIsServedToItsServicesClient() -> None:
    client, pump = loopback(Calc.Processor(CalcHandler()))
    assert pump.resultOf(client.multiply(3, 5)) == 15


def test_thriftLoopbackFixture(thriftLoopback: Any) -> None:
    client, pump = thriftLoopback(Handler(), protocol="compact")
    assert pump.resultOf(client.add(1, 2)) == 3


# --- over 127.0.0.1, under pytest-twisted ----------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_thriftServeAndConnectFixture(thriftServeAndConnect: Any) -> None:
    client = await thriftServeAndConnect(Handler(), transport="buffered", protocol="compact")
    assert client.protocol.transport.getPeer().host == "127.0.0.1"
    assert await client.add(40, 2) == 42
    with pytest.raises(Oops):
        await client.fail("oops")


# --- the plugin and the trap, in pytest runs of their own ------------------------------------

def runPytest(tmp_path: Path, source: str, *options: str) -> str:
    """
    Run pytest on C{source} as a test file of a new project; its report.
    """
    (tmp_path / "test_it.py").write_text(textwrap.dedent(source))
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    environment.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *options,
         str(tmp_path)], cwd=tmp_path, env=environment, capture_output=True, text=True,
        timeout=120, check=False)
    return done.stdout + done.stderr


MIXED = """
    from twisted.internet import reactor
    from twisted.internet.task import deferLater
    from twisted.trial.unittest import TestCase as TrialTestCase
    import pytest_twisted

    from tests._handlers import EchoBasics
    from txthrift.testing import TestCase, serveAndConnect

    @pytest_twisted.ensureDeferred
    async def test_first():
        await deferLater(reactor, 0.01, lambda: None)

    class Kit(TestCase):
        async def test_kit(self):
            await deferLater(reactor, 0.01, lambda: None)
            client = await serveAndConnect(self, EchoBasics())
            assert await client.ping(1) == 2

    class Plain(TrialTestCase):
        def test_plain(self):
            return deferLater(reactor, 0.01, lambda: None)
"""


def test_theKitsTestCaseRunsAfterPytestTwistedTests(tmp_path: Path) -> None:
    """
    After a pytest-twisted test, a plain trial test case fails with
    C{DirtyReactorAggregateError} (the trap; should pytest-twisted stop
    having it, the kit's C{_wait} may go) and the kit's passes.
    """
    report = runPytest(tmp_path, MIXED, "-p", "twisted")
    assert "PASSED test_it.py::test_first" in report, report
    assert "PASSED test_it.py::Kit::test_kit" in report, report
    assert "FAILED test_it.py::Plain::test_plain" in report, report
    assert "DirtyReactorAggregateError" in report, report


def test_thePluginWorksWithoutPytestTwisted(tmp_path: Path) -> None:
    """
    With pytest-twisted off, the in-memory fixture works, and the one that
    needs it fails saying so, with no traceback.
    """
    report = runPytest(tmp_path, """
        from tests._handlers import EchoBasics

        def test_inMemory(thriftLoopback):
            client, pump = thriftLoopback(EchoBasics())
            assert pump.resultOf(client.ping(1)) == 2

        def test_overTCP(thriftServeAndConnect):
            pass
    """, "-p", "no:twisted")
    assert "PASSED test_it.py::test_inMemory" in report, report
    assert "ERROR test_it.py::test_overTCP" in report, report
    assert "the thriftServeAndConnect fixture needs the pytest-twisted plugin" in report, report
    assert "Traceback" not in report, report


def test_loadingThePluginInstallsNoReactor() -> None:
    """
    pytest loads the plugin before pytest-twisted installs the reactor its
    C{--reactor} option names: the plugin must not install one first.
    """
    loaded = subprocess.run(
        [sys.executable, "-c", ("import sys, txthrift.testing.pytest_plugin;"
                                " print('twisted.internet.reactor' in sys.modules)")],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=60, check=True)
    assert loaded.stdout.strip() == "False"


def test_thePluginCanBeTurnedOff(tmp_path: Path) -> None:
    report = runPytest(tmp_path, """
        def test_inMemory(thriftLoopback):
            pass
    """, "-p", "no:txthrift")
    assert "fixture 'thriftLoopback' not found" in report, report


def readmeBlocks(heading: str, language: str) -> list[str]:
    """
    The C{language} code blocks of the README's section under C{heading}.
    """
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"^```{language}\n(.*?)^```", section, re.MULTILINE | re.DOTALL)


@pytest.mark.skipif(shutil.which("thrift") is None,
                    reason="needs Apache's compiler, thrift, to generate the README's service")
def test_theReadmesExamplesPass(tmp_path: Path) -> None:
    """
    The README's three forms, as written, test the handler of its "Serve your
    own service" walkthrough: under pytest in one run (pytest-twisted tests
    first, then the trial test case: the trap's order), and under trial.
    """
    (tmp_path / "calculator.thrift").write_text(
        readmeBlocks("### Serve your own service", "thrift")[0])
    (tmp_path / "gen").mkdir()
    subprocess.run(["thrift", "--gen", "py", "-out", "gen", "calculator.thrift"],
                   cwd=tmp_path, check=True, timeout=60)
    (tmp_path / "calc_handler.py").write_text(
        readmeBlocks("### Serve your own service", "python")[0])
    inMemory, trial, withPytest, workaround = readmeBlocks("## Testing your service", "python")
    (tmp_path / "test_in_memory.py").write_text(inMemory)
    (tmp_path / "test_trial.py").write_text(trial)
    (tmp_path / "test_pytest_twisted.py").write_text(withPytest)
    (tmp_path / "my_testcase.py").write_text(workaround)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), str(tmp_path / "gen"), str(REPO)])}
    environment.pop("PYTEST_ADDOPTS", None)
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
         "test_pytest_twisted.py", "test_in_memory.py", "test_trial.py"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0 and "4 passed" in ran.stdout, ran.stdout + ran.stderr
    trialRun = subprocess.run(
        [sys.executable, "-m", "twisted.trial", "test_trial"], cwd=tmp_path,
        env=environment, capture_output=True, text=True, timeout=120, check=False)
    assert trialRun.returncode == 0 and "PASSED (successes=1)" in trialRun.stdout, (
        trialRun.stdout + trialRun.stderr)
    imported = subprocess.run([sys.executable, "-c", "import my_testcase"], cwd=tmp_path,
                              env=environment, capture_output=True, text=True, timeout=60,
                              check=False)
    assert imported.returncode == 0, imported.stderr


def test_theTestingKitFollowsTheLayerRules() -> None:
    """
    What tests/test_layers.py asks of the modules in C{txthrift/}, asked of
    the kit's subpackage: a docstring saying what it holds, no function
    longer than a screen, and imports only of modules of the layer table.
    """
    readme = (REPO / "README.md").read_text()
    for path in sorted((REPO / "txthrift" / "testing").glob("*.py")):
        tree = ast.parse(path.read_text())
        docstring = ast.get_docstring(tree)
        assert docstring and len(docstring.split()) >= 8, path.name
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                assert node.end_lineno - node.lineno < 60, f"{path.name}: {node.name}"
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                assert f"| `{node.module}.py` |" in readme, f"{path.name}: {node.module}"


# --- trial test cases, after the pytest-twisted tests above ----------------------------------

class ServeAndConnectTests(TestCase):
    """
    L{serveAndConnect} in a trial test case: a real server on 127.0.0.1
    and a connected client, cleaned up when the test ends.
    """

    timeout = 30

    async def test_callsOverTCP(self) -> None:
        client = await serveAndConnect(self, Handler())
        self.assertEqual(client.protocol.transport.getPeer().host, "127.0.0.1")
        self.assertEqual(await client.getData("tcp"), "tcp from server 1024")
        oops = await self.assertFailure(client.fail("oops"), Oops)
        self.assertEqual(oops.code, 42)
        await self.assertFailure(client.fail("undeclared"), TApplicationException)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)  # The server logs it.

    async def test_multiplexed(self) -> None:
        client = await serveAndConnect(self, {"Calc": CalcHandler(), "Echo": Handler()},
                                       service_name="Echo", protocol="compact")
        self.assertEqual(await client.ping(41), 42)

    async def test_cleanupsCloseEverything(self) -> None:
        """
        The cleanups close the client, wait until the server's end has gone
        and close the port.
        """
        cleanups = unittest.SynchronousTestCase()
        client = await serveAndConnect(cleanups, Handler(), Echo)
        port = client.protocol.transport.getPeer().port
        self.assertEqual(await client.ping(1), 2)
        cleanups.doCleanups()
        # doCleanups does not wait for Deferreds: wait until the port is closed.
        for _ in range(200):
            try:
                await txthrift.connect(reactor, f"tcp:host=127.0.0.1:port={port}", Echo)
            except ConnectionRefusedError:
                break
            await deferLater(reactor, 0.01, lambda: None)
        else:
            self.fail("the port is still open")
        await self.assertFailure(client.ping(2), TTransportException)


class LoopbackTrialTests(TestCase):
    """
    The in-memory pair in a trial test case: nothing runs the reactor.
    """

    def test_successResultOf(self) -> None:
        client, pump = loopback(Handler())
        answer = client.add(2, 3)
        pump.flush()
        self.assertEqual(self.successResultOf(answer), 5)
        failed = client.fail("oops")
        self.assertNoResult(failed)
        pump.flush()
        self.failureResultOf(failed, Oops)


class WaitTests(TestCase):
    """
    The kit's C{TestCase} waits through trial's C{_wait}: should trial stop
    calling it, the pytest-twisted trap would be back.
    """

    waited = False

    def _wait(self, d: Deferred[Any], running: Any = None) -> None:
        self.waited = True
        super()._wait(d)

    def test_aDeferredTestIsWaitedForThroughWait(self) -> Deferred[None]:
        return ensureDeferred(self._later())

    async def _later(self) -> None:
        await deferLater(reactor, 0.01, lambda: None)
        self.assertTrue(self.waited)
