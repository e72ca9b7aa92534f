"""One extraction in one process: :func:`extract`, in memory or streamed to shards.

``bridge`` in the examples is any ``TransformerBridge`` in eval mode, e.g.
``backdoor_models.organism.load_bridge(run_dir)`` (the docs test passes a tiny random one):

>>> acts = extract(bridge, ["Human: hi\\n\\nAssistant:", "Human: a cat\\n\\nAssistant:"],
...                hooks=["resid_post", "mlp_out"], layers=[0], config=ExtractConfig(progress=False))
>>> [s.key for s in acts.sites], acts.at("mlp_out", 0).shape == (2, bridge.cfg.d_model)
(['blocks.0.hook_resid_post', 'blocks.0.hook_mlp_out'], True)
>>> acts.layers_run  # block 1 never ran
1
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from backdoor_models.core.artifacts import write_json
from probes.extract.activations import INDEX, Activations, write_shard
from probes.extract.config import DTYPES, ExtractConfig
from probes.extract.hooks import forward_batches
from probes.extract.plan import plan
from probes.sites import Site

log = logging.getLogger(__name__)


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
    """
    config = config or ExtractConfig()
    stream = config.shard_dir is not None
    job = plan(bridge, prompts, hooks=hooks, layers=layers, heads=heads, sites=sites, config=config, stream=stream)
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

            forward_batches(bridge, job, batches, config, store, on_batch=lambda: bar.update(1))
            if stream:
                assert config.shard_dir is not None
                shard_files.append(write_shard(config.shard_dir, len(shard_files), buffer))
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
