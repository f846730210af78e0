"""Active-set solver and fused KKT backward of the convex aggregator (``L <= 8``).

Problem (see :mod:`aggregation.scale.convex`): ``max_{w in simplex} a^T w - 1/2 w^T Q w``
with ``Q`` symmetrised. On a support S the KKT point is

    y = Q_SS^{-1} a_S,   z = Q_SS^{-1} 1_S,   nu = (1^T y - 1) / (1^T z),   w_S = y - nu z ,

one elimination with two right-hand sides. Pivoting: start from every present
scale; scales with ``w_l < 0`` leave, scales with ``mu_l = (Q w - a + nu)_l < 0``
enter (block flips for 3 steps, then Murty's least-index single flips); the
rest (unresolved after ``max_iter`` pivots, or a singular ``Q_SS``) is handled
by :func:`enumerate_supports` in float64. Everything runs on cache-sized
chunks in structure-of-arrays layout (:mod:`aggregation._small_linalg`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._small_linalg import lu_solve_soa, map_chunks, matvec, ordered_sum
from ..implicit_diff import chunked_fused_backward

__all__ = [
    "active_set",
    "enumerate_supports",
    "fused_backward",
    "kkt_residual",
    "objective",
]

_BLOCK_STEPS = 3


def _matvec(Q: Tensor, w: Tensor) -> Tensor:
    """SoA ``Q w``: Q (L, L, m), w (L, m) -> (L, m) (the arithmetic of :func:`matvec`)."""
    return matvec(Q.permute(2, 0, 1), w.T).T


def _solve(Q: Tensor, a: Tensor, sf: Tensor | None, rtol: float) -> tuple[Tensor, Tensor, Tensor]:
    """SoA KKT point on support sf (float 0/1; None: every scale): w (L, m), nu (m,), bad (m,)."""
    L = a.shape[0]
    if sf is None:
        one = torch.ones_like(a[0])
        M = [[Q[i, j] for j in range(L)] for i in range(L)]
        rhs = [[a[i], one] for i in range(L)]
    else:
        ns = 1 - sf
        M = [
            [torch.addcmul(ns[i], Q[i, i], sf[i]) if i == j else Q[i, j] * sf[i] for j in range(L)]
            for i in range(L)
        ]
        rhs = [[a[i] * sf[i], sf[i]] for i in range(L)]
    X, bad = lu_solve_soa(M, rhs, rtol=rtol, positive=True)
    y = torch.stack([X[i][0] for i in range(L)], 0)
    z = torch.stack([X[i][1] for i in range(L)], 0)
    nu = (ordered_sum(y.unbind(0)) - 1) / ordered_sum(z.unbind(0))
    return y - nu * z, nu, bad


def _pivot_chunk(
    Q: Tensor, a: Tensor, present: Tensor | None, max_iter: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One chunk: Q (L, L, n) symmetric, a (L, n), present (L, n) bool or None.

    Returns ``w (L, n)``, ``nu (n,)``, ``S (L, n)`` bool, ``iterations (n,)``,
    ``resolved (n,)`` bool.
    """
    L, n = a.shape
    dtype = a.dtype
    eps = 64.0 * float(torch.finfo(dtype).eps)
    rtol = float(torch.finfo(dtype).eps) ** 0.5
    S = torch.ones_like(a, dtype=torch.bool) if present is None else present.clone()
    a_scale = a.abs().amax(0)
    q_scale = Q.abs().amax(1).amax(0)
    order = torch.arange(L, 0, -1, device=a.device).unsqueeze(-1)
    iters = torch.ones(n, dtype=torch.int64, device=a.device)
    w_out, nu_out, S_out = torch.zeros_like(a), torch.zeros_like(a[0]), torch.zeros_like(S)
    failed = torch.zeros(n, dtype=torch.bool, device=a.device)
    idx = None
    for it in range(max_iter):
        full = it == 0 and present is None  # every scale in the support: M = Q
        w, nu, bad = _solve(Q, a, None if full else S.to(dtype), rtol)
        mu = _matvec(Q, w) - a + nu  # (L, m)
        neg_w = S & (w < -eps)
        neg_mu = ~S & (mu < -eps * (a_scale + q_scale + nu.abs()))
        if present is not None:
            neg_mu = neg_mu & present
        viol = neg_w | neg_mu  # only present scales: S stays inside the mask
        keep = viol.any(0)
        stuck = bad & ~keep  # a singular support and nothing to flip: enumeration decides
        w = (w * S).clamp_min(0)
        if idx is None:
            w_out, nu_out, S_out, failed = w, nu, S, stuck
        else:
            w_out = w_out.index_copy(1, idx, w)
            nu_out = nu_out.index_copy(0, idx, nu)
            S_out = S_out.index_copy(1, idx, S)
            iters = iters.index_fill(0, idx, it + 1)
            failed = failed.index_copy(0, idx, stuck)
        if not bool(keep.any()):
            idx = idx[:0] if idx is not None else None
            break
        k = keep.nonzero().squeeze(-1)
        idx = k if idx is None else idx[k]
        viol, S = viol[:, k], S[:, k]
        if it + 1 < _BLOCK_STEPS:
            S = S ^ viol
        else:
            first = (viol.to(torch.int64) * order).argmax(0)
            S = S ^ torch.nn.functional.one_hot(first, L).T.bool()
        Q, a = Q[:, :, k], a[:, k]
        a_scale, q_scale = a_scale[k], q_scale[k]
        if present is not None:
            present = present[:, k]
        empty = ~S.any(0)
        if bool(empty.any()):  # never an empty support: take the best present scale
            cand = a if present is None else a.masked_fill(~present, -torch.inf)
            best = torch.nn.functional.one_hot(cand.argmax(0), L).T.bool()
            S = S | (best & empty)
    resolved = ~failed
    if idx is not None and idx.numel():
        resolved = resolved.index_fill(0, idx, False)
    return w_out, nu_out, S_out, iters, resolved  # type: ignore[return-value]


def _residual_soa(
    Q: Tensor, a: Tensor, w: Tensor, nu: Tensor, present: Tensor | None
) -> tuple[Tensor, Tensor]:
    """SoA KKT residual and objective ``(n,)``: :func:`kkt_residual` and :func:`objective`."""
    everyone = torch.ones((), dtype=torch.bool, device=w.device)
    p = everyone if present is None else present.T
    Qb, ab, wb = Q.permute(2, 0, 1), a.T, w.T
    return kkt_residual(Qb, ab, wb, nu, p), objective(Qb, ab, wb)


def objective(Q: Tensor, a: Tensor, w: Tensor) -> Tensor:
    """``(...,)`` ``a^T w - 1/2 w^T Q w`` (batch-invariant arithmetic, :func:`matvec`)."""
    return ordered_sum((w * torch.add(a, matvec(Q, w), alpha=-0.5)).unbind(-1))


def active_set(
    Q: Tensor, a: Tensor, present: Tensor | None, max_iter: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Active-set pivoting on a flat batch (no graph).

    Args:
        Q: ``(B, L, L)`` (symmetrised here, per chunk); a: ``(B, L)``;
            present: ``(B, L)`` bool or None.
        max_iter: pivots per element.

    Returns:
        ``w (B, L)``, ``nu (B,)``, ``S (B, L)``, ``iterations (B,)``,
        ``resolved (B,)``, ``residual (B,)`` (KKT residual), ``objective (B,)``.
    """
    B, L = a.shape
    if B == 0:
        z = a.new_zeros(0)
        return a.clone(), z, a > 0, z.long(), z.bool(), z, z

    def one(s: int, e: int) -> tuple[Tensor, ...]:
        Qc = Q[s:e].permute(1, 2, 0)
        Qc = (0.5 * (Qc + Qc.transpose(0, 1))).contiguous()  # (L, L, n) symmetric part
        ac = a[s:e].T.contiguous()
        pc = None if present is None else present[s:e].T.contiguous()
        w, nu, S, it, ok = _pivot_chunk(Qc, ac, pc, max_iter)
        res, obj = _residual_soa(Qc, ac, w, nu, pc)
        ok = ok & torch.isfinite(res)
        return w.T, nu, S.T, it, ok, res, obj

    outs = map_chunks(one, B, a.device)
    return tuple(  # type: ignore[return-value]
        o[0] if len(outs) == 1 else torch.cat(o) for o in zip(*outs)
    )


def kkt_residual(Q: Tensor, a: Tensor, w: Tensor, nu: Tensor, present: Tensor) -> Tensor:
    """``(...,)`` ``max(|1^T w - 1|, max_l |min(w_l, mu_l)|)``, ``mu = Q w - a + nu``.

    The one KKT check of the convex aggregator, for symmetric ``Q`` ``(..., L, L)``,
    ``a``/``w`` ``(..., L)``, ``nu`` ``(...,)`` and ``present`` (broadcasting); an
    absent scale with nonzero weight is a violation (``|w_l|``). Batch-invariant
    arithmetic (:func:`matvec`, :func:`ordered_sum`).
    """
    mu = matvec(Q, w) - a + nu.unsqueeze(-1)
    comp = torch.where(present, torch.minimum(w, mu).abs(), w.abs())
    return torch.maximum(comp.amax(-1), (ordered_sum(w.unbind(-1)) - 1).abs())


def enumerate_supports(
    Q: Tensor, a: Tensor, present: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every support inside ``present`` (pivoted LU); the KKT point with the smallest residual.

    On a support S the bordered system ``[[Q_SS, 1], [1^T, 0]] (w_S, nu) = (a_S, 1)``
    is solved directly, which is nonsingular whenever the KKT point of S is
    unique (also for a singular ``Q_SS``). Each candidate is judged as it would
    be returned (clamped at 0, zero off S) by :func:`kkt_residual`.

    Args: flat ``Q (n, L, L)`` symmetric, ``a (n, L)``, ``present (n, L)``; use float64.

    Returns ``w (n, L)``, ``nu (n,)``, ``S (n, L)``, ``residual (n,)``.
    """
    n, L = a.shape
    dtype = a.dtype
    codes = torch.arange(1, 1 << L, device=a.device)
    supports = (codes.unsqueeze(-1) >> torch.arange(L, device=a.device)) & 1 == 1  # (K, L)
    K = supports.shape[0]
    eye = torch.eye(L, dtype=dtype, device=a.device)
    per = max(1, (1 << 22) // (K * (L + 1) * (L + 1)))
    ws, nus, Ss, rs = [], [], [], []
    for s in range(0, max(n, 1), per):  # one (empty) pass when n == 0
        Qc, ac, pc = Q[s : s + per], a[s : s + per], present[s : s + per]
        m = Qc.shape[0]
        inside = (supports.unsqueeze(0) <= pc.unsqueeze(1)).all(-1)  # (m, K)
        S = supports.unsqueeze(0) & pc.unsqueeze(1)  # (m, K, L)
        Sf = S.to(dtype)
        top = torch.cat([torch.where(S.unsqueeze(-1), Qc.unsqueeze(1), eye), Sf.unsqueeze(-1)], -1)
        bottom = torch.cat([Sf, torch.zeros_like(Sf[..., :1])], -1).unsqueeze(-2)
        M = torch.cat([top, bottom], -2)  # (m, K, L + 1, L + 1)
        rhs = torch.cat([ac.unsqueeze(1) * Sf, torch.ones_like(Sf[..., :1])], -1)
        X, info = torch.linalg.solve_ex(M, rhs.unsqueeze(-1))
        w, nu = X[..., :L, 0], X[..., L, 0]  # (m, K, L), (m, K)
        w = torch.where(S, w.clamp_min(0), 0.0)  # as returned
        res = kkt_residual(Qc.unsqueeze(1), ac.unsqueeze(1), w, nu, pc.unsqueeze(1))
        ok = (info == 0) & inside & torch.isfinite(res) & torch.isfinite(nu)
        res = torch.where(ok, res, torch.full_like(res, torch.inf))
        best = res.argmin(-1)
        rows = torch.arange(m, device=a.device)
        wb = w[rows, best]
        ws.append(wb)
        nus.append(torch.where(ok[rows, best], nu[rows, best], 0.0))
        Ss.append(S[rows, best] & (wb > 0))
        rs.append(res[rows, best])
    return torch.cat(ws), torch.cat(nus), torch.cat(Ss), torch.cat(rs)


def _backward_chunk(
    Q: Tensor, w: Tensor, v: Tensor, s: Tensor, rtol: float
) -> tuple[Tensor, Tensor, Tensor]:
    """SoA: solve ``J^T u = (v, 0)`` for the bordered KKT Jacobian; return grads.

    Q (L, L, n) symmetric, w (L, n), v (L + 1, n), s (L, n) float support. Returns
    ``grad_a (L, n)``, ``grad_Q (L, L, n)`` (with respect to the raw, unsymmetrised
    Q) and ``ok (n,)``.
    """
    L = w.shape[0]
    ns = 1 - s
    one = torch.ones_like(w[0])
    MT = [
        [torch.addcmul(ns[i], Q[i, i], s[i]) if i == j else Q[i, j] * s[j] for j in range(L)]
        + [one]
        for i in range(L)
    ]
    MT.append([s[j] for j in range(L)] + [torch.zeros_like(one)])
    U, bad = lu_solve_soa(MT, [[v[i]] for i in range(L + 1)], rtol=rtol)
    ok = ~bad
    us = torch.stack([U[i][0] for i in range(L)], 0) * s * ok  # (L, n)
    G = -(us.unsqueeze(1) * w.unsqueeze(0))  # (L, L, n): -u_i w_j on rows of S
    return us, 0.5 * (G + G.transpose(0, 1)), ok


def fused_backward(support: Tensor):
    """First-order implicit backward for ``z = (w, nu)`` w.r.t. raw ``(a, Q)`` (Q symmetrised)."""
    return chunked_fused_backward(_backward_chunk, support, symmetrize=True)
