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

Each pivot solves one ``L x L`` system per element by unrolled elimination over
the batch (:mod:`aggregation._small_linalg`), in cache-sized chunks, and only
the unresolved elements are carried to the next pivot.

Gradients (implicit, the default) come from the KKT conditions on the final
support, ``dx_S = C_SS^{-1} (da_S - dC_S. x)``; at a degenerate solution (some
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

from .._small_linalg import lu_solve_soa, map_chunks, serial_ops
from ._common import (
    Prepared,
    check_options,
    finish,
    prepare,
    support_solve,
    wants_grad,
)
from .game import Certificate, ScaleGame, _certify
from .result import ScaleGameResult

__all__ = ["MAX_EXACT_PLAYERS", "enumerate_lcp", "pivot_lcp", "solve_exact"]

MAX_EXACT_PLAYERS = 8
_BLOCK_STEPS = 3


def _feasibility_eps(dtype: torch.dtype) -> float:
    return 64.0 * float(torch.finfo(dtype).eps)


def _matvec_minus(C: Tensor, x: Tensor, a: Tensor) -> Tensor:
    """SoA ``C x - a``: C (L, L, m), x/a (L, m) -> (L, m)."""
    L = x.shape[0]
    rows = []
    for i in range(L):
        acc = torch.addcmul(-a[i], C[i, 0], x[0])
        for j in range(1, L):
            acc = torch.addcmul(acc, C[i, j], x[j])
        rows.append(acc)
    return torch.stack(rows, 0)


def _support_solve_soa(
    C: Tensor, a: Tensor, sf: Tensor | None, rtol: float
) -> tuple[Tensor, Tensor]:
    """SoA ``x_S = C_SS^{-1} a_S``, 0 off S (sf: float 0/1 support; None: all): x (L, m), bad."""
    L = a.shape[0]
    if sf is None:
        M = [[C[i, j] for j in range(L)] for i in range(L)]
        rhs = [[a[i]] for i in range(L)]
    else:
        ns = 1 - sf
        M = [
            [torch.addcmul(ns[i], C[i, i], sf[i]) if i == j else C[i, j] * sf[i] for j in range(L)]
            for i in range(L)
        ]
        rhs = [[a[i] * sf[i]] for i in range(L)]
    X, bad = lu_solve_soa(M, rhs, rtol=rtol, positive=True)
    return torch.stack([X[i][0] for i in range(L)], 0), bad


def _pivot_chunk(
    C: Tensor, a: Tensor, present: Tensor | None, max_iter: int, row_max: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Principal pivoting on one chunk in SoA layout.

    Args:
        C: ``(L, L, n)``; a: ``(L, n)``; present: ``(L, n)`` bool or None (all);
            row_max: ``(L, n)`` ``max_k |C_lk|``.

    Returns:
        ``x (L, n)`` (clamped at 0, zero off S), ``S (L, n)`` bool,
        ``iterations (n,)``, ``resolved (n,)`` bool.
    """
    L, n = a.shape
    dtype = a.dtype
    eps = _feasibility_eps(dtype)
    rtol = float(torch.finfo(dtype).eps) ** 0.5
    S = a > 0
    if present is not None:
        S = S & present
    a_scale = a.abs().amax(0)  # (n,)
    c_scale = row_max.amax(0) * L  # (n,)
    order = torch.arange(L, 0, -1, device=a.device).unsqueeze(-1)  # (L, 1): L..1
    x_out, S_out = torch.zeros_like(a), torch.zeros_like(S)
    failed = torch.zeros(n, dtype=torch.bool, device=a.device)
    iters = torch.full((n,), 1, dtype=torch.int64, device=a.device)
    idx = None  # indices (into the chunk) of the elements still pivoting
    for it in range(max_iter):
        full = it == 0 and bool(S.all())  # every player active: M = C
        x, bad = _support_solve_soa(C, a, None if full else S.to(dtype), rtol)
        w = _matvec_minus(C, x, a)  # (L, m)
        xmax = x.abs().amax(0)  # (m,)
        neg_x = S & (x < -eps * xmax)
        neg_w = ~S & (w < -eps * torch.addcmul(a_scale, c_scale, xmax))
        if present is not None:
            neg_w = neg_w & present
        viol = neg_x | neg_w  # (L, m)
        keep = viol.any(0)  # (m,): pivot on
        stuck = bad & ~keep  # a singular support and nothing to flip: enumeration decides
        x = (x * S).clamp_min(0)
        if idx is None:
            x_out, S_out, failed = x, S, stuck
        else:
            x_out = x_out.index_copy(1, idx, x)
            S_out = S_out.index_copy(1, idx, S)
            iters = iters.index_fill(0, idx, it + 1)
            failed = failed.index_copy(0, idx, stuck)
        if not bool(keep.any()):
            idx = idx[:0] if idx is not None else torch.zeros(0, dtype=torch.long)
            break
        k = keep.nonzero().squeeze(-1)
        idx = k if idx is None else idx[k]
        viol, S = viol[:, k], S[:, k]
        if it + 1 < _BLOCK_STEPS:
            S = S ^ viol
        else:  # Murty: flip the least infeasible index only
            first = (viol.to(torch.int64) * order).argmax(0)  # (m,)
            S = S ^ torch.nn.functional.one_hot(first, L).T.bool()
        C, a = C[:, :, k], a[:, k]
        a_scale, c_scale = a_scale[k], c_scale[k]
        if present is not None:
            present = present[:, k]
    resolved = ~failed
    if idx is not None and idx.numel():
        resolved = resolved.index_fill(0, idx, False)
    return x_out, S_out, iters, resolved  # type: ignore[return-value]


def pivot_lcp(
    C: Tensor,
    a: Tensor,
    present: Tensor | None,
    max_iter: int,
    tol: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Certificate]:
    """Principal pivoting for LCP(C, -a) on a flat batch, with the certificate.

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
        (``_certify`` on each chunk, in the dtype of ``a``).
    """
    B, L = a.shape
    if B == 0:
        z = a.new_zeros(0)
        empty = Certificate(a.clone(), z, z.bool(), z.bool())
        return a.clone(), a > 0, z.long(), z.bool(), empty

    def one(s: int, e: int) -> tuple[Tensor, ...]:
        Cc = C[s:e].permute(1, 2, 0).contiguous()  # (L, L, n)
        ac = a[s:e].T.contiguous()  # (L, n)
        pc = None if present is None else present[s:e].T.contiguous()
        row_max = Cc.abs().amax(1)  # (L, n): max_k |C_lk|
        x, S, it, ok = _pivot_chunk(Cc, ac, pc, max_iter, row_max)
        p = None if pc is None else pc.T
        cert = _certify(ac.T, Cc.permute(2, 0, 1), x.T, p, tol, row_max.T)
        ok = ok & ~cert.diverged
        return x.T, S.T, it, ok, *cert

    outs = map_chunks(one, B, a.device)
    x, S, it, ok, regret, residual, converged, diverged = (
        o[0] if len(outs) == 1 else torch.cat(o) for o in zip(*outs)
    )
    return x, S, it, ok, Certificate(regret, residual, converged, diverged)


def _all_supports(L: int, device: torch.device) -> Tensor:
    """``(2^L, L)`` bool, every subset of the players (bit l of the row index)."""
    codes = torch.arange(1 << L, device=device)
    return (codes.unsqueeze(-1) >> torch.arange(L, device=device)) & 1 == 1


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
    n, L = a.shape
    dtype = a.dtype
    eps = _feasibility_eps(dtype)
    supports = _all_supports(L, a.device)  # (K, L)
    K = supports.shape[0]
    per = max(1, (1 << 22) // (K * L * L))
    eye = torch.eye(L, dtype=dtype, device=a.device)
    Xs, Fs, Rs = [], [], []
    for s in range(0, max(n, 1), per):  # one (empty) pass when n == 0
        Cc, ac, pc = C[s : s + per], a[s : s + per], present[s : s + per]
        S = supports.unsqueeze(0) & pc.unsqueeze(1)  # (m, K, L)
        inside = (supports.unsqueeze(0) <= pc.unsqueeze(1)).all(-1)  # (m, K)
        M = torch.where(S.unsqueeze(-1), Cc.unsqueeze(1), eye)  # (m, K, L, L)
        rhs = torch.where(S, ac.unsqueeze(1), 0.0)
        x, info = torch.linalg.solve_ex(M, rhs.unsqueeze(-1))
        x = torch.where(S, x.squeeze(-1), 0.0)  # (m, K, L)
        w = (Cc.unsqueeze(1) @ x.unsqueeze(-1)).squeeze(-1) - ac.unsqueeze(1)
        scale = ac.abs().amax(-1, keepdim=True).unsqueeze(1) + Cc.abs().amax((-1, -2)).view(
            -1, 1, 1
        ) * L * x.abs().amax(-1, keepdim=True)
        ok = (info == 0) & torch.isfinite(x).all(-1) & inside
        ok = ok & (x >= -eps * x.abs().amax(-1, keepdim=True)).all(-1)
        ok = ok & ((S | ~pc.unsqueeze(1)) | (w >= -eps * scale)).all(-1)
        res = torch.where(pc.unsqueeze(1), torch.minimum(x, w).abs(), 0.0).amax(-1)
        Xs.append(x.clamp_min(0))
        Fs.append(ok)
        Rs.append(torch.where(torch.isfinite(res), res, torch.full_like(res, torch.inf)))
    return torch.cat(Xs), torch.cat(Fs), torch.cat(Rs), supports


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
    cert = _certify(a.unsqueeze(1), C.unsqueeze(1), X, present.unsqueeze(1), tol)  # (n, K)
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
        new = _certify(a[idx], C[idx], xd, prep.present[idx], prep.tol)
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
        ValueError: ``L > 8`` (use an iterative method), bad options.
    """
    L = game.num_players if isinstance(game, ScaleGame) else 0
    if L > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"method='exact' enumerates supports and accepts at most {MAX_EXACT_PLAYERS} "
            f"players; received a game with L={L} (use 'extragradient', 'potential' or "
            "'best_response')"
        )
    with serial_ops(game.device):  # the large ops here gain little from OpenMP (module doc)
        prep = prepare(game, tol)
        iters_cap = check_options("exact", backward, differentiable, max_iter, 3 + 2 * prep.L)
        with torch.no_grad():
            x, S, iters, cert, info = _solve_flat(prep, iters_cap)
        grad = wants_grad(game, differentiable)
        x_graph = None
        if grad and backward == "unrolled":
            x_graph = support_solve(game, S.reshape(*prep.batch, prep.L), prep.dtype)
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
        )
