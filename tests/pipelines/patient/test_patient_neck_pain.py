"""The neck-pain recovery prediction (seed 000) in the patient-level report: inputs read from the two studies,
the finding with its probability in the TID 1500 SR and the PDF, the model in Contributing Equipment, and a
model failure that leaves a warning instead of blocking the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipelines.dicom_out.patient import PREDICTION_CODES
from pipelines.patient.assemble import build_patient_objects, dicom_clinical, merged_sources, neck_pain_inputs
from pipelines.patient.report import NECK_PAIN_KEY
from pipelines.results import AlgorithmInfo
from pipelines.study import Study
from tests.pipelines.patient.patienttest_data import mri_truth, xray_truth

SEED = 9


class FixedPredictor:
    """Stands in for ``NeckPainPredictor``: records its inputs, returns a fixed probability."""

    algorithm = AlgorithmInfo(name="test neck-pain model", version="t1", model_card="test")

    def __init__(self, p: float) -> None:
        self.p, self.seen = p, []

    def predict(self, xray, corners, mri_slice, centres, spacing, clinical):  # noqa: ANN001, ANN201
        self.seen.append((xray, corners, mri_slice, centres, spacing, clinical))
        return self.p


class Broken(FixedPredictor):
    def predict(self, *args):  # noqa: ANN002, ANN201
        raise RuntimeError("weights missing")


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from pipelines.phantoms.paired import paired_phantom_studies

    out = tmp_path_factory.mktemp("pair")
    xray_files, mri_files = paired_phantom_studies(SEED, out, outcome=True)
    (xs,), (ms,) = Study.from_paths(xray_files), Study.from_paths(mri_files)
    return {"xray": xray_truth(SEED, xray_files), "mri": mri_truth(SEED, mri_files), "xs": xs, "ms": ms, "out": out}


def _sr_groups(sr: pydicom.Dataset) -> list[pydicom.Dataset]:
    return [g for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "126010"
            for g in item.ContentSequence]


def _texts(sr: pydicom.Dataset) -> list[str]:
    return [str(c.TextValue) for item in sr.ContentSequence for c in item.get("ContentSequence", []) if c.ValueType == "TEXT"]


def test_patient_neck_pain_inputs_come_from_both_studies(studies: dict) -> None:
    results, sources, current = merged_sources(studies["ms"], {"mri": studies["mri"]}, (studies["xs"], studies["xray"]))
    assert current == "mri" and set(results) == {"xray", "mri"}
    inp = neck_pain_inputs(results["xray"], results["mri"], sources)
    assert inp.corners.shape == (24, 2) and inp.disc_centres.shape == (5, 2)
    assert inp.xray.shape == (768, 640) and 0 <= inp.xray.min() and inp.xray.max() <= 1
    assert inp.mri_slice.shape == (256, 256) and inp.mri_spacing_mm == pytest.approx(240 / 256)
    mri_hdr = pydicom.dcmread(studies["ms"].instances[0].path, stop_before_pixels=True)
    assert inp.clinical["age"] == int(str(mri_hdr.PatientAge)[:3])
    assert inp.clinical["female"] == float(mri_hdr.PatientSex == "F")
    assert inp.clinical["ndi"] is None and inp.clinical["duration_months"] is None  # not in DICOM
    assert (studies["out"] / "outcome.json").exists()


def test_patient_dicom_clinical_reads_age_and_sex() -> None:
    a, b = pydicom.Dataset(), pydicom.Dataset()
    a.PatientSex = "O"
    b.PatientBirthDate, b.StudyDate, b.PatientSex = "19600615", "20260301", "F"
    assert dicom_clinical(a, b)["age"] == 65 and dicom_clinical(a, b)["female"] == 1.0
    a.PatientAge = "071Y"
    assert dicom_clinical(a, b)["age"] == 71
    assert dicom_clinical(pydicom.Dataset()) == {"age": None, "female": None, "duration_months": None, "ndi": None, "vas": None}


def test_patient_neck_pain_probability_in_the_sr(studies: dict) -> None:
    pred = FixedPredictor(0.731)
    sr, pdf = build_patient_objects(studies["ms"], {"mri": studies["mri"]}, (studies["xs"], studies["xray"]), predictor=pred)
    assert len(pred.seen) == 1
    groups = [g for g in _sr_groups(sr) if any(
        e.ValueType == "CODE" and e.ConceptNameCodeSequence[0].CodeValue == "121071"
        and e.ConceptCodeSequence[0].CodeValue == PREDICTION_CODES[NECK_PAIN_KEY].value for e in g.ContentSequence)]
    assert len(groups) == 1
    nums = [e for e in groups[0].ContentSequence if e.ValueType == "NUM"]
    assert [float(n.MeasuredValueSequence[0].NumericValue) for n in nums] == [pytest.approx(0.731)]
    assert any(t.startswith("Postoperative neck pain recovery C2-C7: likely (p=0.731)") for t in _texts(sr))
    models = [str(e.ManufacturerModelName) for e in sr.ContributingEquipmentSequence]
    assert {"test neck-pain model", "cspine-node patient report"} <= set(models)
    assert bytes(pdf.EncapsulatedDocument).startswith(b"%PDF")


def test_patient_neck_pain_failure_is_a_warning(studies: dict) -> None:
    sr, _ = build_patient_objects(studies["ms"], {"mri": studies["mri"]}, (studies["xs"], studies["xray"]),
                                  predictor=Broken(0.5))
    texts = _texts(sr)
    assert any(t.startswith("Warning: postoperative neck pain recovery not assessed: RuntimeError") for t in texts)
    assert not any("Postoperative neck pain recovery C2-C7" in t for t in texts)
    # an X-ray result without keypoints: the model is skipped with a warning, the report is still made
    bare = type(studies["xray"])(**{**studies["xray"].__dict__, "images": [
        type(i)(**{**i.__dict__, "keypoints": []}) for i in studies["xray"].images]})
    sr, _ = build_patient_objects(studies["ms"], {"mri": studies["mri"]}, (studies["xs"], bare), predictor=FixedPredictor(0.2))
    assert any("lacks vertebral corners" in t for t in _texts(sr))


@pytest.mark.skipif(not Path("models/neck_pain/neck_pain_v1.pt").exists(), reason="weights not trained")
def test_patient_neck_pain_shipped_model_in_the_report(studies: dict, models) -> None:  # noqa: ANN001
    sr, _ = build_patient_objects(studies["ms"], {"mri": studies["mri"]}, (studies["xs"], studies["xray"]),
                                  models.neck_pain)
    (text,) = [t for t in _texts(sr) if t.startswith("Postoperative neck pain recovery C2-C7")]
    p = float(text.split("(p=")[1].split(")")[0])
    assert 0 < p < 1 and "clinical variables used: age, female" in text
    assert any("neck-pain" in str(e.ManufacturerModelName) for e in sr.ContributingEquipmentSequence)
    assert np.isfinite(p)


def test_patient_sr_is_handed_out_before_the_pdf(studies: dict) -> None:
    """``first`` gets the patient-level SR before the PDF page is rendered (the node sends it meanwhile)."""
    handed: list = []
    sr, pdf = build_patient_objects(studies["ms"], {"mri": studies["mri"]}, (studies["xs"], studies["xray"]),
                                    predictor=FixedPredictor(0.4), first=handed.append)
    assert handed == [[sr]] and pdf.Modality == "DOC"


def test_patient_neck_pain_skips_a_rejected_neutral_view(studies: dict) -> None:
    """A neutral view that failed the X-ray gates (``rejected``) gives no keypoints to the neck-pain model: the
    prediction is not made and the report says why, instead of a probability built on untrusted corners."""
    from pipelines.results import View

    gated = type(studies["xray"])(**{**studies["xray"].__dict__, "images": [
        type(i)(**{**i.__dict__, "rejected": "implausible anatomy: C3 overlaps C4" if i.view == View.NEUTRAL else ""})
        for i in studies["xray"].images]})
    pred = FixedPredictor(0.9)
    sr, _ = build_patient_objects(studies["ms"], {"mri": studies["mri"]}, (studies["xs"], gated), predictor=pred)
    assert pred.seen == []
    texts = _texts(sr)
    assert any("neutral radiograph's keypoints are not trusted (implausible anatomy: C3 overlaps C4)" in t for t in texts)
    assert not any("Postoperative neck pain recovery C2-C7" in t for t in texts)
