"""Batched predictor-corrector tracing of the logit QRE branch (private).

The logit quantal response equilibria of a game with (scaled) payoffs ``W``
at precision ``lam`` are parametrised by each player's logit differences
``d_i(a) = log sigma_i(a) - log sigma_i(0)`` (``a >= 1``; then
``sigma_i = softmax([0, d_i])`` is exactly on the simplex) and solve

    ``H_i(d, lam) = d_i - lam * (w_i(a) - w_i(0))_{a >= 1} = 0``,

where ``w_i = u_i(., sigma_-i)`` under ``W``: ``sum_i (A_i - 1)`` equations in
as many unknowns plus ``lam``. At ``lam = 0`` the unique solution is the
centroid ``d = 0``; the *principal branch* of ``H^{-1}(0)`` leaving it is a
smooth curve (generically; McKelvey & Palfrey 1995) that we follow by
arclength continuation (Allgower & Georg 1990): an Euler predictor along the
unit tangent ``t`` (the kernel of ``DH``, oriented by ``t_prev . t > 0``),
then Newton corrector steps on the augmented system

    ``[H(z); c . (z - z_pred)] = 0``,  Jacobian ``[DH(z); c^T]``,

with ``c = t`` (a step on the hyperplane normal to the tangent) or
``c = e_lam`` when the step lands exactly on a target precision. The step
length adapts per game (Gambit's rules: bounds on the first Newton correction
and on the contraction rate, plus a bound on the turn of the tangent), and a
step is rejected if it would reverse the orientation (the sign of
``det [DH; t^T]``, +1 at the centroid, flips when a step jumps over a fold);
a flip that persists at steps shorter than ``1e-4`` is a simple bifurcation
point (symmetric, non-generic games), which is crossed straight on.

Everything is batched over games of one shape, with finished games
compacted out of the working set. Internally tensors are *batch-last*
(``(..., B)``, contiguous in ``B``): the Jacobian blocks are tiny (``A_i x
A_j``), and elementwise kernels over a contiguous batch are far faster than
over tiny inner dimensions; only the LAPACK solve sees ``(B, D, D)``.

The Jacobian blocks are ``dH_i/dd_i = I``, ``dH_i/dlam = -(w_i(a) - w_i(0))``
and, for ``j != i``, ``dH_i/dd_j(c) = -lam (D_ij[:, c] - Dw_i) sigma_j(c)``
with ``D_ij[a, b] = d(w_i(a) - w_i(0)) / d sigma_j(b)`` (softmax chain rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .._nplayer_multilinear import Multilinear, own_first

__all__ = ["Layout", "TraceResult", "softmax_profile", "trace_branch"]

_MAX_DIST = 0.8  # bound on the first Newton correction (2-norm)
_MAX_CONTRACTION = 0.6  # bound on |delta_1| / |delta_0|
_MAX_GROWTH = 2.0  # the step length grows by at most this factor per step
_MAX_ANGLE = 0.5  # bound (radians) on the turn of the tangent in one step
_BIFURCATION_STEP = 1e-4  # an orientation flip at steps this short is a bifurcation
_NEWTON = 4  # corrector iterations at most
_ACCEPT_TOL = 1e-9  # a correction this small (relative) ends Newton; steps end with one
# (in float32 the tolerance is raised to 64 machine epsilons)
_RETRY = 1.25  # retry polishing a game once its precision has grown by this factor


class Layout:
    """Index bookkeeping for profiles stored as one vector of length ``M = sum A_i``."""

    def __init__(self, actions: tuple[int, ...]) -> None:
        self.actions = actions
        self.n = len(actions)
        offsets, total = [], 0
        for a in actions:
            offsets.append(total)
            total += a
        self.offsets = tuple(offsets)
        self.m = total
        self.d_offsets = tuple(o - i for i, o in enumerate(offsets))  # offsets of d_i
        self.k = total - self.n  # number of logit differences

    def split(self, vec: Tensor) -> list[Tensor]:
        """``(M, ...)`` -> N tensors ``(A_i, ...)`` (views along the first axis)."""
        return [vec[o : o + a] for o, a in zip(self.offsets, self.actions)]

    def split_d(self, vec: Tensor) -> list[Tensor]:
        """``(K, ...)`` -> N tensors ``(A_i - 1, ...)``."""
        return [vec[o : o + a - 1] for o, a in zip(self.d_offsets, self.actions)]


def softmax_profile(layout: Layout, d: Tensor) -> list[Tensor]:
    """``(K, B)`` logit differences -> N strategies ``softmax([0, d_i])`` ``(A_i, B)``.

    Probabilities below ``tiny ** (1 / N)`` are set to zero, so that products
    of N of them never reach the subnormal range (very slow on CPUs).
    """
    floor = math.log(torch.finfo(d.dtype).tiny) / layout.n
    out = []
    for di in layout.split_d(d):
        logits = torch.cat([d.new_zeros(1, d.shape[-1]), di], dim=0)  # (A_i, B)
        shifted = logits - logits.amax(0, keepdim=True)
        e = shifted.exp().masked_fill(shifted < floor, 0.0)
        out.append(e / e.sum(0, keepdim=True))
    return out


def _system(layout: Layout, diff: Multilinear, z: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Residual ``H (K, B)`` and augmented Jacobian ``(B, K+1, K+1)`` at ``z = (d, lam)``.

    ``z`` and ``c`` are ``(K+1, B)``.
    """
    k, size = layout.k, z.shape[-1]
    d, lam = z[:k], z[k]  # (K, B), (B,)
    sigma = softmax_profile(layout, d)  # N x (A_i, B)
    pairs, dw = diff(sigma)  # T_ij: (A_i - 1, A_j, B), dw_i: (A_i - 1, B)
    dw_all = torch.cat(dw, dim=0)  # (K, B)
    jac = z.new_zeros(k + 1, k + 1, size)  # batch-last while assembling
    jac[:k, k] = -dw_all
    for i, (o, a) in enumerate(zip(layout.d_offsets, layout.actions)):
        for j, (oj, aj) in enumerate(zip(layout.d_offsets, layout.actions)):
            if j != i and a > 1 and aj > 1:
                block = (pairs[(i, j)][:, 1:] - dw[i][:, None]) * sigma[j][1:]  # (A_i-1, A_j-1, B)
                jac[o : o + a - 1, oj : oj + aj - 1] = block * -lam
    jac[k] = c
    jac = jac.permute(2, 0, 1).contiguous()  # (B, K+1, K+1)
    jac.diagonal(dim1=1, dim2=2)[:, :k] += 1.0  # dH_i/dd_i = I
    return d - lam * dw_all, jac


def _solve_signed(jac: Tensor, rhs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Batched LU solve ``jac x = rhs`` that also returns ``sign(det jac)``.

    Returns the solution ``(B, D, R)``, a ``(B,)`` mask of regular matrices
    and ``(B,)`` signs of the determinants (from the LU factors and pivots).
    """
    lu, pivots, info = torch.linalg.lu_factor_ex(jac)
    sol = torch.linalg.lu_solve(lu, pivots, rhs)
    diag = lu.diagonal(dim1=-2, dim2=-1)  # (B, D)
    order = torch.arange(1, jac.shape[-1] + 1, device=jac.device, dtype=pivots.dtype)
    swaps = (pivots != order).sum(-1)  # (B,)
    sign = diag.sign().prod(-1) * (1 - 2 * (swaps % 2)).to(diag.dtype)
    return sol, (info == 0) & (diag != 0).all(-1), sign


@dataclass
class TraceResult:
    """Per-game outcome of :func:`trace_branch` (batch-first tensors ``(B, ...)``).

    ``sigma`` ``(B, M)`` is the profile to report (the one the ``polish``
    callback returned where ``polished``, i.e. where the callback stopped the
    game), ``lam`` the last accepted precision, ``steps`` the
    predictor-corrector steps tried, ``residual`` the last Newton correction
    of the last accepted step, ``landed`` whether ``lam_end`` was reached,
    ``failed`` whether the step length collapsed (the branch could not be
    followed further).
    """

    sigma: Tensor
    lam: Tensor
    steps: Tensor
    residual: Tensor
    landed: Tensor
    polished: Tensor
    failed: Tensor


Polisher = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, list[Tensor]]]


def trace_branch(
    w: Tensor,
    layout: Layout,
    lam_end: Tensor,
    max_steps: int,
    first_step: float = 0.1,
    min_step: float = 1e-9,
    polish: Polisher | None = None,
    polish_from: float = 1.0,
) -> TraceResult:
    """Follow the principal logit branch of games ``w (B, N, *A)`` up to ``lam_end (B,)``.

    ``polish(ids, d, lam, slope)``, when given, is called after accepted
    steps on the games whose precision is at least ``polish_from`` (and at
    least ``_RETRY`` times the precision of their previous attempt), with the
    branch point ``(d (K, s), lam (s,))`` and ``slope = dd/dlam`` ``(K, s)``
    (non-finite where the branch turns back); it returns a ``(s,)`` success
    mask and N profiles ``(s, A_i)``, and successful games stop there.
    """
    size, device, dtype = w.shape[0], w.device, w.dtype
    k, m = layout.k, layout.m
    own = own_first(w)  # N x (B, A_i, A_-i...)
    diff = Multilinear(layout.actions, [t[:, 1:] - t[:, :1] for t in own])
    e_last = torch.zeros(k + 1, 1, dtype=dtype, device=device)
    e_last[k] = 1.0

    out_sigma = torch.zeros(size, m, dtype=dtype, device=device)
    out_lam = torch.zeros(size, dtype=dtype, device=device)
    out_steps = torch.zeros(size, dtype=torch.int64, device=device)
    out_res = torch.zeros(size, dtype=dtype, device=device)
    out_landed = torch.zeros(size, dtype=torch.bool, device=device)
    out_polished = torch.zeros(size, dtype=torch.bool, device=device)
    out_failed = torch.zeros(size, dtype=torch.bool, device=device)

    if size == 0:
        return TraceResult(
            out_sigma, out_lam, out_steps, out_res, out_landed, out_polished, out_failed
        )
    # working set, compacted as games finish; x = (d, lam) starts at the centroid
    ids = torch.arange(size, device=device)
    x = torch.zeros(k + 1, size, dtype=dtype, device=device)  # (K+1, b)
    _, jac = _system(layout, diff, x, e_last.expand(-1, size))
    tangent = torch.linalg.solve(jac, e_last.T.expand(size, -1)).T  # (K+1, b), lam-part 1
    tangent = tangent / tangent.norm(dim=0)
    h = torch.full((size,), first_step, dtype=dtype, device=device)
    steps = torch.zeros(size, dtype=torch.int64, device=device)
    res = torch.zeros(size, dtype=dtype, device=device)
    landed = torch.zeros(size, dtype=torch.bool, device=device)
    tried = torch.zeros(size, dtype=dtype, device=device)  # lam of the last polish attempt
    orient = torch.ones(size, dtype=dtype, device=device)  # expected sign of det [DH; t^T]
    lam_end = lam_end.clone()
    done = lam_end <= 0  # (b,) nothing to trace
    tiny = torch.finfo(dtype).tiny
    accept = max(_ACCEPT_TOL, 64 * torch.finfo(dtype).eps)  # relative Newton tolerance
    for it in range(max_steps + 1):
        if it == max_steps or bool(done.any()):
            finished = done | (it == max_steps)
            fid = ids[finished]
            out_lam[fid] = x[k, finished]
            out_steps[fid] = steps[finished]
            out_res[fid] = res[finished]
            out_landed[fid] = landed[finished]
            out_failed[fid] = h[finished] < min_step
            plain = ~out_polished[fid]
            sig = torch.cat(softmax_profile(layout, x[:k, finished]), dim=0).T  # (f, M)
            out_sigma[fid[plain]] = sig[plain]
            keep = ~finished
            ids, x, tangent, h, steps = (
                ids[keep],
                x[:, keep],
                tangent[:, keep],
                h[keep],
                steps[keep],
            )
            res, landed, tried, lam_end = res[keep], landed[keep], tried[keep], lam_end[keep]
            orient = orient[keep]
            diff = diff.index(keep)
            size = len(ids)
            if size == 0:
                break
        lam, t_lam = x[k], tangent[k]
        landing = (t_lam > 0) & (lam + h * t_lam >= lam_end)  # (b,)
        h_eff = torch.where(landing, (lam_end - lam) / torch.where(landing, t_lam, 1.0), h)
        x_pred = x + h_eff * tangent  # (K+1, b)
        c = torch.where(landing, e_last, tangent)  # (K+1, b)
        # Newton corrector; after the first iteration (all games) only the games whose
        # correction is not yet negligible iterate, gathered into a smaller batch
        act = torch.arange(size, device=device)
        hres, jac = _system(layout, diff, x_pred, c)
        f = torch.cat([hres, hres.new_zeros(1, size)], dim=0)  # (K+1, b)
        sol, ok, sign = _solve_signed(jac, torch.stack([-f.T, e_last.T.expand(size, -1)], -1))
        delta = torch.where(ok, sol[..., 0].T, torch.zeros_like(f))  # (K+1, b)
        z, tau = x_pred + delta, sol[..., 1].T.clone()
        first = delta.norm(dim=0)  # (b,)
        last, second = first.clone(), torch.zeros_like(h)
        act = act[first > accept * (1 + z.abs().amax(0))]
        for i in range(1, _NEWTON):
            if act.numel() == 0:
                break
            zs, cs = z[:, act], c[:, act]
            hres, jac = _system(layout, diff.index(act), zs, cs)
            f = torch.cat([hres, (cs * (zs - x_pred[:, act])).sum(0, keepdim=True)], dim=0)
            rhs = torch.stack([-f.T, e_last.T.expand(len(act), -1)], dim=-1)  # (a, K+1, 2)
            sol, regular, sgn = _solve_signed(jac, rhs)
            delta = torch.where(regular, sol[..., 0].T, torch.zeros_like(f))  # (K+1, a)
            norm = delta.norm(dim=0)  # (a,)
            zs = zs + delta
            z[:, act], tau[:, act], sign[act], last[act] = zs, sol[..., 1].T, sgn, norm
            ok[act] &= regular
            if i == 1:
                second[act] = norm
            act = act[norm > accept * (1 + zs.abs().amax(0))]
        scale = 1 + z.abs().amax(0)  # (b,)
        ok &= torch.isfinite(z).all(0) & (last <= accept * scale) & (first <= _MAX_DIST)
        contraction = second / first.clamp_min(tiny)
        ok &= (contraction <= _MAX_CONTRACTION) | (second <= accept * scale)
        # orientation: det [DH; t^T] keeps the sign `orient` along the forward branch (+1 at
        # lam = 0). A flip means the step jumped over a fold and would turn back: reject it
        # and retry shorter. A flip that persists down to tiny steps is a simple bifurcation
        # point (symmetric games): cross it straight on and flip the expected sign.
        tau = tau / tau.norm(dim=0).clamp_min(tiny)
        angle = torch.arccos((tau * tangent).sum(0).clamp(-1.0, 1.0))  # (b,)
        ok &= angle <= _MAX_ANGLE
        flipped = sign != orient
        crossing = ok & flipped & (h_eff <= _BIFURCATION_STEP)
        orient = torch.where(crossing, -orient, orient)
        ok &= ~flipped | crossing
        steps += 1
        # step length: up to x2 when Newton was easy, /2 on rejection (after Gambit)
        factor = (
            torch.stack(
                [
                    (first / _MAX_DIST).sqrt(),
                    (contraction / _MAX_CONTRACTION).sqrt(),
                    angle / _MAX_ANGLE,
                ]
            )
            .amax(0)
            .clamp(min=1.0 / _MAX_GROWTH)
        )  # (b,)
        h = torch.where(ok, torch.where(landing, h, h / factor), h * 0.5)
        x = torch.where(ok, z, x)
        tangent = torch.where(ok, tau, tangent)
        res = torch.where(ok, last, res)
        landed = ok & landing
        done = landed | (h < min_step)
        if polish is not None:
            attempt = ok & (x[k] >= polish_from) & (x[k] >= _RETRY * tried)
            if bool(attempt.any()):
                sub = attempt.nonzero().squeeze(-1)
                tried[sub] = x[k, sub]
                t_sub = tangent[:, sub]
                slope = t_sub[:k] / t_sub[k].clamp_min(0)  # (K, s), inf where turning back
                success, polished = polish(ids[sub], x[:k, sub], x[k, sub], slope)
                won = sub[success]
                out_sigma[ids[won]] = torch.cat(polished, dim=-1)[success]
                out_polished[ids[won]] = True
                done[won] = True
    return TraceResult(out_sigma, out_lam, out_steps, out_res, out_landed, out_polished, out_failed)
