"""The sender registry of delivery: every destination kind has a sender, and configs keep their strings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.deliver import SENDERS, Attempt, DimseSender, StowSender, send_rows, sender_for
from node.settings import Destination, DestinationKind, NodeSettings


def test_every_destination_kind_has_a_sender() -> None:
    assert set(SENDERS) == set(DestinationKind)
    for kind in DestinationKind:
        assert callable(getattr(sender_for(kind), "send", None)), kind
    assert isinstance(sender_for(DestinationKind.DIMSE), DimseSender)
    assert isinstance(sender_for("stow"), StowSender)


def test_unknown_kind_has_no_sender() -> None:
    with pytest.raises(ValueError, match="no sender for destination kind 'ftp'"):
        sender_for("ftp")


def test_destination_kind_from_config_strings() -> None:
    s = NodeSettings(destinations=[
        {"name": "pacs", "kind": "dimse", "ae_title": "PACS", "host": "10.0.0.5", "port": 104},
        {"name": "archive", "kind": "stow", "url": "http://archive/dicom-web"},
    ])
    assert [d.kind for d in s.destinations] == [DestinationKind.DIMSE, DestinationKind.STOW]
    assert json.loads(s.model_dump_json())["destinations"][1]["kind"] == "stow"
    with pytest.raises(ValueError, match="dimse"):
        Destination(name="x", kind="ftp")


def test_send_rows_uses_the_registered_sender(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []

    class Fake:
        def send(self, dest: Destination, rows: list, *, calling_aet: str, on_sent=None) -> Attempt:  # noqa: ANN001
            calls.append((dest.name, rows, calling_aet))
            on_sent([1])  # acknowledged: recorded at once
            return Attempt(sent=[1, 2])

    class FakeSpool:
        sent: list[list[int]] = []
        root = tmp_path  # the audit trail goes under it

        def mark_sent(self, ids: list[int]) -> None:
            self.sent = [*self.sent, ids]

    monkeypatch.setitem(SENDERS, DestinationKind.STOW, Fake())
    spool = FakeSpool()
    send_rows(Destination(name="a", kind="stow", url="http://a"), ["r1", "r2"], spool, calling_aet="ME")
    assert calls == [("a", ["r1", "r2"], "ME")] and spool.sent == [[1], [2]]  # the rest recorded at the end
