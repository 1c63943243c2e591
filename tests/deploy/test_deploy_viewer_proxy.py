"""The viewer's same-origin proxy for real: nginx with deploy/compose/ohif/nginx.conf in front of a real Orthanc.

The compose service names in the config are replaced by loopback addresses; OHIF's prebuilt dist is stood in
for by a small index.html (the npm package is 200 MB), next to the real deploy/compose/ohif/app-config.js.
Skipped when nginx is not installed (``apt-get install nginx-light``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pydicom.data import get_testdata_file

from tests.deploy.deploy_files import DEPLOY, orthanc_config
from tests.services import Orthanc, free_port

pytestmark = pytest.mark.integration

NGINX_CONF = DEPLOY / "compose" / "ohif" / "nginx.conf"
APP_CONFIG = DEPLOY / "compose" / "ohif" / "app-config.js"


def _nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.skip("nginx not installed (apt-get install nginx-light)")
    return found


@pytest.fixture
def viewer(tmp_path: Path, orthanc_factory) -> Iterator[tuple[str, Orthanc]]:  # noqa: ANN001
    nginx = _nginx()
    cfg = orthanc_config()
    orthanc = orthanc_factory(aet=cfg["DicomAet"], extra_config={"DicomWeb": cfg["DicomWeb"]})
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text("<!doctype html><title>OHIF stand-in</title><script src='/app-config.js'></script>")
    shutil.copy(APP_CONFIG, html / "app-config.js")
    port = free_port()
    server = NGINX_CONF.read_text()
    server = server.replace(f"http://orthanc:{cfg['HttpPort']}", orthanc.http_url)
    server = re.sub(r"^\s*resolver .*$", "", server, flags=re.M)
    server = server.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    server = server.replace("root /usr/share/nginx/html;", f"root {html};")
    (tmp_path / "server.conf").write_text(server)
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / d).mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events { worker_connections 64; }\n"
        "http {\n  include /etc/nginx/mime.types;\n"
        f"  access_log {tmp_path}/access.log;\n"
        + "".join(f"  {d}_temp_path {tmp_path}/{d};\n" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"  include {tmp_path}/server.conf;\n}}\n")
    test = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stderr
    proc = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(base + "/", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        yield base, orthanc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_deploy_viewer_serves_ohif_and_dicomweb_on_one_origin(viewer: tuple[str, Orthanc]) -> None:
    from dicomweb_client.api import DICOMwebClient

    base, orthanc = viewer
    orthanc.upload(Path(get_testdata_file("CT_small.dcm")))
    # OHIF's files and its single-page routes.
    assert "OHIF stand-in" in requests.get(base + "/", timeout=10).text
    spa = requests.get(base + "/viewer?StudyInstanceUIDs=1.2.3", timeout=10)
    assert spa.status_code == 200 and "OHIF stand-in" in spa.text
    assert spa.headers.get("Cross-Origin-Opener-Policy") == "same-origin"
    assert requests.get(base + "/app-config.js", timeout=10).text == APP_CONFIG.read_text()
    # DICOMweb through the same origin, at the roots app-config.js names.
    client = DICOMwebClient(base + "/dicom-web")
    studies = client.search_for_studies()
    assert len(studies) == 1
    study_uid = studies[0]["0020000D"]["Value"][0]
    series = client.search_for_series(study_instance_uid=study_uid)
    instances = client.retrieve_study(study_uid)
    assert series and len(instances) == 1
    # WADO-URI and Orthanc's own REST API under /orthanc/.
    assert requests.get(base + "/orthanc/system", timeout=10).json()["DicomAet"] == orthanc_config()["DicomAet"]
    sop = instances[0].SOPInstanceUID
    wado = requests.get(base + "/wado", params={"requestType": "WADO", "studyUID": study_uid,
                                               "seriesUID": instances[0].SeriesInstanceUID, "objectUID": sop},
                        timeout=30)
    assert wado.status_code == 200 and wado.content[:2] == b"\xff\xd8"  # a rendered JPEG frame
