"""The worker's encoding warm-up: a synthetic 64 x 64 result encodes (every object kind) without a phantom."""

from __future__ import annotations

from pydicom.dataset import Dataset

from pipelines.dicom_out import encode
from pipelines.dicom_out.warmup import _radiograph, _result, warm_up
from pipelines.study import Study


def test_warm_up_encodes_every_kind(tmp_path) -> None:  # noqa: ANN001
    ds: Dataset = _radiograph(tmp_path / "x.dcm")
    (study,) = Study.from_paths([tmp_path / "x.dcm"])
    kinds = sorted({str(o.Modality) for o in encode(study, _result(ds))})
    assert kinds == ["DOC", "OT", "PR", "SEG", "SR"]
    assert sum(1 for o in encode(study, _result(ds)) if o.Modality == "SEG") == 2  # binary + Grad-CAM
    assert warm_up() > 0
