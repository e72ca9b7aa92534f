"""Probe tests run tiny models and tiny regressions: one thread (tests/conftest.py's
``one_thread``) for every test here."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _every_test_on_one_thread(one_thread):
    """tests/conftest.py's ``one_thread`` for every test here."""
