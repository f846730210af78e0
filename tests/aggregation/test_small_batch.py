"""The small-batch solver (every support in one batched solve) against the other exact solvers.

Pinned to ``solve_scale_game(method="exact")`` (pivoting) and to
``scale_game_enumeration``: the same profiles, weights and certificates on random
monotone games (the games of ``maha.ScaleFusion``), with absent players, and on
degenerate ones (duplicate players, a degenerate equilibrium, ``x = 0``); the
documented fallback where no equilibrium exists.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aggregation
from aggregation.scale.small_batch import scale_game_small_batch


def _monotone(seed: int, G: int, L: int, dtype=torch.float64, skew: bool = False):
    """Games built as maha.ScaleFusion builds them: a > 0, C = Gram / d + mu I (+ skew)."""
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(G, L, 8, generator=g, dtype=dtype)
    C = o @ o.transpose(-1, -2) / 8 + 0.5 * torch.eye(L, dtype=dtype)
    if skew:
        S = torch.randn(L, L, generator=g, dtype=dtype)
        C = C + (S - S.T)
    a = torch.nn.functional.softplus(torch.randn(G, L, generator=g, dtype=dtype)) + 1e-3
    mask = torch.rand(G, L, generator=g) < 0.7
    mask[:, 0] |= ~mask.any(-1)  # at least one present player per game
    return a, C, mask


def _exact(a, C, mask):
    return aggregation.solve_scale_game(aggregation.ScaleGame(a, C, mask), method="exact")


def _assert_same(fast, ref, atol=1e-12):
    torch.testing.assert_close(fast.x, ref.x, atol=atol, rtol=0)
    torch.testing.assert_close(fast.weights, ref.weights, atol=atol, rtol=0)
    torch.testing.assert_close(fast.regret, ref.regret, atol=atol, rtol=0)
    torch.testing.assert_close(fast.residual, ref.residual, atol=atol, rtol=0)
    assert torch.equal(fast.converged, ref.converged)
    assert torch.equal(fast.info["fallback"], ref.info["fallback"])
    assert torch.equal(fast.info["zero_total"], ref.info["zero_total"])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    G=st.integers(1, 40),
    L=st.integers(1, 6),
    skew=st.booleans(),
    masked=st.booleans(),
)
def test_small_batch_equals_exact_and_enumeration_on_monotone_games(seed, G, L, skew, masked):
    a, C, mask = _monotone(seed, G, L, skew=skew)
    mask = mask if masked else None
    fast = scale_game_small_batch(a, C, mask)
    assert bool(fast.converged.all()) and bool(fast.info["found"].all())
    assert float(fast.regret.max()) <= fast.tol * float(
        (a.square() / C.diagonal(dim1=-2, dim2=-1)).amax()
    )
    _assert_same(fast, _exact(a, C, mask))
    _assert_same(fast, aggregation.scale_game_enumeration(a, C, mask))
    if mask is not None:
        assert bool((fast.x[~mask] == 0).all()) and bool((fast.weights[~mask] == 0).all())


def test_degenerate_games():
    """Duplicate players, a degenerate equilibrium (x_l = 0 = (Cx - a)_l) and x = 0."""
    L = 4
    o = torch.randn(L, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    o[1] = o[0]  # two identical scales: Gram singular, C = Gram + I still positive definite
    C_dup = o @ o.T / 8 + torch.eye(L, dtype=torch.float64)
    a_dup = torch.tensor([1.0, 1.0, 0.5, 0.2], dtype=torch.float64)
    # degenerate: x* = (1, 0, 2, 0) with w_1 = 0 exactly (a_1 = (C x*)_1) and w_3 > 0
    C_deg = torch.tensor(
        [[2.0, 0.5, 0.0, 0.0], [0.5, 2.0, 0.25, 0.0], [0.0, 0.25, 1.0, 0.5], [0.0, 0.0, 0.5, 1.0]],
        dtype=torch.float64,
    )
    x_star = torch.tensor([1.0, 0.0, 2.0, 0.0], dtype=torch.float64)
    a_deg = C_deg @ x_star
    a_deg[3] -= 0.5  # w_3 = 0.5 > 0
    a_zero = torch.tensor([-1.0, -0.5, -2.0, -0.1], dtype=torch.float64)  # nobody plays
    a = torch.stack([a_dup, a_deg, a_zero])
    C = torch.stack([C_dup, C_deg, C_deg])
    fast = scale_game_small_batch(a, C)
    _assert_same(fast, _exact(a, C, None))
    torch.testing.assert_close(fast.x[1], x_star, atol=1e-12, rtol=0)
    assert bool(fast.converged.all())
    assert bool(fast.info["zero_total"][2]) and not bool(fast.info["fallback"][2])
    torch.testing.assert_close(fast.weights[2], torch.full((L,), 0.25, dtype=torch.float64))


def test_no_equilibrium_gives_the_documented_fallback():
    """C = [[1, -1], [-1, 1]], a = (1, 1): C x - a >= 0 is infeasible, so no equilibrium."""
    C = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    a = torch.tensor([1.0, 1.0], dtype=torch.float64)
    fast = scale_game_small_batch(a, C)
    assert not bool(fast.converged) and not bool(fast.info["found"])
    assert bool(fast.info["fallback"])
    assert torch.equal(fast.x, torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(fast.weights, torch.full((2,), 0.5, dtype=torch.float64))
    with pytest.warns(RuntimeWarning, match="did not reach"):
        assert not bool(_exact(a, C, None).converged)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_low_precision_matches_exact(dtype):
    """float32 solves in float32, half precision in float32 with the profile judged in half."""
    a, C, mask = _monotone(7, 30, 4)
    a, C = a.to(dtype), C.to(dtype)
    fast, ref = scale_game_small_batch(a, C, mask), _exact(a, C, mask)
    assert fast.x.dtype == ref.x.dtype
    atol = 1e-5 if dtype == torch.float32 else 2e-3
    torch.testing.assert_close(fast.weights, ref.weights, atol=atol, rtol=0)
    assert torch.equal(fast.converged, ref.converged)


def test_broadcast_batch_shapes():
    a, C, mask = _monotone(11, 6, 3)
    fast = scale_game_small_batch(a.view(2, 3, 3), C[0], mask.view(2, 3, 3))
    assert fast.x.shape == (2, 3, 3) and fast.converged.shape == (2, 3)
    ref = _exact(a.view(2, 3, 3), C[0].expand(2, 3, 3, 3), mask.view(2, 3, 3))
    _assert_same(fast, ref)


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="a must be"):
        scale_game_small_batch([1.0, 2.0], torch.eye(2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="C"):
        scale_game_small_batch(torch.ones(3), torch.eye(2))
    with pytest.raises(ValueError, match="L=9"):
        scale_game_small_batch(torch.ones(9), torch.eye(9))
