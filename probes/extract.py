"""Batched activation extraction from a ``TransformerBridge``.

Only the requested hooks are captured and only the blocks they need are run
(``stop_at_layer`` = deepest requested layer + 1, or that layer itself when only its
``resid_pre`` — the block's input — is read). Each prompt is reduced to one vector
per site, read at its last token (default), at a chosen token, or averaged over the
prompt, so memory is ``prompts x sites x d_model`` whatever the prompt length. Large sets
can stream to disk as safetensors shards, optionally in float16.

>>> acts = extract(bridge, ["Human: hi\\n\\nAssistant:"], hooks="resid_post")  # doctest: +SKIP
>>> acts.at("resid_post", 1).shape  # doctest: +SKIP
torch.Size([1, 128])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor
from tqdm.auto import tqdm

from backdoor_models.core.artifacts import atomic_open, inside, read_json, write_json
from backdoor_models.core.memory import extraction_footprint, format_size, parse_size
from backdoor_models.core.sharding import Shard, ShardError, complete_parts, parse_shard
from backdoor_models.world.chat import encode_prompts
from probes.errors import ProbeInputError
from probes.sites import PER_HEAD, Site, make_sites

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16}
INDEX = "index.json"
PART_ROWS = "__rows__"
"""Tensor of a part file holding the prompt index of each of its rows."""
TOKENIZE_CHUNK = 1024
"""Prompts tokenised per call (bounds the tokenizer's transient memory)."""


@dataclass(frozen=True, kw_only=True)
class ExtractConfig:
    """How activations are read, batched and stored."""

    batch_size: int = 32
    """Prompts per forward pass (ignored when max_memory is set)."""
    max_memory: str | int | None = None
    """Memory budget for one forward batch ('2GiB', '500MB' or bytes); the batch size is derived from it."""
    position: str | int = "last"
    """'last' (last prompt token), 'mean' (mean over the prompt's tokens, BOS included) or
    an int token index into the unpadded prompt (negative counts from the end)."""
    padding_side: str = "right"
    """Side on which a batch of unequal prompts is padded ('left' or 'right')."""
    dtype: str = "float32"
    """Storage dtype of the extracted vectors ('float32' or 'float16')."""
    shard_dir: str | None = None
    """If set, stream activations to safetensors shards in this directory."""
    shard_size: int = 4096
    """Prompts per shard (and per in-memory chunk) when streaming."""
    sort_by_length: bool = True
    """Batch prompts of similar length together (less padding); output order is unchanged."""
    progress: bool = True
    """Show a tqdm progress bar over batches."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ProbeInputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_memory is not None:
            parse_size(self.max_memory)
        if self.shard_size < 1:
            raise ProbeInputError(f"shard_size must be >= 1, got {self.shard_size}")
        if isinstance(self.position, bool) or not (
            isinstance(self.position, int) or self.position in ("last", "mean")
        ):
            raise ProbeInputError(
                f"position must be 'last', 'mean' or an int token index, got {self.position!r}"
            )
        if self.padding_side not in ("left", "right"):
            raise ProbeInputError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        if self.dtype not in DTYPES:
            raise ProbeInputError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")


@dataclass(frozen=True, kw_only=True)
class Activations:
    """One vector per prompt and site, in memory or in safetensors shards on disk."""

    sites: tuple[Site, ...]
    """The sites extracted, in request order."""
    n: int
    """Number of prompts."""
    d: int
    """Vector width (d_model)."""
    position: str | int
    """Read position used (see :class:`ExtractConfig`)."""
    padding_side: str
    """Padding side used."""
    dtype: str
    """Storage dtype."""
    layers_run: int
    """Blocks actually run per forward pass (``stop_at_layer``)."""
    token_lengths: tuple[int, ...] = field(repr=False)
    """Tokens per prompt, BOS included."""
    tensors: dict[str, Tensor] = field(default_factory=dict, repr=False)
    """In-memory vectors by site key (empty when streamed to disk)."""
    shard_dir: str | None = None
    """Directory of the shards when streamed."""
    shard_files: tuple[str, ...] = ()
    """Shard file names in prompt order."""
    batch_size: int | None = None
    """Prompts per forward pass used (chosen from the memory budget when one was given)."""

    def get(self, site: Site | str, *, dtype: torch.dtype = torch.float32) -> Float[Tensor, "n d"]:
        """The vectors of one site, loading only that site's tensors from disk if streamed."""
        key = site.key if isinstance(site, Site) else site
        if key not in {s.key for s in self.sites}:
            raise ProbeInputError(
                f"site {key!r} was not extracted; extracted: {[s.key for s in self.sites]}"
            )
        if self.tensors:
            return self.tensors[key].to(dtype)
        assert self.shard_dir is not None
        parts = []
        for name in self.shard_files:
            with safe_open(str(Path(self.shard_dir) / name), framework="pt") as handle:
                parts.append(handle.get_tensor(key))
        return torch.cat(parts).to(dtype)

    def at(self, hook: str, layer: int, head: int | None = None) -> Float[Tensor, "n d"]:
        """Shorthand for ``get(Site(hook=hook, layer=layer, head=head))``."""
        return self.get(Site(hook=hook, layer=layer, head=head))

    @classmethod
    def from_tensors(cls, tensors: dict[Site, Tensor], *, position: str | int = "last") -> Activations:
        """Wrap precomputed ``[n, d]`` tensors (e.g. synthetic data) as an ``Activations``."""
        if not tensors:
            raise ProbeInputError("no tensors given; pass {Site: [n, d] tensor}")
        shapes = {tuple(t.shape) for t in tensors.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ProbeInputError(f"every tensor must be [n, d] with the same shape, got {sorted(shapes)}")
        n, d = next(iter(shapes))
        return cls(
            sites=tuple(tensors),
            n=n,
            d=d,
            position=position,
            padding_side="right",
            dtype="float32",
            layers_run=max(s.layer for s in tensors) + 1,
            token_lengths=(),
            tensors={s.key: t.float() for s, t in tensors.items()},
        )

    def metadata(self) -> dict[str, Any]:
        """Everything but the tensors, as JSON-ready data."""
        return {
            "sites": [s.key for s in self.sites],
            "n": self.n,
            "d": self.d,
            "position": self.position,
            "padding_side": self.padding_side,
            "dtype": self.dtype,
            "layers_run": self.layers_run,
            "token_lengths": list(self.token_lengths),
            "shard_files": list(self.shard_files),
            "batch_size": self.batch_size,
        }


def load_activations(shard_dir: str | Path) -> Activations:
    """Open activations streamed by :func:`extract` (reads only the index until ``get``)."""
    index_path = Path(shard_dir) / INDEX
    if not index_path.is_file():
        raise ProbeInputError(f"{shard_dir} has no {INDEX}; pass a directory written by extract()")
    meta = read_json(index_path)
    for name in meta["shard_files"]:
        inside(shard_dir, name, what=f"shard listed in {INDEX}")
    return Activations(
        sites=tuple(Site.from_key(k) for k in meta["sites"]),
        n=meta["n"],
        d=meta["d"],
        position=meta["position"],
        padding_side=meta["padding_side"],
        dtype=meta["dtype"],
        layers_run=meta["layers_run"],
        token_lengths=tuple(meta["token_lengths"]),
        shard_dir=str(shard_dir),
        shard_files=tuple(meta["shard_files"]),
        batch_size=meta.get("batch_size"),
    )


def tokenize_prompts(bridge: Any, prompts: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
    """Token ids per prompt: strings go through the bridge's tokenizer (BOS, or its chat template)."""
    if len(prompts) == 0:
        raise ProbeInputError("no prompts given; pass at least one prompt string or token list")
    if all(isinstance(p, str) for p in prompts):
        if bridge.tokenizer is None:
            raise ProbeInputError("the bridge has no tokenizer; pass token id lists instead of strings")
        tokenizer = getattr(bridge, "model_tokenizer", None) or bridge.tokenizer  # the model's own (load_bridge)
        # In chunks: a fast tokenizer's batch output holds ~4 KB per prompt (offsets, token
        # strings) until it is dropped, which is 80 MB at 20,000 prompts; the ids are ~0.3 KB.
        ids = [row for start in range(0, len(prompts), TOKENIZE_CHUNK)
               for row in encode_prompts(tokenizer, [str(p) for p in prompts[start : start + TOKENIZE_CHUNK]])]
    elif any(isinstance(p, str) for p in prompts):
        raise ProbeInputError("prompts mix strings and token lists; pass one kind")
    else:
        ids = [[int(t) for t in p] for p in prompts]
    empty = [i for i, p in enumerate(ids) if len(p) == 0]
    if empty:
        raise ProbeInputError(f"prompts {empty[:10]} tokenise to nothing; remove them")
    n_ctx = getattr(bridge.cfg, "n_ctx", None)
    too_long = [i for i, p in enumerate(ids) if n_ctx is not None and len(p) > n_ctx]
    if too_long:
        raise ProbeInputError(
            f"prompts {too_long[:10]} are longer than the model's context ({n_ctx} tokens); "
            "shorten or drop them"
        )
    return ids


def _read_index(lengths: list[int], position: str | int) -> list[int]:
    """Per prompt, the token index (into the unpadded prompt) that is read."""
    if position == "last" or position == "mean":
        return [n - 1 for n in lengths]
    assert isinstance(position, int)
    out = []
    for i, n in enumerate(lengths):
        index = position if position >= 0 else n + position
        if not 0 <= index < n:
            raise ProbeInputError(
                f"position {position} is outside prompt {i} ({n} tokens); pick a position "
                "every prompt has (e.g. -1 for the last token) or use 'last'/'mean'"
            )
        out.append(index)
    return out


def pad_batch(
    ids: list[list[int]], *, side: str, pad_id: int, width: int | None = None
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Pad token lists to ``width`` (default: the longest); returns ``(input_ids, attention_mask)``."""
    width = max(len(p) for p in ids) if width is None else width
    tokens = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, p in enumerate(ids):
        start = width - len(p) if side == "left" else 0
        tokens[row, start : start + len(p)] = torch.tensor(p, dtype=torch.long)
        mask[row, start : start + len(p)] = 1
    return tokens, mask


class _Reader:
    """Hook callbacks that reduce each captured activation to one vector per prompt."""

    def __init__(self, sites: list[Site], position: str | int) -> None:
        self.position = position
        self.by_hook: dict[str, list[Site]] = {}
        for site in sites:
            self.by_hook.setdefault(site.hook_name, []).append(site)
        self.read_at: Tensor | None = None  # [batch] padded index read per prompt
        self.mask: Tensor | None = None  # [batch, pos] real-token mask
        self.values: dict[str, Tensor] = {}

    def set_batch(self, read_at: Tensor, mask: Tensor) -> None:
        self.read_at, self.mask, self.values = read_at, mask, {}

    def hooks(self) -> list[tuple[str, Callable[..., None]]]:
        return [(name, self._make(name)) for name in self.by_hook]

    def _make(self, hook_name: str) -> Callable[..., None]:
        sites = self.by_hook[hook_name]

        def read(tensor: Tensor, hook: Any = None) -> None:
            assert self.read_at is not None and self.mask is not None
            if self.position == "mean":
                mask = self.mask.to(tensor.device, torch.float32)
                mask = mask.view(*mask.shape, *([1] * (tensor.dim() - 2)))
                picked = (tensor.float() * mask).sum(1) / mask.sum(1)
            else:
                rows = torch.arange(tensor.shape[0], device=tensor.device)
                picked = tensor[rows, self.read_at.to(tensor.device)].float()
            for site in sites:
                value = picked if site.head is None else picked[:, site.head]
                self.values[site.key] = value.detach().to("cpu")

        return read


def _batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def _check_bridge(bridge: Any, sites: list[Site]) -> None:
    if getattr(bridge, "training", False):
        raise ProbeInputError("the bridge is in training mode; call bridge.eval() before extracting")
    n_layers = bridge.cfg.n_layers
    hook_names = set(bridge.hook_dict)
    for site in sites:
        if site.layer >= n_layers:
            raise ProbeInputError(
                f"layer {site.layer} requested but the model has {n_layers} blocks (0..{n_layers - 1})"
            )
        if site.head is not None and site.head >= bridge.cfg.n_heads:
            raise ProbeInputError(f"head {site.head} requested but blocks have {bridge.cfg.n_heads} heads")
        if site.hook_name not in hook_names:
            raise ProbeInputError(
                f"this model has no hook {site.hook_name!r}; check bridge.hook_dict for the names it serves"
            )


@dataclass(frozen=True)
class _Job:
    """Everything one extraction needs, worked out before any forward pass."""

    sites: list[Site]
    ids: list[list[int]]
    lengths: list[int]
    read_index: list[int]
    stop: int
    """Blocks run per forward (``stop_at_layer``, or all of them)."""
    batch_size: int
    width: int | None
    """Every batch is padded to this many tokens (under a memory budget), else to its longest prompt."""
    chunks: list[list[list[int]]]
    """Per chunk of ``shard_size`` prompts (one chunk in memory): its batches of prompt indices."""


def _prepare(bridge: Any, prompts: Sequence[str] | Sequence[Sequence[int]], hooks: str | Sequence[str],
             layers: Sequence[int] | None, heads: Sequence[int] | None, sites: Sequence[Site] | None,
             config: ExtractConfig, stream: bool) -> _Job:
    if sites is None:
        layer_list = list(range(bridge.cfg.n_layers)) if layers is None else list(layers)
        hook_list = [hooks] if isinstance(hooks, str) else list(hooks)
        sites = make_sites(
            hook_list, layer_list, n_heads=bridge.cfg.n_heads, heads=None if heads is None else list(heads)
        )
    site_list = list(dict.fromkeys(sites))
    if not site_list:
        raise ProbeInputError("no sites requested; pass at least one hook and layer")
    _check_bridge(bridge, site_list)
    ids = tokenize_prompts(bridge, prompts)
    lengths = [len(p) for p in ids]
    n, d = len(ids), int(bridge.cfg.d_model)
    # resid_pre of block L is block L's input: blocks 0..L-1 suffice (the bridge fires
    # blocks.L.hook_in before it stops there); every other hook needs block L itself.
    stop = max(s.layer if s.hook == "resid_pre" else s.layer + 1 for s in site_list)
    batch_size, width = config.batch_size, None
    if config.max_memory is not None:
        cfg = bridge.cfg
        budget = parse_size(config.max_memory)
        footprint = extraction_footprint(
            d_model=d, d_mlp=int(getattr(cfg, "d_mlp", None) or 4 * d), n_heads=int(cfg.n_heads),
            d_vocab=int(cfg.d_vocab), seq_len=max(lengths), n_layers_run=stop, n_sites=len(site_list),
            runs_unembed=stop >= cfg.n_layers, bytes_per_float=_float_bytes(bridge))
        batch_size = footprint.batch(budget, cap=n)
        # Every batch is padded to the longest prompt: the estimate holds for each batch, and each
        # prompt is computed exactly as in one unbounded batch (a row's numbers can depend on its padding).
        width = max(lengths)
        log.info("memory budget %s: %d prompts per batch (~%s each)", format_size(budget), batch_size,
                 format_size(footprint.per_item))
    chunk = config.shard_size if stream else n
    chunks = []
    for start in range(0, n, chunk):
        rows = list(range(start, min(n, start + chunk)))
        if config.sort_by_length:
            rows.sort(key=lambda i: lengths[i])
        chunks.append(_batches(rows, batch_size))
    return _Job(sites=site_list, ids=ids, lengths=lengths, read_index=_read_index(lengths, config.position),
                stop=stop, batch_size=batch_size, width=width, chunks=chunks)


def _run(bridge: Any, job: _Job, batches: list[list[int]], config: ExtractConfig,
         store: Callable[[list[int], dict[str, Tensor]], None], on_batch: Callable[[], None] | None = None) -> None:
    """Forward ``batches`` of prompt indices, handing each batch's vectors (storage dtype) to ``store``."""
    stop_arg = None if job.stop >= bridge.cfg.n_layers else job.stop
    pad_id = getattr(bridge.tokenizer, "pad_token_id", None) or 0
    device = next(bridge.parameters()).device
    store_dtype = DTYPES[config.dtype]
    reader = _Reader(job.sites, config.position)
    needs_heads = any(s.hook in PER_HEAD for s in job.sites)
    had_heads = bool(getattr(bridge.cfg, "use_attn_result", False))
    if needs_heads and not had_heads:
        bridge.set_use_attn_result(True)
    try:
        with bridge.hooks(fwd_hooks=reader.hooks()), torch.inference_mode():
            for batch in batches:
                tokens, mask = pad_batch([job.ids[i] for i in batch], side=config.padding_side, pad_id=pad_id,
                                         width=job.width)
                offsets = tokens.shape[1] - mask.sum(1) if config.padding_side == "left" else 0
                read_at = torch.tensor([job.read_index[i] for i in batch]) + offsets
                reader.set_batch(read_at, mask)
                padded = bool((mask == 0).any())
                bridge(
                    tokens.to(device),
                    attention_mask=mask.to(device) if padded else None,
                    stop_at_layer=stop_arg,
                    return_type=None,
                )
                values = {}
                for key, value in reader.values.items():
                    _check_finite(value, key, batch, config.dtype)
                    values[key] = value.to(store_dtype)
                    _check_finite(values[key], key, batch, config.dtype)
                store(batch, values)
                if on_batch is not None:
                    on_batch()
    finally:
        if needs_heads and not had_heads:
            bridge.set_use_attn_result(False)


def extract(
    bridge: Any,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    *,
    hooks: str | Sequence[str] = "resid_post",
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    sites: Sequence[Site] | None = None,
    config: ExtractConfig | None = None,
) -> Activations:
    """Read one vector per prompt at each requested site.

    ``sites`` overrides ``hooks``/``layers``/``heads``; by default every layer of each hook
    (and every head of a per-head hook) is read. Blocks deeper than the deepest requested
    layer never run. Prompts may be strings (tokenised by ``bridge.tokenizer``, which must
    add BOS itself) or token id lists. With ``config.max_memory`` the batch size comes from
    the budget and every batch is padded to the longest prompt, so the vectors equal those of
    one unbounded batch exactly. :func:`extract_part` does one ``--shard i/n`` share of this work.

    >>> acts = extract(bridge, prompts, hooks=["resid_post", "mlp_out"], layers=[0, 1],
    ...                config=ExtractConfig(position="last", progress=False))  # doctest: +SKIP
    """
    config = config or ExtractConfig()
    stream = config.shard_dir is not None
    job = _prepare(bridge, prompts, hooks, layers, heads, sites, config, stream)
    n, d = len(job.ids), int(bridge.cfg.d_model)
    store_dtype = DTYPES[config.dtype]
    result = {s.key: torch.empty((n, d), dtype=store_dtype) for s in job.sites} if not stream else {}
    shard_files: list[str] = []
    bar = tqdm(total=sum(len(c) for c in job.chunks), desc="extract", disable=not config.progress)
    try:
        for chunk_index, batches in enumerate(job.chunks):
            start = chunk_index * config.shard_size if stream else 0
            size = min(n, start + config.shard_size) - start if stream else n
            # In memory the one chunk is every prompt: write straight into the result (no second copy).
            buffer = {s.key: torch.empty((size, d), dtype=store_dtype) for s in job.sites} if stream else result

            def store(batch: list[int], values: dict[str, Tensor], buffer=buffer, start=start) -> None:
                local = torch.tensor(batch) - start
                for key, value in values.items():
                    buffer[key][local] = value

            _run(bridge, job, batches, config, store, on_batch=lambda: bar.update(1))
            if stream:
                name = f"shard-{len(shard_files):05d}.safetensors"
                assert config.shard_dir is not None
                with atomic_open(Path(config.shard_dir) / name, "wb") as handle:
                    handle.write(safetensors_bytes({k: v.contiguous() for k, v in buffer.items()}))
                shard_files.append(name)
    finally:
        bar.close()

    acts = Activations(
        sites=tuple(job.sites),
        n=n,
        d=d,
        position=config.position,
        padding_side=config.padding_side,
        dtype=config.dtype,
        layers_run=job.stop,
        token_lengths=tuple(job.lengths),
        tensors=result,
        shard_dir=config.shard_dir,
        shard_files=tuple(shard_files),
        batch_size=job.batch_size,
    )
    if stream:
        assert config.shard_dir is not None
        write_json(Path(config.shard_dir) / INDEX, acts.metadata())
    log.info("extracted %d prompts x %d sites (ran %d blocks)", n, len(job.sites), job.stop)
    return acts


def extract_part(
    bridge: Any,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    out_dir: str | Path,
    shard: Shard | str,
    *,
    hooks: str | Sequence[str] = "resid_post",
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    sites: Sequence[Site] | None = None,
    config: ExtractConfig | None = None,
) -> Path:
    """Shard ``i/n`` of :func:`extract`: write ``out_dir/part-I-of-N.{safetensors,json}``.

    Every shard is given all the prompts and plans the batches of the unsharded run (same
    order, sizes and padding), then forwards only its contiguous share of them; so each
    prompt is computed in the same batch as in one process, and :func:`merge_parts` gives
    exactly the activations :func:`extract` gives with the same ``config``.
    """
    config = config or ExtractConfig()
    part = parse_shard(shard)
    assert part is not None
    stream = config.shard_dir is not None
    job = _prepare(bridge, prompts, hooks, layers, heads, sites, config, stream)
    d = int(bridge.cfg.d_model)
    every = [batch for batches in job.chunks for batch in batches]
    mine = part.take(every)
    rows = [i for batch in mine for i in batch]
    parts = {s.key: torch.empty((len(rows), d), dtype=DTYPES[config.dtype]) for s in job.sites}
    filled = 0

    def store(batch: list[int], values: dict[str, Tensor]) -> None:
        nonlocal filled
        for key, value in values.items():
            parts[key][filled : filled + len(batch)] = value
        filled += len(batch)

    with tqdm(total=len(mine), desc=f"extract {part}", disable=not config.progress) as bar:
        _run(bridge, job, mine, config, store, on_batch=lambda: bar.update(1))
    out = Path(out_dir)
    tensors = {**parts, PART_ROWS: torch.tensor(rows, dtype=torch.long)}
    with atomic_open(out / f"{part.name}.safetensors", "wb") as handle:
        handle.write(safetensors_bytes(tensors))
    meta = Activations(sites=tuple(job.sites), n=len(job.ids), d=d, position=config.position,
                       padding_side=config.padding_side, dtype=config.dtype, layers_run=job.stop,
                       token_lengths=tuple(job.lengths), batch_size=job.batch_size).metadata()
    write_json(out / f"{part.name}.json", meta | {"shard": str(part), "n_rows": len(rows)})
    log.info("shard %s: extracted %d of %d prompts", part, len(rows), len(job.ids))
    return out / f"{part.name}.json"


def merge_parts(part_dir: str | Path, out_dir: str | Path | None = None, *, shard_size: int = 4096) -> Activations:
    """Merge the ``part-I-of-N`` files of :func:`extract_part` into one set of activations on disk.

    Checks that parts 0..N-1 are all there and agree (same prompts, sites and settings), puts
    every row back in prompt order and writes the usual shards + ``index.json`` to ``out_dir``
    (default: ``part_dir``), readable with :func:`load_activations`.
    """
    part_dir = Path(part_dir)
    out = Path(out_dir) if out_dir is not None else part_dir
    stems = sorted(p.stem for p in part_dir.glob("part-*-of-*.json"))
    shards = complete_parts(stems, what=str(part_dir))
    metas = [read_json(part_dir / f"{s.name}.json") for s in shards]
    common = {k: v for k, v in metas[0].items() if k not in ("shard", "n_rows")}
    for shard, meta in zip(shards, metas):
        if {k: v for k, v in meta.items() if k not in ("shard", "n_rows")} != common:
            raise ShardError(f"{shard.name} in {part_dir} was extracted with other prompts or settings than "
                             f"{shards[0].name}; rerun every shard with the same options")
    n, d, dtype = common["n"], common["d"], DTYPES[common["dtype"]]
    where = torch.full((n,), -1, dtype=torch.long)  # part of each prompt
    offset = torch.zeros(n, dtype=torch.long)  # its row in that part
    for number, shard in enumerate(shards):
        with safe_open(str(part_dir / f"{shard.name}.safetensors"), framework="pt") as handle:
            rows = handle.get_tensor(PART_ROWS)
        if bool((where[rows] >= 0).any()):
            raise ShardError(f"{shard.name} repeats prompts of another part; rerun every shard with the same options")
        where[rows], offset[rows] = number, torch.arange(len(rows))
    if bool((where < 0).any()):
        raise ShardError(f"the parts in {part_dir} miss {int((where < 0).sum())} prompts; rerun every shard "
                         "with the same prompts and options")
    out.mkdir(parents=True, exist_ok=True)
    shard_files: list[str] = []
    for start in range(0, n, shard_size):
        stop = min(n, start + shard_size)
        buffer = {key: torch.empty((stop - start, d), dtype=dtype) for key in common["sites"]}
        for number, shard in enumerate(shards):
            local = torch.nonzero(where[start:stop] == number).flatten()
            if len(local) == 0:
                continue
            with safe_open(str(part_dir / f"{shard.name}.safetensors"), framework="pt") as handle:
                for key in common["sites"]:
                    buffer[key][local] = handle.get_tensor(key)[offset[start:stop][local]]
        name = f"shard-{len(shard_files):05d}.safetensors"
        with atomic_open(out / name, "wb") as handle:
            handle.write(safetensors_bytes({k: v.contiguous() for k, v in buffer.items()}))
        shard_files.append(name)
    write_json(out / INDEX, common | {"shard_files": shard_files})
    log.info("merged %d parts of %d prompts into %s", len(shards), n, out)
    return load_activations(out)


def _float_bytes(bridge: Any) -> int:
    """Bytes per activation value: the model's floating-point width (bf16/fp16 models: 2)."""
    return max((p.element_size() for p in bridge.parameters() if p.is_floating_point()), default=4)


def _check_finite(value: Tensor, key: str, batch: list[int], dtype: str) -> None:
    if bool(torch.isfinite(value).all()):
        return
    bad = [batch[i] for i in torch.nonzero(~torch.isfinite(value).all(-1)).flatten().tolist()]
    hint = (
        "values overflow float16; extract with dtype='float32'"
        if dtype == "float16"
        else "the model produces non-finite activations; check its weights"
    )
    raise ProbeInputError(f"non-finite activations at {key} for prompts {bad[:10]}: {hint}")
