"""Probe tests run tiny models and tiny regressions: one thread (torch and BLAS) is as
fast as two and immune to oversubscription when other jobs share the CPU (under
contention two threads were 16x slower)."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)
