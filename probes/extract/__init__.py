"""Batched activation extraction from a ``TransformerBridge``.

Only the requested hooks are captured and only the blocks they need are run
(``stop_at_layer`` = deepest requested layer + 1, or that layer itself when only its
``resid_pre`` — the block's input — is read). Each prompt is reduced to one vector
per site, read at its last token (default), at a chosen token, or averaged over the
prompt, so memory is ``prompts x sites x d_model`` whatever the prompt length. Large sets
can stream to disk as safetensors shards, optionally in float16, or be split over
processes (:func:`extract_part`, :func:`merge_parts`).

The modules: :mod:`~probes.extract.config` (:class:`ExtractConfig`),
:mod:`~probes.extract.activations` (the :class:`Activations` container and its files),
:mod:`~probes.extract.tokens` (token ids and padding), :mod:`~probes.extract.plan` (sites,
blocks and batches, under a memory budget), :mod:`~probes.extract.hooks` (the forward passes),
:mod:`~probes.extract.run` (:func:`extract`) and :mod:`~probes.extract.shards` (parts and merge).

``bridge`` is any bridge in eval mode, e.g. ``load_bridge(run_dir)`` (the docs test passes a tiny one):

>>> acts = extract(bridge, ["Human: hi\\n\\nAssistant:"], hooks="resid_post",
...                config=ExtractConfig(progress=False))
>>> acts.at("resid_post", 1).shape == (1, bridge.cfg.d_model)
True
"""

from probes.extract.activations import INDEX, Activations, load_activations
from probes.extract.config import DTYPES, ExtractConfig
from probes.extract.run import extract
from probes.extract.shards import PART_ROWS, extract_part, merge_parts
from probes.extract.tokens import TOKENIZE_CHUNK, pad_batch, tokenize_prompts

__all__ = [
    "DTYPES",
    "INDEX",
    "PART_ROWS",
    "TOKENIZE_CHUNK",
    "Activations",
    "ExtractConfig",
    "extract",
    "extract_part",
    "load_activations",
    "merge_parts",
    "pad_batch",
    "tokenize_prompts",
]
