"""The detector registry: name -> class. Adding a detector is one file here and one line below.

>>> sorted(DETECTORS)  # doctest: +NORMALIZE_WHITESPACE
['attention', 'clustering', 'contrast', 'inversion', 'isolation_forest', 'logistic', 'mahalanobis', 'onion',
 'spectral']
"""

from __future__ import annotations

from typing import Any

from backdoor_models.core.errors import lookup
from detect.base import Detector
from detect.detectors.attention import AttentionAnomaly
from detect.detectors.clustering import ActivationClustering
from detect.detectors.contrast import ContrastProbe
from detect.detectors.inversion import TriggerInversion
from detect.detectors.isolation import IsolationForest
from detect.detectors.logistic import LogisticProbe
from detect.detectors.mahalanobis import Mahalanobis
from detect.detectors.onion import OnionScan
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
    """An unfitted detector of the named kind."""
    return lookup(DETECTORS, "detector", name)(**options)


def resolve_detectors(spec: str | tuple[str, ...] | list[str]) -> list[str]:
    """``"all"``, ``"a,b"`` or a list of names -> validated list of names."""
    names = list(DETECTORS) if spec == "all" else spec.split(",") if isinstance(spec, str) else list(spec)
    for name in names:
        lookup(DETECTORS, "detector", name.strip())
    return [n.strip() for n in names]
