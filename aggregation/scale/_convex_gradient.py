"""Accelerated projected gradient for the convex aggregator (any L).

Maximises ``a^T w - 1/2 w^T Q w`` over the simplex by FISTA (Beck & Teboulle
2009) with gradient-based adaptive restart (O'Donoghue & Candes 2015), step
``1/||Q||_inf`` (an upper bound on the largest eigenvalue of the symmetric Q),
and the sort-based Euclidean projection onto the simplex
(:func:`aggregation.project_simplex`). The iterate is *polished*: the KKT
system is solved on its support ``{w_l > 0}`` (pivoted LU), and the polished
point is kept where its KKT residual is smaller. Polishing is tried at every
convergence check, so the iteration stops as soon as the optimal support has
been identified (finite termination in practice).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..simplex import project_simplex
from ..small_linalg import solve_small
from .active_set import kkt_residual

__all__ = ["projected_gradient", "support_multiplier"]


def support_multiplier(Q: Tensor, a: Tensor, w: Tensor, S: Tensor) -> Tensor:
    """Least-squares multiplier ``nu = mean_{l in S} (a - Q w)_l`` ``(B,)``."""
    g = a - (Q @ w.unsqueeze(-1)).squeeze(-1)
    sf = S.to(w.dtype)
    return (g * sf).sum(-1) / sf.sum(-1).clamp_min(1)


def _polish(Q: Tensor, a: Tensor, present: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Solve the KKT system on ``S = {w > 0}``; returns candidate ``w``, ``nu``."""
    L = a.shape[-1]
    S = present & (w > 0)
    Sf = S.to(a.dtype)
    eye = torch.eye(L, dtype=a.dtype, device=a.device)
    M = torch.where(S.unsqueeze(-1), Q, eye)
    rhs = torch.stack([a * Sf, Sf], -1)
    if L <= 8:  # positive definite support block: unpivoted elimination is exact
        X, solved = solve_small(M, rhs)
    else:
        X, info = torch.linalg.solve_ex(M, rhs)
        solved = info == 0
    y, z = X[..., 0], X[..., 1]
    nu = (y.sum(-1) - 1) / z.sum(-1)
    wp = (y - nu.unsqueeze(-1) * z) * Sf
    ok = solved & torch.isfinite(wp).all(-1) & (wp >= 0).all(-1)
    return torch.where(ok.unsqueeze(-1), wp, w), torch.where(ok, nu, torch.zeros_like(nu))


def projected_gradient(
    Q: Tensor, a: Tensor, present: Tensor, tol: float, max_iter: int, check_every: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """FISTA + polish on a flat batch (no graph); ``Q`` ``(B, L, L)`` symmetric.

    Returns ``w (B, L)``, ``nu (B,)``, ``iterations (B,)``, ``residual (B,)``,
    ``polished (B,)`` bool.
    """
    B, L = a.shape
    eta = 1.0 / Q.abs().sum(-1).amax(-1, keepdim=True)  # (B, 1)
    pf = present.to(a.dtype)
    w = pf / pf.sum(-1, keepdim=True)
    w_prev = w
    theta = torch.ones(B, 1, dtype=a.dtype, device=a.device)
    first = torch.full((B,), max_iter, dtype=torch.int64, device=a.device)
    done = torch.zeros(B, dtype=torch.bool, device=a.device)
    for t in range(1, max_iter + 1):
        theta_next = 0.5 * (1 + (1 + 4 * theta.square()).sqrt())
        y = w + ((theta - 1) / theta_next) * (w - w_prev)
        grad = a - (Q @ y.unsqueeze(-1)).squeeze(-1)  # ascent direction
        w_new = project_simplex(y + eta * grad, present)
        restart = ((y - w_new) * (w_new - w)).sum(-1, keepdim=True) > 0
        theta = torch.where(restart, torch.ones_like(theta_next), theta_next)
        w_prev = torch.where(restart, w_new, w)
        w = w_new
        if t % check_every == 0 or t == max_iter:
            # done once the iterate, or its polished version, satisfies KKT
            nu = support_multiplier(Q, a, w, present & (w > 0))
            wp, nup = _polish(Q, a, present, w)
            res = torch.minimum(
                kkt_residual(Q, a, w, nu, present), kkt_residual(Q, a, wp, nup, present)
            )
            now = res <= tol
            first = torch.where(now & ~done, torch.full_like(first, t), first)
            done = done | now
            if bool(done.all()):
                break
    nu = support_multiplier(Q, a, w, present & (w > 0))
    residual = kkt_residual(Q, a, w, nu, present)
    wp, nup = _polish(Q, a, present, w)
    res_p = kkt_residual(Q, a, wp, nup, present)
    use = res_p < residual
    w = torch.where(use.unsqueeze(-1), wp, w)
    nu = torch.where(use, nup, nu)
    residual = torch.where(use, res_p, residual)
    return w, nu, first, residual, use
