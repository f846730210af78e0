"""Statement 8 (proofs/08_causality.md): exact causality and the block rule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import maha
from aggregation.testing import assert_causal
from maha.scales import upsample_index

FAST = settings(max_examples=40, deadline=None)


def block_rule(t: int, r: int, l: int) -> int | None:
    """j_l(t) = floor((t + 1) / r^l) - 1, or None when scale l is absent at t."""
    j = (t + 1) // r**l - 1
    return j if j >= 0 else None


def scale_lengths(n: int, r: int, L: int) -> list[int]:
    lengths = [n]
    for _ in range(L - 1):
        lengths.append(math.ceil(lengths[-1] / r))
    return lengths


@FAST
@given(st.integers(1, 300), st.integers(2, 5), st.integers(0, 5))
def test_block_rule(n, r, l):
    f = r**l
    n_l = scale_lengths(n, r, l + 1)[-1]
    for t in range(n):
        j = block_rule(t, r, l)
        if j is None:
            assert t + 1 < f  # absent only before the first block ends
            continue
        assert (j + 1) * f - 1 <= t  # ends at or before t
        assert (j + 2) * f - 1 > t  # the next block ends after t: j is the latest
        assert (j + 1) * f <= n and j < n_l  # complete, never the padded tail
        assert t - ((j + 1) * f - 1) == (t + 1) % f  # staleness
    present = [sum(block_rule(t, r, k) is not None for k in range(l + 1)) for t in range(n)]
    assert present == [
        min(l + 1, 1 + int(math.floor(math.log(t + 1, r) + 1e-12))) for t in range(n)
    ]


@FAST
@given(st.integers(1, 300), st.integers(2, 5), st.integers(0, 5))
def test_library_upsampling_follows_block_rule(n, r, l):
    index, present = upsample_index(n, r**l, causal=True)
    for t in range(n):
        j = block_rule(t, r, l)
        assert bool(present[t]) == (j is not None)
        if j is not None:
            assert int(index[t]) == j
    index, present = upsample_index(n, r**l, causal=False)
    assert index.tolist() == [t // r**l for t in range(n)] and bool(present.all())


def _pipeline(x: torch.Tensor, r: int, L: int, causal_rule: bool) -> torch.Tensor:
    """A minimal multiscale layer satisfying (a), (b), (d); (c) is the upsampling rule.

    Scale l: average pooling with kernel = stride = r (tail zero-padded), causal
    prefix-mean "attention" over its blocks, upsampled to length n, fused by a
    per-position weighted sum of the present scales.
    """
    batch, n, d = x.shape
    outputs, presents = [], []
    level = x
    for l in range(L):
        if l:
            pad = (-level.shape[1]) % r
            level = F.pad(level, (0, 0, 0, pad)).view(batch, -1, r, d).mean(2)  # (B, n_l, d)
        counts = torch.arange(1, level.shape[1] + 1, dtype=x.dtype).view(1, -1, 1)
        attended = level.cumsum(1) / counts  # block j sees blocks <= j
        f = r**l
        t = torch.arange(n)
        if causal_rule:
            index = (t + 1) // f - 1
            present = index >= 0
        else:
            index = t // f
            present = torch.ones(n, dtype=torch.bool)
        up = attended[:, index.clamp(min=0)]  # (B, n, d)
        outputs.append(torch.where(present.view(1, n, 1), up, torch.zeros_like(up)))
        presents.append(present)
    stack = torch.stack(outputs, 2)  # (B, n, L, d)
    weights = torch.softmax(stack.sum(-1), -1) * torch.stack(presents, -1).to(x.dtype)
    return (weights.unsqueeze(-1) * stack).sum(2)  # (B, n, d)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 17, 33])
@pytest.mark.parametrize(("r", "L"), [(2, 1), (2, 4), (3, 3)])
def test_reference_pipeline_is_causal(n, r, L):
    x = torch.randn(2, n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    assert_causal(lambda z: _pipeline(z, r, L, causal_rule=True), x, dim=1, tol=0.0)


@pytest.mark.parametrize(("n", "r", "L"), [(8, 2, 2), (9, 3, 2), (33, 2, 4)])
def test_nearest_neighbour_upsampling_leaks(n, r, L):
    x = torch.randn(1, n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError, match="not causal"):
        assert_causal(lambda z: _pipeline(z, r, L, causal_rule=False), x, dim=1)
    # The leak reaches r^(L-1) - 1 positions ahead: changing only x[r^(L-1) - 1]
    # moves the output at position 0.
    f = r ** (L - 1)
    y = x.clone()
    y[:, f - 1] += 1.0
    changed = _pipeline(y, r, L, causal_rule=False) - _pipeline(x, r, L, causal_rule=False)
    assert float(changed[:, 0].abs().max()) > 0


@pytest.mark.parametrize("strategy", ["nash", "convex", "mean"])
@pytest.mark.parametrize(("n", "r", "L", "window"), [(9, 2, 3, 2), (7, 3, 2, None), (17, 2, 4, 3)])
def test_layer_is_exactly_causal(strategy, n, r, L, window):
    torch.manual_seed(0)
    layer = maha.MAHAAttention(
        8, 2, num_scales=L, ratio=r, window=window, strategy=strategy, causal=True
    ).double()
    layer.eval()
    x = torch.randn(1, n, 8, dtype=torch.float64)
    cuts = range(n - 1) if n <= 9 else [0, 1, 2, 3, 5, 7, 8, 11, 15]
    assert_causal(layer, x, dim=1, cuts=cuts, tol=0.0)
