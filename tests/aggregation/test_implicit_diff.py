"""The implicit-differentiation mechanism on problems with closed-form derivatives."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from aggregation import custom_fixed_point, custom_root, implicit_fixed_point, implicit_root
from aggregation.implicit_diff import dense_solve, jacobian_rows
from aggregation.small_linalg import solve_small

D = torch.float64


def cubic(z, a, M):
    """F(z) = M z + z^3 - a (a strictly monotone map for M positive definite)."""
    return (M @ z.unsqueeze(-1)).squeeze(-1) + z**3 - a


def newton(a, M, steps=25):
    z = torch.zeros(torch.broadcast_shapes(a.shape, M.shape[:-1]), dtype=a.dtype)
    for _ in range(steps):
        J = M + torch.diag_embed(3 * z**2)
        z = z - solve_small(J, cubic(z, a, M))[0]
    return z


def _params():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 3, generator=g, dtype=D, requires_grad=True)
    M = (0.3 * torch.randn(3, 3, generator=g, dtype=D) + 2 * torch.eye(3, dtype=D)).requires_grad_()
    return a, M


def _small_transpose_solve(J, v):
    return solve_small(J, v, transpose=True)


def test_custom_root_gradcheck_and_gradgradcheck_with_broadcast_params():
    a, M = _params()  # M (3, 3) is shared by the 5 batch elements
    assert gradcheck(custom_root(cubic)(newton), (a, M))  # default: pivoted LU
    solver = custom_root(cubic, linear_solve=_small_transpose_solve)(newton)
    assert gradcheck(solver, (a, M))
    assert gradgradcheck(solver, (a, M))


def test_implicit_equals_unrolled_newton():
    a, M = _params()
    z_imp = custom_root(cubic)(newton)(a, M)
    z_unr = newton(a, M)  # autograd through every Newton step
    v = torch.randn_like(z_imp)
    g_imp = torch.autograd.grad((z_imp * v).sum(), (a, M))
    g_unr = torch.autograd.grad((z_unr * v).sum(), (a, M))
    for x, y in zip(g_imp, g_unr):
        torch.testing.assert_close(x, y, atol=1e-10, rtol=0)


def test_fixed_point_of_a_contraction():
    """z = tanh(W z + b): implicit fixed point vs unrolled iteration."""
    g = torch.Generator().manual_seed(1)
    W = (0.4 * torch.randn(4, 4, generator=g, dtype=D)).requires_grad_()
    b = torch.randn(6, 4, generator=g, dtype=D, requires_grad=True)

    def T(z, W, b):
        return torch.tanh((W @ z.unsqueeze(-1)).squeeze(-1) + b)

    def iterate(W, b, steps=200):
        z = torch.zeros_like(b)
        for _ in range(steps):
            z = T(z, W, b)
        return z

    solver = custom_fixed_point(T)(iterate)
    assert gradcheck(solver, (W, b))
    with torch.no_grad():
        z = iterate(W, b)
    z_imp = implicit_fixed_point(T, z, (W, b))
    z_unr = iterate(W, b)
    g_imp = torch.autograd.grad(z_imp.sum(), (W, b))
    g_unr = torch.autograd.grad(z_unr.sum(), (W, b))
    for x, y in zip(g_imp, g_unr):
        torch.testing.assert_close(x, y, atol=1e-10, rtol=0)


def test_jacobian_rows_of_a_batch_separable_map():
    a, M = _params()
    z = torch.randn(5, 3, dtype=D)
    J = jacobian_rows(lambda z_: cubic(z_, a, M), z)
    expected = M.detach() + torch.diag_embed(3 * z**2)
    torch.testing.assert_close(J.detach(), expected)


def test_singular_and_invalid_elements_get_zero_gradient_and_one_warning():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=D, requires_grad=True)
    scale = torch.tensor([[1.0], [0.0], [2.0]], dtype=D)  # element 1: F = 0 * z - a, singular

    def F(z, a):
        return scale * z - a

    z = torch.tensor([[1.0, 2.0], [0.0, 0.0], [2.5, 3.0]], dtype=D)
    valid = torch.tensor([True, True, False])  # element 2: "did not converge"
    out = implicit_root(F, z, (a,), valid=valid)
    torch.testing.assert_close(out, z)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out.sum().backward()
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and "2 of 3 batch elements" in messages[0]
    expected = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]], dtype=D)
    torch.testing.assert_close(a.grad, expected)


def test_dense_solve_flags_singular_systems():
    J = torch.stack([torch.eye(2, dtype=D), torch.zeros(2, 2, dtype=D)])
    u, ok = dense_solve(J, torch.ones(2, 2, dtype=D))
    assert ok.tolist() == [True, False]
    assert u[1].tolist() == [0.0, 0.0]


def test_no_graph_without_grad():
    a, M = _params()
    with torch.no_grad():
        z = newton(a, M)
    out = implicit_root(cubic, z, (a.detach(), M.detach()))
    assert not out.requires_grad


def test_bad_arguments():
    with pytest.raises(TypeError, match="solution must be a tensor"):
        implicit_root(cubic, [1.0], ())
    with pytest.raises(TypeError, match=r"params\[0\] must be a tensor"):
        implicit_root(cubic, torch.zeros(2, 3), (1.0,))
    with pytest.raises(ValueError, match="valid must have the solution's batch shape"):
        implicit_root(cubic, torch.zeros(2, 3), (), valid=torch.ones(3, dtype=torch.bool))
