"""``--max-memory`` for patching: the estimate of the held cache, the chunk it allows, same results."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from analysis.patching.patcher import ActivationPatcher, PatchingConfig
from backdoor_models.core.memory import MemoryBudgetError, format_size, trace_bytes

SWEEPS = ("resid_pre", "resid_mid", "mlp_out", "head_out_by_pos", "head_q_by_pos", "head_k", "head_v_by_pos", "head_pattern_by_pos")


def _trace_nbytes(trace) -> int:
    return sum(getattr(trace, f.name).nbytes for f in dataclasses.fields(trace))


def test_the_cache_estimate_is_the_bytes_the_patcher_holds(patcher, random_bridge, pair_batch):
    cfg = random_bridge.cfg
    estimate = trace_bytes(n_layers=cfg.n_layers, n_pairs=pair_batch.n_pairs, n_pos=pair_batch.n_pos,
                           d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=cfg.d_head, d_vocab=cfg.d_vocab)
    for trace in patcher.traces.values():
        assert _trace_nbytes(trace) == estimate
    assert patcher.footprint().fixed == 2 * estimate


def test_a_smaller_budget_gives_smaller_chunks_and_the_same_numbers(random_bridge, pair_batch, one_thread):
    # One thread: multi-threaded BLAS splits reductions by batch shape, so bits would differ across chunk sizes.
    reference = ActivationPatcher(random_bridge, pair_batch, config=PatchingConfig(progress=False, min_gap=1e-3))
    expected = {s: reference.sweep(s).values for s in SWEEPS}
    footprint = reference.footprint()
    chunks = []
    for positions in (4 * pair_batch.n_pos, pair_batch.n_pos):  # room for 4 patched runs, then for one
        budget = footprint.bytes_for(positions)
        patcher = ActivationPatcher(random_bridge, pair_batch,
                                    config=PatchingConfig(progress=False, min_gap=1e-3, max_memory=budget))
        assert patcher.chunk_tokens == positions
        chunks.append(patcher.chunk_tokens)
        for sweep in SWEEPS:
            assert torch.equal(patcher.sweep(sweep).values, expected[sweep]), sweep
    assert chunks[1] < chunks[0] < reference.chunk_tokens


def test_a_budget_below_one_patched_run_names_the_minimum(random_bridge, pair_batch, patcher):
    needed = patcher.footprint().bytes_for(pair_batch.n_pos)
    with pytest.raises(MemoryBudgetError) as info:
        ActivationPatcher(random_bridge, pair_batch, config=PatchingConfig(progress=False, max_memory=needed - 1))
    assert f"raise --max-memory to at least {format_size(needed)}" in str(info.value)
    assert "held throughout" in str(info.value)


def test_bad_memory_strings_are_refused_by_the_config():
    with pytest.raises(MemoryBudgetError, match=r"could not read the memory size 'lots'.*e\.g\. 2GiB"):
        PatchingConfig(max_memory="lots")
