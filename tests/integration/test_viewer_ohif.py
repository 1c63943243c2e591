"""A real viewer shows our SR: OHIF v3 (prebuilt ``@ohif/app``) on a test Orthanc, driven by headless Chromium.

Setup (cached outside the repo, under ``~/.cache/cspine-node`` or ``$CSPINE_CACHE``):

* ``npm pack @ohif/app@3.13.2`` -> ``ohif/package/dist`` (or point ``CSPINE_OHIF_DIST`` at a ``dist/``);
* ``npm install playwright-core`` -> ``playwright/node_modules/playwright-core``;
* ``/usr/bin/chromium`` (Debian package ``chromium``).

A small threaded Python server serves ``dist/`` with our ``app-config.js`` and proxies ``/dicom-web/`` to
Orthanc from the same origin (Orthanc sends no CORS headers). The phantom study and every result object
are stored in Orthanc; the page opens the SR series, the first-run tour is skipped, and the test waits
until the SR viewport labels the radiograph with the Cobb angle and its value. Then it reads the text boxes
OHIF drew in the viewport's SVG layer (one per labelled group: its lines and its box on the page) and asserts
the reading-room display of issue 17 on the neutral view: at most 12 boxes, none overlapping another, no code in
any line, Cobb angle and SVA shown; OHIF's SR badge must not offer to restore the SR into its tools (it would
make rectangles of 4-point figures). Screenshots: the viewport (``docs/ohif_sr.png``) and the measurement panel
opened beside it (``docs/ohif_sr_panel.png``; it lists only hydrated measurements, so it is empty for our SR).

Skips (outside CI) when npm, node or chromium is missing; under ``CI=true`` a missing tool fails.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pydicom
import pytest
import requests

from pipelines.dicom_out import encode
from pipelines.dicom_out.example import phantom_example
from tests.services import Orthanc, in_ci

OHIF_VERSION = "3.13.2"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "ohif_sr.png"
PANEL_SCREENSHOT = ROOT / "docs" / "ohif_sr_panel.png"
CHROMIUM = Path("/usr/bin/chromium")
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")


def _cache() -> Path:
    return Path(os.environ.get("CSPINE_CACHE", Path.home() / ".cache" / "cspine-node"))


def _unavailable(msg: str) -> None:
    if in_ci():
        pytest.fail(msg + " - CI=true, so this is a failure")
    pytest.skip(msg)


def _ohif_dist() -> Path:
    env = os.environ.get("CSPINE_OHIF_DIST")
    if env:
        return Path(env)
    dist = _cache() / "ohif" / "package" / "dist"
    if (dist / "index.html").exists():
        return dist
    if shutil.which("npm") is None:
        _unavailable("npm missing: cannot fetch @ohif/app")
    target = dist.parent.parent
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "pack", f"@ohif/app@{OHIF_VERSION}"], cwd=target, check=True, capture_output=True, timeout=600)
    with tarfile.open(target / f"ohif-app-{OHIF_VERSION}.tgz") as tar:
        tar.extractall(target, filter="data")
    return dist


def _playwright_core() -> Path:
    pkg = _cache() / "playwright" / "node_modules" / "playwright-core"
    if not (pkg / "package.json").exists():
        if shutil.which("npm") is None:
            _unavailable("npm missing: cannot install playwright-core")
        pkg.parent.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(pkg.parent.parent), "playwright-core"], check=True,
                       capture_output=True, timeout=600)
    return pkg


APP_CONFIG = """window.config = {
  routerBasename: null,
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 1,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  defaultDataSourceName: 'orthanc',
  dataSources: [{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'orthanc',
    configuration: {
      friendlyName: 'test Orthanc (same-origin proxy)',
      name: 'orthanc',
      wadoUriRoot: window.location.origin + '/dicom-web',
      qidoRoot: window.location.origin + '/dicom-web',
      wadoRoot: window.location.origin + '/dicom-web',
      qidoSupportsIncludeField: false,
      imageRendering: 'wadors',
      thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true,
      supportsFuzzyMatching: false,
      supportsWildcard: true,
      staticWado: false,
      bulkDataURI: { enabled: true },
      omitQuotationForMultipartRequest: true,
    },
  }],
};
"""


def _handler(dist: Path, dicomweb: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _proxy(self) -> None:
            length = int(self.headers.get("Content-Length", 0) or 0)
            body = self.rfile.read(length) if length else None
            keep = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "content-type")}
            # the Host header makes Orthanc write BulkDataURIs that point back at this proxy
            keep["Host"] = self.headers.get("Host", "")
            r = requests.request(self.command, dicomweb + self.path[len("/dicom-web"):], data=body, headers=keep,
                                 timeout=120)
            self._send(r.status_code, r.content, r.headers.get("Content-Type", "application/octet-stream"))

        def do_POST(self) -> None:  # noqa: N802
            if self.path.startswith("/dicom-web/"):
                self._proxy()
            else:
                self._send(405, b"", "text/plain")

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path.startswith("/dicom-web/"):
                return self._proxy()
            if path == "/app-config.js":
                return self._send(200, APP_CONFIG.encode(), "text/javascript")
            f = (dist / path.lstrip("/")).resolve()
            if not f.is_file() or dist.resolve() not in f.parents:
                f = dist / "index.html"  # client-side routes (/viewer ...)
            ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
            self._send(200, f.read_bytes(), ctype, {"Cache-Control": "max-age=3600"})

    return Handler


@pytest.fixture
def viewer(orthanc: Orthanc) -> Iterator[tuple[str, Orthanc]]:
    """Base URL of OHIF served with a same-origin DICOMweb proxy to a fresh Orthanc."""
    dist = _ohif_dist()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(dist, orthanc.dicomweb_url))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", orthanc
    finally:
        server.shutdown()
        server.server_close()


DRIVER = r"""
const { chromium } = require(process.env.PW_CORE);
(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--use-gl=swiftshader', '--enable-unsafe-swiftshader'] });
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  const logs = [];
  page.on('console', m => { if (m.type() === 'error' || /fail|rror/i.test(m.text())) logs.push(m.type() + ': ' + m.text().slice(0, 400)); });
  page.on('pageerror', e => logs.push('pageerror: ' + String(e).slice(0, 300)));
  page.on('requestfailed', r => logs.push('request failed: ' + r.url().slice(0, 200) + ' ' + (r.failure() || {}).errorText));
  page.on('response', r => { if (r.status() >= 400) logs.push('HTTP ' + r.status() + ' ' + r.url().slice(0, 200)); });
  let ok = false, text = '';
  try {
    await page.goto(process.env.URL, { waitUntil: 'domcontentloaded', timeout: 90000 });
    const skip = page.getByText('Skip all');
    try { await skip.first().click({ timeout: 45000 }); } catch (e) { logs.push('no tour: ' + e.message.slice(0, 100)); }
    await page.waitForFunction(() => /Cobb[\s\S]{0,80}?-?\d+\.\d\d deg/.test(document.body.innerText),
                               null, { timeout: 120000, polling: 1000 });
    ok = true;
    try { await page.locator('[data-cy="confirm-and-hide-button"]').click({ timeout: 5000 }); } catch (e) {}
    await page.waitForTimeout(4000);  // let the viewport finish drawing the annotations
  } catch (e) {
    logs.push('wait failed: ' + e.message.slice(0, 200));
  }
  text = await page.evaluate(() => document.body.innerText);
  // every text box the viewport's SVG annotation layer draws: its lines and its box on the page
  const labels = await page.evaluate(() => Array.from(document.querySelectorAll('svg.svg-layer text'))
    .map(t => ({ lines: Array.from(t.querySelectorAll('tspan')).map(s => s.textContent.trim()).filter(Boolean),
                 text: t.textContent.trim(), box: (r => [r.left, r.top, r.right, r.bottom])(t.getBoundingClientRect()) }))
    .filter(l => l.text));
  await page.screenshot({ path: process.env.SHOT });
  let badge = '';  // OHIF's tooltip on the viewport's SR badge: whether it offers to restore the SR into its tools
  try {
    await page.locator('[data-cy^="ModalityLoadBadge-"]').first().hover({ timeout: 5000 });
    await page.waitForTimeout(1500);
    badge = await page.evaluate(() => Array.from(document.querySelectorAll('[role="tooltip"], [data-radix-popper-content-wrapper]'))
      .map(e => e.textContent.trim()).join(' | '));
  } catch (e) { logs.push('no SR badge: ' + e.message.slice(0, 100)); }
  let panel = '';
  try {
    await page.locator('[data-cy="side-panel-header-right"]').first().click({ timeout: 10000 });
    await page.waitForTimeout(1000);
    try { await page.locator('[data-cy="trackedMeasurements-btn"]').first().click({ timeout: 5000 }); }
    catch (e) { logs.push('no measurements tab: ' + e.message.slice(0, 100)); }
    await page.waitForTimeout(3000);
    panel = await page.evaluate(() => document.body.innerText);
    await page.screenshot({ path: process.env.PANEL_SHOT });
  } catch (e) {
    logs.push('measurement panel: ' + e.message.slice(0, 200));
  }
  await browser.close();
  console.log(JSON.stringify({ ok, text, labels, badge, panel, logs }));
})();
"""

RAW_CODE = re.compile(r"\b\d{3,}\s*:|\(\s*[A-Za-z0-9.-]+\s*,\s*[A-Za-z0-9]+\s*(,[^)]*)?\)|^\s*:")
"""A code in a label: digits before a colon ("363698007: C2 vertebra"), a (value, scheme[, meaning]) triple,
or a line that starts with a colon (an empty code meaning)."""
MAX_LABELS = 12


def _overlaps(boxes: list[list[float]]) -> list[tuple[int, int]]:
    """Pairs of text boxes (left, top, right, bottom on the page) that intersect by more than a pixel."""
    out = []
    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            b = boxes[j]
            if min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1:
                out.append((i, j))
    return out


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ohif_shows_sr_measurements(viewer: tuple[str, Orthanc], tmp_path: Path) -> None:
    base, orthanc = viewer
    if shutil.which("node") is None:
        _unavailable("node missing")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} missing (apt-get install chromium)")
    pw = _playwright_core()

    study, result = phantom_example(7, tmp_path / "study", shape=(1024, 832))
    objects = encode(study, result, now=datetime.now(UTC))
    for inst in study.instances:
        # the phantom writes no VOILUTFunction: OHIF 3.13.2 refuses DX images that carry it
        assert "VOILUTFunction" not in pydicom.dcmread(inst.path, stop_before_pixels=True)
        orthanc.upload(inst.path)
    for i, ds in enumerate(objects):
        p = tmp_path / f"result_{i}.dcm"
        ds.save_as(p, enforce_file_format=True)
        orthanc.upload(p)
    sr = next(o for o in objects if o.Modality == "SR")

    script = tmp_path / "drive.js"
    script.write_text(DRIVER)
    shot, panel_shot = tmp_path / "ohif_sr.png", tmp_path / "ohif_sr_panel.png"
    url = f"{base}/viewer?StudyInstanceUIDs={study.study_uid}&initialSeriesInstanceUID={sr.SeriesInstanceUID}"
    env = {**os.environ, "PW_CORE": str(pw), "CHROMIUM": str(CHROMIUM), "URL": url, "SHOT": str(shot),
           "PANEL_SHOT": str(panel_shot)}
    r = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=280, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print("OHIF console errors:", *out["logs"][:20], sep="\n  ")
    assert out["ok"], f"Cobb angle never listed; page text: {out['text'][:1500]!r}; console: {out['logs'][:10]}"
    cobb = [m for m in result.measurements if m.key == "cobb_c2_c7" and m.value is not None]
    shown = re.findall(r"(-?\d+\.\d\d) deg", out["text"])
    assert any(abs(float(v) - m.value) < 0.006 for v in shown for m in cobb), (shown, [m.value for m in cobb])
    # the neutral view (the SR's first group is a finding on it) reads: few labels, none over another, no codes
    labels = out["labels"]
    print("OHIF labels on the neutral view:", *(" | ".join(label["lines"]) for label in labels), sep="\n  ")
    assert 0 < len(labels) <= MAX_LABELS, [label["text"] for label in labels]
    lines = [line for label in labels for line in label["lines"] or [label["text"]]]
    assert not [line for line in lines if RAW_CODE.search(line)], lines
    assert not _overlaps([label["box"] for label in labels]), [(labels[i]["text"], labels[j]["text"])
                                                               for i, j in _overlaps([lb["box"] for lb in labels])]
    assert any(line.startswith("Cobb angle:") for line in lines) and any("sagittal vertical axis" in x for x in lines)
    # OHIF cannot load our groups into its measurement tools; it must not offer to (it would make rectangles)
    print("OHIF SR badge:", out["badge"])
    assert "not compatible" in out["badge"] and "restore" not in out["badge"], out["badge"]
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
    if panel_shot.exists():
        shutil.copyfile(panel_shot, PANEL_SCREENSHOT)
    assert panel_shot.exists(), out["logs"][-5:]
