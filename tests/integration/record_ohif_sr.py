"""Record what OHIF writes when a radiologist corrects a keypoint: the real OHIF 3.13.2 in headless Chromium.

``python -m tests.integration.record_ohif_sr [OUT.dcm]`` (default ``tests/fixtures/ohif_saved_sr.dcm``):

1. a phantom lateral radiograph study (seed 7, 1024 x 832, anonymous phantom data) goes into a fresh Orthanc;
2. OHIF (served as in ``test_viewer_ohif.py``: same-origin proxy to Orthanc) opens its neutral view;
3. playwright-core draws, with the mouse on the viewport canvas, a **Length** line on the C7 inferior endplate
   (both ends a few pixels off the phantom's corners, as a radiologist redrawing the line) and a **Probe** point
   near the C4 antero-inferior corner (a moved keypoint), and a Probe far from the spine (an unrelated mark);
   OHIF asks "Track measurements for this series?" -> Yes; then "Create SR" in the measurement panel and "Save"
   in OHIF's report dialog, which STOWs a new SR to Orthanc through the proxy;
4. the SR is fetched from Orthanc and written to OUT, with a JSON sidecar (``OUT.json``) of the image points the
   mouse aimed at (the canvas <-> image mapping is cornerstone's own, ``viewport.worldToCanvas``).

Tool activation goes through the toolbar buttons when they are found, else through cornerstone's tool group
(``window.cornerstoneTools``), and the driver logs which; everything else is OHIF's own UI. Needs what
``test_viewer_ohif.py`` needs (Orthanc with DICOMweb, node, npm's ``@ohif/app`` and ``playwright-core`` in the
cache, ``/usr/bin/chromium``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pydicom

from pipelines.dicom_out.example import phantom_example
from pipelines.vocabulary import KEYPOINT_NAMES, View
from tests.integration.test_viewer_ohif import CHROMIUM, _handler, _ohif_dist, _playwright_core
from tests.services import start_orthanc

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "ohif_saved_sr.dcm"
SEED, SHAPE = 7, (1024, 832)

DRIVER = r"""
const { chromium } = require(process.env.PW_CORE);
const plan = JSON.parse(process.env.PLAN);
const out = { steps: [], logs: [], aimed: [] };
const step = s => { out.steps.push(s); };
(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--use-gl=swiftshader', '--enable-unsafe-swiftshader'] });
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  page.on('console', m => { if (m.type() === 'error') out.logs.push('console: ' + m.text().slice(0, 300)); });
  page.on('pageerror', e => out.logs.push('pageerror: ' + String(e).slice(0, 300)));
  page.on('request', r => { if (r.method() === 'POST') out.logs.push('POST ' + r.url().slice(0, 200)); });
  page.on('response', r => { if (r.request().method() === 'POST' || r.status() >= 400) out.logs.push('HTTP ' + r.status() + ' ' + r.url().slice(0, 200)); });
  const shot = async name => { try { await page.screenshot({ path: process.env.SHOTS + '/' + name + '.png' }); } catch (e) {} };
  try {
    await page.goto(process.env.URL, { waitUntil: 'domcontentloaded', timeout: 90000 });
    try { await page.getByText('Skip all').first().click({ timeout: 45000 }); step('tour skipped'); } catch (e) { step('no tour'); }
    // the image is on screen when cornerstone's viewport has an image id
    await page.waitForFunction(() => {
      const els = window.cornerstone && window.cornerstone.getEnabledElements();
      return els && els.length && els[0].viewport.getCurrentImageId && els[0].viewport.getCurrentImageId();
    }, null, { timeout: 120000, polling: 500 });
    await page.waitForTimeout(3000);
    step('image shown');
    await shot('1-image');
    const toCanvas = async (x, y) => page.evaluate(([x, y]) => {
      const el = window.cornerstone.getEnabledElements()[0];
      const vp = el.viewport;
      // OHIF/cornerstone image coordinates: (0, 0) is the top-left corner of the first pixel
      const world = window.cornerstone.utilities.imageToWorldCoords(vp.getCurrentImageId(), [x, y]);
      const c = vp.worldToCanvas(world);
      const r = vp.canvas.getBoundingClientRect();
      return [r.left + c[0], r.top + c[1]];
    }, [x, y]);
    const activate = async tool => {
      for (const sel of [`[data-cy="${tool}"]`, `[data-tool="${tool}"]`]) {
        const b = page.locator(sel).first();
        if (await b.count() && await b.isVisible()) { await b.click(); step('toolbar ' + sel); return; }
      }
      const ok = await page.evaluate(tool => {
        const T = window.cornerstoneTools;
        const el = window.cornerstone.getEnabledElements()[0];
        const g = T.ToolGroupManager.getToolGroupForViewport(el.viewport.id, el.renderingEngine.id);
        if (!g || !g.hasTool(tool)) return false;
        const active = g.getActivePrimaryMouseButtonTool();
        if (active && active !== tool) g.setToolPassive(active);
        g.setToolActive(tool, { bindings: [{ mouseButton: 1 }] });
        return true;
      }, tool);
      step(`tool group ${tool}: ${ok}`);
      if (!ok) throw new Error('cannot activate ' + tool);
    };
    let tracked = false;
    const maybeTrack = async () => {
      if (tracked) return;
      const yes = page.locator('[data-cy="prompt-begin-tracking-yes-btn"]');
      try { await yes.first().click({ timeout: 8000 }); tracked = true; step('tracking: yes'); } catch (e) { step('no tracking prompt'); }
    };
    for (const a of plan) {
      await activate(a.tool);
      if (a.tool === 'Length') {
        const p = await toCanvas(...a.from), q = await toCanvas(...a.to);
        await page.mouse.move(p[0], p[1]); await page.mouse.down();
        await page.mouse.move((p[0] + q[0]) / 2, (p[1] + q[1]) / 2, { steps: 5 });
        await page.mouse.move(q[0], q[1], { steps: 5 }); await page.mouse.up();
        out.aimed.push({ tool: a.tool, image: [a.from, a.to], canvas: [p, q] });
      } else if (a.tool === 'ArrowAnnotate') {
        // the arrow's tip where the mouse goes down, its tail where it goes up; OHIF then asks for the text
        const p = await toCanvas(...a.at), q = await toCanvas(a.at[0] + 40, a.at[1] - 40);
        await page.mouse.move(p[0], p[1]); await page.mouse.down();
        await page.mouse.move(q[0], q[1], { steps: 5 }); await page.mouse.up();
        const box = page.locator('input[type="text"], input:not([type])').last();
        await box.fill(a.label, { timeout: 10000 });
        await box.press('Enter');
        step('arrow labelled ' + a.label);
        out.aimed.push({ tool: a.tool, image: [a.at], canvas: [p], label: a.label });
      } else {
        const p = await toCanvas(...a.at);
        await page.mouse.move(p[0], p[1]); await page.mouse.down(); await page.mouse.up();
        out.aimed.push({ tool: a.tool, image: [a.at], canvas: [p] });
      }
      step('drew ' + a.tool);
      await page.waitForTimeout(800);
      await maybeTrack();
    }
    await shot('2-drawn');
    const create = page.getByText('Create SR', { exact: true });
    if (!(await create.count())) {
      for (const sel of ['[data-cy="trackedMeasurements-btn"]', '[data-cy="side-panel-header-right"]']) {
        try { await page.locator(sel).first().click({ timeout: 3000 }); step('opened ' + sel); break; } catch (e) {}
      }
    }
    await page.getByText('Create SR', { exact: true }).first().click({ timeout: 20000 });
    step('create SR clicked');
    await page.waitForTimeout(1500);
    await shot('3-dialog');
    const input = page.locator('input[type="text"], input:not([type])').last();
    try { await input.fill(process.env.REPORT_NAME, { timeout: 5000 }); step('named'); } catch (e) { step('no name input'); }
    const stowed = page.waitForResponse(r => r.request().method() === 'POST' && r.url().includes('/dicom-web/studies'),
                                        { timeout: 60000 });
    await page.getByRole('button', { name: 'Save' }).last().click({ timeout: 10000 });
    step('save clicked');
    const resp = await stowed;
    step('STOW-RS answered HTTP ' + resp.status());
    step('stowed');
    await page.waitForTimeout(3000);
    await shot('4-saved');
    if (process.env.EDIT) {
      // load the saved SR back for editing (OHIF offers to restore its own SRs), drag a point, save again
      const edit = JSON.parse(process.env.EDIT);
      try { await page.locator('[data-cy="yes-hydrate-btn"]').first().click({ timeout: 30000 }); step('hydrated'); }
      catch (e) { step('no restore prompt: ' + e.message.slice(0, 80)); }
      await page.waitForTimeout(3000);
      await shot('5-hydrated');
      const p = await toCanvas(...edit.from), q = await toCanvas(...edit.to);
      await page.mouse.move(p[0], p[1]); await page.mouse.down();
      await page.mouse.move(q[0], q[1], { steps: 8 }); await page.mouse.up();
      step('dragged');
      out.aimed_edit = { image: [edit.from, edit.to], canvas: [p, q] };
      await page.waitForTimeout(1000);
      await shot('6-moved');
      const stowed2 = page.waitForResponse(r => r.request().method() === 'POST' && r.url().includes('/dicom-web/studies'),
                                           { timeout: 60000 });
      await page.getByText('Create SR', { exact: true }).first().click({ timeout: 20000 });
      await page.waitForTimeout(1500);
      try { await page.locator('input[type="text"], input:not([type])').last().fill(process.env.REPORT_NAME + ' edited', { timeout: 5000 }); } catch (e) {}
      await page.getByRole('button', { name: 'Save' }).last().click({ timeout: 10000 });
      step('edited SR: STOW-RS answered HTTP ' + (await stowed2).status());
      await page.waitForTimeout(2000);
      await shot('7-saved-again');
    }
    out.ok = true;
  } catch (e) {
    out.error = e.message.slice(0, 500);
    await shot('9-error');
  }
  out.buttons = await page.evaluate(() => Array.from(document.querySelectorAll('[data-cy]')).map(e => e.getAttribute('data-cy')).slice(0, 200));
  await browser.close();
  console.log(JSON.stringify(out));
})();
"""


def plan(result_keypoints: dict[str, tuple[float, float]]) -> list[dict]:
    """What the mouse does, in DICOM image coordinates (pixel-centre keypoints + 0.5): a Length line on the C7
    inferior endplate with both ends a few pixels off, a Probe 9 px right / 6 px down of C4 antero-inferior, and
    an unrelated Probe 150 px anterior of C4 (prevertebral soft tissue), and an arrow (ArrowAnnotate) whose tip is
    7 px left / 5 px down of C5 postero-superior, labelled "C5 PS" in OHIF's text prompt."""
    def at(name: str, dx: float = 0.0, dy: float = 0.0) -> list[float]:
        x, y = result_keypoints[name]
        return [round(x + 0.5 + dx, 1), round(y + 0.5 + dy, 1)]

    return [
        {"tool": "Length", "from": at("C7 antero-inferior", -4, 3), "to": at("C7 postero-inferior", 5, -2)},
        {"tool": "Probe", "at": at("C4 antero-inferior", 9, 6)},
        {"tool": "Probe", "at": at("C4 antero-inferior", 150, 0)},
        {"tool": "ArrowAnnotate", "at": at("C5 postero-superior", -7, 5), "label": "C5 PS"},
    ]


def edit_plan(result_keypoints: dict[str, tuple[float, float]]) -> dict:
    """After saving: restore the SR in OHIF and drag the Probe near C4 antero-inferior 6 px left and 4 px up."""
    x, y = result_keypoints["C4 antero-inferior"]
    return {"from": [round(x + 0.5 + 9, 1), round(y + 0.5 + 6, 1)], "to": [round(x + 0.5 + 3, 1), round(y + 0.5 + 2, 1)]}


def _saved_srs(orthanc, new: set[str]) -> list[bytes]:  # noqa: ANN001 - tests.services.Orthanc
    """The new SRs in Orthanc, in the order they were saved (Content Time, then Series Number)."""
    found = []
    for ident in orthanc.instances():
        tags = orthanc.get(f"/instances/{ident}/simplified-tags").json()
        if tags.get("SOPInstanceUID") in new and tags.get("Modality") == "SR":
            key = (tags.get("ContentDate", ""), tags.get("ContentTime", ""), int(tags.get("SeriesNumber", 0) or 0))
            found.append((key, orthanc.get(f"/instances/{ident}/file").content))
    return [data for _, data in sorted(found)]


def record(out: Path, shots: Path | None = None, *, edit: bool = False) -> dict:
    """Run the whole recording; returns the driver's report (``ok``, ``steps``, ``logs``, ``aimed``). ``edit``: then
    restore the saved SR in OHIF, drag one point and save again, written to ``<out stem>_edited.dcm``."""
    with tempfile.TemporaryDirectory(prefix="ohif-record-") as tmp:
        tmp_path = Path(tmp)
        shots = shots or tmp_path / "shots"
        shots.mkdir(parents=True, exist_ok=True)
        orthanc = start_orthanc(tmp_path / "orthanc")
        server = None
        try:
            study, result = phantom_example(SEED, tmp_path / "study", shape=SHAPE)
            for inst in study.instances:
                orthanc.upload(inst.path)
            neutral = next(i for i in result.images if i.view == View.NEUTRAL)
            kps = {k.name: (k.x, k.y) for k in neutral.keypoints if k.name in KEYPOINT_NAMES}
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(_ohif_dist(), orthanc.dicomweb_url))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            base = f"http://127.0.0.1:{server.server_address[1]}"
            url = f"{base}/viewer?StudyInstanceUIDs={study.study_uid}&initialSeriesInstanceUID={neutral.series_uid}"
            script = tmp_path / "drive.js"
            script.write_text(DRIVER)
            before = orthanc.sop_instance_uids()
            env = {**os.environ, "PW_CORE": str(_playwright_core()), "CHROMIUM": str(CHROMIUM), "URL": url,
                   "SHOTS": str(shots), "PLAN": json.dumps(plan(kps)), "REPORT_NAME": "cspine correction"}
            if edit:
                env["EDIT"] = json.dumps(edit_plan(kps))
            r = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=400, env=env)
            if r.returncode != 0:
                raise RuntimeError(r.stderr[-3000:])
            report = json.loads(r.stdout.strip().splitlines()[-1])
            new = orthanc.sop_instance_uids() - before
            report["new_instances"] = sorted(new)
            if not report.get("ok") or not new:
                return report
            saved = _saved_srs(orthanc, new)
            report["saved_srs"] = len(saved)
            if not saved or (edit and len(saved) < 2):
                return report
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(saved[0])
            ds = pydicom.dcmread(out)
            report["sop_class_uid"] = str(ds.SOPClassUID)
            report["referenced_image"] = neutral.image_uid
            report["study_uid"] = study.study_uid
            sidecar = {k: report[k] for k in ("aimed", "referenced_image", "study_uid", "sop_class_uid")}
            sidecar["seed"], sidecar["shape"] = SEED, list(SHAPE)
            sidecar["keypoints"] = {n: [round(x, 3), round(y, 3)] for n, (x, y) in kps.items()}
            sidecar["pixel_spacing_mm"] = list(neutral.pixel_spacing_mm or ())
            sidecar["image_size"] = [neutral.rows, neutral.columns]
            sidecar["ohif_version"] = "3.13.2"
            if edit:
                edited = out.with_name(out.stem + "_edited.dcm")
                edited.write_bytes(saved[-1])
                sidecar["aimed_edit"] = report.get("aimed_edit")
                report["written_edited"] = str(edited)
            out.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
            report["written"] = str(out)
            return report
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
            orthanc.stop()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    shots_dir = Path(os.environ["CSPINE_SHOTS"]) if os.environ.get("CSPINE_SHOTS") else None
    rep = record(target, shots_dir, edit=os.environ.get("CSPINE_RECORD_EDIT", "") == "1")
    print(json.dumps({k: v for k, v in rep.items() if k != "buttons"}, indent=1))
    print("data-cy:", rep.get("buttons"))
    sys.exit(0 if rep.get("written") else 1)
