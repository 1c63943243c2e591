"""``node.embedded``: ``serve`` starts its worker child before recovering the spool; the child consumes only once
released (the release file written after ``Spool.recover``). A worker not started by ``serve`` never waits."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from node import embedded


def test_a_worker_waits_for_its_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = embedded.release_file(tmp_path)
    monkeypatch.setenv(embedded.RELEASE_ENV, str(marker))
    timer = threading.Timer(0.3, embedded.release, args=(tmp_path,))
    timer.start()
    t = time.monotonic()
    waited = embedded.wait_for_release(timeout_s=30)
    assert time.monotonic() - t >= 0.25 and waited >= 0.25
    assert marker.read_text().split()[0].isdigit()  # the releasing process


def test_not_released_in_time_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(embedded.RELEASE_ENV, str(embedded.release_file(tmp_path)))
    with pytest.raises(TimeoutError, match="not released"):
        embedded.wait_for_release(timeout_s=0.2)


def test_a_worker_not_started_by_serve_does_not_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embedded.RELEASE_ENV, raising=False)
    assert embedded.wait_for_release(timeout_s=0.01) == 0.0


def test_a_first_start_removes_the_release_of_the_previous_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    from node.settings import NodeSettings

    embedded.release(tmp_path)  # left by the previous run
    started = []
    monkeypatch.setattr(embedded.subprocess, "Popen", lambda cmd, env, preexec_fn: started.append(env) or "child")
    assert embedded.spawn(NodeSettings(spool_dir=tmp_path, metrics_port=None)) == "child"
    assert not embedded.release_file(tmp_path).exists()
    assert started[0][embedded.RELEASE_ENV] == str(embedded.release_file(tmp_path))
    embedded.release(tmp_path)
    embedded.spawn(NodeSettings(spool_dir=tmp_path, metrics_port=None), wait_for_release=False)  # a restart
    assert embedded.release_file(tmp_path).exists()
