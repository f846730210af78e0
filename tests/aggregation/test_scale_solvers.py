"""Scale-game solvers: exactness, agreement, batching, dtypes, gradients, bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck, gradgradcheck

from aggregation import ScaleGame, solve_scale_game
from aggregation.scale import solve_exact
from aggregation.testing.strategies import planted_scale_games, scale_game_params
from aggregation.tolerance import default_tol

D = torch.float64
ITERATIVE = ["best_response", "fictitious_play", "extragradient", "potential"]


def _distance_bound(game: ScaleGame, residual: torch.Tensor) -> torch.Tensor:
    """||x - x*||_inf <= (1 + ||C||_2) / mu * natural residual, mu = lambda_min(sym C)."""
    C = game.effective()[1].expand(*game.batch_shape, game.num_players, game.num_players)
    norm = torch.linalg.matrix_norm(C, ord=2)
    mu = game.min_eigenvalue()
    return (1 + norm) / mu * residual * math.sqrt(game.num_players)


def test_two_players_by_hand():
    C = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=D)
    # both active: x = C^-1 a = (1/3, 1/3); one priced out: a = (3, 1) -> x = (3/2, 0)
    a = torch.tensor([[1.0, 1.0], [3.0, 1.0], [-1.0, -2.0]], dtype=D)
    expected = torch.tensor([[1 / 3, 1 / 3], [1.5, 0.0], [0.0, 0.0]], dtype=D)
    for method in ["exact", "best_response", "extragradient", "potential"]:
        out = solve_scale_game(ScaleGame(a, C), method, tol=1e-12)
        torch.testing.assert_close(out.x, expected, atol=1e-5, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # O(1/t): not all reach 1e-6
        fp = solve_scale_game(ScaleGame(a, C), "fictitious_play", tol=1e-6, max_iter=5000)
    torch.testing.assert_close(fp.x, expected, atol=2e-3, rtol=0)
    out = solve_scale_game(ScaleGame(a, C))
    torch.testing.assert_close(out.weights[:2], torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=D))
    torch.testing.assert_close(out.weights[2], torch.tensor([0.5, 0.5], dtype=D))  # x = 0
    assert out.info["zero_total"].tolist() == [False, False, True]
    assert out.support.tolist() == [[True, True], [True, False], [False, False]]
    assert len(out.strategies) == 2 and out.strategies[0].shape == (3,)
    assert out[1].x.shape == (2,) and "exact" in repr(out[1]) and "batch_shape" in repr(out)


@settings(max_examples=30, deadline=None)
@given(planted_scale_games(st.integers(1, 6), batch_shape=(8,), masked=True))
def test_exact_recovers_the_planted_equilibrium(game):
    out = solve_scale_game(ScaleGame(game.a, game.C, game.mask))
    torch.testing.assert_close(out.x, game.x, atol=1e-10, rtol=0)
    assert bool(out.converged.all())
    assert float(out.residual.max()) <= 1e-10  # complementarity
    assert float(out.regret.max()) <= 1e-10
    # closed form on the support: x_S = C_SS^{-1} a_S
    for b in range(8):
        S = out.support[b].numpy()
        if S.any():
            C = game.C[b].numpy()[np.ix_(S, S)]
            np.testing.assert_allclose(
                out.x[b].numpy()[S], np.linalg.solve(C, game.a[b].numpy()[S]), atol=1e-10
            )


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 5),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["asymmetric", "indefinite"]),
)
def test_exact_complementarity_for_any_C(L, seed, kind):
    """Exact for every C: equilibria that exist are found (enumeration fallback)."""
    g = torch.Generator().manual_seed(seed)
    C = torch.randn(16, L, L, generator=g, dtype=D)
    if kind == "asymmetric":  # P-matrix: positive definite symmetric part, strong skew part
        C = C @ C.mT / L + 0.05 * torch.eye(L, dtype=D) + 3 * (C - C.mT)
    C = C.clone()
    C.diagonal(dim1=-2, dim2=-1).abs_().add_(0.1)
    a = torch.randn(16, L, generator=g, dtype=D)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = solve_scale_game(ScaleGame(a, C))
    x, w = out.x, (C @ out.x.unsqueeze(-1)).squeeze(-1) - a
    ok = out.converged
    assert bool((x >= 0).all())
    assert float((x * w).abs()[ok].sum()) <= 1e-10 * max(1, int(ok.sum()))
    assert float((-w).clamp_min(0)[ok].sum()) <= 1e-10 * max(1, int(ok.sum()))
    if kind == "asymmetric":
        assert bool(ok.all())  # P-matrix: unique equilibrium always exists
    for b in torch.nonzero(~ok).flatten().tolist():  # claimed absent: check by brute force
        assert not _has_equilibrium(a[b], C[b])


def _has_equilibrium(a: torch.Tensor, C: torch.Tensor) -> bool:
    L = a.shape[0]
    for code in range(1 << L):
        S = [l for l in range(L) if code >> l & 1]
        x = torch.zeros(L, dtype=D)
        if S:
            M = C[S][:, S]
            if abs(float(torch.linalg.det(M))) < 1e-12:
                continue
            x[S] = torch.linalg.solve(M, a[S])
        w = C @ x - a
        if bool((x >= -1e-9).all()) and bool((w >= -1e-9).all()):
            return True
    return False


@settings(max_examples=10, deadline=None)
@given(scale_game_params(st.integers(2, 4), batch_shape=(6,), margin=0.5, nonnegative=True))
def test_iterative_solvers_agree_with_exact(params):
    game = ScaleGame(params.a, params.C)
    exact = solve_scale_game(game)
    for method in ["best_response", "extragradient"]:
        out = solve_scale_game(game, method, tol=1e-11, max_iter=20000)
        assert bool(out.converged.all()), method
        bound = _distance_bound(game, out.residual) + 1e-9
        assert bool(((out.x - exact.x).abs().amax(-1) <= bound).all()), method


@settings(max_examples=10, deadline=None)
@given(scale_game_params(st.integers(2, 4), batch_shape=(6,), symmetric=True, margin=0.3))
def test_symmetric_games_nash_is_the_potential_maximiser(params):
    game = ScaleGame(params.a, params.C)
    exact = solve_scale_game(game)
    pot = solve_scale_game(game, "potential", tol=1e-12)
    assert bool(pot.converged.all())
    bound = _distance_bound(game, pot.residual) + 1e-9
    assert bool(((pot.x - exact.x).abs().amax(-1) <= bound).all())

    def phi(x):
        return (params.a * x).sum(-1) - 0.5 * (x * (params.C @ x.unsqueeze(-1)).squeeze(-1)).sum(-1)

    # the equilibrium maximises the potential: no random feasible point beats it
    probe = torch.rand(64, *params.a.shape, dtype=D) * 3
    assert bool((phi(probe) <= phi(exact.x) + 1e-9).all())


def test_fictitious_play_converges_on_a_potential_game():
    C = torch.tensor([[2.0, 0.5], [0.5, 2.0]], dtype=D)
    game = ScaleGame(torch.tensor([1.0, 0.5], dtype=D), C)
    out = solve_scale_game(game, "fictitious_play", tol=1e-8, max_iter=50000)
    assert bool(out.converged) and int(out.iterations) < 50000
    gap = (out.x - solve_scale_game(game).x).abs().max()
    assert float(gap) <= float(_distance_bound(game, out.residual)) + 1e-12


@pytest.mark.parametrize("method", ["exact", *ITERATIVE])
def test_batched_equals_per_element(method):
    g = torch.Generator().manual_seed(3)
    o = torch.randn(5, 3, 4, generator=g, dtype=D)
    C = o @ o.mT / 4 + torch.eye(3, dtype=D)
    a = torch.randn(5, 3, generator=g, dtype=D)
    mask = torch.rand(5, 3, generator=g) > 0.3
    mask[:, 0] = True
    kw = {"tol": 1e-9, "max_iter": 20000}
    batched = solve_scale_game(ScaleGame(a, C, mask), method, **kw)
    for b in range(5):
        single = solve_scale_game(ScaleGame(a[b], C[b], mask[b]), method, **kw)
        torch.testing.assert_close(batched.x[b], single.x, atol=1e-12, rtol=0)
        assert bool(batched.converged[b]) == bool(single.converged)
    assert bool((batched.x[~mask] == 0).all())


@pytest.mark.parametrize("method", ["exact", *ITERATIVE])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(method, dtype):
    C = torch.tensor([[2.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.5]])
    a = torch.tensor([[1.0, 0.5, 0.2], [0.1, 1.0, -0.5]])
    game64 = ScaleGame(a.double(), C.double())
    ref = solve_scale_game(game64).x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fictitious play is O(1/t)
        budget = 3000 if method == "fictitious_play" else 50000
        out = solve_scale_game(ScaleGame(a.to(dtype), C.to(dtype)), method, max_iter=budget)
    assert out.x.dtype == dtype and out.weights.dtype == dtype
    rounding = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 2e-2)
    bound = _distance_bound(game64, out.residual.double()) + rounding
    assert bool(((out.x.double() - ref).abs().amax(-1) <= bound).all())
    assert out.tol == default_tol(dtype)  # the one dtype rule, on the returned dtype
    if method != "fictitious_play":
        assert bool(out.converged.all())


def test_exact_float32_is_refined_in_float64_when_inaccurate():
    # an ill-conditioned support: float32 pivoting alone misses the tolerance
    C = torch.tensor([[1.0, 0.999], [0.999, 1.0]])
    a = torch.tensor([1.0, 0.9990001])
    out = solve_scale_game(ScaleGame(a, C), tol=1e-9)
    ref = solve_scale_game(ScaleGame(a.double(), C.double())).x
    torch.testing.assert_close(out.x.double(), ref, atol=1e-4, rtol=0)


def test_enumeration_fallback_gives_the_same_answer():
    g = torch.Generator().manual_seed(0)
    o = torch.randn(50, 4, 3, generator=g, dtype=D)
    C = o @ o.mT / 3 + 0.05 * torch.eye(4, dtype=D)
    a = torch.randn(50, 4, generator=g, dtype=D)
    full = solve_scale_game(ScaleGame(a, C))
    capped = solve_scale_game(ScaleGame(a, C), max_iter=1)
    assert bool(capped.info["enumerated"].any())
    torch.testing.assert_close(capped.x, full.x, atol=1e-10, rtol=0)


def test_no_equilibrium_is_reported_not_hidden():
    C = torch.tensor([[1.0, -2.0], [-2.0, 1.0]], dtype=D)  # each player wants more of the other
    with pytest.warns(RuntimeWarning, match="did not reach"):
        out = solve_scale_game(ScaleGame(torch.ones(2, dtype=D), C))
    assert not bool(out.converged)
    assert bool(torch.isfinite(out.x).all())


# --------------------------------------------------------------------------- gradients
def _games(seed: int, B: int = 4, L: int = 3):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(B, L, 4, generator=g, dtype=D)
    C = o @ o.mT / 4 + 0.5 * torch.eye(L, dtype=D) + 0.2 * torch.randn(L, L, generator=g, dtype=D)
    a = torch.randn(B, L, generator=g, dtype=D)
    return a, C


@pytest.mark.parametrize("backward", ["implicit", "unrolled"])
def test_exact_gradcheck_and_gradgradcheck(backward):
    a, C = _games(0)
    mask = torch.tensor(
        [[True, True, True], [True, False, True], [True, True, True], [False, True, True]]
    )
    a = a.requires_grad_()
    C_shared = C[0].clone().requires_grad_()  # one C broadcast across the batch

    def x_of(a, C):
        return solve_scale_game(ScaleGame(a, C, mask), backward=backward).x

    def w_of(a, C):
        return solve_scale_game(ScaleGame(a, C), backward=backward).weights

    assert gradcheck(x_of, (a, C_shared))
    assert gradgradcheck(x_of, (a, C_shared))
    assert gradcheck(w_of, (a, C.clone().requires_grad_()))


def test_exact_support_solution_gradient_closed_form():
    a, C = _games(1, B=1)
    a, C = a[0].requires_grad_(), C[0].requires_grad_()
    out = solve_scale_game(ScaleGame(a, C))
    S = out.support
    v = torch.randn(3, dtype=D)
    (out.x * v).sum().backward()
    Css = C.detach()[S][:, S]
    u = torch.linalg.solve(Css.T, v[S])
    expected_a = torch.zeros(3, dtype=D)
    expected_a[S] = u
    torch.testing.assert_close(a.grad, expected_a)
    expected_C = torch.zeros(3, 3, dtype=D)
    expected_C[S] = -u[:, None] * out.x.detach()[None, :]
    torch.testing.assert_close(C.grad, expected_C)


def test_fused_backward_equals_generic_backward():
    a, C = _games(2, B=6)
    a, C = a.requires_grad_(), C.requires_grad_()
    mask = torch.ones(6, 3, dtype=torch.bool)
    mask[1, 2] = False
    x = solve_scale_game(ScaleGame(a, C, mask)).x
    v = torch.randn_like(x)
    fused = torch.autograd.grad((x * v).sum(), (a, C), retain_graph=True)
    generic = torch.autograd.grad((x * v).sum(), (a, C), create_graph=True)  # generic path
    for f, g in zip(fused, generic):
        torch.testing.assert_close(f, g.detach(), atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", ["best_response", "extragradient", "potential"])
def test_iterative_implicit_equals_unrolled_and_exact(method):
    a, C = _games(4)
    C = 0.5 * (C + C.mT) + torch.eye(3, dtype=D)  # symmetric, well conditioned
    grads = {}
    for backward in ["implicit", "unrolled"]:
        a_ = a.clone().requires_grad_()
        C_ = C.clone().requires_grad_()
        x = solve_scale_game(
            ScaleGame(a_, C_), method, tol=1e-13, max_iter=50000, backward=backward
        ).x
        x.sum().backward()
        grads[backward] = (a_.grad, C_.grad)
    a_ = a.clone().requires_grad_()
    solve_scale_game(ScaleGame(a_, C)).x.sum().backward()
    for g_imp, g_unr in zip(grads["implicit"], grads["unrolled"]):
        torch.testing.assert_close(g_imp, g_unr, atol=1e-6, rtol=0)
    torch.testing.assert_close(grads["implicit"][0], a_.grad, atol=1e-6, rtol=0)


def test_iterative_gradcheck():
    a, C = _games(5)
    C = 0.5 * (C + C.mT) + torch.eye(3, dtype=D)
    a = a.requires_grad_()
    C = C.requires_grad_()
    f = lambda a, C: solve_scale_game(ScaleGame(a, C), "extragradient", tol=1e-14, max_iter=50000).x  # noqa: E731
    assert gradcheck(f, (a, C))


def test_unconverged_elements_get_zero_gradients_and_one_warning():
    a = torch.tensor([[1.0, 1.0], [1.0, 0.5]], dtype=D, requires_grad=True)
    C = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=D)
    with pytest.warns(RuntimeWarning):
        out = solve_scale_game(ScaleGame(a, C), "fictitious_play", tol=1e-14, max_iter=3)
    with pytest.warns(RuntimeWarning, match="gradients are set to zero") as record:
        out.x.sum().backward()
    assert len([w for w in record if "implicit" in str(w.message)]) == 1
    assert bool(torch.isfinite(a.grad).all()) and float(a.grad.abs().max()) == 0.0


def test_no_graph_when_not_requested():
    a, C = _games(6)
    out = solve_scale_game(ScaleGame(a.requires_grad_(), C), differentiable=False)
    assert not out.x.requires_grad
    with torch.no_grad():
        assert not solve_scale_game(ScaleGame(a, C)).x.requires_grad


# --------------------------------------------------------------------------- bad input
def test_bad_options_name_the_argument():
    game = ScaleGame(torch.ones(9), torch.eye(9))
    with pytest.raises(ValueError, match="at most 8 players"):
        solve_scale_game(game, "exact")
    small = ScaleGame(torch.ones(2), torch.eye(2))
    with pytest.raises(ValueError, match="method must be one of"):
        solve_scale_game(small, "newton")
    with pytest.raises(ValueError, match="backward must be one of"):
        solve_scale_game(small, backward="forward")
    with pytest.raises(TypeError, match="does not accept the option"):
        solve_scale_game(small, "exact", damping=0.5)
    with pytest.raises(ValueError, match="damping must be in"):
        solve_scale_game(small, "best_response", damping=2.0)
    with pytest.raises(ValueError, match="max_iter must be"):
        solve_scale_game(small, max_iter=0)
    with pytest.raises(TypeError, match="game must be a ScaleGame"):
        solve_scale_game((torch.ones(2), torch.eye(2)))
    with pytest.raises(TypeError, match="game must be a ScaleGame"):  # the solver itself
        solve_exact((torch.ones(2), torch.eye(2)))
    with pytest.raises(TypeError, match="differentiable must be True or False"):
        solve_exact(small, differentiable="yes")
    with pytest.raises(ValueError, match="C must be symmetric"):
        solve_scale_game(
            ScaleGame(torch.ones(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]])), "potential"
        )


def test_validate_rejects_non_monotone_C():
    C = torch.tensor([[1.0, 3.0], [3.0, 1.0]])  # symmetric part indefinite
    game = ScaleGame(torch.ones(2), C)
    for method in ITERATIVE:
        with pytest.raises(
            ValueError, match=r"C must make the game monotone.*smallest eigenvalue -2"
        ):
            solve_scale_game(game, method, validate=True)
    solve_scale_game(game, "exact", validate=True)  # exact needs no monotonicity
    solve_scale_game(ScaleGame(torch.ones(2), torch.eye(2)), "extragradient", validate=True)


def test_large_L_with_iterative_methods():
    g = torch.Generator().manual_seed(7)
    o = torch.randn(3, 12, 12, generator=g, dtype=D)
    C = o @ o.mT / 12 + torch.eye(12, dtype=D)
    a = torch.rand(3, 12, generator=g, dtype=D)
    eg = solve_scale_game(ScaleGame(a, C), "extragradient", tol=1e-12)
    pot = solve_scale_game(ScaleGame(a, C), "potential", tol=1e-12)
    assert bool(eg.converged.all()) and bool(pot.converged.all())
    torch.testing.assert_close(eg.x, pot.x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["exact", *ITERATIVE])
def test_empty_batch(method):
    a = torch.zeros(0, 3, dtype=D, requires_grad=True)
    C = torch.eye(3, dtype=D).expand(0, 3, 3)
    out = solve_scale_game(ScaleGame(a, C), method)
    assert out.x.shape == (0, 3) and out.converged.shape == (0,)
    out.x.sum().backward()
    assert a.grad.shape == (0, 3)


def test_many_chunks_equal_one_chunk(monkeypatch):
    """The chunked kernels (worker threads, partial chunks) change nothing."""
    import aggregation.small_linalg as small

    a, C = _games(8, B=50)
    mask = torch.rand(50, 3, generator=torch.Generator().manual_seed(0)) > 0.2
    mask[:, 0] = True

    def run():
        a_ = a.clone().requires_grad_()
        C_ = C.clone().requires_grad_()
        out = solve_scale_game(ScaleGame(a_, C_, mask))
        (out.weights * torch.arange(3, dtype=D)).sum().backward()
        return out.x, a_.grad, C_.grad

    one = run()
    monkeypatch.setattr(small, "CHUNK", 7)
    many = run()
    for p, q in zip(one, many):
        torch.testing.assert_close(p, q, atol=1e-13, rtol=0)
