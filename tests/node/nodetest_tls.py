"""A throw-away test PKI made with the openssl CLI at test time (never committed): CAs and leaf certificates for
127.0.0.1 / localhost, PEM files in a temporary folder."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

LEAF_EXTENSIONS = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = IP:127.0.0.1, DNS:localhost
"""


def _openssl(*args: str, cwd: Path) -> None:
    run = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {run.stderr}")


@dataclass(frozen=True)
class Leaf:
    """A certificate and its key; ``pem`` has both (Orthanc's HTTPS wants one file)."""

    certificate: Path
    key: Path
    pem: Path


@dataclass(frozen=True)
class Ca:
    name: str
    certificate: Path
    key: Path
    folder: Path

    def issue(self, name: str, common_name: str) -> Leaf:
        """A leaf certificate for ``common_name`` (SAN 127.0.0.1 and localhost, server and client use)."""
        d = self.folder
        ext = d / f"{name}.ext"
        ext.write_text(LEAF_EXTENSIONS)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/O=cspine tests/CN={common_name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", self.certificate.name, "-CAkey", self.key.name,
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-sha256", "-extfile", ext.name, cwd=d)
        pem = d / f"{name}.pem"
        pem.write_text((d / f"{name}.crt").read_text() + (d / f"{name}.key").read_text())
        return Leaf(d / f"{name}.crt", d / f"{name}.key", pem)


def make_ca(folder: Path, name: str) -> Ca:
    """A self-signed CA ``name`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "2", "-sha256", "-subj", f"/O=cspine tests/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=folder)
    return Ca(name, folder / f"{name}.crt", folder / f"{name}.key", folder)


@pytest.fixture(scope="module", name="pki")
def pki_fixture(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """CA ``a`` (trusted by everyone) with node, client and Orthanc certificates; CA ``b`` with a rogue client."""
    d = tmp_path_factory.mktemp("pki")
    a, b = make_ca(d, "ca-a"), make_ca(d, "ca-b")
    return SimpleNamespace(a=a, b=b, node=a.issue("node", "cspine-node"), client=a.issue("client", "storescu-a"),
                           orthanc=a.issue("orthanc", "orthanc"), rogue=b.issue("rogue", "rogue-sender"))
