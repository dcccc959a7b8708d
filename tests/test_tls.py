"""
Tests for TLS with client certificates: C{serve(..., tls_client_ca=...)},
C{mtls:} endpoint strings and C{twistd thrift --tls-client-ca}, called by
txthrift's client over Twisted's C{tls:} endpoint and by Apache's blocking
C{TSSLSocket}, with certificates the C{openssl} command makes; clients
without a certificate, or with one another CA signed, are refused during
the handshake and the server says why.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from thrift.transport.TSSLSocket import TSSLSocket
from thrift.transport.TTransport import TTransportException
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import formatEvent

import txthrift
from tests._certs import Certificates, makeCertificates
from tests._handlers import HANDLERS, WhoIsCalling
from tests._processes import Twistd, run
from tests.gen.py.txthrift_test import Echo
from tests.test_interop import inThread, within
from tests.test_tap import apacheClient

#: Seconds any one wait may take.
WAIT = 10.0


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return makeCertificates(tmp_path_factory.mktemp("certificates"))


def sslPort(certificates: Certificates) -> str:
    cert, key = certificates.server
    return f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"


def tlsClient(port: int, certificates: Certificates,
              client: tuple[Path, Path] | None = None) -> str:
    """
    A Twisted C{tls:} client endpoint string: it verifies the server
    against our CA, and presents C{client}'s certificate.
    """
    where = f"tls:127.0.0.1:{port}:trustRoots={certificates.trust}"
    if client is not None:
        where += f":certificate={client[0]}:privateKey={client[1]}"
    return where


async def refusals(logged: list[dict[str, Any]], count: int) -> list[str]:
    """
    The server's log lines refusing TLS clients, once C{count} are there.
    """
    for _ in range(int(WAIT / 0.01)):
        found = [formatEvent(e) for e in logged if "refused TLS" in formatEvent(e)]
        if len(found) >= count:
            return found
        await deferLater(reactor, 0.01)
    raise AssertionError("the server logged no refusal")


@pytest_twisted.ensureDeferred
async def test_aClientCertificateReachesTheHandler(certificates: Certificates) -> None:
    port: Any = await txthrift.serve(reactor, sslPort(certificates), WhoIsCalling(),
                                tls_client_ca=str(certificates.ca))
    try:
        client: Any = await within(txthrift.connect(
            reactor, tlsClient(port.getHost().port, certificates, certificates.alice), Echo,
            timeout=WAIT))
        try:
            got = json.loads(await client.getData("x"))
        finally:
            await client.close()
    finally:
        await port.stopListening()
    assert got["identity"] == "alice"
    assert got["subject"] == "CN=alice,O=txthrift"


@pytest.mark.parametrize("who", ["nobody", "mallory"])
@pytest_twisted.ensureDeferred
async def test_clientsWithoutAGoodCertificateAreRefusedAndLogged(
        certificates: Certificates, logged: list[dict[str, Any]], who: str) -> None:
    """
    No certificate, or one another CA signed: the handshake fails, so the
    client's call fails with the connection, and the server says why.
    """
    handler = WhoIsCalling()
    port: Any = await txthrift.serve(reactor, sslPort(certificates), handler,
                                tls_client_ca=str(certificates.ca))
    try:
        client: Any = await within(txthrift.connect(
            reactor, tlsClient(port.getHost().port, certificates,
                               None if who == "nobody" else certificates.mallory),
            Echo, timeout=WAIT))
        with pytest.raises(Exception) as failed:
            await client.getData("x")
        await client.close()
        [refusal] = await refusals(logged, 1)
    finally:
        await port.stopListening()
    assert not isinstance(failed.value, txthrift.CallTimeout)
    assert refusal.startswith("refused TLS from 127.0.0.1:")
    assert "certificate" in refusal, refusal


@pytest_twisted.ensureDeferred
async def test_anMtlsEndpointStringSaysTheSame(certificates: Certificates) -> None:
    cert, key = certificates.server
    port: Any = await txthrift.serve(
        reactor, f"mtls:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
                 f":clientCA={certificates.ca}", WhoIsCalling())
    try:
        client: Any = await within(txthrift.connect(
            reactor, tlsClient(port.getHost().port, certificates, certificates.alice), Echo,
            timeout=WAIT))
        try:
            assert json.loads(await client.getData("x"))["identity"] == "alice"
        finally:
            await client.close()
    finally:
        await port.stopListening()


def test_tlsClientCaNeedsAnSslEndpointString(certificates: Certificates) -> None:
    with pytest.raises(ValueError, match="is not an ssl: endpoint"):
        txthrift.serve(reactor, "tcp:0", WhoIsCalling(), tls_client_ca=str(certificates.ca))
    with pytest.raises(ValueError, match="for ssl: endpoint strings"):
        txthrift.serve(reactor, 0, WhoIsCalling(),  # type: ignore[arg-type]
                       tls_client_ca=str(certificates.ca))


def test_aCaFileWithoutCertificatesIsAClearError(certificates: Certificates,
                                                 tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificates here\n")
    with pytest.raises(ValueError, match="clientCA: .* holds no PEM certificate"):
        txthrift.serve(reactor, sslPort(certificates), WhoIsCalling(), tls_client_ca=str(empty))
    with pytest.raises(ValueError, match="mtls: needs clientCA="):
        txthrift.serve(reactor, "mtls:0:privateKey=k.pem", WhoIsCalling())


def apacheCall(port: int, certificates: Certificates,
               client: tuple[Path, Path] | None) -> dict[str, Any]:
    """
    Call C{getData} with Apache's blocking C{TSSLSocket}, verifying the
    server against our CA and presenting C{client}'s certificate.
    """
    extra = {} if client is None else {"certfile": str(client[0]), "keyfile": str(client[1])}
    sock = TSSLSocket("127.0.0.1", port, cert_reqs=ssl.CERT_REQUIRED,
                      ca_certs=str(certificates.ca), **extra)
    echo, transport = apacheClient(Echo, 0, framed=True, sock=sock)
    try:
        result: dict[str, Any] = json.loads(echo.getData("x"))
        return result
    finally:
        transport.close()


@pytest_twisted.ensureDeferred
async def test_twistdRequiresClientCertificatesOfApachesClients(
        twistd: Callable[..., Twistd], certificates: Certificates) -> None:
    server = twistd("thrift", "--handler", f"{HANDLERS}.WhoIsCalling",
                    "--port", sslPort(certificates), "--tls-client-ca", str(certificates.ca))
    where = server.serving().group("where")
    found = re.match(r"ssl:127\.0\.0\.1:(\d+) \(client certificates required\)$", where)
    assert found, where
    number = int(found.group(1))
    got = await inThread(apacheCall, number, certificates, certificates.alice)
    assert got["identity"] == "alice" and got["subject"] == "CN=alice,O=txthrift"
    client: Any = await within(txthrift.connect(
        reactor, tlsClient(number, certificates, certificates.alice), Echo, timeout=WAIT))
    try:
        assert json.loads(await client.getData("x"))["identity"] == "alice"
    finally:
        await client.close()
    for client in (None, certificates.mallory):
        with pytest.raises((TTransportException, ssl.SSLError, OSError)):
            await inThread(apacheCall, number, certificates, client)
    server.waitFor("refused TLS from 127.0.0.1:.*")
    server.waitFor("refused TLS from 127.0.0.1:.*", timeout=WAIT)
    assert "Traceback" not in server.output


def test_twistdTlsClientCaMistakesAreOneLine(certificates: Certificates,
                                             tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    for args, message in (
            (["--port", "tcp:0", "--tls-client-ca", str(certificates.ca)],
             "--tls-client-ca: no ssl: port to require client certificates on"),
            (["--port", sslPort(certificates), "--tls-client-ca", str(empty)],
             "holds no PEM certificate")):
        done = run("thrift", "--handler", f"{HANDLERS}.WhoIsCalling", *args)
        assert done.returncode != 0
        said = done.stdout + done.stderr
        assert f"twistd thrift: {message}" in said or message in said.splitlines()[-1], said
        assert "Traceback" not in said


def test_anSslClientStringThatVerifiesNothingIsRefused() -> None:
    with pytest.raises(ValueError, match="verifies nothing without caCertsDir="):
        txthrift.connect(reactor, "ssl:host=127.0.0.1:port=1", Echo)


@pytest_twisted.ensureDeferred
async def test_aThriftServiceRequiresClientCertificatesOnItsSslPorts(
        certificates: Certificates) -> None:
    service = txthrift.thriftService(WhoIsCalling(), port=[sslPort(certificates)],
                                     tls_client_ca=str(certificates.ca), reactor=reactor)
    service.startService()
    try:
        client: Any = await within(txthrift.connect(
            reactor, tlsClient(service.ports[0].getHost().port,  # type: ignore[attr-defined]
                               certificates,
                               certificates.alice), Echo, timeout=WAIT))
        try:
            assert json.loads(await client.getData("x"))["identity"] == "alice"
        finally:
            await client.close()
    finally:
        await service.stopService()
    with pytest.raises(ValueError, match="tls_client_ca: no ssl: port string"):
        txthrift.thriftService(WhoIsCalling(), port="tcp:0", tls_client_ca=str(certificates.ca))


@pytest_twisted.ensureDeferred
async def test_httpsCallersPresentCertificatesToo(certificates: Certificates) -> None:
    """
    Over HTTPS the same: the site refuses clients without a certificate,
    and the handler sees the one presented (here through a
    C{contextFactory} that presents it).
    """
    from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
    from twisted.web.client import BrowserLikePolicyForHTTPS
    from twisted.web.iweb import IPolicyForHTTPS
    from zope.interface import implementer

    cert, key = certificates.alice
    mine = PrivateCertificate.loadPEM(cert.read_bytes() + key.read_bytes())
    trust = Certificate.loadPEM(certificates.ca.read_bytes())

    @implementer(IPolicyForHTTPS)
    class Presenting(BrowserLikePolicyForHTTPS):
        def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
            return optionsForClientTLS(hostname.decode(), trustRoot=trust,
                                       clientCertificate=mine)

    port: Any = await txthrift.serve(reactor, sslPort(certificates), WhoIsCalling(),
                                transport="http", tls_client_ca=str(certificates.ca))
    url = f"https://127.0.0.1:{port.getHost().port}/"
    try:
        client: Any = await txthrift.connect(reactor, url, Echo, timeout=WAIT,
                                        contextFactory=Presenting())
        try:
            got = json.loads(await client.getData("x"))
        finally:
            await client.close()
        anonymous: Any = await txthrift.connect(reactor, url, Echo, timeout=WAIT,
                                           trustRoot=str(certificates.ca))
        try:
            with pytest.raises(Exception) as refused:
                await anonymous.getData("x")
        finally:
            await anonymous.close()
    finally:
        await port.stopListening()
    assert got["identity"] == "alice" and got["subject"] == "CN=alice,O=txthrift"
    assert not isinstance(refused.value, txthrift.CallTimeout)
