"""A Nash equilibrium of a nondegenerate bimatrix game, differentiable w.r.t. its payoffs.

On the supports ``I`` (rows) and ``J`` (columns) of an equilibrium ``(x, y)`` of
a nondegenerate game (``|I| = |J|``), the equilibrium is the solution of the
indifference conditions (Nash 1951; Mangasarian 1964)

    (A y)_i = u  (i in I),   x_i = 0  (i not in I),   1^T x = 1,
    (B^T x)_j = v (j in J),  y_j = 0  (j not in J),   1^T y = 1 ,

a square system in ``z = (x, y, u, v)`` whose Jacobian is nonsingular for a
nondegenerate game. Small payoff changes keep the supports, so the equilibrium
is a smooth function of ``(A, B)`` there, and its derivative is given by the
implicit function theorem on this system
(:func:`aggregation.implicit_diff.implicit_root`). ``y`` depends on ``A`` and
``x`` on ``B`` only. Degenerate games (singular systems) get zero gradients,
flagged and warned about.

The profile may come from any solver (``strategies=``); by default a simple
batched support search finds the equilibrium with the smallest support (pure
equilibria first), trying all equal-size support pairs.

References: Nash, "Non-cooperative games", Ann. Math. 1951; Mangasarian,
"Equilibrium points of bimatrix games", J. SIAM 1964; von Stengel, "Computing
equilibria for two-person games", Handbook of Game Theory 3 (2002).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import torch
from torch import Tensor

from ...implicit_diff import implicit_root
from ...tolerance import resolve_tol
from ...validation import as_tensor, compute_dtype, describe
from ..game import bimatrix_pair

__all__ = ["BimatrixNashResult", "differentiable_bimatrix_nash", "support_search"]

MAX_SEARCH_ACTIONS = 10


@dataclass(frozen=True)
class BimatrixNashResult:
    """An equilibrium ``(x, y)`` per game, attached to the graph of ``(A, B)``.

    Attributes:
        strategies: ``(x (*batch, m), y (*batch, n))``.
        values: ``(*batch, 2)`` the equilibrium payoffs ``(u, v)``.
        regret: ``(*batch, 2)`` per-player regret of the returned profile.
        converged: ``(*batch,)`` regret ``<= tol`` and a nonsingular indifference
            system (only then are gradients nonzero).
        support: ``(I (*batch, m), J (*batch, n))`` bool supports used.
        tol: the regret tolerance.
    """

    strategies: tuple[Tensor, Tensor]
    values: Tensor
    regret: Tensor
    converged: Tensor
    support: tuple[Tensor, Tensor]
    tol: float
    info: dict[str, Tensor] = field(default_factory=dict)


def _indifference(I: Tensor, J: Tensor):
    """``F(z; A, B)`` for ``z = (x, y, u, v)`` of size ``m + n + 2``."""
    m, n = I.shape[-1], J.shape[-1]

    def F(z: Tensor, A: Tensor, B: Tensor) -> Tensor:
        x, y = z[..., :m], z[..., m : m + n]
        u, v = z[..., m + n : m + n + 1], z[..., m + n + 1 :]
        Ay = (A @ y.unsqueeze(-1)).squeeze(-1)  # (*batch, m)
        Bx = (B.mT @ x.unsqueeze(-1)).squeeze(-1)  # (*batch, n)
        rows = torch.where(I, Ay - u, x)
        cols = torch.where(J, Bx - v, y)
        return torch.cat([rows, x.sum(-1, keepdim=True) - 1, cols, y.sum(-1, keepdim=True) - 1], -1)

    return F


def _solve_support(A: Tensor, B: Tensor, I: Tensor, J: Tensor) -> tuple[Tensor, Tensor]:
    """Solve the indifference system on supports ``(I, J)``: ``z``, ``ok``."""
    m, n = I.shape[-1], J.shape[-1]
    batch = I.shape[:-1]
    z0 = torch.zeros(*batch, m + n + 2, dtype=A.dtype, device=A.device)
    F = _indifference(I, J)
    # F is affine in z: F(z) = K z - c, with c = -F(0)
    c = -F(z0, A, B)
    eye = torch.eye(m + n + 2, dtype=A.dtype, device=A.device)
    K = torch.stack([F(eye[k].expand_as(z0), A, B) + c for k in range(m + n + 2)], -1)
    z, info = torch.linalg.solve_ex(K, c.unsqueeze(-1))
    z = z.squeeze(-1)
    ok = (info == 0) & torch.isfinite(z).all(-1)
    return torch.where(ok.unsqueeze(-1), z, torch.zeros_like(z)), ok


def _regret_pair(A: Tensor, B: Tensor, x: Tensor, y: Tensor) -> Tensor:
    Ay = (A @ y.unsqueeze(-1)).squeeze(-1)
    Bx = (B.mT @ x.unsqueeze(-1)).squeeze(-1)
    r1 = Ay.amax(-1) - (x * Ay).sum(-1)
    r2 = Bx.amax(-1) - (y * Bx).sum(-1)
    return torch.stack([r1, r2], -1).clamp_min(0)


def support_search(A: Tensor, B: Tensor, tol: float) -> tuple[Tensor, Tensor, Tensor]:
    """Smallest-support equilibrium of each game by equal-size support enumeration.

    ``A``, ``B``: ``(b, m, n)`` (no graph). Returns ``x (b, m)``, ``y (b, n)`` and
    ``found (b,)``. For each support size ``k`` all ``C(m, k) C(n, k)`` pairs of
    all unresolved games are solved in one batched call; exhaustive over the
    ``C(m+n, m) - 1`` equal-size pairs (``m, n <= 10``), so it finds an
    equilibrium of every nondegenerate game (the first in lexicographic order
    among those of the smallest support size).
    """
    b, m, n = A.shape
    x = A.new_zeros(b, m)
    y = A.new_zeros(b, n)
    found = torch.zeros(b, dtype=torch.bool, device=A.device)
    for k in range(1, min(m, n) + 1):
        todo = (~found).nonzero().squeeze(-1)
        if todo.numel() == 0:
            break
        rows = torch.tensor(list(combinations(range(m), k)), device=A.device)  # (R, k)
        cols = torch.tensor(list(combinations(range(n), k)), device=A.device)  # (Cc, k)
        I = torch.zeros(len(rows), m, dtype=torch.bool, device=A.device)
        I[torch.arange(len(rows), device=A.device).unsqueeze(-1), rows] = True
        J = torch.zeros(len(cols), n, dtype=torch.bool, device=A.device)
        J[torch.arange(len(cols), device=A.device).unsqueeze(-1), cols] = True
        P = len(rows) * len(cols)
        Ip = I.repeat_interleave(len(cols), 0)  # (P, m)
        Jp = J.repeat(len(rows), 1)  # (P, n)
        t = todo.numel()
        Ai = A[todo].unsqueeze(1).expand(t, P, m, n)
        Bi = B[todo].unsqueeze(1).expand(t, P, m, n)
        z, ok = _solve_support(Ai, Bi, Ip.expand(t, P, m), Jp.expand(t, P, n))
        xi = torch.where(Ip, z[..., :m], 0.0)
        yi = torch.where(Jp, z[..., m : m + n], 0.0)
        ok = ok & (xi >= -1e-12).all(-1) & (yi >= -1e-12).all(-1)
        xi, yi = xi.clamp_min(0), yi.clamp_min(0)
        ok = ok & (_regret_pair(Ai, Bi, xi, yi).amax(-1) <= tol)  # (t, P)
        hit = ok.any(-1)
        first = ok.to(torch.int64).argmax(-1)  # the first equilibrium pair
        sel = torch.arange(t, device=A.device)
        games = todo[hit]
        x[games] = xi[sel, first][hit]
        y[games] = yi[sel, first][hit]
        found[games] = True
    return x, y, found


def differentiable_bimatrix_nash(
    A: Any,
    B: Any,
    *,
    strategies: Sequence[Any] | None = None,
    tol: float | None = None,
) -> BimatrixNashResult:
    """A Nash equilibrium of each bimatrix game, differentiable w.r.t. ``A`` and ``B``.

    Args:
        A, B: ``(*batch, m, n)`` payoffs of the row and column player (batch
            shapes broadcast); tensors that require grad get gradients.
        strategies: optional equilibrium ``(x, y)`` from any solver (shapes
            ``(*batch, m)`` and ``(*batch, n)``); its supports
            ``{x_i > sqrt(eps)}``, ``{y_j > sqrt(eps)}`` define the system, which
            is re-solved exactly. Default: :func:`support_search`
            (``m, n <= 10``).
        tol: regret tolerance (payoff units) behind ``converged``; None means
            :func:`~aggregation.default_tol` of the compute dtype (1e-9 in
            float64, 1e-5 in float32).

    Returns:
        :class:`BimatrixNashResult`; ``strategies`` carry the graph.

    Raises:
        ValueError: shapes, NaN/inf, ``m`` or ``n`` above 10 without ``strategies``.

    Example:
        >>> import torch
        >>> A = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64, requires_grad=True)
        >>> out = differentiable_bimatrix_nash(A, -A)  # matching pennies
        >>> out.strategies[0]
        tensor([0.5000, 0.5000], dtype=torch.float64, grad_fn=<SliceBackward0>)
    """
    A_t, B_t, batch = bimatrix_pair(A, B)
    m, n = A_t.shape[-2:]
    dtype = compute_dtype(torch.promote_types(A_t.dtype, B_t.dtype))
    tol = resolve_tol(tol, dtype)
    with torch.no_grad():
        Af = A_t.detach().to(dtype).expand(*batch, m, n).reshape(-1, m, n)
        Bf = B_t.detach().to(dtype).expand(*batch, m, n).reshape(-1, m, n)
        if strategies is None:
            if max(m, n) > MAX_SEARCH_ACTIONS:
                raise ValueError(
                    f"the internal support search handles at most {MAX_SEARCH_ACTIONS} actions "
                    f"per player; received A of shape {tuple(A_t.shape)}: pass strategies= "
                    "from a solver (e.g. aggregation.lemke_howson)"
                )
            x, y, _ = support_search(Af, Bf, tol)
        else:
            if len(strategies) != 2:
                raise ValueError(f"strategies must be a pair (x, y); received {len(strategies)}")
            xs = as_tensor(strategies[0], "strategies[0]", min_dim=1, dtype=dtype)
            ys = as_tensor(strategies[1], "strategies[1]", min_dim=1, dtype=dtype)
            if xs.shape[-1] != m or ys.shape[-1] != n:
                raise ValueError(
                    f"strategies must have shapes (*batch, {m}) and (*batch, {n}); received "
                    f"{describe(xs)} and {describe(ys)}"
                )
            x = xs.expand(*batch, m).reshape(-1, m)
            y = ys.expand(*batch, n).reshape(-1, n)
        cut = float(torch.finfo(dtype).eps) ** 0.5
        I, J = x > cut, y > cut
        z, ok = _solve_support(Af, Bf, I, J)
        xs = torch.where(I, z[:, :m], 0.0)  # exact zeros off the supports
        ys = torch.where(J, z[:, m : m + n], 0.0)
        ok = ok & (xs >= -cut).all(-1) & (ys >= -cut).all(-1) & (I.sum(-1) == J.sum(-1))
        xs, ys = xs.clamp_min(0), ys.clamp_min(0)
        regret = _regret_pair(Af, Bf, xs, ys)
        converged = ok & (regret.amax(-1) <= tol)
        z = torch.where(
            ok.unsqueeze(-1),
            torch.cat([xs, ys, z[:, m + n :]], -1),
            torch.cat([x, y, z[:, m + n :]], -1),
        )
    Ib, Jb = I.reshape(*batch, m), J.reshape(*batch, n)
    z = implicit_root(
        _indifference(Ib, Jb),
        z.reshape(*batch, m + n + 2),
        (A_t.to(dtype), B_t.to(dtype)),
        valid=converged.reshape(batch),
        name="differentiable_bimatrix_nash",
    )
    return BimatrixNashResult(
        strategies=(z[..., :m], z[..., m : m + n]),
        values=z[..., m + n :].detach(),
        regret=regret.reshape(*batch, 2),
        converged=converged.reshape(batch),
        support=(Ib, Jb),
        tol=tol,
    )
