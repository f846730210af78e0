"""Statement 9 (proofs/09_flops.md): FLOPs of the layer against standard attention."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import maha
from maha.flops import maha_flops as maha_flops_lib
from maha.flops import standard_attention_flops


def local_entries(m, w, c):
    """``E_l`` of statement 9 (ii): block ``i``'s queries times the keys of its ``c``
    neighbouring blocks that exist. The blocks ``1 .. m // w - c + 1`` all have ``q_i = w``
    and ``k_i = c w`` (summed at once, so that lengths of 10^9 stay cheap); the others
    term by term."""

    def term(i):
        return min(w, m - i * w) * (min(m, (i + c - 1) * w) - max(0, (i - 1) * w))

    whole = range(1, max(1, m // w - c + 2))
    rest = [0, *range(whole.stop, math.ceil(m / w))]  # the first block and the last ones
    return len(whole) * w * c * w + sum(term(i) for i in rest)


def maha_flops(N, d, L, r, w, *, causal=False, game=False, dense=False, wrong=None):
    """(core, total) FLOPs of statement 9 (ii). ``wrong="window"`` counts w keys per local
    query; ``wrong="padded"`` counts whole blocks of w queries against c w keys (a layout
    that pads the first block's missing keys and the tail)."""
    n = [N]
    for _ in range(L - 1):
        n.append(math.ceil(n[-1] / r))
    c = 2 if causal else 3
    core = 0
    for l, m in enumerate(n):
        if w is None or m <= w or l == L - 1:
            core += 4 * d * m * m
        elif wrong == "window":
            core += 4 * d * m * w
        elif wrong == "padded":
            core += 4 * d * math.ceil(m / w) * w * c * w
        else:
            core += 4 * d * local_entries(m, w, c)
    fuse = 2 * N * L * d if L > 1 else 0  # a single scale is not fused
    rest = 4 * N * d * d + 4 * d * d * sum(n) + decomposition_flops(N, d, L, r, dense=dense) + fuse
    if game and L > 1:
        rest += 2 * N * L * d + 2 * N * L * L * d
    return core, core + rest


def decomposition_flops(N, d, L, r, *, dense=False):
    """Decomposition of X and of V: 2 r d (depthwise) or 2 r d^2 (dense) per output row, twice."""
    n = [N]
    for _ in range(L - 1):
        n.append(math.ceil(n[-1] / r))
    return (4 * r * d * d if dense else 4 * r * d) * sum(n[1:])


def std_flops(N, d):
    return 4 * N * N * d, 8 * N * d * d + 4 * N * N * d


def _count(module, x, *args, **kwargs) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x, *args, **kwargs)
    return counter.get_total_flops()


CONFIGS = [
    # N, d, H, L, r, window, decomposition
    (256, 32, 4, 3, 2, 16, "conv"),
    (100, 16, 2, 4, 3, 8, "conv"),
    (64, 16, 2, 2, 2, None, "conv"),
    (130, 24, 3, 3, 2, 20, "dense_conv"),
    (4096, 256, 4, 4, 2, 64, "conv"),
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("N", "d", "H", "L", "r", "w", "decomposition"), CONFIGS)
def test_formula_matches_flop_counter(N, d, H, L, r, w, decomposition, causal):
    layer = maha.MAHAAttention(
        d, H, L, r, w, strategy="mean", causal=causal, decomposition=decomposition, device="meta"
    )
    batch = 2
    x = torch.empty(batch, N, d, device="meta")
    counted = _count(layer, x) // batch
    dense = decomposition == "dense_conv"
    _, total = maha_flops(N, d, L, r, w, causal=causal, dense=dense)
    # maha computes the depthwise decomposition as a broadcast product and sum, which
    # FlopCounterMode does not see; what the counter sees of it is all of it or nothing.
    seen = 2 * _count(layer.decomposition, x) // batch  # applied to X and to V
    assert seen in (0, decomposition_flops(N, d, L, r, dense=dense))
    # Likewise the fusion's weighted sum (broadcast product and sum in maha).
    o = torch.empty(batch, N, H, L, d // H, device="meta")
    present = torch.ones(batch, N, L, dtype=torch.bool, device="meta")
    fuse = 2 * N * L * d if L > 1 else 0
    seen_fuse = _count(layer.fusion, o, present) // batch
    assert seen_fuse in (0, fuse)
    assert counted + decomposition_flops(N, d, L, r, dense=dense) - seen + fuse - seen_fuse == total
    # The game strategies add the utilities and the Gram matrix (O(N L^2 d)).
    game_layer = maha.MAHAAttention(d, H, L, r, w, strategy="nash", device="meta")
    with FlopCounterMode(display=False) as counter:
        game_layer.fusion.game_inputs(o)
    # maha computes the Gram matrices as one batched product (counted) and the utility
    # scores as a broadcast product and sum (not counted).
    utilities, gram = 2 * N * L * d, 2 * N * L * L * d
    assert counter.get_total_flops() // batch in (0, gram, utilities + gram)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("N", "d", "H"), [(64, 16, 2), (4096, 256, 4)])
def test_standard_attention_formula(N, d, H, causal):
    layer = maha.StandardAttention(d, H, device="meta")
    x = torch.empty(1, N, d, device="meta")
    assert _count(layer, x, is_causal=causal) == std_flops(N, d)[1]
    # Statement 9 (v), as computed by the formula that the counter just confirmed.
    if N == 4096:
        core, total = maha_flops(N, d, 4, 2, 64, causal=causal, game=True)
        std_core, std_total = std_flops(N, d)
        assert core / std_core <= 0.1 and total / std_total <= 0.251


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 50_000),
    st.sampled_from([16, 64, 256]),
    st.integers(1, 6),
    st.integers(2, 4),
    st.integers(1, 256),
    st.booleans(),
)
def test_bounds_and_asymptotics(N, d, L, r, w, causal):
    c = 2 if causal else 3
    n = [N]
    for _ in range(L - 1):
        n.append(math.ceil(n[-1] / r))
    assert sum(n) < N * r / (r - 1) + L - 1 + 1e-9 or L == 1
    core, total = maha_flops(N, d, L, r, w, causal=causal, game=True)
    fuse = 4 * N * L * d + 2 * N * L * L * d
    bound = (
        4 * N * d * d * (1 + r / (r - 1))
        + 4 * r * d * N / (r - 1)
        + 4 * d * c * w * (N * r / (r - 1) + L * (w + 1))
        + 4 * d * (N / r ** (L - 1) + 1) ** 2
        + fuse
        + 4 * L * (d * d + r * d)
    )
    assert total <= bound
    # The core ratio tends to r^(-2(L-1)) as N grows at fixed w.
    big = 10**9
    core_big, _ = maha_flops(big, d, L, r, w, causal=causal)
    limit = r ** (-2 * (L - 1))
    assert abs(core_big / std_flops(big, d)[0] - limit) <= 1e-3 * limit + 4 * c * w * r / big


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 20_000),
    st.sampled_from([(16, 2), (64, 4), (256, 4)]),
    st.integers(1, 5),
    st.integers(2, 4),
    st.one_of(st.none(), st.integers(1, 128)),
    st.booleans(),
    st.sampled_from(["mean", "nash", "convex"]),
    st.sampled_from(["conv", "dense_conv"]),
)
def test_library_formula_matches_statement(N, dH, L, r, w, causal, strategy, decomposition):
    d, H = dH
    game = strategy != "mean"
    ours = maha_flops(N, d, L, r, w, causal=causal, game=game, dense=decomposition == "dense_conv")
    theirs = maha_flops_lib(
        N, d, H, L, r, w, causal=causal, strategy=strategy, decomposition=decomposition
    )
    # maha.flops reports the depthwise decomposition as ``elementwise`` and the fusion's
    # products as ``fusion`` (both computed elementwise, so not in ``counted``).
    assert (theirs.core, theirs.counted + theirs.elementwise + theirs.fusion) == ours
    std = standard_attention_flops(N, d)
    assert (std.core, std.counted) == std_flops(N, d)


def test_wrong_formula_is_rejected():
    # Counting w keys per local query (ignoring the blockwise c*w keys) undercounts, and
    # counting whole padded blocks (the first block's missing keys, the tail) overcounts:
    # the counter catches both.
    layer = maha.MAHAAttention(32, 4, 3, 2, 16, strategy="mean", device="meta")
    x = torch.empty(1, 250, 32, device="meta")
    unseen = decomposition_flops(250, 32, 3, 2) - 2 * _count(layer.decomposition, x)
    o = torch.empty(1, 250, 4, 3, 8, device="meta")
    present = torch.ones(1, 250, 3, dtype=torch.bool, device="meta")
    unseen += 2 * 250 * 3 * 32 - _count(layer.fusion, o, present)  # the weighted sum
    counted = _count(layer, x) + unseen
    assert counted == maha_flops(250, 32, 3, 2, 16)[1]
    assert counted != maha_flops(250, 32, 3, 2, 16, wrong="window")[1]
    assert counted != maha_flops(250, 32, 3, 2, 16, wrong="padded")[1]
    # window=None (the paper's full attention per scale) costs more than standard attention.
    core, _ = maha_flops(4096, 256, 4, 2, None)
    assert core > std_flops(4096, 256)[0]
