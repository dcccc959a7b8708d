"""
Tests for C{twistd thrift --http-port} (and C{--http-path}, C{--ws-port}):
real C{twistd} processes on 127.0.0.1 (port 0, the bound port read from
the startup line), called with Apache's blocking C{THttpClient} and its
socket clients; with C{--workers}, the workers found from the log.  Every
process is killed with what it started when its test ends.
"""

from __future__ import annotations

import queue
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from thrift.protocol.TBinaryProtocol import TBinaryProtocolFactory
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.Thrift import TException
from thrift.transport.THttpClient import THttpClient
from twisted.internet.threads import deferToThread

import txthrift
from tests._handlers import HANDLERS
from tests._processes import REPO, WAIT, Twistd, run, tcpPortOf
from tests.gen.py.txthrift_test import Echo
from tests.test_tap import _lastLine, _selfSigned, apacheClient
from tests.test_workers import READY, waitGone, workerPids

LOCAL = "tcp:0:interface=127.0.0.1"


@pytest.fixture(autouse=True)
def noProxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Apache's C{THttpClient} goes through a proxy named in the environment:
    not to 127.0.0.1.
    """
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "*")


def urlsOf(serving: re.Match[str], scheme: str = "http") -> list[str]:
    """
    The URLs of C{scheme} in a startup line.
    """
    return re.findall(rf"{scheme}://127\.0\.0\.1:\d+/\S*?(?=,|$)", serving.group("where"))


def httpEcho(url: str, factory: Any = None, **kwargs: Any) -> Any:
    transport = THttpClient(url, **kwargs)
    transport.setTimeout(WAIT * 1000)
    return Echo.Client((factory or TBinaryProtocolFactory()).getProtocol(transport))


def test_httpBesideTcp(twistd: Callable[..., Twistd]) -> None:
    """
    C{--http-port} beside C{--port}: the startup line names both, each
    serves, and stopping ends cleanly.
    """
    server = twistd("thrift", "--handler", f"{HANDLERS}.EchoHandler", "--port", LOCAL,
                    "--http-port", LOCAL, "--http-path", "/thrift")
    serving = server.serving()
    (url,) = urlsOf(serving)
    assert url.endswith("/thrift"), serving.group(0)
    client, transport = apacheClient(Echo, tcpPortOf(serving))
    try:
        assert client.echo("tcp", 2) == "tcptcp"
    finally:
        transport.close()
    assert httpEcho(url).echo("http", 2) == "httphttp"
    assert httpEcho(url, TJSONProtocolFactory()).add(2, 3) == 5
    assert server.stop() == 0, server.output
    assert "Traceback" not in server.output


def test_httpAlone(twistd: Callable[..., Twistd]) -> None:
    """
    C{--http-port} without C{--port}: no TCP Thrift port at all.
    """
    server = twistd("thrift", "--handler", f"{HANDLERS}.EchoHandler", "--http-port", LOCAL,
                    "--http-port", LOCAL)
    serving = server.serving()
    assert "tcp:" not in serving.group("where"), serving.group(0)
    urls = urlsOf(serving)
    assert len(urls) == 2 and all(url.endswith("/") for url in urls), urls
    for url in urls:
        assert httpEcho(url).ping(1) == 2
    assert server.stop() == 0, server.output


def test_sigtermDrainsHttpCallsInFlight(twistd: Callable[..., Twistd]) -> None:
    """
    On SIGTERM the server stops listening, answers the HTTP call in flight,
    then exits 0.
    """
    server = twistd("thrift", "--handler", f"{HANDLERS}.EchoHandler", "--http-port", LOCAL,
                    "--shutdown-timeout", "10")
    (url,) = urlsOf(server.serving())
    port = int(url.split(":")[2].split("/")[0])
    replies: queue.Queue[object] = queue.Queue()

    def call() -> None:
        try:
            replies.put(httpEcho(url).slow(1.5, "drained"))
        except (OSError, TException) as error:
            replies.put(error)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    server.waitFor("slow call drained started")
    sentAt = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.waitFor(r"Stopped listening; waiting up to 10(\.0)?s for 1 call")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
    assert replies.get(timeout=WAIT) == "drained"
    assert server.wait() == 0, server.output
    assert time.monotonic() - sentAt < 8
    assert "Traceback" not in server.output
    caller.join(WAIT)


def test_https(twistd: Callable[..., Twistd], tmp_path: Path) -> None:
    pytest.importorskip("OpenSSL", reason="Twisted's TLS needs pyOpenSSL (twisted[tls])")
    key, cert = _selfSigned(tmp_path)
    server = twistd("thrift", "--handler", f"{HANDLERS}.EchoHandler", "--http-port",
                    f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    (url,) = urlsOf(server.serving(), "https")
    context = ssl.create_default_context(cafile=str(cert))
    assert httpEcho(url, ssl_context=context).echo("secret", 2) == "secretsecret"
    assert server.stop() == 0, server.output


def test_threadsAndLimitsApplyToHttp(twistd: Callable[..., Twistd]) -> None:
    """
    C{--threads} runs a blocking handler's calls over HTTP in the pool;
    C{--max-frame-size} bounds request bodies.
    """
    server = twistd("thrift", "--handler", f"{HANDLERS}.Blocking", "--threads", "2",
                    "--max-frame-size", "1000", "--http-port", LOCAL)
    (url,) = urlsOf(server.serving())
    assert httpEcho(url).getData("").startswith("PoolThread-txthrift")
    transport = THttpClient(url)
    transport.write(b"\x80" * 2000)
    transport.flush()
    assert transport.code == 413
    assert server.stop() == 0, server.output


def test_workersServeHttp(twistd: Callable[..., Twistd]) -> None:
    """
    C{--workers 2} with an HTTP port: both workers answer its calls (each
    of Apache's calls opens a connection of its own), and SIGTERM drains
    them.
    """
    server = twistd("thrift", "--handler", f"{HANDLERS}.PidEcho", "--http-port", LOCAL,
                    "--port", LOCAL, "--workers", "2")
    (url,) = urlsOf(server.serving())
    assert "workers=2" in server.output
    for _ in range(2):
        server.waitFor(READY)
    pids = workerPids(server)
    seen: set[int] = set()
    deadline = time.monotonic() + WAIT
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.add(httpEcho(url).ping(0))
    assert seen == set(pids), server.output
    assert server.stop() == 0, server.output
    assert waitGone(pids) == []


MISTAKES = [
    (["--http-path", "thrift"], "--http-path: a path starts with /, not 'thrift'"),
    (["--http-port", "nope:1"], "--http-port: 'nope:1': not a server endpoint description"),
    (["--http-port", "unix:x.sock", "--workers", "2"],
     "--http-port: 'unix:x.sock': --workers takes TCP ports only"),
]


@pytest.mark.parametrize(("args", "expected"), MISTAKES,
                         ids=[" ".join(args) for args, _ in MISTAKES])
def test_mistakesEndInOneLine(args: list[str], expected: str) -> None:
    done = run("thrift", "--handler", f"{HANDLERS}.EchoHandler", *args, pythonpath=[REPO])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    last = _lastLine(done.stdout)
    assert last.startswith("twistd thrift: ") and expected in last, done.stdout


def test_wsPortWithoutAutobahnEndsInOneLine(tmp_path: Path) -> None:
    """
    Without autobahn (hidden here by a package of that name that cannot be
    imported), C{--ws-port} ends in one line naming the extra.
    """
    fake = tmp_path / "autobahn"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('No module named autobahn')\n")
    done = run("thrift", "--handler", f"{HANDLERS}.EchoHandler", "--ws-port", LOCAL,
               pythonpath=[tmp_path, REPO])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    last = _lastLine(done.stdout)
    assert last.startswith("twistd thrift: --ws-port:") and "txthrift[websocket]" in last, last


@pytest_twisted.ensureDeferred
async def test_wsPortBesideHttpAndItsDrain(twistd: Callable[..., Twistd]) -> None:
    """
    C{--ws-port} beside C{--http-port}: the startup line names both URLs,
    a txthrift WebSocket client is answered, and on SIGTERM its call in
    flight is answered before the process exits 0.
    """
    pytest.importorskip("autobahn", reason="autobahn is the extra txthrift[websocket], which"
                        " scripts/setup.sh installs")
    from twisted.internet import reactor

    server = twistd("thrift", "--handler", f"{HANDLERS}.EchoHandler", "--http-port", LOCAL,
                    "--ws-port", LOCAL, "--shutdown-timeout", "10")
    serving = server.serving()
    (url,) = urlsOf(serving, "ws")
    (httpUrl,) = urlsOf(serving)
    assert await deferToThread(lambda: httpEcho(httpUrl).ping(1)) == 2
    client: Any = await txthrift.connect(reactor, url, Echo, timeout=WAIT)
    try:
        assert await client.echo("ws", 2) == "wsws"
        slow = client.slow(1.5, "drained")
        await deferToThread(server.waitFor, "slow call drained started")
        server.process.send_signal(signal.SIGTERM)
        assert await slow == "drained"
    finally:
        await client.close()
    assert await deferToThread(server.wait) == 0, server.output
    assert "Traceback" not in server.output
