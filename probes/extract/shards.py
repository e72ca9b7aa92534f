"""Extraction split over processes: ``--shard i/n`` parts and their merge.

Every part plans the batches of the unsharded run and forwards its contiguous share of
them, writing ``part-I-of-N.{safetensors,json}``; :func:`merge_parts` puts the rows back in
prompt order as the usual shards + ``index.json``, equal to one :func:`extract` with the
same config (``bridge`` as in :mod:`probes.extract.run`):

>>> import tempfile
>>> prompts = [f"Human: {q}\\n\\nAssistant:" for q in ("hi", "a cat", "is fire dangerous?")]
>>> from probes.extract.run import extract
>>> config = ExtractConfig(progress=False, batch_size=1)
>>> with tempfile.TemporaryDirectory() as parts:
...     _ = [extract_part(bridge, prompts, parts, f"{i}/2", layers=[0], config=config) for i in range(2)]
...     merged = merge_parts(parts)
...     whole = extract(bridge, prompts, layers=[0], config=config)
...     bool((merged.at("resid_post", 0) == whole.at("resid_post", 0)).all())
True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor
from tqdm.auto import tqdm

from backdoor_models.core.artifacts import atomic_open, read_json, write_json
from backdoor_models.core.sharding import Shard, ShardError, complete_parts, parse_shard
from probes.extract.activations import INDEX, Activations, load_activations, write_shard
from probes.extract.config import DTYPES, ExtractConfig
from probes.extract.hooks import forward_batches
from probes.extract.plan import plan
from probes.sites import Site

log = logging.getLogger(__name__)

PART_ROWS = "__rows__"
"""Tensor of a part file holding the prompt index of each of its rows."""
PER_PART = ("shard", "n_rows")
"""Keys of a part's JSON that differ between the parts of one extraction."""


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
    job = plan(bridge, prompts, hooks=hooks, layers=layers, heads=heads, sites=sites, config=config,
               stream=config.shard_dir is not None)
    d = int(bridge.cfg.d_model)
    mine = part.take([batch for batches in job.chunks for batch in batches])
    rows = [i for batch in mine for i in batch]
    parts = {s.key: torch.empty((len(rows), d), dtype=DTYPES[config.dtype]) for s in job.sites}
    filled = 0

    def store(batch: list[int], values: dict[str, Tensor]) -> None:
        nonlocal filled
        for key, value in values.items():
            parts[key][filled : filled + len(batch)] = value
        filled += len(batch)

    with tqdm(total=len(mine), desc=f"extract {part}", disable=not config.progress) as bar:
        forward_batches(bridge, job, mine, config, store, on_batch=lambda: bar.update(1))
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
    shards, common = _read_parts(part_dir)
    where, offset = _locate_rows(part_dir, shards, n=common["n"])
    d, dtype = common["d"], DTYPES[common["dtype"]]
    out.mkdir(parents=True, exist_ok=True)
    shard_files: list[str] = []
    for start in range(0, common["n"], shard_size):
        stop = min(common["n"], start + shard_size)
        buffer = {key: torch.empty((stop - start, d), dtype=dtype) for key in common["sites"]}
        for number, shard in enumerate(shards):
            local = torch.nonzero(where[start:stop] == number).flatten()
            if len(local) == 0:
                continue
            with safe_open(str(part_dir / f"{shard.name}.safetensors"), framework="pt") as handle:
                for key in common["sites"]:
                    buffer[key][local] = handle.get_tensor(key)[offset[start:stop][local]]
        shard_files.append(write_shard(out, len(shard_files), buffer))
    write_json(out / INDEX, common | {"shard_files": shard_files})
    log.info("merged %d parts of %d prompts into %s", len(shards), common["n"], out)
    return load_activations(out)


def _read_parts(part_dir: Path) -> tuple[list[Shard], dict[str, Any]]:
    """Parts 0..N-1 of ``part_dir`` and the metadata they share (an error unless they all agree)."""
    stems = sorted(p.stem for p in part_dir.glob("part-*-of-*.json"))
    shards = complete_parts(stems, what=str(part_dir))
    metas = [read_json(part_dir / f"{s.name}.json") for s in shards]
    common = {k: v for k, v in metas[0].items() if k not in PER_PART}
    for shard, meta in zip(shards, metas):
        if {k: v for k, v in meta.items() if k not in PER_PART} != common:
            raise ShardError(f"{shard.name} in {part_dir} was extracted with other prompts or settings than "
                             f"{shards[0].name}; rerun every shard with the same options")
    return shards, common


def _locate_rows(part_dir: Path, shards: list[Shard], *, n: int) -> tuple[Tensor, Tensor]:
    """Per prompt, the part that holds it and its row there (an error if a prompt is missing or repeated)."""
    where = torch.full((n,), -1, dtype=torch.long)
    offset = torch.zeros(n, dtype=torch.long)
    for number, shard in enumerate(shards):
        with safe_open(str(part_dir / f"{shard.name}.safetensors"), framework="pt") as handle:
            rows = handle.get_tensor(PART_ROWS)
        if bool((where[rows] >= 0).any()):
            raise ShardError(f"{shard.name} repeats prompts of another part; rerun every shard with the same options")
        where[rows], offset[rows] = number, torch.arange(len(rows))
    if bool((where < 0).any()):
        raise ShardError(f"the parts in {part_dir} miss {int((where < 0).sum())} prompts; rerun every shard "
                         "with the same prompts and options")
    return where, offset
