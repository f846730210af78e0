"""Gradients of the exact bimatrix solvers' equilibria against finite differences.

Every solver that returns mixed equilibria of bimatrix games attaches the
implicit derivative on the support (``differentiable_bimatrix_nash``) when the
payoffs require grad; the values are unchanged.
"""

import warnings

import pytest
import torch

from aggregation import (
    NormalFormGame,
    differentiable_bimatrix_nash,
    lemke_howson,
    lemke_howson_enumeration,
    linear_program,
    support_enumeration,
    vertex_enumeration,
)

D = torch.float64
SETS = [support_enumeration, vertex_enumeration, lemke_howson_enumeration]


def _objective(solver, payoffs: torch.Tensor, w: tuple[torch.Tensor, torch.Tensor]):
    out = solver(NormalFormGame(payoffs, num_players=2))
    return (out.strategies[0] * w[0]).sum() + (out.strategies[1] * w[1]).sum(), out


def _finite_differences(solver, payoffs, w, eps=1e-6):
    fd = torch.zeros_like(payoffs)
    with torch.no_grad():
        for i in range(payoffs.numel()):
            step = torch.zeros(payoffs.numel(), dtype=D)
            step[i] = eps
            step = step.view_as(payoffs)
            up, _ = _objective(solver, payoffs + step, w)
            down, _ = _objective(solver, payoffs - step, w)
            fd.view(-1)[i] = (up - down) / (2 * eps)
    return fd


#: Rock-paper-scissors: perturbed, its unique equilibrium stays fully mixed.
RPS = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], dtype=D)


def _mixed_games(seed: int, batch: int = 3) -> torch.Tensor:
    """``(batch, 2, 3, 3)`` nondegenerate games: random ones and perturbed RPS."""
    gen = torch.Generator().manual_seed(seed)
    cyclic = torch.stack([RPS, -RPS]) + 0.2 * torch.randn(batch, 2, 3, 3, dtype=D, generator=gen)
    return torch.cat([cyclic, torch.randn(batch, 2, 3, 3, dtype=D, generator=gen)])


@pytest.mark.parametrize("solver", [*SETS, lemke_howson])
@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_match_finite_differences(solver, seed):
    gen = torch.Generator().manual_seed(seed + 10)
    payoffs = _mixed_games(seed).requires_grad_(True)
    out = solver(NormalFormGame(payoffs, num_players=2))
    w = tuple(torch.randn(s.shape, dtype=D, generator=gen) for s in out.strategies)
    value, out = _objective(solver, payoffs, w)
    assert out.strategies[0].requires_grad and out.strategies[1].requires_grad
    (grad,) = torch.autograd.grad(value, payoffs)
    fd = _finite_differences(solver, payoffs.detach(), w)
    assert float(grad.abs().max()) > 1e-3  # mixed equilibria move with the payoffs
    torch.testing.assert_close(grad, fd, atol=1e-6, rtol=1e-5)


def test_values_are_those_of_the_detached_solver():
    gen = torch.Generator().manual_seed(4)
    payoffs = torch.randn(5, 2, 4, 4, dtype=D, generator=gen)
    for solver in [*SETS, lemke_howson]:
        plain = solver(NormalFormGame(payoffs, num_players=2))
        tracked = solver(NormalFormGame(payoffs.clone().requires_grad_(True), num_players=2))
        for a, b in zip(plain.strategies, tracked.strategies):
            assert torch.equal(a, b.detach())
        with torch.no_grad():  # grad mode off: nothing attached
            off = solver(NormalFormGame(payoffs.clone().requires_grad_(True), num_players=2))
        assert not off.strategies[0].requires_grad


def test_zero_sum_lp_gradient_matches_the_differentiable_entry_point():
    gen = torch.Generator().manual_seed(2)
    A = torch.randn(4, 3, 3, dtype=D, generator=gen).requires_grad_(True)
    res = linear_program(NormalFormGame.zero_sum(A))
    ref = differentiable_bimatrix_nash(A, -A, strategies=[s.detach() for s in res.strategies])
    w = torch.randn(4, 3, dtype=D, generator=gen)
    (g1,) = torch.autograd.grad((res.strategies[0] * w).sum(), A)
    (g2,) = torch.autograd.grad((ref.strategies[0] * w).sum(), A)
    torch.testing.assert_close(g1, g2, atol=1e-12, rtol=0)


def test_float32_gradients_follow_float64():
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(2, 2, 3, 3, dtype=D, generator=gen).float()
    w = torch.randn(2, 3, dtype=D, generator=gen)
    grads = []
    for dtype in (torch.float32, D):
        payoffs = base.to(dtype).requires_grad_(True)
        out = lemke_howson(NormalFormGame(payoffs, num_players=2))
        (g,) = torch.autograd.grad((out.strategies[0] * w.to(dtype)).sum(), payoffs)
        assert g.dtype == dtype
        grads.append(g.double())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-4)


def test_degenerate_equilibria_get_zero_gradient_and_a_warning():
    # a degenerate game with an extreme equilibrium on supports of sizes 1 and 2:
    # the indifference system is singular there, the equilibrium not locally unique
    A = [[1.0, -1.0, 1.0], [-1.0, 0.0, -1.0]]
    B = [[0.0, 0.0, 0.0], [-1.0, 1.0, 1.0]]
    payoffs = torch.tensor([A, B], dtype=D, requires_grad=True)
    eqs = vertex_enumeration(NormalFormGame(payoffs, num_players=2))
    sizes = [(int((x > 0).sum()), int((y > 0).sum())) for x, y in zip(*eqs.strategies)]
    k = sizes.index((1, 2))
    with pytest.warns(RuntimeWarning, match="set to zero"):
        (g,) = torch.autograd.grad(
            eqs.strategies[1][k] @ torch.tensor([0.0, 1.0, 2.0], dtype=D), payoffs
        )
    assert torch.equal(g, torch.zeros_like(g))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a set without padding or degeneracy: no warning
        pennies = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]], [[-1.0, 1.0], [1.0, -1.0]]], dtype=D)
        pennies.requires_grad_(True)
        eqs = support_enumeration(NormalFormGame(pennies, num_players=2))
        (g,) = torch.autograd.grad(eqs.strategies[0][0, 0], pennies)
    assert float(g.abs().max()) > 0
