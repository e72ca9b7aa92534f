"""The probe registry: name -> probe class. All are linear: ``score = x @ weight + bias``.

>>> sorted(PROBES)
['contrast', 'lda', 'logistic', 'meandiff']
>>> make_probe("lda").name
'lda'
"""

from __future__ import annotations

from typing import Any

from backdoor_models.core.errors import lookup
from probes.errors import ProbeInputError
from probes.methods.base import Probe, check_activations
from probes.methods.contrast import (
    FORMULATIONS,
    ContrastFormulation,
    ContrastProbe,
    get_formulation,
)
from probes.methods.lda import LDAProbe
from probes.methods.logistic import LogisticProbe
from probes.methods.meandiff import MeanDiffProbe

PROBES: dict[str, type[Probe]] = {
    cls.name: cls for cls in (ContrastProbe, MeanDiffProbe, LogisticProbe, LDAProbe)
}


def make_probe(name: str, **options: Any) -> Probe:
    """An unfitted probe of the named method."""
    return lookup(PROBES, "probe method", name)(**options)


def resolve_methods(methods: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"all"`` or a name or a list of names -> validated list of names."""
    names = list(PROBES) if methods == "all" else [methods] if isinstance(methods, str) else list(methods)
    for name in names:
        lookup(PROBES, "probe method", name)
    if not names:
        raise ProbeInputError(f"no probe methods given; choose from {sorted(PROBES)} or 'all'")
    return names


__all__ = [
    "FORMULATIONS",
    "PROBES",
    "ContrastFormulation",
    "ContrastProbe",
    "LDAProbe",
    "LogisticProbe",
    "MeanDiffProbe",
    "Probe",
    "check_activations",
    "get_formulation",
    "make_probe",
    "resolve_methods",
]
