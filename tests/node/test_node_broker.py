"""The embedded broker (``node.broker``): a worker never reads a message file before it is written whole.

kombu's filesystem transport writes a message under its final name: a reader polling the folder may take it while
it is still empty, and Celery's worker stops on the ``JSONDecodeError``. The race is shown against kombu's own
transport first (so the test proves it can see it), then ``node.broker`` must read every message intact."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from kombu import Connection
from kombu.transport.virtual.base import Empty

from node import broker
from node.metrics import queue_lengths
from node.settings import NodeSettings
from node.tasks import celery_config


def _race(scheme: str, folder: Path, count: int = 400) -> tuple[int, list[str]]:
    """Through the transport of ``scheme``, one thread puts ``count`` messages of ~200 kB while another takes them
    as fast as it can: (messages read intact, errors of the reading side)."""
    for sub in ("queue", "processed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    options = {"data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
               "processed_folder": str(folder / "processed"), "store_processed": False}
    connections = [Connection(f"{scheme}://localhost//", transport_options=options) for _ in range(2)]
    writer, reader = (c.default_channel for c in connections)
    body = {"body": "x" * 200_000}
    done, read, errors = threading.Event(), [0], []

    def take() -> None:
        while not (done.is_set() and read[0] + len(errors) >= count):
            try:
                message = reader._get("q")
            except Empty:
                continue
            except (json.JSONDecodeError, ValueError) as exc:
                errors.append(type(exc).__name__)
                continue
            assert message == body
            read[0] += 1

    t = threading.Thread(target=take, daemon=True)
    t.start()
    for _ in range(count):
        writer._put("q", body)
    done.set()
    t.join(60)
    for c in connections:
        c.release()
    return read[0], errors


def test_kombus_own_transport_lets_a_reader_take_a_message_not_yet_written(tmp_path: Path) -> None:
    """The bug ``node.broker`` works around, seen here (a few hundred messages are enough on this machine; if a
    kombu release fixes it, this test says so and ``node.broker`` can go)."""
    lost = []
    for attempt in range(5):
        _, errors = _race("filesystem", tmp_path / f"kombu{attempt}")
        lost += errors
        if lost:
            break
    if not lost:
        pytest.skip("kombu's filesystem transport did not show the race in 5 x 400 messages")
    assert "JSONDecodeError" in lost


def test_every_message_is_read_whole(tmp_path: Path) -> None:
    for attempt in range(3):
        read, errors = _race(broker.TRANSPORT, tmp_path / f"node{attempt}")
        assert errors == [] and read == 400
        assert not any(n.endswith(broker.PART) for n in os.listdir(tmp_path / f"node{attempt}" / "queue"))


def test_the_embedded_broker_uses_it_and_counts_only_whole_messages(tmp_path: Path) -> None:
    from kombu.transport import resolve_transport

    conf = celery_config(NodeSettings(spool_dir=tmp_path / "spool", metrics_port=None))
    assert conf["broker_url"].startswith(f"{broker.TRANSPORT}://")
    assert resolve_transport(broker.TRANSPORT) is broker.Transport
    queue = tmp_path / "spool" / "broker" / "queue"
    (queue / f"1_a.cspine.msg{broker.PART}").write_bytes(b"")  # being written: not a message yet
    (queue / "2_b.cspine.msg").write_bytes(b"{}")
    assert queue_lengths(None, str(tmp_path / "spool"), ["cspine"]) == {"cspine": 1}


def test_serve_removes_the_parts_a_dead_writer_left(tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    old, young = queue / f"1_a.cspine.msg{broker.PART}", queue / f"2_b.cspine.msg{broker.PART}"
    message = queue / "3_c.cspine.msg"
    for f in (old, young, message):
        f.write_bytes(b"{")
    os.utime(old, (1000.0, 1000.0))
    assert broker.remove_stale_parts(queue, older_than_s=60.0) == 1
    assert sorted(p.name for p in queue.iterdir()) == sorted([young.name, message.name])  # a message is kombu's
    assert broker.remove_stale_parts(tmp_path / "missing") == 0
