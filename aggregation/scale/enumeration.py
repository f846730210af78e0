"""Exact solutions for small L with a fixed, data-independent amount of work.

For ``L <= 8`` players (scales) every nonempty candidate support ``S`` (the
``K = 2^L - 1`` subsets of the players, one ``(K, L)`` bool table per L,
:func:`support_table`) is solved at once; the answer is the feasible candidate with the
smallest KKT residual, judged by the library's certificate. Two problems share the engine:

* the scale game, LCP(C, -a): on S, ``C_SS x_S = a_S`` and ``x = 0`` off S; the
  candidate is an equilibrium iff ``x_S >= 0`` and ``w = C x - a >= 0`` off S
  (:class:`~aggregation.ScaleGame`). The empty support (``x = 0``, an
  equilibrium iff ``a <= 0``) is the fallback below and is certified as such;
* the convex aggregator ``argmax_{w in simplex} a^T w - 1/2 w^T Q w``
  (:mod:`aggregation.scale.convex`): on S the bordered KKT system
  ``[[Q_SS, 1], [1^T, 0]] (w_S, nu) = (a_S, 1)``, eliminated through its Schur
  complement: ``y = Q_SS^{-1} a_S``, ``z = Q_SS^{-1} 1_S``,
  ``nu = (1^T y - 1) / (1^T z)``, ``w_S = y - nu z``; optimal iff ``w_S >= 0``
  and ``mu = Q w - a + nu >= 0`` off S.

Engine. All K principal systems of a batch of B problems are one unpivoted
elimination over a ``(B, K)`` batch (:func:`aggregation.small_linalg.lu_solve_soa`,
structure of arrays, elementwise ops only), with the rows and columns off S
replaced by those of the identity, so the shapes never depend on the data. A
pivot with ``|p_k| <= 64 eps |M_kk|`` (eps of the compute dtype) marks its
support invalid; nothing is re-solved. A candidate is *valid* when its
support lies inside the present players, its pivots are sound, and it is
sign-feasible within a relative ``64 eps`` (the tolerances of the pivoting
solvers). Selection, with no host reads: the valid candidate with the smallest
KKT residual (scale game: the natural residual ``max_l |min(x_l, (C x - a)_l)|``
of :meth:`~aggregation.ScaleGame.complementarity_residual`; convex:
``aggregation.scale.active_set.kkt_residual`` of the candidate as returned),
by ``argmin`` over K (invalid ones at ``+inf``; ties go to the first support in
table order) and ``torch.gather``. The certificate of the returned profile is
then computed from it with the library's one formula
(:func:`aggregation.scale.game.certify_profile`, the regret of
:meth:`~aggregation.ScaleGame.regret`, judged in the output dtype; for the
convex problem ``kkt_residual <= tol``): ``converged`` is never taken from a
candidate.

Guarantees. For a P-matrix ``C`` (every monotone game, in particular the
games of :class:`maha.ScaleFusion`, whose ``mu I`` term makes the symmetric
part positive definite: every pivot is then at least ``mu``) the equilibrium is
unique, its support system is nonsingular, and it is returned, certified to
rounding. For a positive definite ``(Q + Q^T)/2`` the same holds for the convex
problem. For other games (several equilibria, or none) the answer is the
valid candidate with the smallest residual when there is one (an equilibrium,
``converged`` where its certificate holds), otherwise the documented fallback,
with ``converged`` False:

* scale game: ``x = 0``, weights uniform over the present players
  (``info["fallback"]``; ``converged`` is True only if ``x = 0`` is in fact an
  equilibrium, i.e. ``a <= 0`` on the present players);
* convex: ``w`` uniform over the present scales, ``nu = 0``
  (``info["fallback"]``; judged by its KKT residual).

The work is ``O(2^L L^3)`` per problem: for ``L = 4``, 15 systems of size 4.
Nothing reads tensor values on the host (no ``.item()``, no ``bool(tensor)``,
no data-dependent shapes), so ``torch.compile(..., fullgraph=True)`` traces the
forward and the backward as one graph; in eager mode large batches run in
cache-sized chunks (:func:`aggregation.small_linalg.map_chunks`).

Gradients. On the chosen support the solution is ``x_S = C_SS^{-1} a_S`` (or
the bordered solution), a smooth function of ``(a, C)`` under strict
complementarity, and its derivative is the implicit-function-theorem
derivative of the active-set KKT conditions that the other exact solvers
attach (:mod:`aggregation.scale._common`): ``dx_S = C_SS^{-1} (da_S - dC_S. x)``.
It is obtained here by autograd through one differentiable ``L x L`` support
solve per element (the same elimination), whose value is the returned one, so
the backward is a fixed set of batched transposed ``L x L`` solves with no host
reads, and twice differentiable. Elements that did not converge get zero
gradient (as with :func:`~aggregation.implicit_root`'s ``valid``).

References: Cottle, Pang & Stone, *The Linear Complementarity Problem* (1992),
sections 1.1 and 4.1 (principal systems of an LCP); Nocedal & Wright,
*Numerical Optimization* (2006), ch. 16 (KKT systems of a QP on an active set);
Amos & Kolter, "OptNet", ICML 2017 (differentiating KKT systems).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..result import warn_not_converged
from ..simplex import all_supports
from ..small_linalg import chunk_size, lu_solve_soa, map_chunks, matvec
from ..tolerance import default_tol
from ..validation import compute_dtype, describe
from ._common import check_options, out_dtype, prepare, wants_grad
from .active_set import kkt_residual, objective
from .convex import ConvexAggregateResult
from .game import ScaleGame, certify_profile, ordered_sum
from .result import ScaleGameResult, profile_weights

__all__ = [
    "MAX_ENUMERATION_PLAYERS",
    "convex_aggregate_enumeration",
    "scale_game_enumeration",
    "solve_enumeration",
    "support_table",
]

MAX_ENUMERATION_PLAYERS = 8
_TABLES: dict[tuple[int, str], Tensor] = {}


def _check_players(L: int, name: str) -> None:
    if L < 1 or L > MAX_ENUMERATION_PLAYERS:
        raise ValueError(
            f"support enumeration solves 2^L - 1 systems and accepts 1 <= L <= "
            f"{MAX_ENUMERATION_PLAYERS} {name}; received L={L} (use the exact or an "
            "iterative method for more)"
        )


def support_table(L: int, device: torch.device | str | None = None) -> Tensor:
    """``(2^L - 1, L)`` bool: row ``k - 1`` is the support ``{l : bit l of k is set}``.

    Built once per ``(L, device)`` and cached (rebuilt, not cached, while
    ``torch.compile`` traces). Raises ``ValueError`` unless ``1 <= L <= 8``.
    """
    if isinstance(L, bool) or not isinstance(L, int):
        raise TypeError(f"L must be an int; received {describe(L)}")
    _check_players(L, "players")
    device = torch.device("cpu") if device is None else torch.device(device)

    def build() -> Tensor:
        return all_supports(L, device)[1:]  # (K, L), nonempty

    if torch.compiler.is_compiling():
        return build()
    key = (L, str(device))
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = build()
    return table


# ------------------------------------------------------------------ engine
def _pivot_rtol(dtype: torch.dtype) -> float:
    """Relative pivot (and sign-feasibility) threshold: ``64 eps`` of the compute dtype."""
    return 64.0 * float(torch.finfo(dtype).eps)


def _principal_solve(M: Tensor, R: Tensor, s: Tensor, rtol: float) -> tuple[Tensor, Tensor]:
    """Solve ``M_SS X_S = R_S``, ``X = 0`` off S, by unpivoted elimination (no host reads).

    Args:
        M: ``(..., L, L)``; R: ``(..., L, r)``; s: ``(..., L)`` float 0/1 support.
            The leading dimensions broadcast (``M (B, 1, L, L)`` against
            ``s (K, L)`` solves every support of every problem).
        rtol: a pivot with ``|p_k| <= rtol |M_kk|`` (or NaN) marks the system bad.

    Returns:
        ``X`` ``(..., L, r)`` and ``bad`` ``(...)`` bool. Rows and columns off S
        are those of the identity, so ``X`` is exactly 0 there.
    """
    L = M.shape[-1]
    ns = 1 - s
    rows = [
        [
            torch.addcmul(ns[..., i], M[..., i, i], s[..., i])
            if i == j
            else M[..., i, j] * (s[..., i] * s[..., j])
            for j in range(L)
        ]
        for i in range(L)
    ]
    rhs = [[R[..., i, q] * s[..., i] for q in range(R.shape[-1])] for i in range(L)]
    X, bad = lu_solve_soa(rows, rhs, rtol=rtol)
    return torch.stack([torch.stack(X[i], -1) for i in range(L)], -2), bad


def _pick(score: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Index ``(n,)`` of the valid candidate with the smallest ``score (n, K)``, and ``found (n,)``.

    Invalid candidates count as ``+inf``; ties go to the first support in table order.
    """
    inf = torch.full((), torch.inf, dtype=score.dtype, device=score.device)
    return torch.where(valid, score, inf).argmin(-1), valid.any(-1)


def _gather(t: Tensor, k: Tensor) -> Tensor:
    """``t[i, k[i]]`` for ``t`` ``(n, K, L)``, ``k`` ``(n,)``: ``(n, L)``."""
    L = t.shape[-1]
    return t.gather(1, k.view(-1, 1, 1).expand(-1, 1, L)).squeeze(1)


def _chunked(fn, B: int, device: torch.device, per_game: int) -> tuple[Tensor, ...]:
    """``fn(lo, hi)`` over the flat batch, concatenated: one pass while compiling or when small.

    In eager mode the ``(n, K, L)`` temporaries are kept cache-sized
    (``chunk_size(device)`` elements, ``per_game = K L`` each per game): on the
    CPU, large temporaries cost a page fault per allocation. ``map_chunks``
    steps by ``chunk_size(device)``; each of its steps stands for one chunk here.
    """
    unit = chunk_size(device)
    step = max(1, unit // per_game)
    if torch.compiler.is_compiling() or B <= step:
        return fn(0, B)
    count = -(-B // step)
    outs = map_chunks(
        lambda s, e: fn(s // unit * step, min(B, (s // unit + 1) * step)), count * unit, device
    )
    return tuple(torch.cat(o) for o in zip(*outs))


def _scale_candidates(
    a: Tensor, C: Tensor, present: Tensor, dtype_out: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    """The best support of each flat effective game (no graph).

    ``a (B, L)``, ``C (B, L, L)``, ``present (B, L)``. Returns ``x (B, L)`` (as
    returned: clamped, rounded to ``dtype_out``; 0 where nothing is valid),
    ``S (B, L)`` the chosen table support (all False where nothing is valid)
    and ``found (B,)``.
    """
    B, L = a.shape
    dtype = a.dtype
    rtol = _pivot_rtol(dtype)
    supports = support_table(L, a.device)  # (K, L)
    s = supports.to(dtype)

    def one(lo: int, hi: int) -> tuple[Tensor, Tensor, Tensor]:
        ac, Cc, pc = a[lo:hi].unsqueeze(1), C[lo:hi].unsqueeze(1), present[lo:hi].unsqueeze(1)
        X, bad = _principal_solve(Cc, ac.unsqueeze(-1), s, rtol)  # (n, K, L, 1), (n, K)
        x = X[..., 0]  # (n, K, L)
        xmax = x.abs().amax(-1, keepdim=True)  # (n, K, 1)
        w = matvec(Cc, x) - ac  # (n, K, L)
        scale = ac.abs().amax(-1, keepdim=True) + Cc.abs().amax((-1, -2)).unsqueeze(-1) * L * xmax
        feasible = torch.where(supports, x >= -rtol * xmax, w >= -rtol * scale).all(-1)
        inside = ~(supports & ~pc).any(-1)  # (n, K)
        zero = torch.zeros((), dtype=dtype, device=a.device)
        residual = torch.where(pc, torch.minimum(x, w).abs(), zero).amax(-1)  # (n, K)
        valid = inside & ~bad & feasible & torch.isfinite(residual)
        k, found = _pick(residual, valid)
        xr = x.clamp_min(0).to(dtype_out).to(dtype)  # as returned
        x_best = torch.where(found.unsqueeze(-1), _gather(xr, k), zero)  # (n, L)
        S_best = supports[k] & found.unsqueeze(-1)  # (n, L)
        return x_best, S_best, found

    return _chunked(one, B, a.device, supports.shape[0] * L)  # type: ignore[return-value]


def _effective(a: Tensor, C: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """The effective game of :meth:`aggregation.ScaleGame.effective` (absent: ``a = -1``, ``I``)."""
    if mask is None:
        return a, C
    a = torch.where(mask, a, torch.full((), -1.0, dtype=a.dtype, device=a.device))
    both = mask.unsqueeze(-1) & mask.unsqueeze(-2)  # (*batch_m, L, L)
    return a, torch.where(both, C, torch.eye(a.shape[-1], dtype=C.dtype, device=C.device))


def _scale_result(
    a_eff: Tensor,
    C_eff: Tensor,
    present: Tensor,
    batch: torch.Size,
    tol: float,
    dtype: torch.dtype,
    dtype_out: torch.dtype,
    grad: bool,
) -> ScaleGameResult:
    """Solve the effective games ``a_eff (*, L)``, ``C_eff (*, L, L)`` (graph kept) and assemble."""
    L = a_eff.shape[-1]
    with torch.no_grad():
        af = a_eff.detach().expand(*batch, L).reshape(-1, L)
        Cf = C_eff.detach().expand(*batch, L, L).reshape(-1, L, L)
        pf = present.expand(*batch, L).reshape(-1, L)
        x, S, found = _scale_candidates(af, Cf, pf, dtype_out)
        cert = certify_profile(af, Cf, x, pf, tol)  # of the returned profile
    x = x.reshape(*batch, L)
    S = S.reshape(*batch, L)
    converged = cert.converged.reshape(batch)
    if grad:
        ok = converged & found.reshape(batch)
        s = (S & ok.unsqueeze(-1)).to(dtype)
        xg = _principal_solve(C_eff, a_eff.unsqueeze(-1), s, _pivot_rtol(dtype))[0][..., 0]
        zero = torch.zeros((), dtype=dtype, device=x.device)
        x = x + torch.where(ok.unsqueeze(-1), xg - xg.detach(), zero)
    present_b = present.expand(*batch, L)
    weights, positive = profile_weights(x, present_b)  # as every scale-game solver
    zero_total = ~positive.squeeze(-1)
    K = (1 << L) - 1
    info = {
        "found": found.reshape(batch),
        "zero_total": zero_total,
        "fallback": zero_total & ~converged,
    }
    x_out = x.to(dtype_out)
    return ScaleGameResult(
        strategies=tuple(x_out.unbind(-1)),
        regret=cert.regret.reshape(*batch, L).to(dtype_out),
        converged=converged,
        iterations=torch.full(batch, K, dtype=torch.int64, device=x.device),
        method="enumeration",
        tol=tol,
        residual=cert.residual.reshape(batch).to(dtype_out),
        info=info,
        x=x_out,
        weights=weights.to(dtype_out),
        support=S & (x.detach() > 0),
    )


def _check_tensors(
    a: Any, M: Any, mask: Any, names: tuple[str, str], what: str
) -> tuple[torch.Size, int]:
    """Shape and type checks only (no host reads): ``(batch, L)``."""
    for t, name in ((a, names[0]), (M, names[1])):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; received {describe(t)}")
    if a.dim() < 1 or M.dim() < 2 or M.shape[-1] != M.shape[-2] or M.shape[-1] != a.shape[-1]:
        raise ValueError(
            f"{names[0]} must have shape (*batch, L) and {names[1]} (*batch, L, L); received "
            f"{describe(a)} and {describe(M)}"
        )
    L = a.shape[-1]
    _check_players(L, what)
    shapes = [a.shape[:-1], M.shape[:-2]]
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"mask must be a boolean tensor; received {describe(mask)}")
        if mask.dim() < 1 or mask.shape[-1] != L:
            raise ValueError(f"mask must have shape (*batch, {L}); received {describe(mask)}")
        shapes.append(mask.shape[:-1])
    if all(shape == shapes[0] for shape in shapes[1:]):
        return shapes[0], L  # the common case, without broadcast_shapes' Python (~16 us)
    try:
        batch = torch.broadcast_shapes(*shapes)
    except RuntimeError:
        raise ValueError(
            f"the batch shapes of {names[0]}, {names[1]} (and mask) must broadcast; received "
            f"{[tuple(s) for s in shapes]}"
        ) from None
    return batch, L


def _dtypes(a: Tensor, M: Tensor, tol: float | None) -> tuple[torch.dtype, torch.dtype, float]:
    in_dtype = torch.promote_types(a.dtype, M.dtype)
    dtype = compute_dtype(in_dtype)
    dtype_out = in_dtype if in_dtype in (torch.float16, torch.bfloat16) else dtype
    if tol is None:
        return dtype, dtype_out, default_tol(dtype_out)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol must be a nonnegative number; received {describe(tol)}")
    return dtype, dtype_out, float(tol)


# ------------------------------------------------------------------ scale game
def scale_game_enumeration(
    a: Tensor,
    C: Tensor,
    mask: Tensor | None = None,
    *,
    tol: float | None = None,
    differentiable: bool = True,
) -> ScaleGameResult:
    """Nash equilibrium of a batch of scale games by support enumeration, with no host reads.

    ``x* >= 0, C x* - a >= 0, x*^T (C x* - a) = 0`` (see :class:`~aggregation.ScaleGame`),
    every support checked at once (module docstring): the entry point for
    compiled and streaming code. The tensors' *values* are not validated (that
    would read them on the host): they must be finite, with ``C_ll > 0`` for
    present players and at least one present player per element (what
    :class:`~aggregation.ScaleGame` checks; use
    ``solve_scale_game(ScaleGame(a, C, mask), "enumeration")`` for checked input).
    No warning is raised for unconverged elements: read ``converged``.

    Args:
        a: ``(*batch_a, L)`` utilities, ``1 <= L <= 8``.
        C: ``(*batch_C, L, L)`` interaction matrix.
        mask: optional ``(*batch_m, L)`` bool, False for absent players (they play 0).
        tol: regret tolerance relative to the payoff unit (as
            :func:`~aggregation.solve_scale_game`); default
            :func:`aggregation.tolerance.default_tol` of the output dtype.
        differentiable: attach ``x`` to the graph of ``a``/``C`` when they require grad.

    Returns:
        :class:`~aggregation.scale.result.ScaleGameResult` (``method="enumeration"``,
        ``iterations`` = ``2^L - 1`` systems solved) with ``info`` ``"found"``
        (a valid nonempty support was found), ``"zero_total"`` and ``"fallback"``
        (``x = 0`` and uniform weights without a certificate).

    Raises:
        TypeError, ValueError: non-tensor input, shapes that do not fit, ``L > 8``.
    """
    batch, L = _check_tensors(a, C, mask, ("a", "C"), "players")
    if not isinstance(differentiable, bool):
        raise TypeError(
            f"differentiable must be True or False; received {describe(differentiable)}"
        )
    dtype, dtype_out, tol = _dtypes(a, C, tol)
    a_eff, C_eff = _effective(a.to(dtype), C.to(dtype), mask)
    if mask is None:
        present = torch.ones(L, dtype=torch.bool, device=a.device)
    else:
        present = mask
    grad = differentiable and torch.is_grad_enabled() and (a.requires_grad or C.requires_grad)
    return _scale_result(a_eff, C_eff, present, batch, tol, dtype, dtype_out, grad)


def solve_enumeration(
    game: ScaleGame,
    *,
    tol: float | None = None,
    max_iter: int | None = None,
    differentiable: bool = True,
    backward: str = "implicit",
) -> ScaleGameResult:
    """The exact equilibrium of a batch of scale games by enumeration of all supports (``L <= 8``).

    ``method="enumeration"`` of :func:`~aggregation.solve_scale_game`: the
    same equilibria and certificates as ``"exact"`` for P-matrix games, with a
    fixed amount of work and no host reads in the solve or its backward (module
    docstring; the game itself was validated when it was built). Raises one
    ``RuntimeWarning`` when elements did not converge (eager mode only).

    Args:
        game: a :class:`~aggregation.ScaleGame` with ``L <= 8``.
        tol: regret tolerance relative to the payoff unit; default
            :func:`aggregation.tolerance.default_tol` of the output dtype.
        max_iter: accepted for the common signature and ignored (the work is
            fixed: ``2^L - 1`` support systems).
        differentiable: attach ``x`` to the graph of ``a``/``C``.
        backward: ``"implicit"`` or ``"unrolled"``: the same derivative here
            (autograd through the direct solve on the chosen support is the
            implicit derivative of its KKT conditions).

    Returns:
        :class:`~aggregation.scale.result.ScaleGameResult`, as
        :func:`scale_game_enumeration`.

    Raises:
        ValueError: ``L > 8``, bad options.
    """
    if not isinstance(game, ScaleGame):
        raise TypeError(f"game must be a ScaleGame; received {describe(game)}")
    _check_players(game.num_players, "players")
    prep = prepare(game, tol)
    check_options("enumeration", backward, differentiable, max_iter, 1)
    a_eff, C_eff = game.effective(prep.dtype)
    result = _scale_result(
        a_eff,
        C_eff,
        game.present(),
        prep.batch,
        prep.tol,
        prep.dtype,
        out_dtype(game),
        wants_grad(game, differentiable),
    )
    if not torch.compiler.is_compiling() and not bool(result.converged.all()):
        warn_not_converged(result.converged, "enumeration")
    return result


# ------------------------------------------------------------------ convex aggregator
def _convex_candidates(
    Q: Tensor, a: Tensor, present: Tensor, dtype_out: torch.dtype
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The best support of each flat problem (no graph); ``Q (B, L, L)`` symmetric.

    Returns ``w (B, L)`` and ``nu (B,)`` as returned (rounded to ``dtype_out``;
    the fallback where nothing is valid), ``S (B, L)`` the chosen table
    support and ``found (B,)``.
    """
    B, L = a.shape
    dtype = a.dtype
    rtol = _pivot_rtol(dtype)
    supports = support_table(L, a.device)  # (K, L)
    s = supports.to(dtype)

    def one(lo: int, hi: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        ac, Qc, pc = a[lo:hi].unsqueeze(1), Q[lo:hi].unsqueeze(1), present[lo:hi].unsqueeze(1)
        R = torch.stack([ac, torch.ones_like(ac)], -1)  # (n, 1, L, 2)
        X, bad = _principal_solve(Qc, R, s, rtol)  # (n, K, L, 2), (n, K)
        y, z = X[..., 0], X[..., 1]
        nu = (ordered_sum(y.unbind(-1)) - 1) / ordered_sum(z.unbind(-1))  # (n, K)
        w = y - nu.unsqueeze(-1) * z  # (n, K, L), 0 off S
        wr = w.clamp_min(0).to(dtype_out).to(dtype)  # judged as returned
        nur = nu.to(dtype_out).to(dtype)
        res = kkt_residual(Qc, ac, wr, nur, pc)  # (n, K)
        mu = matvec(Qc, w) - ac + nu.unsqueeze(-1)  # (n, K, L)
        scale = ac.abs().amax(-1) + Qc.abs().amax((-1, -2)) + nu.abs()  # (n, K)
        feasible = torch.where(supports, w >= -rtol, (mu >= -rtol * scale.unsqueeze(-1)) | ~pc).all(
            -1
        )
        inside = ~(supports & ~pc).any(-1)  # (n, K)
        valid = inside & ~bad & feasible & torch.isfinite(res) & torch.isfinite(nu)
        k, found = _pick(res, valid)
        rows = torch.arange(k.shape[0], device=a.device)
        p = pc.squeeze(1)  # (n, L)
        uniform = p.to(dtype) / p.sum(-1, keepdim=True).clamp_min(1).to(dtype)
        w_best = torch.where(found.unsqueeze(-1), _gather(wr, k), uniform)
        nu_best = torch.where(found, nur[rows, k], torch.zeros((), dtype=dtype, device=a.device))
        return w_best, nu_best, supports[k] & found.unsqueeze(-1), found

    return _chunked(one, B, a.device, supports.shape[0] * L)  # type: ignore[return-value]


def convex_aggregate_enumeration(
    a: Tensor,
    Q: Tensor,
    mask: Tensor | None = None,
    *,
    tol: float | None = None,
    differentiable: bool = True,
) -> ConvexAggregateResult:
    """``w* = argmax_{w in simplex} a^T w - 1/2 w^T Q w`` by enumeration of all supports.

    The convex aggregator of :func:`~aggregation.convex_aggregate` (``Q``
    replaced by ``(Q + Q^T)/2``, which should be positive definite on the
    present scales) with a fixed amount of work and no host reads (module
    docstring): every support's KKT point, the valid one with the smallest
    KKT residual ``max(|1^T w - 1|, max_l |min(w_l, mu_l)|)``. Values are not
    validated (finite input, at least one present scale per element are the
    caller's to ensure; :func:`~aggregation.convex_aggregate` checks them). No
    warning is raised: read ``converged``. Where no support is valid (possible
    only without positive definiteness) the weights are uniform over the
    present scales, ``nu = 0``, ``info["fallback"]`` True, judged by their residual.

    Args:
        a: ``(*batch_a, L)`` utilities, ``1 <= L <= 8``.
        Q: ``(*batch_Q, L, L)`` redundancy matrix.
        mask: optional ``(*batch_m, L)`` bool; absent scales get weight 0.
        tol: KKT-residual tolerance behind ``converged``; default
            :func:`aggregation.tolerance.default_tol` of the output dtype.
        differentiable: attach ``weights`` to the graph of ``a``/``Q``.

    Returns:
        :class:`~aggregation.ConvexAggregateResult` with ``method="enumeration"``,
        ``iterations`` = ``2^L - 1``, ``info`` ``"found"`` and ``"fallback"``.

    Raises:
        TypeError, ValueError: non-tensor input, shapes that do not fit, ``L > 8``.
    """
    batch, L = _check_tensors(a, Q, mask, ("a", "Q"), "scales")
    if not isinstance(differentiable, bool):
        raise TypeError(
            f"differentiable must be True or False; received {describe(differentiable)}"
        )
    dtype, dtype_out, tol = _dtypes(a, Q, tol)
    a_c, Q_c = a.to(dtype), Q.to(dtype)
    Qs = 0.5 * (Q_c + Q_c.mT)  # (*batch_Q, L, L)
    present = torch.ones(L, dtype=torch.bool, device=a.device) if mask is None else mask
    present = present.expand(*batch, L)
    with torch.no_grad():
        af = a_c.detach().expand(*batch, L).reshape(-1, L)
        Qf = Qs.detach().expand(*batch, L, L).reshape(-1, L, L)
        pf = present.reshape(-1, L)
        w, nu, S, found = _convex_candidates(Qf, af, pf, dtype_out)
        residual = kkt_residual(Qf, af, w, nu, pf)  # of the returned (w, nu)
        obj = objective(Qf, af, w)
    converged = residual <= tol
    if math.isinf(tol):
        converged = torch.ones_like(converged)
    w, nu, S = w.reshape(*batch, L), nu.reshape(batch), S.reshape(*batch, L)
    converged, found = converged.reshape(batch), found.reshape(batch)
    if differentiable and torch.is_grad_enabled() and (a.requires_grad or Q.requires_grad):
        ok = converged & found
        sf = (S & ok.unsqueeze(-1)).to(dtype)
        a_b = a_c.expand(*batch, L)
        R = torch.stack([a_b, torch.ones_like(a_b)], -1)  # (*batch, L, 2)
        X = _principal_solve(Qs, R, sf, _pivot_rtol(dtype))[0]
        y, z = X[..., 0], X[..., 1]
        z_sum = ordered_sum(z.unbind(-1))
        z_sum = torch.where(ok, z_sum, torch.ones_like(z_sum))  # identity systems: no 0/0
        nu_g = (ordered_sum(y.unbind(-1)) - 1) / z_sum
        wg = (y - nu_g.unsqueeze(-1) * z) * sf
        zero = torch.zeros((), dtype=dtype, device=w.device)
        w = w + torch.where(ok.unsqueeze(-1), wg - wg.detach(), zero)
    return ConvexAggregateResult(
        weights=w.to(dtype_out),
        multiplier=nu.to(dtype_out),
        kkt_residual=residual.reshape(batch).to(dtype_out),
        converged=converged,
        iterations=torch.full(batch, (1 << L) - 1, dtype=torch.int64, device=w.device),
        support=S & (w.detach() > 0),
        objective=obj.reshape(batch).to(dtype_out),
        method="enumeration",
        tol=tol,
        info={"found": found, "fallback": ~found},
    )
