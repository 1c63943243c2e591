"""DCMTK ``storescu`` as the sender: plain and compressed files arrive in the spool; a foreign AE is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from node.scp import StorageSCP
from node.settings import NodeSettings
from node.spool import Spool
from tests.node.nodetest_data import make_image, write_image

pytestmark = pytest.mark.integration


def test_storescu_sends_a_study(tmp_path: Path, require) -> None:
    require("storescu")
    settings = NodeSettings(spool_dir=tmp_path / "spool", host="127.0.0.1", port=0, metrics_port=None,
                            allowed_calling_aets=["STORESCU", "ORTHANC"])
    spool = Spool(settings.spool_dir)
    scp = StorageSCP(settings, spool)
    scp.start()
    try:
        study = pydicom.uid.generate_uid()
        series = pydicom.uid.generate_uid()
        files = [write_image(tmp_path / f"plain{i}.dcm", make_image(study, series_uid=series, seed=i))
                 for i in range(3)]
        run = subprocess.run(["storescu", "-aet", "STORESCU", "-aec", "CSPINE", "127.0.0.1", str(scp.port),
                              *map(str, files)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        # storescu proposes one compressed syntax per run (-xr RLE, -xt JPEG-LS lossless, -xv JPEG 2000 lossless)
        for ts, flag in ((RLELossless, "-xr"), (JPEGLSLossless, "-xt"), (JPEG2000Lossless, "-xv")):
            ds = make_image(study, series_uid=series, seed=7)
            ds.compress(ts)
            f = write_image(tmp_path / f"c{flag}.dcm", ds)
            files.append(f)
            run = subprocess.run(["storescu", flag, "-aet", "STORESCU", "-aec", "CSPINE", "127.0.0.1",
                                  str(scp.port), str(f)], capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stderr
        expected = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
        assert spool.instance_uids(study) == expected
        for row in spool.instance_rows(study):
            ds = pydicom.dcmread(row["path"])
            assert ds.pixel_array.shape == (64, 64)
        tss = {r["transfer_syntax"] for r in spool.instance_rows(study)}
        assert {RLELossless, JPEGLSLossless, JPEG2000Lossless} <= tss

        refused = subprocess.run(["storescu", "-aet", "STRANGER", "-aec", "CSPINE", "127.0.0.1", str(scp.port),
                                  str(files[0])], capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0
        assert "Rejected" in refused.stderr or "rejected" in refused.stderr.lower()
    finally:
        scp.stop()
