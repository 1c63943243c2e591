"""The seed classifiers on renderer B through the node's X-ray pipeline (issue 13 item 5).

    nice -n 10 .venv/bin/python bench/seed_classifiers_b.py --seed 700 --count 40 --threads 1 --json OUT.json

Each study of renderer B (``pipelines.phantoms.xray_b``, realistic sizes unless ``--max-size``) is written as DICOM
and analysed by ``XrayPipeline`` with the shipped models (``models.registry.build_models``: keypoints, curvature
class (seed 003), upper cervical (seed 001), cord compression (seed 004)), exactly as ``cspine-node analyze`` runs
them: the classifiers see only views that passed the gates. Reported, per model:

* the views the gates rejected (by reason) and how many studies each classifier ran on;
* curvature class (neutral view): accuracy against B's truth class, the rule of the training labels
  (``models.curvature.data.class_from_cobb`` of the neutral view's true C2-C7 Cobb angle);
* upper cervical: renderer B draws no C0-C2 abnormality, so every "present" is a false positive: the false-positive
  rate per label and the studies with any, at the shipped thresholds (specificity = 1 - rate);
* cord compression: renderer B draws no canal encroachment (no herniation, no posterior osteophyte; 15 % of its
  patients have a narrow developmental canal of 10-13 mm) and has no cord, so it offers no compression truth: the
  positive rate per segment, split by normal / narrow canal (true canal depth C3-C7 below ``NARROW_MM`` on average).

The same three models are also run on every study *without* the gates (the same images; cord compression on the
neutral view's predicted keypoints, whatever the gates said), to show what the gates keep away from the reader.

``--ungated-only`` (issue 13, the classifiers' own out-of-distribution gates): no keypoint model and no pipeline
gates; every view of every study goes to the classifiers (the phantom's [0, 1] image, equal to the DICOM round trip
within 1e-4), cord compression on the *true* keypoints, so each classifier's own trust checks are measured alone:
its out-of-distribution gate (``models.common.ood``, in the weights' meta) and, for the curvature class, the check
against the keypoint geometry (``pipelines.xray.classifiers.check_curvature_geometry``, here with the true C2-C7
Cobb angle: what a keypoint model that handles B would measure). Reported: how many outputs each check withholds
and the accuracy / false positives of what is still reported, next to the raw outputs::

    nice -n 10 .venv/bin/python bench/seed_classifiers_b.py --ungated-only --seed 700 --count 100 --json OUT.json

The study-level input check of the upper-cervical model (the curvature model's gate refusing any of the three views,
``pipelines.xray.classifiers.check_upper_cervical_input``, ``XrayPipeline.upper_cervical_curvature_check``): the
gated run forces it with ``--study-check on|off`` (default: the pipeline's default) and also records the check on
every study's three views whatever the keypoint gates said (``study_check_ungated`` in the summary).
``--study-check-only`` runs only that check and the upper-cervical model on every view of every study, of renderer B
or (``--renderer a``) the node's plain renderer-A phantoms (``generate_study``, realistic sizes unless
``--max-size``), to measure how many in-domain studies it withholds::

    nice -n 15 .venv/bin/python bench/seed_classifiers_b.py --study-check-only --renderer a --seed 975000 \
        --count 200 --threads 1 --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


NARROW_MM = 13.0
"""A spine whose true canal depth (SDVC) averages below this over C3-C7 counts as narrow (developmental stenosis)."""


def _reason_kind(reason: str) -> str:
    if reason.startswith("implausible anatomy"):
        return "implausible anatomy"
    if reason.startswith("keypoint uncertainty"):
        return "keypoint uncertainty too high"
    return reason[:40] or "passed"


def run_study(seed: int, models, max_size: int | None) -> dict:  # noqa: ANN001
    import numpy as np

    from models.curvature.data import class_from_cobb
    from pipelines.phantoms.dicom import write_study
    from pipelines.phantoms.xray_b import generate_study_b
    from pipelines.study import Study
    from pipelines.vocabulary import UPPER_CERVICAL_LABELS, View
    from pipelines.xray.classifiers import CURVATURE_CHECK, NOT_ASSESSABLE
    from pipelines.xray.pipeline import XrayPipeline
    from pipelines.xray.preprocessing import image_from_dataset

    st = generate_study_b(seed, max_size=max_size)
    neutral = st.views[View.NEUTRAL]
    cobb = next(m.value for m in neutral.truth if m.key == "cobb_c2_c7")
    out: dict = {"seed": seed, "truth_class": class_from_cobb(cobb), "true_cobb_deg": round(float(cobb), 2),
                 "narrow_canal": bool(np.mean(st.params.spine.canal_mm[1:6]) < NARROW_MM)}
    pipe = XrayPipeline.from_models(models)
    with tempfile.TemporaryDirectory() as tmp:
        study = Study.from_paths(write_study(st, Path(tmp)))[0]
        result = pipe.run(study, study.instances)
        images = {inst.sop_instance_uid: image_from_dataset(inst.read()) for inst in study.instances}
    by_view = {i.view: i for i in result.images}
    out["rejected"] = {v.value: i.rejected for v, i in by_view.items()}
    f = [x for x in result.findings if x.key == "curvature_class_model"]
    out["curvature"] = f[0].value if f else None
    out["upper_cervical"] = {x.key: x.value for x in result.findings if x.key in UPPER_CERVICAL_LABELS} or None
    cc = {x.site: (x.value, None if x.probability is None else round(float(x.probability), 3))
          for x in result.findings if x.key == "cord_compression"}
    out["cord_compression"] = cc or None
    # the same models without the gates
    views = {v: images[i.image_uid] for v, i in by_view.items()}
    spacing = {v: i.pixel_spacing_mm for v, i in by_view.items()}
    curv, upper = models.image_classifiers
    out["ungated_curvature"] = curv.classify({View.NEUTRAL: views[View.NEUTRAL]}, spacing)[0].value
    out["ungated_upper_cervical"] = {x.key: x.value for x in upper.classify(views, spacing)}
    # the study-level check on all three views, whatever the keypoint gates said (the node checks only the views
    # that reach the upper-cervical model)
    checks = {v: curv.predict(img) for v, img in views.items()}
    out["study_check_ungated"] = {v.value: bool(p.ood_reason) for v, p in checks.items()}
    out["curvature_distance_by_view"] = {v.value: p.distance for v, p in checks.items()}
    uc = [x for x in result.findings if x.key in UPPER_CERVICAL_LABELS]
    out["upper_cervical_withheld_by_study_check"] = bool(uc) and all(
        x.value == NOT_ASSESSABLE and CURVATURE_CHECK in x.evidence[0] for x in uc)
    img = by_view[View.NEUTRAL]
    kp = np.array([[k.x, k.y] for k in img.keypoints[:30]])
    try:
        found, _ = models.cord_compression.classify(views[View.NEUTRAL], kp, img.image_uid)
        out["ungated_cord_compression"] = {x.site: x.value for x in found}
    except (ValueError, RuntimeError) as exc:
        out["ungated_cord_compression"] = f"did not run: {exc}"
    return out


def run_study_ungated(seed: int, models, max_size: int | None) -> dict:  # noqa: ANN001
    """The three classifiers on every view of one renderer-B study, with their own trust checks only."""
    import numpy as np

    from models.curvature.data import class_from_cobb
    from pipelines.phantoms.xray import unit_image
    from pipelines.phantoms.xray_b import generate_study_b
    from pipelines.vocabulary import UPPER_CERVICAL_LABELS, View
    from pipelines.xray.classifiers import check_curvature_geometry

    st = generate_study_b(seed, max_size=max_size)
    neutral = st.views[View.NEUTRAL]
    cobb = next(m.value for m in neutral.truth if m.key == "cobb_c2_c7")
    views = {v: unit_image(pv.pixels, pv.photometric).astype(np.float32) for v, pv in st.views.items()}
    spacing = {v: pv.pixel_spacing_mm for v, pv in st.views.items()}
    curv, upper = models.image_classifiers
    out: dict = {"seed": seed, "truth_class": class_from_cobb(cobb), "true_cobb_deg": round(float(cobb), 2),
                 "narrow_canal": bool(np.mean(st.params.spine.canal_mm[1:6]) < NARROW_MM)}
    p = curv.predict(views[View.NEUTRAL])
    (f,) = curv.classify({View.NEUTRAL: views[View.NEUTRAL]}, spacing)
    g = check_curvature_geometry(f, neutral.truth)
    out["curvature"] = {"raw": p.label, "distance": p.distance, "ood": bool(p.ood_reason), "finding": f.value,
                        "after_geometry": g.value}
    other = {v: curv.predict(views[v]) for v in views if v != View.NEUTRAL}
    out["curvature_gate_by_view"] = {View.NEUTRAL.value: bool(p.ood_reason),
                                     **{v.value: bool(q.ood_reason) for v, q in other.items()}}
    from models.upper_cervical.predictor import decide

    u = upper.predict(views)
    raw = decide(np.array([u.probabilities[k] for k in UPPER_CERVICAL_LABELS]),
                 np.array([upper.threshold(k) for k in UPPER_CERVICAL_LABELS]), upper.exclusive)[0]
    out["upper_cervical"] = {"distance": u.distance, "ood": bool(u.ood_reason),
                             "raw": {k: "present" if r else "absent" for k, r in zip(UPPER_CERVICAL_LABELS, raw,
                                                                                    strict=True)},
                             "finding": {x.key: x.value for x in upper.classify(views, spacing)}}
    kp = np.asarray(neutral.keypoints[:30], dtype=np.float64)
    sp = models.cord_compression.predict(views[View.NEUTRAL], kp, gradcam=False)
    found, _ = models.cord_compression.classify(views[View.NEUTRAL], kp, neutral.sop_instance_uid)
    out["cord_compression"] = {s.segment: {"raw": "present" if s.present else "absent", "distance": s.distance,
                                           "ood": bool(s.ood_reason), "finding": x.value}
                               for s, x in zip(sp, found, strict=True)}
    return out


def run_study_check(seed: int, models, max_size: int | None, renderer: str) -> dict:  # noqa: ANN001
    """The upper-cervical model and its study-level input check (the curvature gate on each of the three views, as
    ``XrayPipeline`` applies it) on every view of one study of renderer ``a`` (the node's plain phantoms) or ``b``."""
    import numpy as np

    from models.upper_cervical.predictor import decide
    from pipelines.phantoms.xray import unit_image
    from pipelines.vocabulary import UPPER_CERVICAL_LABELS, View
    from pipelines.xray.classifiers import CURVATURE_CHECK, NOT_ASSESSABLE, check_upper_cervical_input

    if renderer == "a":
        from pipelines.phantoms.xray import generate_study

        st = generate_study(seed, shape=None if max_size is None else (max_size, max_size))
    else:
        from pipelines.phantoms.xray_b import generate_study_b

        st = generate_study_b(seed, max_size=max_size)
    views = {v: unit_image(pv.pixels, pv.photometric).astype(np.float32) for v, pv in st.views.items()}
    spacing = {v: pv.pixel_spacing_mm for v, pv in st.views.items()}
    curv, upper = models.image_classifiers
    checks = {v: curv.predict(views[v]) for v in (View.EXTENSION, View.NEUTRAL, View.FLEXION)}
    u = upper.predict(views)
    raw = decide(np.array([u.probabilities[k] for k in UPPER_CERVICAL_LABELS]),
                 np.array([upper.threshold(k) for k in UPPER_CERVICAL_LABELS]), upper.exclusive)[0]
    verdicts = {v: p.ood_reason for v, p in checks.items()}  # the same verdicts the check would compute
    found = check_upper_cervical_input(upper.classify(views, spacing), curv, views, verdicts)
    return {"seed": seed, "shape": {v.value: list(pv.pixels.shape) for v, pv in st.views.items()},
            "curvature_distance_by_view": {v.value: p.distance for v, p in checks.items()},
            "study_check_by_view": {v.value: bool(p.ood_reason) for v, p in checks.items()},
            "upper_cervical": {"distance": u.distance, "ood": bool(u.ood_reason),
                               "raw": {k: "present" if r else "absent"
                                       for k, r in zip(UPPER_CERVICAL_LABELS, raw, strict=True)},
                               "finding": {x.key: x.value for x in found},
                               "withheld_by_study_check": any(x.value == NOT_ASSESSABLE and CURVATURE_CHECK in
                                                              x.evidence[0] for x in found)}}


def summarize_study_check(rows: list[dict]) -> dict:
    """How many studies the check withholds (by view), and the upper-cervical "present" calls with and without it."""
    from pipelines.vocabulary import UPPER_CERVICAL_LABELS

    n = len(rows)
    withheld = [r for r in rows if r["upper_cervical"]["withheld_by_study_check"]]
    refused_any = sum(any(r["study_check_by_view"].values()) for r in rows)
    by_view = Counter(v for r in rows for v, bad in r["study_check_by_view"].items() if bad)
    dist = {v: sorted(r["curvature_distance_by_view"][v] for r in rows) for v in ("extension", "neutral", "flexion")}

    def any_present(key: str, xs: list[dict]) -> int:
        return sum(any(v == "present" for v in r["upper_cervical"][key].values()) for r in xs)

    return {"studies": n, "withheld_by_study_check": len(withheld),
            "withheld_fraction": len(withheld) / n if n else None,
            "studies_with_a_refused_view": refused_any, "refused_views_by_view": dict(by_view),
            "studies_with_1_2_3_refused_views": [sum(sum(r["study_check_by_view"].values()) == k for r in rows)
                                                 for k in (1, 2, 3)],
            "own_gate_rejected": sum(r["upper_cervical"]["ood"] for r in rows),
            "curvature_distance_median_by_view": {v: float(d[len(d) // 2]) for v, d in dist.items() if d},
            "studies_with_any_present_raw": any_present("raw", rows),
            "studies_with_any_present_reported": any_present("finding", rows),
            "present_rate_raw": {k: sum(r["upper_cervical"]["raw"][k] == "present" for r in rows) / n
                                 for k in UPPER_CERVICAL_LABELS} if n else None}


def summarize_ungated(rows: list[dict]) -> dict:
    """Per classifier: outputs withheld by each check, and accuracy / false positives of the raw vs reported ones."""
    from pipelines.vocabulary import UPPER_CERVICAL_LABELS

    classes = ("normal", "straightened", "reversed")
    c = [r["curvature"] | {"truth": r["truth_class"]} for r in rows]
    located = [x for x in c if x["finding"] != "not measurable"]
    passed_ood = [x for x in located if x["finding"] in classes]
    reported = [x for x in passed_ood if x["after_geometry"] in classes]

    def acc(xs: list[dict], key: str) -> dict:
        n = len(xs)
        k = sum(x[key] == x["truth"] for x in xs)
        return {"n": n, "correct": k, "accuracy": k / n if n else None}

    s: dict = {"studies": len(rows)}
    s["curvature"] = {"neutral_views": len(c), "not_measurable_locator": len(c) - len(located),
                      "raw_on_located": acc(located, "raw"), "ood_rejected": len(located) - len(passed_ood),
                      "raw_on_ood_rejected": acc([x for x in located if x["ood"]], "raw"),
                      "after_ood": acc(passed_ood, "raw"), "geometry_rejected": len(passed_ood) - len(reported),
                      "reported": acc(reported, "raw"), "truth_counts_reported": dict(Counter(x["truth"] for x in reported))}
    u = [r["upper_cervical"] for r in rows]
    kept = [x for x in u if not x["ood"]]

    def fp(xs: list[dict], key: str) -> dict:
        return {"studies": len(xs), "studies_with_any_positive": sum(any(v == "present" for v in x[key].values())
                                                                     for x in xs),
                "false_positive_rate": {k: (sum(x[key][k] == "present" for x in xs) / len(xs) if xs else None)
                                        for k in UPPER_CERVICAL_LABELS}}
    s["upper_cervical"] = {"ood_rejected": len(u) - len(kept), "raw_all": fp(u, "raw"), "reported": fp(kept, "finding")}
    # exploratory (not what the node does): the curvature model's gate on any of the three views as an image-level
    # "unlike the training data" flag for the upper-cervical model, whose own gate does not separate B
    clean = [r["upper_cervical"] for r in rows if "curvature_gate_by_view" in r
             and not any(r["curvature_gate_by_view"].values())]
    s["upper_cervical"]["exploratory_curvature_gate_any_view"] = {"rejected": len(rows) - len(clean),
                                                                   "left": fp(clean, "raw")}
    entry: dict = {}
    for name, want in (("normal_canal", False), ("narrow_canal", True)):
        segs = [v for r in rows if r["narrow_canal"] == want for v in r["cord_compression"].values()]
        rep = [v for v in segs if not v["ood"]]
        entry[name] = {"studies": sum(r["narrow_canal"] == want for r in rows), "segments": len(segs),
                       "raw_positive": sum(v["raw"] == "present" for v in segs), "ood_rejected": len(segs) - len(rep),
                       "reported": len(rep), "reported_positive": sum(v["finding"] == "present" for v in rep)}
    entry["studies_with_a_rejected_segment"] = sum(any(v["ood"] for v in r["cord_compression"].values()) for r in rows)
    entry["studies_all_segments_rejected"] = sum(all(v["ood"] for v in r["cord_compression"].values()) for r in rows)
    s["cord_compression"] = entry
    return s


def summarize(rows: list[dict]) -> dict:
    from pipelines.vocabulary import UPPER_CERVICAL_LABELS

    n = len(rows)
    reasons = Counter(_reason_kind(r) for row in rows for r in row["rejected"].values())
    s: dict = {"studies": n, "views": 3 * n, "views_by_gate": dict(reasons.most_common())}
    for gated in (True, False):
        tag = "" if gated else "ungated_"
        curv = [(r[f"{tag}curvature"], r["truth_class"]) for r in rows if r[f"{tag}curvature"] is not None]
        ok = [(p, t) for p, t in curv if p != "not measurable"]
        s[f"{tag}curvature"] = {"ran": len(curv), "classified": len(ok),
                                "correct": sum(p == t for p, t in ok),
                                "accuracy": sum(p == t for p, t in ok) / len(ok) if ok else None,
                                "truth_counts": dict(Counter(t for _, t in ok))}
        uc = [r[f"{tag}upper_cervical"] for r in rows if r[f"{tag}upper_cervical"]]
        s[f"{tag}upper_cervical"] = {
            "ran": len(uc), "studies_with_any_positive": sum(any(v == "present" for v in d.values()) for d in uc),
            "false_positive_rate": {k: (sum(d.get(k) == "present" for d in uc) / len(uc) if uc else None)
                                    for k in UPPER_CERVICAL_LABELS}}
        cc = [(r[f"{tag}cord_compression"], r["narrow_canal"]) for r in rows
              if isinstance(r[f"{tag}cord_compression"], dict)]
        entry: dict = {"ran": len(cc)}
        for name, want in (("normal_canal", False), ("narrow_canal", True)):
            segs = [v[0] if isinstance(v, list | tuple) else v for d, narrow in cc if narrow == want
                    for v in d.values()]
            entry[name] = {"studies": sum(narrow == want for _, narrow in cc), "segments": len(segs),
                           "positive": sum(v == "present" for v in segs),
                           "positive_rate": sum(v == "present" for v in segs) / len(segs) if segs else None}
        s[f"{tag}cord_compression"] = entry
    if rows and "study_check_ungated" in rows[0]:
        ran = [r for r in rows if r["upper_cervical"]]
        s["upper_cervical_study_check"] = {
            "upper_cervical_ran": len(ran),
            "withheld_by_study_check": sum(r["upper_cervical_withheld_by_study_check"] for r in ran),
            "shown_with_any_present": sum(any(v == "present" for v in r["upper_cervical"].values()) for r in ran),
            "would_show_any_present_without_check": sum(any(v == "present" for v in r["ungated_upper_cervical"].values())
                                                        for r in ran),
            "ungated_studies_with_a_refused_view": sum(any(r["study_check_ungated"].values()) for r in rows),
            "ungated_refused_views_by_view": dict(Counter(v for r in rows for v, bad in
                                                          r["study_check_ungated"].items() if bad))}
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=700)
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--max-size", type=int, default=None, help="largest image side (default: realistic sizes)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keypoint-weights", type=Path, help="another keypoint model (default: the shipped one)")
    ap.add_argument("--json", type=Path, help="write the per-study rows and the summary here")
    ap.add_argument("--study-check", choices=("on", "off"),
                    help="force the pipeline's upper-cervical study-level input check (default: its default)")
    ap.add_argument("--study-check-only", action="store_true",
                    help="only the upper-cervical model and its study-level input check, on every view (no keypoint "
                         "model, no pipeline gates)")
    ap.add_argument("--renderer", choices=("a", "b"), default="b", help="with --study-check-only: the phantoms")
    ap.add_argument("--ungated-only", action="store_true",
                    help="no keypoint model or pipeline gates: the classifiers on every view (true keypoints for cord "
                         "compression), measuring their own out-of-distribution gates")
    args = ap.parse_args(argv)

    import torch

    from models.registry import build_models

    torch.set_num_threads(args.threads)

    class _Config:  # the four X-ray models on the CPU, the shipped weights unless --keypoint-weights
        def __init__(self, name: str) -> None:
            self.weights = args.keypoint_weights if name == "keypoints" else None
            self.device = "cpu"
            self.enabled = name in ("curvature", "upper_cervical") or (
                name == "cord_compression" and not args.study_check_only) or (
                name == "keypoints" and not (args.ungated_only or args.study_check_only))

    models = build_models(_Config)
    versions = {m.algorithm.name: m.algorithm.version
                for m in (models.keypoints, *models.image_classifiers, models.cord_compression) if m is not None}
    rows = []
    t0 = time.perf_counter()
    if args.study_check_only:
        for seed in range(args.seed, args.seed + args.count):
            t = time.perf_counter()
            rows.append(run_study_check(seed, models, args.max_size, args.renderer))
            r = rows[-1]
            print(f"seed {seed}: {time.perf_counter() - t:.1f} s, refused views "
                  f"{[v for v, bad in r['study_check_by_view'].items() if bad]}, withheld "
                  f"{r['upper_cervical']['withheld_by_study_check']}", flush=True)
        summary = summarize_study_check(rows)
        summary.update({"mode": f"study check only, renderer {args.renderer.upper()}",
                        "seeds": [args.seed, args.seed + args.count - 1], "max_size": args.max_size,
                        "versions": versions, "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(summary, indent=1))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"summary": summary, "studies": rows}, indent=1, default=float))
        return 0
    if args.ungated_only:
        for seed in range(args.seed, args.seed + args.count):
            t = time.perf_counter()
            rows.append(run_study_ungated(seed, models, args.max_size))
            r = rows[-1]
            print(f"seed {seed}: {time.perf_counter() - t:.1f} s, curvature {r['curvature']['after_geometry']} (raw "
                  f"{r['curvature']['raw']}, truth {r['truth_class']}, d {r['curvature']['distance']}), upper "
                  f"cervical d {r['upper_cervical']['distance']}, cord rejected "
                  f"{sum(v['ood'] for v in r['cord_compression'].values())}/5", flush=True)
        summary = summarize_ungated(rows)
        summary.update({"mode": "ungated-only, true keypoints", "seeds": [args.seed, args.seed + args.count - 1],
                        "max_size": args.max_size, "versions": versions,
                        "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(summary, indent=1))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"summary": summary, "studies": rows}, indent=1, default=float))
        return 0
    if args.study_check is not None:
        from pipelines.xray.pipeline import XrayPipeline

        XrayPipeline.upper_cervical_curvature_check = args.study_check == "on"
    for seed in range(args.seed, args.seed + args.count):
        t = time.perf_counter()
        rows.append(run_study(seed, models, args.max_size))
        r = rows[-1]
        print(f"seed {seed}: {time.perf_counter() - t:.1f} s, rejected "
              f"{sum(bool(v) for v in r['rejected'].values())}/3, curvature {r['curvature']} (truth "
              f"{r['truth_class']}), upper cervical {'ran' if r['upper_cervical'] else 'skipped'}, cord "
              f"{'ran' if r['cord_compression'] else 'skipped'}", flush=True)
    summary = summarize(rows)
    from pipelines.xray.pipeline import XrayPipeline

    summary.update({"seeds": [args.seed, args.seed + args.count - 1], "max_size": args.max_size,
                    "versions": versions, "study_check_on": XrayPipeline.upper_cervical_curvature_check,
                    "keypoint_weights": str(args.keypoint_weights) if args.keypoint_weights else None,
                    "seconds": round(time.perf_counter() - t0, 1)})
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "studies": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
