"""Every layer, model and training test runs on one intra-op thread (see ``one_thread``).

``fresh_dynamo``: a test of compiled code starts and ends with torch.compile's caches
and counters cleared (so it counts its own graphs and never meets the recompile limit).

``streams_like_parallel``: a check that a language model's streamed outputs (a prompt, then
one token at a time; eager and compiled decoding) equal its parallel forward.
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


@pytest.fixture
def streams_like_parallel(fresh_dynamo):
    """``check(model, idx, prefix=13)``: streaming == compiled decoding == parallel within
    1e-10 (``idx`` ``(B, n)``); returns the parallel logits."""

    def check(model, idx: torch.Tensor, prefix: int = 13) -> torch.Tensor:
        with torch.no_grad():
            parallel = model(idx)
            for compile in (False, True):
                cache = model.init_cache(idx.shape[0], compile=compile, compile_backend="eager")
                outs = [model(idx[:, :prefix], cache=cache)]
                outs += [model(idx[:, t : t + 1], cache=cache) for t in range(prefix, idx.shape[1])]
                assert float((torch.cat(outs, 1) - parallel).abs().max()) <= 1e-10
        return parallel

    return check
