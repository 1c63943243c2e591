"""Secrets never on disk in clear: the settings file of the embedded worker leaves out destination headers and URL
passwords (the worker gets them through its environment), spool files are 0600 and folders 0700, and the embedded
node still delivers to a STOW-RS server that requires the Authorization header."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

import pydicom
import pytest

from node.settings import CONFIG_ENV, NodeSettings, redact_url
from node.spool import Spool, header_from_dataset
from tests.node.nodetest_data import make_image, phantom_study_files

TOKEN = "Bearer cspine-test-token-7f3a9c"
URL_PASSWORD = "url-pw-31415"
BROKER_PASSWORD = "redis-pw-27182"


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _secret_settings(tmp_path: Path, **kw) -> NodeSettings:
    return NodeSettings(spool_dir=tmp_path / "spool", metrics_port=None, destinations=[
        {"name": "archive", "kind": "stow", "url": "http://127.0.0.1:9/dicom-web", "headers": {"Authorization": TOKEN}},
        {"name": "other", "kind": "stow", "url": f"https://node:{URL_PASSWORD}@archive.example/dicom-web"},
        {"name": "pacs", "kind": "dimse", "ae_title": "PACS", "host": "10.0.0.5", "port": 104},
    ], **kw)


def test_settings_file_has_no_secrets_and_the_environment_restores_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _secret_settings(tmp_path, broker_url=f"redis://:{BROKER_PASSWORD}@redis:6379/0")
    path = s.to_json_file(tmp_path / "spool" / "run" / "settings.json")
    text = path.read_text()
    for secret in (TOKEN, "cspine-test-token", URL_PASSWORD, BROKER_PASSWORD):
        assert secret not in text
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    data = json.loads(text)
    assert data["destinations"][0]["headers"] == {} and "***@archive.example" in data["destinations"][1]["url"]
    assert data["broker_url"] == "redis://:***@redis:6379/0"
    # what the embedded worker child does: settings from the file, secrets from its environment
    for k in [k for k in os.environ if k.startswith("CSPINE_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv(CONFIG_ENV, str(path))
    for k, v in s.secret_env().items():
        monkeypatch.setenv(k, v)
    child = NodeSettings()
    assert child.destinations == s.destinations and child.broker_url == s.broker_url
    assert child.destination("archive").headers == {"Authorization": TOKEN}


def test_no_secret_env_without_secrets(tmp_path: Path) -> None:
    s = NodeSettings(spool_dir=tmp_path, destinations=[{"name": "a", "kind": "stow", "url": "http://a/dicom-web"}])
    assert s.secret_env() == {}
    assert redact_url("http://user@h/x") == "http://user@h/x"
    assert redact_url("http://u:p@[::1]:8042/x") == "http://u:***@[::1]:8042/x"


def test_spool_files_are_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for d in (spool.root, spool.tmp_dir, spool.instances_dir, spool.outbox_dir, spool.broker_dir, spool.results_dir):
        assert _mode(d) == 0o700, d
    for name in ("index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"):
        assert _mode(spool.root / name) == 0o600, name
    ds = make_image()
    b = BytesIO()
    ds.save_as(b, enforce_file_format=True)
    spool.store(b.getvalue(), header_from_dataset(pydicom.dcmread(BytesIO(b.getvalue()))))
    (row,) = spool.instance_rows(ds.StudyInstanceUID)
    assert _mode(Path(row["path"])) == 0o600 and _mode(Path(row["path"]).parent) == 0o700


# -- the embedded node delivers with its secret header -------------------------------------------------------------


class _StowServer:
    """A STOW-RS endpoint on loopback that answers 401 unless the Authorization header is ``TOKEN``."""

    def __init__(self) -> None:
        self.authorised: list[int] = []  # body sizes of authorised POSTs
        self.refused = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self._body()
                if self.headers.get("Authorization") != TOKEN:
                    outer.refused += 1
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.authorised.append(len(body))
                reply = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/dicom-web"

    def stop(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def stow_server() -> Iterator[_StowServer]:
    s = _StowServer()
    yield s
    s.stop()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_embedded_node_delivers_with_its_secret_header_and_writes_it_nowhere(tmp_path: Path, stow_server) -> None:
    from node.scu import store_files
    from node.service import Node

    settings = NodeSettings(spool_dir=tmp_path / "spool", host="127.0.0.1", port=0, stable_age_s=1.0,
                            metrics_port=None, deliver_sweep_s=5.0, log_json=False, log_level="WARNING",
                            destinations=[{"name": "archive", "kind": "stow", "url": stow_server.url,
                                           "headers": {"Authorization": TOKEN}}])
    node = Node(settings).start()
    try:
        study_uid, paths = phantom_study_files(tmp_path / "in", seed=4, shape=(512, 448))
        assert store_files(paths, "127.0.0.1", node.port, calling_aet="SECRETS") == [0, 0, 0]
        deadline = time.monotonic() + 480
        outbox: dict[str, int] = {}
        while time.monotonic() < deadline:
            outbox = node.spool.counts()["outbox"]
            if outbox.get("archive:sent") and not outbox.get("archive:pending"):
                break
            time.sleep(1.0)
        assert outbox.get("archive:sent", 0) > 0 and not outbox.get("archive:pending"), \
            (outbox, node.spool.destination_errors())
        assert stow_server.authorised and stow_server.refused == 0
        run = node.spool.root / "run"
        assert _mode(run / "settings.json") == 0o600 and _mode(run) == 0o700
        for f in [p for p in run.rglob("*") if p.is_file()]:
            data = f.read_bytes()
            assert b"cspine-test-token" not in data, f
        assert _mode(node.spool.root) == 0o700
    finally:
        node.stop()


def test_stow_token_and_basic_password_are_secrets_and_the_token_is_sent(tmp_path: Path, stow_server) -> None:
    from node.deliver import send_rows
    from tests.node.test_node_deliver import _results

    s = NodeSettings(spool_dir=tmp_path / "spool", metrics_port=None, destinations=[
        {"name": "tok", "kind": "stow", "url": stow_server.url, "token": TOKEN.removeprefix("Bearer ")},
        {"name": "basic", "kind": "stow", "url": "https://a.example/dicom-web", "username": "u",
         "password": "basic-pw-16180"}])
    text = s.to_json_file(tmp_path / "run" / "settings.json").read_text()
    assert "cspine-test-token" not in text and "basic-pw-16180" not in text
    assert json.loads(s.secret_env()["CSPINE_DESTINATIONS"])[1]["password"] == "basic-pw-16180"
    spool = Spool(s.spool_dir)
    study, uids = _results(spool, ["tok"])
    send_rows(s.destination("tok"), spool.pending_outbox(study, "tok"), spool)
    assert spool.pending_outbox(study, "tok") == [] and len(stow_server.authorised) == 1
