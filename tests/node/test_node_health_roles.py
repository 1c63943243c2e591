"""``cspine-node health`` roles: the enum, its CLI strings and the dispatch to each role's check."""

from __future__ import annotations

import pytest

from node import health
from node.cli import build_parser
from node.health import Role
from node.settings import NodeSettings


def test_every_role_is_a_cli_choice() -> None:
    for role in Role:
        assert build_parser().parse_args(["health", "--role", role.value]).role == role
    with pytest.raises(SystemExit):
        build_parser().parse_args(["health", "--role", "scheduler"])


def test_check_dispatches_by_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "check_node", lambda settings, timeout_s: (True, f"node {timeout_s}"))
    monkeypatch.setattr(health, "check_worker", lambda settings, hostname, timeout_s: (True, f"worker {hostname}"))
    s = NodeSettings(metrics_port=None)
    assert health.check("node", s, timeout_s=3) == (True, "node 3")
    assert health.check(Role.WORKER, s, hostname="w@h") == (True, "worker w@h")
    with pytest.raises(ValueError):
        health.check("scheduler", s)
