"""One active-set (principal pivoting) engine for the two small problems of the scale package.

Both problems are linear complementarity problems on ``L <= 8`` coordinates,
``x >= 0, w >= 0, x^T w = 0`` with a slack ``w`` linear in ``x``:

* the scale game, LCP(M, -a) (:func:`~aggregation.scale.exact.solve_exact`):
  ``w = M x - a``. On a support (active set) S the candidate solves
  ``M_SS x_S = a_S``, ``x = 0`` off S;
* the simplex QP ``argmax_{x in simplex} a^T x - 1/2 x^T M x`` with ``M``
  symmetric (:func:`~aggregation.convex_aggregate`, ``bordered=True``): the
  same LCP with one equality row ``1^T x = 1`` and its multiplier ``nu``,
  ``w = M x - a + nu 1``. On S the bordered system
  ``[[M_SS, 1], [1^T, 0]] (x_S, nu) = (a_S, 1)`` is eliminated through its Schur
  complement: ``y = M_SS^{-1} a_S``, ``z = M_SS^{-1} 1_S``,
  ``nu = (1^T y - 1) / (1^T z)``, ``x_S = y - nu z`` (one elimination, two
  right-hand sides).

A candidate is the solution iff ``x_S >= 0`` and ``w >= 0`` off S. The engine
runs in named phases, each a function below: :func:`initial_support` (the
scale game: ``{l : a_l > 0}``; the QP: every present coordinate),
:func:`solve_support`, :func:`slack`, :func:`violations` (``x_l < 0`` in S,
``w_l < 0`` off S, within a relative ``64 eps``), :func:`pivot` (block
principal pivoting, Kostreva 1978 and Judice & Pires 1994, for ``3`` steps:
flip every violator; then Murty's least-index rule, Murty 1974: flip the first
one only, which terminates for every P-matrix) and :func:`certify_chunk` (the
library's certificate of the profile returned). :func:`active_set` runs them on
cache-sized chunks in structure-of-arrays layout (batch last,
:mod:`aggregation.small_linalg`: every step an elementwise op in a fixed order,
so an element's result does not depend on the batch around it), carrying only
the unresolved elements to the next pivot. What pivoting leaves unresolved
(``max_iter`` pivots, or a singular support with nothing to flip) is decided
by :func:`enumerate_supports`: every support, each system solved with pivoted
LU (the callers run it in float64).

Gradients (implicit function theorem on the KKT conditions on the final
support, written once for both problems): :func:`kkt_optimality` ``F``,
:func:`kkt_jacobian` ``dF/dz``, :func:`fused_backward` (the first-order
backward in one chunked kernel) and :func:`attach_kkt`, which attaches a solution
found without a graph to the graph of ``(a, M)``; :func:`support_solve_graph`
is the same derivative by autograd through the final support solve
(``backward="unrolled"``).

References: Murty, "Note on a Bard-type scheme for solving the complementarity
problem", Opsearch 1974; Kostreva, "Block pivot methods for solving the
complementarity problem", Linear Algebra Appl. 1978; Judice & Pires, "A block
principal pivoting algorithm for large-scale strictly monotone linear
complementarity problems", Comput. Oper. Res. 1994; Cottle, Pang & Stone,
*The Linear Complementarity Problem* (1992), sections 4.1-4.2; Nocedal &
Wright, *Numerical Optimization* (2006), ch. 16; Amos & Kolter, "OptNet", ICML
2017 (differentiating KKT systems).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..implicit_diff import FusedBackward, dense_solve, implicit_root, sum_to_shape
from ..small_linalg import lu_solve_soa, map_chunks, matvec, ordered_sum, serial_ops, solve_small
from . import lcp_kernel
from .game import certify_profile

__all__ = [
    "MAX_PLAYERS",
    "active_set",
    "attach_kkt",
    "certify_chunk",
    "enumerate_supports",
    "fused_backward",
    "initial_support",
    "kkt_jacobian",
    "kkt_optimality",
    "kkt_residual",
    "objective",
    "pivot",
    "slack",
    "solve_support",
    "support_solve_graph",
    "sym",
    "transpose_solve",
    "violations",
]

MAX_PLAYERS = 8  # the pivoting and the enumeration fallback are exact up to here
BLOCK_STEPS = 3  # block flips before Murty's least-index rule


def feasibility_eps(dtype: torch.dtype) -> float:
    """The relative sign-feasibility threshold ``64 eps`` of ``dtype``."""
    return 64.0 * float(torch.finfo(dtype).eps)


def sym(M: Tensor) -> Tensor:
    """``(M + M^T) / 2`` over the last two dimensions."""
    return 0.5 * (M + M.mT)


# ------------------------------------------------------------------ phases (SoA, batch last)
def initial_support(a: Tensor, present: Tensor | None, bordered: bool) -> Tensor:
    """``(L, n)`` bool: the first support: ``{a_l > 0}`` (LCP) or every present coordinate (QP)."""
    if bordered:
        return torch.ones_like(a, dtype=torch.bool) if present is None else present.clone()
    return a > 0 if present is None else (a > 0) & present


def solve_support(
    M: Tensor, a: Tensor, sf: Tensor | None, rtol: float, bordered: bool
) -> tuple[Tensor, Tensor | None, Tensor]:
    """The candidate of support ``sf``: ``x (L, n)`` (0 off S), ``nu (n,)`` or None, ``bad``.

    ``M (L, L, n)``, ``a (L, n)``, ``sf (L, n)`` float 0/1 (None: every
    coordinate, ``M`` itself). Rows off S are those of the identity with a zero
    right-hand side; ``bad (n,)``: a pivot below ``rtol`` of its diagonal (the
    support system is singular or ill-conditioned).
    """
    L = a.shape[0]
    if sf is None:
        rows = [[M[i, j] for j in range(L)] for i in range(L)]
        rhs = [[a[i]] for i in range(L)]
        if bordered:
            one = torch.ones_like(a[0])
            rhs = [r + [one] for r in rhs]
    else:
        ns = 1 - sf
        rows = [
            [torch.addcmul(ns[i], M[i, i], sf[i]) if i == j else M[i, j] * sf[i] for j in range(L)]
            for i in range(L)
        ]
        rhs = [[a[i] * sf[i], sf[i]] if bordered else [a[i] * sf[i]] for i in range(L)]
    X, bad = lu_solve_soa(rows, rhs, rtol=rtol, positive=True)
    y = torch.stack([X[i][0] for i in range(L)], 0)  # (L, n)
    if not bordered:
        return y, None, bad
    z = torch.stack([X[i][1] for i in range(L)], 0)  # (L, n)
    nu = (ordered_sum(y.unbind(0)) - 1) / ordered_sum(z.unbind(0))  # (n,)
    return y - nu * z, nu, bad


def slack(M: Tensor, x: Tensor, a: Tensor, nu: Tensor | None) -> Tensor:
    """``(L, n)`` ``w = M x - a (+ nu)``, summed over columns in order (batch-invariant)."""
    acc = -a if nu is None else nu - a
    for k in range(x.shape[0]):
        acc = torch.addcmul(acc, M[:, k], x[k])
    return acc


def violations(
    S: Tensor,
    x: Tensor,
    w: Tensor,
    nu: Tensor | None,
    present: Tensor | None,
    scales: tuple[Tensor, Tensor],
    eps: float,
) -> Tensor:
    """``(L, n)`` bool: ``x_l < 0`` in S or ``w_l < 0`` off S (present coordinates), to rounding.

    ``scales = (max |a|, M scale)`` per element. The scale game judges ``x``
    relative to ``max |x|`` and ``w`` relative to ``max|a| + L max|M| max|x|``;
    the QP (``nu`` given, ``x`` on the simplex) ``x`` absolutely and ``w``
    relative to ``max|a| + max|M| + |nu|``.
    """
    a_scale, m_scale = scales
    if nu is None:
        xmax = x.abs().amax(0)  # (n,)
        neg_x = S & (x < -eps * xmax)
        neg_w = ~S & (w < -eps * torch.addcmul(a_scale, m_scale, xmax))
    else:
        neg_x = S & (x < -eps)
        neg_w = ~S & (w < -eps * (a_scale + m_scale + nu.abs()))
    if present is not None:
        neg_w = neg_w & present
    return neg_x | neg_w


def pivot(S: Tensor, viol: Tensor, step: int) -> Tensor:
    """The next support: flip every violator (``step < 3``), else the first one (Murty)."""
    if step < BLOCK_STEPS:
        return S ^ viol
    L = S.shape[0]
    order = torch.arange(L, 0, -1, device=S.device).unsqueeze(-1)  # (L, 1): L..1
    first = (viol.to(torch.int64) * order).argmax(0)  # (n,)
    return S ^ torch.nn.functional.one_hot(first, L).T.bool()


def _never_empty(S: Tensor, a: Tensor, present: Tensor | None) -> Tensor:
    """The QP's support is never empty: add the present coordinate of largest ``a``."""
    empty = ~S.any(0)  # (n,)
    if not bool(empty.any()):
        return S
    cand = a if present is None else a.masked_fill(~present, -torch.inf)
    best = torch.nn.functional.one_hot(cand.argmax(0), S.shape[0]).T.bool()
    return S | (best & empty)


def _pivot_chunk(
    M: Tensor, a: Tensor, present: Tensor | None, row_max: Tensor, max_iter: int, bordered: bool
) -> tuple[Tensor, Tensor | None, Tensor, Tensor, Tensor]:
    """The phases on one chunk: ``M (L, L, n)``, ``a (L, n)``, ``present (L, n)`` or None.

    Returns ``x (L, n)`` (clamped at 0, zero off S), ``nu (n,)`` (QP; else
    None), ``S (L, n)``, ``iterations (n,)`` and ``resolved (n,)`` bool.
    """
    L, n = a.shape
    dtype = a.dtype
    eps = feasibility_eps(dtype)
    rtol = float(torch.finfo(dtype).eps) ** 0.5
    S = initial_support(a, present, bordered)
    m_scale = row_max.amax(0) if bordered else row_max.amax(0) * L  # (n,)
    scales = (a.abs().amax(0), m_scale)
    x_out, nu_out, S_out = torch.zeros_like(a), None, torch.zeros_like(S)
    failed = torch.zeros(n, dtype=torch.bool, device=a.device)
    iters = torch.ones(n, dtype=torch.int64, device=a.device)
    idx = None  # indices (into the chunk) of the elements still pivoting
    for it in range(max_iter):
        full = it == 0 and (present is None if bordered else bool(S.all()))  # M itself
        x, nu, bad = solve_support(M, a, None if full else S.to(dtype), rtol, bordered)
        viol = violations(S, x, slack(M, x, a, nu), nu, present, scales, eps)
        keep = viol.any(0)  # (m,): pivot on
        stuck = bad & ~keep  # a singular support and nothing to flip: enumeration decides
        x = (x * S).clamp_min(0)
        if idx is None:
            x_out, nu_out, S_out, failed = x, nu, S, stuck
        else:
            x_out = x_out.index_copy(1, idx, x)
            nu_out = None if nu is None else nu_out.index_copy(0, idx, nu)
            S_out = S_out.index_copy(1, idx, S)
            iters = iters.index_fill(0, idx, it + 1)
            failed = failed.index_copy(0, idx, stuck)
        if not bool(keep.any()):
            idx = None
            break
        k = keep.nonzero().squeeze(-1)
        idx = k if idx is None else idx[k]
        S = pivot(S[:, k], viol[:, k], it + 1)
        M, a = M[:, :, k], a[:, k]
        scales = (scales[0][k], scales[1][k])
        if present is not None:
            present = present[:, k]
        if bordered:
            S = _never_empty(S, a, present)
    resolved = ~failed if idx is None else (~failed).index_fill(0, idx, False)
    return x_out, nu_out, S_out, iters, resolved


Judge = Callable[
    [Tensor, Tensor, Tensor | None, Tensor, Tensor | None, Tensor], "tuple[Tensor, ...]"
]


def active_set(
    M: Tensor,
    a: Tensor,
    present: Tensor | None,
    max_iter: int,
    *,
    bordered: bool,
    judge: Judge,
) -> tuple[Tensor, ...]:
    """Principal pivoting on a flat batch (no graph), in cache-sized SoA chunks.

    Args:
        M: ``(B, L, L)`` (symmetrised per chunk with ``bordered``); a: ``(B, L)``;
            present: ``(B, L)`` bool or None (every coordinate present; absent
            ones stay out of the support).
        max_iter: pivots per element.
        bordered: the simplex QP (with the equality row) instead of the LCP.
        judge: ``judge(M, a, present, x, nu, row_max)`` on each chunk in SoA
            layout (``row_max (L, n) = max_k |M_lk|``) returns ``(ok (n,),
            *extras)`` with batch-first extras (:func:`certify_chunk`, or the
            QP's residual and objective); ``ok`` False marks an element unresolved.

    Returns:
        ``x (B, L)``, ``nu (B,)`` (zeros for the LCP), ``S (B, L)`` bool,
        ``iterations (B,)``, ``resolved (B,)`` bool (False: not resolved within
        ``max_iter`` pivots, a singular support with nothing left to flip, or
        rejected by ``judge``), then the judge's extras, concatenated over chunks.
    """
    B, L = a.shape

    def one(s: int, e: int) -> tuple[Tensor, ...]:
        Mc = M[s:e].permute(1, 2, 0)  # (L, L, n)
        Mc = (0.5 * (Mc + Mc.transpose(0, 1)) if bordered else Mc).contiguous()
        ac = a[s:e].T.contiguous()  # (L, n)
        pc = None if present is None else present[s:e].T.contiguous()
        row_max = Mc.abs().amax(1)  # (L, n)
        x, nu, S, it, ok = _pivot_chunk(Mc, ac, pc, row_max, max_iter, bordered)
        if nu is None:
            nu = torch.zeros_like(ac[0])
        good, *extras = judge(Mc, ac, pc, x, nu, row_max)
        return x.T, nu, S.T, it, ok & good, *extras

    outs = map_chunks(one, B, a.device) or [one(0, 0)]
    return tuple(o[0] if len(outs) == 1 else torch.cat(o) for o in zip(*outs))


def certify_chunk(tol: float) -> Judge:
    """The scale game's judge: the certificate (:func:`~aggregation.scale.game.certify_profile`).

    ``ok`` is False where the profile diverged; the extras are the four
    :class:`~aggregation.scale.game.Certificate` fields.
    """

    def judge(
        M: Tensor, a: Tensor, p: Tensor | None, x: Tensor, nu: Tensor, row_max: Tensor
    ) -> tuple[Tensor, ...]:
        cert = certify_profile(
            a.T, M.permute(2, 0, 1), x.T, None if p is None else p.T, tol, row_max.T
        )
        return ~cert.diverged, *cert

    return judge


# ------------------------------------------------------------------ the QP's residual
def objective(Q: Tensor, a: Tensor, w: Tensor) -> Tensor:
    """``(...,)`` ``a^T w - 1/2 w^T Q w`` (batch-invariant arithmetic, :func:`matvec`)."""
    return ordered_sum((w * torch.add(a, matvec(Q, w), alpha=-0.5)).unbind(-1))


def kkt_residual(Q: Tensor, a: Tensor, w: Tensor, nu: Tensor, present: Tensor) -> Tensor:
    """``(...,)`` ``max(|1^T w - 1|, max_l |min(w_l, mu_l)|)``, ``mu = Q w - a + nu``.

    The one KKT check of the simplex QP (the convex aggregator), for symmetric
    ``Q`` ``(..., L, L)``, ``a``/``w`` ``(..., L)``, ``nu`` ``(...,)`` and
    ``present`` (broadcasting); an absent coordinate with nonzero weight is a
    violation (``|w_l|``). Batch-invariant arithmetic (:func:`matvec`,
    :func:`ordered_sum`).
    """
    mu = matvec(Q, w) - a + nu.unsqueeze(-1)
    comp = torch.where(present, torch.minimum(w, mu).abs(), w.abs())
    return torch.maximum(comp.amax(-1), (ordered_sum(w.unbind(-1)) - 1).abs())


# ------------------------------------------------------------------ fallback: every support
EnumerationJudge = Callable[..., "tuple[Tensor, ...]"]


def enumerate_supports(
    M: Tensor,
    a: Tensor,
    present: Tensor,
    supports: Tensor,
    *,
    bordered: bool,
    judge: EnumerationJudge,
) -> tuple[Tensor, ...]:
    """The candidate of every support (pivoted LU), for the elements pivoting left unresolved.

    Args:
        M: ``(n, L, L)`` (symmetric for the QP); a: ``(n, L)``; present:
            ``(n, L)`` bool; supports: ``(K, L)`` bool table. Use float64.
        bordered: solve the QP's bordered system
            ``[[M_SS, 1], [1^T, 0]] (x_S, nu) = (a_S, 1)`` (nonsingular whenever
            the KKT point of S is unique, also for a singular ``M_SS``) instead
            of ``M_SS x_S = a_S``.
        judge: ``judge(M, a, present, S, x, nu, solved)`` on each chunk of
            ``m`` elements (``S (m, K, L)`` the supports inside ``present``,
            ``x (m, K, L)`` 0 off S and not clamped, ``nu (m, K)`` (0 for the
            LCP), ``solved (m, K)``: the support lies inside ``present`` and its
            system is nonsingular) returns batch-first tensors.

    Returns:
        The judge's tensors, concatenated over the chunks (which keep the
        ``(m, K, L, L)`` systems a few MiB).
    """
    n, L = a.shape
    dtype = a.dtype
    K = supports.shape[0]
    eye = torch.eye(L, dtype=dtype, device=a.device)
    size = L + 1 if bordered else L
    per = max(1, (1 << 22) // (K * size * size))
    outs = []
    for s in range(0, max(n, 1), per):  # one (empty) pass when n == 0
        Mc, ac, pc = M[s : s + per], a[s : s + per], present[s : s + per]
        inside = (supports.unsqueeze(0) <= pc.unsqueeze(1)).all(-1)  # (m, K)
        S = supports.unsqueeze(0) & pc.unsqueeze(1)  # (m, K, L)
        Sf = S.to(dtype)
        system = torch.where(S.unsqueeze(-1), Mc.unsqueeze(1), eye)  # (m, K, L, L)
        rhs = torch.where(S, ac.unsqueeze(1), 0.0)  # (m, K, L)
        if bordered:
            top = torch.cat([system, Sf.unsqueeze(-1)], -1)
            bottom = torch.cat([Sf, torch.zeros_like(Sf[..., :1])], -1).unsqueeze(-2)
            system = torch.cat([top, bottom], -2)  # (m, K, L + 1, L + 1)
            rhs = torch.cat([ac.unsqueeze(1) * Sf, torch.ones_like(Sf[..., :1])], -1)
        X, info = torch.linalg.solve_ex(system, rhs.unsqueeze(-1))
        x = torch.where(S, X[..., :L, 0], 0.0)  # (m, K, L)
        nu = X[..., L, 0] if bordered else torch.zeros_like(X[..., 0, 0])  # (m, K)
        outs.append(judge(Mc, ac, pc, S, x, nu, (info == 0) & inside))
    return tuple(torch.cat(o) for o in zip(*outs))


# ------------------------------------------------------------------ gradients
def kkt_optimality(support: Tensor, bordered: bool) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """``F(z; a, M)``: ``where(S, w, x)`` (then ``1^T x - 1`` for the QP) for a fixed support S.

    ``z = x`` (LCP) or ``(x, nu)`` (QP, ``(*batch, L + 1)``; the raw, unsymmetrised
    ``M`` is symmetrised here), ``w = M x - a (+ nu)``.
    """

    def F(z: Tensor, a: Tensor, M: Tensor) -> Tensor:
        if not bordered:
            w = (M @ z.unsqueeze(-1)).squeeze(-1) - a
            return torch.where(support, w, z)
        x, nu = z[..., :-1], z[..., -1:]
        w = (sym(M) @ x.unsqueeze(-1)).squeeze(-1) - a + nu
        return torch.cat([torch.where(support, w, x), x.sum(-1, keepdim=True) - 1], -1)

    return F


def kkt_jacobian(support: Tensor, bordered: bool) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """``dF/dz``: rows of S ``M`` (QP: ``[M_sym, 1]``), others ``e_l``; QP last row ``[1^T, 0]``."""

    def J(z: Tensor, a: Tensor, M: Tensor) -> Tensor:
        L = support.shape[-1]
        batch = z.shape[:-1]
        eye = torch.eye(L, dtype=M.dtype, device=M.device)
        top = torch.where(
            support.unsqueeze(-1), (sym(M) if bordered else M).expand(*batch, L, L), eye
        )
        if not bordered:
            return top
        top = torch.cat([top, support.unsqueeze(-1).to(z.dtype)], -1)  # (*batch, L, L + 1)
        bottom = torch.cat([z.new_ones(*batch, 1, L), z.new_zeros(*batch, 1, 1)], -1)
        return torch.cat([top, bottom], -2)

    return J


def transpose_solve(J: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """``J^T u = v`` by unrolled elimination (:func:`~aggregation.small_linalg.solve_small`)."""
    return solve_small(J, v, transpose=True)


def _backward_chunk(
    M: Tensor, x: Tensor, v: Tensor, s: Tensor, rtol: float, bordered: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """SoA: solve ``J^T u = v`` (:func:`kkt_jacobian`); ``grad_a = u_S``, ``grad_M = -u_S x^T``.

    ``M (L, L, n)`` (symmetric for the QP), ``x (L, n)``, ``v (L (+1), n)``,
    ``s (L, n)`` float 0/1 support. Returns ``grad_a (L, n)``, ``grad_M (L, L, n)``
    (symmetrised for the QP: the gradient with respect to the raw ``M``) and
    ``ok (n,)`` (False: singular, zero gradient).
    """
    L = x.shape[0]
    ns = 1 - s
    MT = [
        [torch.addcmul(ns[i], M[i, i], s[i]) if i == j else M[j, i] * s[j] for j in range(L)]
        for i in range(L)
    ]
    if bordered:
        one = torch.ones_like(x[0])
        MT = [row + [one] for row in MT]
        MT.append([s[j] for j in range(L)] + [torch.zeros_like(one)])
    U, bad = lu_solve_soa(MT, [[v[i]] for i in range(len(MT))], rtol=rtol, positive=not bordered)
    ok = ~bad
    us = torch.stack([U[i][0] for i in range(L)], 0) * s * ok  # (L, n), singular -> zero
    G = -(us.unsqueeze(1) * x.unsqueeze(0))  # (L, L, n): -u_i x_j
    return us, (0.5 * (G + G.transpose(0, 1)) if bordered else G), ok


def fused_backward(support: Tensor, bordered: bool) -> FusedBackward:
    """The first-order implicit backward ``(z, v, a, M) -> ((grad_a, grad_M), ok)``, fused.

    Runs :func:`_backward_chunk` over cache-sized chunks of the flattened batch
    (SoA) and reduces the gradients to the parameters' (possibly broadcast)
    shapes. ``z (*batch, L (+1))``, ``v`` like ``z``, ``support (*batch, L)``.
    """

    def fused(z: Tensor, v: Tensor, a: Tensor, M: Tensor) -> tuple[tuple[Tensor, Tensor], Tensor]:
        L = support.shape[-1]
        batch = z.shape[:-1]
        if not bordered and lcp_kernel.applies(z, v, M):  # the scale game, game by game
            Mf = M.expand(*batch, L, L).reshape(-1, L, L)  # (B, L, L)
            ga, gM, ok = lcp_kernel.kkt_backward(
                Mf, z.reshape(-1, L), v.reshape(-1, L), support.reshape(-1, L)
            )
            grad_a = sum_to_shape(ga.reshape(*batch, L), a.shape)
            grad_M = sum_to_shape(gM.reshape(*batch, L, L), M.shape)
            return (grad_a, grad_M), ok.reshape(batch)
        with serial_ops(z.device):
            xf = z[..., :L].reshape(-1, L)  # (B, L)
            vf = v.reshape(-1, v.shape[-1])  # (B, K)
            Sf = support.reshape(-1, L)  # (B, L)
            Mf = M.expand(*batch, L, L).reshape(-1, L, L)  # (B, L, L)
            B = xf.shape[0]
            rtol = float(torch.finfo(z.dtype).eps) ** 0.5
            ga = torch.empty_like(xf)
            gM = xf.new_empty(B, L, L)
            ok = torch.ones(B, dtype=torch.bool, device=z.device)

            def one(s: int, e: int) -> None:  # writes disjoint slices of ga, gM, ok
                Mc = Mf[s:e].permute(1, 2, 0)  # (L, L, n)
                if bordered:
                    Mc = 0.5 * (Mc + Mc.transpose(0, 1))
                g_a, g_M, ok_c = _backward_chunk(
                    Mc.contiguous(),
                    xf[s:e].T.contiguous(),
                    vf[s:e].T.contiguous(),
                    Sf[s:e].T.to(z.dtype).contiguous(),
                    rtol,
                    bordered,
                )
                ga[s:e] = g_a.T
                gM[s:e] = g_M.permute(2, 0, 1)
                ok[s:e] = ok_c

            map_chunks(one, B, z.device)
            grad_a = sum_to_shape(ga.reshape(*batch, L), a.shape)
            grad_M = sum_to_shape(gM.reshape(*batch, L, L), M.shape)
            return (grad_a, grad_M), ok.reshape(batch)

    return fused


def attach_kkt(
    z: Tensor, a: Tensor, M: Tensor, support: Tensor, valid: Tensor, name: str, bordered: bool
) -> Tensor:
    """Attach ``z`` (``x``; the QP: ``(x, nu)``) to the graph of ``a``/``M`` by the KKT conditions.

    :func:`~aggregation.implicit_root` with :func:`kkt_optimality`,
    :func:`kkt_jacobian` and, for small problems (every scale game; a QP with
    ``L <= 8``), the unrolled transposed solve and :func:`fused_backward`.
    For the scale game and strict complementarity this is
    ``dx_S = M_SS^{-1} (da_S - dM_S. x)``.
    """
    small = not bordered or support.shape[-1] <= MAX_PLAYERS
    return implicit_root(
        kkt_optimality(support, bordered),
        z,
        (a, M),
        jacobian_fn=kkt_jacobian(support, bordered),
        linear_solve=transpose_solve if small else dense_solve,
        valid=valid,
        name=name,
        fused_backward=fused_backward(support, bordered) if small else None,
    )


def support_solve_graph(a: Tensor, M: Tensor, support: Tensor, bordered: bool) -> Tensor:
    """Differentiable ``x`` ``(*batch, L)`` of the KKT system on ``support`` (0 off it).

    The same derivative as :func:`attach_kkt`, by autograd through the solve
    (``backward="unrolled"``).
    """
    L = support.shape[-1]
    batch = support.shape[:-1]
    zero = torch.zeros((), dtype=a.dtype, device=a.device)
    J = kkt_jacobian(support, bordered)(a.new_zeros(*batch, L + bordered), a, M)
    rhs = torch.where(support, a.expand(*batch, L), zero)
    if bordered:
        rhs = torch.cat([rhs, rhs.new_ones(*batch, 1)], -1)
    if L <= MAX_PLAYERS:
        sol, _ = solve_small(J, rhs)
    else:
        sol, _ = torch.linalg.solve_ex(J, rhs)
    return torch.where(support, sol[..., :L], zero)
