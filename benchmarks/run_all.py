"""Run every benchmark script, one after another (never two at once on 2 cores).

Each script prints one JSON object; this prints ``{"name": result, ...}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = ("patching.py", "extraction.py", "training.py", "demo.py")


def main() -> int:
    here = Path(__file__).resolve().parent
    results = {}
    for script in SCRIPTS:
        proc = subprocess.run([sys.executable, str(here / script)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"benchmark {script} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            return proc.returncode
        results[script.removesuffix(".py")] = json.loads(proc.stdout)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
