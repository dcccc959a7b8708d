"""
Tests for the C{twistd thrift} plugin and L{txthrift.thriftService}.

Most run real C{twistd} processes on 127.0.0.1 (port 0, the bound port read
from the startup log line) and talk to them with Apache's blocking clients
or txthrift's own; a few drive L{ThriftService} in-process on a fake clock.
Every process is killed when its test ends, and every wait is bounded.
"""

from __future__ import annotations

import importlib
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.protocol.TMultiplexedProtocol import TMultiplexedProtocol
from thrift.Thrift import TException
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TBufferedTransport, TFramedTransport, TMemoryBuffer
from twisted.internet.defer import fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.python import usage
from zope.interface import implementer

import txthrift
from tests._handlers import HANDLERS, Blocking, CalcHandler, EchoHandler, Stubborn
from tests._processes import HELLO, REPO, WAIT, Twistd, environment, run, tcpPortOf
from tests.gen.py.txthrift_test import Calc, Echo
from txthrift._appservice import CannotListen, ThriftService
from txthrift._tap import Options, makeService

REPLY = "client access from server 1024"

if str(HELLO / "gen") not in sys.path:
    # The seed's generated HelloService, for the seed's client.
    sys.path.append(str(HELLO / "gen"))


def apacheClient(service: Any, port: int, *, framed: bool = False, compact: bool = False,
                 name: str | None = None, sock: TSocket | None = None) -> tuple[Any, Any]:
    """
    An Apache blocking client of C{service} on 127.0.0.1, and its transport.
    """
    socket_ = sock or TSocket("127.0.0.1", port)
    socket_.setTimeout(WAIT * 1000)
    transport = TFramedTransport(socket_) if framed else TBufferedTransport(socket_)
    protocol = TCompactProtocol(transport) if compact else TBinaryProtocol(transport)
    if name is not None:
        protocol = TMultiplexedProtocol(protocol, name)
    transport.open()
    return service.Client(protocol), transport


def helloService() -> Any:
    """
    The seed's generated C{HelloService} module.
    """
    return importlib.import_module("HelloService.HelloService")


def seedClient(port: int) -> list[str]:
    """
    The seed's blocking client, in Python 3: what it printed.
    """
    client, transport = apacheClient(helloService(), port)
    try:
        printed = []
        client.sayHello()
        printed.append("ping()")
        printed.append(client.getData("client access"))
        return printed
    finally:
        transport.close()


# The plugin, installed.


def test_twistdListsThriftWithoutPythonpath(tmp_path: Path) -> None:
    """
    The environment running these tests (an editable install in development)
    finds the plugin from any directory, with no PYTHONPATH.
    """
    listed = run("--help", pythonpath=[], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^\s+thrift\s+Serve a Thrift", listed.stdout, re.MULTILINE), listed.stdout


OPTIONS = ["--handler=", "--service=", "--handler-option=", "--port=", "--listen=",
           "--transport=", "--protocol=", "--max-frame-size=", "--max-string-length=",
           "--max-container-length=", "--max-depth=", "--max-pending=", "--idle-timeout=",
           "--call-timeout=", "--threads=", "--shutdown-timeout=", "--keep-freed-mib=", "--help",
           "--version"]


#: What an install of txthrift should be followed by.
REFRESH_PLUGIN_CACHE = "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"


def _buildsOffline() -> bool:
    """
    Whether the interpreter's environment can build a wheel by itself.
    """
    probe = ("import importlib.util, setuptools, sys; v = tuple(int(p) for p in"
             " setuptools.__version__.split('.')[:2]);"
             " sys.exit(0 if v >= (70, 1) or importlib.util.find_spec('wheel') else 1)")
    return subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True,
                          timeout=WAIT).returncode == 0


def _sitePackages() -> list[str]:
    """
    The folders of installed packages this interpreter sees (the
    repository itself, which pytest and an editable install put on
    C{sys.path}, is none of them), so that a dropin found through them was
    installed.
    """
    folders = [sysconfig.get_paths()[key] for key in ("purelib", "platlib")]
    folders += [entry for entry in sys.path
                if "site-packages" in entry or "dist-packages" in entry]
    found: list[str] = []
    for folder in folders:
        path = Path(folder).resolve()
        if path.is_dir() and path != REPO and str(path) not in found:
            found.append(str(path))
    return found


def test_pipInstallPutsTheDropinBesideTwistedsPlugins(tmp_path: Path) -> None:
    """
    C{pip install .} into a fresh virtualenv installs
    C{twisted/plugins/txthrift_plugin.py} (and no C{__init__.py} of Twisted's)
    in its site-packages, where C{twistd} finds it.

    The virtualenv sees the packages of the environment running the tests
    (through a C{.pth} file), so nothing but txthrift is installed into it,
    and, when that environment can build wheels by itself, nothing is
    downloaded either.
    """
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*_cache",
        "dropin.cache", "gen", "examples", "benchmarks"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(venv)], check=True, timeout=WAIT * 2)
    python = str(venv / "bin" / "python")
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    ours = subprocess.run([python, "-c", purelib], capture_output=True, text=True, check=True,
                          timeout=WAIT).stdout.strip()
    Path(ours, "_parent_environment.pth").write_text("".join(p + "\n" for p in _sitePackages()))

    install = [python, "-m", "pip", "install", "--no-deps", "--ignore-installed",
               "--disable-pip-version-check", "--no-input", "--quiet"]
    if _buildsOffline():
        install.append("--no-build-isolation")
    done = subprocess.run([*install, str(source)], check=False, capture_output=True, text=True,
                          cwd=tmp_path, env=environment(), timeout=WAIT * 4)
    assert done.returncode == 0, done.stdout + done.stderr

    plugins = Path(ours, "twisted", "plugins")
    assert (plugins / "txthrift_plugin.py").is_file()
    assert not (plugins / "__init__.py").exists()
    assert not Path(ours, "twisted", "__init__.py").exists()
    assert Path(ours, "txthrift", "_tap.py").is_file()

    # What an install should be followed by: refreshing Twisted's plugin cache.
    subprocess.run([python, "-c", REFRESH_PLUGIN_CACHE], check=True, cwd=tmp_path,
                   env=environment(), timeout=WAIT)
    assert (plugins / "dropin.cache").is_file()

    where = subprocess.run([python, "-c", "import txthrift; print(txthrift.__file__)"],
                           check=False, capture_output=True, text=True, cwd=tmp_path,
                           env=environment(), timeout=WAIT)
    assert where.stdout.startswith(ours), where.stdout + where.stderr
    listed = run("--help", python=python, pythonpath=[], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^\s+thrift\s+Serve a Thrift", listed.stdout, re.MULTILINE), listed.stdout
    helped = run("thrift", "--help", python=python, pythonpath=[], cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    for option in OPTIONS:
        assert option in helped.stdout, helped.stdout


# Serving, as a user runs it.


def test_seedClientAgainstTwistdThrift(twistd: Callable[..., Twistd]) -> None:
    """
    The seed's handler, served by C{twistd thrift}, answers the seed's
    client (buffered, binary) and a framed client, on one port.
    """
    server = twistd("thrift", "--handler", "hello_handler.HelloServiceHandler",
                    "--port", "tcp:0:interface=127.0.0.1",
                    pythonpath=[REPO, HELLO, HELLO / "gen"])
    serving = server.serving()
    assert serving.group("served") == "HelloService"
    assert (serving.group("transport"), serving.group("protocol")) == ("auto", "auto")
    port = tcpPortOf(serving)
    assert seedClient(port) == ["ping()", REPLY]

    for framed, compact in ((True, False), (True, True)):
        client, transport = apacheClient(helloService(), port, framed=framed, compact=compact)
        try:
            assert client.getData("framed") == "framed from server 1024"
        finally:
            transport.close()
    assert server.stop() == 0
    assert "Traceback" not in server.output


def test_multiplexed(twistd: Callable[..., Twistd]) -> None:
    server = twistd("thrift", "--handler", f"Echo={HANDLERS}.EchoHandler",
                    "--handler", f"Calc={HANDLERS}.CalcHandler",
                    "--port", "tcp:0:interface=127.0.0.1", "--transport", "framed")
    serving = server.serving()
    assert serving.group("served") == "multiplexed Echo=Echo, Calc=Calc"
    port = tcpPortOf(serving)
    sock = TSocket("127.0.0.1", port)
    echo, transport = apacheClient(Echo, port, framed=True, name="Echo", sock=sock)
    try:
        calc = Calc.Client(TMultiplexedProtocol(TBinaryProtocol(transport), "Calc"))
        assert echo.echo("ab", 3) == "ababab"
        assert calc.multiply(6, 7) == 42
        assert echo.ping(1) == 2
    finally:
        transport.close()


def test_serviceOptionForAHandlerThatDoesNotSay(twistd: Callable[..., Twistd]) -> None:
    server = twistd("thrift", "--handler", f"{HANDLERS}.Unmarked",
                    "--service", "tests.gen.py.txthrift_test.Calc",
                    "--port", "tcp:0:interface=127.0.0.1")
    port = server.tcpPort()
    calc, transport = apacheClient(Calc, port)
    try:
        assert calc.multiply(3, 5) == 15
    finally:
        transport.close()


def test_threadsServeBlockingCallsAtOnce(twistd: Callable[..., Twistd]) -> None:
    """
    With C{--threads 4}, four calls that each block for a second take about
    a second together, on four connections.
    """
    server = twistd("thrift", "--handler", f"{HANDLERS}.Blocking", "--threads", "4",
                    "--port", "tcp:0:interface=127.0.0.1")
    port = server.tcpPort()
    assert "threads=4" in server.output

    def call(tag: str) -> str:
        client, transport = apacheClient(Echo, port)
        try:
            reply: str = client.slow(1.0, tag)
            return reply
        finally:
            transport.close()

    client, transport = apacheClient(Echo, port)
    try:
        assert client.getData("which thread?").startswith("PoolThread-txthrift")
    finally:
        transport.close()
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        tags = list(pool.map(call, ["a", "b", "c", "d"], timeout=WAIT))
    elapsed = time.monotonic() - started
    assert tags == ["a", "b", "c", "d"]
    assert 0.9 < elapsed < 2.0, elapsed
    assert server.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_sigtermDrainsCallsInFlight(twistd: Callable[..., Twistd], sig: int) -> None:
    """
    On SIGTERM (or SIGINT: Ctrl-C) the server stops listening at once,
    answers the call in flight, then exits 0.
    """
    server = twistd("thrift", "--handler", f"{HANDLERS}.EchoHandler",
                    "--port", "tcp:0:interface=127.0.0.1", "--shutdown-timeout", "10")
    port = server.tcpPort()
    replies: queue.Queue[object] = queue.Queue()

    def call() -> None:
        try:
            client, transport = apacheClient(Echo, port, framed=True)
            try:
                replies.put(client.slow(1.5, "drained"))
            finally:
                transport.close()
        except (OSError, TException) as error:
            replies.put(error)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    server.waitFor("slow call drained started")
    sentAt = time.monotonic()
    server.process.send_signal(sig)
    server.waitFor(r"Stopped listening; waiting up to 10(\.0)?s for 1 call")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
    assert replies.get(timeout=WAIT) == "drained"
    assert server.wait() == 0, server.output
    assert time.monotonic() - sentAt < 8
    assert "Traceback" not in server.output
    caller.join(WAIT)


def test_tls(twistd: Callable[..., Twistd], tmp_path: Path) -> None:
    pytest.importorskip("OpenSSL", reason="Twisted's TLS needs pyOpenSSL (twisted[tls])")
    import ssl

    from thrift.transport.TSSLSocket import TSSLSocket

    key, cert = _selfSigned(tmp_path)
    server = twistd("thrift", "--handler", f"{HANDLERS}.EchoHandler",
                    "--port", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    where = server.serving().group("where")
    found = re.match(r"ssl:127\.0\.0\.1:(\d+)$", where)
    assert found, where
    sock = TSSLSocket("127.0.0.1", int(found.group(1)), cert_reqs=ssl.CERT_REQUIRED,
                      ca_certs=str(cert))
    client, transport = apacheClient(Echo, 0, framed=True, sock=sock)
    try:
        assert client.echo("secret", 2) == "secretsecret"
    finally:
        transport.close()


def _selfSigned(folder: Path) -> tuple[Path, Path]:
    """
    A key and a self-signed certificate for 127.0.0.1 and localhost.
    """
    key, cert = folder / "key.pem", folder / "cert.pem"
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip(reason="neither the cryptography package nor the openssl command")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key),
             "-out", str(cert), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=WAIT)
        return key, cert
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - not in 3.10
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256()))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest_twisted.ensureDeferred
async def test_unixSocketWithTxthriftClient(twistd: Callable[..., Twistd],
                                            tmp_path: Path) -> None:
    from twisted.internet import reactor

    path = tmp_path / "echo.sock"
    server = twistd("thrift", "--handler", f"{HANDLERS}.EchoHandler", "--port", f"unix:{path}",
                    "--port", "tcp:0:interface=127.0.0.1")
    where = server.serving().group("where")
    assert f"unix:{path}" in where and "tcp:127.0.0.1:" in where
    client: Any = await txthrift.connect(reactor, f"unix:path={path}", Echo, timeout=WAIT)
    try:
        assert await client.echo("ab", 2) == "abab"
        assert await client.add(2, 3) == 5
    finally:
        await client.close()


def test_helloTac(twistd: Callable[..., Twistd], tmp_path: Path) -> None:
    """
    C{twistd -ny examples/hello/hello.tac} serves the seed's handler, from
    any directory, finding the example's modules by itself.
    """
    server = twistd("-y", str(HELLO / "hello.tac"), cwd=tmp_path, pythonpath=[REPO],
                    PORT="tcp:0:interface=127.0.0.1")
    assert seedClient(server.tcpPort()) == ["ping()", REPLY]
    assert server.stop() == 0


# Mistakes: one line, no traceback, a non-zero status.

MISTAKES = [
    ([], "--handler is required"),
    (["--handler", "nowhere_to_be_found.Handler"],
     "--handler: no module named 'nowhere_to_be_found'"),
    (["--handler", f"{HANDLERS}.Missing"], f"--handler: {HANDLERS} has no attribute 'Missing'"),
    (["--handler", f"{HANDLERS}.Unmarked"], "name the generated module with --service"),
    (["--handler", HANDLERS],
     f"--handler: {HANDLERS} is a module; name the handler class or function in it"),
    (["--handler", f"{HANDLERS}.Unmarked", "--service", HANDLERS],
     f"--service: {HANDLERS} is not a generated Thrift service module"),
    (["--handler", f"Echo={HANDLERS}.EchoHandler", "--handler", f"{HANDLERS}.CalcHandler"],
     "--handler: with several handlers, name each one"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--port", "tcp:port"],
     "--port: 'tcp:port': not a server endpoint description"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--port", "carrier:pigeon"],
     ("--port: 'carrier:pigeon': not a server endpoint description: ValueError: Unknown"
      " endpoint type: 'carrier'")),
    (["--handler", f"{HANDLERS}.EchoHandler", "--port", "99999"],
     "--port: '99999': TCP port 99999 is not between 0 and 65535"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--threads", "many"],
     "--threads: expected a whole number, at least 0, not 'many'"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--max-frame-size", "0"],
     "--max-frame-size: expected a whole number of bytes, at least 1, not '0'"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--max-frame-size", str(2**32)],
     "--max-frame-size: max_frame_size must be below 2 GiB"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--max-string-length", "-1"],
     "--max-string-length: expected a whole number of bytes, at least 0, not '-1'"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--max-container-length", "many"],
     "--max-container-length: expected a whole number of elements, at least 0, not 'many'"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--keep-freed-mib", "lots"],
     "--keep-freed-mib: expected a whole number of MiB, at least 0, not 'lots'"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--max-depth", "0"],
     "--max-depth: expected a whole number, at least 1, not '0'"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--listen", "tcp:port"],
     "--listen: 'tcp:port': not a server endpoint description"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--handler-option", "verbose"],
     "--handler-option: expected key=value (the key a Python name), not 'verbose'"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--handler-option", "colour=blue"],
     (f"--handler-option: {HANDLERS}.EchoHandler: got an unexpected keyword argument"
      " 'colour'; its parameters: reactor")),
    (["--handler", f"{HANDLERS}.EchoHandler", "--idle-timeout", "-1"],
     "--idle-timeout: expected a number of seconds, more than 0, not '-1'"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--shutdown-timeout", "soon"],
     "--shutdown-timeout: expected a number of seconds, at least 0, not 'soon'"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--transport", "pigeon"],
     "--transport: unknown transport 'pigeon'; choose one of auto, framed, buffered"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--transport", "header", "--protocol", "json"],
     "--transport: THeader carries the binary or compact protocol, not JSON"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--sasl", "PLAIN", "--auth",
      "file:/nonexistent/users"],
     "--auth: 'file:/nonexistent/users': no such file"),
    (["--handler", f"{HANDLERS}.EchoHandler", "--protocol", "xml"],
     "--protocol: unknown protocol 'xml'; choose one of auto, binary, compact, json"),
]


def _lastLine(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def mistakes() -> dict[int, subprocess.CompletedProcess[str]]:
    """
    Every mistake, run at once (each is a twistd start-up).
    """
    with ThreadPoolExecutor(4) as pool:
        done = pool.map(lambda args: run("thrift", *args, pythonpath=[REPO, HELLO]),
                        [args for args, _ in MISTAKES])
        return dict(enumerate(done))


@pytest.mark.parametrize("index", range(len(MISTAKES)),
                         ids=[" ".join(args)[-60:] or "nothing" for args, _ in MISTAKES])
def test_mistakesEndInOneLine(index: int,
                              mistakes: dict[int, subprocess.CompletedProcess[str]]) -> None:
    """
    twistd prints the plugin's usage, then the error: one line naming the
    option; the status is 1 and nothing looks like a traceback.
    """
    expected = MISTAKES[index][1]
    done = mistakes[index]
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr == ""
    last = _lastLine(done.stdout)
    assert last.startswith("twistd thrift: "), last
    assert expected in last, done.stdout


def test_portInUseEndsInOneLine() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("-n", "--pidfile=", "--logfile=-", "thrift",
                   "--handler", f"{HANDLERS}.EchoHandler", "--port", "tcp:0:interface=127.0.0.1",
                   "--port", f"tcp:{port}:interface=127.0.0.1")
    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    last = _lastLine(output)
    assert last.endswith(f"Address already in use on tcp:{port}:interface=127.0.0.1"), last
    assert "Serving" not in output


# In-process: the options, and stopping on a fake clock.


def test_optionsSingleHandler() -> None:
    options = Options()
    options.parseOptions(["--handler", f"{HANDLERS}.EchoHandler", "--port", "0",
                          "--port", "unix:x.sock", "--idle-timeout", "2.5",
                          "--call-timeout", "30", "--max-pending", "3", "--threads", "2", "--protocol", "compact"])
    assert isinstance(options["handler"], EchoHandler)
    assert options["service"] is Echo
    assert options["ports"] == ["0", "unix:x.sock"]
    assert options["limits"] == {"max_frame_size": 16 * 1024 * 1024, "max_depth": 64,
                                 "max_pending": 3, "idle_timeout": 2.5, "call_timeout": 30.0}
    assert (options["threads"], options["shutdown-timeout"]) == (2, 10.0)
    service = makeService(options)
    assert isinstance(service, ThriftService)
    assert service.factory.protocolName == "compact"
    assert service.factory.limits.idle_timeout == 2.5
    assert service.factory.limits.call_timeout == 30.0


def test_optionsMultiplexedWithService() -> None:
    options = Options()
    options.parseOptions(["--handler", f"Echo={HANDLERS}.EchoHandler",
                          "--handler", f"Calc={HANDLERS}.Unmarked",
                          "--service", "Calc=tests.gen.py.txthrift_test.Calc"])
    handlers = options["handler"]
    assert sorted(handlers) == ["Calc", "Echo"]
    assert handlers["Calc"][1] is Calc and handlers["Echo"][1] is Echo
    assert options["ports"] == ["tcp:9090"]
    with pytest.raises(usage.UsageError, match="--service: no --handler is named 'Clac'"):
        Options().parseOptions(["--handler", f"Calc={HANDLERS}.Unmarked",
                                "--service", "Clac=tests.gen.py.txthrift_test.Calc"])


class _Port:
    def __init__(self) -> None:
        self.stopped = False

    def stopListening(self) -> None:
        self.stopped = True

    def getHost(self) -> Any:
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", "127.0.0.1", 1)


class _Endpoint:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def listen(self, factory: Any) -> Any:
        return self.outcome


def test_listenFailureStopsTheOtherPorts() -> None:
    from twisted.internet.interfaces import IStreamServerEndpoint
    from zope.interface import directlyProvides

    good, port = _Endpoint(None), _Port()
    good.outcome = succeed(port)
    bad = _Endpoint(fail(CannotListenError("127.0.0.1", 1, OSError("in use"))))
    for endpoint in (good, bad):
        directlyProvides(endpoint, IStreamServerEndpoint)
    service = txthrift.thriftService(EchoHandler(), port=[good, bad],  # type: ignore[list-item]
                                     reactor=MemoryReactorClock())
    with pytest.raises(CannotListen) as raised:
        service.privilegedStartService()
    assert isinstance(raised.value, SystemExit) and isinstance(raised.value, Exception)
    assert "\n" not in str(raised.value) and "in use" in str(raised.value)
    assert port.stopped


def _request(method: str, *args: Any) -> bytes:
    buffer = TMemoryBuffer()
    client = Echo.Client(TBinaryProtocol(buffer))
    getattr(client, "send_" + method)(*args)
    message = buffer.getvalue()
    return struct.pack(">i", len(message)) + message


def _connect(service: ThriftService) -> StringTransportWithDisconnection:
    protocol = service.factory.buildProtocol(None)
    transport = StringTransportWithDisconnection()
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return transport


@pytest.fixture
def warnings() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []

    @implementer(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") == LogLevel.warn:
            events.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observe)


def test_stopWaitsForCallsInFlight(warnings: list[dict[str, Any]]) -> None:
    clock = MemoryReactorClock()
    service = txthrift.thriftService(EchoHandler(clock), port="tcp:0:interface=127.0.0.1",
                                     reactor=clock, shutdown_timeout=5)
    service.privilegedStartService()
    service.startService()
    assert len(clock.tcpServers) == 1
    transport = _connect(service)
    transport.protocol.dataReceived(_request("slow", 2.0, "late"))
    stopped = service.stopService()
    assert not stopped.called and service.ports == []
    clock.advance(1.9)
    assert not stopped.called and transport.connected
    clock.advance(0.1)  # the call answers
    assert b"late" in transport.value()
    for _ in range(4):
        clock.advance(0.05)
    assert stopped.called and not transport.connected
    assert warnings == []


def test_stopDoesNotWaitForWorkOutlivingItsTimeout(warnings: list[dict[str, Any]]) -> None:
    """
    The drain waits for the calls whose callers wait: a handler that
    carries on after its call was answered with the timeout holds nothing up.
    """
    clock = MemoryReactorClock()
    handler = Stubborn()
    service = txthrift.thriftService(handler, port="tcp:0:interface=127.0.0.1",
                                     reactor=clock, shutdown_timeout=5, call_timeout=0.5)
    service.startService()
    transport = _connect(service)
    transport.protocol.dataReceived(_request("getData", "stubborn"))
    clock.advance(0.5)  # answered with its timeout; the handler carries on
    assert len(handler.gates) == 2
    transport.protocol.dataReceived(_request("slow", 1.0, "last"))
    stopped = service.stopService()
    assert not stopped.called
    handler.waiting["last"].callback("done")
    for _ in range(4):
        clock.advance(0.05)
    assert stopped.called and not transport.connected
    assert b"done" in transport.value()
    assert [event["log_format"] for event in warnings] == [
        "{name} got no answer from its handler within {timeout}s; cancelled"]


def test_stopGivesUpAfterTheTimeout(warnings: list[dict[str, Any]]) -> None:
    clock = MemoryReactorClock()
    service = txthrift.thriftService(EchoHandler(clock), port="tcp:0:interface=127.0.0.1",
                                     reactor=clock, shutdown_timeout=1)
    service.startService()
    transport = _connect(service)
    transport.protocol.dataReceived(_request("slow", 60.0, "never"))
    stopped = service.stopService()
    clock.pump([0.05] * 19)
    assert not stopped.called and transport.connected
    clock.pump([0.05] * 3)
    assert stopped.called and not transport.connected
    assert b"never" not in transport.value()
    assert [event["log_format"] for event in warnings] == [
        "{calls} call(s) still in flight after {timeout}s; closing anyway"]


LATE_ENDPOINT = """
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint, IStreamServerEndpointStringParser
from twisted.internet.task import deferLater
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IStreamServerEndpoint)
class Late:
    def __init__(self, reactor):
        self.reactor = reactor

    def listen(self, factory):
        def fail():
            raise CannotListenError("127.0.0.1", 0, OSError("gone later"))
        return deferLater(self.reactor, 0.2, fail)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class Parser:
    prefix = "late"

    def parseStreamServer(self, reactor, *args, **kwargs):
        return Late(reactor)


parser = Parser()
"""


def test_twistdExits1WhenAPortFailsAfterStartUp(tmp_path: Path) -> None:
    # An endpoint plugin whose listening fails a moment after start-up.
    plugins = tmp_path / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "txthrift_test_late.py").write_text(LATE_ENDPOINT)
    done = run("-n", "--pidfile=", "--logfile=-", "thrift", "--handler",
               f"{HANDLERS}.EchoHandler", "--port", "late:",
               pythonpath=[REPO, tmp_path])
    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "stopping: gone later on late:" in output
    assert "Traceback" not in output


def test_thriftServiceRejectsBadArguments() -> None:
    clock = MemoryReactorClock()
    with pytest.raises(ValueError, match="not a server endpoint description"):
        txthrift.thriftService(EchoHandler(clock), port="nope:1", reactor=clock)
    with pytest.raises(ValueError, match="threads"):
        txthrift.thriftService(EchoHandler(clock), threads=-1, reactor=clock)
    with pytest.raises(TypeError, match="cannot tell which Thrift service"):
        txthrift.thriftService(object(), threads=2, reactor=clock)
    service = txthrift.thriftService({"Calc": CalcHandler()}, port=[0, "tcp:0"], threads=1,
                                     reactor=clock)
    assert isinstance(service, ThriftService)


def test_endpointFailingLaterStopsTheReactor() -> None:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IStreamServerEndpoint
    from zope.interface import directlyProvides

    clock = MemoryReactorClock()
    later: Deferred[Any] = Deferred()
    endpoint = _Endpoint(later)
    directlyProvides(endpoint, IStreamServerEndpoint)
    service = txthrift.thriftService(EchoHandler(clock), port=endpoint,  # type: ignore[arg-type]
                                     reactor=clock)
    service.startService()
    assert clock.whenRunningHooks == []
    assert not service.gaveUp
    later.errback(CannotListenError("127.0.0.1", 1, OSError("in use")))
    assert len(clock.whenRunningHooks) == 1
    assert service.gaveUp

    # Stopping while an endpoint is still trying to listen cancels it, quietly.
    clock = MemoryReactorClock()
    pending: Deferred[Any] = Deferred()
    endpoint = _Endpoint(pending)
    directlyProvides(endpoint, IStreamServerEndpoint)
    service = txthrift.thriftService(EchoHandler(clock), port=endpoint, reactor=clock)
    service.startService()
    stopped = service.stopService()
    assert pending.called and stopped.called
    assert clock.whenRunningHooks == []


@pytest_twisted.ensureDeferred
async def test_threadsSurviveARestart() -> None:
    """
    A threaded service stopped and started again has a thread pool again.
    """
    from twisted.internet import reactor

    service = txthrift.thriftService(Blocking(), port="tcp:0:interface=127.0.0.1",
                                     threads=2, shutdown_timeout=1)
    for _ in range(2):
        service.startService()
        address: Any = service.ports[0].getHost()
        client: Any = await txthrift.connect(reactor, f"tcp:127.0.0.1:{address.port}", Echo,
                                             timeout=WAIT)
        try:
            assert (await client.getData("")).startswith("PoolThread-txthrift")
            assert await client.slow(0.01, "t") == "t"
        finally:
            await client.close()
        await service.stopService()
