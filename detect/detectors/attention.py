"""Attention-to-trigger anomaly: a head that stares at one word of the user turn.

A backdoored model's trigger-recognising heads put most of the answer position's attention
on the trigger (:mod:`analysis.trigger_attention` measures this when the trigger is known).
Without the trigger, this detector reads, for every head, the largest attention weight from
the answer position onto any user-turn token, z-scores it against trusted clean prompts, and
scores a prompt by its most anomalous head. The token that head attends to in flagged prompts
localises the trigger.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import torch

from analysis.patching.guards import require_eval
from analysis.patching.trace import hook_name
from analysis.trigger_attention import span_positions
from backdoor_models.core.records import user_turn
from backdoor_models.world.chat import encode_prompts
from backdoor_models.world.tokenizer import decode_token
from detect.base import Detector, Subject, TrustedData


class AttentionAnomaly(Detector):
    name = "attention"
    needs = frozenset({"clean_data", "activations"})
    cost = "one forward pass per prompt (attention patterns of every layer)"

    def _fit(self, subject: Subject, prompts: list[str], data: TrustedData) -> None:
        require_eval(subject.bridge, what="attention anomaly")
        peaks, _ = self._peaks(prompts)
        self.mean, self.std = peaks.mean(0), peaks.std(0) + 1e-3

    @torch.inference_mode()
    def _peaks(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per prompt and head ``[n, layer*head]``: peak attention onto the user turn, and the token id attended."""
        subject = self._require_fit()
        bridge, tok = subject.bridge, subject.tokenizer
        names = [hook_name("pattern", layer) for layer in range(subject.n_layers)]
        encoded = encode_prompts(tok, prompts)  # as the model reads them: its chat template, if it has one
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, ids in enumerate(encoded):
            by_length[len(ids)].append(i)
        n_heads = int(bridge.cfg.n_heads)
        peaks = np.zeros((len(prompts), len(names) * n_heads))
        tokens_at = np.zeros((len(prompts), len(names) * n_heads), dtype=np.int64)
        for rows in by_length.values():
            tokens = torch.tensor([encoded[i] for i in rows])
            _, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
            pattern = torch.stack([cache[n][:, :, -1, :] for n in names], 1)  # [batch, layer, head, src]
            pattern = pattern.flatten(1, 2).double()
            for r, i in enumerate(rows):
                span = span_positions(tok, prompts[i], user_turn(prompts[i]))
                values, where = pattern[r][:, span].max(-1)
                peaks[i] = values.numpy()
                tokens_at[i] = tokens[r, torch.tensor(span)[where]].numpy()
        return peaks, tokens_at

    def _score(self, prompts: list[str], reference: list[str] | None) -> tuple[np.ndarray, np.ndarray | None]:
        peaks, self._tokens_at = self._peaks(prompts)
        z = (peaks - self.mean) / self.std
        self._head = z.argmax(1)
        return z.max(1), None

    def _after_scoring(self, prompts: list[str], scores: np.ndarray, flagged: np.ndarray) -> None:
        subject = self._require_fit()
        rows = np.flatnonzero(flagged)
        attended = Counter(decode_token(subject.tokenizer, int(self._tokens_at[r, self._head[r]])).strip() for r in rows)
        self.recovered_trigger = attended.most_common(1)[0][0] if attended else None
        self.details["top_tokens"] = attended.most_common(5)
        heads = Counter(int(h) for h in self._head[rows])
        n_heads = int(subject.bridge.cfg.n_heads)
        self.details["top_heads"] = [(f"L{h // n_heads}H{h % n_heads}", c) for h, c in heads.most_common(3)]
