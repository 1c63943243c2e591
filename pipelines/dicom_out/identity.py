"""Identity of the result objects: UIDs, series, instance numbers, equipment, research statement.

Policy (what a re-analysis of the same study does):

* Each result kind (SR, SEG, GSPS, report image, report PDF, explanation map) of each pipeline lives in its own **result series** whose
  SeriesInstanceUID is derived deterministically from the source StudyInstanceUID, the pipeline and the
  kind (a UUID v5 under a fixed project namespace, written as ``2.25.<int>``). A re-analysis of the same
  study therefore lands in the *same* series.
* Every object gets a **new random SOPInstanceUID** (never reused, so an archive never sees two
  different objects under one UID).
* InstanceNumber is the run number: seconds since 2024-01-01 UTC at encoding time (plus the object's
  index within its series). A re-analysis has a higher InstanceNumber, so viewers that show the newest
  instance of a series (OHIF shows the last SR instance sorted by InstanceNumber) show the newest result.
* When the study already holds an earlier SR of that series, the new SR lists it in the Predecessor
  Documents Sequence (highdicom ``previous_versions``).
* SeriesNumber is fixed per pipeline and kind (``SERIES_NUMBERS``) so the series sort at the end.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes

from pipelines.dicom_out.codes import PROCESSING_ALGORITHM
from pipelines.results import AlgorithmInfo

NAMESPACE = uuid.UUID("5b0f9a8e-2f0c-4c8e-9a52-6c2d1f3f7a10")
"""Project namespace for UUID v5 derived series UIDs (never change it: series continuity depends on it)."""

KINDS = ("sr", "seg", "pr", "report", "pdf", "map")
SERIES_NUMBERS: dict[tuple[str, str], int] = {
    ("xray", "sr"): 9901,
    ("xray", "seg"): 9902,
    ("xray", "pr"): 9903,
    ("xray", "report"): 9904,
    ("xray", "pdf"): 9905,
    ("xray", "map"): 9906,
    ("mri", "sr"): 9911,
    ("mri", "seg"): 9912,
    ("mri", "pr"): 9913,
    ("mri", "report"): 9914,
    ("mri", "pdf"): 9915,
    ("mri", "map"): 9916,
}
SERIES_DESCRIPTIONS: dict[str, str] = {
    "sr": "AI measurements (TID 1500 SR) - RESEARCH USE",
    "seg": "AI segmentation (SEG) - RESEARCH USE",
    "pr": "AI annotations (GSPS) - RESEARCH USE",
    "report": "AI report - RESEARCH USE ONLY",
    "pdf": "AI report (PDF) - RESEARCH USE ONLY",
    "map": "AI explanation map (Grad-CAM SEG) - RESEARCH USE",
}
RESEARCH_STATEMENT = (
    "RESEARCH USE ONLY - NOT FOR DIAGNOSIS. Produced automatically by an algorithm trained on "
    "synthetic data; results must be checked by a qualified reader."
)
MANUFACTURER = "cspine-node (open source)"
_PLACEHOLDER_PURPOSE = dcm_codes.DCM.ProcessingEquipment
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def result_series_uid(study_uid: str, pipeline: str, kind: str) -> str:
    """Deterministic SeriesInstanceUID of the ``kind`` result series of ``pipeline`` for a study."""
    if kind not in KINDS:
        raise ValueError(f"unknown result kind {kind!r}; expected one of {KINDS}")
    return f"2.25.{uuid.uuid5(NAMESPACE, f'cspine-node/{study_uid}/{pipeline}/{kind}').int}"


def series_number(pipeline: str, kind: str) -> int:
    return SERIES_NUMBERS.get((pipeline, kind), 9990 + KINDS.index(kind))


def run_number(now: datetime | None = None) -> int:
    """InstanceNumber base of one encoding run: whole seconds since 2024-01-01 UTC (fits IS until 2092)."""
    now = now or datetime.now(UTC)
    return max(1, int((now - _EPOCH).total_seconds()))


def new_uid() -> str:
    """A new random UID (highdicom's root) for one object."""
    return str(hd.UID())


@dataclass(frozen=True)
class Provenance:
    """Who made an object and when: shared by every object of one ``encode`` call."""

    algorithm: AlgorithmInfo
    pipeline: str
    created: datetime
    instance_base: int
    contributors: tuple[AlgorithmInfo, ...] = ()
    """Further algorithms of the result; each gets its own Contributing Equipment item."""

    @property
    def model_name(self) -> str:
        return self.algorithm.name[:64]

    @property
    def software_version(self) -> str:
        return self.algorithm.version[:64]

    def device_uid(self, algorithm: AlgorithmInfo | None = None) -> str:
        """Stable Device UID of an algorithm (name + version; default: the main one), for the SR device observer."""
        a = algorithm or self.algorithm
        return f"2.25.{uuid.uuid5(NAMESPACE, f'algorithm/{a.name}/{a.version}').int}"

    def object_attributes(self, kind: str, *, series_uid: str, series_number: int, index: int = 0,
                          manufacturer: str | None = None) -> dict:
        """The highdicom constructor arguments every result object shares (series, instance, equipment and
        Contributing Equipment), for object ``index`` of series ``kind`` (a ``SERIES_DESCRIPTIONS`` key)."""
        return {
            "series_instance_uid": series_uid,
            "series_number": series_number,
            "sop_instance_uid": new_uid(),
            "instance_number": self.instance_base + index,
            "manufacturer": (manufacturer or self.algorithm.manufacturer)[:64],
            "manufacturer_model_name": self.model_name,
            "software_versions": self.software_version,
            "device_serial_number": self.device_uid()[-16:],
            "contributing_equipment": self.contributing_equipment(),
            "series_description": SERIES_DESCRIPTIONS[kind],
        }

    def contributing_equipment(self) -> list[hd.ContributingEquipment]:
        """One Contributing Equipment item per algorithm (IHE AIR 6.5.3.1: Purpose of Reference Newcode1). The items
        are built once per ``Provenance`` (highdicom deep-copies its codes into each: ~2.6 ms per object of a 3-view
        study here); each call gets copies whose elements are their own (setting an attribute of one object's item
        leaves the others' alone; the coded Purpose of Reference items inside are shared, read-only)."""
        return [_detached(item) for item in self._equipment]

    @cached_property
    def _equipment(self) -> tuple[hd.ContributingEquipment, ...]:
        items = []
        for algorithm in (self.algorithm, *self.contributors):
            item = hd.ContributingEquipment(
                manufacturer=algorithm.manufacturer[:64] or MANUFACTURER,
                purpose_of_reference=_PLACEHOLDER_PURPOSE,
                manufacturer_model_name=algorithm.name[:64],
                software_versions=algorithm.version[:64],
                device_serial_number=self.device_uid(algorithm)[-16:],
                contribution_datetime=self.created,
                contribution_description=f"{self.pipeline} pipeline; {RESEARCH_STATEMENT}"[:1024],
            )
            # highdicom accepts only CID 7005 purposes; IHE AIR asks for (Newcode1, 99IHE, "Processing Algorithm")
            item.PurposeOfReferenceCodeSequence = [hd.sr.CodedConcept.from_code(PROCESSING_ALGORITHM)]
            item.DeviceUID = self.device_uid(algorithm)
            items.append(item)
        return tuple(items)


def _detached(item: hd.ContributingEquipment) -> hd.ContributingEquipment:
    """A ``ContributingEquipment`` with its own dictionary and data elements (``copy.copy`` of a data set shares both)."""
    out = hd.ContributingEquipment.__new__(type(item))
    Dataset.__init__(out)
    for elem in item:
        out.add(copy.copy(elem))
    return out


def provenance(algorithm: AlgorithmInfo, pipeline: str, now: datetime | None = None,
               contributors: tuple[AlgorithmInfo, ...] = ()) -> Provenance:
    now = now or datetime.now(UTC)
    return Provenance(algorithm=algorithm, pipeline=pipeline, created=now, instance_base=run_number(now),
                      contributors=contributors)
