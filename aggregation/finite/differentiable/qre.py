"""The logit quantal response equilibrium at a fixed precision, differentiable.

At precisions ``lambda_i >= 0`` the logit QRE of a finite game is a fixed point

    sigma_i = softmax(lambda_i * v_i(sigma)),     v_i(a) = u_i(a, sigma_-i) ,

(McKelvey & Palfrey 1995). Its derivative with respect to the payoffs ``P``
(and the precisions, when they are a tensor that requires grad) follows from
the implicit function theorem applied to

    F(sigma; P, lambda) = sigma - softmax(lambda * v(sigma; P))   (all players stacked),

through :func:`aggregation.implicit_diff.implicit_root` (``J = I - dT/dsigma``,
formed by autograd, solved by pivoted LU). ``J`` is singular only at the turning
points of the QRE correspondence, where the equilibrium is not a smooth
function of the payoffs; those elements get zero gradients and a warning.

The forward pass either traces the principal branch from the centroid
(:func:`aggregation.logit_qre_at`), or, given ``strategies``, refines them by
Newton's method on ``F`` (the QRE on the branch through that profile).

References: McKelvey & Palfrey, "Quantal response equilibria for normal form
games", Games Econ. Behav. 1995; Turocy, Games Econ. Behav. 2005; Blondel et
al., NeurIPS 2022 (implicit differentiation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ...implicit_diff import implicit_root, jacobian_rows
from ...small_linalg import solve_small
from ...tolerance import resolve_tol
from ...validation import as_tensor, check_int, describe
from ..exact.logit_qre import QuantalResponseResult, logit_qre_at
from ..game import NormalFormGame, payoff_action_values, payoff_regret, validate_profile

__all__ = ["differentiable_logit_qre"]


def _split(z: Tensor, actions: Sequence[int]) -> list[Tensor]:
    return list(torch.split(z, list(actions), dim=-1))


def _qre_map(actions: Sequence[int], n: int):
    """``F(z; P, lam) = z - softmax(lam_i v_i)`` with ``z`` the stacked profile."""

    def F(z: Tensor, payoffs: Tensor, lam: Tensor) -> Tensor:
        sigma = _split(z, actions)
        values = payoff_action_values(payoffs, sigma, n)
        target = [torch.softmax(lam[..., i : i + 1] * v, dim=-1) for i, v in enumerate(values)]
        target = [t.expand(*z.shape[:-1], t.shape[-1]) for t in target]
        return z - torch.cat(target, dim=-1)

    return F


def _newton(F, z: Tensor, payoffs: Tensor, lam: Tensor, steps: int, tol: float) -> Tensor:
    """Damped Newton on ``F(z) = 0`` (profile kept positive), no graph."""
    for _ in range(steps):
        r = F(z, payoffs, lam)
        if r.numel() == 0 or float(r.abs().max()) <= tol:
            break
        J = jacobian_rows(lambda z_: F(z_, payoffs, lam), z)
        step, ok = solve_small(J, r)  # falls back to pivoted LU where needed
        t = torch.ones_like(z[..., :1])
        for _ in range(20):  # backtrack to stay in the interior
            cand = z - t * step
            bad = (cand <= 0).any(-1, keepdim=True)
            if not bool(bad.any()):
                break
            t = torch.where(bad, 0.5 * t, t)
        z = torch.where(ok.unsqueeze(-1), (z - t * step).clamp_min(1e-300), z)
    return z


def differentiable_logit_qre(
    game: NormalFormGame,
    lam: Any,
    *,
    strategies: Sequence[Any] | None = None,
    tol: float | None = None,
    newton_steps: int = 50,
) -> QuantalResponseResult:
    """The logit QRE at precisions ``lam``, differentiable w.r.t. payoffs and ``lam``.

    Args:
        game: a :class:`~aggregation.NormalFormGame` whose ``payoffs`` may
            require grad (build it from a tensor with ``requires_grad``).
        lam: precision(s) ``>= 0``: a number or a tensor broadcastable to
            ``(*batch, N)`` (per player); a tensor that requires grad gets
            gradients too.
        strategies: optional profile (N tensors ``(*batch, A_i)``, interior) to
            start Newton's method from; default: trace the principal branch.
        tol: fixed-point residual tolerance behind ``converged`` (and the
            Newton stopping rule); None means :func:`~aggregation.default_tol`
            of the compute dtype (1e-9 in float64, 1e-5 in float32).
        newton_steps: Newton steps used to refine the profile.

    Returns:
        A :class:`~aggregation.QuantalResponseResult` whose ``strategies`` are
        attached to the graph of ``game.payoffs`` and ``lam`` (elements that did
        not converge get zero gradients, with a warning).

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame
        >>> A = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
        >>> game = NormalFormGame.bimatrix(A, -A)
        >>> out = differentiable_logit_qre(game, 1.0)
        >>> bool(out.converged)
        True
        >>> out.strategies[0][0].backward()  # how the row player's first probability moves
        >>> bool(A.grad.abs().max() > 0)
        True
    """
    if not isinstance(game, NormalFormGame):
        raise TypeError(f"game must be a NormalFormGame; received {describe(game)}")
    newton_steps = check_int(newton_steps, "newton_steps", minimum=0)
    n, actions, batch = game.num_players, game.num_actions, game.batch_shape
    payoffs = game.payoffs
    dtype = torch.promote_types(payoffs.dtype, torch.float32)
    tol = resolve_tol(tol, dtype)
    lam_t = as_tensor(lam, "lam", dtype=dtype, device=payoffs.device)
    low = float(lam_t.detach().min()) if lam_t.numel() else 0.0
    if low < 0:
        raise ValueError(f"lam must be >= 0; received a minimum of {low:.3g}")
    try:
        lam_full = lam_t.expand(*batch, n)
    except RuntimeError:
        raise ValueError(
            f"lam must be a number or broadcastable to (*batch, N) = {(*batch, n)}; "
            f"received shape {tuple(lam_t.shape)}"
        ) from None
    F = _qre_map(actions, n)
    with torch.no_grad():
        P = payoffs.detach().to(dtype)
        if strategies is None:
            traced = logit_qre_at(game, lam_full.detach(), tol=tol)
            start = [s.to(dtype) for s in traced.strategies]
            steps = traced.iterations
        else:
            start = list(validate_profile(game, strategies))
            start = [s.to(dtype).expand(*batch, a) for s, a in zip(start, actions)]
            steps = torch.zeros(batch, dtype=torch.int64, device=P.device)
        z = torch.cat(start, dim=-1)
        z = _newton(F, z, P, lam_full.detach(), newton_steps, tol)
        residual = F(z, P, lam_full.detach()).abs().amax(-1)
        converged = residual <= tol
    z = implicit_root(
        F,
        z,
        (payoffs.to(dtype), lam_full),
        valid=converged,
        name="differentiable_logit_qre",
    )
    sigma = _split(z, actions)
    with torch.no_grad():
        regret = payoff_regret(P, [s.detach() for s in sigma], n)
    return QuantalResponseResult(
        strategies=tuple(sigma),
        lam=lam_full.detach(),
        residual=residual,
        converged=converged,
        regret=regret,
        iterations=steps,
        tol=tol,
    )
