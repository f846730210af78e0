"""A layer's compiled decoding (``layer.init_cache(..., compile=True)``) equals the eager cache.

(The language models compile their whole one-token step instead:
``tests/maha/test_decoding.py``.)

The compiled path fuses each one-token chunk after the first through
``torch.compile`` (support enumeration inside the graph); the eager path solves the
same games with the pivoting or small-batch solvers. Both are pinned to each other
and to the parallel forward in float64 (max abs difference <= 1e-10). The tests
compile with ``backend="aot_eager"`` (the same graph, traced and run without code
generation: seconds instead of the ~40 s inductor takes on a CPU).
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

import maha
from maha.streaming import COMPILED_STRATEGIES

TOL = 1e-10
BACKEND = "aot_eager"


@pytest.fixture(autouse=True)
def _fresh(fresh_dynamo):
    """Each test compiles from scratch (and never meets torch.compile's recompile limit)."""
    yield


def _layer(strategy: str, num_scales: int = 3, ratio: int = 2, window: int | None = 5):
    torch.manual_seed(0)
    layer = maha.MAHAAttention(8, 2, num_scales, ratio, window, strategy, causal=True)
    return layer.double().eval()


def _stream(module, x: torch.Tensor, prompt: int, compile: bool, **first) -> torch.Tensor:
    """A prompt chunk of ``prompt`` columns, then one column at a time."""
    cache = module.init_cache(x.shape[0], compile=compile, compile_backend=BACKEND)
    outs = [module(x[:, :prompt], cache=cache, **first)]
    outs += [module(x[:, p : p + 1], cache=cache) for p in range(prompt, x.shape[1])]
    return torch.cat(outs, dim=1)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


@pytest.mark.parametrize("strategy", COMPILED_STRATEGIES)
@pytest.mark.parametrize(("num_scales", "ratio", "window"), [(3, 2, 5), (4, 3, None)])
def test_compiled_decoding_equals_eager_and_parallel(strategy, num_scales, ratio, window):
    layer = _layer(strategy, num_scales, ratio, window)
    x = torch.randn(2, 30, 8, dtype=torch.float64)  # crosses blocks of 2, 4, 8 / 3, 9, 27
    with torch.no_grad():
        eager = _stream(layer, x, 3, compile=False)
        compiled = _stream(layer, x, 3, compile=True)
        parallel = layer(x)
    assert counters["stats"]["unique_graphs"] == 1  # compiled once, reused for 26 steps
    assert _max_diff(compiled, eager) <= TOL
    assert _max_diff(compiled, parallel) <= TOL


@pytest.mark.parametrize("strategy", ["mean", "softmax", "logit"])
def test_strategies_without_a_compiled_solve_stream_eagerly(strategy):
    layer = _layer(strategy)
    cache = layer.init_cache(2, compile=True, compile_backend=BACKEND)
    assert not cache.compiled
    x = torch.randn(2, 12, 8, dtype=torch.float64)
    with torch.no_grad():
        out = _stream(layer, x, 2, compile=True)
        assert _max_diff(out, layer(x)) <= TOL
    assert counters["stats"]["unique_graphs"] == 0


def test_left_padded_compiled_decoding_equals_each_unpadded_row():
    layer = _layer("nash")
    pads, n = [0, 3], 20
    x = torch.randn(2, n, 8, dtype=torch.float64)
    kpm = torch.zeros(2, 6, dtype=torch.bool)
    kpm[1, :3] = True
    with torch.no_grad():
        out = _stream(layer, x, 6, compile=True, key_padding_mask=kpm)
        for b, pad in enumerate(pads):
            ref = layer(x[b : b + 1, pad:])[0]
            assert _max_diff(out[b, pad:], ref) <= TOL
            assert not out[b, :pad].any()  # padded positions are zero
    assert counters["stats"]["unique_graphs"] >= 1


def test_bad_compile_arguments_are_refused_naming_them():
    layer = _layer("nash")
    model = maha.build_model("full", maha.MAHAConfig(vocab_size=32, block_size=16, n_layer=1))
    with pytest.raises(TypeError, match="compile must be a bool"):
        layer.init_cache(1, compile=1)
    with pytest.raises(TypeError, match="compile_backend"):
        layer.init_cache(1, compile=True, compile_backend=None)
    with pytest.raises(ValueError, match="compile_backend"):
        layer.init_cache(1, compile=True, compile_backend="no-such-backend")
    with pytest.raises(TypeError, match="compile must be a bool"):
        model.init_cache(1, compile="yes")
    with pytest.raises(TypeError, match="compile must be a bool"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 1, compile="yes")
