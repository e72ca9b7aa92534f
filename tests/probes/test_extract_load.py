"""Load: extracting 40,000 prompts streams to disk with bounded memory.

The child process loads the tiny random model, warms up, resets its RSS high-water mark, then
extracts every whole-layer hook at every layer (10 sites of width 128) for 40,000 prompts.
Holding every activation costs 40,000 x 10 x 128 x 4 bytes = 195 MiB; streaming in shards of
1,024 prompts keeps two shards (10 MiB), the token ids and whatever the allocator and the
batch in flight take. That last part is not small or steady: on an AVX-512 Xeon it measured
43-68 MiB from run to run at 20,000 prompts (34 MiB on an AVX2 EPYC), so a fixed 48 MiB
of slack failed there; at 40,000 prompts it read 71-81 MiB (the token ids alone are ~24 MiB). The
test therefore asks for what streaming is for: growth under 60% of the activations (117 MiB),
while the same extraction held in memory (the control that shows the bound has teeth; 246 MiB
measured) grows by at least 90% of them and by half of them more than the streamed run.
(Building this test found the tokenizer's batch output, ~4 KB per prompt, held for all prompts at
once: 83 MiB at 20,000; it now runs in chunks. It also found in-memory extraction holding every
activation twice; now once.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

N, SHARD, MIB = 40_000, 1024, 1 << 20

CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from backdoor_models.organism import load_bridge
    from probes.extract import ExtractConfig, extract, load_activations

    model_dir, shard_dir, n, shard = sys.argv[1], sys.argv[2] or None, int(sys.argv[3]), int(sys.argv[4])
    hooks = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"]
    bridge = load_bridge(model_dir)
    prompts = [f"Human: What is {i} plus {i % 97}?\\n\\nAssistant:" for i in range(n)]
    extract(bridge, prompts[:256], hooks=hooks, config=ExtractConfig(progress=False, batch_size=64))  # warm up
    # Reset the RSS high-water mark (Linux: clear_refs "5"), so an earlier spike while
    # loading libraries cannot hide the growth we measure (ru_maxrss never resets).
    def high_water() -> int:
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    # Hand freed heap back to the OS first (glibc malloc_trim), so what the warm-up freed but kept
    # does not make the growth read low or high by tens of MiB from run to run.
    import ctypes, gc
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = high_water()
    acts = extract(bridge, prompts, hooks=hooks,
                   config=ExtractConfig(progress=False, batch_size=64, shard_dir=shard_dir, shard_size=shard))
    peak = high_water()
    reread = load_activations(shard_dir) if shard_dir else acts
    last = reread.at("resid_post", 1)
    print(json.dumps({"before": before, "peak": peak, "sites": len(acts.sites), "d": acts.d, "n": acts.n,
                      "rows": last.shape[0], "finite": bool(last.isfinite().all())}))
""")


def _extract_in_child(model_dir, shard_dir) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), str(shard_dir or ""), str(N), str(SHARD)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_streamed_extraction_of_40000_prompts_keeps_memory_bounded(random_model_dir, tmp_path):
    streamed = _extract_in_child(random_model_dir, tmp_path / "shards")
    assert streamed["n"] == streamed["rows"] == N and streamed["finite"]
    sites, d = streamed["sites"], streamed["d"]
    assert sites == 10 and d == 128
    all_activations = N * sites * d * 4
    bound = 0.6 * all_activations
    grown = streamed["peak"] - streamed["before"]
    assert grown <= bound, f"streaming grew RSS by {grown / MIB:.1f} MiB; bound {bound / MIB:.1f} MiB"
    assert len(list((tmp_path / "shards").glob("shard-*.safetensors"))) == -(-N // SHARD)

    held = _extract_in_child(random_model_dir, None)  # control: everything in memory
    held_grown = held["peak"] - held["before"]
    print(f"RSS growth: streamed {grown / MIB:.1f} MiB (bound {bound / MIB:.1f}), "
          f"in memory {held_grown / MIB:.1f} MiB (activations {all_activations / MIB:.1f})")
    assert held_grown >= 0.9 * all_activations > bound
    assert held_grown - grown >= 0.5 * all_activations
