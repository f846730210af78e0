"""Differentiable equilibria of finite games: logit QRE and bimatrix Nash equilibria."""

from __future__ import annotations

import nashpy
import numpy as np
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from aggregation import NormalFormGame, differentiable_bimatrix_nash, differentiable_logit_qre

D = torch.float64


def _qre(P, lam, **kw):
    return torch.cat(
        differentiable_logit_qre(NormalFormGame(P, num_players=2), lam, **kw).strategies, -1
    )


def test_qre_is_a_fixed_point_and_uniform_at_zero_precision():
    g = torch.Generator().manual_seed(0)
    P = torch.randn(3, 2, 2, 3, generator=g, dtype=D)
    game = NormalFormGame(P, num_players=2)
    out = differentiable_logit_qre(game, 1.3)
    assert bool(out.converged.all()) and float(out.residual.max()) <= 1e-10
    values = game.action_values(out.strategies)
    for s, v in zip(out.strategies, values):
        torch.testing.assert_close(s, torch.softmax(1.3 * v, -1), atol=1e-10, rtol=0)
    zero = differentiable_logit_qre(game, 0.0)
    torch.testing.assert_close(zero.strategies[1], torch.full((3, 3), 1 / 3, dtype=D))


def test_qre_gradcheck_wrt_payoffs_and_precision():
    g = torch.Generator().manual_seed(1)
    P = torch.randn(2, 2, 2, 3, generator=g, dtype=D, requires_grad=True)
    lam = torch.tensor([1.5, 0.7], dtype=D, requires_grad=True)  # per player, broadcast
    assert gradcheck(_qre, (P, lam))
    small = P[:1, :, :, :2].detach().clone().requires_grad_()
    assert gradgradcheck(_qre, (small, lam))


def test_qre_from_given_strategies_equals_the_traced_branch():
    g = torch.Generator().manual_seed(2)
    P = torch.randn(2, 2, 3, generator=g, dtype=D)
    game = NormalFormGame(P, num_players=2)
    traced = differentiable_logit_qre(game, 0.8)
    start = [
        s + 0.01 * torch.tensor([1.0, -1.0] + [0.0] * (s.shape[-1] - 2), dtype=D)
        for s in traced.strategies
    ]
    again = differentiable_logit_qre(game, 0.8, strategies=start)
    for s, t in zip(again.strategies, traced.strategies):
        torch.testing.assert_close(s, t, atol=1e-10, rtol=0)


def test_qre_bad_input():
    game = NormalFormGame(torch.zeros(2, 2, 2), num_players=2)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        differentiable_logit_qre(game, -1.0)
    with pytest.raises(ValueError, match="lam must be a number or broadcastable"):
        differentiable_logit_qre(game, torch.ones(3))
    with pytest.raises(TypeError, match="game must be a NormalFormGame"):
        differentiable_logit_qre(torch.zeros(2, 2, 2), 1.0)


def test_bimatrix_matches_nashpy_and_closed_form_derivative():
    # a fully mixed 2x2 game: y1 = (A22 - A12) / (A11 - A12 - A21 + A22)
    A = torch.tensor([[3.0, 0.0], [1.0, 2.0]], dtype=D, requires_grad=True)
    B = torch.tensor([[1.0, 2.0], [3.0, 0.0]], dtype=D, requires_grad=True)
    out = differentiable_bimatrix_nash(A, B)
    x, y = out.strategies
    ref = list(nashpy.Game(A.detach().numpy(), B.detach().numpy()).support_enumeration())
    assert len(ref) == 1
    np.testing.assert_allclose(x.detach().numpy(), ref[0][0], atol=1e-12)
    np.testing.assert_allclose(y.detach().numpy(), ref[0][1], atol=1e-12)

    def y1(A):
        return (A[1, 1] - A[0, 1]) / (A[0, 0] - A[0, 1] - A[1, 0] + A[1, 1])

    (grad_A,) = torch.autograd.grad(y[0], A, retain_graph=True)
    (expected,) = torch.autograd.grad(y1(A), A)
    torch.testing.assert_close(grad_A, expected)
    (grad_B,) = torch.autograd.grad(y[0], B, allow_unused=True)
    assert grad_B is None or float(grad_B.abs().max()) == 0.0  # y depends on A only


def test_bimatrix_gradcheck_batched_with_broadcast_B():
    g = torch.Generator().manual_seed(3)
    A = torch.randn(3, 2, 3, generator=g, dtype=D, requires_grad=True)
    B = torch.randn(2, 3, generator=g, dtype=D, requires_grad=True)  # shared

    def f(A, B):
        return torch.cat(differentiable_bimatrix_nash(A, B).strategies, -1)

    assert bool(differentiable_bimatrix_nash(A, B).converged.all())
    assert gradcheck(f, (A, B))
    assert gradgradcheck(f, (A, B))


def test_bimatrix_from_given_strategies_and_degenerate_games():
    A = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=D, requires_grad=True)
    out = differentiable_bimatrix_nash(
        A, -A, strategies=(torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5]))
    )
    torch.testing.assert_close(out.strategies[0].detach(), torch.tensor([0.5, 0.5], dtype=D))
    # a degenerate game (a column of ties): the support system is singular
    Z = torch.zeros(2, 2, dtype=D, requires_grad=True)
    deg = differentiable_bimatrix_nash(
        Z, Z, strategies=(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]))
    )
    assert not bool(deg.converged)
    with pytest.warns(RuntimeWarning, match="gradients are set to zero"):
        deg.strategies[0].sum().backward()
    assert float(Z.grad.abs().max()) == 0.0


def test_bimatrix_bad_input():
    with pytest.raises(ValueError, match="A and B must have the same action shape"):
        differentiable_bimatrix_nash(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at most 10 actions"):
        differentiable_bimatrix_nash(torch.zeros(11, 2), torch.zeros(11, 2))
    with pytest.raises(ValueError, match="A must be finite"):
        differentiable_bimatrix_nash(torch.full((2, 2), float("nan")), torch.zeros(2, 2))


def test_float32_defaults_converge():
    A = torch.tensor([[3.0, 0.0], [1.0, 2.0]], requires_grad=True)
    B = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    nash = differentiable_bimatrix_nash(A, B)
    assert bool(nash.converged) and nash.strategies[0].dtype == torch.float32
    torch.testing.assert_close(nash.strategies[1].detach(), torch.tensor([0.5, 0.5]))
    qre = differentiable_logit_qre(NormalFormGame.bimatrix(A, -A), 2.0)
    assert bool(qre.converged) and qre.tol == 1e-5
    qre.strategies[0][0].backward()
    assert bool(torch.isfinite(A.grad).all()) and float(A.grad.abs().max()) > 0
