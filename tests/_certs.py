"""
Test certificates made by the C{openssl} command: a CA, a server
certificate for 127.0.0.1 and localhost signed by it, client certificates
signed by it, and a second CA with a client of its own (one the server
must refuse).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificates", "makeCertificates"]

_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
_LEAF = ("basicConstraints=critical,CA:FALSE\n"
         "keyUsage=critical,digitalSignature\n"
         "subjectKeyIdentifier=hash\n"
         "authorityKeyIdentifier=keyid,issuer\n")


@dataclass(frozen=True)
class Certificates:
    """
    Paths of PEM files; each C{(certificate, key)} pair is a PEM file each.

    @ivar trust: a folder holding only C{ca}, as Twisted's C{tls:} client
        endpoints take trust roots (C{trustRoots=}).
    """

    ca: Path
    trust: Path
    server: tuple[Path, Path]
    alice: tuple[Path, Path]
    otherCA: Path
    mallory: tuple[Path, Path]


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl("req", "-x509", *_CURVE, "-keyout", key, "-out", cert, "-days", "2",
             "-subj", f"/CN=txthrift test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def _signed(folder: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, request = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    config = folder / f"{name}.ext"
    config.write_text(extensions)
    _openssl("req", *_CURVE, "-keyout", key, "-out", request, "-subj", f"/O=txthrift/CN={name}")
    _openssl("x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", config)
    return cert, key


def makeCertificates(folder: Path) -> Certificates:
    """
    Make every certificate in C{folder}.
    """
    ca = _ca(folder, "ca")
    other = _ca(folder, "other-ca")
    trust = folder / "trust"
    trust.mkdir()
    (trust / "ca.pem").write_bytes(ca[0].read_bytes())
    server = _signed(folder, "localhost", ca, _LEAF + "extendedKeyUsage=serverAuth\n"
                     "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n")
    client = _LEAF + "extendedKeyUsage=clientAuth\n"
    return Certificates(ca=ca[0], trust=trust, server=server,
                        alice=_signed(folder, "alice", ca, client), otherCA=other[0],
                        mallory=_signed(folder, "mallory", other, client))
