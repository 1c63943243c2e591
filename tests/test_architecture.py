"""The shape of the house, enforced: one direction node -> models -> pipelines, phantoms apart, small modules.

Static checks over the source (every ``import`` statement, including the lazy ones inside functions and under
``TYPE_CHECKING``), no code is run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("node", "models", "pipelines")
MAX_LINES = 500

RUNTIME_ROOTS = ("node.service", "node.tasks", "node.scp", "node.deliver", "node.dispatch", "node.status",
                 "node.health", "node.metrics", "pipelines", "pipelines.xray.pipeline", "pipelines.mri.pipeline",
                 "pipelines.dicom_out", "pipelines.patient", "models.registry")
"""What the node runs (serve, worker, analyze); every model the registry loads is added below."""


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement in ``path`` (absolute names; relative ones resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name == "__init__.py":
        pkg = pkg.rsplit(".", 1)[0] + ".__init__"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.rsplit(".", node.level)[0]
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # ``from pkg import module``
    return {m for m in out if m.split(".")[0] in PACKAGES}


def _sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if ".venv" not in p.parts)


def _closure(roots: list[str]) -> dict[str, str]:
    """module -> the module that first imported it, over the static import graph from ``roots``."""
    seen: dict[str, str] = {r: "" for r in roots}
    todo = list(roots)
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None:
            continue
        for dep in _imports(path):
            if _module_file(dep) is not None and dep not in seen:
                seen[dep] = name
                todo.append(dep)
    return seen


def test_pipelines_never_import_models() -> None:
    offenders = [f"{p.relative_to(ROOT)} imports {m}" for p in _sources("pipelines") for m in _imports(p)
                 if m.split(".")[0] == "models"]
    assert offenders == []


def test_models_never_import_the_node() -> None:
    offenders = [f"{p.relative_to(ROOT)} imports {m}" for p in _sources("models") for m in _imports(p)
                 if m.split(".")[0] == "node"]
    assert offenders == []


def test_no_runtime_module_imports_a_phantom() -> None:
    from models.registry import REGISTRY

    roots = [*RUNTIME_ROOTS, *(f"models.{e.package}.predictor" for e in REGISTRY)]
    assert all(_module_file(r) is not None for r in roots), [r for r in roots if _module_file(r) is None]
    graph = _closure(roots)
    phantoms = {m: via for m, via in graph.items() if "phantom" in m}
    assert phantoms == {}, f"runtime code imports phantoms: {phantoms}"
    assert "node.demo" not in graph  # the demo generates phantom studies: a tool, not the runtime


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_stay_small(package: str) -> None:
    big = {str(p.relative_to(ROOT)): n for p in _sources(package)
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}, f"modules over {MAX_LINES} lines hold several ideas: split them"


def test_checkpoints_load_with_weights_only() -> None:
    hits = []
    for package in (*PACKAGES, "bench", "tests"):
        for p in sorted((ROOT / package).rglob("*.py")):
            for i, line in enumerate(p.read_text().splitlines(), 1):
                if "weights_only=False" in line.replace(" ", "") and p.name != "test_architecture.py":
                    hits.append(f"{p.relative_to(ROOT)}:{i}")
    assert hits == []
