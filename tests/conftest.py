"""Shared pytest fixtures: real services (Orthanc + DICOMweb, Redis) on free loopback ports.

A test that needs a service binary is skipped with a clear message when the binary is missing, except
under CI (env ``CI=true``), where a missing binary fails the test instead: CI must run everything.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.services import (  # noqa: E402
    ORTHANC_BIN,
    ORTHANC_DICOMWEB_PLUGIN,
    REDIS_BIN,
    Orthanc,
    Redis,
    binary_available,
    in_ci,
    start_orthanc,
    start_redis,
)


def require_binary(*names: str) -> None:
    """Skip the calling test if a binary is missing (fail instead under CI)."""
    missing = [n for n in names if not binary_available(n)]
    if not missing:
        return
    msg = f"missing binaries: {', '.join(missing)} (apt-get install orthanc orthanc-dicomweb redis-server dcmtk dicom3tools)"
    if in_ci():
        pytest.fail(msg + " - CI=true, so this is a failure")
    pytest.skip(msg)


def _require_orthanc() -> None:
    require_binary(ORTHANC_BIN)
    if not ORTHANC_DICOMWEB_PLUGIN.exists():
        msg = f"{ORTHANC_DICOMWEB_PLUGIN} missing (apt-get install orthanc-dicomweb)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture
def require() -> Callable[..., None]:
    """``require("storescu", "dciodvfy")`` inside a test: skip (or fail under CI) when a binary is missing."""
    return require_binary


@pytest.fixture
def orthanc_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Orthanc]]:
    """A function ``start(aet="ORTHANC", modalities={name: (aet, host, port)}) -> Orthanc``; all stopped at the end."""
    _require_orthanc()
    started: list[Orthanc] = []

    def start(aet: str = "ORTHANC", modalities: dict[str, tuple[str, str, int]] | None = None, **kw) -> Orthanc:
        o = start_orthanc(tmp_path_factory.mktemp("orthanc"), aet=aet, modalities=modalities or {}, **kw)
        started.append(o)
        return o

    yield start
    for o in started:
        o.stop()


@pytest.fixture
def orthanc(orthanc_factory: Callable[..., Orthanc]) -> Orthanc:
    """A fresh Orthanc (DICOMweb at ``.dicomweb_url``, DICOM at ``.dicom_port``, AE ``ORTHANC``) for one test."""
    return orthanc_factory()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """One redis-server on a free loopback port for the whole session (``.url``)."""
    require_binary(REDIS_BIN)
    r = start_redis(tmp_path_factory.mktemp("redis"))
    yield r
    r.stop()


@pytest.fixture(scope="session")
def models():  # noqa: ANN201 - pipelines.interfaces.ModelSet
    """Every shipped model on the CPU, built once per session as a worker builds them (``models.registry``)."""
    from models.registry import build_models
    from node.settings import NodeSettings

    settings = NodeSettings(device="cpu")
    return build_models(settings.model, batch_wait_ms=settings.batch_wait_ms)
