"""Exact scale-game equilibria: principal pivoting on the active set, with support enumeration.

The equilibrium solves LCP(C, -a): ``x >= 0, w = C x - a >= 0, x^T w = 0``. For
an active set (support) S the candidate is ``x_S = C_SS^{-1} a_S``, ``x = 0``
off S; it is the equilibrium iff ``x_S >= 0`` and ``w_l >= 0`` for ``l`` not in S.
There are ``2^L`` supports, so the solver does not try them all:

1. *Block principal pivoting* (Kostreva 1978; Judice & Pires 1994): start
   from ``S = {l : a_l > 0}`` (the players whose best response to nobody is
   positive), solve, and flip every infeasible index (``x_l < 0`` in S leaves,
   ``w_l < 0`` outside S enters). Typical games finish in one to three solves.
2. *Murty's least-index rule* (Murty 1974) after ``3`` block steps: flip only
   the smallest infeasible index. This terminates for every P-matrix (every
   monotone game), where the equilibrium is unique.
3. *Float64 re-solve and support enumeration* for the elements still
   unresolved after ``max_iter`` pivots (or whose support matrix was singular),
   and for float32 elements whose regret misses ``tol`` (ill-conditioned
   supports): pivoting again in float64, then, where that does not resolve
   them either, all ``2^L`` supports, each system solved with pivoted LU, the
   candidate that the certificate accepts kept (an ill-conditioned support's
   candidate, whose regret rounding could hide, is not). This makes the method
   exact for any ``C`` with ``L <= 8``: if an equilibrium exists that the
   dtype resolves, it is found (for a non-P-matrix there may be several; one
   is returned), and ``converged=False`` says when none exists. A pivot that
   meets a singular support with nothing to flip hands the element to this
   step; pivots never add an absent player.

Steps 1-2 and the enumeration of step 3 are the engine of
:mod:`aggregation.scale.active_set` (shared with the convex aggregator, which
adds the equality row): each pivot solves one ``L x L`` system per element by
unrolled elimination over the batch (:mod:`aggregation.small_linalg`), in
cache-sized chunks, and only the unresolved elements are carried to the next
pivot.

Gradients (implicit, the default) come from the KKT conditions on the final
support (:func:`aggregation.scale.active_set.attach_kkt`),
``dx_S = C_SS^{-1} (da_S - dC_S. x)``; at a degenerate solution (some
``x_l = 0 = (Cx - a)_l``) the equilibrium is only directionally differentiable
and the derivative of the branch with ``S = {l : x_l > 0}`` is returned.

References: Murty, "Note on a Bard-type scheme for solving the
complementarity problem", Opsearch 1974; Judice & Pires, "A block principal
pivoting algorithm for large-scale strictly monotone linear complementarity
problems", Comput. Oper. Res. 1994; Cottle, Pang & Stone, *The Linear
Complementarity Problem* (1992), sections 4.1-4.2.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..simplex import all_supports
from ..small_linalg import serial_ops
from ..validation import describe
from . import lcp_kernel
from ._common import Prepared, check_options, finish, prepare, wants_grad
from .active_set import (
    MAX_PLAYERS,
    active_set,
    certify_chunk,
    enumerate_supports,
    feasibility_eps,
    support_solve_graph,
)
from .game import Certificate, ScaleGame, certify_profile
from .result import ScaleGameResult

__all__ = ["MAX_EXACT_PLAYERS", "enumerate_lcp", "pivot_lcp", "solve_exact"]

MAX_EXACT_PLAYERS = MAX_PLAYERS


def pivot_lcp(
    C: Tensor,
    a: Tensor,
    present: Tensor | None,
    max_iter: int,
    tol: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Certificate]:
    """Principal pivoting for LCP(C, -a) on a flat batch, with the certificate.

    The engine of :mod:`aggregation.scale.active_set` without the equality row.

    Args:
        C: ``(B, L, L)``; a: ``(B, L)``; present: ``(B, L)`` bool or None (all
            present; absent players stay out of the support). No graph.
        max_iter: pivots per element.
        tol: the relative regret tolerance of the certificate.

    Returns:
        ``x (B, L)``, ``S (B, L)`` bool, ``iterations (B,)``, ``resolved (B,)``
        bool (False: not resolved within ``max_iter`` pivots, a singular support
        with nothing left to flip, or a non-finite result) and the
        :class:`~aggregation.scale.game.Certificate` of ``x``
        (:func:`~aggregation.scale.game.certify_profile` on each chunk, in the dtype of ``a``).

    On the CPU with numba the phases run game by game in
    :func:`aggregation.scale.lcp_kernel.pivot_certify` (the same decisions, to rounding).
    """
    if lcp_kernel.applies(C, a):  # the same phases, game by game (numba)
        x, S, it, ok, *cert = lcp_kernel.pivot_certify(C, a, present, max_iter, tol)
        return x, S, it, ok, Certificate(*cert)
    judge = certify_chunk(tol)
    x, _, S, it, ok, *cert = active_set(C, a, present, max_iter, bordered=False, judge=judge)
    return x, S, it, ok, Certificate(*cert)


def enumerate_lcp(C: Tensor, a: Tensor, present: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every solution of LCP(C, -a) by support enumeration (small batches, L <= 8).

    Args:
        C: ``(n, L, L)``; a: ``(n, L)``; present: ``(n, L)`` bool.

    Returns:
        ``X (n, K, L)`` candidates (``K = 2^L``), ``feasible (n, K)`` bool (the
        candidate is an equilibrium: nonsingular support inside ``present``,
        ``x_S >= 0``, ``w >= 0`` off S, within a relative ``64 eps``),
        ``residual (n, K)`` natural residual, ``supports (K, L)`` bool.
    """
    L = a.shape[-1]
    eps = feasibility_eps(a.dtype)
    supports = all_supports(L, a.device)  # (K, L)

    def judge(
        Cc: Tensor, ac: Tensor, pc: Tensor, S: Tensor, x: Tensor, nu: Tensor, ok: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        w = (Cc.unsqueeze(1) @ x.unsqueeze(-1)).squeeze(-1) - ac.unsqueeze(1)  # (m, K, L)
        xmax = x.abs().amax(-1, keepdim=True)  # (m, K, 1)
        scale = (
            ac.abs().amax(-1, keepdim=True).unsqueeze(1)
            + Cc.abs().amax((-1, -2)).view(-1, 1, 1) * L * xmax
        )
        ok = ok & torch.isfinite(x).all(-1) & (x >= -eps * xmax).all(-1)
        ok = ok & ((S | ~pc.unsqueeze(1)) | (w >= -eps * scale)).all(-1)
        res = torch.where(pc.unsqueeze(1), torch.minimum(x, w).abs(), 0.0).amax(-1)
        return x.clamp_min(0), ok, torch.where(torch.isfinite(res), res, torch.inf)

    X, feasible, residual = enumerate_supports(C, a, present, supports, bordered=False, judge=judge)
    return X, feasible, residual, supports


def _enumerate_best(
    C: Tensor, a: Tensor, present: Tensor, tol: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The best support by its certificate: ``x``, ``S`` ``(n, L)``, ``found (n,)``.

    Among the feasible candidates, one that the certificate accepts (a
    candidate of an ill-conditioned support, whose regret rounding could hide,
    is not accepted) with the smallest regret; else the candidate with the
    smallest regret that has not diverged (feasible ones first). ``found``:
    a certified candidate exists.
    """
    X, feasible, _, supports = enumerate_lcp(C, a, present)
    cert = certify_profile(a.unsqueeze(1), C.unsqueeze(1), X, present.unsqueeze(1), tol)  # (n, K)
    sane = ~cert.diverged
    worst = cert.regret.amax(-1)  # (n, K)
    worst = torch.where(torch.isfinite(worst) & sane, worst, torch.full_like(worst, torch.inf))
    inf = torch.full_like(worst, torch.inf)
    good = feasible & cert.converged & sane
    # lexicographic: certified, then feasible, then the smallest regret
    rank = torch.where(good, 0, torch.where(feasible, 1, 2))  # (n, K)
    top = torch.where(torch.isfinite(worst), rank, 3).amin(-1, keepdim=True)  # (n, 1)
    choice = torch.where(rank == top, worst, inf).argmin(-1)  # (n,)
    rows = torch.arange(a.shape[0], device=a.device)
    x = X[rows, choice]
    S = supports[choice] & present & (x > 0)
    return x, S, good.any(-1)


def _solve_flat(
    prep: Prepared, max_iter: int
) -> tuple[Tensor, Tensor, Tensor, Certificate, dict[str, Tensor]]:
    """x (B, L), S (B, L), iterations (B,), the certificate of x, info."""
    a, C = prep.a, prep.C
    masked = prep.game.mask is not None
    present = prep.present if masked else None
    x, S, iters, resolved, cert = pivot_lcp(C, a, present, max_iter, prep.tol)
    enumerated = ~resolved
    fix = enumerated | ~cert.converged
    refined = torch.zeros_like(enumerated)
    if bool(fix.any()):
        # enumeration for the unresolved, float64 for the inaccurate: exact on the rest
        idx = fix.nonzero().squeeze(-1)
        Cd, ad, pd = C[idx].double(), a[idx].double(), prep.present[idx]
        xd, Sd, itd, okd, _ = pivot_lcp(Cd, ad, pd if masked else None, max_iter, prep.tol)
        if bool((~okd).any()):
            j = (~okd).nonzero().squeeze(-1)
            xe, Se, _ = _enumerate_best(Cd[j], ad[j], pd[j], prep.tol)
            xd = xd.index_put((j,), xe)
            Sd = Sd.index_put((j,), Se)
            itd = itd.index_put((j,), itd[j] + (1 << prep.L))
        xd = xd.to(x.dtype)
        new = certify_profile(a[idx], C[idx], xd, prep.present[idx], prep.tol)
        old_ok = cert.converged[idx]
        new_worst, old_worst = new.regret.amax(-1), cert.regret[idx].amax(-1)
        better = (new.converged & ~old_ok) | (~old_ok & ~(new_worst >= old_worst))  # NaN: new
        take = idx[better]
        x = x.index_put((take,), xd[better])
        S = S.index_put((take,), Sd[better])
        iters = iters.index_put((take,), iters[take] + itd[better])
        cert = Certificate(*(old.index_put((take,), n[better]) for old, n in zip(cert, new)))
        refined = refined.index_put((take,), torch.ones_like(take, dtype=torch.bool))
    info = {"enumerated": enumerated, "refined": refined}
    return x, S, iters, cert, info


def solve_exact(
    game: ScaleGame,
    *,
    tol: float | None = None,
    max_iter: int | None = None,
    differentiable: bool = True,
    backward: str = "implicit",
) -> ScaleGameResult:
    """The exact Nash equilibrium of a batch of scale games (``L <= 8``).

    Solves ``x >= 0, C x - a >= 0, x^T (C x - a) = 0`` by block principal
    pivoting, Murty's least-index pivoting and, for the few elements left,
    enumeration of the ``2^L`` supports (module docstring). For a P-matrix
    ``C`` (every game whose symmetric part is positive definite) the equilibrium
    is unique and this is it, to rounding.

    Args:
        game: a :class:`~aggregation.ScaleGame` with ``L <= 8``.
        tol: relative regret tolerance behind ``converged`` (the contract of
            :func:`~aggregation.solve_scale_game`); default
            :func:`~aggregation.tolerance.default_tol` of the returned dtype.
        max_iter: pivots before falling back to enumeration (default ``3 + 2L``).
        differentiable: attach ``x`` to the graph of ``a``/``C`` when they
            require grad.
        backward: ``"implicit"`` (KKT conditions on the active set, default) or
            ``"unrolled"`` (autograd through the final support solve; the same
            derivative computed the long way, kept as a cross-check).

    Returns:
        :class:`~aggregation.scale.result.ScaleGameResult`; ``iterations`` counts
        pivots (+ ``2^L`` where enumeration was needed); ``info`` has
        ``"enumerated"`` (pivoting did not resolve the element) and ``"refined"``
        (re-solved in float64, with enumeration where needed) flags. Elements without an
        equilibrium (possible only when C is not a P-matrix) have
        ``converged=False`` and the candidate of least regret (a candidate of a
        singular or ill-conditioned support, whose regret the dtype cannot
        resolve, is never certified; if it is all there is, it is replaced by
        ``x = 0``, ``info["diverged"]``).

    Raises:
        TypeError: ``game`` is not a :class:`~aggregation.ScaleGame`; ``differentiable``
            not a bool.
        ValueError: ``L > 8`` (use an iterative method), bad options.
    """
    if not isinstance(game, ScaleGame):
        raise TypeError(f"game must be a ScaleGame; received {describe(game)}")
    L = game.num_players
    if L > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"method='exact' enumerates supports and accepts at most {MAX_EXACT_PLAYERS} "
            f"players; received a game with L={L} (use 'extragradient', 'potential' or "
            "'best_response')"
        )
    iters_cap = check_options("exact", backward, differentiable, max_iter, 3 + 2 * L)
    with serial_ops(game.device):  # the large ops here gain little from OpenMP (module doc)
        grad = wants_grad(game, differentiable)
        # the effective game once: its graph for the gradient, detached for the solve
        effective = game.effective() if grad else None
        prep = prepare(game, tol, effective=effective)
        with torch.no_grad():
            x, S, iters, cert, info = _solve_flat(prep, iters_cap)
        x_graph = None
        if grad and backward == "unrolled":
            a_eff, C_eff = effective
            S_b = S.reshape(*prep.batch, prep.L)
            x_graph = support_solve_graph(a_eff, C_eff, S_b, bordered=False)
        return finish(
            prep,
            x,
            S,
            iters,
            "exact",
            x_graph=x_graph,
            grad=grad,
            info=info,
            certificate=cert,
            effective=effective,
        )
