"""
TLS that asks who is calling: server endpoints that require a client
certificate signed by a given CA, refusing any other during the handshake.

Twisted's C{ssl:} server endpoint cannot verify clients, so this adds its
mutual-TLS twin, C{mtls:}: the same options (C{privateKey}, C{certKey},
C{extraCertChain}, C{dhParameters}, C{sslmethod}, C{interface},
C{backlog}) and a C{clientCA} file.  It is an endpoint string parser
(named by C{twisted/plugins/txthrift_plugin.py}), so every place taking a
server endpoint string takes it; L{requireClientCertificates} turns an
C{ssl:} string into it, for C{tls_client_ca} and C{--tls-client-ca}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import TCP4ServerEndpoint, wrapServerTLS
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from ._extras import fromExtra

__all__ = ["PREFIX", "certificatesIn", "mutualTLSEndpoint", "requireClientCertificates",
           "requiringClientCertificates", "tlsFailure"]

#: The prefix of the endpoint strings of L{mutualTLSEndpoint}.
PREFIX = "mtls"


def _quoted(value: str) -> str:
    """
    A value as an endpoint string holds it: its colons, equals signs and
    backslashes escaped.
    """
    return "".join("\\" + c if c in ":=\\" else c for c in value)


def requireClientCertificates(description: str, clientCA: str) -> str:
    """
    An C{ssl:} (or C{mtls:}) server endpoint string as one that requires
    client certificates signed by the CAs in the PEM file C{clientCA}.

    @raise ValueError: for a string of another kind.
    """
    prefix, _, rest = description.partition(":")
    if prefix not in ("ssl", PREFIX):
        raise ValueError(f"client certificates need TLS: {description!r} is not an ssl: endpoint")
    return f"{PREFIX}:{rest}:clientCA={_quoted(clientCA)}"


def requiringClientCertificates(ports: list[Any], clientCA: str) -> bool:
    """
    Make each C{ssl:} string of C{ports} (a list of port specs, changed in
    place) require client certificates signed by the CAs of C{clientCA}.

    @return: whether there was any.
    """
    found = False
    for index, port in enumerate(ports):
        if isinstance(port, str) and port.startswith("ssl:"):
            ports[index] = requireClientCertificates(port, clientCA)
            found = True
    return found


def certificatesIn(path: str, option: str) -> list[Any]:
    """
    The certificates of a PEM file, as OpenSSL's C{X509} objects.

    @param option: the option that named the file, for the error.

    @raise ValueError: for a file holding none.
    """
    from cryptography.x509 import load_pem_x509_certificates
    from OpenSSL.crypto import X509

    try:
        found = load_pem_x509_certificates(FilePath(path).getContent())
    except ValueError:
        found = []
    if not found:
        raise ValueError(f"{option}: {path!r} holds no PEM certificate")
    return [X509.from_cryptography(certificate) for certificate in found]


def mutualTLSEndpoint(reactor: Any, port: str, privateKey: str = "server.pem",
                      certKey: str | None = None, clientCA: str | None = None,
                      sslmethod: str | None = None, interface: str = "", backlog: str = "50",
                      extraCertChain: str | None = None,
                      dhParameters: str | None = None) -> IStreamServerEndpoint:
    """
    A TCP server endpoint speaking TLS as C{ssl:} does with the same
    options, that refuses, during the handshake, a client without a
    certificate signed by one of the CAs in the PEM file C{clientCA}.

    @raise ValueError: without C{clientCA}, or for files that hold nothing
        usable.
    @raise ImportError: without pyOpenSSL (C{twisted[tls]}).
    """
    SSL = fromExtra("tls", "TLS needs pyOpenSSL", "OpenSSL.SSL")
    from twisted.internet.ssl import CertificateOptions, DiffieHellmanParameters, PrivateCertificate

    if clientCA is None:
        raise ValueError("mtls: needs clientCA=, the PEM file of the CAs client certificates"
                         " must be signed by")
    keyPEM = FilePath(privateKey).getContent()
    certPEM = FilePath(certKey if certKey is not None else privateKey).getContent()
    ours = PrivateCertificate.loadPEM(certPEM + b"\n" + keyPEM)
    options: dict[str, Any] = {}
    if sslmethod is not None:
        options["method"] = getattr(SSL, sslmethod)
    if extraCertChain is not None:
        options["extraCertChain"] = certificatesIn(extraCertChain, "extraCertChain")
    if dhParameters is not None:
        options["dhParameters"] = DiffieHellmanParameters.fromFile(FilePath(dhParameters))
    creator = CertificateOptions(privateKey=ours.privateKey.original,
                                 certificate=ours.original, verify=True,
                                 caCerts=certificatesIn(clientCA, "clientCA"), requireCertificate=True,
                                 **options)
    return wrapServerTLS(creator, TCP4ServerEndpoint(reactor, int(port), int(backlog),
                                                     interface))



def tlsFailure(reason: Failure) -> str | None:
    """
    Why TLS ended a connection (a handshake refused, a certificate not
    verified), in OpenSSL's words; C{None} when it was not TLS.
    """
    try:
        from OpenSSL.SSL import Error
    except ImportError:  # pragma: no cover - no pyOpenSSL, no TLS
        return None
    if not isinstance(reason.value, Error):
        return None
    details = reason.value.args[0] if reason.value.args else []
    said = [str(detail[-1]) for detail in details if isinstance(detail, tuple) and detail]
    return "; ".join(said) or str(reason.value) or "TLS failed"
