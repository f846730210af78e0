"""The exact equilibria of a few small scale games in a few dozen tensor ops.

A decoding step of :class:`maha.ScaleFusion` solves ``B H`` games of ``L``
players for one new position, a few dozen games. There the cost of the other
exact solvers is the number of tensor ops they issue (a few microseconds each
in eager mode, whatever the size), not arithmetic: the pivoting solver
(:mod:`aggregation.scale.exact`) and the sync-free enumeration
(:mod:`aggregation.scale.enumeration`) each issue several hundred per call.
This solver issues about a hundred, independent of the batch, by treating the
``2^L`` candidate supports as one more batch dimension throughout:

1. every support ``S`` (the ``(2^L, L)`` table of
   :func:`aggregation.simplex.all_supports`, the empty one included) gives the
   candidate ``x_S = C_SS^{-1} a_S``, ``x = 0`` off S: one batched LU solve with
   partial pivoting (``torch.linalg.solve_ex``) of the ``(G, 2^L, L, L)``
   systems whose rows and columns off S are the identity's;
2. a candidate is *valid* when its system is nonsingular, its support lies inside
   the present players, it is sign-feasible within a relative ``64 eps``
   (``x_S >= 0``, ``w = C x - a >= 0`` off S: the rule of the other exact
   solvers) and its certificate (below) has not diverged;
3. every candidate, clamped at 0 and rounded to the output dtype as it would be
   returned, is judged by the library's one certificate
   (:func:`aggregation.scale.game.certify_profile`) in one call;
4. the valid candidate with the smallest natural residual
   ``max_l |min(x_l, (C x - a)_l)|`` is returned, with its certificate gathered
   (the certificate *of the returned profile*, never a stand-in); where no
   candidate is valid, the empty support's ``x = 0`` (the documented fallback of
   the other solvers: uniform weights, ``converged`` only if ``x = 0`` is an
   equilibrium, ``info["fallback"]`` otherwise).

For a P-matrix ``C`` (every monotone game, in particular :class:`maha.ScaleFusion`'s,
whose ``mu I`` makes the symmetric part positive definite) every principal system
is nonsingular and the equilibrium is unique, so this returns the profile of
``solve_scale_game(method="exact")`` and of
:func:`~aggregation.scale_game_enumeration`, to rounding, with the same
certificate (``tests/aggregation/test_small_batch.py`` pins the three). For
other games it returns a valid candidate (an equilibrium, certified where its
certificate holds) when there is one.

The work is ``O(G 2^L L^3)`` arithmetic, no host reads and no data-dependent
shapes. It builds no graph: use the exact or enumeration solvers for gradients.

References: Cottle, Pang & Stone, *The Linear Complementarity Problem* (1992),
sections 1.1 and 3.3 (principal systems; uniqueness for P-matrices).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..simplex import all_supports
from ..small_linalg import serial_ops
from .enumeration import _check_tensors, _dtypes, _effective
from .game import certify_profile
from .result import ScaleGameResult, profile_weights

__all__ = ["scale_game_small_batch"]

_TABLES: dict[tuple[int, str, torch.dtype], tuple[Tensor, ...]] = {}


def _tables(L: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """Built once per ``(L, device, dtype)``: ``S (2^L, L)`` and ``S_l & S_k``
    ``(2^L, L, L)`` bool, the identity ``(L, L)``, 0 and +inf scalars."""
    key = (L, str(device), dtype)
    tables = _TABLES.get(key)
    if tables is None:
        S = all_supports(L, device)  # (K, L), row 0 the empty support
        tables = _TABLES[key] = (
            S,
            S.unsqueeze(-1) & S.unsqueeze(-2),
            torch.eye(L, dtype=dtype, device=device),
            torch.zeros((), dtype=dtype, device=device),
            torch.full((), torch.inf, dtype=dtype, device=device),
        )
    return tables


def scale_game_small_batch(
    a: Tensor, C: Tensor, mask: Tensor | None = None, *, tol: float | None = None
) -> ScaleGameResult:
    """Nash equilibria of a few scale games, every support at once (module docstring).

    ``x* >= 0, C x* - a >= 0, x*^T (C x* - a) = 0`` (:class:`~aggregation.ScaleGame`)
    for each of the ``G`` games of the batch; the cost is about a hundred tensor
    ops whatever ``G``, so it pays for batches of up to a few hundred games
    (a decoding step); the arithmetic, ``G 2^L`` LU solves of size ``L``, grows
    with ``G``. As :func:`~aggregation.scale_game_enumeration`, the values are
    not validated (no host reads): finite ``a`` and ``C`` with ``C_ll > 0`` for
    present players are the caller's to ensure. No warning for unconverged
    elements: read ``converged``. No graph is built.

    Args:
        a: ``(*batch_a, L)`` utilities, ``1 <= L <= 8``.
        C: ``(*batch_C, L, L)`` interaction matrix.
        mask: optional ``(*batch_m, L)`` bool, False for absent players (they play 0).
        tol: regret tolerance relative to the payoff unit (as
            :func:`~aggregation.solve_scale_game`); default
            :func:`aggregation.tolerance.default_tol` of the output dtype.

    Returns:
        :class:`~aggregation.scale.result.ScaleGameResult` (``method="small_batch"``,
        ``iterations`` = ``2^L`` systems solved) with ``info`` ``"found"`` (a valid
        support was found), ``"zero_total"``, ``"diverged"`` (all False: a
        diverged candidate is never returned) and ``"fallback"`` (``x = 0`` and
        uniform weights without a certificate).

    Raises:
        TypeError, ValueError: non-tensor input, shapes that do not fit, ``L > 8``.
    """
    batch, L = _check_tensors(a, C, mask, ("a", "C"), "players")
    dtype, dtype_out, tol = _dtypes(a, C, tol)
    device = a.device
    # single-threaded, as the exact solver: these tiny ops gain nothing from OpenMP and
    # its barriers cost milliseconds on a busy machine (measured: 8 vs 0.9 ms, 2 threads)
    with torch.no_grad(), serial_ops(device):
        a_eff, C_eff = _effective(a.detach().to(dtype), C.detach().to(dtype), mask)
        present = torch.ones(L, dtype=torch.bool, device=device) if mask is None else mask
        af = a_eff.expand(*batch, L).reshape(-1, 1, L)  # (G, 1, L)
        Cf = C_eff.expand(*batch, L, L).reshape(-1, 1, L, L)  # (G, 1, L, L)
        pf = present.expand(*batch, L).reshape(-1, 1, L)  # (G, 1, L)
        S, SS, eye, zero, inf = _tables(L, device, dtype)  # (K, L), (K, L, L), (L, L)
        M = torch.where(SS, Cf, eye)  # (G, K, L, L): identity rows/columns off S
        rhs = torch.where(S, af, zero)  # (G, K, L)
        X, info = torch.linalg.solve_ex(M, rhs.unsqueeze(-1))  # (G, K, L, 1), (G, K)
        x = torch.where(S, X.squeeze(-1), zero)  # (G, K, L)
        w = torch.matmul(Cf, x.unsqueeze(-1)).squeeze(-1) - af  # (G, K, L): C x - a
        rtol = 64.0 * float(torch.finfo(dtype).eps)
        xmax = x.abs().amax(-1, keepdim=True)  # (G, K, 1)
        scale = af.abs().amax(-1, keepdim=True) + Cf.abs().amax((-1, -2)).unsqueeze(-1) * (
            L * xmax
        )  # (G, K, 1)
        feasible = torch.where(S, x >= -rtol * xmax, w >= -rtol * scale).all(-1)
        inside = ~(S & ~pf).any(-1)  # (G, K)
        xr = x.clamp_min(0)
        if dtype_out != dtype:
            xr = xr.to(dtype_out).to(dtype)  # judged as returned
        cert = certify_profile(af, Cf, xr, pf, tol)  # every candidate: (G, K, L) / (G, K)
        valid = (info == 0) & inside & feasible & ~cert.diverged
        score = torch.where(valid, cert.residual, inf)  # (G, K)
        k = score.argmin(-1, keepdim=True)  # (G, 1): the empty support 0 where none is valid
        found = valid.any(-1)  # (G,)
        x_best = xr.gather(1, k.unsqueeze(-1).expand(-1, 1, L)).squeeze(1)  # (G, L)
        regret = cert.regret.gather(1, k.unsqueeze(-1).expand(-1, 1, L)).squeeze(1)
        residual = cert.residual.gather(1, k).squeeze(1)  # (G,)
        converged = cert.converged.gather(1, k).squeeze(1)  # (G,)
        x_best = x_best.reshape(*batch, L)
        p = pf.reshape(-1, L).reshape(*batch, L)
        weights, positive = profile_weights(x_best, p)  # (*batch, L), (*batch, 1)
    converged = converged.reshape(batch)
    zero_total = ~positive.squeeze(-1)
    x_out = x_best.to(dtype_out)
    return ScaleGameResult(
        strategies=tuple(x_out.unbind(-1)),
        regret=regret.reshape(*batch, L).to(dtype_out),
        converged=converged,
        iterations=torch.full(batch, 1 << L, dtype=torch.int64, device=device),
        method="small_batch",
        tol=tol,
        residual=residual.reshape(batch).to(dtype_out),
        info={
            "found": found.reshape(batch),
            "zero_total": zero_total,
            "diverged": torch.zeros_like(zero_total),
            "fallback": zero_total & ~converged,
        },
        x=x_out,
        weights=weights.to(dtype_out),
        support=x_best > 0,
    )
