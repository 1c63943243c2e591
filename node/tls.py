"""DICOM TLS with Python's ``ssl``: the SCP's server context, the DIMSE/STOW client contexts, the peer's identity.

The profile is Python's default (``ssl.SSLContext`` with ``PROTOCOL_TLS_SERVER`` / ``PROTOCOL_TLS_CLIENT``): TLS 1.2
or 1.3 only, Python's cipher list at OpenSSL ``@SECLEVEL=2`` (ECDHE/DHE key exchange with AES-GCM, ChaCha20-Poly1305
or AES-CBC with SHA-256/384; no anonymous, NULL, RC4, 3DES or SHA-1 suites), TLS compression off: within the BCP 195
profiles of DICOM PS3.15 B.9 (the negotiated suites are listed in ``docs/conformance_statement.md``).

The SCP's handshake is *not* done in the accepting thread (pynetdicom does it there, so one client that never finishes
its handshake would block every new connection): ``node.connections.GuardedAssociationServer`` wraps the accepted
socket with ``do_handshake_on_connect=False`` and runs the handshake in the connection's own thread, under the
A-ASSOCIATE-RQ deadline and the per-address cap of pending connections.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class TlsConfigError(ValueError):
    """A certificate, key or CA bundle could not be loaded (the message names the file and OpenSSL's reason)."""


def _load_chain(ctx: ssl.SSLContext, certificate: Path, private_key: Path | None) -> None:
    try:
        ctx.load_cert_chain(str(certificate), str(private_key) if private_key else None)
    except (OSError, ssl.SSLError) as e:
        raise TlsConfigError(f"TLS certificate {certificate} / key {private_key}: {e}") from e


def _load_cas(ctx: ssl.SSLContext, ca_bundle: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=str(ca_bundle))
    except (OSError, ssl.SSLError) as e:
        raise TlsConfigError(f"TLS CA bundle {ca_bundle}: {e}") from e


def server_context(certificate: Path, private_key: Path, ca_bundle: Path | None = None, *,
                   require_peer_certificate: bool = True) -> ssl.SSLContext:
    """The SCP's context: our certificate chain and key; peer (client) certificates checked against ``ca_bundle``.

    ``require_peer_certificate`` (mutual TLS, needs ``ca_bundle``): a client without a certificate signed by one of
    those CAs fails the handshake. Without it a certificate is checked when offered (``ca_bundle`` given) or not
    asked for at all."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MINIMUM_VERSION
    _load_chain(ctx, certificate, private_key)
    if ca_bundle is not None:
        _load_cas(ctx, ca_bundle)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_peer_certificate else ssl.CERT_OPTIONAL
    elif require_peer_certificate:
        raise TlsConfigError("require_peer_certificate needs a CA bundle for the peer certificates")
    return ctx


def client_context(ca_bundle: Path | None = None, certificate: Path | None = None, private_key: Path | None = None,
                   *, check_hostname: bool = True) -> ssl.SSLContext:
    """A client's context: the server certificate checked against ``ca_bundle`` (None: the system's CAs) and, with
    ``check_hostname``, against the host name or IP address connected to; ``certificate``/``private_key``: our
    client certificate for mutual TLS."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.check_hostname = check_hostname
    if ca_bundle is not None:
        _load_cas(ctx, ca_bundle)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if certificate is not None:
        _load_chain(ctx, certificate, private_key)
    return ctx


def loopback_client_context(certificate: Path, private_key: Path) -> ssl.SSLContext:
    """The node's own health check over TLS on 127.0.0.1: it presents the node's certificate (accepted under mutual
    TLS when ``tls_ca_bundle`` holds its issuer) and does not check the server's, which is this node."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    _load_chain(ctx, certificate, private_key)
    return ctx


def peer_subject(sock: socket.socket | None) -> str:
    """The subject of the peer's verified certificate as ``CN=...,O=...`` (``""``: plain TCP or no certificate)."""
    if not isinstance(sock, ssl.SSLSocket):
        return ""
    try:
        cert = sock.getpeercert()
    except (ValueError, OSError):  # handshake not done, or the socket is closed
        return ""
    if not cert:
        return ""
    return ",".join(f"{_SHORT.get(k, k)}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)


def tls_version(sock: socket.socket | None) -> str:
    """``TLSv1.3`` etc. of an established TLS connection (``""``: plain TCP)."""
    if not isinstance(sock, ssl.SSLSocket):
        return ""
    try:
        return sock.version() or ""
    except (ValueError, OSError):
        return ""


def handshake_failure(host: str, port: int, ctx: ssl.SSLContext, *, server_hostname: str | None = None,
                      timeout_s: float = 10.0) -> str:
    """Why a TLS handshake with ``host:port`` fails (``""``: it succeeds). pynetdicom logs a failed client
    handshake but reports only "association failed"; this opens one more connection to name the reason."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw, \
                ctx.wrap_socket(raw, server_hostname=server_hostname or host):
            return ""
    except ssl.SSLCertVerificationError as e:
        return f"TLS: server certificate not accepted: {e.verify_message or e.reason}"
    except ssl.SSLError as e:
        return f"TLS: handshake failed: {e.reason or e}"
    except OSError as e:
        return f"TLS: {type(e).__name__}: {e}"


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
          "localityName": "L", "stateOrProvinceName": "ST", "emailAddress": "emailAddress"}
