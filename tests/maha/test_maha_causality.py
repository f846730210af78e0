"""Exact causality of the MAHA layer, block and model, for every strategy.

Changing the tokens after position t must change no output at positions <= t:
the maximum absolute difference is exactly 0 in float64, and the gradient of
the output at t with respect to every input after t is exactly 0.

Each check runs two forward passes of the same shape: a batch of identical
copies of one sequence, and a batch in which copy i has its tokens after the
cut t_i replaced; row i of both outputs must agree up to t_i bit for bit.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import maha

LENGTHS = (1, 2, 3, 7, 8, 9, 63, 64, 65, 100, 257)
# (num_scales, ratio, window): several r and L, windowed, unwindowed, window 1.
CONFIGS = ((4, 2, 4), (3, 3, 2), (2, 2, None), (5, 2, 1))
D, HEADS = 8, 2


def _cuts(n: int, ratio: int, num_scales: int) -> list[int]:
    """Cut points: the ends, the middle, and both sides of every block boundary."""
    cuts = {0, 1, n // 2, n - 2}
    for l in range(1, num_scales):
        f = ratio**l
        cuts.update({f - 2, f - 1, f})
    return sorted(c for c in cuts if 0 <= c < n - 1)


def _layer(strategy: str, num_scales: int, ratio: int, window, seed: int = 0) -> maha.MAHAAttention:
    torch.manual_seed(seed)
    options = {"solver_max_iter": 40} if strategy == "fictitious_play" else {}
    layer = maha.MAHAAttention(
        D, HEADS, num_scales, ratio, window, strategy, causal=True, gating=True, **options
    )
    return layer.double()


def assert_causal(fn, n: int, d: int, cuts: list[int], *, grads: bool = True, seed: int = 1):
    """``fn((K, n, d)) -> (K, n, ...)`` is exactly causal at every cut."""
    if not cuts:
        return
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(1, n, d, dtype=torch.float64, generator=gen)
    k = len(cuts)
    same = base.expand(k, n, d).clone()
    changed = same.clone()
    for i, t in enumerate(cuts):
        changed[i, t + 1 :] = 3 * torch.randn(n - t - 1, d, dtype=torch.float64, generator=gen)
    changed.requires_grad_(grads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # iterative solvers may not converge
        y_same = fn(same).detach()
        y_changed = fn(changed)
        for i, t in enumerate(cuts):
            diff = (y_same[i, : t + 1] - y_changed[i, : t + 1].detach()).abs().max().item()
            assert diff == 0.0, f"output at positions <= {t} changed by {diff} (n={n})"
        if not grads:
            return
        probe = torch.randn(y_changed.shape, dtype=torch.float64, generator=gen)
        pick = torch.zeros(y_changed.shape[:2], dtype=torch.float64)
        for i, t in enumerate(cuts):
            pick[i, t] = 1.0  # d (output at t_i) / d input
        pick = pick.view(*pick.shape, *([1] * (y_changed.dim() - 2)))
        (y_changed * probe * pick).sum().backward()
    grad = changed.grad
    assert torch.isfinite(grad).all()
    for i, t in enumerate(cuts):
        assert grad[i, t + 1 :].abs().max().item() == 0.0
        assert grad[i, : t + 1].abs().max().item() > 0.0


CASES = [(s, c) for s in maha.STRATEGIES for c in CONFIGS]


@pytest.mark.parametrize(
    ("strategy", "config"), CASES, ids=[f"{s}-L{c[0]}-r{c[1]}-w{c[2]}" for s, c in CASES]
)
def test_layer_is_exactly_causal(strategy, config):
    num_scales, ratio, window = config
    layer = _layer(strategy, num_scales, ratio, window)
    for n in LENGTHS:
        assert_causal(layer, n, D, _cuts(n, ratio, num_scales), grads=True)


@pytest.mark.parametrize("decomposition", ["dense_conv", "avg", "max"])
def test_other_decompositions_are_causal(decomposition):
    torch.manual_seed(0)
    layer = maha.MAHAAttention(
        D, HEADS, 3, 2, 4, "nash", causal=True, decomposition=decomposition
    ).double()
    for n in (7, 9, 65):
        assert_causal(layer, n, D, _cuts(n, 2, 3))


def test_causal_mask_and_is_causal_match_causal_layer():
    torch.manual_seed(0)
    layer = maha.MAHAAttention(D, HEADS, 3, 2, 4, "mean").double()
    x = torch.randn(2, 21, D, dtype=torch.float64)
    reference = layer(x, is_causal=True)
    bool_mask = torch.ones(21, 21, dtype=torch.bool).triu(1)
    float_mask = torch.nn.Transformer.generate_square_subsequent_mask(21, dtype=torch.float64)
    assert torch.equal(layer(x, attn_mask=bool_mask), reference)
    assert torch.equal(layer(x, attn_mask=float_mask), reference)
    assert not torch.allclose(layer(x), reference)  # non-causal by default
    assert_causal(lambda z: layer(z, is_causal=True), 21, D, [0, 4, 10, 19])


def test_presence_pattern_in_causal_mode():
    """Scale l is a player at t iff a whole block of r^l tokens has ended at or before t."""
    torch.manual_seed(0)
    layer = maha.MAHAAttention(D, HEADS, 4, 3, 2, "nash", causal=True).double()
    _, diag = layer.forward_with_diagnostics(torch.randn(1, 40, D, dtype=torch.float64))
    t = torch.arange(40)
    for l in range(4):
        assert torch.equal(diag.present[0, :, l], t + 1 >= 3**l)
        absent = ~diag.present[0, :, l]
        assert (diag.weights[0, absent][:, :, l] == 0).all()


def test_block_and_model_are_causal():
    config = maha.MAHAConfig(
        block_size=80, n_layer=2, n_head=2, d_model=8, num_scales=3, window=4, gating=True
    )
    torch.manual_seed(0)
    block = maha.MAHABlock(config).double()
    assert_causal(block, 37, 8, [0, 3, 4, 17, 35])
    torch.manual_seed(0)
    model = maha.build_model("maha-nash", config).double()
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 256, (1, 70), generator=gen)
    cuts = [0, 3, 8, 40, 68]
    same = idx.expand(len(cuts), 70).clone()
    changed = same.clone()
    for i, t in enumerate(cuts):
        changed[i, t + 1 :] = torch.randint(0, 256, (69 - t,), generator=gen)
    a, b = model(same), model(changed)
    for i, t in enumerate(cuts):
        assert (a[i, : t + 1] - b[i, : t + 1]).abs().max().item() == 0.0
