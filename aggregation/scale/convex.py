"""The convex aggregator: a planner splits one unit of weight among the scales.

    w* = argmax_{w in Delta_L}  a^T w - 1/2 w^T Q w ,      Delta_L = {w >= 0, 1^T w = 1} ,

with ``Q`` replaced by its symmetric part ``(Q + Q^T)/2``, which must be positive
definite (then ``w*`` is unique). Utility ``a`` rewards a scale, ``Q`` charges
for redundancy between scales; the solution has exact zeros (sparsity) without
any L1 term (an L1 term is constant on the simplex).

KKT conditions (multiplier ``nu`` of the sum constraint, ``mu >= 0`` of ``w >= 0``):

    mu = Q w - a + nu 1 >= 0,   w >= 0,   w^T mu = 0,   1^T w = 1 .

On a support S: ``w_S = Q_SS^{-1} (a_S - nu 1)`` with
``nu = (1^T Q_SS^{-1} a_S - 1) / (1^T Q_SS^{-1} 1)``.

Methods:

* ``"active_set"`` (``L <= 8``; default for those): block principal pivoting
  on S (start from all present scales; scales with ``w_l < 0`` leave, scales
  with ``mu_l < 0`` enter), then single least-index flips, then enumeration of
  all ``2^L - 1`` supports (float64) for the elements still unresolved, and a
  float64 re-solve for float32 elements whose KKT residual exceeds ``tol``.
  Each pivot is one unrolled elimination over the batch (two right-hand sides).
  The engine (:mod:`aggregation.scale.active_set`) is the scale game's exact
  solver with the equality row ``1^T w = 1`` added.
* ``"projected_gradient"`` (any L; default for ``L > 8``): accelerated projected
  gradient (FISTA with adaptive restart) using the sort-based simplex
  projection (:func:`~aggregation.project_simplex`), step ``1/||Q||_inf``, then
  a polishing solve on the detected support, kept where it satisfies KKT.

``kkt_residual`` is ``max(|1^T w - 1|, max_l |min(w_l, mu_l)|)`` (zero exactly at
the optimum; gradient units), computed from the returned weights. For
``L <= 8`` the active-set arithmetic is elementwise in a fixed order (no
batched matrix products or reductions whose order depends on the batch), so an
element's result is the same bits alone or inside any batch, which the exact
causality of :mod:`maha`'s ``"convex"`` fusion rests on. Gradients with
respect to ``a`` and ``Q`` come from the implicit function theorem on the KKT
system on the support (the bordered system ``[[Q_SS, 1], [1^T, 0]]``), by
default, or by autograd through the final support solve
(``backward="unrolled"``).

References: Nocedal & Wright, *Numerical Optimization* (2006), ch. 16
(active-set QP); Judice & Pires (1994) for block pivoting; Beck & Teboulle
(2009) for FISTA; Amos & Kolter, "OptNet", ICML 2017 (differentiating KKT
systems).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..result import BatchedResult, warn_not_converged
from ..simplex import all_supports
from ..small_linalg import serial_ops
from ..tolerance import default_tol
from ..validation import (
    as_tensor,
    check_choice,
    check_int,
    check_nonnegative,
    compute_dtype,
    describe,
)
from ._convex_gradient import projected_gradient
from .active_set import (
    MAX_PLAYERS,
    active_set,
    attach_kkt,
    enumerate_supports,
    kkt_residual,
    support_solve_graph,
    sym,
)
from .active_set import objective as objective_fn

__all__ = ["ConvexAggregateResult", "convex_aggregate"]

MAX_ACTIVE_SET = MAX_PLAYERS


def _check_positive_definite(Q: Tensor, present: Tensor) -> None:
    L = Q.shape[-1]
    both = present.unsqueeze(-1) & present.unsqueeze(-2)
    S = torch.where(both, sym(Q), torch.eye(L, dtype=Q.dtype, device=Q.device))
    _, info = torch.linalg.cholesky_ex(S)
    bad = info != 0
    if bool(bad.any()):
        low = float(torch.linalg.eigvalsh(S[bad])[..., 0].min())
        raise ValueError(
            "Q must have a positive definite symmetric part (Q + Q^T)/2 on the present "
            f"scales; received {int(bad.sum())} of {bad.numel()} batch elements that "
            f"do not, smallest eigenvalue {low:.3g}"
        )


@dataclass(frozen=True, repr=False)
class ConvexAggregateResult(BatchedResult):
    """The convex aggregator's solution for each element of a batch.

    Attributes:
        weights: ``(*batch, L)`` ``w*`` on the simplex (0 for absent scales);
            differentiable with respect to ``a`` and ``Q``.
        multiplier: ``(*batch,)`` ``nu``, the multiplier of ``1^T w = 1``.
        kkt_residual: ``(*batch,)`` ``max(|1^T w - 1|, max_l |min(w_l, mu_l)|)``.
        converged: ``(*batch,)`` bool, ``kkt_residual <= tol``.
        iterations: ``(*batch,)`` int64, pivots or gradient steps.
        support: ``(*batch, L)`` bool, ``{l : w_l > 0}`` as used for gradients.
        objective: ``(*batch,)`` ``a^T w - 1/2 w^T Q w``.
        method: ``"active_set"`` or ``"projected_gradient"``.
        tol: the tolerance behind ``converged``.
        info: extra per-element diagnostics.
    """

    weights: Tensor
    multiplier: Tensor
    kkt_residual: Tensor
    converged: Tensor
    iterations: Tensor
    support: Tensor
    objective: Tensor
    method: str
    tol: float
    info: dict[str, Tensor] = field(default_factory=dict)

    _repr_one = ("method", "weights", "kkt_residual", "converged")
    _repr_batch = ("method", "batch_shape", "num_scales", "converged", "kkt_residual")

    @property
    def batch_shape(self) -> torch.Size:
        """The batch shape ``(*batch,)``."""
        return self.converged.shape

    @property
    def num_scales(self) -> int:
        """``L``, the number of scales (present or not)."""
        return self.weights.shape[-1]


# ------------------------------------------------------------------ active set
def _pivot_judge(
    Q: Tensor, a: Tensor, p: Tensor | None, w: Tensor, nu: Tensor, row_max: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Judge of a pivoted SoA chunk: ``ok`` (finite residual), KKT residual, objective ``(n,)``."""
    everyone = torch.ones((), dtype=torch.bool, device=w.device)
    Qb, ab, wb = Q.permute(2, 0, 1), a.T, w.T
    residual = kkt_residual(Qb, ab, wb, nu, everyone if p is None else p.T)
    return torch.isfinite(residual), residual, objective_fn(Qb, ab, wb)


def _enumeration_judge(
    Q: Tensor, a: Tensor, p: Tensor, S: Tensor, w: Tensor, nu: Tensor, solved: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The candidate of least KKT residual as returned (clamped): ``w, nu, S, residual``."""
    w = w.clamp_min(0)  # (m, K, L), as returned
    res = kkt_residual(Q.unsqueeze(1), a.unsqueeze(1), w, nu, p.unsqueeze(1))  # (m, K)
    ok = solved & torch.isfinite(res) & torch.isfinite(nu)
    res = torch.where(ok, res, torch.inf)
    best = res.argmin(-1)
    rows = torch.arange(best.shape[0], device=a.device)
    wb = w[rows, best]
    nub = torch.where(ok[rows, best], nu[rows, best], 0.0)
    return wb, nub, S[rows, best] & (wb > 0), res[rows, best]


def _solve_active_set(
    Qf: Tensor, af: Tensor, pf: Tensor | None, pfull: Tensor, tol: float, cap: int
) -> tuple[Tensor, ...]:
    """Pivoting (:mod:`aggregation.scale.active_set`), then float64 enumeration where needed.

    Returns ``w, nu, S, iterations, residual, objective`` and the info flags.
    """
    L = af.shape[-1]
    w, nu, S, iters, resolved, residual, objective = active_set(
        Qf, af, pf, cap, bordered=True, judge=_pivot_judge
    )
    enumerated = ~resolved
    fix = enumerated | ~(residual <= tol)
    refined = torch.zeros_like(enumerated)
    if bool(fix.any()):  # enumeration in float64: exact for the rest
        idx = fix.nonzero().squeeze(-1)
        Qd = sym(Qf[idx].double())
        supports = all_supports(L, af.device)[1:]  # (2^L - 1, L), nonempty
        we, nue, Se, _ = enumerate_supports(
            Qd, af[idx].double(), pfull[idx], supports, bordered=True, judge=_enumeration_judge
        )
        we, nue = we.to(af.dtype), nue.to(af.dtype)
        new = kkt_residual(sym(Qf[idx]), af[idx], we, nue, pfull[idx])
        # a float32 answer must be certified on its float32 residual
        better = ~(new >= residual[idx])
        take = idx[better]
        w = w.index_put((take,), we[better])
        nu = nu.index_put((take,), nue[better])
        S = S.index_put((take,), Se[better])
        residual = residual.index_put((take,), new[better])
        objective = objective.index_put((take,), objective_fn(sym(Qf[take]), af[take], w[take]))
        iters = iters.index_put((take,), iters[take] + (1 << L))
        refined = refined.index_put((take,), torch.ones_like(take, dtype=torch.bool))
    return w, nu, S, iters, residual, objective, {"enumerated": enumerated, "refined": refined}


# ------------------------------------------------------------------ interface
def _prepare(a: Any, Q: Any, mask: Any) -> tuple[Tensor, Tensor, Tensor | None, torch.Size, int]:
    a_t = as_tensor(a, "a", min_dim=1)
    Q_t = as_tensor(Q, "Q", min_dim=2)
    L = a_t.shape[-1]
    if L < 1:
        raise ValueError(f"a must have at least one scale (L >= 1); received {describe(a_t)}")
    if Q_t.shape[-1] != Q_t.shape[-2]:
        raise ValueError(f"Q must be square, shape (*batch, L, L); received {describe(Q_t)}")
    if Q_t.shape[-1] != L:
        raise ValueError(
            f"Q must have shape (*batch, {L}, {L}) to match a with L={L}; received {describe(Q_t)}"
        )
    shapes = [a_t.shape[:-1], Q_t.shape[:-2]]
    m_t = None
    if mask is not None:
        m_t = mask if isinstance(mask, Tensor) else torch.as_tensor(mask)
        if m_t.dtype != torch.bool:
            raise TypeError(f"mask must be a boolean tensor; received {describe(mask)}")
        if m_t.dim() < 1 or m_t.shape[-1] != L:
            raise ValueError(f"mask must have shape (*batch, {L}); received {describe(m_t)}")
        m_t = m_t.to(a_t.device)
        shapes.append(m_t.shape[:-1])
        if m_t.numel() and not bool(m_t.any(-1).all()):
            raise ValueError(
                "mask must leave at least one present scale in every batch element; "
                f"received {int((~m_t.any(-1)).sum())} element(s) with none"
            )
    try:
        batch = torch.broadcast_shapes(*shapes)
    except RuntimeError:
        raise ValueError(
            f"the batch shapes of a, Q (and mask) must broadcast; received "
            f"{[tuple(s) for s in shapes]}"
        ) from None
    return a_t, Q_t, m_t, batch, L


def convex_aggregate(
    a: Any,
    Q: Any,
    mask: Any = None,
    *,
    method: str = "auto",
    tol: float | None = None,
    max_iter: int | None = None,
    check_every: int = 10,
    differentiable: bool = True,
    backward: str = "implicit",
    validate: bool = False,
) -> ConvexAggregateResult:
    """``w* = argmax_{w in simplex} a^T w - 1/2 w^T Q w``, batched (see the module docstring).

    Args:
        a: ``(*batch_a, L)`` utilities.
        Q: ``(*batch_Q, L, L)`` redundancy matrix; its symmetric part must be
            positive definite (checked with ``validate=True``).
        mask: optional ``(*batch_m, L)`` bool; absent scales get weight 0.
        method: ``"auto"`` (active set for ``L <= 8``, else projected gradient),
            ``"active_set"`` or ``"projected_gradient"``.
        tol: KKT-residual tolerance behind ``converged`` (absolute, gradient
            units; the weights are dimensionless); default
            :func:`~aggregation.tolerance.default_tol` of the returned dtype. The
            residual is computed from the returned (rounded) weights and
            multiplier; absent scales get weight 0 by construction.
        max_iter: pivots (default ``3 + 2L``, then enumeration) or gradient steps
            (default 10000).
        check_every: projected-gradient steps between residual checks.
        differentiable: attach ``weights`` to the graph of ``a``/``Q``.
        backward: ``"implicit"`` (default) or ``"unrolled"`` (autograd through
            the final support solve).
        validate: check positive definiteness of ``(Q + Q^T)/2`` (one Cholesky).

    Returns:
        :class:`ConvexAggregateResult`. Half-precision input is solved in
        float32 and returned in its dtype.

    Raises:
        ValueError: shapes, NaN/inf, a mask leaving no scale, ``L > 8`` with
            ``method="active_set"``, a non-positive-definite Q with ``validate``.

    Example:
        >>> import torch
        >>> r = convex_aggregate(torch.tensor([1.0, 0.0]), torch.eye(2))
        >>> r.weights  # the scale with more utility gets more weight
        tensor([1., 0.])
    """
    a_t, Q_t, m_t, batch, L = _prepare(a, Q, mask)
    with serial_ops(a_t.device):  # see aggregation.small_linalg: OpenMP gains little here
        check_choice(method, "method", ("auto", "active_set", "projected_gradient"))
        check_choice(backward, "backward", ("implicit", "unrolled"))
        check_every = check_int(check_every, "check_every", minimum=1)
        if method == "auto":
            method = "active_set" if L <= MAX_ACTIVE_SET else "projected_gradient"
        if method == "active_set" and L > MAX_ACTIVE_SET:
            raise ValueError(
                f"method='active_set' enumerates supports and accepts at most {MAX_ACTIVE_SET} "
                f"scales; received L={L} (use method='projected_gradient')"
            )
        in_dtype = torch.promote_types(a_t.dtype, Q_t.dtype)
        dtype = compute_dtype(in_dtype)
        out_dtype = in_dtype if in_dtype in (torch.float16, torch.bfloat16) else dtype
        tol = default_tol(out_dtype) if tol is None else check_nonnegative(tol, "tol")
        with torch.no_grad():
            af = a_t.detach().to(dtype).expand(*batch, L).reshape(-1, L)
            Qf = Q_t.detach().to(dtype).expand(*batch, L, L).reshape(-1, L, L)
            pf = None if m_t is None else m_t.expand(*batch, L).reshape(-1, L)
            pfull = torch.ones_like(af, dtype=torch.bool) if pf is None else pf
            if validate:
                _check_positive_definite(Qf, pfull)
            info_out: dict[str, Tensor] = {}
            if method == "active_set":
                cap = 3 + 2 * L if max_iter is None else check_int(max_iter, "max_iter")
                w, nu, S, iters, residual, objective, info_out = _solve_active_set(
                    Qf, af, pf, pfull, tol, cap
                )
            else:
                cap = 10000 if max_iter is None else check_int(max_iter, "max_iter")
                Qs = sym(Qf)
                w, nu, iters, residual, polished = projected_gradient(
                    Qs, af, pfull, tol, cap, check_every
                )
                S = pfull & (w > 0)
                objective = objective_fn(Qs, af, w)
                info_out = {"polished": polished}
            # masks by construction: an absent scale never carries weight
            w = torch.where(pfull, w, torch.zeros((), dtype=w.dtype, device=w.device))
            S = S & pfull
            if out_dtype != dtype:  # judged on the rounded weights that are returned
                w_round = w.to(out_dtype).to(dtype)
                nu_round = nu.to(out_dtype).to(dtype)
                residual = kkt_residual(sym(Qf), af, w_round, nu_round, pfull)
            converged = residual <= tol
            if not math.isfinite(tol):
                converged = torch.ones_like(converged)
        wants = (
            differentiable and torch.is_grad_enabled() and (a_t.requires_grad or Q_t.requires_grad)
        )
        w_out = w.reshape(*batch, L)
        S_b = S.reshape(*batch, L)
        if wants:
            a_g, Q_g = a_t.to(dtype), Q_t.to(dtype)
            if backward == "unrolled":
                w_out = support_solve_graph(a_g, Q_g, S_b, bordered=True)
            else:
                z = torch.cat([w_out, nu.reshape(*batch, 1)], -1)
                valid = converged.reshape(batch)
                z = attach_kkt(z, a_g, Q_g, S_b, valid, "convex_aggregate", bordered=True)
                w_out = z[..., :-1]
        if not bool(converged.all()):
            warn_not_converged(converged, f"convex_aggregate ({method})")
        return ConvexAggregateResult(
            weights=w_out.to(out_dtype),
            multiplier=nu.reshape(batch).to(out_dtype),
            kkt_residual=residual.reshape(batch).to(out_dtype),
            converged=converged.reshape(batch),
            iterations=iters.reshape(batch),
            support=S_b,
            objective=objective.reshape(batch).to(out_dtype),
            method=method,
            tol=tol,
            info={k: v.reshape(batch) for k, v in info_out.items()},
        )
