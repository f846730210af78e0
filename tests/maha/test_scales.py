"""The scale geometry of :mod:`maha.scales`: lengths, the block rule, upsampling, block spans.

Every form of the block rule is pinned to the rule written position by position
(the last block that has ended at ``t`` in causal mode, the block holding ``t``
otherwise): the per-position index and presence, the upsampling gather (whole and
from a streamed start) and the per-range spans that the fusion kernels fill.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maha.scales import (
    block_span,
    first_block,
    scale_lengths,
    upsample,
    upsample_index,
    upsample_presence,
)


def _block_of(t: int, f: int, n_l: int, causal: bool) -> int | None:
    """The block position ``t`` reads, searched block by block (None: the scale is absent)."""
    if not causal:
        return t // f
    ended = [j for j in range(n_l) if (j + 1) * f - 1 <= t]
    return ended[-1] if ended else None


def test_scale_lengths_are_ceilings():
    assert scale_lengths(29, 4, 3) == [29, 10, 4, 2]
    assert scale_lengths(1, 3, 2) == [1, 1, 1]
    assert scale_lengths(64, 4, 2) == [64, 32, 16, 8]


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 300), ratio=st.integers(2, 5), level=st.integers(0, 4), causal=st.booleans()
)
def test_upsample_index_geometry(n, ratio, level, causal):
    """A position gets the block holding it, or (causal) the last block ending at or before it."""
    f = ratio**level
    n_l = scale_lengths(n, level + 1, ratio)[-1]
    index, present = upsample_index(n, f, causal=causal)
    t = torch.arange(n)
    assert (index >= 0).all() and (index < n_l).all()
    if causal:
        end = (index + 1) * f - 1
        assert (end[present] <= t[present]).all()  # the block has ended
        assert ((end[present] + f) > t[present]).all()  # and it is the last one that has
        assert torch.equal(present, t + 1 >= f)
    else:
        assert present.all()
        assert ((index * f <= t) & (t < (index + 1) * f)).all()


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 60),
    ratio=st.integers(2, 4),
    level=st.integers(0, 3),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
    keyed=st.booleans(),
)
def test_upsample_presence_is_the_block_rule_and_the_keys(n, ratio, level, causal, seed, keyed):
    """present[b, t]: t has a block (searched position by position) and that block has a key."""
    f = ratio**level
    n_l = scale_lengths(n, level + 1, ratio)[-1]
    gen = torch.Generator().manual_seed(seed)
    has_key = torch.rand(2, n_l, generator=gen) > 0.4 if keyed else None
    index, present = upsample_presence(has_key, 2, n, f, causal=causal)
    assert present.shape == (2, n) and present.dtype == torch.bool
    for t in range(n):
        if causal:  # the last block that has ended at t
            ended = [j for j in range(n_l) if (j + 1) * f - 1 <= t]
            block = ended[-1] if ended else None
        else:  # the block holding t
            block = t // f
        for b in range(2):
            expected = block is not None and (has_key is None or bool(has_key[b, block]))
            assert bool(present[b, t]) == expected, (b, t)
            if block is not None:
                assert int(index[t]) == block


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 80),
    ratio=st.integers(2, 4),
    level=st.integers(0, 3),
    causal=st.booleans(),
    cut=st.integers(0, 40),
)
def test_block_span_is_the_block_rule_on_a_range(n, ratio, level, causal, cut):
    """The rows that block_span assigns to each block are those of the per-position rule."""
    f = ratio**level
    n_l = scale_lengths(n, level + 1, ratio)[-1]
    shift = f - 1 if causal else 0
    lo = min(cut * f + shift, n) if cut else 0  # 0 or a block boundary, as required
    first, j0, full, rest = block_span(lo, n, f, causal)
    expected = [_block_of(t, f, n_l, causal) for t in range(lo, n)]
    got: list[int | None] = [None] * (first - lo)
    for j in range(full):
        got += [j0 + j] * f
    got += [j0 + full] * rest
    assert got == expected
    assert 0 <= rest < f


def test_first_block_is_the_index_of_the_start():
    for f in (1, 2, 4, 9):
        for causal in (False, True):
            for start in range(3 * f + 2):
                index = upsample_index(1, f, causal=causal, start=start)[0]
                assert first_block(start, f, causal=causal) == int(index[0])


def test_upsample_gathers_the_blocks_and_zeroes_the_absent():
    gen = torch.Generator().manual_seed(0)
    n, f = 13, 4
    n_l = scale_lengths(n, 3, 2)[-1]  # scale 2 of ratio 2: f = 4, n_l = 4
    has_key = torch.rand(2, n_l, generator=gen) > 0.3
    out = torch.randn(2, n_l, 3, generator=gen)
    for causal in (False, True):
        for keys in (None, has_key):
            up, present = upsample(out, keys, n, f, causal=causal)
            for b in range(2):
                for t in range(n):
                    block = _block_of(t, f, n_l, causal)
                    if present[b, t]:
                        assert torch.equal(up[b, t], out[b, block])
                    else:
                        assert not up[b, t].any()
