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

from .._small_linalg import serial_ops, solve_small
from .._validation import (
    as_tensor,
    check_choice,
    check_int,
    check_nonnegative,
    compute_dtype,
    describe,
)
from ..implicit_diff import dense_solve, implicit_root
from ..result import _index_batch, warn_not_converged
from ..tolerance import default_tol
from ._convex_active_set import (
    active_set,
    enumerate_supports,
    fused_backward,
    kkt_residual,
)
from ._convex_active_set import objective as objective_fn
from ._convex_gradient import projected_gradient

__all__ = ["ConvexAggregateResult", "convex_aggregate"]

MAX_ACTIVE_SET = 8


def _check_positive_definite(Q: Tensor, present: Tensor) -> None:
    L = Q.shape[-1]
    both = present.unsqueeze(-1) & present.unsqueeze(-2)
    S = torch.where(both, _sym(Q), torch.eye(L, dtype=Q.dtype, device=Q.device))
    _, info = torch.linalg.cholesky_ex(S)
    bad = info != 0
    if bool(bad.any()):
        low = float(torch.linalg.eigvalsh(S[bad])[..., 0].min())
        raise ValueError(
            "Q must have a positive definite symmetric part (Q + Q^T)/2 on the present "
            f"scales; received {int(bad.sum())} of {bad.numel()} batch elements that "
            f"do not, smallest eigenvalue {low:.3g}"
        )


@dataclass(frozen=True)
class ConvexAggregateResult:
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

    @property
    def batch_shape(self) -> torch.Size:
        return self.converged.shape

    def __getitem__(self, index: Any) -> ConvexAggregateResult:
        b = len(self.batch_shape)
        return ConvexAggregateResult(
            weights=_index_batch(self.weights, index, b),
            multiplier=_index_batch(self.multiplier, index, b),
            kkt_residual=_index_batch(self.kkt_residual, index, b),
            converged=_index_batch(self.converged, index, b),
            iterations=_index_batch(self.iterations, index, b),
            support=_index_batch(self.support, index, b),
            objective=_index_batch(self.objective, index, b),
            method=self.method,
            tol=self.tol,
            info={k: _index_batch(v, index, b) for k, v in self.info.items()},
        )

    def __repr__(self) -> str:
        if len(self.batch_shape) == 0:
            ws = ", ".join(f"{v:.4g}" for v in self.weights.detach().reshape(-1).tolist())
            return (
                f"ConvexAggregateResult(method={self.method!r}, weights=[{ws}], "
                f"kkt_residual={float(self.kkt_residual):.3g}, "
                f"converged={bool(self.converged)})"
            )
        return (
            f"ConvexAggregateResult(method={self.method!r}, batch_shape="
            f"{tuple(self.batch_shape)}, L={self.weights.shape[-1]}, converged="
            f"{int(self.converged.sum())}/{self.converged.numel()}, max_kkt_residual="
            f"{float(self.kkt_residual.max()) if self.kkt_residual.numel() else 0.0:.3g})"
        )


# ------------------------------------------------------------------ gradients
def _sym(Q: Tensor) -> Tensor:
    return 0.5 * (Q + Q.mT)


def _optimality(S: Tensor):
    """``F(z; a, Q)`` for ``z = (w, nu)`` ``(*batch, L+1)``; raw (unsymmetrised) Q."""

    def F(z: Tensor, a: Tensor, Q: Tensor) -> Tensor:
        w, nu = z[..., :-1], z[..., -1:]
        mu = (_sym(Q) @ w.unsqueeze(-1)).squeeze(-1) - a + nu
        top = torch.where(S, mu, w)
        return torch.cat([top, w.sum(-1, keepdim=True) - 1], -1)

    return F


def _jacobian(S: Tensor):
    """``dF/dz``: rows of S ``[Q_sym, 1]``, others ``[e_l, 0]``, last ``[1^T, 0]``."""

    def J(z: Tensor, a: Tensor, Q: Tensor) -> Tensor:
        L = z.shape[-1] - 1
        batch = z.shape[:-1]
        eye = torch.eye(L, dtype=z.dtype, device=z.device)
        top = torch.where(S.unsqueeze(-1), _sym(Q).expand(*batch, L, L), eye)
        top = torch.cat([top, S.unsqueeze(-1).to(z.dtype)], -1)  # (*batch, L, L+1)
        bottom = torch.cat(
            [
                torch.ones(*batch, 1, L, dtype=z.dtype, device=z.device),
                torch.zeros(*batch, 1, 1, dtype=z.dtype, device=z.device),
            ],
            -1,
        )
        return torch.cat([top, bottom], -2)

    return J


def _small_transpose_solve(J: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    return solve_small(J, v, transpose=True)


def _support_solve_graph(a: Tensor, Q: Tensor, S: Tensor) -> Tensor:
    """Differentiable ``w`` from the bordered system on ``S`` (unrolled backward)."""
    L = S.shape[-1]
    batch = S.shape[:-1]
    z = torch.zeros(*batch, L + 1, dtype=a.dtype, device=a.device)
    J = _jacobian(S)(z, a, Q)
    zero = torch.zeros((), dtype=a.dtype, device=a.device)
    rhs = torch.cat([torch.where(S, a.expand(*batch, L), zero), torch.ones_like(z[..., :1])], -1)
    if L <= MAX_ACTIVE_SET:
        sol, _ = solve_small(J, rhs)
    else:
        sol, _ = torch.linalg.solve_ex(J, rhs)
    return torch.where(S, sol[..., :-1], zero)


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
    with serial_ops(a_t.device):  # see aggregation._small_linalg: OpenMP gains little here
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
                w, nu, S, iters, resolved, residual, objective = active_set(Qf, af, pf, cap)
                enumerated = ~resolved
                fix = enumerated | ~(residual <= tol)
                refined = torch.zeros_like(enumerated)
                if bool(fix.any()):  # enumeration in float64: exact for the rest
                    idx = fix.nonzero().squeeze(-1)
                    Qd = _sym(Qf[idx].double())
                    we, nue, Se, _ = enumerate_supports(Qd, af[idx].double(), pfull[idx])
                    we, nue = we.to(dtype), nue.to(dtype)
                    new = kkt_residual(_sym(Qf[idx]), af[idx], we, nue, pfull[idx])
                    # a float32 answer must be certified on its float32 residual
                    better = ~(new >= residual[idx])
                    take = idx[better]
                    w = w.index_put((take,), we[better])
                    nu = nu.index_put((take,), nue[better])
                    S = S.index_put((take,), Se[better])
                    residual = residual.index_put((take,), new[better])
                    objective = objective.index_put(
                        (take,), objective_fn(_sym(Qf[take]), af[take], w[take])
                    )
                    iters = iters.index_put((take,), iters[take] + (1 << L))
                    refined = refined.index_put((take,), torch.ones_like(take, dtype=torch.bool))
                info_out = {"enumerated": enumerated, "refined": refined}
            else:
                cap = 10000 if max_iter is None else check_int(max_iter, "max_iter")
                Qs = _sym(Qf)
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
                residual = kkt_residual(_sym(Qf), af, w_round, nu_round, pfull)
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
                w_out = _support_solve_graph(a_g, Q_g, S_b)
            else:
                z = torch.cat([w_out, nu.reshape(*batch, 1)], -1)
                z = implicit_root(
                    _optimality(S_b),
                    z,
                    (a_g, Q_g),
                    jacobian_fn=_jacobian(S_b),
                    linear_solve=_small_transpose_solve if L <= MAX_ACTIVE_SET else dense_solve,
                    valid=converged.reshape(batch),
                    name="convex_aggregate",
                    fused_backward=fused_backward(S_b) if L <= MAX_ACTIVE_SET else None,
                )
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
