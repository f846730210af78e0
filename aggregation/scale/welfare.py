"""Welfare of the scale game, its social optimum and the price of anarchy.

Welfare is the players' summed utility (see :class:`aggregation.ScaleGame`):

    W(x) = sum_l u_l(x) = a^T x - 1/2 x^T M x,      M = C + C^T - diag(C) .

The *social optimum* is ``sup_{x >= 0} W(x)``. It is finite and attained for
every ``a`` iff ``M`` is strictly copositive (``x^T M x > 0`` for ``x >= 0``,
``x != 0``), which holds for example when ``M`` is positive definite or when
every entry of ``C`` is nonnegative with a positive diagonal. If some
``v >= 0`` has ``v^T M v < 0`` (M not copositive), ``W(t v) -> +inf``: the
optimum does not exist. Decided per element by Kaplan's criterion (``L <= 8``):
M is strictly copositive iff no principal submatrix has an eigenvector
``v > 0`` with eigenvalue ``<= 0``; copositive iff none with eigenvalue ``< 0``.
When M is strictly copositive the maximiser is a KKT point, i.e. a solution of
LCP(M, -a), and all of those are enumerated (``2^L`` supports) to take the best.

The *price of anarchy* is ``W(optimum) / W(worst Nash equilibrium)`` (Koutsoupias
& Papadimitriou 1999), the worst over all equilibria (enumerated; unique when C
is a P-matrix), and the *price of stability* uses the best one. Every
equilibrium utility is ``>= 0`` (a player can always play 0), so ``W(Nash) >= 0``
and the ratio is in ``[1, inf]`` (``inf`` when ``W(Nash) = 0 < W(optimum)``;
``1`` when both are 0).

For ``L > 8`` the optimum is computed only where M is positive definite (and
the equilibrium only where the game is monotone), by the potential solver.

References: Koutsoupias & Papadimitriou, "Worst-case equilibria", STACS 1999;
Kaplan, "A test for copositive matrices", Linear Algebra Appl. 313 (2000);
Cottle, Pang & Stone, *The Linear Complementarity Problem* (1992), 3.8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..simplex import all_supports
from ..validation import check_nonnegative, describe
from .exact import MAX_EXACT_PLAYERS, enumerate_lcp
from .extragradient import solve_extragradient
from .game import ScaleGame
from .potential import solve_potential

__all__ = ["PriceOfAnarchyResult", "STATUS", "price_of_anarchy", "welfare", "welfare_matrix"]

#: ``status`` codes of :class:`PriceOfAnarchyResult`.
STATUS = {
    0: "defined",
    1: "unbounded: M is not copositive, welfare has no maximum",
    2: "undetermined: M copositive but not strictly (or L > 8 and M not positive definite)",
    3: "no Nash equilibrium found",
}


def welfare_matrix(C: Tensor) -> Tensor:
    """``M = C + C^T - diag(C)`` ``(*batch, L, L)``."""
    return C + C.mT - torch.diag_embed(C.diagonal(dim1=-2, dim2=-1))


def welfare(game: ScaleGame, x: Any) -> Tensor:
    """``(*batch,)`` welfare ``W(x) = sum_l u_l(x) = a^T x - 1/2 x^T M x``."""
    if not isinstance(game, ScaleGame):
        raise TypeError(f"game must be a ScaleGame; received {describe(game)}")
    return game.utilities(x).sum(-1)


@dataclass(frozen=True)
class PriceOfAnarchyResult:
    """Welfare comparison per batch element (all ``(*batch,)`` unless stated).

    Attributes:
        ratio: ``W(optimum) / W(worst equilibrium)`` in ``[1, inf]``; ``inf``
            where not ``defined`` (never NaN).
        price_of_stability: ``W(optimum) / W(best equilibrium)``, same conventions.
        welfare_nash: welfare of the worst equilibrium (0 where none was found).
        welfare_best_nash: welfare of the best equilibrium.
        welfare_optimum: ``max_{x >= 0} W(x)`` (``inf`` where unbounded or
            undetermined).
        x_nash: ``(*batch, L)`` the worst equilibrium; x_optimum: ``(*batch, L)``.
        num_equilibria: equilibria found (``L <= 8``: all, by enumeration).
        defined: True iff the optimum exists and an equilibrium was found.
        status: int64 code, see :data:`STATUS`.
    """

    ratio: Tensor
    price_of_stability: Tensor
    welfare_nash: Tensor
    welfare_best_nash: Tensor
    welfare_optimum: Tensor
    x_nash: Tensor
    x_optimum: Tensor
    num_equilibria: Tensor
    defined: Tensor
    status: Tensor
    info: dict[str, Tensor] = field(default_factory=dict)

    def describe_status(self) -> list[str]:
        """The status of every element in words (flattened batch)."""
        return [STATUS[int(s)] for s in self.status.reshape(-1).tolist()]


def _welfare_flat(a: Tensor, M: Tensor, x: Tensor) -> Tensor:
    """``(..., )`` ``a^T x - 1/2 x^T M x`` for ``x (..., L)``, broadcasting."""
    Mx = (M @ x.unsqueeze(-1)).squeeze(-1)
    return (x * (a - 0.5 * Mx)).sum(-1)


def _copositivity(
    M: Tensor, a: Tensor, present: Tensor, tol: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Kaplan's test on the present block of symmetric ``M`` ``(n, L, L)`` (scaled to 1).

    Returns ``strict (n,)`` (strictly copositive), ``negative (n,)`` (a principal
    submatrix has a positive eigenvector with a negative eigenvalue: not
    copositive, welfare unbounded) and ``grows (n,)`` (a positive eigenvector
    ``v`` with eigenvalue 0 and ``a^T v > 0``: ``W(t v) = t a^T v``, unbounded).
    """
    n, L = present.shape
    supports = all_supports(L, M.device)[1:]  # (K, L), nonempty
    S = supports.unsqueeze(0) & present.unsqueeze(1)  # (n, K, L)
    inside = (supports.unsqueeze(0) <= present.unsqueeze(1)).all(-1)  # (n, K)
    big = M.abs().sum(-1).amax(-1).view(n, 1, 1, 1) + 1.0
    eye = torch.eye(L, dtype=M.dtype, device=M.device)
    both = S.unsqueeze(-1) & S.unsqueeze(-2)
    P = torch.where(both, M.unsqueeze(1), eye * big)  # (n, K, L, L)
    lam, V = torch.linalg.eigh(P)  # (n, K, L), (n, K, L, L): columns are eigenvectors
    Sv = S.unsqueeze(-1)  # (n, K, L, 1) over eigenvector entries
    pos = ((V > tol) | ~Sv).all(-2) | ((V < -tol) | ~Sv).all(-2)  # (n, K, L) per eigenpair
    pos = pos & inside.unsqueeze(-1) & (lam < big.squeeze(-1) * 0.5)
    nonpos = pos & (lam <= tol)
    negative = pos & (lam < -tol)
    gain = (V.abs() * Sv * a.view(n, 1, L, 1)).sum(-2)  # (n, K, L): a^T |v| on S
    grows = nonpos & (gain > tol * (1 + a.abs().amax(-1)).view(n, 1, 1))
    return (
        ~nonpos.flatten(1).any(-1),
        negative.flatten(1).any(-1),
        grows.flatten(1).any(-1),
    )


def price_of_anarchy(
    game: ScaleGame | tuple[Any, Any],
    *,
    tol: float = 1e-9,
) -> PriceOfAnarchyResult:
    """Price of anarchy (and of stability) of a batch of scale games.

    Args:
        game: a :class:`~aggregation.ScaleGame`, or a pair ``(a, C)``.
        tol: eigenvalue and feasibility tolerance (relative to the scale of M)
            of the copositivity test.

    Returns:
        :class:`PriceOfAnarchyResult` (computed in float64 without a graph,
        returned in the game's compute dtype).

    Example:
        >>> import torch
        >>> from aggregation import ScaleGame
        >>> game = ScaleGame(torch.tensor([1.0, 1.0]), torch.tensor([[2.0, 1.0], [1.0, 2.0]]))
        >>> out = price_of_anarchy(game)  # a Cournot duopoly: W(Nash) = 2/9, W(opt) = 1/4
        >>> round(float(out.ratio), 4), bool(out.defined)
        (1.125, True)
    """
    if isinstance(game, tuple):
        if len(game) != 2:
            raise ValueError(
                f"game must be a ScaleGame or a pair (a, C); received {describe(game)}"
            )
        game = ScaleGame(*game)
    if not isinstance(game, ScaleGame):
        raise TypeError(f"game must be a ScaleGame or a pair (a, C); received {describe(game)}")
    tol = check_nonnegative(tol, "tol")
    L, batch = game.num_players, game.batch_shape
    out_dtype = game.compute_dtype
    with torch.no_grad():
        a, C = game.effective(torch.float64)
        a = a.expand(*batch, L).reshape(-1, L)
        C = C.expand(*batch, L, L).reshape(-1, L, L)
        present = game.present().reshape(-1, L)
        M = welfare_matrix(C)
        n = a.shape[0]
        scale = M.abs().amax((-1, -2)).clamp_min(1e-300)  # (n,)
        dev = a.device
        status = torch.zeros(n, dtype=torch.int64, device=dev)
        inf = torch.full((n,), torch.inf, dtype=torch.float64, device=dev)
        if L <= MAX_EXACT_PLAYERS:
            strict, negative, grows = _copositivity(M / scale.view(-1, 1, 1), a, present, tol)
            status = torch.where(~strict, torch.where(negative | grows, 1, 2), status)
            Xo, feas_o, _, _ = enumerate_lcp(M, a, present)
            Wo = torch.where(
                feas_o, _welfare_flat(a.unsqueeze(1), M.unsqueeze(1), Xo), -inf[:, None]
            )
            best_o = Wo.argmax(-1)
            rows = torch.arange(n, device=dev)
            x_opt = Xo[rows, best_o]
            W_opt = Wo[rows, best_o]
            Xn, feas_n, _, _ = enumerate_lcp(C, a, present)
            Wn = _welfare_flat(a.unsqueeze(1), M.unsqueeze(1), Xn)
            worst = torch.where(feas_n, Wn, inf[:, None]).argmin(-1)
            best = torch.where(feas_n, Wn, -inf[:, None]).argmax(-1)
            x_nash = Xn[rows, worst]
            W_nash, W_best = Wn[rows, worst], Wn[rows, best]
            count = feas_n.sum(-1)
        else:
            pd = torch.linalg.cholesky_ex(M)[1] == 0
            status = torch.where(pd, status, 2)
            opt = solve_potential(ScaleGame(a, M, present), tol=1e-12, differentiable=False)
            x_opt = opt.x.double()
            W_opt = _welfare_flat(a, M, x_opt)
            nash = solve_extragradient(ScaleGame(a, C, present), tol=1e-12, differentiable=False)
            x_nash = nash.x.double()
            W_nash = W_best = _welfare_flat(a, M, x_nash)
            count = nash.converged.to(torch.int64)
        status = torch.where((count == 0) & (status == 0), 3, status)
        defined = status == 0
        W_opt = torch.where(defined, W_opt, inf)
        W_nash = torch.where(count > 0, W_nash, torch.zeros_like(W_nash))
        W_best = torch.where(count > 0, W_best, torch.zeros_like(W_best))

        def ratio(num: Tensor, den: Tensor) -> Tensor:
            eps = 1e-12 * (1 + num.abs())
            r = torch.where(den > eps, num / den.clamp_min(1e-300), torch.full_like(num, torch.inf))
            r = torch.where((den <= eps) & (num <= eps), torch.ones_like(r), r)
            return torch.where(defined, r.clamp_min(1.0), inf)

        poa, pos = ratio(W_opt, W_nash), ratio(W_opt, W_best)

    def shape(t: Tensor, *tail: int) -> Tensor:
        t = t.reshape((*batch, *tail))
        return t.to(out_dtype) if t.is_floating_point() else t

    return PriceOfAnarchyResult(
        ratio=shape(poa),
        price_of_stability=shape(pos),
        welfare_nash=shape(W_nash),
        welfare_best_nash=shape(W_best),
        welfare_optimum=shape(W_opt),
        x_nash=shape(x_nash, L),
        x_optimum=shape(x_opt, L),
        num_equilibria=shape(count),
        defined=shape(defined),
        status=shape(status),
    )
