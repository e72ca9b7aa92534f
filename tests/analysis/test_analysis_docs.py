"""Docstring examples that run without a model are executed."""

from __future__ import annotations

import doctest

import pytest

import analysis.circuits.eap
import analysis.circuits.edges
import analysis.patching.sites


@pytest.mark.parametrize("module", [analysis.patching.sites, analysis.circuits.edges, analysis.circuits.eap])
def test_docstring_examples_run(module):
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0
