"""The runnable examples in the probes package's docstrings are run (and pass)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["probes.sites", "probes.metrics", "probes.methods", "probes.methods.meandiff", "probes.evaluate",
           "probes.extract", "probes.io", "probes.suite", "probes.figures", "probes.contrast_data"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
