"""Which layer of the upper-cervical network could carry an out-of-distribution gate? (issue 13, item 5)

Renderer A only, renderer B untouched. For three feature layers (the head's hidden layer after its ReLU: the shipped
gate; the head's 448-value input; the per-view anatomy encoder, study distance = the largest of the three views) a
Mahalanobis gate (``models.common.ood``) is fitted on the shipped gate's fit sets, its threshold put at the 99th
percentile of its threshold sets, and reported: the rejected fraction of the A test sets and of 30 A studies whose
views are inverted (bone dark) or replaced by uniform noise. The choice rule, fixed before the run: A rejection
<= 5 % on each test set and >= 90 % of both corruptions rejected::

    nice -n 10 .venv/bin/python bench/upper_cervical_ood_layers.py --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    from models.common.ood import fit_gate
    from models.curvature.roi import crop, upper_cervical_box
    from models.upper_cervical import VIEW_ORDER
    from models.upper_cervical.ood import FIT, TEST, THRESHOLD
    from models.upper_cervical.predictor import UpperCervicalPredictor
    from pipelines.phantoms.xray.upper_cervical import generate_upper_cervical_study

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pred = UpperCervicalPredictor.load()
    net = pred.net

    def feats(views: dict) -> dict[str, np.ndarray]:
        crops = [crop(views[v], upper_cervical_box(pred.locator.locate(views[v]), pred.input_size)) for v in VIEW_ORDER]
        x = torch.from_numpy(np.stack(crops)[None].astype(np.float32))
        with torch.no_grad():
            pv = net.anatomy(x.reshape(3, 1, *x.shape[-2:]))
            ext, neu, flx = pv
            _, h = net.gru(pv[None])
            head_in = torch.cat([ext, neu, flx, flx - ext, neu - ext, h[-1][0], net.motion(x)[0]])
            hidden = net.features(x)[0]
        return {"per_view": pv.numpy(), "head_input": head_in.numpy(), "hidden": hidden.numpy()}

    def a_set(sets, transform=None) -> list[dict]:  # noqa: ANN001
        out = []
        for s in sets:
            for seed in range(s.seed, s.seed + s.count):
                st = generate_upper_cervical_study(seed, shape=s.shape)
                v = {k: st.views[k].unit_image().astype(np.float32) for k in VIEW_ORDER}
                if transform is not None:
                    v = {k: transform(a, seed) for k, a in v.items()}
                out.append(feats(v))
        return out

    fit, thr = a_set(FIT), a_set(THRESHOLD)
    tests = {s.name: a_set((s,)) for s in TEST}
    first30 = (type(TEST[0])(TEST[0].seed, 30, TEST[0].shape),)
    tests["inverted"] = a_set(first30, lambda a, s: 1 - a)
    tests["noise"] = a_set(first30, lambda a, s: np.random.default_rng(s).random(a.shape).astype(np.float32))
    res = {}
    for name in ("hidden", "head_input", "per_view"):
        if name == "per_view":
            g = fit_gate(np.concatenate([f[name] for f in fit]))

            def dist(rows: list[dict], g=g, name=name) -> np.ndarray:  # noqa: ANN001
                return np.array([g.distance(f[name]).max() for f in rows])
        else:
            g = fit_gate(np.stack([f[name] for f in fit]))

            def dist(rows: list[dict], g=g, name=name) -> np.ndarray:  # noqa: ANN001
                return g.distance(np.stack([f[name] for f in rows]))
        g = g.with_threshold(dist(thr))
        r: dict = {"threshold": g.threshold, "dims": g.info["dims"]}
        for k, rows in tests.items():
            d = dist(rows, g)
            r[k] = {"rejected": float(np.mean(d > g.threshold)), "median": float(np.median(d))}
        res[name] = r
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
