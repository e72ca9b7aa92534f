"""Detection benchmark: detectors behind one interface, a zoo of backdoored and clean models, metrics, reports.

>>> from detect import DETECTORS, ZOOS
>>> len(DETECTORS), {name: len(zoo) for name, zoo in ZOOS.items()}
(9, {'mini': 3, 'default': 23, 'scratch': 18, 'pretrained': 5})
"""

from detect.base import DetectError, Detector, DetectorOptions, Subject, TrustedData
from detect.bench import BenchConfig, BenchResult, run_benchmark
from detect.detectors import DETECTORS, detector_options, make_detector, resolve_detectors
from detect.zoo import ZOOS, ZooEntry, build_zoo, get_zoo

__all__ = [
    "DETECTORS",
    "ZOOS",
    "BenchConfig",
    "BenchResult",
    "DetectError",
    "Detector",
    "DetectorOptions",
    "Subject",
    "TrustedData",
    "ZooEntry",
    "build_zoo",
    "detector_options",
    "get_zoo",
    "make_detector",
    "resolve_detectors",
    "run_benchmark",
]
