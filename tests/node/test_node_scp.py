"""The Storage SCP in-process with a real pynetdicom SCU: echo, storage in every transfer syntax family,
association control, and refusal of corrupt and non-DICOM payloads (the node keeps serving)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pydicom.filereader
import pynetdicom._config
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage, Verification

from node.scp import CANNOT_UNDERSTAND, DOES_NOT_MATCH_SOP_CLASS, StorageSCP
from node.scu import AssociationFailed, echo, store_files
from node.settings import NodeSettings
from node.spool import Spool
from tests.node.nodetest_data import CR_STORAGE, DX_PRESENTATION, MR_STORAGE, make_image, write_image


class Running:
    def __init__(self, scp: StorageSCP, spool: Spool):
        self.scp, self.spool = scp, spool

    @property
    def port(self) -> int:
        return self.scp.port


@pytest.fixture
def start_scp(tmp_path: Path) -> Iterator:
    started: list[StorageSCP] = []

    def start(**kw) -> Running:
        settings = NodeSettings(spool_dir=tmp_path / f"spool{len(started)}", host="127.0.0.1", port=0,
                                metrics_port=None, **kw)
        spool = Spool(settings.spool_dir)
        scp = StorageSCP(settings, spool)
        scp.start()
        started.append(scp)
        return Running(scp, spool)

    yield start
    for s in started:
        s.stop()


def _send(node: Running, paths: list[Path], **kw) -> list[int]:
    return store_files(paths, "127.0.0.1", node.port, called_aet="CSPINE", **kw)


def test_echo(start_scp) -> None:
    node = start_scp()
    assert echo("127.0.0.1", node.port) == 0


@pytest.mark.parametrize(("sop_class", "modality"), [(DX_PRESENTATION, "DX"), (CR_STORAGE, "CR"), (MR_STORAGE, "MR"),
                                                      (SecondaryCaptureImageStorage, "DX")])
def test_store_is_on_disk_and_indexed(start_scp, tmp_path: Path, sop_class: str, modality: str) -> None:
    node = start_scp()
    ds = make_image(sop_class=sop_class, modality=modality)
    path = write_image(tmp_path / "in.dcm", ds)
    assert _send(node, [path]) == [0]
    rows = node.spool.instance_rows(ds.StudyInstanceUID)
    assert [r["sop_instance_uid"] for r in rows] == [ds.SOPInstanceUID]
    stored = pydicom.dcmread(rows[0]["path"])
    assert stored.PixelData == ds.PixelData and stored.SOPClassUID == sop_class


def _as_dx(src: Path, dst: Path) -> Path:
    """Copy a test file, relabelled as a DX image (pixel data and transfer syntax unchanged)."""
    ds = pydicom.dcmread(src)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DX_PRESENTATION
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.Modality = "DX"
    ds.save_as(dst, enforce_file_format=True)
    return dst


def _compressed_inputs(tmp_path: Path) -> list[tuple[str, Path, bool]]:
    """(name, file, decodable) for each compressed transfer syntax family."""
    out = []
    for ts in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
        ds = make_image(rows=128, cols=96, seed=3)
        ds.compress(ts)
        out.append((ts.name, write_image(tmp_path / f"{ts.name[:8]}.dcm", ds), True))
    for name, decodable in (("SC_jpeg_no_color_transform.dcm", True), ("SC_rgb_jpeg_gdcm.dcm", True),
                            ("JPEG2000.dcm", True), ("JPEGLSNearLossless_16.dcm", True),
                            ("JPEG-lossy.dcm", False)):
        out.append((name, _as_dx(Path(get_testdata_file(name)), tmp_path / name), decodable))
    return out


def test_compressed_transfer_syntaxes_are_accepted_and_decodable(start_scp, tmp_path: Path) -> None:
    node = start_scp()
    inputs = _compressed_inputs(tmp_path)
    syntaxes = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for _, p, _ in inputs}
    assert len(syntaxes) >= 7, syntaxes  # RLE, JPEG-LS lossless/near, J2K lossless/lossy, JPEG baseline/SV1/extended
    assert _send(node, [p for _, p, _ in inputs]) == [0] * len(inputs)
    for name, p, decodable in inputs:
        src = pydicom.dcmread(p)
        row = node.spool.instance_rows(src.StudyInstanceUID)[0]
        stored = pydicom.dcmread(row["path"])
        assert stored.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID, name
        assert stored.PixelData == src.PixelData, name
        if decodable:
            assert stored.pixel_array.shape == src.pixel_array.shape, name


def test_duplicate_store_is_success_and_idempotent(start_scp, tmp_path: Path) -> None:
    node = start_scp()
    path = write_image(tmp_path / "a.dcm", make_image())
    assert _send(node, [path, path]) == [0, 0]
    assert _send(node, [path]) == [0]
    study = pydicom.dcmread(path).StudyInstanceUID
    assert node.spool.study(study).n_instances == 1
    assert node.spool.study(study).generation == 1


def test_unknown_calling_ae_is_refused(start_scp, tmp_path: Path) -> None:
    node = start_scp(allowed_calling_aets=["ORTHANC"])
    path = write_image(tmp_path / "a.dcm", make_image())
    with pytest.raises(AssociationFailed, match="rejected"):
        _send(node, [path], calling_aet="INTRUDER")
    with pytest.raises(AssociationFailed, match="rejected"):
        echo("127.0.0.1", node.port, calling_aet="INTRUDER")
    assert node.spool.instance_uids() == set()
    assert _send(node, [path], calling_aet="ORTHANC") == [0]


@pytest.mark.parametrize("kw", [{"allowed_calling_aets": ["ORTHANC"]}, {"allowed_hosts": ["192.0.2.7"]}])
def test_rejection_is_permanent_calling_ae_not_recognised(start_scp, kw: dict) -> None:
    """Both allow-lists answer A-ASSOCIATE-RJ (rejected permanent, service user, calling AE not recognised)."""
    node = start_scp(**kw)
    ae = AE("INTRUDER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="CSPINE")
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)


def test_unknown_host_is_refused(start_scp, tmp_path: Path) -> None:
    node = start_scp(allowed_hosts=["192.0.2.7"])
    with pytest.raises(AssociationFailed, match="rejected"):
        echo("127.0.0.1", node.port)
    node2 = start_scp(allowed_hosts=["127.0.0.1"])
    assert echo("127.0.0.1", node2.port) == 0


def _with_payload(tmp_path: Path, name: str, payload_of) -> Path:
    """A file whose meta is valid but whose data set bytes are ``payload_of(encoded data set bytes)``."""
    src = write_image(tmp_path / f"{name}-src.dcm", make_image(rows=256, cols=256))
    raw = src.read_bytes()
    with open(src, "rb") as f:
        pydicom.filereader.read_preamble(f, False)
        pydicom.filereader._read_file_meta_info(f)
        meta_end = f.tell()
    out = tmp_path / f"{name}.dcm"
    out.write_bytes(raw[:meta_end] + payload_of(raw[meta_end:]))
    return out


def test_corrupt_and_non_dicom_payloads_are_refused_and_node_keeps_serving(
        start_scp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)  # send the bytes as they are
    node = start_scp()
    truncated = _with_payload(tmp_path, "truncated", lambda b: b[: len(b) // 2])
    garbage = _with_payload(tmp_path, "garbage", lambda b: os.urandom(len(b)))
    text = _with_payload(tmp_path, "text", lambda b: b"This is not DICOM at all, just a text report.\n" * 50)
    good = write_image(tmp_path / "good.dcm", make_image())
    statuses = _send(node, [truncated, garbage, text, good])
    assert statuses[0] == CANNOT_UNDERSTAND
    assert statuses[1] in (CANNOT_UNDERSTAND, DOES_NOT_MATCH_SOP_CLASS) and statuses[1] != 0
    assert statuses[2] in (CANNOT_UNDERSTAND, DOES_NOT_MATCH_SOP_CLASS) and statuses[2] != 0
    assert statuses[3] == 0
    assert node.spool.instance_uids() == {pydicom.dcmread(good).SOPInstanceUID}
    assert echo("127.0.0.1", node.port) == 0
    assert _send(node, [good]) == [0]


def test_sop_instance_mismatch_is_refused(start_scp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)  # request UIDs from the file meta
    node = start_scp()
    ds = make_image()
    path = write_image(tmp_path / "mismatch.dcm", ds)
    path.write_bytes(_swap_dataset_uid(path.read_bytes(), ds.SOPInstanceUID))
    assert _send(node, [path]) == [DOES_NOT_MATCH_SOP_CLASS]


def _swap_dataset_uid(raw: bytes, uid: str) -> bytes:
    """Change the last digit of the data set's SOPInstanceUID (the second occurrence; the first is the meta)."""
    first = raw.index(uid.encode())
    second = raw.index(uid.encode(), first + 1)
    end = second + len(uid) - 1
    digit = b"1" if raw[end:end + 1] != b"1" else b"2"
    return raw[:end] + digit + raw[end + 1:]


def test_max_associations_and_unsupported_class(start_scp) -> None:
    node = start_scp(max_associations=1)
    ae = AE("A")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)  # not accepted by this node
    first = ae.associate("127.0.0.1", node.port, ae_title="CSPINE")
    assert first.is_established
    try:
        assert {cx.abstract_syntax for cx in first.accepted_contexts} == {Verification}
        second = ae.associate("127.0.0.1", node.port, ae_title="CSPINE")
        assert second.is_rejected
    finally:
        first.release()


_ITEM = b"\xfe\xff\x00\xe0"


def _encapsulated_file(tmp_path: Path, name: str, items: list[bytes], frames: int = 1) -> Path:
    """An RLE Lossless DX file whose Pixel Data items are ``items`` (the first is the Basic Offset Table)."""
    ds = make_image(rows=32, cols=32)
    ds.file_meta.TransferSyntaxUID = RLELossless
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = b"".join(_ITEM + len(i).to_bytes(4, "little") + i for i in items)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return write_image(tmp_path / f"{name}.dcm", ds)


def test_encapsulated_pixel_data_without_fragments_is_refused(start_scp, tmp_path: Path) -> None:
    """The Basic Offset Table item is not a fragment: an empty BOT alone, or with only an empty fragment, or fewer
    fragments than frames, is 0xC210; a real RLE image in the same syntax is stored."""
    node = start_scp()
    good = make_image(rows=32, cols=32, seed=5)
    good.compress(RLELossless)
    files = [
        _encapsulated_file(tmp_path, "bot-only", [b""]),
        _encapsulated_file(tmp_path, "bot-offsets-only", [b"\x00\x00\x00\x00"]),
        _encapsulated_file(tmp_path, "empty-fragment", [b"", b""]),
        _encapsulated_file(tmp_path, "frames", [b"", b"\x00" * 64], frames=2),
        write_image(tmp_path / "good.dcm", good),
    ]
    assert _send(node, files) == [CANNOT_UNDERSTAND] * 4 + [0]
    assert node.spool.instance_uids() == {good.SOPInstanceUID}
