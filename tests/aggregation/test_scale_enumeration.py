"""The sync-free enumeration solvers (issue 11) against the exact solvers they replace.

``aggregation.scale.enumeration``: every support of the scale game and of the
convex aggregator solved at once. Pinned to ``solve_scale_game(g, "exact")`` and
``convex_aggregate`` (values, supports, ``converged``, weights, implicit
gradients), to finite differences (gradcheck), to itself element by element
(batch == loop), and compiled (``fullgraph=True``) to eager.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aggregation as ag
import maha
from aggregation.scale.enumeration import (
    convex_aggregate_enumeration,
    scale_game_enumeration,
    support_table,
)
from aggregation.testing.strategies import (
    degenerate_scale_game_params,
    scale_game_params,
    simplex_qps,
)

D = torch.float64


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unconverged elements are expected
        yield


def _random_games(B: int, L: int, seed: int, dtype=D, skew: float = 0.3):
    """Monotone games in general position (continuous draws: strict complementarity a.s.)."""
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(B, L, 6, generator=g, dtype=dtype)
    S = torch.randn(B, L, L, generator=g, dtype=dtype) * skew
    C = o @ o.mT / 6 + 0.3 * torch.eye(L, dtype=dtype) + (S - S.mT)
    a = torch.randn(B, L, generator=g, dtype=dtype)
    return a, C


def _support_of(x: torch.Tensor) -> torch.Tensor:
    return x > 1e-9 * x.abs().amax(-1, keepdim=True).clamp_min(1e-300)


# ------------------------------------------------------------------ the table
def test_support_table_lists_every_nonempty_subset_once():
    for L in range(1, 9):
        T = support_table(L)
        assert T.shape == (2**L - 1, L) and T.dtype == torch.bool
        codes = (T.long() << torch.arange(L)).sum(-1)
        assert torch.equal(codes, torch.arange(1, 2**L))
    assert support_table(4) is support_table(4)  # cached
    for bad in (0, 9):
        with pytest.raises(ValueError, match="L <= 8"):
            support_table(bad)


# ------------------------------------------------------------------ scale game == exact
@settings(max_examples=60, deadline=None)
@given(
    p=st.one_of(
        scale_game_params(st.integers(1, 5), batch_shape=(4,)),
        scale_game_params(st.integers(2, 5), batch_shape=(4,), masked=True),
        scale_game_params(st.integers(2, 5), batch_shape=(4,), symmetric=True, nonnegative=True),
    )
)
def test_scale_game_equals_exact(p):
    game = ag.ScaleGame(p.a, p.C, p.mask)
    ref = ag.solve_scale_game(game, "exact")
    got = ag.solve_scale_game(game, "enumeration")
    assert got.method == "enumeration"
    assert torch.equal(got.converged, ref.converged) and bool(got.converged.all())
    scale = 1 + ref.x.abs().amax(-1, keepdim=True)
    assert torch.allclose(got.x, ref.x, rtol=0, atol=1e-9 * float(scale.max()))
    assert torch.allclose(got.weights, ref.weights, rtol=0, atol=1e-9)
    assert torch.equal(_support_of(got.x), _support_of(ref.x))
    assert torch.equal(got.support, got.x > 0)
    # the certificate is the game's own formula on the returned profile, bit for bit
    assert torch.equal(got.regret, game.regret(got.x))
    assert torch.equal(got.residual, game.complementarity_residual(got.x))
    if p.mask is not None:  # absent players: x = 0, weight 0, by construction
        absent = ~game.present()
        assert bool((got.x[absent] == 0).all()) and bool((got.weights[absent] == 0).all())


def test_degenerate_games_equal_exact():
    """A player exactly indifferent (x_l = 0 with zero slack), ``a_l = 0``, and ``a <= 0``."""
    a = torch.tensor([[2.0, 1.0], [1.0, 0.0], [-1.0, -0.5], [0.0, 0.0]], dtype=D)
    C = torch.tensor([[[2.0, 1.0], [1.0, 2.0]], [[1.0, 0.0], [0.0, 1.0]]], dtype=D)
    C = C.repeat(2, 1, 1)
    game = ag.ScaleGame(a, C)
    ref = ag.solve_scale_game(game, "exact")
    got = ag.solve_scale_game(game, "enumeration")
    expected = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=D)
    assert torch.equal(got.x, expected) and torch.equal(ref.x, expected)
    assert bool(got.converged.all()) and torch.equal(got.weights, ref.weights)
    assert torch.equal(got.support, expected > 0)
    # x = 0 is the equilibrium (empty support) when no player wants to play: certified
    assert torch.equal(got.info["zero_total"], torch.tensor([False, False, True, True]))
    assert not bool(got.info["fallback"].any())


def test_no_equilibrium_gives_documented_fallback():
    """``C = v v^T`` (rank 1) with ``a >= 0``: no equilibrium exists (issue 10, item 1)."""
    a = torch.tensor([0.5, 1.0], dtype=D)
    v = torch.tensor([0.1, -0.3], dtype=D)
    game = ag.ScaleGame(a, torch.outer(v, v))
    with pytest.warns(RuntimeWarning, match="enumeration"):
        warnings.simplefilter("always", RuntimeWarning)
        r = ag.solve_scale_game(game, "enumeration")
    assert not bool(r.converged) and not bool(r.info["found"])
    assert torch.equal(r.x, torch.zeros(2, dtype=D))
    assert torch.equal(r.weights, torch.full((2,), 0.5, dtype=D))
    assert bool(r.info["fallback"]) and torch.equal(r.regret, game.regret(r.x))


@settings(max_examples=40, deadline=None)
@given(
    p=st.one_of(
        degenerate_scale_game_params(batch_shape=(3,)),
        degenerate_scale_game_params(batch_shape=(3,), masked=True),
    )
)
def test_never_a_false_certificate_on_degenerate_games(p):
    """Singular, indefinite and near-singular C: ``converged`` only for true equilibria."""
    game = ag.ScaleGame(p.a, p.C, p.mask)
    r = ag.solve_scale_game(game, "enumeration")
    regret = game.regret(r.x)
    assert torch.equal(r.regret, regret)
    unit = game.payoff_unit()
    assert bool((regret.amax(-1)[r.converged] <= r.tol * unit[r.converged]).all())
    lost = ~r.info["found"]
    assert bool((r.x[lost] == 0).all())
    present = game.present()
    uniform = present / present.sum(-1, keepdim=True)
    assert torch.allclose(r.weights[lost], uniform[lost].to(D))
    # exact and enumeration agree whenever both certify and the equilibrium is unique
    ref = ag.solve_scale_game(game, "exact")
    assert bool((r.converged | ~ref.converged | ~game.is_monotone()).all())


# ------------------------------------------------------------------ convex == convex_aggregate
@settings(max_examples=60, deadline=None)
@given(
    qp=simplex_qps(st.integers(1, 5), batch_shape=(4,)),
    mask=st.one_of(st.none(), st.lists(st.booleans(), min_size=5, max_size=5)),
)
def test_convex_equals_active_set(qp, mask):
    L = qp.a.shape[-1]
    m = None
    if mask is not None:
        m = torch.tensor(mask[:L])
        m[0] = True
    ref = ag.convex_aggregate(qp.a, qp.Q, m)
    got = convex_aggregate_enumeration(qp.a, qp.Q, m)
    assert torch.equal(got.converged, ref.converged) and bool(got.converged.all())
    assert torch.allclose(got.weights, ref.weights, rtol=0, atol=1e-9)
    assert torch.allclose(got.multiplier, ref.multiplier, rtol=0, atol=1e-8)
    assert torch.equal(_support_of(got.weights), _support_of(ref.weights))
    assert bool((got.kkt_residual <= got.tol).all())
    if m is not None:
        assert bool((got.weights[..., ~m] == 0).all())


def test_convex_without_a_valid_support_falls_back_uniformly():
    """A singular Q (outside the contract): the documented fallback, never a masked scale."""
    v = torch.tensor([-0.29, 0.56, -0.57], dtype=D)
    a = torch.tensor([1.88, -0.59, -0.63], dtype=D)
    r = convex_aggregate_enumeration(a, torch.outer(v, v), torch.tensor([False, True, True]))
    assert r.weights[0] == 0
    if not bool(r.info["found"]):
        assert torch.equal(r.weights, torch.tensor([0.0, 0.5, 0.5], dtype=D))
        assert not bool(r.converged) and bool(r.info["fallback"])
    else:
        assert bool(r.converged)


# ------------------------------------------------------------------ gradients
def _grads(fn, a, C, g):
    a = a.clone().requires_grad_()
    C = C.clone().requires_grad_()
    w = fn(a, C)
    return torch.autograd.grad((w * g).sum(), (a, C))


def test_scale_game_gradients_equal_exact_implicit():
    a, C = _random_games(64, 4, seed=1)
    mask = torch.rand(64, 4, generator=torch.Generator().manual_seed(2)) < 0.8
    mask[:, 0] = True
    g = torch.randn(64, 4, dtype=D)
    for m in (None, mask):

        def solve(method, m=m):
            return lambda a, C: ag.solve_scale_game(ag.ScaleGame(a, C, m), method).weights

        ref = _grads(solve("exact"), a, C, g)
        got = _grads(solve("enumeration"), a, C, g)
        for x, y in zip(got, ref):
            assert torch.allclose(x, y, rtol=1e-9, atol=1e-11)


def test_convex_gradients_equal_active_set():
    a, C = _random_games(64, 4, seed=3, skew=0.0)
    g = torch.randn(64, 4, dtype=D)
    ref = _grads(lambda a, Q: ag.convex_aggregate(a, Q).weights, a, C, g)
    got = _grads(lambda a, Q: convex_aggregate_enumeration(a, Q).weights, a, C, g)
    for x, y in zip(got, ref):
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-11)


def test_gradcheck_float64():
    a, C = _random_games(3, 3, seed=4)
    a = a.abs() + 0.2  # interior solutions somewhere, corners elsewhere
    a[0, 2] = -1.0  # one player priced out
    a.requires_grad_()
    C.requires_grad_()
    mask = torch.tensor([[True, True, True], [True, False, True], [True, True, True]])
    assert torch.autograd.gradcheck(lambda a, C: scale_game_enumeration(a, C, mask).x, (a, C))
    assert torch.autograd.gradgradcheck(lambda a, C: scale_game_enumeration(a, C).weights, (a, C))
    Q = (C @ C.mT).detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, Q: convex_aggregate_enumeration(a, Q).weights, (a, Q))


# ------------------------------------------------------------------ batch == loop
def test_batch_equals_loop_bit_for_bit():
    a, C = _random_games(40, 5, seed=5)
    mask = torch.rand(40, 5, generator=torch.Generator().manual_seed(6)) < 0.7
    mask[:, 2] = True
    r = scale_game_enumeration(a, C, mask)
    Q = C @ C.mT
    c = convex_aggregate_enumeration(a, Q, mask)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(7))
    rp = scale_game_enumeration(a[perm], C[perm], mask[perm])
    assert torch.equal(rp.x, r.x[perm]) and torch.equal(rp.weights, r.weights[perm])
    for i in range(0, 40, 7):
        one = scale_game_enumeration(a[i], C[i], mask[i])
        assert torch.equal(one.x, r.x[i]) and torch.equal(one.weights, r.weights[i])
        assert torch.equal(one.converged, r.converged[i])
        onec = convex_aggregate_enumeration(a[i], Q[i], mask[i])
        assert torch.equal(onec.weights, c.weights[i])


def test_large_batch_chunks_equal_one_pass():
    """Eager chunking (cache-sized pieces) gives the same bits as small calls."""
    a, C = _random_games(5000, 4, seed=8)
    r = scale_game_enumeration(a, C)
    part = scale_game_enumeration(a[4000:4100], C[4000:4100])
    assert torch.equal(part.x, r.x[4000:4100]) and bool(r.converged.all())


def test_float32_layer_games_match_exact():
    a, C = _random_games(512, 4, seed=9, dtype=torch.float32)
    game = ag.ScaleGame(a.abs() + 0.01, C)
    ref = ag.solve_scale_game(game, "exact")
    got = ag.solve_scale_game(game, "enumeration")
    assert bool(got.converged.all())
    assert torch.allclose(got.weights, ref.weights, rtol=0, atol=1e-5)


def test_empty_batch_and_bad_input():
    r = scale_game_enumeration(torch.zeros(0, 3, dtype=D), torch.eye(3, dtype=D))
    assert r.x.shape == (0, 3) and r.converged.shape == (0,)
    c = convex_aggregate_enumeration(torch.zeros(0, 3, dtype=D), torch.eye(3, dtype=D))
    assert c.weights.shape == (0, 3)
    with pytest.raises(ValueError, match="L <= 8"):
        ag.solve_scale_game(ag.ScaleGame(torch.ones(9), torch.eye(9)), "enumeration")
    with pytest.raises(ValueError, match="L <= 8"):
        convex_aggregate_enumeration(torch.ones(9), torch.eye(9))
    with pytest.raises(TypeError, match="a must be a floating-point tensor"):
        scale_game_enumeration([1.0, 2.0], torch.eye(2))
    with pytest.raises(TypeError, match="mask must be a boolean tensor"):
        scale_game_enumeration(torch.ones(2), torch.eye(2), torch.ones(2))
    with pytest.raises(ValueError, match="must broadcast"):
        scale_game_enumeration(torch.ones(3, 2), torch.eye(2).expand(4, 2, 2))


# ------------------------------------------------------------------ compiled == eager
def test_compiled_fullgraph_equals_eager_forward_and_backward():
    torch._dynamo.reset()
    a, C = _random_games(6, 2, seed=10, dtype=torch.float32)
    a = a.abs() + 0.05
    mask = torch.tensor([[True, True]] * 5 + [[True, False]])

    def fn(a, C):
        r = scale_game_enumeration(a, C, mask)
        c = convex_aggregate_enumeration(a, C @ C.mT, mask)
        return r.weights, c.weights, r.converged & c.converged

    compiled = torch.compile(fn, fullgraph=True)
    g = torch.randn(6, 2)
    outs = []
    for f in (compiled, fn):
        ai, Ci = a.clone().requires_grad_(), C.clone().requires_grad_()
        w, v, ok = f(ai, Ci)
        grads = torch.autograd.grad((w * g).sum() + (v * g).sum(), (ai, Ci))
        outs.append((w, v, ok, *grads))
    for x, y in zip(*outs):
        assert torch.allclose(x.float(), y.float(), rtol=0, atol=1e-5)
    assert bool(outs[1][2].all())


def test_layer_compiles_in_one_graph_through_enumeration():
    """The nash layer traces forward and backward with ``fullgraph=True`` (the fusion
    switches to enumeration while compiling) and equals eager, which uses the exact solver."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = maha.MAHAAttention(16, 2, 3, 2, 4, "nash", causal=True)
    x = torch.randn(2, 11, 16)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    grads = []
    for f in (compiled, layer):
        xi = x.clone().requires_grad_()
        y = f(xi)
        (g,) = torch.autograd.grad(y.square().sum(), xi)
        grads.append((y, g))
    for u, v in zip(*grads):
        assert torch.allclose(u, v, rtol=0, atol=1e-5)
