"""DICOM TLS against real peers: DCMTK ``storescu``/``echoscu +tls`` to the node (a good client certificate is stored,
one from another CA is refused, plain TCP on a TLS-only port is refused, a stalled handshake blocks nobody), and the
node delivering to Orthanc over DICOM TLS and HTTPS STOW-RS with basic authentication (a server certificate from the
wrong CA fails with a clear error and the results stay pending). The PKI is made with the openssl CLI at test time."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest

from node import tls
from node.deliver import DeliveryError, send_rows
from node.health import check_node
from node.scp import StorageSCP
from node.scu import AssociationFailed, echo
from node.settings import Destination, NodeSettings
from node.spool import Spool
from tests.node.nodetest_data import make_image, write_image
from tests.node.nodetest_tls import pki_fixture  # noqa: F401 - the fixture ``pki``
from tests.services import start_https_proxy

pytestmark = pytest.mark.integration


@pytest.fixture
def start_scp(tmp_path: Path, pki: SimpleNamespace) -> Iterator:
    started: list[StorageSCP] = []

    def start(**kw) -> StorageSCP:
        settings = NodeSettings(spool_dir=tmp_path / f"spool{len(started)}", host="127.0.0.1", port=0,
                                metrics_port=None, tls_certificate=pki.node.certificate,
                                tls_private_key=pki.node.key, tls_ca_bundle=pki.a.certificate, **kw)
        scp = StorageSCP(settings, Spool(settings.spool_dir))
        scp.start()
        started.append(scp)
        return scp

    yield start
    for s in started:
        s.stop()


def _dcmtk(tool: str, port: int, *args: str, cert=None, ca: Path | None = None, aet: str = "STORESCU"
           ) -> subprocess.CompletedProcess:
    tls_args = ["+tls", str(cert.key), str(cert.certificate), "+cf", str(ca)] if cert is not None else []
    return subprocess.run([tool, *tls_args, "-aet", aet, "-aec", "CSPINE", "127.0.0.1", str(port), *args],
                          capture_output=True, text=True, timeout=60)


def test_storescu_over_tls_good_certificate_stored_foreign_certificate_refused(
        tmp_path: Path, pki: SimpleNamespace, start_scp, require) -> None:
    require("storescu", "echoscu")
    scp = start_scp(tls_port=0, allowed_calling_aets=["STORESCU"])
    assert scp.tls_port and scp.tls_port != scp.port
    study = pydicom.uid.generate_uid()
    files = [write_image(tmp_path / f"i{i}.dcm", make_image(study, seed=i)) for i in range(3)]
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]

    run = _dcmtk("storescu", scp.tls_port, str(files[0]), str(files[1]), cert=pki.client, ca=pki.a.certificate)
    assert run.returncode == 0, run.stderr
    assert _dcmtk("echoscu", scp.tls_port, cert=pki.client, ca=pki.a.certificate).returncode == 0
    assert scp.spool.instance_uids(study) == set(uids[:2])

    rogue = _dcmtk("storescu", scp.tls_port, str(files[2]), cert=pki.rogue, ca=pki.a.certificate)
    assert rogue.returncode != 0
    plain_on_tls = _dcmtk("storescu", scp.tls_port, str(files[2]))
    assert plain_on_tls.returncode != 0
    assert scp.spool.instance_uids(study) == set(uids[:2])  # neither stored anything

    # pynetdicom as the client: our own client context, the peer subject is the node's certificate
    ctx = tls.client_context(pki.a.certificate, pki.client.certificate, pki.client.key)
    assert echo("127.0.0.1", scp.tls_port, calling_aet="STORESCU", tls_args=(ctx, "127.0.0.1")) == 0
    # the plain port is still there beside the TLS one
    assert _dcmtk("storescu", scp.port, str(files[2])).returncode == 0
    assert scp.spool.instance_uids(study) == set(uids)


def test_tls_only_refuses_plain_tcp_and_health_speaks_tls(pki: SimpleNamespace, start_scp, require) -> None:
    require("echoscu")
    scp = start_scp(tls_only=True)
    assert scp.tls_port == scp.port
    assert _dcmtk("echoscu", scp.port).returncode != 0
    assert _dcmtk("echoscu", scp.port, cert=pki.client, ca=pki.a.certificate).returncode == 0
    with pytest.raises(AssociationFailed):
        echo("127.0.0.1", scp.port, timeout_s=5)
    s = scp.settings.model_copy(update={"port": scp.port})
    (s.spool_dir / "broker" / "queue").mkdir(parents=True, exist_ok=True)
    ok, why = check_node(s, timeout_s=10)
    assert ok, why


@pytest.mark.timeout(60, method="thread")  # the failure this guards against is a listener blocked for ever
def test_stalled_tls_handshakes_do_not_block_the_listener(pki: SimpleNamespace, start_scp) -> None:
    """pynetdicom alone does the handshake in the accepting thread: one silent client would block every other."""
    deadline = 2.0
    scp = start_scp(tls_port=0, association_request_timeout_s=deadline, max_pending_per_host=4)
    socks = []
    for i in range(12):  # silent, or a partial ClientHello; three addresses, four each
        s = socket.socket()
        s.bind((f"127.0.0.{2 + i // 4}", 0))
        s.connect(("127.0.0.1", scp.tls_port))
        if i % 2:
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        socks.append(s)
    opened = time.monotonic()
    ctx = tls.client_context(pki.a.certificate, pki.client.certificate, pki.client.key)
    t0 = time.monotonic()
    assert echo("127.0.0.1", scp.tls_port, tls_args=(ctx, "127.0.0.1"), timeout_s=10) == 0
    assert time.monotonic() - t0 < 2.0
    for s in socks:  # each is closed by the node at its deadline
        s.settimeout(deadline + 3.0)
        try:
            assert s.recv(4096) == b""
        except ConnectionResetError:
            pass
        s.close()
    assert time.monotonic() - opened < deadline + 3.0


def _outbox(spool: Spool, destinations: list[str], n: int = 2) -> tuple[str, set[str]]:
    from tests.node.test_node_deliver import _results

    study, uids = _results(spool, destinations, n)
    return study, set(uids)


@pytest.fixture
def https_orthanc(tmp_path: Path, pki: SimpleNamespace, orthanc_factory, require) -> Iterator:
    """Orthanc with DICOM TLS (mutual) and basic authentication, behind nginx for HTTPS (``.https_url``)."""
    require("nginx")
    orthanc = orthanc_factory(aet="PACS", extra_config={
        "DicomTlsEnabled": True, "DicomTlsCertificate": str(pki.orthanc.certificate),
        "DicomTlsPrivateKey": str(pki.orthanc.key), "DicomTlsTrustedCertificates": str(pki.a.certificate),
        "DicomTlsRemoteCertificateRequired": True,
        "AuthenticationEnabled": True, "RegisteredUsers": {"cspine": "stow-pw-8861"},
    })
    proxy = start_https_proxy(tmp_path / "nginx", orthanc.http_url, pki.orthanc.certificate, pki.orthanc.key)
    orthanc.https_url = proxy.url
    yield orthanc
    proxy.stop()


def test_delivery_over_dicom_tls_and_https_stow_to_orthanc(tmp_path: Path, pki: SimpleNamespace,
                                                           https_orthanc) -> None:
    orthanc = https_orthanc
    spool = Spool(tmp_path / "spool")
    study, uids = _outbox(spool, ["pacs", "web"])
    dimse = dict(name="pacs", kind="dimse", ae_title="PACS", host="127.0.0.1", port=orthanc.dicom_port, tls=True,
                 tls_certificate=pki.client.certificate, tls_private_key=pki.client.key, timeout_s=20)

    # the server certificate is checked against the wrong CA: a clear error, the rows stay pending
    wrong = Destination(**dimse, tls_ca_bundle=pki.b.certificate)
    with pytest.raises(DeliveryError) as exc:
        send_rows(wrong, spool.pending_outbox(study, "pacs"), spool)
    assert "TLS: server certificate not accepted" in str(exc.value), exc.value
    spool.mark_attempt_failed(exc.value.failed_ids, str(exc.value))
    assert {r.sop_instance_uid for r in spool.pending_outbox(study, "pacs")} == uids
    # no client certificate: Orthanc refuses the handshake
    anonymous = Destination(**{**dimse, "tls_certificate": None, "tls_private_key": None},
                            tls_ca_bundle=pki.a.certificate)
    with pytest.raises(DeliveryError):
        send_rows(anonymous, spool.pending_outbox(study, "pacs"), spool)
    assert orthanc.sop_instance_uids() == set()

    good = Destination(**dimse, tls_ca_bundle=pki.a.certificate)
    send_rows(good, spool.pending_outbox(study, "pacs"), spool)
    assert spool.pending_outbox(study, "pacs") == []
    assert orthanc.sop_instance_uids() == uids

    # STOW-RS over HTTPS with basic authentication, into a second study
    study2, uids2 = _outbox(spool, ["web"])
    url = orthanc.https_url + "/dicom-web"
    no_auth = Destination(name="web", kind="stow", url=url, tls_ca_bundle=pki.a.certificate, timeout_s=20)
    with pytest.raises(DeliveryError, match="401"):
        send_rows(no_auth, spool.pending_outbox(study2, "web"), spool)
    wrong_ca = Destination(name="web", kind="stow", url=url, tls_ca_bundle=pki.b.certificate, username="cspine",
                           password="stow-pw-8861", timeout_s=20)
    with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        send_rows(wrong_ca, spool.pending_outbox(study2, "web"), spool)
    assert {r.sop_instance_uid for r in spool.pending_outbox(study2, "web")} == uids2
    good_stow = Destination(name="web", kind="stow", url=url, tls_ca_bundle=pki.a.certificate, username="cspine",
                            password="stow-pw-8861", timeout_s=20)
    send_rows(good_stow, spool.pending_outbox(study2, "web"), spool)
    assert spool.pending_outbox(study2, "web") == []
    assert orthanc.sop_instance_uids() == uids | uids2


def test_tls_settings_are_checked(pki: SimpleNamespace) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs tls_certificate"):
        NodeSettings(tls_port=2762)
    with pytest.raises(ValidationError, match="leave tls_port unset"):
        NodeSettings(tls_only=True, tls_port=2762, tls_certificate=pki.node.certificate, tls_private_key=pki.node.key,
                     tls_ca_bundle=pki.a.certificate)
    with pytest.raises(ValidationError, match="needs tls_ca_bundle"):
        NodeSettings(tls_only=True, tls_certificate=pki.node.certificate, tls_private_key=pki.node.key)
    NodeSettings(tls_only=True, tls_certificate=pki.node.certificate, tls_private_key=pki.node.key,
                 tls_require_peer_certificate=False)
    with pytest.raises(ValidationError, match="drop tls"):
        Destination(name="w", kind="stow", url="https://a/dicom-web", tls=True)
    with pytest.raises(ValidationError, match="for stow"):
        Destination(name="p", kind="dimse", ae_title="P", host="h", port=1, token="t")
    with pytest.raises(tls.TlsConfigError, match="ca-b.key"):  # a key is not a CA bundle: named in the error
        tls.client_context(pki.b.key)
