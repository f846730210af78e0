"""Support-restricted Newton polishing of approximate equilibria (private).

Given a guess of every player's support ``S_i``, a Nash equilibrium with
those supports solves the square polynomial system in ``(sigma, u)``

    ``u_i(a, sigma_-i) - u_i = 0``   for ``a in S_i``  (indifference),
    ``sigma_i(a) = 0``               for ``a not in S_i``,
    ``sum_a sigma_i(a) - 1 = 0``,

``sum_i A_i + N`` equations in as many unknowns. We solve it by Newton's
method; where the Jacobian is singular (a continuum of equilibria, in
degenerate games) the step is the damped Gauss-Newton (Levenberg-Marquardt)
step ``delta = -(J^T J + mu I)^{-1} J^T F`` with a tiny ``mu``, close to the
minimum-norm step. (Damping everywhere would slow Newton down to a crawl on
ill-conditioned but regular systems, which near-degenerate games produce.)

The support is guessed from a point of the logit QRE branch: along the
branch, the log-odds ``l_i(a) = log sigma_i(a) - log max_b sigma_i(b)`` of an
action in the limit's support tend to a constant (slope ``O(1/lam^2)``),
while those of an action outside it fall like ``-lam * gap`` (slope
``-gap``), so ``a`` is guessed in ``S_i`` iff ``-lam * dl_i(a)/dlam < kappa``.
The caller's regret test is the arbiter: the polish only proposes, and a
failed guess is simply retried further along the branch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._nplayer_multilinear import Multilinear
from ._nplayer_homotopy import Layout

__all__ = ["guess_support", "polish_reduced", "polish_support"]

_ITERATIONS = 8  # Newton iterations per support, at most
_DAMPING = 1e-13  # relative Levenberg-Marquardt damping (at least machine epsilon)
_KAPPA = 1.0  # support guess threshold on -lam * dl/dlam
_NEGATIVE = 1e-9  # entries below -this are infeasible (at least 64 machine epsilons)


def guess_support(layout: Layout, d: Tensor, lam: Tensor, slope: Tensor) -> list[Tensor]:
    """Guess the limit's supports from a branch point (batch-last).

    Args:
        d: ``(K, B)`` logit differences ``log sigma_i(a) - log sigma_i(0)``.
        lam: ``(B,)`` the precision.
        slope: ``(K, B)`` ``dd/dlam`` along the branch (non-finite where the
            branch is not increasing in ``lam``; then a ratio rule is used).

    Returns:
        N bool masks ``(A_i, B)``, each containing the most likely action.
    """
    out = []
    for di, si in zip(layout.split_d(d), layout.split_d(slope)):
        logits = torch.cat([d.new_zeros(1, d.shape[-1]), di], dim=0)  # (A_i, B)
        slopes = torch.cat([d.new_zeros(1, d.shape[-1]), si], dim=0)  # (A_i, B)
        top = logits.argmax(0, keepdim=True)  # (1, B)
        rel = slopes - slopes.gather(0, top)  # (A_i, B)
        by_slope = -lam * rel < _KAPPA
        by_ratio = logits - logits.gather(0, top) > -4.6  # sigma(a) > 1% of the top
        mask = torch.where(torch.isfinite(rel), by_slope, by_ratio)
        rows = torch.arange(logits.shape[0], device=d.device)[:, None]
        out.append(mask | (rows == top))
    return out


def _newton_step(
    jac: Tensor, f: Tensor, ok: Tensor, damping: float, eye: Tensor
) -> tuple[Tensor, Tensor]:
    """The Newton step ``delta = -J^{-1} F`` of every system, batched.

    Where ``J`` is singular (or the step not finite), the damped Gauss-Newton
    (Levenberg-Marquardt) step ``delta = -(J^T J + mu I)^{-1} J^T F`` instead, with
    ``mu = damping * max diag(J^T J)``, close to the minimum-norm step.

    Args:
        jac: ``(B, D, D)``; f: ``(B, D)``; ok: ``(B,)`` bool; eye: ``(D, D)``.

    Returns:
        ``(delta, ok)``: ``(B, D)`` and ``ok`` with the systems whose damped solve
        failed too set to False.
    """
    step, info = torch.linalg.solve_ex(jac, -f[:, :, None])  # Newton
    step = step.squeeze(-1)  # (B, D)
    singular = (info != 0) | ~torch.isfinite(step).all(-1)  # (B,)
    if bool(singular.any()):  # minimum-norm (Levenberg-Marquardt) steps there
        js, fs = jac[singular], f[singular]
        jt = js.transpose(-1, -2)
        normal = jt @ js  # (s, D, D)
        mu = damping * normal.diagonal(dim1=-2, dim2=-1).amax(-1)  # (s,)
        lm, lm_info = torch.linalg.solve_ex(normal + mu[:, None, None] * eye, -(jt @ fs[..., None]))
        step[singular] = lm.squeeze(-1)
        ok = ok.clone()
        ok[singular] &= lm_info == 0
    return step, ok


def polish_support(
    layout: Layout, own: Multilinear, sigma: list[Tensor], support: list[Tensor]
) -> tuple[list[Tensor], Tensor, Tensor]:
    """Solve the indifference system on ``support`` starting from ``sigma`` (batch-last).

    Args:
        layout: the game's :class:`Layout`.
        own: the :class:`Multilinear` operator of the payoffs (own axis first).
        sigma: N starting strategies ``(A_i, B)``.
        support: N bool masks ``(A_i, B)`` (each with at least one True).

    Returns:
        N strategies ``(A_i, B)`` (clamped to the simplex), the unclamped
        solution ``(M, B)``, and a ``(B,)`` mask of games whose solution is
        finite and has no entry below ``-1e-9``.
    """
    n, m = layout.n, layout.m
    size, dtype, device = sigma[0].shape[-1], sigma[0].dtype, sigma[0].device
    dim = m + n
    tiny, eps = torch.finfo(dtype).tiny, torch.finfo(dtype).eps
    damping, negative = max(_DAMPING, eps), max(_NEGATIVE, 64 * eps)
    mask = torch.cat(support, dim=0)  # (M, B)
    parts = layout.split(torch.cat(sigma, dim=0) * mask)
    parts = [p / p.sum(0, keepdim=True).clamp_min(tiny) for p in parts]
    _, values = own(parts)
    u = torch.stack([(p * v).sum(0) for p, v in zip(parts, values)], dim=0)  # (N, B)
    z = torch.cat([torch.cat(parts, dim=0), u], dim=0)  # (M+N, B)

    off_rows = torch.zeros(m, dim, 1, dtype=dtype, device=device)  # rows sigma_i(a) = 0
    off_rows[:, :m, 0] = torch.eye(m, dtype=dtype, device=device)
    sum_rows = torch.zeros(n, dim, 1, dtype=dtype, device=device)
    for i, (o, a) in enumerate(zip(layout.offsets, layout.actions)):
        sum_rows[i, o : o + a] = 1.0
    eye = torch.eye(dim, dtype=dtype, device=device)
    ok = torch.ones(size, dtype=torch.bool, device=device)
    for _ in range(_ITERATIONS):
        parts = layout.split(z[:m])
        pairs, values = own(parts)
        rows = z.new_zeros(m, dim, size)  # indifference rows, batch-last
        for i, (o, a) in enumerate(zip(layout.offsets, layout.actions)):
            rows[o : o + a, m + i] = -1.0
            for j, (oj, aj) in enumerate(zip(layout.offsets, layout.actions)):
                if j != i:
                    rows[o : o + a, oj : oj + aj] = pairs[(i, j)]
        rows = torch.where(mask[:, None], rows, off_rows)  # (M, M+N, B)
        jac = torch.cat([rows, sum_rows.expand(-1, -1, size)], dim=0).permute(2, 0, 1)
        u_rep = torch.cat([z[m + i].expand(a, -1) for i, a in enumerate(layout.actions)], dim=0)
        f_rows = torch.where(mask, torch.cat(values, dim=0) - u_rep, z[:m])  # (M, B)
        f_sum = torch.stack([p.sum(0) - 1.0 for p in parts], dim=0)  # (N, B)
        f = torch.cat([f_rows, f_sum], dim=0).T  # (B, M+N)
        step, ok = _newton_step(jac.contiguous(), f, ok, damping, eye)  # (B, M+N), (B,)
        step = torch.where(ok, step.T, torch.zeros_like(z))  # (M+N, B)
        z = z + step
        if bool((step.abs() <= 4 * eps * (1 + z.abs())).all()):
            break  # converged to rounding everywhere
    ok &= torch.isfinite(z).all(0)
    z = torch.where(ok, z, torch.zeros_like(z))
    raw = torch.where(mask, z[:m], torch.zeros_like(z[:m]))  # (M, B)
    ok &= raw.amin(0) >= -negative
    out = [p.clamp_min(0) for p in layout.split(raw)]
    out = [p / p.sum(0, keepdim=True).clamp_min(tiny) for p in out]
    return out, raw, ok


def polish_reduced(
    layout: Layout, own: Multilinear, sigma: list[Tensor], support: list[Tensor]
) -> tuple[list[Tensor], Tensor, Tensor]:
    """:func:`polish_support` in reduced coordinates, for supports holding action 0.

    Every ``S_i`` must contain action 0 (relabel each player's actions first,
    e.g. the support's first action to 0). Then player ``i``'s strategy is

        ``sigma_i = e_0 + sum_{a >= 1} t_i(a) (e_a - e_0)``,

    ``t_i(a) = 0`` for ``a not in S_i``, which meets the sum and the
    off-support equations, and subtracting action 0's indifference from the
    others' eliminates ``u_i``:

        ``F_i(a) = v_i(a) - v_i(0) = 0``   for ``a in S_i``, ``a >= 1``,

    with ``dF_i(a)/dt_j(b) = T_ij[a, b] - T_ij[a, 0] - T_ij[0, b] + T_ij[0, 0]``
    (``j != i``; zero for ``j = i``). A slot outside the support gets the
    identity row ``t_i(a) = 0``. The system has ``sum_i (A_i - 1)`` unknowns
    instead of ``sum_i A_i + N`` (6 instead of 12 for a 3x3x3 game); from a
    start meeting the linear equations, Newton's iterates on the full system
    keep meeting them and agree with these (in exact arithmetic). Where the
    Jacobian is singular, the damped Gauss-Newton step of
    :func:`polish_support` in these coordinates.

    Args and returns: as :func:`polish_support`.
    """
    n, actions = layout.n, layout.actions
    size, dtype, device = sigma[0].shape[-1], sigma[0].dtype, sigma[0].device
    tiny, eps = torch.finfo(dtype).tiny, torch.finfo(dtype).eps
    damping, negative = max(_DAMPING, eps), max(_NEGATIVE, 64 * eps)
    dims = [a - 1 for a in actions]
    starts = [sum(dims[:i]) for i in range(n)]
    dim = sum(dims)
    t = []
    for s, mask in zip(sigma, support):
        p = s * mask
        p = p / p.sum(0, keepdim=True).clamp_min(tiny)  # (A_i, B) the start on S_i
        t.append(p[1:])  # (A_i - 1, B), zero off S_i
    z = torch.cat(t, dim=0)  # (D, B)
    valid = torch.cat([m[1:] for m in support], dim=0)  # (D, B) slots in the supports
    live = valid.T.to(dtype)  # (B, D)
    pad = torch.diag_embed(1 - live)  # (B, D, D) identity rows off the supports
    eye = torch.eye(dim, dtype=dtype, device=device)

    def strategies(z: Tensor) -> list[Tensor]:
        parts = []
        for i in range(n):
            ti = z[starts[i] : starts[i] + dims[i]]  # (A_i - 1, B)
            parts.append(torch.cat([1 - ti.sum(0, keepdim=True), ti], dim=0))  # (A_i, B)
        return parts

    ok = torch.ones(size, dtype=torch.bool, device=device)
    for _ in range(_ITERATIONS):
        pairs, values = own(strategies(z))  # T_ij (A_i, A_j, B), v_i (A_i, B)
        f = torch.cat([v[1:] - v[:1] for v in values], dim=0).T * live  # (B, D)
        rows = []
        for i in range(n):
            blocks = []
            for j in range(n):
                if j == i:
                    blocks.append(z.new_zeros(dims[i], dims[j], size))
                    continue
                pt = pairs[(i, j)]  # (A_i, A_j, B)
                d = pt[1:] - pt[:1]  # (A_i - 1, A_j, B)
                blocks.append(d[:, 1:] - d[:, :1])  # (A_i - 1, A_j - 1, B)
            rows.append(torch.cat(blocks, dim=1))  # (A_i - 1, D, B)
        jac = torch.cat(rows, dim=0).permute(2, 0, 1)  # (B, D, D)
        jac = jac * live[:, :, None] * live[:, None, :] + pad
        step, ok = _newton_step(jac, f, ok, damping, eye)  # (B, D), (B,)
        step = torch.where(ok, step.T, torch.zeros_like(z))  # (D, B)
        z = z + step
        if bool((step.abs() <= 4 * eps * (1 + z.abs())).all()):
            break  # converged to rounding everywhere
    ok &= torch.isfinite(z).all(0)
    z = torch.where(ok, z, torch.zeros_like(z))
    raw = torch.cat(strategies(z), dim=0)  # (M, B), zero off the supports
    raw = torch.where(ok, raw, torch.zeros_like(raw))
    ok &= raw.amin(0) >= -negative
    out = [p.clamp_min(0) for p in layout.split(raw)]
    out = [p / p.sum(0, keepdim=True).clamp_min(tiny) for p in out]
    return out, raw, ok
