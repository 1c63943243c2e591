"""kill -9 of ``cspine-node serve`` in the middle of a study: every acknowledged instance survives, and
after a restart the study is completed and analysed (the real pipelines, embedded broker and worker)."""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from node.spool import Spool
from tests.node.nodetest_data import make_image, phantom_study_files, write_image
from tests.node.nodetest_proc import serve, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Sender(threading.Thread):
    """Sends files in one association, recording the SOP Instance UIDs acknowledged with Success.

    After ``pause_after`` acknowledged instances it waits (association open) until ``resume`` is set, so that
    the test's kill lands mid-study however fast the machine is."""

    def __init__(self, port: int, files: list[Path], pause_after: int = 6):
        super().__init__(daemon=True)
        self.port, self.files, self.pause_after = port, files, pause_after
        self.acked: list[str] = []
        self.progress = threading.Event()
        self.resume = threading.Event()

    def run(self) -> None:
        ae = AE("PACS")
        for f in self.files:
            ae.add_requested_context(str(pydicom.dcmread(f, stop_before_pixels=True).SOPClassUID))
        assoc = ae.associate("127.0.0.1", self.port, ae_title="CSPINE")
        try:
            for f in self.files:
                if not assoc.is_established:
                    return
                status = assoc.send_c_store(f)
                if status and status.get("Status") == 0:
                    self.acked.append(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID))
                    self.progress.set()
                    if len(self.acked) == self.pause_after:
                        self.resume.wait(60)
        except Exception:  # noqa: BLE001 - the node is killed under us
            return
        finally:
            if assoc.is_established:
                assoc.release()


def test_kill9_mid_study_loses_nothing(tmp_path: Path) -> None:
    study_uid, views = phantom_study_files(tmp_path / "phantom", seed=3)
    other_study = pydicom.uid.generate_uid()
    filler = [write_image(tmp_path / "filler" / f"{i}.dcm",
                          make_image(other_study, sop_class="1.2.840.10008.5.1.4.1.1.4", modality="MR", rows=512,
                                     cols=512, seed=i, orientation=(1, 0, 0, 0, 1, 0)))
              for i in range(30)]
    files = views[:2] + filler + views[2:]
    spool_dir = tmp_path / "spool"
    node = serve(spool_dir, tmp_path / "serve1.log", CSPINE_STABLE_AGE_S="1")
    sender = Sender(node.port, files)
    sender.start()
    wait_for(lambda: len(sender.acked) >= 6, 120, "six acknowledged instances")
    node.kill9()  # mid-association, mid-study
    sender.resume.set()
    sender.join(timeout=60)
    acked = set(sender.acked)
    assert 6 <= len(acked) < len(files), "the kill must land in the middle of the study"

    spool = Spool(spool_dir)  # before any recovery: what was acknowledged is indexed and readable
    indexed = spool.instance_uids()
    assert acked <= indexed
    for study in (study_uid, other_study):
        for row in spool.instance_rows(study):
            assert pydicom.dcmread(row["path"]).SOPInstanceUID == row["sop_instance_uid"]
    spool.close()

    node = serve(spool_dir, tmp_path / "serve2.log", CSPINE_STABLE_AGE_S="1")
    try:
        # The sender re-sends what was not acknowledged (as a PACS does); duplicates are harmless.
        resend = Sender(node.port, files, pause_after=0)
        resend.start()
        resend.join(timeout=300)
        assert set(resend.acked) == {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
        spool = Spool(spool_dir)
        row = wait_for(lambda: (r := spool.study(study_uid)) and (r.state == "failed" or (
            r.state == "done" and r.analyzed_generation == r.generation)) and r, 600, "the study to be analysed")
        assert row.state == "done", f"{row.state}: {row.reason}\n{node.log()}"
        assert row.n_instances == 3 and "xray" in row.summary
        assert spool.instance_uids() == indexed | set(resend.acked)
        other = wait_for(lambda: (r := spool.study(other_study)) and r.state == "skipped" and r, 120,
                         "the axial MR study to be skipped")
        assert "not sagittal" in other.reason
        out_dir = spool.outbox_path(study_uid, row.analyzed_generation, "x").parent
        assert any(p.suffix == ".dcm" for p in out_dir.iterdir())
        logs = (tmp_path / "serve1.log").read_text() + node.log_path.read_text()
        assert "SECRET-ID-123" not in logs and "Secret" not in logs  # the filler's PatientID / PatientName
    finally:
        node.stop()
