"""The logit (entropy-regularised) equilibrium of the scale game on the simplex.

For utilities ``a`` ``(*batch, L)``, interactions ``C`` ``(*batch, L, L)``, the
present players ``P`` (``mask``) and a temperature ``tau > 0``, the logit
equilibrium is the point ``w`` of the simplex over ``P`` with

    w = softmax_P((a - C w) / tau)                       (fixed point)

(``w_l = 0`` off ``P``). Equivalently ``w`` solves the variational inequality of
``F(w) = C w - a + tau (log w + 1)`` on the simplex: the scale game's
pseudo-gradient plus ``tau`` times the gradient of the negative entropy. For
symmetric ``C`` it is the unique maximiser of the potential
``a^T w - 1/2 w^T C w + tau H(w)`` (``H(w) = -sum_l w_l log w_l``). Where the
symmetric part of ``C`` is positive semidefinite it exists, is unique, and every
present player has ``w_l > 0``; ``C = 0`` gives ``softmax(a / tau)``, and as
``tau -> 0`` it tends to the Nash equilibrium of the simplex-constrained game
(proofs/10_logit_equilibrium.md).

Solver. In the scores ``v = a - C w`` the fixed point is an unconstrained root
of ``G(v) = v - a + C s(v)``, ``s(v) = softmax_P(v / tau)``, whose Jacobian is
``J = I + C J_s / tau`` with ``J_s = diag(s) - s s^T``; ``J`` is invertible where
``sym(C)`` is positive semidefinite. Each iteration takes the Newton direction
``d = -J^{-1} G(v)`` (one batched ``L x L`` solve) and keeps, per batch element,
the candidate among ``v + alpha d`` (``alpha`` in :data:`STEP_SIZES`), the plain
fixed-point step ``v <- a - C s(v)`` (a contraction where ``tau`` is large
against ``||C||``) and ``v`` itself with the smallest ``||G||_2`` over the
present players. ``d`` is a descent direction of ``||G||^2``, so the merit never
increases; near the root the full Newton step is taken and convergence is
quadratic. The iteration count is fixed (``max_iter``) and nothing is read on
the host, so ``torch.compile(..., fullgraph=True)`` traces the solve and its
backward.

Certificate. ``residual = max_{l in P} |w_l - softmax_P((a - C w) / tau)_l|`` on
the returned weights (dimensionless), and ``converged`` iff
``residual <= tol`` (default :func:`aggregation.tolerance.default_tol` of the
output dtype).

Gradients with respect to ``a``, ``C`` and ``tau`` are those of the implicit
function theorem at the returned point, ``dv = -J^{-1} dG`` (Krantz & Parks
2002): the returned scores are ``v* - J^{-1} (G(v*) - G(v*)|detached)``, whose
value is ``v*`` to the bit and whose derivative is the implicit one (one
batched ``L x L`` solve, first order; ``J`` is held fixed). This is the same
device as the support solve of :mod:`aggregation.scale.enumeration`, used instead
of :func:`aggregation.implicit_root` because that backward reads a flag on the
host (its warning), which ``torch.compile(fullgraph=True)`` cannot trace.
Elements whose ``J`` is singular (possible only outside the monotone case) get
zero gradient.

References: McKelvey & Palfrey, "Quantal response equilibria for normal form
games", Games Econ. Behav. 10 (1995); Rosen, "Existence and uniqueness of
equilibrium points for concave n-person games", Econometrica 33 (1965);
Facchinei & Pang, *Finite-Dimensional Variational Inequalities and
Complementarity Problems* (2003), section 2.3 (strongly monotone VIs).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..small_linalg import lu_solve_soa
from ..tolerance import resolve_tol
from ..validation import check_finite, check_int, compute_dtype, describe

__all__ = ["DEFAULT_MAX_ITER", "STEP_SIZES", "LogitScaleResult", "logit_scale_equilibrium"]

#: Iterations of the damped Newton method (enough for float64 on the tested games).
DEFAULT_MAX_ITER = 20
#: Newton step sizes tried at every iteration (the best by merit is kept).
STEP_SIZES = (1.0, 0.5, 0.25, 1.0 / 16, 1.0 / 256)


@dataclass(frozen=True)
class LogitScaleResult:
    """The logit equilibria of a batch of scale games.

    Attributes:
        weights: ``(*batch, L)`` on the simplex over the present players, every
            present one ``> 0``, absent ones exactly 0 (all zero where no player
            is present); differentiable with respect to ``a``, ``C`` and ``tau``.
        scores: ``(*batch, L)`` ``v = a - C w`` at the solution (present entries).
        residual: ``(*batch,)`` ``max_l |w_l - softmax_P((a - C w) / tau)_l|``.
        converged: ``(*batch,)`` bool, ``residual <= tol``.
        iterations: ``(*batch,)`` int64, iterations before ``converged`` first held
            (``max_iter`` where it never did).
        tol: the tolerance of ``converged``.
    """

    weights: Tensor
    scores: Tensor
    residual: Tensor
    converged: Tensor
    iterations: Tensor
    tol: float


def _check_inputs(
    a: Any, C: Any, mask: Any, tau: Any, check_values: bool
) -> tuple[torch.Size, torch.dtype]:
    """Types and shapes (no host reads); values too with ``check_values`` (host reads)."""
    for t, name, ndim in ((a, "a", 1), (C, "C", 2)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; received {describe(t)}")
        if t.dim() < ndim:
            raise ValueError(f"{name} must have at least {ndim} dimensions; received {describe(t)}")
    L = a.shape[-1]
    if C.shape[-2:] != (L, L):
        raise ValueError(f"C must have shape (*batch, {L}, {L}) to match a; received {describe(C)}")
    if L < 1:
        raise ValueError(f"a must hold at least one player (L >= 1); received {describe(a)}")
    shapes = [a.shape[:-1], C.shape[:-2]]
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"mask must be a boolean tensor; received {describe(mask)}")
        if mask.dim() < 1 or mask.shape[-1] != L:
            raise ValueError(f"mask must have shape (*batch, {L}); received {describe(mask)}")
        shapes.append(mask.shape[:-1])
    if isinstance(tau, Tensor):
        if not tau.is_floating_point():
            raise TypeError(
                f"tau must be a positive number or floating tensor; received {describe(tau)}"
            )
        shapes.append(tau.shape)
    elif isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise TypeError(
            f"tau must be a positive number or floating tensor; received {describe(tau)}"
        )
    elif not float(tau) > 0 or float(tau) == float("inf"):
        raise ValueError(f"tau must be a finite number > 0; received {tau!r}")
    try:
        batch = torch.broadcast_shapes(*shapes)
    except RuntimeError:
        raise ValueError(
            "the batch shapes of a (*batch, L), C (*batch, L, L), mask (*batch, L) and tau "
            f"(*batch,) must broadcast; received {[tuple(s) for s in shapes]}"
        ) from None
    dtype = torch.promote_types(a.dtype, C.dtype)
    if isinstance(tau, Tensor):
        dtype = torch.promote_types(dtype, tau.dtype)
    if check_values and not torch.compiler.is_compiling():
        check_finite(a, "a")
        check_finite(C, "C")
        if isinstance(tau, Tensor):
            check_finite(tau, "tau")
            if tau.numel() and not bool((tau > 0).all()):
                raise ValueError(
                    f"tau must be > 0 everywhere; received {int((tau <= 0).sum())} "
                    f"entries <= 0 in {describe(tau)}"
                )
    return batch, dtype


# Internals work in structure-of-arrays layout, batch last (a softmax or a reduction over
# L = 4 contiguous entries costs far more per element than elementwise ops over the batch):
# vectors ``(..., L, B)``, matrices ``(L, L, B)``, per-element scalars ``(1, B)``.


def _softmax(v: Tensor, t: Tensor, present: Tensor, any_present: Tensor, dim: int = -2) -> Tensor:
    """``softmax_P(v / t)`` over ``dim`` (L): zero off ``present``; all zero where none is."""
    logits = (v / t).masked_fill(~present, float("-inf"))  # (..., L, B)
    logits = logits.masked_fill(~any_present, 0.0)
    return torch.softmax(logits, dim=dim) * any_present.to(v.dtype)  # (..., L, B)


def _matvec(C: Tensor, v: Tensor) -> Tensor:
    """``(C v)_l = sum_k C_lk v_k`` for ``C`` ``(L, L, B)``, ``v`` ``(..., L, B)``, in order."""
    L = C.shape[0]
    acc = C[:, 0] * v[..., 0:1, :]  # (..., L, B)
    for k in range(1, L):
        acc = torch.addcmul(acc, C[:, k], v[..., k : k + 1, :])
    return acc


def _newton(s: Tensor, C: Tensor, t: Tensor, g: Tensor, present: Tensor) -> Tensor:
    """``d = -J^{-1} g`` ``(L, B)`` on the present players, ``J = I + C J_s / t`` (0 off them).

    With ``d = q + c 1``, ``s^T q = 0`` and ``z = diag(s) q`` the system becomes the
    bordered one ``[[t diag(s)^{-1} + C, 1], [1^T, 0]] (z, t c) = (-t g, 0)``, whose
    block ``M = t diag(s)^{-1} + C`` has a positive definite symmetric part where
    ``sym(C)`` is positive semidefinite: unpivoted elimination is then well defined
    and ``1^T M^{-1} 1 > 0`` (:func:`aggregation.small_linalg.lu_solve_soa`,
    elementwise over the batch). Solved through its Schur complement,
    ``y = M^{-1}(-t g)``, ``e = M^{-1}(t 1)``, ``z = y - (1^T y / 1^T e) e``, and
    ``d = -g - C z / t``. Absent players' rows and columns are the identity's.
    Elements whose elimination meets a tiny pivot or a zero Schur complement
    (possible only outside the monotone case) get ``d = 0``.
    """
    L = s.shape[0]
    dtype = s.dtype
    tiny = torch.finfo(dtype).tiny ** 0.5
    pf = present.to(dtype)  # (L, B)
    diag = t / s.clamp(min=tiny)  # (L, B)
    one, zero = torch.ones_like(diag[0]), torch.zeros_like(diag[0])
    M = []
    for i in range(L):
        row = []
        for j in range(L):
            entry = C[i, j] + diag[i] if i == j else C[i, j]  # (B,)
            both = present[i] & present[j] if i != j else present[i]
            row.append(torch.where(both, entry, one if i == j else zero))
        M.append(row)
    rg = -t[0] * g * pf  # (L, B)
    r1 = t[0] * pf  # (L, B)
    X, bad = lu_solve_soa(M, [[rg[i], r1[i]] for i in range(L)], rtol=64 * torch.finfo(dtype).eps)
    y = torch.stack([X[i][0] for i in range(L)], 0)  # (L, B)
    e = torch.stack([X[i][1] for i in range(L)], 0)  # (L, B)
    den = (e * pf).sum(0, keepdim=True)  # (1, B), > 0 in the monotone case
    ok = (den != 0) & ~bad.unsqueeze(0)
    c = (y * pf).sum(0, keepdim=True) / torch.where(ok, den, torch.ones_like(den))
    z = (y - c * e) * pf  # (L, B)
    d = (-g - _matvec(C, z) / t) * pf  # (L, B)
    ok = ok & torch.isfinite(d).all(0, keepdim=True)
    return torch.where(ok, d, torch.zeros_like(d))


def _iterate(
    a: Tensor,
    C: Tensor,
    t: Tensor,
    present: Tensor,
    any_present: Tensor,
    tol: float,
    max_iter: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Damped Newton on ``G(v) = v - a + C s(v)`` (module docstring): ``(v, s(v), iterations)``.

    SoA shapes: ``a`` ``(L, B)``, ``C`` ``(L, L, B)``, ``t`` ``(1, B)``. Per iteration
    and element, the candidate with the smallest merit ``||G||^2`` (over the present
    players) among: the current ``v`` (first, so ties keep it), the fixed-point step
    ``a - C s(v)`` and ``v + alpha d`` for ``alpha`` in :data:`STEP_SIZES`. An element
    whose iterate is certified (fixed-point residual ``<= tol``) takes that iteration's
    step and then stays where it is. Eager CPU calls stop once an iteration keeps every
    element where it was: every later iteration would too, so the result is the same
    bits as ``max_iter`` iterations, element by element, whatever the batch around it
    (one host read per iteration; none on accelerators or while compiling, where all
    ``max_iter`` run).
    """
    pf = present.to(a.dtype)  # (L, B)
    steps = torch.tensor(STEP_SIZES, dtype=a.dtype, device=a.device).view(-1, 1, 1)  # (K,1,1)
    early_exit = a.device.type == "cpu" and not torch.compiler.is_compiling()

    def weights(v: Tensor) -> Tensor:
        return _softmax(v, t, present, any_present)

    def residual_of(v: Tensor, s: Tensor) -> Tensor:
        return (v - a + _matvec(C, s)) * pf  # (..., L, B)

    uniform = pf / pf.sum(0, keepdim=True).clamp(min=1)  # (L, B)
    v = a - _matvec(C, uniform)  # (L, B)
    s = weights(v)
    g = residual_of(v, s)
    m = (g * g).sum(0)  # (B,)
    iterations = torch.zeros(a.shape[-1], dtype=torch.int64, device=a.device)
    settled = ~any_present[0]  # (B,)
    for _ in range(max_iter):
        d = _newton(s, C, t, g, present)  # (L, B)
        picard = a - _matvec(C, s)  # (L, B)
        cands = torch.cat([picard.unsqueeze(0), v + steps * d], 0)  # (K+1, L, B)
        s_c = weights(cands)  # (K+1, L, B)
        g_c = residual_of(cands, s_c)
        m_c = (g_c * g_c).sum(1)  # (K+1, B)
        # the fixed-point residual of the current iterate: its weights against T(w)
        done = ((s - s_c[0]).abs() * pf).amax(0) <= tol  # (B,)
        iterations = iterations + (~done & any_present[0]).to(torch.int64)
        moved = torch.zeros_like(done)
        for k in range(cands.shape[0]):  # strictly better only: ties keep the earlier, NaN loses
            better = (m_c[k] < m) & ~settled  # (B,)
            v = torch.where(better, cands[k], v)
            s = torch.where(better, s_c[k], s)
            g = torch.where(better, g_c[k], g)
            m = torch.where(better, m_c[k], m)
            moved = moved | better
        settled = settled | done  # certified before this iteration's step: frozen from now
        if early_exit and not bool(moved.any()):
            break
    return v, s, iterations


def logit_scale_equilibrium(
    a: Tensor,
    C: Tensor,
    mask: Tensor | None = None,
    *,
    tau: float | Tensor = 1.0,
    tol: float | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
    check_values: bool = True,
) -> LogitScaleResult:
    """The logit equilibrium ``w = softmax_P((a - C w) / tau)`` of a batch of scale games.

    ``w`` lies on the simplex over the present players ``P``; for symmetric
    ``C`` it maximises ``a^T w - 1/2 w^T C w + tau H(w)`` there. Unique and
    interior (``w_l > 0`` on ``P``) where ``sym(C)`` is positive semidefinite;
    ``C = 0`` gives ``softmax(a / tau)``; ``tau -> 0`` gives the Nash equilibrium
    of the simplex-constrained game (module docstring;
    proofs/10_logit_equilibrium.md). Batched, with a fixed amount of work and no
    host reads in the solve or its backward (``check_values=False`` removes the
    validation's reads too; they are skipped while compiling).

    Args:
        a: ``(*batch_a, L)`` utilities.
        C: ``(*batch_C, L, L)`` interaction matrix.
        mask: optional ``(*batch_m, L)`` bool, False for absent players (weight 0).
        tau: temperature ``> 0``: a number or a tensor broadcastable to ``(*batch,)``.
        tol: bound on the fixed-point residual for ``converged``; default
            :func:`aggregation.tolerance.default_tol` of the output dtype.
        max_iter: damped Newton iterations (fixed work).
        check_values: check that ``a``, ``C`` and ``tau`` are finite and ``tau > 0``
            (host reads; skipped while compiling).

    Returns:
        :class:`LogitScaleResult` in the inputs' promoted dtype (half precision
        computed in float32 and rounded back).

    Raises:
        TypeError: non-tensor ``a``/``C``, non-bool ``mask``, non-numeric ``tau``.
        ValueError: shapes that do not fit or broadcast, ``tau <= 0``, NaN or
            infinite entries (with ``check_values``), ``max_iter < 1``.

    References: McKelvey & Palfrey (1995), quantal response equilibria; Rosen
    (1965), uniqueness for monotone games.

    Example:
        >>> import torch
        >>> a = torch.tensor([1.0, 0.0], dtype=torch.float64)
        >>> r = logit_scale_equilibrium(a, torch.zeros(2, 2, dtype=torch.float64), tau=1.0)
        >>> torch.equal(r.weights, torch.softmax(a, -1))
        True
    """
    batch, in_dtype = _check_inputs(a, C, mask, tau, check_values)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    dtype = compute_dtype(in_dtype)
    out_dtype = in_dtype
    tol = resolve_tol(tol, out_dtype)
    L = a.shape[-1]
    device = a.device
    B = math.prod(batch)

    def soa(x: Tensor, n: int) -> Tensor:  # (*batch, *shape) -> (*shape, B)
        return x.reshape(B, n).T

    a_s = soa(a.to(dtype).expand(*batch, L), L)  # (L, B)
    C_s = soa(C.to(dtype).expand(*batch, L, L), L * L).reshape(L, L, B)  # (L, L, B)
    if isinstance(tau, Tensor):
        t = soa(tau.to(dtype).expand(batch), 1)  # (1, B)
    else:
        t = torch.full((1, B), float(tau), dtype=dtype, device=device)
    if mask is None:
        present = torch.ones(L, B, dtype=torch.bool, device=device)
    else:
        present = soa(mask.to(device).expand(*batch, L), L)  # (L, B)
    any_present = present.any(0, keepdim=True)  # (1, B)
    pf = present.to(dtype)  # (L, B)

    with torch.no_grad():
        ad, Cd, td = a_s.detach().contiguous(), C_s.detach().contiguous(), t.detach()
        v, s, iterations = _iterate(ad, Cd, td, present, any_present, tol, max_iter)

    # Implicit gradient: value v* to the bit, derivative -J^{-1} dG (module docstring).
    v_star = v
    if torch.is_grad_enabled() and any(
        isinstance(p, Tensor) and p.requires_grad for p in (a, C, tau)
    ):
        g = (v_star - a_s + _matvec(C_s, _softmax(v_star, t, present, any_present))) * pf
        v = v_star + _newton(s, Cd, td, g - g.detach(), present)  # (L, B)
    # the weights in the caller's layout: softmax over the last dim, as softmax(a / tau) is
    w = _softmax(v.T, t.T, present.T, any_present.T, dim=-1).to(out_dtype)  # (B, L)
    with torch.no_grad():
        wd = w.detach().to(dtype).T  # (L, B)
        again = _softmax(ad - _matvec(Cd, wd), td, present, any_present)
        residual = ((wd - again).abs() * pf).amax(0)  # (B,)
    w = w.reshape(*batch, L)  # (*batch, L)
    return LogitScaleResult(
        weights=w,
        scores=(v_star * pf).T.reshape(*batch, L).to(out_dtype),
        residual=residual.reshape(batch).to(out_dtype),
        converged=(residual <= tol).reshape(batch),
        iterations=iterations.reshape(batch),
        tol=tol,
    )
