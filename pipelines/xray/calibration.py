"""What a radiograph's header says about measurement scale (pydicom datasets, no pixels).

:func:`measurement_spacing` returns the pixel spacing *at the patient plane* used for every mm value of
:mod:`pipelines.xray.geometry`, and says which attribute it came from:

1. ``PixelSpacing`` with ``PixelSpacingCalibrationType`` (GEOMETRY / FIDUCIAL): already calibrated to the
   patient plane by the modality or a user.
2. ``ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor``: detector spacing corrected for the
   projection magnification (DX/CR, PS3.3 C.8.11.7 / C.8.24.2).
3. ``PixelSpacing`` without a calibration type but different from ``ImagerPixelSpacing``: taken as given
   (the modality corrected it), with a warning.
4. ``ImagerPixelSpacing`` alone (or ``PixelSpacing`` equal to it): detector-plane spacing, distances are
   overstated by the magnification (typically 10-20 %) - returned with a warning.
5. Nothing: :class:`CalibrationError`.

The view (neutral / flexion / extension) is read by :func:`pipelines.xray.preprocessing.view_of`.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

__all__ = ["CalibrationError", "measurement_spacing"]


class CalibrationError(ValueError):
    """The dataset has no usable pixel spacing."""


def _pair(ds: Dataset, keyword: str) -> tuple[float, float] | None:
    val = ds.get(keyword)
    if val is None or val == "":
        return None
    try:
        r, c = (float(v) for v in val)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{keyword} is not a pair of numbers: {val!r}") from exc
    if not (r > 0 and c > 0):
        raise CalibrationError(f"{keyword} must be positive, got {val!r}")
    return (r, c)


def measurement_spacing(ds: Dataset) -> tuple[tuple[float, float], str]:
    """(row, col) mm/px at the patient plane and a sentence saying which attribute it came from."""
    ps = _pair(ds, "PixelSpacing")
    ips = _pair(ds, "ImagerPixelSpacing")
    cal = str(ds.get("PixelSpacingCalibrationType", "") or "").strip().upper()
    if ps is not None and cal:
        return ps, f"PixelSpacing (calibrated: PixelSpacingCalibrationType {cal})"
    emf_raw = ds.get("EstimatedRadiographicMagnificationFactor")
    if ips is not None and emf_raw not in (None, ""):
        try:
            emf = float(emf_raw)
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"EstimatedRadiographicMagnificationFactor is not a number: {emf_raw!r}") from exc
        if not 0.5 < emf < 3.0:
            raise CalibrationError(f"EstimatedRadiographicMagnificationFactor {emf} is implausible")
        return (ips[0] / emf, ips[1] / emf), (
            f"ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor ({emf:g})")
    if ps is not None and (ips is None or abs(ps[0] - ips[0]) > 1e-6 or abs(ps[1] - ips[1]) > 1e-6):
        return ps, "PixelSpacing (no calibration type given; taken as patient-plane spacing) - WARNING"
    if ips is not None:
        return ips, ("ImagerPixelSpacing at the detector, not corrected for magnification - WARNING: distances "
                     "overstated by the magnification (typically 10-20 %)")
    raise CalibrationError("no PixelSpacing or ImagerPixelSpacing: mm measurements are not possible")
