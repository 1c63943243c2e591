"""The test services themselves: Orthanc (REST, DICOMweb, DICOM port) and Redis start on loopback and answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from pydicom.data import get_testdata_file

from tests.services import Orthanc, Redis

pytestmark = pytest.mark.integration


def test_orthanc_starts_and_serves_dicomweb(orthanc: Orthanc) -> None:
    from dicomweb_client.api import DICOMwebClient

    assert orthanc.get("/system").json()["DicomAet"] == "ORTHANC"
    path = Path(get_testdata_file("CT_small.dcm"))
    orthanc.upload(path)
    client = DICOMwebClient(orthanc.dicomweb_url)
    studies = client.search_for_studies()
    assert len(studies) == 1
    assert orthanc.dicomweb_url.endswith("/dicom-web")
    assert orthanc.dicom_port != orthanc.http_port


def test_redis_starts(redis_server: Redis) -> None:
    r = redis.Redis.from_url(redis_server.url)
    r.set("k", "v")
    assert r.get("k") == b"v"
