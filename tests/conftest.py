"""Fixtures shared by the whole suite.

The suite mirrors the packages: ``aggregation/`` (solvers, games, certificates and their
peers), ``maha/`` (the layer, the models, streaming and training), ``proofs/`` (one test
file per statement of ``proofs/``), ``docs/`` (the README and the demo) and
``benchmarks/`` (smoke runs of every benchmark script).
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread, restoring the caller's setting afterwards.

    Tiny tensors gain nothing from intra-op threads, which stall on a busy CPU; the
    ``maha`` tests use it for every test (``tests/maha/conftest.py``).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def torch_threads_after():
    """``run(code, threads)``: run ``code`` in a fresh Python process that first sets torch
    to ``threads`` threads, and return torch's thread count after it.

    For the numba kernels (``aggregation.accel.numba_threads``): numba's OpenMP layer
    resets the process's thread count when it starts, which only a fresh process shows.
    """
    import subprocess
    import sys

    def run(code: str, threads: int) -> int:
        last = "print(torch.get_num_threads())"
        script = "\n".join(["import torch", f"torch.set_num_threads({threads})", code, last])
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=600
        )
        return int(out.stdout.split()[-1])

    return run
