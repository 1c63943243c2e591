"""Training data of the neck-pain model: paired phantom crops, their true alignment and the outcome.

Per virtual patient (``seed``): the neutral radiograph (``generate_study(..., anatomy=xray_anatomy(vp))``) and
the mid-sagittal T2 slice (``generate_series(..., endplate_marrow=case.endplate_marrow)``), as the paired
phantom (:mod:`pipelines.phantoms.paired`) writes them with ``outcome=True``. Each is cropped to
``INPUT`` x ``INPUT`` around the disc centres C2-C3..C6-C7 (what the X-ray corners / the MRI disc keypoints
give; the pipelines' keypoints in the node), with anterior on the image left:

* radiograph: side ``XRAY_SIDE`` x the C2-C3 -> C6-C7 distance (adapts to magnification);
* MRI: a fixed ``MRI_SIDE_MM`` field (so the relative scale varies with the patient's size);
* training jitter (``jitter=True``) of each crop: centre shift, scale and rotation (different field of view,
  positioning, posture), on top of the keypoint noise.

The true alignment ``theta`` (2 x 3) maps X-ray crop coordinates (normalised to [-1, 1], ``align_corners=False``
convention of ``torch.nn.functional.grid_sample``) to MRI crop coordinates: the similarity transform fitted to the
five disc centres of both crops (they are nearly collinear: a full affine is not determined).

    python -m models.neck_pain.data --out /tmp/neck_train.npz --first 0 --count 3000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from models.common.images import to_u8
from models.neck_pain.inputs import (
    Crop,
    clinical_vector,
    mri_crop,
    mri_unit,
    xray_anterior_right,
    xray_crop,
    xray_disc_centres,
)
from pipelines.phantoms.outcome import OutcomeCase, outcome_case

MRI_SHAPE = (192, 192)
XRAY_SHAPE = (320, 320)


def jittered(c: Crop, rng: np.random.Generator, shift: float, scale: float, rot_deg: float) -> Crop:
    d = rng.normal(0, shift, 2) * c.half
    return Crop((c.centre[0] + d[0], c.centre[1] + d[1]), c.half * float(np.exp(rng.uniform(-scale, scale))),
                c.angle_rad + float(np.radians(rng.normal(0, rot_deg))), c.flip)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2 x 3 similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst`` (least squares)."""
    a = np.zeros((2 * len(src), 4))
    a[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(len(src)), np.zeros(len(src))]
    a[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(len(src)), np.ones(len(src))]
    p, *_ = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)
    return np.array([[p[0], -p[1], p[2]], [p[1], p[0], p[3]]], np.float32)


def render_case(seed: int, jitter: bool, rng: np.random.Generator) -> dict:
    """Crops, alignment, outcome and clinical variables of virtual patient ``seed``."""
    from pipelines.phantoms.mri import generate_series
    from pipelines.phantoms.patient import virtual_patient, xray_anatomy
    from pipelines.phantoms.xray import generate_study, unit_image
    from pipelines.results import View

    vp = virtual_patient(seed)
    st = generate_study(seed, shape=XRAY_SHAPE, anatomy=xray_anatomy(vp))
    got = {m.key: m.value for m in st.truth if m.view == View.NEUTRAL}
    case: OutcomeCase = outcome_case(seed, vp, (float(got["cobb_c2_c7"]), float(got["sva_c2_c7"])))
    pv = st.views[View.NEUTRAL]
    x_img = unit_image(pv.pixels, pv.photometric)
    kp = np.asarray(pv.keypoints, float)
    mr = generate_series(seed, patient=vp, shape=MRI_SHAPE, n_slices=7, endplate_marrow=case.endplate_marrow)
    m_img = mri_unit(mr.volume[mr.mid_slice])
    x_c = xray_disc_centres(kp)
    m_c = np.array([t.disc_centre_px for t in mr.levels], float)
    noise = 1.0 if jitter else 0.0
    xc = xray_crop(x_c + rng.normal(0, noise * 1.5, x_c.shape), xray_anterior_right(kp))
    mc = mri_crop(m_c + rng.normal(0, noise * 1.5, m_c.shape), mr.pixel_spacing_mm[0])
    if jitter:
        xc = jittered(xc, rng, 0.06, 0.12, 4.0)
        mc = jittered(mc, rng, 0.10, 0.2, 10.0)
    theta = similarity(xc.to_crop(x_c), mc.to_crop(m_c))
    vals, mask = clinical_vector(case.clinical)
    return {"xray": xc.sample(x_img), "mri": mc.sample(m_img), "theta": theta, "label": case.recovered,
            "p_true": case.probability, "clinical": vals, "clinical_mask": mask, "seed": seed}


def prepare(out: Path, seeds: range, jitter: bool = True) -> dict:
    rng = np.random.default_rng([seeds.start, 77])
    rows = [render_case(s, jitter, rng) for s in seeds]
    arrays = {
        "xray": np.stack([to_u8(r["xray"]) for r in rows]), "mri": np.stack([to_u8(r["mri"]) for r in rows]),
        "theta": np.stack([r["theta"] for r in rows]), "label": np.array([r["label"] for r in rows]),
        "p_true": np.array([r["p_true"] for r in rows], np.float32), "seeds": np.array([r["seed"] for r in rows]),
        "clinical": np.stack([r["clinical"] for r in rows]), "clinical_mask": np.stack([r["clinical_mask"] for r in rows]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return {"cases": len(rows), "recovered": float(arrays["label"].mean()), "path": str(out)}


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.neck_pain.data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--no-jitter", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.time()
    meta = prepare(args.out, range(args.first, args.first + args.count), not args.no_jitter)
    print(json.dumps({**meta, "seconds": round(time.time() - t0, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
