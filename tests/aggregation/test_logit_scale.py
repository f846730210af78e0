"""The logit (entropy-regularised) equilibrium of the scale game (``logit_scale_equilibrium``).

Checks the fixed point ``w = softmax_P((a - C w) / tau)`` against an independent
residual on hypothesis games, the special cases (``C = 0`` is softmax; symmetric
``C``: the maximiser of the entropy-regularised potential, by a long mirror-ascent
reference; ``tau -> 0``: the simplex Nash equilibrium, within the bound of
proofs/10_logit_equilibrium.md), and pins paths to each other: batched == loop,
implicit == unrolled gradients, compiled (``fullgraph=True``) == eager.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aggregation
from aggregation import logit_scale_equilibrium
from aggregation.testing import scale_game_params

F64 = torch.float64


def _softmax_present(z: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None:
        z = z.masked_fill(~mask, float("-inf"))
    return torch.softmax(z, -1)


def _fixed_point_gap(a, C, mask, tau, w) -> torch.Tensor:
    """Independent ``max_l |w_l - softmax_P((a - C w) / tau)_l|``."""
    tau = torch.as_tensor(tau, dtype=w.dtype)
    z = (a - (C @ w.unsqueeze(-1)).squeeze(-1)) / tau.unsqueeze(-1)
    return (w - _softmax_present(z, mask)).abs().amax(-1)


def _mirror_ascent(a, C, tau, mask=None, steps=20000):
    """Reference: exponentiated-gradient ascent on ``a^T w - 1/2 w^T C w + tau H(w)``
    (symmetric C), ``w <- w^(1 - eta tau) exp(eta (a - C w))``, normalised; float64."""
    L = a.shape[-1]
    present = torch.ones_like(a, dtype=torch.bool) if mask is None else mask
    w = present.to(F64) / present.sum(-1, keepdim=True)
    eta = 1.0 / (tau + C.abs().sum((-1, -2)).amax().item() + 1.0)
    for _ in range(steps):
        logits = (1 - eta * tau) * w.clamp_min(1e-300).log() + eta * (
            a - (C @ w.unsqueeze(-1)).squeeze(-1)
        )
        w = _softmax_present(logits, present)
    assert w.shape[-1] == L
    return w


def _potential(a, C, tau, w):
    ent = -(w * w.clamp_min(1e-300).log()).sum(-1)
    return (a * w).sum(-1) - 0.5 * (w * (C @ w.unsqueeze(-1)).squeeze(-1)).sum(-1) + tau * ent


def _simplex_vi_reference(a, C):
    """Reference for ``tau = 0``: the VI of ``F(w) = C w - a`` on the simplex, solved by
    enumerating supports S: ``[[C_SS, 1], [1^T, 0]] (w_S, lam) = (a_S, 1)`` with
    ``w_S >= 0`` and ``(a - C w)_l <= lam`` off S (one game, float64)."""
    L = a.shape[-1]
    for bits in range(1, 2**L):
        S = [l for l in range(L) if bits >> l & 1]
        K = torch.zeros(len(S) + 1, len(S) + 1, dtype=F64)
        K[: len(S), : len(S)] = C[S][:, S]
        K[: len(S), -1] = 1.0
        K[-1, : len(S)] = 1.0
        sol = torch.linalg.solve(K, torch.cat([a[S], torch.ones(1, dtype=F64)]))
        w = torch.zeros(L, dtype=F64)
        w[S] = sol[:-1]
        if w.min() >= -1e-12 and (a - C @ w).max() <= sol[-1] + 1e-12:
            return w
    raise AssertionError("no support satisfies the conditions")


# ------------------------------------------------------------------ the fixed point
@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    params=scale_game_params(
        st.integers(1, 6), batch_shape=st.sampled_from([(), (3,)]), masked=True
    ),
    tau=st.sampled_from([0.05, 0.3, 1.0, 7.0]),
)
def test_fixed_point_residual_within_tol_on_monotone_games(params, tau):
    a, C, mask = params
    r = logit_scale_equilibrium(a, C, mask, tau=tau)
    assert r.converged.all() and (r.residual <= r.tol).all()
    assert (_fixed_point_gap(a, C, mask, tau, r.weights) <= 1e-9).all()
    assert torch.allclose(r.weights.sum(-1), torch.ones((), dtype=F64), atol=1e-12)
    assert (r.weights[~mask] == 0).all() and (r.weights[mask] > 0).all()


def test_wrong_weights_fail_the_independent_check():
    """The gap used above rejects a point that is not the fixed point."""
    a = torch.tensor([1.0, 0.0, -1.0], dtype=F64)
    C = torch.eye(3, dtype=F64) + 0.3
    r = logit_scale_equilibrium(a, C, tau=0.5)
    assert _fixed_point_gap(a, C, None, 0.5, r.weights) <= 1e-12
    wrong = torch.softmax(a / 0.5, -1)  # ignores the interactions
    assert _fixed_point_gap(a, C, None, 0.5, wrong) > 1e-2


def test_zero_interaction_is_softmax_exactly():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 4, dtype=F64, generator=g)
    tau = torch.rand(5, dtype=F64, generator=g) + 0.1
    mask = torch.rand(5, 4, generator=g) > 0.3
    mask[:, 0] = True
    r = logit_scale_equilibrium(a, torch.zeros(4, 4, dtype=F64), mask, tau=tau)
    expected = torch.softmax((a / tau.unsqueeze(-1)).masked_fill(~mask, float("-inf")), -1)
    assert torch.equal(r.weights, expected)
    assert (r.iterations == 0).all()


@settings(max_examples=5, deadline=None, derandomize=True)
@given(
    params=scale_game_params(st.integers(2, 5), batch_shape=(2,), symmetric=True),
    tau=st.sampled_from([0.2, 1.0]),
)
def test_symmetric_C_maximises_the_entropy_regularised_potential(params, tau):
    a, C, _ = params
    r = logit_scale_equilibrium(a, C, tau=tau)
    ref = _mirror_ascent(a, C, tau, steps=4000)
    assert torch.allclose(r.weights, ref, atol=1e-8, rtol=0)
    # and no other point of the simplex does better
    g = torch.Generator().manual_seed(1)
    others = torch.softmax(torch.randn(64, *a.shape, dtype=F64, generator=g) * 2, -1)
    assert (_potential(a, C, tau, others) <= _potential(a, C, tau, r.weights) + 1e-12).all()


@pytest.mark.parametrize("symmetric", [True, False])
def test_small_tau_approaches_the_simplex_nash_within_the_bound(symmetric):
    """``||w_tau - w_0||_2 <= sqrt(tau log L / m)``, ``m = lambda_min(sym C)``."""
    g = torch.Generator().manual_seed(2)
    B, L = 6, 4
    R = torch.randn(B, L, L, dtype=F64, generator=g)
    C = R @ R.mT / L + 0.5 * torch.eye(L, dtype=F64)
    if not symmetric:
        S = torch.randn(B, L, L, dtype=F64, generator=g)
        C = C + 0.5 * (S - S.mT)
    a = torch.randn(B, L, dtype=F64, generator=g)
    m = torch.linalg.eigvalsh(0.5 * (C + C.mT))[..., 0]
    w0 = torch.stack([_simplex_vi_reference(a[i], C[i]) for i in range(B)])
    if symmetric:  # the planner's problem: the same point
        torch.testing.assert_close(aggregation.convex_aggregate(a, C).weights, w0)
    gaps = []
    for tau in (1e-1, 1e-2, 1e-3):
        w = logit_scale_equilibrium(a, C, tau=tau, max_iter=60).weights
        gap = (w - w0).norm(dim=-1)
        assert (gap <= (tau * math.log(L) / m).sqrt() + 1e-7).all()
        gaps.append(gap.max().item())
    assert gaps[-1] < gaps[0]


# ------------------------------------------------------------------ paths pinned
def test_batched_equals_loop():
    g = torch.Generator().manual_seed(3)
    B, L = 7, 4
    R = torch.randn(B, L, L, dtype=F64, generator=g)
    C = R @ R.mT / L + 0.2 * torch.eye(L, dtype=F64)
    a = torch.randn(B, L, dtype=F64, generator=g)
    tau = torch.rand(B, dtype=F64, generator=g) * 2 + 0.05
    mask = torch.rand(B, L, generator=g) > 0.3
    mask[:, 1] = True
    r = logit_scale_equilibrium(a, C, mask, tau=tau)
    for i in range(B):
        one = logit_scale_equilibrium(a[i], C[i], mask[i], tau=tau[i])
        torch.testing.assert_close(r.weights[i], one.weights, rtol=0, atol=1e-13)
        assert bool(one.converged) and int(one.iterations) == int(r.iterations[i])


def test_absent_scales_get_exactly_zero_and_empty_rows_no_nan():
    a = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], dtype=F64, requires_grad=True)
    C = torch.eye(3, dtype=F64) * 2
    mask = torch.tensor([[True, False, True], [False, False, False]])
    r = logit_scale_equilibrium(a, C, mask, tau=0.7)
    assert r.weights[0, 1] == 0 and (r.weights[0, [0, 2]] > 0).all()
    assert (r.weights[1] == 0).all() and bool(r.converged[1])
    r.weights.sum().backward()
    assert torch.isfinite(a.grad).all() and (a.grad[1] == 0).all() and a.grad[0, 1] == 0


def test_gradcheck_a_C_tau():
    g = torch.Generator().manual_seed(4)
    L = 3
    R = torch.randn(2, L, L, dtype=F64, generator=g)
    C = (R @ R.mT / L + 0.3 * torch.eye(L, dtype=F64) + 0.2 * (R - R.mT)).requires_grad_()
    a = torch.randn(2, L, dtype=F64, generator=g).requires_grad_()
    tau = torch.tensor([0.4, 1.3], dtype=F64, requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, False, True]])

    def fn(a, C, tau):
        return logit_scale_equilibrium(a, C, mask, tau=tau, tol=1e-13, max_iter=40).weights

    assert torch.autograd.gradcheck(fn, (a, C, tau), eps=1e-6, atol=1e-6)


def test_implicit_gradient_equals_unrolled_at_large_tau():
    """At tau = 3 with ||C|| < 2 the plain iteration contracts; autograd through 200 of its
    steps gives the implicit derivative."""
    g = torch.Generator().manual_seed(5)
    L = 4
    R = torch.randn(3, L, L, dtype=F64, generator=g)
    C0 = R @ R.mT / (2 * L) + 0.1 * torch.eye(L, dtype=F64)
    a0 = torch.randn(3, L, dtype=F64, generator=g)
    tau0 = torch.tensor([3.0, 4.0, 5.0], dtype=F64)
    v = torch.randn(3, L, dtype=F64, generator=g)

    def grads(unrolled: bool):
        a, C, tau = (t.clone().requires_grad_() for t in (a0, C0, tau0))
        if unrolled:
            w = torch.full_like(a, 1.0 / L)
            for _ in range(200):
                w = torch.softmax((a - (C @ w.unsqueeze(-1)).squeeze(-1)) / tau[:, None], -1)
        else:
            w = logit_scale_equilibrium(a, C, tau=tau).weights
        return w, torch.autograd.grad((w * v).sum(), (a, C, tau))

    w_i, g_i = grads(False)
    w_u, g_u = grads(True)
    torch.testing.assert_close(w_i, w_u, rtol=0, atol=1e-12)
    for x, y in zip(g_i, g_u):
        torch.testing.assert_close(x, y, rtol=1e-8, atol=1e-10)


def test_compiled_fullgraph_equals_eager_forward_and_backward():
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(6)
    R = torch.randn(5, 2, 2, generator=g)
    C0 = 0.3 * R @ R.mT + torch.eye(2)
    a0 = torch.randn(5, 2, generator=g)
    mask = torch.tensor([[True, True]] * 4 + [[False, True]])

    def fn(a, C, tau):
        r = logit_scale_equilibrium(a, C, mask, tau=tau, max_iter=2)
        return r.weights, r.converged

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    out = []
    for f in (compiled, fn):
        a, C, tau = (
            a0.clone().requires_grad_(),
            C0.clone().requires_grad_(),
            torch.tensor(0.7, requires_grad=True),
        )
        w, ok = f(a, C, tau)
        out.append((w, ok, *torch.autograd.grad((w * w).sum(), (a, C, tau))))
    for x, y in zip(*out):
        assert torch.allclose(x.float(), y.float(), rtol=0, atol=1e-6)
    assert bool(out[1][1].any())  # two iterations certify most games already


def test_half_precision_and_empty_batch():
    a = torch.tensor([[0.5, 1.0, 0.0]], dtype=torch.float16)
    C = torch.eye(3, dtype=torch.float16)
    r = logit_scale_equilibrium(a, C, tau=0.5)
    assert r.weights.dtype == torch.float16 and bool(r.converged.all())
    assert r.tol == aggregation.default_tol(torch.float16)
    e = logit_scale_equilibrium(torch.zeros(0, 3), torch.eye(3), tau=1.0)
    assert e.weights.shape == (0, 3) and e.converged.shape == (0,)


def test_nash_weights_are_invariant_under_a_temperature_on_the_utilities():
    """x* scales linearly with a (LCP: x(a/T) = x(a)/T), so w = x/sum x does not change:
    a temperature on the nash utilities is a no-op (learned beta / mu rescale C instead)."""
    g = torch.Generator().manual_seed(7)
    R = torch.randn(6, 4, 4, dtype=F64, generator=g)
    C = R @ R.mT / 4 + 0.5 * torch.eye(4, dtype=F64)
    a = torch.randn(6, 4, dtype=F64, generator=g)
    base = aggregation.solve_scale_game(aggregation.ScaleGame(a, C), method="exact")
    for T in (0.1, 3.0, 25.0):
        hot = aggregation.solve_scale_game(aggregation.ScaleGame(a / T, C), method="exact")
        torch.testing.assert_close(hot.weights, base.weights, rtol=0, atol=1e-12)
        torch.testing.assert_close(hot.x * T, base.x, rtol=0, atol=1e-12)
    # the logit equilibrium is not invariant: its temperature matters
    w1 = logit_scale_equilibrium(a, C, tau=1.0).weights
    w2 = logit_scale_equilibrium(a / 3.0, C, tau=1.0).weights
    assert (w1 - w2).abs().max() > 1e-3


# ------------------------------------------------------------------ bad input
def test_bad_input_names_the_argument():
    a, C = torch.ones(3, dtype=F64), torch.eye(3, dtype=F64)
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        logit_scale_equilibrium(a, C, tau=0.0)
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        logit_scale_equilibrium(a, C, tau=-1.0)
    with pytest.raises(ValueError, match="tau must be > 0 everywhere"):
        logit_scale_equilibrium(a.expand(2, 3), C, tau=torch.tensor([1.0, -0.5], dtype=F64))
    with pytest.raises(ValueError, match="tau must be finite"):
        logit_scale_equilibrium(a, C, tau=torch.tensor(float("nan"), dtype=F64))
    with pytest.raises(TypeError, match="tau must be a positive number"):
        logit_scale_equilibrium(a, C, tau="hot")
    with pytest.raises(ValueError, match="a must be finite"):
        logit_scale_equilibrium(torch.tensor([1.0, float("nan"), 0.0], dtype=F64), C)
    with pytest.raises(ValueError, match="C must be finite"):
        logit_scale_equilibrium(a, C * float("inf"))
    with pytest.raises(ValueError, match="C must have shape"):
        logit_scale_equilibrium(a, torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match="must broadcast"):
        logit_scale_equilibrium(torch.ones(2, 3), torch.eye(3).expand(4, 3, 3))
    with pytest.raises(TypeError, match="a must be a floating-point tensor"):
        logit_scale_equilibrium([1.0, 2.0], torch.eye(2))
    with pytest.raises(TypeError, match="mask must be a boolean tensor"):
        logit_scale_equilibrium(a, C, torch.ones(3))
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        logit_scale_equilibrium(a, C, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        logit_scale_equilibrium(a.float(), C.float(), tol=1e-12)
