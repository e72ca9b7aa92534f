"""Extraction throughput vs a plain Hugging Face forward pass; prints JSON.

A random-weight model of ``archs.py`` (default ``gpt2``: the 4-layer d256 GPT-2-arch organism;
``smollm2``: SmolLM2-135M's 30-layer config) runs the same token batches four ways: the bare HF module (``AutoModelForCausalLM``, eval, inference
mode), the same module with eager attention (what the bridge runs), ``probes.extract``
of every ``resid_post`` (all layers run), and ``probes.extract`` of layer 0 only
(``stop_at_layer=1``: one block runs). Rounds are interleaved and the fastest round of
each is kept, so a noisy shared machine biases every variant alike. One torch thread by
default: on two cores shared with other jobs, two threads oversubscribe and swing 10x.

    python benchmarks/extraction.py [--arch gpt2 --prompts 128 --tokens 48 --batch-size 32 --rounds 10 --threads 1]
    python benchmarks/extraction.py --arch smollm2 --prompts 64 --tokens 24 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable

import torch
from archs import ARCHS, corpus
from transformers import AutoModelForCausalLM

from backdoor_models.core.run_dir import save_model
from backdoor_models.organism import load_bridge
from backdoor_models.world.tokenizer import train_tokenizer
from probes import ExtractConfig, extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="gpt2")
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer = train_tokenizer(corpus(), vocab_size=1024)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_model(ARCHS[args.arch].build(len(tokenizer), 0, None), tokenizer, tmp)
        bridge = load_bridge(model_dir)
        hf = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        hf_eager = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()

    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, len(tokenizer), (args.prompts, args.tokens), generator=gen)
    tokens[:, 0] = 0
    batches = tokens.split(args.batch_size)
    token_lists = tokens.tolist()
    n_layers = bridge.cfg.n_layers
    config = ExtractConfig(batch_size=args.batch_size, progress=False, sort_by_length=False)

    def hf_forward(model: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                for batch in batches:
                    model(input_ids=batch)

        return run

    variants: dict[str, Callable[[], object]] = {
        "hf_forward": hf_forward(hf),
        "hf_forward_eager": hf_forward(hf_eager),
        "extract_all_resid_post": lambda: extract(bridge, token_lists, hooks="resid_post", config=config),
        "extract_layer0_resid_post": lambda: extract(bridge, token_lists, hooks="resid_post", layers=[0],
                                                     config=config),
    }
    for run in variants.values():  # warm-up
        run()
    best = {name: float("inf") for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)

    n_tokens = args.prompts * args.tokens
    base = best["hf_forward"]
    print(json.dumps({
        "model": f"{args.arch} (random weights): {n_layers} layers, d_model {bridge.cfg.d_model}, {bridge.cfg.n_heads} heads",
        "hf_attn_implementation": hf.config._attn_implementation,
        "prompts": args.prompts,
        "tokens_per_prompt": args.tokens,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "seconds_best_round": {k: round(v, 4) for k, v in best.items()},
        "tokens_per_s": {k: round(n_tokens / v) for k, v in best.items()},
        "overhead_pct_vs_hf_forward": {
            k: round(100 * (v / base - 1), 1) for k, v in best.items() if k != "hf_forward"
        },
        "overhead_pct_vs_hf_forward_eager": round(
            100 * (best["extract_all_resid_post"] / best["hf_forward_eager"] - 1), 1
        ),
        "target": "extract_all_resid_post overhead <= 15%; extract_layer0_resid_post faster than hf_forward",
        "meets_target": best["extract_all_resid_post"] <= 1.15 * base
        and best["extract_layer0_resid_post"] < base,
    }, indent=2))


if __name__ == "__main__":
    main()
