"""The runnable examples in the probes package's docstrings run, pass, and are all still there."""

from __future__ import annotations

import importlib

import pytest

EXAMPLES = {
    "probes.sites": 2,
    "probes.metrics": 3,
    "probes.methods": 2,
    "probes.methods.meandiff": 3,
    "probes.evaluate": 3,
    "probes.extract": 2,
    "probes.extract.config": 2,
    "probes.extract.activations": 5,
    "probes.extract.tokens": 3,
    "probes.extract.run": 3,
    "probes.extract.shards": 5,
    "probes.io": 5,
    "probes.figures": 9,
    "probes.contrast_data": 2,
}
"""Examples each module runs: deleting or skipping one fails the test (raise the number when adding one)."""

SKIPPED = {"probes.suite": 2}
"""Modules whose examples need a trained organism and are skipped (run_probe_suite is tested in test_probe_suite)."""


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_examples_run(name, run_examples, random_bridge):
    result = run_examples(importlib.import_module(name), globs={"bridge": random_bridge})
    assert result.failed == 0
    assert result.run >= EXAMPLES[name], f"{name} ran {result.run} examples, expected {EXAMPLES[name]}"


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_skipped_examples_are_still_there(name, run_examples):
    result = run_examples(importlib.import_module(name))
    assert result.failed == 0 and result.found >= SKIPPED[name]
