"""Every layer, model and training test runs on one intra-op thread (see ``one_thread``).

``fresh_dynamo``: a test of compiled code starts and ends with torch.compile's caches
and counters cleared (so it counts its own graphs and never meets the recompile limit).
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters


@pytest.fixture(autouse=True)
def _one_thread_for_maha(one_thread):
    yield


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()
