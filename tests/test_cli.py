"""
Tests for what a user of C{twistd thrift} meets in a project of their own:
C{--handler-option}, every limit as an option, C{--listen}, C{--version},
errors that say what failed and where, the daemon's short failure message,
peers and workers as the log names them, and a quiet test run.

The handlers live in a temporary folder, as a user's would, and are served
by real C{twistd} processes on 127.0.0.1 (port 0, the bound port read from
the startup line), killed when each test ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from thrift.Thrift import TException
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent
from twisted.python import usage

import txthrift
from tests._handlers import HANDLERS, EchoHandler
from tests._processes import HELLO, REPO, WAIT, Twistd, run, tcpPortOf
from tests.gen.py.txthrift_test import Echo
from tests.test_tap import apacheClient
from txthrift._client import ClientProtocol
from txthrift._framing import ThriftMessageProtocol, peerText
from txthrift._server import ServerProtocol
from txthrift._tap import Options, _workersService, makeService, versions
from txthrift._version import __version__

LOCAL = "tcp:0:interface=127.0.0.1"

GREETER = '''\
"""A handler configured from the command line."""
import os

from tests.gen.py.txthrift_test import Echo


class Greeter(Echo.Iface):
    def __init__(self, greeting="hello", times="1"):
        self.greeting = greeting
        self.times = int(times)

    def getData(self, input):
        return " ".join([self.greeting] * self.times) + f" {input} from {os.getpid()}"

    def echo(self, text, repeat):
        return text * repeat


def failing():
    raise LookupError("no such table")
'''
#: The line of GREETER that C{failing} raises on.
FAILING_LINE = 20

BROKEN = '''\
"""A handler module whose import fails."""
raise ImportError("the database driver is missing")
'''

UNPARSABLE = '''\
"""A handler module that is not Python."""
def Handler(:
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """
    A folder holding a user's handler modules.
    """
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "greeter.py").write_text(GREETER)
    (folder / "broken.py").write_text(BROKEN)
    (folder / "unparsable.py").write_text(UNPARSABLE)
    assert GREETER.splitlines()[FAILING_LINE - 1].strip().startswith("raise LookupError")
    return folder


def greet(port: int, name: str = "x") -> str:
    client, transport = apacheClient(Echo, port)
    try:
        reply: str = client.getData(name)
        return reply
    finally:
        transport.close()


# --handler-option


def test_handlerOptionsReachTheFactory(twistd: Callable[..., Twistd], project: Path) -> None:
    """
    Each C{--handler-option key=value} is a keyword argument, a string, of
    the class C{--handler} names; the startup line names txthrift's version.
    """
    server = twistd("thrift", "--handler", "greeter.Greeter",
                    "--handler-option", "greeting=bonjour", "--handler-option", "times=2",
                    "--port", LOCAL, pythonpath=[REPO, project])
    serving = server.serving()
    assert f"txthrift={__version__})" in serving.string, serving.string
    port = tcpPortOf(serving)
    assert greet(port).startswith("bonjour bonjour x from ")
    assert server.stop() == 0
    namespaces = set(re.findall(r"\[(txthrift[^\]#]*)#", server.output))
    assert "txthrift.appservice" in namespaces, server.output
    assert not [name for name in namespaces if "._" in name], namespaces


def test_namedHandlerOptions() -> None:
    options = Options()
    options.parseOptions(["--handler", f"Echo={HANDLERS}.EchoHandler",
                          "--handler", "Calc=tests.test_cli.Sized",
                          "--handler-option", "Calc:size=3"])
    assert options["handler"]["Calc"][0].size == "3"
    mistakes = [
        (["--handler-option", "size=3"], "with named handlers, say whose: Name:size=3"),
        (["--handler-option", "Clac:size=3"], "no --handler is named 'Clac'"),
        (["--handler-option", "Calc:size=3", "--handler-option", "Calc:size=4"],
         "size given twice for Calc"),
        (["--handler-option", "Echo:x=1"],
         "tests._handlers.EchoHandler: got an unexpected keyword argument 'x'"),
        ([], "tests.test_cli.Sized: missing a required argument: 'size'; its parameters: size"),
    ]
    for extra, expected in mistakes:
        with pytest.raises(usage.UsageError) as raised:
            Options().parseOptions(["--handler", f"Echo={HANDLERS}.EchoHandler",
                                    "--handler", "Calc=tests.test_cli.Sized", *extra])
        assert str(raised.value).startswith("--handler-option: "), raised.value
        assert expected in str(raised.value), raised.value


def test_handlerOptionsNeedSomethingToCall() -> None:
    with pytest.raises(usage.UsageError, match="--handler-option: tests.test_cli.made is not a"
                       " class or function to call, so it takes no options"):
        Options().parseOptions(["--handler", "tests.test_cli.made", "--handler-option", "a=b"])


class Sized(EchoHandler):
    """
    A handler taking one option, for the tests above.
    """

    def __init__(self, size: str) -> None:
        super().__init__()
        self.size = size


made = EchoHandler(MemoryReactorClock())


# Every limit as an option, and every option to every worker.


def test_limitOptions() -> None:
    arguments = ["--handler", f"{HANDLERS}.EchoHandler", "--max-string-length", "0",
                 "--max-container-length", "7", "--max-depth", "3", "--port", LOCAL]
    options = Options()
    options.parseOptions(arguments)
    expected = {"max_string_length": 0, "max_container_length": 7, "max_depth": 3}
    assert expected.items() <= options["limits"].items()
    limits = makeService(options).factory.limits  # type: ignore[attr-defined]
    assert (limits.max_string_length, limits.max_container_length, limits.max_depth) == (0, 7, 3)
    workers = Options()
    workers.parseOptions([*arguments, "--workers", "2", "--handler-option", "reactor=r"])
    config = _workersService(workers).config
    assert expected.items() <= config["limits"].items()
    assert config["handler_options"] == ["reactor=r"]


def test_everyWorkerGetsTheOptionsAndSaysWhoItIs(twistd: Callable[..., Twistd],
                                                project: Path) -> None:
    """
    With C{--workers 2}, both workers make their handler with the handler
    options and enforce the limits given; the lines they log name them.
    """
    server = twistd("thrift", "--handler", "greeter.Greeter", "--handler-option",
                    "greeting=hej", "--max-string-length", "8", "--port", LOCAL,
                    "--workers", "2", pythonpath=[REPO, project])
    serving = server.serving()
    port = tcpPortOf(serving)
    for _ in range(2):
        server.waitFor(r"Worker \d+ \(pid \d+\) serving")
    pids: set[str] = set()
    for _ in range(10):
        # Connections open at once, so that both workers take some.
        opened = [apacheClient(Echo, port) for _ in range(8)]
        try:
            for client, _ in opened:
                reply = client.getData("x")
                assert re.fullmatch(r"hej x from \d+", reply), reply
                with pytest.raises(TException):
                    client.echo("123456789", 1)  # over --max-string-length
                pids.add(reply.rpartition(" ")[2])
        finally:
            for _, transport in opened:
                transport.close()
        if len(pids) == 2:
            break
    assert len(pids) == 2, pids
    for index in (0, 1):
        said = re.search(rf"\[worker {index} pid (\d+)\] Worker {index} \(pid (\d+)\) serving",
                         server.output)
        assert said and said.group(1) == said.group(2), server.output
        assert said.group(1) in pids


FLAKY = '''\
"""A handler that only the first process to make it gets."""
import os

from tests.gen.py.txthrift_test import Echo


def make(flag):
    try:
        os.close(os.open(flag, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        raise RuntimeError("made once already") from None
    return type("Flaky", (Echo.Iface,), {})()
'''


def test_workerFailingToMakeItsHandlerSaysWhyInOneLine(tmp_path: Path) -> None:
    """
    A handler that twistd made but a worker cannot (here: made once only)
    ends that worker with one line saying where; workers that keep failing
    stop twistd with status 1.
    """
    (tmp_path / "flaky.py").write_text(FLAKY)
    done = run("-n", "--pidfile=", "--logfile=-", "thrift", "--handler", "flaky.make",
               "--handler-option", f"flag={tmp_path / 'made'}", "--port", LOCAL,
               "--workers", "2", pythonpath=[REPO, tmp_path])
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    said = re.findall(r"\[worker \d pid \d+\] Worker \d cannot load its handler: --handler:"
                      r" calling flaky\.make\(flag='[^']+'\) failed: RuntimeError: made once"
                      rf" already \(at {re.escape(str(tmp_path / 'flaky.py'))}:11\)$",
                      output, re.MULTILINE)
    assert len(said) >= 2, output


# --listen and --version


def test_listenIsPortAsTwistdWebSpellsIt(twistd: Callable[..., Twistd], tmp_path: Path) -> None:
    options = Options()
    options.parseOptions(["--handler", f"{HANDLERS}.EchoHandler", "--listen", "tcp:0",
                          "--port", "unix:a.sock", "--listen", "9091"])
    assert options["ports"] == ["tcp:0", "unix:a.sock", "9091"]
    path = tmp_path / "echo.sock"
    server = twistd("thrift", "--handler", f"{HANDLERS}.EchoHandler", "--listen", LOCAL,
                    "--listen", f"unix:{path}")
    where = server.serving().group("where")
    assert "tcp:127.0.0.1:" in where and f"unix:{path}" in where


def test_versionNamesTxthrift() -> None:
    done = run("thrift", "--version")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == versions()
    assert versions().startswith(f"txthrift {__version__} (Twisted ")


# Errors: what failed, and where.


def _handlerFailure(args: list[str], pythonpath: list[Path]) -> str:
    """
    The one line twistd prints when the handler's code fails.
    """
    done = run("thrift", *args, "--port", LOCAL, pythonpath=pythonpath)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == "", "usage text for an error that is not a usage error"
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_handlerCodeFailuresSayWhere(project: Path) -> None:
    """
    An import or a constructor that raises ends twistd with one line,
    without the usage text, naming the file and line it raised at.
    """
    path = [REPO, project]
    assert _handlerFailure(["--handler", "broken.Handler"], path) == (
        "twistd thrift: --handler: importing broken failed: ImportError: the database driver"
        f" is missing (at {project / 'broken.py'}:2)")
    assert _handlerFailure(["--handler", "greeter.failing"], path) == (
        "twistd thrift: --handler: calling greeter.failing() failed: LookupError: no such"
        f" table (at {project / 'greeter.py'}:{FAILING_LINE})")
    unparsable = _handlerFailure(["--handler", "unparsable.Handler"], path)
    assert unparsable.startswith("twistd thrift: --handler: importing unparsable failed:"
                                 " SyntaxError: "), unparsable
    assert unparsable.endswith(f"(at {project / 'unparsable.py'}:2)"), unparsable
    # A module the handler's module imports, missing.
    missing = _handlerFailure(["--handler", "hello_handler.HelloServiceHandler"], [REPO, HELLO])
    assert missing.startswith("twistd thrift: --handler: importing hello_handler failed:"
                              " ModuleNotFoundError: No module named 'HelloService' (at "
                              f"{HELLO / 'hello_handler.py'}:"), missing


def test_handlerOptionRejectedIsOneUsageLine(project: Path) -> None:
    done = run("thrift", "--handler", "greeter.Greeter", "--handler-option", "colour=red",
               pythonpath=[REPO, project])
    assert done.returncode == 1 and done.stderr == "", done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == (
        "twistd thrift: --handler-option: greeter.Greeter: got an unexpected keyword argument"
        " 'colour'; its parameters: greeting, times")


def test_serveGivenAClassSaysPassAnInstance() -> None:
    reactor = MemoryReactorClock()
    for given, name in ((EchoHandler, "EchoHandler"), (Echo.Processor, "Processor")):
        expected = f"{name} is a class: pass an instance of it \\({name}\\(\\)\\), not the class"
        with pytest.raises(TypeError, match=expected):
            txthrift.serve(reactor, "tcp:0", given)
        with pytest.raises(TypeError, match=expected):
            txthrift.serve(reactor, "tcp:0", {"Echo": given})
        with pytest.raises(TypeError, match=expected):
            txthrift.thriftService(given, reactor=reactor)
    assert reactor.tcpServers == []


def test_daemonSaysAddressAlreadyInUse(tmp_path: Path) -> None:
    """
    Daemonizing, twistd passes on 100 bytes of the exception that stopped
    the start: they hold the cause and the port.
    """
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("--pidfile", str(tmp_path / "twistd.pid"),
                   "--logfile", str(tmp_path / "twistd.log"), "thrift",
                   "--handler", f"{HANDLERS}.EchoHandler",
                   "--port", f"tcp:{port}:interface=127.0.0.1", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "An error has occurred: " in done.stderr, done.stderr
    assert f"Address already in use on tcp:{port}:interface=127.0.0.1'" in done.stderr, \
        done.stderr
    # The daemon (in a session of its own) removes its pidfile, then exits.
    pidfile = tmp_path / "twistd.pid"
    deadline = time.monotonic() + WAIT
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if pidfile.exists():
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        raise AssertionError("the daemon was still running: killed")


# The log: peers, namespaces.


def test_peerText() -> None:
    class Transport:
        def __init__(self, address: Any) -> None:
            self.address = address

        def getPeer(self) -> Any:
            return self.address

    assert peerText(Transport(IPv4Address("TCP", "127.0.0.1", 54321))) == "127.0.0.1:54321"
    assert peerText(Transport(IPv6Address("TCP", "::1", 54321))) == "[::1]:54321"
    assert peerText(Transport(UNIXAddress(b"/run/a.sock"))) == "unix:/run/a.sock"
    assert peerText(Transport(UNIXAddress(None))) == "unix:?"
    assert peerText(None) == "?"
    connection = object.__new__(ServerProtocol)
    assert ServerProtocol.log.namespace == connection.log.namespace == "txthrift.server"
    assert ClientProtocol.log.namespace == "txthrift.client"
    assert ThriftMessageProtocol.log.namespace == "txthrift.connection"


@pytest_twisted.ensureDeferred
async def test_refusedConnectionIsLoggedWithHostAndPort(logged: list[dict[str, Any]]) -> None:
    """
    A connection closed for what it sent names its peer as C{127.0.0.1:port}.
    """
    from twisted.internet import reactor

    service = txthrift.thriftService(EchoHandler(), port=LOCAL, shutdown_timeout=1)
    service.startService()
    try:
        address: Any = service.ports[0].getHost()
        with socket.create_connection(("127.0.0.1", address.port), timeout=WAIT) as peer:
            clientPort = peer.getsockname()[1]
            peer.sendall(b"GET / HTTP/1.0\r\n\r\n")
            for _ in range(int(WAIT / 0.01)):
                if any("closing Thrift connection" in formatEvent(event) for event in logged):
                    break
                await deferLater(reactor, 0.01)
    finally:
        stopped: Deferred[None] = service.stopService()
        await stopped
    [closing] = [event for event in logged if "closing Thrift connection" in formatEvent(event)]
    assert f"from 127.0.0.1:{clientPort}: " in formatEvent(closing)
    assert closing["log_namespace"] == "txthrift.server"


@pytest_twisted.ensureDeferred
async def test_serverLogsPeersAsHostAndPort(logged: list[dict[str, Any]]) -> None:
    """
    A connection closed for idling is logged with its peer as
    C{127.0.0.1:port}, in a public namespace, as is everything the
    service logs.
    """
    from twisted.internet import reactor

    service = txthrift.thriftService(EchoHandler(), port=LOCAL, idle_timeout=0.05,
                                     shutdown_timeout=1)
    service.startService()
    try:
        address: Any = service.ports[0].getHost()
        with socket.create_connection(("127.0.0.1", address.port), timeout=WAIT) as peer:
            clientPort = peer.getsockname()[1]
            for _ in range(int(WAIT / 0.01)):
                if any("closing idle" in formatEvent(event) for event in logged):
                    break
                await deferLater(reactor, 0.01)
    finally:
        stopped: Deferred[None] = service.stopService()
        await stopped
    [closing] = [event for event in logged if "closing idle" in formatEvent(event)]
    assert f"from 127.0.0.1:{clientPort} after" in formatEvent(closing)
    namespaces = {event["log_namespace"] for event in logged
                  if event["log_namespace"].startswith("txthrift")}
    assert {"txthrift.appservice", "txthrift.server"} <= namespaces
    assert not [name for name in namespaces if "._" in name], namespaces


# A quiet, labelled test run.


def test_apacheDefectTestsRunQuietlyWithReasons() -> None:
    """
    The tests of Apache's defects leave no "Unhandled error in Deferred" in
    the output, and each expected failure shows its reason.
    """
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/test_ttwisted.py"],
        cwd=REPO, capture_output=True, text=True, timeout=WAIT * 6, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Unhandled error" not in output
    xfails = [line for line in output.splitlines() if line.startswith("XFAIL ")]
    assert len(xfails) >= 10, output
    assert all(" - the defect of Apache's TTwisted" in line for line in xfails), xfails


def test_documentedInTheReadme() -> None:
    readme = (REPO / "README.md").read_text()
    for option in ("--handler-option", "--listen", "--max-string-length",
                   "--max-container-length", "--max-depth", "--version"):
        assert re.search(rf"`[^`]*{option}\b", readme), option
