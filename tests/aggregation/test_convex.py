"""convex_aggregate: exactness, KKT, agreement between methods, gradients, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from torch.autograd import gradcheck, gradgradcheck

from aggregation import convex_aggregate
from aggregation.testing.strategies import simplex_qps

D = torch.float64


def _scipy(a: np.ndarray, Q: np.ndarray) -> np.ndarray:
    L = len(a)
    res = minimize(
        lambda w: -(a @ w - 0.5 * w @ Q @ w),
        np.full(L, 1 / L),
        jac=lambda w: -(a - Q @ w),
        bounds=[(0, None)] * L,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(L)}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    return res.x


def test_two_scales_by_hand():
    # interior: w1 = (a1 - a2 + Q22 - Q12) / (Q11 + Q22 - 2 Q12), clipped to [0, 1]
    Q = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=D)
    a = torch.tensor([[1.0, 1.0], [5.0, 0.0], [0.0, 5.0]], dtype=D)
    w1 = ((a[:, 0] - a[:, 1] + 1.0 - 0.5) / (2.0 + 1.0 - 1.0)).clamp(0, 1)
    out = convex_aggregate(a, Q)
    torch.testing.assert_close(out.weights, torch.stack([w1, 1 - w1], -1))
    assert out.support.tolist() == [[True, True], [True, False], [False, True]]
    assert bool(out.converged.all()) and float(out.kkt_residual.max()) <= 1e-12
    # the objective and the multiplier: mu = Q w - a + nu = 0 on the support
    w = out.weights
    torch.testing.assert_close(out.objective, (a * w).sum(-1) - 0.5 * (w * (w @ Q)).sum(-1))
    mu = w @ Q - a + out.multiplier[:, None]
    assert float((mu * out.support).abs().max()) <= 1e-12
    assert "active_set" in repr(out) and "weights" in repr(out[0])


@settings(max_examples=15, deadline=None)
@given(simplex_qps(st.integers(2, 5), batch_shape=(3,)))
def test_active_set_is_the_optimum(problem):
    out = convex_aggregate(problem.a, problem.Q)
    assert bool(out.converged.all())
    assert float(out.kkt_residual.max()) <= 1e-10
    for b in range(3):
        ref = _scipy(problem.a[b].numpy(), problem.Q[b].numpy())
        np.testing.assert_allclose(out.weights[b].numpy(), ref, atol=2e-6)


@settings(max_examples=10, deadline=None)
@given(simplex_qps(st.integers(2, 6), batch_shape=(4,)))
def test_projected_gradient_agrees_with_active_set(problem):
    exact = convex_aggregate(problem.a, problem.Q, method="active_set")
    pg = convex_aggregate(problem.a, problem.Q, method="projected_gradient")
    assert bool(pg.converged.all())
    torch.testing.assert_close(pg.weights, exact.weights, atol=1e-8, rtol=0)


def test_large_L_uses_projected_gradient():
    g = torch.Generator().manual_seed(0)
    o = torch.randn(3, 12, 20, generator=g, dtype=D)
    Q = o @ o.mT / 20 + 0.1 * torch.eye(12, dtype=D)
    a = torch.randn(3, 12, generator=g, dtype=D)
    out = convex_aggregate(a, Q)
    assert out.method == "projected_gradient" and bool(out.converged.all())
    for b in range(3):
        np.testing.assert_allclose(
            out.weights[b].numpy(), _scipy(a[b].numpy(), Q[b].numpy()), atol=1e-5
        )
    with pytest.raises(ValueError, match="at most 8 scales"):
        convex_aggregate(a, Q, method="active_set")


def test_asymmetric_Q_is_symmetrised():
    Q = torch.tensor([[2.0, 1.0], [0.0, 1.0]], dtype=D)
    a = torch.tensor([1.0, 1.0], dtype=D)
    torch.testing.assert_close(
        convex_aggregate(a, Q).weights, convex_aggregate(a, 0.5 * (Q + Q.T)).weights
    )


def test_mask_and_batching():
    g = torch.Generator().manual_seed(1)
    o = torch.randn(6, 4, 5, generator=g, dtype=D)
    Q = o @ o.mT / 5 + 0.2 * torch.eye(4, dtype=D)
    a = torch.randn(6, 4, generator=g, dtype=D)
    mask = torch.rand(6, 4, generator=g) > 0.4
    mask[:, 1] = True
    out = convex_aggregate(a, Q, mask)
    assert bool((out.weights[~mask] == 0).all())
    for b in range(6):
        idx = mask[b].nonzero().flatten()
        alone = convex_aggregate(a[b, idx], Q[b][idx][:, idx])
        torch.testing.assert_close(out.weights[b, idx], alone.weights, atol=1e-12, rtol=0)
        torch.testing.assert_close(convex_aggregate(a[b], Q[b], mask[b]).weights, out.weights[b])


def test_enumeration_fallback_gives_the_same_answer():
    g = torch.Generator().manual_seed(2)
    o = torch.randn(40, 5, 3, generator=g, dtype=D)
    Q = o @ o.mT / 3 + 0.05 * torch.eye(5, dtype=D)
    a = torch.randn(40, 5, generator=g, dtype=D)
    full = convex_aggregate(a, Q)
    capped = convex_aggregate(a, Q, max_iter=1)
    assert bool(capped.info["enumerated"].any())
    torch.testing.assert_close(capped.weights, full.weights, atol=1e-10, rtol=0)


@pytest.mark.parametrize("method", ["active_set", "projected_gradient"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes(method, dtype):
    Q = torch.tensor([[2.0, 0.5, 0.1], [0.5, 1.0, 0.2], [0.1, 0.2, 1.5]])
    a = torch.tensor([[1.0, 0.5, 0.2], [0.1, 1.0, -0.5]])
    ref = convex_aggregate(a.double(), Q.double()).weights
    out = convex_aggregate(a.to(dtype), Q.to(dtype), method=method)
    assert out.weights.dtype == dtype
    atol = {torch.float64: 1e-9, torch.float32: 1e-5}.get(dtype, 2e-2)
    torch.testing.assert_close(out.weights.double(), ref, atol=atol, rtol=0)
    assert bool(out.converged.all())


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize(
    ("method", "backward"),
    [("active_set", "implicit"), ("active_set", "unrolled"), ("projected_gradient", "implicit")],
)
def test_gradcheck_and_gradgradcheck(method, backward):
    g = torch.Generator().manual_seed(3)
    o = torch.randn(4, 4, 5, generator=g, dtype=D)
    Q = (o @ o.mT / 5 + 0.3 * torch.eye(4, dtype=D))[0].requires_grad_()  # shared across the batch
    a = torch.randn(4, 4, generator=g, dtype=D).requires_grad_()
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[2, 1] = False

    def f(a, Q):
        return convex_aggregate(a, Q, mask, method=method, backward=backward).weights

    assert gradcheck(f, (a, Q))
    assert gradgradcheck(f, (a, Q))


def test_jacobian_closed_form_on_the_support():
    """dw_S/da_S = P = K^-1 - K^-1 1 1^T K^-1 / (1^T K^-1 1), K = Q_SS."""
    Q = torch.tensor([[2.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 1.5]], dtype=D)
    a = torch.tensor([1.0, 0.9, -3.0], dtype=D)
    out = convex_aggregate(a, Q)
    S = out.support
    assert S.tolist() == [True, True, False]
    J = torch.autograd.functional.jacobian(lambda a: convex_aggregate(a, Q).weights, a)
    Kinv = torch.linalg.inv(Q[S][:, S])
    one = torch.ones(2, dtype=D)
    P = Kinv - torch.outer(Kinv @ one, one @ Kinv) / (one @ Kinv @ one)
    torch.testing.assert_close(J[S][:, S], P)
    assert float(J[:, ~S].abs().max()) == 0.0 and float(J[~S].abs().max()) == 0.0


def test_fused_backward_equals_generic_backward():
    g = torch.Generator().manual_seed(4)
    o = torch.randn(5, 4, 5, generator=g, dtype=D)
    Q = o @ o.mT / 5 + 0.3 * torch.eye(4, dtype=D) + 0.1 * torch.randn(4, 4, generator=g, dtype=D)
    Q = Q.requires_grad_()
    a = torch.randn(5, 4, generator=g, dtype=D).requires_grad_()
    w = convex_aggregate(a, Q).weights
    v = torch.randn_like(w)
    fused = torch.autograd.grad((w * v).sum(), (a, Q), retain_graph=True)
    generic = torch.autograd.grad((w * v).sum(), (a, Q), create_graph=True)
    for f, gg in zip(fused, generic):
        torch.testing.assert_close(f, gg.detach(), atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("a", "Q", "mask", "kwargs", "error", "match"),
    [
        (torch.ones(3), torch.ones(3, 2), None, {}, ValueError, "Q must be square"),
        (torch.ones(3), torch.eye(2), None, {}, ValueError, r"Q must have shape \(\*batch, 3, 3\)"),
        (
            torch.ones(2),
            torch.eye(2),
            torch.zeros(2, dtype=torch.bool),
            {},
            ValueError,
            "mask must leave",
        ),
        (torch.tensor([1.0, float("inf")]), torch.eye(2), None, {}, ValueError, "a must be finite"),
        (torch.ones(2), torch.full((2, 2), float("nan")), None, {}, ValueError, "Q must be finite"),
        (
            torch.ones(2),
            torch.eye(2),
            None,
            {"method": "simplex"},
            ValueError,
            "method must be one of",
        ),
        (torch.ones(2), torch.eye(2), None, {"tol": -1.0}, ValueError, "tol must be"),
        (
            torch.ones(2),
            torch.tensor([[1.0, 2.0], [2.0, 1.0]]),
            None,
            {"validate": True},
            ValueError,
            r"Q must have a positive definite symmetric part.*smallest eigenvalue -1",
        ),
    ],
)
def test_bad_input_names_the_argument(a, Q, mask, kwargs, error, match):
    with pytest.raises(error, match=match):
        convex_aggregate(a, Q, mask, **kwargs)


@pytest.mark.parametrize("method", ["active_set", "projected_gradient"])
def test_empty_batch(method):
    out = convex_aggregate(torch.zeros(0, 3), torch.eye(3).expand(0, 3, 3), method=method)
    assert out.weights.shape == (0, 3) and out.converged.shape == (0,)


def test_many_chunks_equal_one_chunk(monkeypatch):
    import aggregation.small_linalg as small

    g = torch.Generator().manual_seed(5)
    o = torch.randn(40, 4, 5, generator=g, dtype=D)
    Q = o @ o.mT / 5 + 0.2 * torch.eye(4, dtype=D)
    a = torch.randn(40, 4, generator=g, dtype=D)

    def run():
        a_ = a.clone().requires_grad_()
        Q_ = Q.clone().requires_grad_()
        w = convex_aggregate(a_, Q_).weights
        (w * torch.arange(4, dtype=D)).sum().backward()
        return w, a_.grad, Q_.grad

    one = run()
    monkeypatch.setattr(small, "CHUNK", 6)
    many = run()
    for p, q in zip(one, many):
        torch.testing.assert_close(p, q, atol=1e-13, rtol=0)
