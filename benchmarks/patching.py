"""Benchmark: our exact patching vs ``transformer_lens.patching``, and attribution vs exact.

One of the random-weight models of ``archs.py`` (``gpt2``, ``llama-gqa``, ``smollm2``), 4 prompt
pairs (48 tokens; 24 on ``smollm2``). The standard sweeps (resid_pre by layer × position, head
outputs, head outputs by position) run through both implementations on the same bridge, inputs,
metric and cells; on ``smollm2`` head outputs by position are a seeded random subset of cells
(``--by-pos-cells``, 540 of 6,480), patched by the reference through its ``index_df``. Prints one
JSON object.

    nice -n 10 .venv/bin/python benchmarks/patching.py --arch smollm2
    .venv/bin/python benchmarks/patching.py --arch llama-gqa --quick   # seconds: proves it runs
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # the reference draws a bar per sweep

import archs  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import transformer_lens.patching as tlp  # noqa: E402

from analysis.circuits.attribution import attribution_patch, compare  # noqa: E402
from analysis.patching.metrics import on_full_logits  # noqa: E402
from analysis.patching.patcher import ActivationPatcher, PatchingConfig  # noqa: E402
from analysis.patching.results import Axis, SweepResult  # noqa: E402

REFERENCE = {
    "resid_pre": tlp.get_act_patch_resid_pre,
    "head_out": tlp.get_act_patch_attn_head_out_all_pos,
    "head_out_by_pos": tlp.get_act_patch_attn_head_out_by_pos,
}
BY_POS_COLUMNS = ("layer", "pos", "head_index")
"""The reference's ``index_df`` columns for head outputs by position (its patch setter's index)."""
BY_POS_CELLS = {"smollm2": 540}
"""Head-output-by-position cells patched by default (absent: the whole grid)."""
DEFAULTS = {"pairs": 4, "by_pos_cells": 0, "repeats": 3, "layers": None}
QUICK = {"pairs": 2, "tokens": 16, "by_pos_cells": 24, "repeats": 1, "layers": 2}
"""``--quick``: a few seconds on any arch (Llama archs cut to 2 layers), to prove the script runs."""


def by_pos_subset(n_layers: int, n_pos: int, n_heads: int, n_cells: int, seed: int) -> torch.Tensor | None:
    """``n_cells`` distinct (layer, pos, head) rows drawn without replacement, sorted; None = the grid."""
    total = n_layers * n_pos * n_heads
    if not 0 < n_cells < total:
        return None
    flat = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n_cells].sort().values
    return torch.stack([flat // (n_pos * n_heads), flat // n_heads % n_pos, flat % n_heads], dim=1)


def ours_for(patcher: ActivationPatcher, name: str, subset: torch.Tensor | None) -> SweepResult:
    return patcher.sweep(name) if subset is None or name != "head_out_by_pos" else patcher.patch_cells(name, subset)


def reference_for(bridge, batch, cache, metric_fn, name: str, subset: torch.Tensor | None) -> torch.Tensor:
    if subset is None or name != "head_out_by_pos":
        return REFERENCE[name](bridge, batch.corrupted_tokens, cache, metric_fn)
    frame = pd.DataFrame(subset.tolist(), columns=list(BY_POS_COLUMNS))
    return tlp.generic_activation_patch(
        bridge, batch.corrupted_tokens, cache, metric_fn, tlp.layer_pos_head_vector_patch_setter, "z", index_df=frame
    )


def run_sweeps(bridge, batch, patcher, plain, subset):
    """Every sweep through the reference, between two runs of ours (the faster is reported).

    Other processes share this CPU and their load drifts, hence the pairing.
    """
    metric_fn = on_full_logits(patcher.metric)
    cache, cache_s = archs.timed(lambda: bridge.run_with_cache(batch.clean_tokens)[1])
    n_layers = int(bridge.cfg.n_layers)
    sweeps, ours, plain_results = {}, {}, {}
    for name in REFERENCE:
        before = [ours_for(patcher, name, subset), ours_for(plain, name, subset)]
        reference, ref_s = archs.timed(lambda name=name: reference_for(bridge, batch, cache, metric_fn, name, subset))
        after = [ours_for(patcher, name, subset), ours_for(plain, name, subset)]
        ours[name] = min(before[0], after[0], key=lambda r: r.seconds)
        plain_results[name] = min(before[1], after[1], key=lambda r: r.seconds)
        reference_positions = reference.numel() * batch.n_pairs * batch.n_pos * n_layers
        sweeps[name] = {
            "cells": reference.numel(),
            "reference_s": round(ref_s, 3),
            "ours_s": round(ours[name].seconds, 3),
            "ours_s_before_after": [round(before[0].seconds, 3), round(after[0].seconds, 3)],
            "speedup": round(ref_s / ours[name].seconds, 1),
            "max_abs_diff": float((ours[name].values - reference.double().cpu().reshape(ours[name].values.shape)).abs().max()),
            "runs_skipped": ours[name].details["runs_skipped"],
            "runs_computed": ours[name].details["runs_computed"],
            "block_positions_ratio": round(reference_positions / ours[name].details["block_positions"], 1),
        }
        if subset is not None and name == "head_out_by_pos":
            sweeps[name]["cells_chosen_from"] = n_layers * batch.n_pos * int(bridge.cfg.n_heads)
    return sweeps, ours, plain_results, cache_s


def attribution_report(bridge, batch, patcher, ours, sweeps, subset, repeats: int) -> dict[str, Any]:
    """Attribution patching (one forward + backward for all sweeps) against our exact values."""
    estimates, attr_s = min(
        (archs.timed(lambda: attribution_patch(bridge, batch, patcher.metric, sweeps=tuple(REFERENCE))) for _ in range(repeats)),
        key=lambda run: run[1],
    )
    agreement = {}
    for estimate in estimates:
        if ours[estimate.sweep].axis_names == ("cell",):  # the estimate at the chosen cells only
            picked = estimate.values[tuple(subset.T)]
            estimate = dataclasses.replace(estimate, axes=(Axis(name="cell", labels=ours[estimate.sweep].axes[0].labels),),
                                           values=picked)
        agreement[estimate.sweep] = compare(ours[estimate.sweep], estimate).to_dict()
    exact_heads_ref_s = sweeps["head_out"]["reference_s"] + sweeps["head_out_by_pos"]["reference_s"]
    exact_heads_ours_s = ours["head_out"].seconds + ours["head_out_by_pos"].seconds
    return {
        "seconds": round(attr_s, 3),
        "agreement_with_exact": agreement,
        "speedup_vs_reference_exact_heads": round(exact_heads_ref_s / attr_s, 1),
        "speedup_vs_our_exact_heads": round(exact_heads_ours_s / attr_s, 1),
    }


def totals(bridge, batch, sweeps, ours, plain_results, cache_s, build_s) -> tuple[dict, dict]:
    """The ``total`` and ``ours_without_skipping_unchanged`` sections."""
    reference_total = cache_s + sum(s["reference_s"] for s in sweeps.values())
    ours_total = build_s + sum(r.seconds for r in ours.values())
    plain_s = build_s + sum(r.seconds for r in plain_results.values())
    plain_diff = max(float((r.values - ours[n].values).abs().max()) for n, r in plain_results.items())
    # machine-independent work: token positions run through a transformer block
    reference_work = sum(s["cells"] for s in sweeps.values()) * batch.n_pairs * batch.n_pos * bridge.cfg.n_layers
    total = {
        "reference_s": round(reference_total, 3),
        "ours_s": round(ours_total, 3),
        "speedup": round(reference_total / ours_total, 1),
        "max_abs_diff": max(s["max_abs_diff"] for s in sweeps.values()),
        "block_positions_ratio": round(reference_work / sum(r.details["block_positions"] for r in ours.values()), 1),
        "reference_ms_per_cell": round(1000 * reference_total / sum(s["cells"] for s in sweeps.values()), 2),
        "includes": "reference: clean run_with_cache + sweeps; ours: ActivationPatcher construction + sweeps",
        "timing": "each reference sweep runs between two runs of ours; ours is the faster of the two",
    }
    plain = {
        "ours_s": round(plain_s, 3),
        "speedup": round(reference_total / plain_s, 1),
        "block_positions_ratio": round(reference_work / sum(r.details["block_positions"] for r in plain_results.values()), 1),
        "max_abs_diff_vs_skipping": plain_diff,
    }
    return total, plain


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    options = archs.parser(__doc__, default_arch="gpt2", quick=QUICK)
    options.add_argument("--by-pos-cells", type=int, default=None,
                         help="head-output-by-position cells patched (0 = all; default: the arch's)")
    options.add_argument("--repeats", type=int, default=None, help="constructions of ours; the fastest is reported (3)")
    args = options.parse_args(argv)
    return archs.settle(args, {**DEFAULTS, "by_pos_cells": BY_POS_CELLS.get(args.arch, 0)}, QUICK)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build the model and pairs, run every sweep both ways and attribution; the report."""
    torch.manual_seed(args.seed)
    load_before = os.getloadavg()
    tokenizer, model, bridge = archs.boot(args.arch, seed=args.seed, layers=args.layers)
    batch, replacement = archs.build_pairs(tokenizer, bridge, args.pairs, args.tokens)
    subset = by_pos_subset(int(bridge.cfg.n_layers), batch.n_pos, int(bridge.cfg.n_heads), args.by_pos_cells, args.seed)

    gflops_before = archs.matmul_gflops()
    config = PatchingConfig(progress=False, min_gap=0.0)
    builds = [archs.timed(lambda: ActivationPatcher(bridge, batch, config=config)) for _ in range(args.repeats)]
    patcher, build_s = min(builds, key=lambda b: b[1])
    plain = ActivationPatcher(bridge, batch, config=dataclasses.replace(config, skip_identical=False))
    sweeps, ours, plain_results, cache_s = run_sweeps(bridge, batch, patcher, plain, subset)
    gflops_after = archs.matmul_gflops()
    total, plain_total = totals(bridge, batch, sweeps, ours, plain_results, cache_s, build_s)
    return {
        "benchmark": "patching",
        "model": archs.model_info(args.arch, bridge, model, patcher.n_kv_heads),
        "inputs": {"pairs": batch.n_pairs, "n_pos": batch.n_pos, "trigger": archs.TRIGGER, "replacement": replacement},
        "metric": patcher.metric.name,
        "engine": patcher.engine,
        "sweeps": sweeps,
        "total": total,
        "ours_without_skipping_unchanged": plain_total,
        "attribution": attribution_report(bridge, batch, patcher, ours, sweeps, subset, args.repeats),
        "machine": archs.machine(load_before, [gflops_before, gflops_after]),
    }


def main(argv: list[str] | None = None) -> None:
    archs.print_report(measure(parse_args(argv)))


if __name__ == "__main__":
    main()
