"""Docstring examples that run without a model are executed."""

from __future__ import annotations

import doctest

import pytest

import analysis.eap
import analysis.edges
import analysis.sites


@pytest.mark.parametrize("module", [analysis.sites, analysis.edges, analysis.eap])
def test_docstring_examples_run(module):
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0
