"""Every coded concept the DICOM outputs use, in one place.

Standard codes (SNOMED CT ``SCT``, DICOM ``DCM``, UCUM) are used wherever one exists; each SCT/DCM code
below was checked against pydicom's copy of the DICOM code dictionaries (``pydicom.sr.codedict``).
Everything else uses the private coding scheme ``99CSPINE``, declared in every SR through the Coding
Scheme Identification Sequence (``CODING_SCHEME``):

==============  =====================================================================================
Designator      ``99CSPINE`` (private, "99" prefix per PS3.16 8.2)
Name            cspine-node private codes
Responsible     cspine-node project (open source)
Values          ``M-*`` measurement concepts, ``F-*`` finding concepts, ``V-*`` finding values,
                ``MTH-*`` measurement methods, ``DRV-*`` derivations, ``S-*`` anatomic sites
Stability       values never change meaning; new concepts get new values
==============  =====================================================================================

Unknown measurement/finding keys (a new pipeline adding ``foraminal_stenosis_left``) get a generated
private code ``M-<KEY>``/``F-<KEY>`` so encoding never fails on a new key; add a row below to give it a
standard code or a better meaning.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from pipelines.results import VERTEBRAE

PRIVATE_SCHEME = "99CSPINE"


def _private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


def coding_scheme_identification() -> Dataset:
    """One item of the Coding Scheme Identification Sequence (0008,0110) declaring ``99CSPINE``."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "cspine-node private codes"
    item.CodingSchemeResponsibleOrganization = "cspine-node project (open source)"
    return item


# --- report-level ----------------------------------------------------------------------------------
PROCEDURE_XRAY = Code("168537006", "SCT", "Plain radiography")
PROCEDURE_MRI = Code("113091000", "SCT", "Magnetic resonance imaging")
PROCEDURE_BY_PIPELINE: dict[str, Code] = {"xray": PROCEDURE_XRAY, "mri": PROCEDURE_MRI}

PROCESSING_ALGORITHM = Code("Newcode1", "99IHE", "Processing Algorithm")
"""Purpose of Reference of the Contributing Equipment item for an algorithm (IHE AIR 6.5.3.1)."""
ALGORITHM_FAMILY = Code("123110", "DCM", "Artificial Intelligence")
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
"""TID 1500 row 12 container: free-text remarks (research statement, warnings, values not measurable)."""
COMMENT = Code("121106", "DCM", "Comment")
FINDING_SITE = Code("363698007", "SCT", "Finding Site")
PROBABILITY = Code("122157", "DCM", "Probability")

# --- anatomy -----------------------------------------------------------------------------------------
CERVICAL_SPINE = Code("122494005", "SCT", "Cervical spine")
SPINAL_CANAL = Code("61853006", "SCT", "Spinal canal structure")
SPINAL_CORD = Code("2748008", "SCT", "Spinal cord")
VERTEBRA = Code("51282000", "SCT", "Vertebra")
ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")
VERTEBRA_CODES: dict[str, Code] = {
    "C1": Code("14806007", "SCT", "C1 vertebra"),
    "C2": Code("39976000", "SCT", "C2 vertebra"),
    "C3": Code("113205007", "SCT", "C3 vertebra"),
    "C4": Code("5329002", "SCT", "C4 vertebra"),
    "C5": Code("36978003", "SCT", "C5 vertebra"),
    "C6": Code("36054005", "SCT", "C6 vertebra"),
    "C7": Code("87391001", "SCT", "C7 vertebra"),
}
DISC_CODES: dict[str, Code] = {
    "C2-C3": Code("1078209008", "SCT", "C2/C3 disc"),
    "C3-C4": Code("58820006", "SCT", "C3/C4 disc"),
    "C4-C5": Code("49400002", "SCT", "C4/C5 disc"),
    "C5-C6": Code("73959003", "SCT", "C5/C6 disc"),
    "C6-C7": Code("75095006", "SCT", "C6/C7 disc"),
    "C7-T1": Code("37414007", "SCT", "C7/T1 disc"),
}
_ORDER = ("C1", *VERTEBRAE, "T1")


def site_codes(site: str) -> list[Code]:
    """Finding-site codes for a site text.

    ``"C2-C7"`` -> cervical spine; a vertebra ``"C3"`` -> that vertebra; a segment or span
    ``"C4-C5"``/``"C3-C5"`` -> every vertebra in it; ``"C4-C5 disc"`` -> the disc; ``"spinal canal"`` ->
    the canal. Unknown text gets a private ``S-`` code so the site is never lost.
    """
    text = site.strip()
    low = text.lower()
    if text in ("C2-C7", "C1-C7", "C2-T1"):
        return [CERVICAL_SPINE]
    if "canal" in low:
        return [SPINAL_CANAL]
    if "cord" in low:
        return [SPINAL_CORD]
    level = text.split()[0] if text else text
    if "disc" in low and level in DISC_CODES:
        return [DISC_CODES[level]]
    if level in VERTEBRA_CODES:
        return [VERTEBRA_CODES[level]]
    parts = level.split("-")
    if len(parts) == 2 and parts[0] in _ORDER and parts[1] in _ORDER:
        lo, hi = _ORDER.index(parts[0]), _ORDER.index(parts[1])
        codes = [VERTEBRA_CODES[v] for v in _ORDER[min(lo, hi) : max(lo, hi) + 1] if v in VERTEBRA_CODES]
        if codes:
            return codes
    return [_private("S-" + "".join(c if c.isalnum() else "_" for c in text.upper())[:14], text or "unspecified")]


# --- measurements ----------------------------------------------------------------------------------
COBB_ANGLE = Code("285285000", "SCT", "Cobb angle")
MEASUREMENT_CODES: dict[str, Code] = {
    "cobb_c2_c7": COBB_ANGLE,
    "cobb": COBB_ANGLE,
    "sva_c2_c7": _private("M-SVA", "C2-C7 sagittal vertical axis"),
    "segmental_angle": _private("M-SEGANG", "Segmental angle"),
    "listhesis_distance": _private("M-LISTD", "Spondylolisthesis distance"),
    "listhesis_angle": _private("M-LISTA", "Spondylolisthesis angle"),
    "sdvb": _private("M-SDVB", "Sagittal diameter of vertebral body"),
    "sdvc": _private("M-SDVC", "Sagittal diameter of vertebral canal"),
    "pavlov_ratio": _private("M-PAVLOV", "Pavlov ratio"),
    "curvature_index": _private("M-CURVIDX", "Curvature index (Ishihara)"),
    "curvature_offset": _private("M-CURVOFF", "Offset from the C2-C7 chord"),
}
METHOD_CODES: dict[str, Code] = {
    "cobb_c2_c7": _private("MTH-COBB", "Angle between C2 and C7 inferior endplate lines"),
    "sva_c2_c7": _private("MTH-SVA", "Horizontal offset C2 centroid to C7 postero-superior corner"),
    "listhesis_distance": _private("MTH-LISTD", "Offset of lower posterior wall from upper posterior wall line"),
    "listhesis_angle": _private("MTH-LISTA", "Angle between adjacent posterior wall lines"),
    "sdvb": _private("MTH-SDVB", "Anterior to posterior wall midpoint distance"),
    "sdvc": _private("MTH-SDVC", "Posterior wall midpoint to spinolaminar line distance"),
    "pavlov_ratio": _private("MTH-PAVLOV", "SDVC divided by SDVB"),
}
DERIVED_ACROSS_VIEWS = _private("DRV-DYN", "Difference between flexion and extension")
DERIVED_FROM_KEYPOINTS = _private("DRV-KPT", "Calculated from detected keypoints")

UCUM_UNITS: dict[str, Code] = {
    "deg": Code("deg", "UCUM", "degree"),
    "mm": Code("mm", "UCUM", "millimeter"),
    "1": Code("1", "UCUM", "no units"),
    "%": Code("%", "UCUM", "percent"),
    "{ratio}": Code("{ratio}", "UCUM", "ratio"),
}


def measurement_code(key: str, name: str) -> Code:
    """Concept name for a measurement key (generated private code for unknown keys)."""
    if key.startswith("cobb"):  # cobb_c2_c7, or cobb_c2_c6 when C7 is hidden
        return COBB_ANGLE
    return MEASUREMENT_CODES.get(key) or _private("M-" + key.upper()[:14], name or key)


def unit_code(unit: str) -> Code:
    """UCUM code for a unit string (the string is already UCUM by the results contract)."""
    return UCUM_UNITS.get(unit) or Code(unit, "UCUM", unit)


# --- findings ---------------------------------------------------------------------------------------
FINDING_CODES: dict[str, Code] = {
    "kyphosis": _private("F-KYPHOSIS", "Cervical kyphosis"),
    "cervical_deformity": _private("F-DEFORMITY", "Cervical sagittal deformity"),
    "instability": _private("F-INSTABILITY", "Segmental instability"),
    "canal_stenosis": _private("F-CANALSTEN", "Spinal canal stenosis"),
    "curvature_class": _private("F-CURVATURE", "Cervical curvature class"),
    "disc_degeneration": _private("F-DISCDEG", "Intervertebral disc degeneration"),
    "spinal_stenosis": _private("F-SPINSTEN", "Spinal stenosis"),
    "foraminal_stenosis_left": _private("F-FORAMSTL", "Left foraminal stenosis"),
    "foraminal_stenosis_right": _private("F-FORAMSTR", "Right foraminal stenosis"),
    # SNOMED CT has a "Compression of spinal cord" disorder concept, but its id could not be verified here: private
    "cord_compression": _private("F-CORDCOMP", "Spinal cord compression"),
}
VALUE_CODES: dict[str, Code] = {
    "present": Code("52101004", "SCT", "Present"),
    "absent": Code("272519000", "SCT", "Absent"),
    "not measurable": Code("82334004", "SCT", "Indeterminate"),
    "not assessable": Code("82334004", "SCT", "Indeterminate"),  # an MRI level that failed the plausibility gate
    "indeterminate": Code("82334004", "SCT", "Indeterminate"),
    "normal": Code("17621005", "SCT", "Normal"),
    "abnormal": Code("263654008", "SCT", "Abnormal"),
    "lordotic": Code("260450008", "SCT", "lordotic"),
}


def finding_code(key: str, name: str) -> Code:
    return FINDING_CODES.get(key) or _private("F-" + key.upper()[:14], name or key)


def value_code(value: str) -> Code:
    """Coded value of a finding: standard present/absent/..., else a private ``V-`` class code."""
    v = value.strip().lower()
    return VALUE_CODES.get(v) or _private("V-" + "".join(c if c.isalnum() else "_" for c in v.upper())[:14], value)
