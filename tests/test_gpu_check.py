"""benchmarks/gpu_check.sh refuses to run without an NVIDIA GPU, saying so; its CPU reference is real data."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine runs the real check instead")
def test_gpu_check_stops_with_a_clear_message_without_a_gpu():
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "no NVIDIA GPU here" in done.stderr and "run this script on a machine with one" in done.stderr
    assert done.stdout == ""  # no timings printed, nothing trained


def test_the_cpu_reference_holds_numbers_or_nulls_for_each_stage():
    reference = json.loads((ROOT / "benchmarks" / "cpu_reference.json").read_text())
    for stage in ("train", "probe", "patch"):
        value = reference[f"{stage}_seconds"]
        assert value is None or (isinstance(value, (int, float)) and value > 0)
    assert reference["source"] and reference["machine"]
