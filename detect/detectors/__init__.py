"""The detector registry: name -> class. Adding a detector is one file here and one line below.

>>> sorted(DETECTORS)  # doctest: +NORMALIZE_WHITESPACE
['attention', 'clustering', 'contrast', 'inversion', 'isolation_forest', 'logistic', 'mahalanobis', 'onion',
 'spectral']

Each detector takes typed options (its ``Options`` dataclass); a misspelt one is an error:

>>> make_detector("inversion", restarts=2).options  # doctest: +NORMALIZE_WHITESPACE
InversionOptions(restarts=2, steps=25, prefix_tokens=6, questions=4, check_questions=50)
>>> make_detector("inversion", restart=2)  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
detect.base.DetectError: detector 'inversion' has no option 'restart' (did you mean restarts?); its options are:
restarts, steps, prefix_tokens, questions, check_questions
"""

from __future__ import annotations

from typing import Any

from backdoor_models.core.errors import lookup
from detect.activations import ActivationOptions
from detect.base import Detector, DetectorOptions
from detect.detectors.attention import AttentionAnomaly
from detect.detectors.clustering import ActivationClustering, ClusteringOptions
from detect.detectors.contrast import ContrastOptions, ContrastProbe
from detect.detectors.inversion import InversionOptions, TriggerInversion
from detect.detectors.isolation import IsolationForest, IsolationOptions
from detect.detectors.logistic import LogisticProbe
from detect.detectors.mahalanobis import Mahalanobis
from detect.detectors.onion import OnionOptions, OnionScan
from detect.detectors.spectral import SpectralSignature

DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls
    for cls in (
        ContrastProbe,
        LogisticProbe,
        Mahalanobis,
        SpectralSignature,
        ActivationClustering,
        IsolationForest,
        OnionScan,
        TriggerInversion,
        AttentionAnomaly,
    )
}


def make_detector(name: str, **options: Any) -> Detector:
    """An unfitted detector of the named kind with these options (an error names the valid ones if one is not)."""
    return lookup(DETECTORS, "detector", name)(**options)


def detector_options(name: str, **options: Any) -> DetectorOptions:
    """The named detector's options object built from ``options`` (checked without building the detector)."""
    return lookup(DETECTORS, "detector", name).Options.build(name, options)


def resolve_detectors(spec: str | tuple[str, ...] | list[str]) -> list[str]:
    """``"all"``, ``"a,b"`` or a list of names -> validated list of names."""
    names = list(DETECTORS) if spec == "all" else spec.split(",") if isinstance(spec, str) else list(spec)
    for name in names:
        lookup(DETECTORS, "detector", name.strip())
    return [n.strip() for n in names]


__all__ = [
    "DETECTORS",
    "ActivationOptions",
    "ClusteringOptions",
    "ContrastOptions",
    "DetectorOptions",
    "InversionOptions",
    "IsolationOptions",
    "OnionOptions",
    "detector_options",
    "make_detector",
    "resolve_detectors",
]
