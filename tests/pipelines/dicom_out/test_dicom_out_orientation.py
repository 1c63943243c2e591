"""A radiograph without Patient Orientation (or with it empty) still gets its results encoded: highdicom's Image
Library cannot describe it (TID 1603 needs the two orientation values), so it is left out of the library and kept in
the SR's evidence and coordinates. Before, such a DX made SR encoding fail and the node dead-lettered the study."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from pipelines.dicom_out import encode
from pipelines.dicom_out.example import phantom_example
from pipelines.dicom_out.sr import library_images
from pipelines.results import View
from pipelines.study import Study


def _library_uids(sr: pydicom.Dataset) -> set[str]:
    library = next(i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "111028")
    return {img.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            for group in library.ContentSequence for img in group.ContentSequence if img.ValueType == "IMAGE"}


def test_radiograph_without_patient_orientation_is_reported(tmp_path: Path) -> None:
    study, result = phantom_example(7, tmp_path / "study", shape=(320, 288))
    by_view = {i.view: i.image_uid for i in result.images}
    edited = {by_view[View.NEUTRAL]: None, by_view[View.FLEXION]: ""}  # removed / present but empty
    for inst in study.instances:
        if inst.sop_instance_uid in edited:
            ds = pydicom.dcmread(inst.path)
            if edited[inst.sop_instance_uid] is None:
                del ds.PatientOrientation
            else:
                ds.PatientOrientation = ""
            ds.save_as(inst.path, enforce_file_format=True)
    study = Study.from_paths([i.path for i in study.instances])[0]

    objects = encode(study, result, now=datetime(2026, 1, 2, tzinfo=UTC))
    sr = next(o for o in objects if o.Modality == "SR")
    assert _library_uids(sr) == {by_view[View.EXTENSION]}
    evidence = {s.ReferencedSOPInstanceUID for e in sr.CurrentRequestedProcedureEvidenceSequence
                for series in e.ReferencedSeriesSequence for s in series.ReferencedSOPSequence}
    assert evidence == set(by_view.values())
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    groups = hd.sr.srread(path).content.get_planar_roi_measurement_groups()
    cobb = [g for g in groups if g.tracking_identifier == "Vertebral corners C2-C7 [neutral]"]  # Cobb first
    assert len(cobb) == 1 and cobb[0].get_measurements()[0].value == pytest.approx(
        next(m.value for m in result.measurements if m.key == "cobb_c2_c7" and m.view == View.NEUTRAL), abs=1e-6)
    assert {o.Modality for o in objects} >= {"SR", "SEG", "PR"}


def test_library_images_keeps_describable_images_only() -> None:
    def ds(modality: str, **kw: object) -> pydicom.Dataset:
        d = pydicom.Dataset()
        d.Modality = modality
        for k, v in kw.items():
            setattr(d, k, v)
        return d

    ok = ds("DX", PatientOrientation=["A", "F"], ImagerPixelSpacing=[0.1, 0.1])
    mr = ds("MR")
    no_spacing = ds("CR", PatientOrientation=["P", "F"])
    one_value = ds("DX", PatientOrientation=["A"], ImagerPixelSpacing=[0.1, 0.1])
    assert library_images([ok, mr, no_spacing, one_value]) == [ok, mr]
