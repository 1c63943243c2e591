"""``cspine-node demo``: the whole node on one machine in one command.

Starts the embedded node (embedded broker + worker, temporary spool unless ``--spool``), generates a
phantom lateral cervical study (neutral, flexion, extension; ``pipelines.phantoms.xray``), sends it to
the node by C-STORE, waits until the study is analysed, and prints the summary and where the result
objects were written (the spool's outbox). No destinations are configured, so nothing leaves the machine.

With ``--with-mri`` the demo sends an X-ray study and a T2 sagittal MRI study of one virtual patient
(``pipelines.phantoms.paired``), one after the other, so that the node also builds the patient-level report
(paper 002 Fig. 7/8 and the postoperative neck-pain model) into the later study's results.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pydicom

from node.spool import StudyState


def _wait(node, study_uid: str, timeout_s: float):  # noqa: ANN001, ANN202 - node.service.Node, spool row
    """The study's spool row once its newest generation is analysed (or failed), else None at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = node.spool.study(study_uid)
        if row is not None and row.state is StudyState.FAILED:
            return row
        if row is not None and row.state in {StudyState.DONE, StudyState.SKIPPED} and row.analyzed_generation >= row.generation:
            return row
        time.sleep(0.5)
    return node.spool.study(study_uid)


def _send_and_report(node, settings, study_uid: str, paths: list[Path], what: str,  # noqa: ANN001
                     timeout_s: float) -> Path | None:
    """C-STORE ``paths``, wait for the analysis, print its summary and result objects; the outbox folder of
    those objects, or None when the study was not analysed."""
    from node.scu import store_files

    print(f"{what} {study_uid}: {len(paths)} files in {paths[0].parent}")
    t0 = time.monotonic()
    statuses = store_files(paths, "127.0.0.1", node.port, called_aet=settings.ae_title, calling_aet="DEMO")
    shown = sorted({f"0x{s:04X}" for s in statuses})
    print(f"C-STORE statuses: {', '.join(shown)} ({len(statuses)} instances)")
    row = _wait(node, study_uid, timeout_s)
    if row is not None and row.state is StudyState.FAILED:
        print(f"analysis failed (dead letter): {row.reason}")
        return None
    if row is None or row.state not in {StudyState.DONE, StudyState.SKIPPED}:
        print(f"study not analysed within {timeout_s:.0f} s (state: {row.state if row else 'unknown'})")
        return None
    print(f"analysed in {time.monotonic() - t0:.1f} s after the C-STORE began")
    print(row.summary or f"not analysed: {row.reason}")
    out = node.spool.outbox_path(study_uid, row.analyzed_generation, "x").parent
    print(f"result objects in {out}:")
    for f in sorted(out.iterdir()):
        try:
            desc = str(pydicom.dcmread(f, stop_before_pixels=True).get("SeriesDescription", ""))
        except Exception:  # noqa: BLE001 - summary.txt and anything else that is not DICOM
            desc = ""
        print(f"  {f.name}" + (f"  ({desc})" if desc else ""))
    return out


def _sr_lines(ds, depth: int = 0) -> list[tuple[int, str]]:  # noqa: ANN001 - pydicom Dataset
    """(depth, "name: value") of every content item of an SR, in document order."""
    out = []
    for item in ds.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        if "ConceptCodeSequence" in item:
            value = item.ConceptCodeSequence[0].CodeMeaning
        elif "MeasuredValueSequence" in item and item.MeasuredValueSequence:
            mv = item.MeasuredValueSequence[0]
            value = f"{float(mv.NumericValue):.3f} {mv.MeasurementUnitsCodeSequence[0].CodeValue}"
        else:
            value = str(item.get("TextValue", ""))
        out.append((depth, f"{name}: {value}"))
        out.extend(_sr_lines(item, depth + 1))
    return out


def _print_patient_prediction(out_dir: Path) -> None:
    """Print the model-prediction groups (e.g. postoperative neck-pain recovery) of the patient-level SR."""
    for f in sorted(out_dir.glob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if ds.get("Modality") != "SR" or "patient-level" not in str(ds.get("SeriesDescription", "")):
            continue
        lines = _sr_lines(ds)
        for i, (depth, text) in enumerate(lines):
            if "neck pain" in text.lower():
                print("patient-level report, model prediction:")
                for d, t in lines[i:]:
                    if d < depth:
                        break
                    print("  " + "  " * (d - depth) + t)
                return


def run_demo(spool: Path | None = None, seed: int = 0, timeout_s: float = 600.0, port: int = 0,
             with_mri: bool = False) -> int:
    from node.logs import setup_logging
    from node.service import Node
    from node.settings import NodeSettings

    work = Path(tempfile.mkdtemp(prefix="cspine-demo-"))
    spool = Path(spool) if spool else work / "spool"
    settings = NodeSettings(spool_dir=spool, host="127.0.0.1", port=port, metrics_port=None,
                            destinations=[], log_json=False, log_level="WARNING")
    setup_logging(settings.log_level, settings.log_json)
    node = Node(settings).start()
    try:
        print(f"node {settings.ae_title} listening on 127.0.0.1:{node.port}, spool {node.spool.root}")
        if not with_mri:
            from pipelines.phantoms.dicom import write_study
            from pipelines.phantoms.xray import generate_study

            phantom = generate_study(seed)
            paths = write_study(phantom, work / "phantom")
            return 0 if _send_and_report(node, settings, phantom.study_uid, paths, "phantom X-ray study", timeout_s) else 1
        from pipelines.phantoms.paired import paired_phantom_studies

        xray, mri = paired_phantom_studies(seed, work / "paired")
        out = None
        for what, paths in (("phantom X-ray study", xray), ("phantom MRI study of the same patient", mri)):
            uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
            out = _send_and_report(node, settings, uid, paths, what, timeout_s)
            if out is None:
                return 1
        print("the MRI study's results hold the patient-level report (X-ray + MRI) as SR and PDF")
        _print_patient_prediction(out)
        return 0
    finally:
        node.stop()
