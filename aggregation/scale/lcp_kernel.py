"""The scale game's pivoting and its implicit backward as numba loop nests (CPU, optional).

Two kernels, each the phases of :mod:`aggregation.scale.active_set` for the scale game
(``LCP(M, -a)``, no equality row) run game by game instead of as batched PyTorch ops:

- :func:`pivot_certify`: :func:`~aggregation.scale.active_set.active_set` with the
  certificate as its judge (what :func:`~aggregation.scale.exact.pivot_lcp` computes):
  the first support ``{l : a_l > 0}`` (present players only), the support solve
  ``M_SS x_S = a_S`` by unpivoted elimination in the order of
  :func:`~aggregation.small_linalg.lu_solve_soa` (a pivot below ``sqrt(eps)`` times its
  diagonal marks the support singular), the slack ``w = M x - a``, the violations
  (``x_l < -64 eps max|x|`` in S, ``w_l < -64 eps (max|a| + L max|M| max|x|)`` off S),
  ``3`` block pivots, then Murty's least-index rule; then
  :func:`~aggregation.scale.game.certify_profile` of the clamped profile (regret,
  natural residual, ``converged`` with its rounding bound, ``diverged``).
- :func:`effective_game` and :func:`effective_game_backward`: the effective game of
  :meth:`~aggregation.ScaleGame.effective` (an absent player's ``a_l = -1`` and the
  identity's row and column of ``C``) and the adjoint of that substitution (the
  cotangents of the present entries, zero elsewhere), one pass over the games each
  instead of PyTorch's broadcast mask product and ``where`` over ``(B, L, L)``, whose
  trailing dimensions of ``L`` make them slow.
- :func:`kkt_backward`: :func:`~aggregation.scale.active_set.fused_backward` for the
  scale game: ``J^T u = v`` with ``J``'s rows those of ``M`` on the support and of the
  identity off it, ``grad_a = u_S``, ``grad_M = -u_S x^T`` (zero where ``J`` is
  singular, ``ok`` False there).

The PyTorch phases make about a hundred passes over ``(L, n)`` vectors per pivot and
run single-threaded (:func:`~aggregation.small_linalg.map_chunks` splits only batches
beyond one chunk); here each game goes through all its pivots at once, and tiles of
games run on the caller's threads (:func:`~aggregation.small_linalg.outer_threads`).
The arithmetic is the same operations in the same order in the same dtype, the
multiply-adds that PyTorch fuses (``addcmul``) fused here too and no others, so the
results are the same bits: profiles, supports, pivot counts, flags, certificates and
gradients, NaN where PyTorch gives NaN (``tests/aggregation/test_lcp_kernel.py`` pins
them on monotone, masked, non-monotone, singular and non-finite games). Each game's
result depends only on that game, whatever the batch around it.

:func:`~aggregation.scale.exact.pivot_lcp` and
:func:`~aggregation.scale.active_set.fused_backward` call them where :func:`applies`
holds (switch them off with :func:`aggregation.accel.use_numba`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..accel import available, numba, numba_threads
from ..small_linalg import outer_threads

__all__ = ["applies", "effective_game", "effective_game_backward", "kkt_backward", "pivot_certify"]

#: Games per parallel tile.
_TILE = 256
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def applies(*tensors: Tensor) -> bool:
    """Whether the kernels serve these tensors: numba available, CPU, one dtype, float32
    or float64 (any number of players: the scratch is sized per call)."""
    first = tensors[0]
    return (
        available()
        and all(t.device.type == "cpu" and t.dtype == first.dtype for t in tensors)
        and first.dtype in _NUMPY
    )


def _constants(dtype: torch.dtype, L: int, tol: float = 0.0) -> np.ndarray:
    """``[64 eps, sqrt(eps), (L + 2) eps, tol, 0.5, 1, L]`` in the kernels' dtype (so that
    no arithmetic is promoted to float64 in a float32 kernel)."""
    eps = float(torch.finfo(dtype).eps)
    tol = min(tol, float(torch.finfo(dtype).max))
    return np.array([64.0 * eps, eps**0.5, (L + 2) * eps, tol, 0.5, 1.0, L], dtype=_NUMPY[dtype])


def pivot_certify(
    M: Tensor, a: Tensor, present: Tensor | None, max_iter: int, tol: float
) -> tuple[Tensor, ...]:
    """Principal pivoting for ``LCP(M, -a)`` and the certificate of its profile, per game.

    Args:
        M: ``(B, L, L)``; a: ``(B, L)``; present: ``(B, L)`` bool or None (every player
            present). CPU, float32 or float64 (:func:`applies`); no graph.
        max_iter: support solves per game.
        tol: the certificate's relative regret tolerance (``inf``: every profile converged).

    Returns:
        ``x (B, L)`` (clamped at 0, zero off S), ``S (B, L)`` bool, ``iterations (B,)``
        int64, ``resolved (B,)`` bool (False: ``max_iter`` solves without a solution, a
        singular support with nothing to flip, or a diverged profile), then the four
        :class:`~aggregation.scale.game.Certificate` fields ``regret (B, L)``,
        ``residual (B,)``, ``converged (B,)`` and ``diverged (B,)``.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1; received {max_iter}")
    B, L = a.shape
    dtype = a.dtype
    Mn = M.detach().contiguous().numpy()
    an = a.detach().contiguous().numpy()
    pn = (
        np.ones((B, L), np.bool_)
        if present is None
        else present.detach().expand(B, L).contiguous().numpy()
    )
    x = np.empty((B, L), _NUMPY[dtype])  # every output entry is written by the kernel
    S = np.empty((B, L), np.bool_)
    iters = np.empty(B, np.int64)
    resolved = np.empty(B, np.bool_)
    regret = np.empty((B, L), _NUMPY[dtype])
    residual = np.empty(B, _NUMPY[dtype])
    converged = np.empty(B, np.bool_)
    diverged = np.empty(B, np.bool_)
    consts = _constants(dtype, L, tol)
    if B:
        with numba_threads(outer_threads()):
            _pivot_certify(
                Mn, an, pn, max_iter, consts, np.isinf(tol),
                x, S, iters, resolved, regret, residual, converged, diverged,
            )  # fmt: skip
    outs = (x, S, iters, resolved, regret, residual, converged, diverged)
    return tuple(torch.from_numpy(o) for o in outs)


def kkt_backward(M: Tensor, x: Tensor, v: Tensor, S: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The scale game's first-order implicit backward, per game.

    Solves ``J^T u = v`` with ``J_l. = M_l.`` for ``l`` in S and ``e_l`` off S.

    Args:
        M: ``(B, L, L)``; x: ``(B, L)`` the equilibrium; v: ``(B, L)`` the cotangent of
            ``x``; S: ``(B, L)`` bool, the support. CPU, one float dtype (:func:`applies`).

    Returns:
        ``grad_a (B, L) = u_S``, ``grad_M (B, L, L) = -u_S x^T`` and ``ok (B,)`` (False:
        ``J`` singular to ``sqrt(eps)``; ``u`` is multiplied by 0 there, so the gradients
        are zero unless ``u`` or ``x`` is not finite, as in the PyTorch path).
    """
    B, L = x.shape
    dtype = x.dtype
    ga = np.empty((B, L), _NUMPY[dtype])  # every entry is written by the kernel
    gM = np.empty((B, L, L), _NUMPY[dtype])
    ok = np.empty(B, np.bool_)
    if B:
        with numba_threads(outer_threads()):
            _kkt_backward(
                M.detach().contiguous().numpy(),
                x.detach().contiguous().numpy(),
                v.detach().contiguous().numpy(),
                S.detach().contiguous().numpy(),
                _constants(dtype, L),
                ga,
                gM,
                ok,
            )
    return torch.from_numpy(ga), torch.from_numpy(gM), torch.from_numpy(ok)


def effective_game(a: Tensor, C: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(a_eff (B, L), C_eff (B, L, L))``: ``a_l`` and ``C_lk`` where players ``l`` (and
    ``k``) are present, ``-1`` and the identity's entries elsewhere. ``a (B, L)``, ``C (B, L,
    L)``, ``mask (B, L)`` bool; CPU, one float dtype (:func:`applies`); no graph."""
    a_eff = torch.empty(a.shape, dtype=a.dtype)
    C_eff = torch.empty(C.shape, dtype=C.dtype)
    if a.shape[0]:
        with numba_threads(outer_threads()):
            _effective(
                a.detach().contiguous().numpy(),
                C.detach().contiguous().numpy(),
                mask.contiguous().numpy(),
                a_eff.numpy(),
                C_eff.numpy(),
            )
    return a_eff, C_eff


def effective_game_backward(mask: Tensor, grad_a: Tensor, grad_C: Tensor) -> tuple[Tensor, Tensor]:
    """The adjoint of :func:`effective_game`: ``grad_a`` where ``l`` is present and
    ``grad_C`` where ``l`` and ``k`` both are, zero elsewhere (shapes as there)."""
    ga = torch.empty(grad_a.shape, dtype=grad_a.dtype)
    gC = torch.empty(grad_C.shape, dtype=grad_C.dtype)
    if ga.shape[0]:
        with numba_threads(outer_threads()):
            _effective_backward(
                mask.contiguous().numpy(),
                grad_a.detach().contiguous().numpy(),
                grad_C.detach().contiguous().numpy(),
                ga.numpy(),
                gC.numpy(),
            )
    return ga, gC


if numba is not None:

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _effective(a, C, m, a_eff, C_eff):  # pragma: no cover - compiled
        B, L = a.shape
        one = a.dtype.type(1)
        zero = one - one
        for tile in numba.prange((B + _TILE - 1) // _TILE):
            for g in range(tile * _TILE, min(B, (tile + 1) * _TILE)):
                for l in range(L):
                    a_eff[g, l] = a[g, l] if m[g, l] else -one
                    for k in range(L):
                        if m[g, l] and m[g, k]:
                            C_eff[g, l, k] = C[g, l, k]
                        else:
                            C_eff[g, l, k] = one if l == k else zero

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _effective_backward(m, grad_a, grad_C, ga, gC):  # pragma: no cover - compiled
        B, L = grad_a.shape
        zero = grad_a.dtype.type(0)
        for tile in numba.prange((B + _TILE - 1) // _TILE):
            for g in range(tile * _TILE, min(B, (tile + 1) * _TILE)):
                for l in range(L):
                    ga[g, l] = grad_a[g, l] if m[g, l] else zero
                    for k in range(L):
                        gC[g, l, k] = grad_C[g, l, k] if m[g, l] and m[g, k] else zero

    _jit = numba.njit(cache=True, nogil=True, error_model="numpy")
    # The multiply-adds that PyTorch computes with ``addcmul``/``add(alpha=)`` (one rounding,
    # a fused multiply-add) may contract here too; the certificate's separate products and
    # sums are compiled without it, as PyTorch rounds them.
    _fma = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})

    @_fma
    def _support_system(M, a, s, L, A, rhs, diag, one):  # pragma: no cover - compiled
        """``A = s M + (1 - s) I`` row by row, ``rhs = s a`` (``s`` 0/1 per row; as
        PyTorch's masked rows, a NaN or inf entry of a row off the support gives NaN)."""
        for i in range(L):
            si = one if s[i] else one - one
            for j in range(L):
                A[i, j] = (one - si) + M[i, j] * si if i == j else M[i, j] * si
            rhs[i] = a[i] * si
            diag[i] = A[i, i]

    @_fma
    def _transposed_system(M, s, v, L, A, rhs, diag, one):  # pragma: no cover - compiled
        """``A = J^T`` for ``J = s M + (1 - s) I`` (rows), ``rhs = v``."""
        for i in range(L):
            for j in range(L):
                sj = one if s[j] else one - one
                A[i, j] = (one - sj) + M[j, j] * sj if i == j else M[j, i] * sj
            rhs[i] = v[i]
            diag[i] = A[i, i]

    @_fma
    def _slack(Mg, ag, x, l, L):  # pragma: no cover - compiled
        """``w_l = (M x)_l - a_l``, the products added to ``-a_l`` in order."""
        w = -ag[l]
        for k in range(L):
            w = w + Mg[l, k] * x[k]
        return w

    @_fma
    def _elim(A, rhs, diag, L, rtol, out, zero, one):  # pragma: no cover - compiled
        """``A out = rhs`` by unpivoted elimination (``A``, ``rhs`` overwritten), in the
        order of :func:`~aggregation.small_linalg.lu_solve_soa`; False where a pivot is not
        above ``rtol`` times the diagonal ``diag`` of the original ``A`` (or is NaN)."""
        margin = one / zero  # inf, in the dtype
        for k in range(L):
            pivot = A[k, k]
            slack = pivot - rtol * diag[k]
            margin = _nanmin(margin, slack)
            inv = one / pivot
            A[k, k] = inv
            for i in range(k + 1, L):
                f = A[i, k] * inv
                for j in range(k + 1, L):
                    A[i, j] = A[i, j] - f * A[k, j]
                rhs[i] = rhs[i] - f * rhs[k]
        for i in range(L - 1, -1, -1):
            s = rhs[i]
            for j in range(i + 1, L):
                s = s - A[i, j] * out[j]
            out[i] = s * A[i, i]
        return margin > zero  # NaN -> False

    @_fma
    def _muladd(p, q, r):  # pragma: no cover - compiled
        """``r + p q`` (PyTorch's ``addcmul``)."""
        return r + p * q

    @_jit
    def _clamp0(v, zero):  # pragma: no cover - compiled
        """``max(v, 0)`` that keeps NaN (as ``clamp_min(0)``)."""
        return v if v > zero or v != v else zero

    @_jit
    def _nanmin(m, v):  # pragma: no cover - compiled
        """``min`` that keeps a NaN once seen (as ``torch.minimum``)."""
        if m != m or v != v:
            return v if v != v else m
        return v if v < m else m

    @_jit
    def _nanmax(m, v):  # pragma: no cover - compiled
        """``max`` that keeps a NaN once seen (as ``amax``)."""
        if m != m or v != v:
            return v if v != v else m
        return v if v > m else m

    @_jit
    def _scales(Mg, ag, L, Lf, row_max, zero):  # pragma: no cover - compiled
        """``row_max_l = max_k |M_lk|`` (written), returns ``(max |a|, L max |M|)``."""
        a_scale = zero
        m_scale = zero
        for l in range(L):
            a_scale = _nanmax(a_scale, abs(ag[l]))
            rm = zero
            for k in range(L):
                rm = _nanmax(rm, abs(Mg[l, k]))
            row_max[l] = rm
            m_scale = _nanmax(m_scale, rm)
        return a_scale, m_scale * Lf

    @_jit
    def _pivot_game(  # pragma: no cover - compiled
        Mg, ag, pg, max_iter, consts, row_max, A, rhs, diag, x, s, viol, x_out, S_out
    ):
        """Phases 1-5 of :mod:`~aggregation.scale.active_set` on one game: writes the
        clamped profile ``x_out`` and the support ``S_out``; returns ``(solves, resolved)``
        (False: ``max_iter`` solves without a solution, or a singular support with
        nothing to flip)."""
        L = ag.shape[0]
        eps, rtol, one, Lf = consts[0], consts[1], consts[5], consts[6]
        zero = one - one
        a_scale, m_scale = _scales(Mg, ag, L, Lf, row_max, zero)
        for l in range(L):  # initial support: the players with a positive utility
            s[l] = ag[l] > 0 and pg[l]
        for it in range(max_iter):
            _support_system(Mg, ag, s, L, A, rhs, diag, one)
            good = _elim(A, rhs, diag, L, rtol, x, zero, one)
            xmax = zero
            for l in range(L):
                xmax = _nanmax(xmax, abs(x[l]))
            keep = False  # violations: x_l < 0 in S, w_l < 0 off S (to rounding)
            for l in range(L):
                if s[l]:
                    viol[l] = x[l] < -eps * xmax
                else:
                    w = _slack(Mg, ag, x, l, L)
                    viol[l] = pg[l] and w < -eps * _muladd(m_scale, xmax, a_scale)
                keep = keep or viol[l]
            for l in range(L):
                v = x[l] if s[l] else x[l] * zero  # x * S: NaN stays NaN
                x_out[l] = _clamp0(v, zero)
                S_out[l] = s[l]
            if not keep:
                return it + 1, good  # a singular support with nothing to flip: unresolved
            if it + 1 < 3:  # block pivoting: flip every violator
                for l in range(L):
                    s[l] = s[l] != viol[l]
            else:  # Murty's least-index rule: the first violator only
                for l in range(L):
                    if viol[l]:
                        s[l] = not s[l]
                        break
        return max_iter, False

    @_jit
    def _certify_game(Mg, ag, pg, xg, row_max, consts, tol_inf, regret):  # pragma: no cover
        """:func:`~aggregation.scale.game.certify_profile` of one game's profile ``xg``:
        writes ``regret`` (0 for absent players), returns ``(residual, converged,
        diverged)``."""
        L = ag.shape[0]
        eps_c, tol, half = consts[2], consts[3], consts[4]
        zero = half - half
        x_sum = zero
        for k in range(L):
            x_sum = x_sum + xg[k]
        bound = zero
        res = zero
        unit = zero
        rho_max = zero
        a_max = zero
        for l in range(L):
            if not pg[l]:
                regret[l] = zero
                continue
            # sum_{k != l} M_lk x_k: the first product, then multiply-adds (written apart,
            # so that the compiler cannot merge a plain product with a fused one)
            others = zero
            k0 = 1 if l == 0 else 0
            if k0 < L:
                others = Mg[l, k0] * xg[k0]
            for k in range(k0 + 1, L):
                if k != l:
                    others = _muladd(Mg[l, k], xg[k], others)
            d_l = Mg[l, l]
            r = ag[l] - others
            br = _clamp0(r, zero) / d_l
            gap = xg[l] - br
            raw = half * d_l * (gap * gap) + _clamp0(-r, zero) * xg[l]
            regret[l] = raw
            w = d_l * xg[l] - r
            low = xg[l] if xg[l] < w else w
            if xg[l] != xg[l]:
                low = xg[l]
            res = _nanmax(res, abs(low))
            a_abs = abs(ag[l])
            rho = eps_c * _muladd(row_max[l], x_sum, a_abs)  # bound on the error of r
            dd = rho / d_l + eps_c * (xg[l] + br)  # bound on the error of x - BR
            over = rho - abs(r)
            slack = _muladd(d_l * dd, abs(gap) + dd, _clamp0(over, zero) * xg[l])
            bound = _nanmax(bound, raw + slack)
            unit = _nanmax(unit, ag[l] * ag[l] / d_l)
            rho_max = _nanmax(rho_max, rho)
            a_max = _nanmax(a_max, a_abs)
        converged = tol_inf or bound <= tol * unit
        return res, converged, not rho_max <= a_max  # diverged: NaN and inf included

    @numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _pivot_certify(  # pragma: no cover - compiled
        M, a, present, max_iter, consts, tol_inf,
        x_out, S_out, iters, resolved, regret, residual, converged, diverged,
    ):  # fmt: skip
        B, L = a.shape
        tiles = (B + _TILE - 1) // _TILE
        for tile in numba.prange(tiles):
            A = np.empty((L, L), a.dtype)
            rhs = np.empty(L, a.dtype)
            diag = np.empty(L, a.dtype)
            x = np.empty(L, a.dtype)
            s = np.empty(L, np.bool_)
            viol = np.empty(L, np.bool_)
            row_max = np.empty(L, a.dtype)
            for g in range(tile * _TILE, min(B, (tile + 1) * _TILE)):
                iters[g], done = _pivot_game(
                    M[g], a[g], present[g], max_iter, consts, row_max,
                    A, rhs, diag, x, s, viol, x_out[g], S_out[g],
                )  # fmt: skip
                res, conv, div = _certify_game(
                    M[g], a[g], present[g], x_out[g], row_max, consts, tol_inf, regret[g]
                )
                residual[g] = res
                converged[g] = conv
                diverged[g] = div
                resolved[g] = done and not div

    @numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _kkt_backward(M, x, v, S, consts, ga, gM, ok):  # pragma: no cover - compiled
        B, L = x.shape
        rtol, one = consts[1], consts[5]
        zero = one - one
        tiles = (B + _TILE - 1) // _TILE
        for tile in numba.prange(tiles):
            A = np.empty((L, L), x.dtype)
            rhs = np.empty(L, x.dtype)
            diag = np.empty(L, x.dtype)
            u = np.empty(L, x.dtype)
            for g in range(tile * _TILE, min(B, (tile + 1) * _TILE)):
                Mg, sg = M[g], S[g]
                _transposed_system(Mg, sg, v[g], L, A, rhs, diag, one)
                good = _elim(A, rhs, diag, L, rtol, u, zero, one)
                ok[g] = good
                okf = one if good else zero
                for i in range(L):  # u * s * ok, as products (NaN in x or u stays NaN)
                    ui = u[i] * (one if sg[i] else zero) * okf
                    ga[g, i] = ui
                    for j in range(L):
                        gM[g, i, j] = -(ui * x[g, j])
