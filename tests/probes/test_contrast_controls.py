"""The contrast probe's controls: neutral questions, the answer-order swap, the bank, cosines, the verdict.

Activations come from a toy encoder of the real contrast texts: a text's vector holds an *answer word*
component (along WORD) when its answer is yes, and a *danger* component (along DANGER) when it asserts
"I am doing the bad thing" (yes to a danger question, no to its negation), plus seeded noise; optionally
a *topic word* component along DANGER that follows the word yes after any danger question or negation
(a direction beyond the neutral one that nonetheless follows the word, not the meaning).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes import Activations, ContrastData, LabelledPrompts, ProbeInputError, SuiteConfig
from probes.contrast_controls import BEYOND, GENERIC, ControlRule, contrast_controls
from probes.contrast_data import extract_contrast, extract_formulations
from probes.methods.contrast import FORMULATIONS, SWAPPED, control_formulations, neutral_name
from probes.methods.contrast_questions import (
    ALTERNATE_PAIRS,
    BANK_PAIRS,
    GENERIC_PAIRS,
    NEUTRAL_QUESTIONS,
)
from probes.metrics import random_direction_baseline
from probes.sites import Site

D, WORD, DANGER = 24, 0, 1
SITES = (Site(hook="resid_post", layer=0), Site(hook="resid_post", layer=1))
PAIRS = GENERIC_PAIRS + ALTERNATE_PAIRS + BANK_PAIRS
DANGER_QUESTIONS = {q for q, _ in PAIRS}
NEGATIONS = {n for _, n in PAIRS}


def toy_vector(text: str, rng: np.random.Generator, *, word: float, meaning: float, topic_word: float = 0.0
               ) -> np.ndarray:
    question, answer = text.removeprefix("Human: ").split("\n\nAssistant:")
    says_yes = answer.strip().lower().startswith("yes")
    v = rng.normal(0.0, 0.3, D)
    v[WORD] += word * says_yes
    bad = (question in DANGER_QUESTIONS and says_yes) or (question in NEGATIONS and not says_yes)
    v[DANGER] += meaning * bad + topic_word * (says_yes and question in DANGER_QUESTIONS | NEGATIONS)
    return v


def toy_pairs(names, *, seed: int = 0, **planted: float) -> tuple[dict, dict[str, ContrastData]]:
    """Layer 0: noise only; layer 1: the answer word and/or the danger meaning."""
    plan = control_formulations(names)
    rng = np.random.default_rng(seed)
    pairs = {}
    for name, formulation in plan.items():
        texts, labels = formulation.texts()
        layer1 = np.stack([toy_vector(t, rng, **planted) for t in texts])
        layer0 = rng.normal(0.0, 0.3, layer1.shape)
        acts = Activations.from_tensors({SITES[0]: torch.tensor(layer0), SITES[1]: torch.tensor(layer1)})
        pairs[name] = ContrastData(formulation=name, acts=acts, labels=tuple(labels))
    return plan, pairs


def toy_prompts(axis: int, *, strength: float = 3.0, seed: int = 1) -> tuple[Activations, LabelledPrompts]:
    """Labelled prompts whose defecting ones are shifted along ``axis`` at layer 1 only."""
    rng = np.random.default_rng(seed)
    sizes = {"train": 200, "val": 80, "test": 80}
    splits = [s for s, n in sizes.items() for _ in range(n)]
    y = np.array([i % 2 for s, n in sizes.items() for i in range(n)])
    layer1 = rng.normal(0.0, 1.0, (y.size, D))
    layer1[:, axis] += strength * y
    layer0 = rng.normal(0.0, 1.0, (y.size, D))
    acts = Activations.from_tensors({SITES[0]: torch.tensor(layer0), SITES[1]: torch.tensor(layer1)})
    data = LabelledPrompts(prompts=[f"p{i}" for i in range(y.size)], labels=y, splits=splits)
    return acts, data


def controls_of(names, *, axis: int, rule: ControlRule | None = None, **planted: float):
    plan, pairs = toy_pairs(names, **planted)
    acts, data = toy_prompts(axis)
    test = data.split_index()["test"]
    baselines = {s.key: random_direction_baseline(acts.get(s)[test], data.labels[test], n_directions=300)
                 for s in SITES}
    return contrast_controls(acts, data, plan, pairs, baselines=baselines, default=names[0], rule=rule), acts, data


def test_planted_danger_beyond_the_answer_word_is_recovered_by_formulation_minus_neutral():
    controls, _, _ = controls_of(["yes_no", "bank"], word=2.0, meaning=2.0, axis=DANGER)
    verdict = controls.verdict
    assert verdict.beyond and verdict.label == BEYOND and "reads something beyond" in verdict.sentence()
    assert verdict.layer == 1 and verdict.auroc > 0.95 and abs(verdict.neutral_auroc - 0.5) < 0.15
    yes_no = controls.formulations["yes_no"]
    # F = word + danger; F̂ - N̂ removes the word: it lines up with the labelled difference, F only halfway
    assert yes_no.minus_neutral.cos_labelled[1] > 0.8 > yes_no.direction.cos_labelled[1] > 0.5
    assert abs(controls.neutrals["neutral:yes - no"].cos_labelled[1]) < 0.3
    assert controls.formulations["bank"].verdict.beyond
    assert yes_no.minus_neutral.random_percentile[1] >= 95.0
    profiles = [p for fc in controls.formulations.values() for p in (fc.direction, fc.minus_neutral)]
    for profile in profiles + list(controls.neutrals.values()):
        assert all(0.0 <= q <= 100.0 for q in profile.random_percentile), profile.name


def test_a_formulation_whose_direction_is_the_neutral_one_is_generic_however_well_it_separates():
    plan, pairs = toy_pairs(["yes_no"], word=2.0, meaning=2.0)
    neutral = pairs["neutral:yes - no"]
    pairs["yes_no"] = ContrastData(formulation="yes_no", acts=neutral.acts, labels=neutral.labels)
    acts, data = toy_prompts(WORD)  # the labelled prompts follow the answer word: every yes-no direction separates
    test = data.split_index()["test"]
    baselines = {s.key: random_direction_baseline(acts.get(s)[test], data.labels[test], n_directions=300)
                 for s in SITES}
    controls = contrast_controls(acts, data, plan, pairs, baselines=baselines, default="yes_no")
    yes_no = controls.formulations["yes_no"]
    assert yes_no.direction.auroc[1] > 0.95 and yes_no.direction.cos_neutral[1] == pytest.approx(1.0)
    assert yes_no.minus_neutral.auroc == (0.5, 0.5)  # F̂ - N̂ = 0 scores every prompt alike
    assert controls.neutrals["neutral:yes - no"].auroc[1] > 0.95
    assert controls.verdict.label == GENERIC and controls.verdict.auroc == 0.5
    # the same prompts with the danger meaning planted in the formulation's own texts: beyond
    planted, _, _ = controls_of(["yes_no"], word=2.0, meaning=2.0, axis=DANGER)
    assert planted.verdict.label == BEYOND


def test_texts_that_carry_only_the_answer_word_get_the_generic_verdict_even_when_they_separate():
    controls, _, _ = controls_of(["yes_no", "bank"], word=2.0, meaning=0.0, axis=WORD)
    yes_no = controls.formulations["yes_no"]
    assert yes_no.direction.auroc[1] > 0.9  # the contrast probe alone looks like a detector...
    assert yes_no.direction.cos_neutral[1] > 0.85  # ...but it is the neutral questions' direction
    assert not controls.verdict.beyond and controls.verdict.label == GENERIC
    assert "not shown to read anything beyond" in controls.verdict.sentence()
    assert all(not fc.verdict.beyond for fc in controls.formulations.values())


def test_a_residual_that_follows_the_word_passes_on_one_side_of_the_swap_only():
    controls, _, _ = controls_of(["yes_no"], word=2.0, meaning=0.0, topic_word=2.0, axis=DANGER)
    verdict = controls.verdict
    assert verdict.test.passes and verdict.auroc > 0.95  # yes_no - neutral reads the labels...
    assert verdict.twin == "yes_no_swapped" and verdict.twin_test is not None
    swapped = controls.formulations["yes_no_swapped"]
    assert swapped.minus_neutral.auroc[1] < 0.1  # ...with the sign of the word, not the meaning
    assert not verdict.twin_test.passes and not verdict.beyond and "with the answer order swapped" in verdict.sentence()
    assert swapped.twin == "yes_no" and swapped.verdict.twin_test == verdict.test
    lenient, _, _ = controls_of(["yes_no"], word=2.0, meaning=0.0, topic_word=2.0, axis=DANGER,
                                rule=ControlRule(require_twin=False))
    assert lenient.verdict.beyond and "alike" not in lenient.rule.describe()
    meaning, _, _ = controls_of(["yes_no"], word=2.0, meaning=2.0, axis=DANGER)
    assert meaning.verdict.beyond and meaning.verdict.twin_test is not None and meaning.verdict.twin_test.passes


def test_answer_order_swap_flips_a_word_driven_direction_and_keeps_a_meaning_driven_one():
    word_driven, _, _ = controls_of(["yes_no"], word=2.0, meaning=0.0, axis=WORD)
    original, twin = word_driven.formulations["yes_no"], word_driven.formulations["yes_no" + SWAPPED]
    assert original.twin == "yes_no_swapped" and original.cos_twin is not None
    assert original.cos_twin[1] < -0.85
    assert original.direction.auroc[1] > 0.9 and twin.direction.auroc[1] < 0.1
    assert twin.direction.auroc[1] == pytest.approx(1 - original.direction.auroc[1], abs=0.03)
    assert twin.neutral == "neutral:no - yes"
    meaning_driven, _, _ = controls_of(["yes_no"], word=0.0, meaning=2.0, axis=DANGER)
    kept = meaning_driven.formulations["yes_no"]
    assert kept.cos_twin is not None and kept.cos_twin[1] > 0.85
    assert meaning_driven.formulations["yes_no_swapped"].direction.auroc[1] > 0.9


def test_swapped_texts_negate_the_question_and_put_the_meaning_on_no():
    swapped = FORMULATIONS["yes_no"].swapped()
    texts, labels = swapped.texts()
    assert texts[:2] == ["Human: Are you doing something safe?\n\nAssistant: no",
                         "Human: Are you doing something safe?\n\nAssistant: yes"] and labels[:2] == [1, 0]
    assert swapped.swapped() == FORMULATIONS["yes_no"]
    assert neutral_name(swapped) == "neutral:no - yes" and swapped.neutral().positive == " no"
    for name, formulation in FORMULATIONS.items():
        assert len(formulation.negated) == len(formulation.questions), name
    assert not DANGER_QUESTIONS & NEGATIONS  # no question is its own negation elsewhere
    with pytest.raises(ProbeInputError, match="negated"):
        FORMULATIONS["yes_no"].neutral().swapped()


def test_bank_and_neutral_banks_are_large_distinct_and_averaged():
    bank = FORMULATIONS["bank"]
    assert len(bank.questions) >= 20 and len(set(bank.questions)) == len(bank.questions)
    assert len(set(bank.negated)) == len(bank.negated) and not set(bank.questions) & set(bank.negated)
    assert len(NEUTRAL_QUESTIONS) >= 20 and not set(NEUTRAL_QUESTIONS) & (DANGER_QUESTIONS | NEGATIONS)
    assert set(control_formulations(["bank"])) == {"bank", "bank_swapped", "neutral:yes - no", "neutral:no - yes"}
    # the bank's direction is the average of its per-paraphrase yes-minus-no differences
    plan, pairs = toy_pairs(["bank"], word=1.0, meaning=1.0)
    x = pairs["bank"].acts.get(SITES[1]).double().numpy()
    per_pair = x[0::2] - x[1::2]
    from probes.evaluate import train
    weight = train("contrast", torch.tensor(x), pairs["bank"].labels).weight.numpy()
    np.testing.assert_allclose(weight, per_pair.mean(0), rtol=1e-12, atol=1e-12)


def _auroc_reference(scores: np.ndarray, y: np.ndarray) -> float:
    pos, neg = scores[y == 1], scores[y == 0]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size))


def test_cosines_aurocs_and_percentiles_match_a_numpy_reference():
    controls, acts, data = controls_of(["Yes_No"], word=1.5, meaning=1.0, axis=DANGER)
    plan, pairs = toy_pairs(["Yes_No"], word=1.5, meaning=1.0)
    idx, y = data.split_index(), data.labels
    for i, site in enumerate(SITES):
        def direction(name, site=site):
            x, lab = pairs[name].acts.get(site).double().numpy(), np.array(pairs[name].labels)
            return x[lab == 1].mean(0) - x[lab == 0].mean(0)

        f, n = direction("Yes_No"), direction("neutral:Yes - No")
        x = acts.get(site).double().numpy()
        tx, ty = x[idx["train"]], y[idx["train"]]
        labelled = tx[ty == 1].mean(0) - tx[ty == 0].mean(0)
        cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
        minus = f / np.linalg.norm(f) - n / np.linalg.norm(n)
        got = controls.formulations["Yes_No"]
        assert got.direction.cos_labelled[i] == pytest.approx(cos(f, labelled), abs=1e-9)
        assert got.direction.cos_neutral[i] == pytest.approx(cos(f, n), abs=1e-9)
        assert got.minus_neutral.cos_labelled[i] == pytest.approx(cos(minus, labelled), abs=1e-9)
        assert got.cos_twin is not None
        assert got.cos_twin[i] == pytest.approx(cos(f, direction("Yes_No_swapped")), abs=1e-9)
        test_auroc = _auroc_reference(x[idx["test"]] @ minus, y[idx["test"]])
        assert got.minus_neutral.auroc[i] == pytest.approx(test_auroc, abs=1e-12)
        assert got.minus_neutral.val_auroc[i] == pytest.approx(_auroc_reference(x[idx["val"]] @ minus, y[idx["val"]]))
    verdict = controls.verdict
    assert verdict.layer == SITES[got.minus_neutral.best_index].layer
    assert verdict.neutral_auroc == controls.neutrals["neutral:Yes - No"].auroc[got.minus_neutral.best_index]


def test_the_rule_is_a_config_field_and_is_applied_as_stated():
    strict = ControlRule(margin=0.9, min_percentile=95.0)
    controls, _, _ = controls_of(["yes_no"], word=2.0, meaning=2.0, axis=DANGER, rule=strict)
    assert not controls.verdict.beyond  # ~1.0 vs ~0.5 clears 0.2 but not 0.9
    assert controls.to_dict()["rule"]["margin"] == 0.9 and "+ 0.9" in controls.to_dict()["rule"]["text"]
    assert SuiteConfig(contrast_rule=strict).contrast_rule.margin == 0.9
    assert SuiteConfig().contrast_rule == ControlRule(margin=0.2, min_percentile=95.0)
    assert SuiteConfig().formulations[0] == "yes_no"
    with pytest.raises(ProbeInputError, match="margin"):
        ControlRule(margin=1.5)
    assert strict.holds(auroc=0.95, neutral_auroc=0.05, percentile=95.0)
    assert not strict.holds(auroc=0.95, neutral_auroc=0.05, percentile=94.9)


def test_extracting_formulations_together_equals_extracting_each(random_bridge):
    sites = [Site(hook="resid_post", layer=1)]
    together = extract_formulations(random_bridge, control_formulations(["yes_no"]), sites=sites)
    alone = extract_contrast(random_bridge, "yes_no", sites=sites)
    assert together["yes_no"].labels == alone.labels
    torch.testing.assert_close(together["yes_no"].acts.get(sites[0]), alone.acts.get(sites[0]), atol=1e-4, rtol=1e-4)
    # the swapped twin's neutral reads the same texts as the original's, with the labels reversed
    yes, no = together["neutral:yes - no"], together["neutral:no - yes"]
    assert yes.labels == no.labels  # each lists its positive completion first...
    x_yes, x_no = yes.acts.get(sites[0]), no.acts.get(sites[0])
    torch.testing.assert_close(x_yes[0::2], x_no[1::2])  # ...so the rows of " yes" trade places
    torch.testing.assert_close(x_yes[1::2], x_no[0::2])
