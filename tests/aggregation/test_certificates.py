"""Never a false certificate: issue 10, items 1-6 and 9 (scale game, convex aggregator, layer).

Every ``converged`` flag is checked against the returned object with exact
rational arithmetic (``fractions.Fraction`` of the returned floats), so the
check cannot share a rounding error with the solver.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aggregation as ag
import maha
from aggregation.testing.strategies import degenerate_scale_game_params, scale_game_params
from aggregation.tolerance import default_tol

D = torch.float64
METHODS = ["exact", "best_response", "fictitious_play", "extragradient", "potential"]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unconverged elements are expected
        yield


def _exact_regret(a, C, x, present) -> tuple[Fraction, Fraction]:
    """Max regret over present players and the payoff unit ``max a_l^2 / C_ll``, exactly."""
    L = len(a)
    F = [Fraction(float(v)) for v in a]
    X = [Fraction(float(v)) for v in x]
    M = [[Fraction(float(C[i][j])) for j in range(L)] for i in range(L)]
    worst, unit = Fraction(0), Fraction(0)
    for l in range(L):
        if not present[l]:
            continue
        r = F[l] - sum(M[l][k] * X[k] for k in range(L) if k != l)
        br = max(r, Fraction(0)) / M[l][l]
        worst = max(worst, M[l][l] / 2 * (X[l] - br) ** 2 + max(-r, Fraction(0)) * X[l])
        unit = max(unit, F[l] ** 2 / M[l][l])
    return worst, unit


def _check_scale_result(game: ag.ScaleGame, out) -> None:
    """The result is what it says, judged on the returned profile alone."""
    x = out.x.detach()
    assert bool(torch.isfinite(x).all()) and bool((x >= 0).all())
    # the certificate is ScaleGame.regret of the returned profile, bit for bit
    assert torch.equal(out.regret, game.regret(x).to(out.regret.dtype))
    present = game.present()
    assert bool((x[~present] == 0).all()) and bool((out.weights[~present] == 0).all())
    sums = out.weights.double().sum(-1)
    atol = 1e-12 if x.dtype == D else 1e-2
    assert bool(((sums - 1).abs() <= atol).all())
    L = game.num_players
    a = game.a.expand(*game.batch_shape, L).reshape(-1, L)
    C = game.C.expand(*game.batch_shape, L, L).reshape(-1, L, L)
    flat_x, flat_p = x.reshape(-1, L), present.reshape(-1, L)
    for b, ok in enumerate(out.converged.reshape(-1).tolist()):
        if ok:
            worst, unit = _exact_regret(
                a[b].double().tolist(),
                C[b].double().tolist(),
                flat_x[b].double().tolist(),
                flat_p[b].tolist(),
            )
            assert worst <= Fraction(out.tol) * unit, (b, float(worst), float(unit))


# ---------------------------------------------------------------- item 1
@pytest.mark.parametrize(
    "C",
    [
        torch.outer(torch.tensor([0.1, -0.3], dtype=D), torch.tensor([0.1, -0.3], dtype=D)),
        torch.tensor([[0.01, -0.03], [-0.03, 0.09]], dtype=D),  # cancellation hides the regret
    ],
)
def test_singular_psd_game_without_equilibrium_is_not_certified(C):
    game = ag.ScaleGame(torch.tensor([0.5, 1.0], dtype=D), C)
    out = ag.solve_scale_game(game, "exact")
    assert not bool(out.converged)  # no equilibrium exists
    _check_scale_result(game, out)
    assert float(out.x.abs().max()) < 1e6  # no absurd profile either


def test_certificate_rejects_a_profile_whose_regret_cancels():
    a = torch.tensor([0.5, 1.0], dtype=D)
    C = torch.tensor([[0.01, -0.03], [-0.03, 0.09]], dtype=D)
    x = torch.tensor([7.2e17, 2.4e17], dtype=D)  # the old false certificate
    from aggregation.scale.game import certify_profile

    cert = certify_profile(a, C, x, torch.ones(2, dtype=torch.bool), 1e-9)
    assert not bool(cert.converged) and bool(cert.diverged)


# ---------------------------------------------------------------- item 2
def test_convex_never_weights_a_masked_scale():
    v = torch.tensor([-0.29, 0.56, -0.57], dtype=D)
    a = torch.tensor([1.88, -0.59, -0.63], dtype=D)
    mask = torch.tensor([False, True, True])
    out = ag.convex_aggregate(a, torch.outer(v, v), mask)
    assert float(out.weights[0]) == 0.0
    # the optimum over the present scales, by brute force on the segment w = (0, t, 1 - t)
    t = torch.linspace(0, 1, 100001, dtype=D)
    w = torch.stack([torch.zeros_like(t), t, 1 - t], -1)
    value = w @ a - 0.5 * (w @ v) ** 2
    assert float(out.objective) >= float(value.max()) - 1e-12
    assert bool(out.converged)


@settings(max_examples=40, deadline=None)
@given(degenerate_scale_game_params(batch_shape=(3,), masked=True), st.booleans())
def test_convex_masks_and_kkt_on_degenerate_Q(params, symmetric):
    Q = params.C if not symmetric else 0.5 * (params.C + params.C.mT)
    out = ag.convex_aggregate(params.a, Q, params.mask)
    w = out.weights
    assert bool(torch.isfinite(w).all()) and bool((w >= 0).all())
    assert bool((w[~params.mask] == 0).all())  # by construction
    Qs = 0.5 * (Q + Q.mT)
    for b in range(3):
        if not bool(out.converged[b]):
            continue
        # KKT of the returned weights and multiplier, exactly
        W = [Fraction(float(v)) for v in w[b]]
        nu = Fraction(float(out.multiplier[b]))
        res = abs(sum(W) - 1)
        for l in range(len(W)):
            if params.mask[b, l]:
                mu = sum(Fraction(float(Qs[b, l, k])) * W[k] for k in range(len(W)))
                mu += nu - Fraction(float(params.a[b, l]))
                res = max(res, abs(min(W[l], mu)))
        assert res <= Fraction(out.tol) * 2, float(res)  # rounding of the residual itself


# ---------------------------------------------------------------- item 3
@pytest.mark.parametrize("strategy", ["mean", "softmax", "nash", "convex"])
def test_layer_refuses_non_finite_x_by_name(strategy):
    layer = maha.MAHAAttention(16, 4, 3, 2, 8, strategy, causal=True)
    x = torch.randn(1, 20, 16)
    x[0, 15, 0] = float("inf")
    with pytest.raises(ValueError, match="x must be finite"):
        layer(x)
    x = torch.randn(2, 20, 16)
    pad = torch.zeros(2, 20, dtype=torch.bool)
    pad[1, 17:] = True
    x[1, 18, 3] = float("nan")  # NaN inside padding
    with pytest.raises(ValueError, match="x must be finite"):
        layer(x, key_padding_mask=pad)


def test_fusion_names_its_input_for_non_finite_games():
    fusion = maha.ScaleFusion(3, 2, 4, "nash")
    o = torch.randn(1, 5, 2, 3, 4)
    o[0, 2, 0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="o \\(the scale outputs\\) must be finite"):
        fusion(o, torch.ones(1, 5, 3, dtype=torch.bool))


# ---------------------------------------------------------------- item 4
@pytest.mark.parametrize("method", ["potential", "best_response", "extragradient"])
def test_diverging_iterations_are_stopped_and_reported(method):
    game = ag.ScaleGame(
        torch.tensor([0.7, 2.2], dtype=D), torch.tensor([[0.43, -0.40], [-0.40, 0.23]], dtype=D)
    )
    out = ag.solve_scale_game(game, method)
    assert not bool(out.converged)
    assert bool(out.info["diverged"]) and bool(out.info["fallback"])
    assert out.x.tolist() == [0.0, 0.0]  # the documented fallback, explicit
    assert out.weights.tolist() == [0.5, 0.5]
    assert int(out.iterations) < 5000  # stopped, not run to the budget
    _check_scale_result(game, out)


def test_fusion_diagnostics_count_fallback_games():
    torch.manual_seed(0)
    fusion = maha.ScaleFusion(3, 2, 4, "best_response", asymmetric=True).double()
    with torch.no_grad():
        fusion.skew.copy_(4 * torch.randn(2, 3, 3))  # a large learned skew term
    o = torch.randn(2, 16, 2, 3, 4, dtype=D)
    present = torch.ones(2, 16, 3, dtype=torch.bool)
    present[0, :3, 2] = False
    diag = fusion(o, present).diagnostics
    assert diag.fallback is not None and diag.fallback.shape == (2, 16, 2)
    assert int(diag.fallback.sum()) > 0
    assert not bool((diag.fallback & diag.converged).any())
    uniform = present.unsqueeze(2).to(D) / present.sum(-1, keepdim=True).unsqueeze(2)
    torch.testing.assert_close(
        diag.weights[diag.fallback], uniform.expand_as(diag.weights)[diag.fallback]
    )


# ---------------------------------------------------------------- item 5
def _fusion_like(seed: int, B: int, L: int):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(B, L, 8, generator=g, dtype=D)
    skew = 0.3 * torch.randn(L, L, generator=g, dtype=D)
    C = o @ o.mT / 8 + 0.1 * torch.eye(L, dtype=D) + (skew - skew.T)
    a = torch.nn.functional.softplus(torch.randn(B, L, generator=g, dtype=D)) + 1e-3
    mask = torch.rand(B, L, generator=g) > 0.3
    mask[:, 0] = True
    return a, C, mask


def _solve(method, a, C, mask):
    if method == "convex":
        return ag.convex_aggregate(a, 0.5 * (C + C.mT), mask).weights
    kw = {"max_iter": 60} if method == "fictitious_play" else {"max_iter": 400}
    return ag.solve_scale_game(ag.ScaleGame(a, C, mask), method, **kw).weights


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 5), st.sampled_from(["exact", "convex"]))
def test_layer_solvers_are_batch_invariant(seed, L, method):
    a, C, mask = _fusion_like(seed, 40, L)
    batched = _solve(method, a, C, mask)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(seed))
    shuffled = _solve(method, a[perm], C[perm], mask[perm])
    assert torch.equal(shuffled, batched[perm])
    for b in range(40):
        alone = _solve(method, a[b], C[b], mask[b])
        assert torch.equal(alone, batched[b]), (b, (alone - batched[b]).abs().max())


@pytest.mark.parametrize(
    "method", ["best_response", "fictitious_play", "extragradient", "potential"]
)
def test_iterative_solvers_are_batch_invariant(method):
    a, C, mask = _fusion_like(5, 30, 6)
    if method == "potential":
        C = 0.5 * (C + C.mT)
    batched = _solve(method, a, C, mask)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    assert torch.equal(_solve(method, a[perm], C[perm], mask[perm]), batched[perm])
    for b in range(0, 30, 3):
        assert torch.equal(_solve(method, a[b], C[b], mask[b]), batched[b]), b


def test_convex_aggregate_alone_equals_inside_a_batch():
    """The fuzzed reproducer: 19-26 of 300 elements differed by one ulp."""
    a, C, mask = _fusion_like(0, 300, 5)
    Q = 0.5 * (C + C.mT)
    batched = ag.convex_aggregate(a, Q, mask).weights
    for b in range(300):
        assert torch.equal(ag.convex_aggregate(a[b], Q[b], mask[b]).weights, batched[b]), b


def test_convex_fusion_is_exactly_causal():
    """The layer-level reproducer (L=5, r=3, window 3, dense_conv)."""
    torch.manual_seed(3)
    layer = maha.MAHAAttention(
        8,
        2,
        5,
        3,
        3,
        "convex",
        causal=True,
        decomposition="dense_conv",
        gating=True,
        asymmetric=True,
        mu=0.05,
    ).double()
    n, t, k = 120, 96, 6
    x = torch.randn(1, n, 8, dtype=D)
    same = x.expand(k, n, 8).clone()
    changed = same.clone()
    changed[:, t + 1 :] = 3 * torch.randn(k, n - t - 1, 8, dtype=D)
    with torch.no_grad():
        assert float((layer(same)[:, : t + 1] - layer(changed)[:, : t + 1]).abs().max()) == 0.0


# ---------------------------------------------------------------- item 6
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", ["exact", "best_response", "extragradient", "potential"])
def test_half_precision_is_judged_on_the_returned_profile(dtype, method):
    g = torch.Generator().manual_seed(1)
    o = torch.randn(64, 4, 16, generator=g)
    C = (o @ o.mT / 16 + 0.1 * torch.eye(4)).to(dtype)
    a = (torch.nn.functional.softplus(torch.randn(64, 4, generator=g)) + 0.01).to(dtype)
    game = ag.ScaleGame(a, C)
    for tol in (None, 1e-8):
        out = ag.solve_scale_game(game, method, tol=tol, max_iter=3000)
        assert out.x.dtype == dtype and out.tol == (default_tol(dtype) if tol is None else tol)
        _check_scale_result(game, out)
    assert not bool(out.converged.all())  # 1e-8 is finer than bfloat16/float16 resolve


# ---------------------------------------------------------------- item 9
@pytest.mark.parametrize("scale", [1.0, 1e-6, 1e6])
def test_the_verdict_does_not_depend_on_the_game_scale(scale):
    no_eq = ag.ScaleGame(
        scale * torch.ones(2, dtype=D), scale * torch.tensor([[1.0, -2.0], [-2.0, 1.0]], dtype=D)
    )
    assert not bool(ag.solve_scale_game(no_eq).converged)
    a = torch.tensor([1.0, 0.5, -0.2], dtype=D)
    C = torch.tensor([[2.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.5]], dtype=D)
    ref = ag.solve_scale_game(ag.ScaleGame(a, C))
    for method in ["exact", "extragradient", "potential", "best_response"]:
        out = ag.solve_scale_game(ag.ScaleGame(scale * a, scale * C), method)
        assert bool(out.converged), method
        # a relative regret of 1e-9 puts x within about sqrt(1e-9) of the equilibrium
        torch.testing.assert_close(out.x, ref.x, atol=1e-12 if method == "exact" else 1e-4, rtol=0)
    game = ag.ScaleGame(scale * a, C)  # a alone scaled: x and U scale, the verdict stays
    out = ag.solve_scale_game(game)
    assert bool(out.converged)
    torch.testing.assert_close(game.payoff_unit(), torch.tensor(scale**2 * 0.5, dtype=D))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_one_dtype_rule_for_the_default_tolerance(dtype):
    a = torch.tensor([[1.0, 0.5]], dtype=dtype)
    C = torch.tensor([[2.0, 0.5], [0.5, 2.0]], dtype=dtype)
    for method in METHODS:
        assert ag.solve_scale_game(ag.ScaleGame(a, C), method).tol == default_tol(dtype)
    assert ag.convex_aggregate(a, C).tol == default_tol(dtype)


# ------------------------------------------------------- properties, every method
@settings(max_examples=60, deadline=None)
@given(
    degenerate_scale_game_params(batch_shape=(4,), masked=True),
    st.sampled_from(METHODS),
)
def test_no_false_certificate_on_degenerate_games(params, method):
    game = ag.ScaleGame(params.a, params.C, params.mask)
    if method == "potential":
        sym = 0.5 * (params.C + params.C.mT)
        game = ag.ScaleGame(params.a, sym, params.mask)
    out = ag.solve_scale_game(game, method, max_iter=400 if method != "exact" else None)
    _check_scale_result(game, out)


@settings(max_examples=15, deadline=None)
@given(
    scale_game_params(st.integers(1, 4), batch_shape=(3,), masked=True), st.sampled_from(METHODS)
)
def test_certificates_on_monotone_games(params, method):
    C = 0.5 * (params.C + params.C.mT) if method == "potential" else params.C
    game = ag.ScaleGame(params.a, C, params.mask)
    out = ag.solve_scale_game(game, method, max_iter=2000)
    _check_scale_result(game, out)
    if method in ("exact", "extragradient"):
        assert bool(out.converged.all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_empty_batches(dtype):
    a = torch.zeros(0, 3, dtype=dtype)
    C = torch.eye(3, dtype=dtype).expand(0, 3, 3)
    mask = torch.ones(0, 3, dtype=torch.bool)
    for method in METHODS:
        out = ag.solve_scale_game(ag.ScaleGame(a, C, mask), method)
        assert out.x.shape == (0, 3) and out.x.dtype == dtype and out.converged.shape == (0,)
        assert out.info["diverged"].shape == (0,) and out.info["fallback"].shape == (0,)
    res = ag.convex_aggregate(a, C, mask)
    assert res.weights.shape == (0, 3) and res.converged.shape == (0,)
