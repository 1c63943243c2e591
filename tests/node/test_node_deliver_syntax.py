"""C-STORE delivery of objects of one SOP class in different transfer syntaxes (the RLE Lossless Grad-CAM SEG beside
the uncompressed binary SEG): each file travels in its own syntax where the destination accepts it (a real
Orthanc), and decompressed where the destination accepts only uncompressed syntaxes (a pynetdicom SCP)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
from pynetdicom import AE, evt

from node.deliver import send_rows
from node.settings import Destination
from node.spool import Spool, header_from_dataset, write_atomic
from tests.node.nodetest_data import make_image
from tests.services import free_port

pytestmark = pytest.mark.integration
SC = "1.2.840.10008.5.1.4.1.1.7"


def _queue(spool: Spool) -> tuple[str, dict[str, pydicom.Dataset]]:
    """A study in the spool with two secondary captures queued for "pacs": one RLE Lossless, one uncompressed."""
    src = make_image()
    buf = BytesIO()
    src.save_as(buf, enforce_file_format=True)
    spool.store(buf.getvalue(), header_from_dataset(pydicom.dcmread(BytesIO(buf.getvalue()))))
    _, gen = spool.begin_analysis(src.StudyInstanceUID)
    objs, sent = [], {}
    for k, compressed in enumerate((True, False)):
        ds = make_image(src.StudyInstanceUID, modality="OT", sop_class=SC, seed=k + 1)
        if compressed:
            ds.compress(RLELossless, encoding_plugin="pylibjpeg")
        path = spool.outbox_path(src.StudyInstanceUID, gen, ds.SOPInstanceUID)
        b = BytesIO()
        ds.save_as(b, enforce_file_format=True)
        write_atomic(b.getvalue(), path, spool.tmp_dir)
        objs.append((ds.SOPInstanceUID, ds.SOPClassUID, path))
        sent[str(ds.SOPInstanceUID)] = pydicom.dcmread(path)
    assert spool.finish_analysis(src.StudyInstanceUID, gen, objs, ["pacs"])
    return src.StudyInstanceUID, sent


def test_each_syntax_to_orthanc_as_it_is(tmp_path: Path, orthanc_factory) -> None:
    pacs = orthanc_factory(aet="PACS")
    spool = Spool(tmp_path / "spool")
    study, sent = _queue(spool)
    dest = Destination(name="pacs", kind="dimse", ae_title="PACS", host="127.0.0.1", port=pacs.dicom_port)
    send_rows(dest, spool.pending_outbox(study, "pacs"), spool)
    assert {r.state for r in spool.outbox(study)} == {"sent"}
    for uid, ds in sent.items():
        (found,) = requests.post(pacs.http_url + "/tools/lookup", data=uid, timeout=30).json()
        stored = pydicom.dcmread(BytesIO(requests.get(f"{pacs.http_url}/instances/{found['ID']}/file",
                                                      timeout=30).content))
        assert stored.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
        assert np.array_equal(stored.pixel_array, ds.pixel_array)


def test_compressed_file_goes_decompressed_where_only_uncompressed_is_accepted(tmp_path: Path) -> None:
    received: list[pydicom.Dataset] = []

    def on_store(event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append(ds)
        return 0x0000

    ae = AE(ae_title="PLAIN")
    ae.add_supported_context(SC, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        spool = Spool(tmp_path / "spool")
        study, sent = _queue(spool)
        dest = Destination(name="pacs", kind="dimse", ae_title="PLAIN", host="127.0.0.1", port=port)
        send_rows(dest, spool.pending_outbox(study, "pacs"), spool)
    finally:
        server.shutdown()
    assert {r.state for r in spool.outbox(study)} == {"sent"}
    assert sorted(str(d.SOPInstanceUID) for d in received) == sorted(sent)
    for ds in received:
        assert ds.file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        assert np.array_equal(ds.pixel_array, sent[str(ds.SOPInstanceUID)].pixel_array)
    assert any(d.file_meta.TransferSyntaxUID == RLELossless for d in sent.values())
