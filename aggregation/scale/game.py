"""The scale game: L players (attention scales) with scalar strategies x_l >= 0.

Player l maximises

    u_l(x_l, x_-l) = a_l x_l - 1/2 C_ll x_l^2 - x_l sum_{k != l} C_lk x_k ,

so its best response is ``BR_l(x_-l) = max(0, (a_l - sum_{k != l} C_lk x_k) / C_ll)``
and ``x*`` is a Nash equilibrium iff it solves the linear complementarity
problem LCP(C, -a):

    x >= 0,   w = C x - a >= 0,   x^T w = 0 ,

``F(x) = C x - a`` being the pseudo-gradient of the players' costs. If the
symmetric part of ``C`` is positive definite, ``F`` is strongly monotone and the
equilibrium exists and is unique (Rosen 1965); ``C`` is then a P-matrix.

Regret has a closed form free of cancellation. With ``r_l = a_l - sum_{k != l}
C_lk x_k`` (so that ``BR_l = max(0, r_l) / C_ll``),

    regret_l(x) = max_y u_l(y, x_-l) - u_l(x) = C_ll / 2 (x_l - BR_l)^2 + max(0, -r_l) x_l .

Absent players (``mask`` False) play 0, have zero regret and do not interact:
internally they are replaced by an *effective* game in which their row and
column of ``C`` are those of the identity and ``a_l = -1``, so that ``x_l = 0``
with strict complementarity (``w_l = 1``), and gradients with respect to their
entries are exactly zero.

References: Rosen, "Existence and uniqueness of equilibrium points for concave
n-person games", Econometrica 1965; Cottle, Pang & Stone, *The Linear
Complementarity Problem* (1992); Facchinei & Pang, *Finite-Dimensional
Variational Inequalities and Complementarity Problems* (2003).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..small_linalg import ordered_sum
from ..validation import as_tensor, check_nonnegative, compute_dtype, describe
from . import lcp_kernel

__all__ = ["Certificate", "ScaleGame", "certify_profile", "others_sum"]


def _check_values(C_t: Tensor, m_t: Tensor | None) -> None:
    """Refuse a mask leaving a batch element without players, or a present player with
    ``C_ll <= 0`` (host reads; finiteness is checked where ``a`` and ``C`` are converted)."""
    if m_t is not None and m_t.numel() and not bool(m_t.any(-1).all()):
        empty = int((~m_t.any(-1)).sum())
        raise ValueError(
            f"mask must leave at least one present player in every batch element; "
            f"received {empty} element{'s' if empty != 1 else ''} with no player"
        )
    diag = C_t.diagonal(dim1=-2, dim2=-1)  # (*batch_C, L)
    bad = diag <= 0
    if bad.numel() and bool(bad.any()) and m_t is not None:
        bad = bad & m_t  # only present players must have C_ll > 0
    if bad.numel() and bool(bad.any()):
        raise ValueError(
            "C must have a positive diagonal (C_ll > 0) for every present player; "
            f"received {int(bad.sum())} diagonal entr"
            f"{'y' if int(bad.sum()) == 1 else 'ies'} <= 0 (smallest "
            f"{float(diag.min()):.3g})"
        )


class _Effective(torch.autograd.Function):
    """``(a (B, L), C (B, L, L), mask (B, L))`` -> the effective game, by the kernels of
    :mod:`aggregation.scale.lcp_kernel` (the same values and gradients as the ``where``
    composition of :meth:`ScaleGame.effective`, which a double backward uses)."""

    @staticmethod
    def forward(ctx, a: Tensor, C: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(mask)
        return lcp_kernel.effective_game(a, C, mask)

    @staticmethod
    def backward(ctx, grad_a: Tensor, grad_C: Tensor):
        (m,) = ctx.saved_tensors
        if not torch.is_grad_enabled():
            return (*lcp_kernel.effective_game_backward(m, grad_a, grad_C), None)
        zero = torch.zeros((), dtype=grad_a.dtype, device=grad_a.device)
        both = m.unsqueeze(-1) & m.unsqueeze(-2)
        return torch.where(m, grad_a, zero), torch.where(both, grad_C, zero), None


class ScaleGame:
    """A batch of scale games ``(a, C)`` with an optional player mask.

    Args:
        a: ``(*batch_a, L)`` utilities (``a_l > 0`` makes player l want to play).
        C: ``(*batch_C, L, L)`` interaction matrix; ``C_ll > 0`` for every
            present player.
        mask: optional ``(*batch_m, L)`` bool, False for absent players (they
            play 0). Every batch element needs at least one present player.
        check_values: check the values (host reads): ``a`` and ``C`` finite,
            ``C_ll > 0`` for every present player, a present player in every
            batch element. ``False`` checks types and shapes only, with no host
            read (for callers whose games hold these by construction, e.g. the
            MAHA fusion, which checks finiteness itself); a game that breaks them
            then has no defined equilibrium and the solvers' results are
            meaningless. Default True.

    Batch shapes broadcast: ``batch_shape = broadcast(batch_a, batch_C, batch_m)``.
    The game keeps the tensors it was given (no copies, no expansion; the
    caller's tensors are never modified) and computes in
    ``compute_dtype(promote(a.dtype, C.dtype))`` (half precision -> float32).

    Raises:
        ValueError: shapes that do not fit, NaN/inf entries, a non-positive
            diagonal entry of ``C`` for a present player, a mask leaving a batch
            element without players.
        TypeError: non-numeric input or a mask that is not boolean.

    Example:
        >>> import torch
        >>> from aggregation import ScaleGame
        >>> game = ScaleGame(torch.tensor([1.0, 1.0]), torch.tensor([[2.0, 1.0], [1.0, 2.0]]))
        >>> game.best_response(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 0.5000])
    """

    def __init__(self, a: Any, C: Any, mask: Any = None, *, check_values: bool = True) -> None:
        if not isinstance(check_values, bool):
            raise TypeError(f"check_values must be a bool; received {describe(check_values)}")
        a_t = as_tensor(a, "a", min_dim=1, finite=check_values)
        C_t = as_tensor(C, "C", min_dim=2, finite=check_values)
        L = a_t.shape[-1]
        if L < 1:
            raise ValueError(f"a must have at least one player (L >= 1); received {describe(a_t)}")
        if C_t.shape[-1] != C_t.shape[-2]:
            raise ValueError(
                f"C must be square in its last two dimensions, shape (*batch, L, L); "
                f"received {describe(C_t)}"
            )
        if C_t.shape[-1] != L:
            raise ValueError(
                f"C must have shape (*batch, {L}, {L}) to match a with L={L} players; "
                f"received {describe(C_t)}"
            )
        shapes = [a_t.shape[:-1], C_t.shape[:-2]]
        m_t = None
        if mask is not None:
            m_t = mask if isinstance(mask, Tensor) else torch.as_tensor(mask)
            if m_t.dtype != torch.bool:
                raise TypeError(f"mask must be a boolean tensor; received {describe(mask)}")
            if m_t.dim() < 1 or m_t.shape[-1] != L:
                raise ValueError(
                    f"mask must have shape (*batch, {L}) to match a; received {describe(m_t)}"
                )
            m_t = m_t.to(a_t.device)
            shapes.append(m_t.shape[:-1])
        try:  # equal shapes (the common case) skip broadcast_shapes' Python reference
            same = all(shape == shapes[0] for shape in shapes)
            batch = shapes[0] if same else torch.broadcast_shapes(*shapes)
        except RuntimeError:
            raise ValueError(
                "the batch shapes of a, C"
                + (" and mask" if m_t is not None else "")
                + f" must broadcast; received {[tuple(s) for s in shapes]}"
            ) from None
        if check_values:
            _check_values(C_t, m_t)
        self._a = a_t
        self._C = C_t
        self._mask = m_t
        self._batch = batch
        self._L = L
        self._dtype = torch.promote_types(a_t.dtype, C_t.dtype)

    # ------------------------------------------------------------ properties
    @property
    def a(self) -> Tensor:
        """``(*batch_a, L)`` utilities as given."""
        return self._a

    @property
    def C(self) -> Tensor:
        """``(*batch_C, L, L)`` interaction matrix as given."""
        return self._C

    @property
    def mask(self) -> Tensor | None:
        """``(*batch_m, L)`` bool player mask, or None (all present)."""
        return self._mask

    @property
    def num_players(self) -> int:
        return self._L

    @property
    def batch_shape(self) -> torch.Size:
        return self._batch

    @property
    def dtype(self) -> torch.dtype:
        """The input dtype (results of solvers are returned in it)."""
        return self._dtype

    @property
    def compute_dtype(self) -> torch.dtype:
        return compute_dtype(self._dtype)

    @property
    def device(self) -> torch.device:
        return self._a.device

    def present(self) -> Tensor:
        """``(*batch, L)`` bool, True for present players (expanded view)."""
        if self._mask is None:
            return torch.ones(self._L, dtype=torch.bool, device=self.device).expand(
                *self._batch, self._L
            )
        return self._mask.expand(*self._batch, self._L)

    def __repr__(self) -> str:
        return (
            f"ScaleGame(batch_shape={tuple(self._batch)}, L={self._L}, dtype={self._dtype}, "
            f"masked={self._mask is not None})"
        )

    def __getitem__(self, index: Any) -> ScaleGame:
        """Index the batch dimensions."""
        if len(self._batch) == 0:
            raise IndexError("this game is not batched; there is nothing to index")
        a = self._a.expand(*self._batch, self._L)[index]
        C = self._C.expand(*self._batch, self._L, self._L)[index]
        mask = None if self._mask is None else self.present()[index]
        return ScaleGame(a, C, mask)

    # -------------------------------------------------------------- internals
    def effective(self, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """The effective game ``(a_eff (*batch', L), C_eff (*batch'', L, L))``.

        Absent players get ``a_l = -1`` and the identity's row and column in
        ``C``; present entries are the given ones. Differentiable: the gradient
        of a present entry is its cotangent, of an absent one zero. Without a
        mask the given tensors are returned (cast to ``dtype``), unexpanded.
        Where ``a``, ``C`` and the mask all have the full batch shape on the CPU,
        one numba pass per game computes it
        (:func:`aggregation.scale.lcp_kernel.effective_game`); elsewhere the
        ``torch.where`` composition, the same bits.
        """
        dtype = dtype or self.compute_dtype
        a = self._a.to(dtype)
        C = self._C.to(dtype)
        if self._mask is None:
            return a, C
        m = self._mask
        L = self._L
        full = (*self._batch, L)
        if (
            tuple(a.shape) == full == tuple(m.shape)
            and tuple(C.shape) == (*full, L)
            and not torch.compiler.is_compiling()
            and lcp_kernel.applies(a, C)
        ):  # one pass per game (numba) instead of a broadcast (B, L, L) mask and where
            a_flat, C_flat = _Effective.apply(
                a.reshape(-1, L), C.reshape(-1, L, L), m.reshape(-1, L)
            )
            return a_flat.view(full), C_flat.view(*full, L)
        a = torch.where(m, a, torch.full((), -1.0, dtype=dtype, device=a.device))
        both = m.unsqueeze(-1) & m.unsqueeze(-2)  # (*batch_m, L, L)
        eye = torch.eye(L, dtype=dtype, device=C.device)
        C = torch.where(both, C, eye)
        return a, C

    def _x(self, x: Any, name: str = "x") -> Tensor:
        t = as_tensor(x, name, min_dim=1)
        if t.shape[-1] != self._L:
            raise ValueError(
                f"{name} must have shape (*batch, {self._L}) (one strategy per player); "
                f"received {describe(t)}"
            )
        try:
            torch.broadcast_shapes(t.shape[:-1], self._batch)
        except RuntimeError:
            raise ValueError(
                f"{name} batch shape {tuple(t.shape[:-1])} does not broadcast with the "
                f"game's batch shape {tuple(self._batch)}"
            ) from None
        dtype = torch.promote_types(self.compute_dtype, compute_dtype(t.dtype))
        return t.to(dtype)

    # ------------------------------------------------------------ evaluation
    def pseudo_gradient(self, x: Any) -> Tensor:
        """``(*batch, L)`` ``F(x) = C x - a`` (zero for absent players)."""
        x = self._x(x)
        a, C = self.effective(x.dtype)
        diag = C.diagonal(dim1=-2, dim2=-1)
        w = diag * x - (a - others_sum(C, x))  # C_ll x_l - r_l
        return self._zero_absent(w)

    def _zero_absent(self, t: Tensor) -> Tensor:
        if self._mask is None:
            return t
        return torch.where(self._mask, t, torch.zeros((), dtype=t.dtype, device=t.device))

    def utilities(self, x: Any) -> Tensor:
        """``(*batch, L)`` ``u_l(x) = x_l (a_l - (C x)_l + 1/2 C_ll x_l)`` (0 if absent)."""
        x = self._x(x)
        a, C = self.effective(x.dtype)
        Cx = (C @ x.unsqueeze(-1)).squeeze(-1)
        diag = C.diagonal(dim1=-2, dim2=-1)
        return self._zero_absent(x * (a - Cx + 0.5 * diag * x))

    def costs(self, x: Any) -> Tensor:
        """``(*batch, L)`` player costs ``-u_l(x)``."""
        return -self.utilities(x)

    def best_response(self, x: Any) -> Tensor:
        """``(*batch, L)`` ``BR_l = max(0, (a_l - sum_{k != l} C_lk x_k) / C_ll)``."""
        x = self._x(x)
        a, C = self.effective(x.dtype)
        diag = C.diagonal(dim1=-2, dim2=-1)
        r = a - others_sum(C, x)
        return self._zero_absent((r / diag).clamp_min(0))

    def regret(self, x: Any) -> Tensor:
        """``(*batch, L)`` utility gain of each player's best response.

        ``regret_l = C_ll/2 (x_l - BR_l)^2 + max(0, -r_l) x_l`` with
        ``r_l = a_l - sum_{k != l} C_lk x_k`` (closed form, no cancellation).
        ``x`` must be nonnegative (the strategy space). The arithmetic is the
        solvers' (elementwise, in a fixed order, independent of the batch), so
        ``game.regret(result.x)`` equals ``result.regret`` bit for bit.
        """
        x = self._x(x)
        if x.numel() and float(x.min()) < 0:
            raise ValueError(
                f"x must be nonnegative (strategies are x_l >= 0); received min entry "
                f"{float(x.min()):.3g}"
            )
        a, C = self.effective(x.dtype)
        diag = C.diagonal(dim1=-2, dim2=-1)
        r = a - others_sum(C, x)
        return self._zero_absent(_regret(x, r, diag))

    def payoff_unit(self) -> Tensor:
        """``(*batch,)`` the game's payoff unit ``U = max_l a_l^2 / C_ll`` (present l).

        For ``a_l > 0``, ``a_l^2 / (2 C_ll)`` is the payoff player l earns by its
        best response when the others play 0. Scaling ``(a, C)`` by ``s``
        scales every payoff and ``U`` by ``s``, and scaling ``a`` alone by ``s``
        scales them by ``s^2``: the solvers' ``tol`` is relative to ``U``
        (``converged`` iff ``max_l regret_l <= tol U``, see
        :func:`~aggregation.solve_scale_game`), so that a game and its rescaled
        copies get the same verdict.
        """
        a, C = self.effective()
        unit = _payoff_unit(a, C.diagonal(dim1=-2, dim2=-1), self.present())
        return unit.expand(self._batch)

    def exploitability(self, x: Any) -> Tensor:
        """``(*batch,)`` summed regret divided by the number of present players."""
        reg = self.regret(x)
        count = self.present().sum(-1).to(reg.dtype)
        return reg.sum(-1) / count

    def is_nash(self, x: Any, tol: float = 1e-8) -> Tensor:
        """``(*batch,)`` True iff ``max_l regret_l(x) <= tol`` (payoff units)."""
        tol = check_nonnegative(tol, "tol")
        return self.regret(x).amax(-1) <= tol

    def complementarity_residual(self, x: Any) -> Tensor:
        """``(*batch,)`` natural residual ``max_l |min(x_l, (C x - a)_l)|``.

        Zero exactly at the equilibrium (``x = max(0, x - F(x))``).
        """
        x = self._x(x)
        w = self.pseudo_gradient(x)
        return self._zero_absent(torch.minimum(x, w).abs()).amax(-1)

    def symmetric_part(self) -> Tensor:
        """``(*batch_C', L, L)`` ``(C + C^T) / 2`` of the effective game."""
        _, C = self.effective()
        return 0.5 * (C + C.mT)

    def min_eigenvalue(self) -> Tensor:
        """``(*batch,)`` smallest eigenvalue of the symmetric part of C on present players.

        The game is strongly monotone (unique equilibrium; every solver here
        converges) iff this is > 0. Absent players are excluded (their
        diagonal is raised above the spectrum of the present block).
        """
        with torch.no_grad():
            S = 0.5 * (self._C + self._C.mT).to(self.compute_dtype)
            if self._mask is not None:
                m = self._mask
                bound = S.abs().sum(-1).amax(-1, keepdim=True) + 1.0  # (*batch, 1)
                both = m.unsqueeze(-1) & m.unsqueeze(-2)
                eye = torch.eye(self._L, dtype=S.dtype, device=S.device)
                S = torch.where(both, S, eye * bound.unsqueeze(-1))
            S = S.expand(*self._batch, self._L, self._L)
            return torch.linalg.eigvalsh(S)[..., 0]

    def monotonicity(self) -> Tensor:
        """``(*batch,)`` the strong-monotonicity modulus ``mu = min_eigenvalue()``.

        ``(F(x) - F(y))^T (x - y) >= mu ||x - y||^2`` for all x, y (F is linear),
        so the game is strongly monotone iff ``mu > 0``.
        """
        return self.min_eigenvalue()

    def is_monotone(self, margin: float = 0.0) -> Tensor:
        """``(*batch,)`` True iff the symmetric part of C has eigenvalues > ``margin``."""
        margin = check_nonnegative(margin, "margin")
        return self.min_eigenvalue() > margin


def _regret(x: Tensor, r: Tensor, diag: Tensor) -> Tensor:
    """Closed-form regret from ``r = a - sum_{k != l} C_lk x_k`` (no validation)."""
    return _regret_terms(x, r, diag)[0]


def _regret_terms(x: Tensor, r: Tensor, diag: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(regret, BR, x - BR)``: the regret's arithmetic, with its intermediates."""
    br = r.clamp_min(0) / diag
    gap = x - br
    return 0.5 * diag * gap.square() + (-r).clamp_min(0) * x, br, gap


def _others_parts(C: Tensor, x: Tensor, absolute: bool = False) -> list[Tensor]:
    """``[s_0, ..., s_{L-1}]``, ``s_l = sum_{k != l} C_lk x_k`` ``(...)``, for ``C (..., L, L)``.

    Summed over ``k != l`` in increasing order by elementwise ops only (one
    product, then fused multiply-adds) on the ``(...)`` slices: each batch
    element's arithmetic is the same whatever the batch around it, its layout
    or its size, unlike a batched matrix product, whose blocking depends on
    them. Bit-exact batch invariance of the certificates (and of causality in
    :mod:`maha`) rests on it. ``absolute``: ``sum_{k != l} |C_lk| x_k`` instead.
    In structure-of-arrays layout (``C`` a permuted view of ``(L, L, n)``) the
    slices are contiguous vectors.
    """
    L = x.shape[-1]
    xs = [x[..., k] for k in range(L)]
    parts = []
    for l in range(L):
        acc = None
        for k in range(L):
            if k == l:
                continue
            c = C[..., l, k].abs() if absolute else C[..., l, k]
            acc = c * xs[k] if acc is None else torch.addcmul(acc, c, xs[k])
        parts.append(torch.zeros_like(xs[l] * C[..., l, l]) if acc is None else acc)
    return parts


def others_sum(C: Tensor, x: Tensor) -> Tensor:
    """``(..., L)`` ``s_l = sum_{k != l} C_lk x_k``, what the other players do to player l.

    ``C (..., L, L)`` and ``x (..., L)`` broadcast; no validation. The arithmetic
    is :func:`_others_parts`' (batch-invariant elementwise ops), so
    ``a - others_sum(C, x)`` is bit for bit the ``r`` of :meth:`ScaleGame.regret`
    and of :func:`certify_profile`.
    """
    return torch.stack(_others_parts(C, x), -1)


def _payoff_unit(a: Tensor, diag: Tensor, present: Tensor) -> Tensor:
    """``(...,)`` ``max_l a_l^2 / C_ll`` over present players."""
    unit = a.square() / diag  # (..., L)
    zero = torch.zeros((), dtype=unit.dtype, device=unit.device)
    return torch.where(present, unit, zero).amax(-1)


class Certificate(NamedTuple):
    """What a profile is, judged from the profile itself (:func:`certify_profile`)."""

    regret: Tensor  # (..., L) closed-form regret, 0 for absent players (as ScaleGame.regret)
    residual: Tensor  # (...,) natural residual max_l |min(x_l, (C x - a)_l)|
    converged: Tensor  # (...,) bool: max_l (regret_l + rounding bound_l) <= tol * U
    diverged: Tensor  # (...,) bool: x not finite, or beyond what the dtype resolves


def certify_profile(
    a: Tensor,
    C: Tensor,
    x: Tensor,
    present: Tensor | None,
    tol: float,
    row_max: Tensor | None = None,
) -> Certificate:
    """The one certificate of every scale-game solver, from the profile ``x`` it returns.

    ``a (..., L)``, ``C (..., L, L)`` (the effective game), ``x (..., L) >= 0``
    and ``present (..., L)`` bool (None: all present) broadcast; all in one
    floating dtype, that of the arithmetic. The regret is :meth:`ScaleGame.regret`'s formula and
    arithmetic (player by player, batch-invariant: :func:`_others_parts`).

    ``converged`` holds iff ``max_l (regret_l + e_l) <= tol * U``, with ``U`` the
    payoff unit (:meth:`ScaleGame.payoff_unit`) and ``e_l`` a bound on the
    rounding error of ``regret_l`` in the dtype: with ``rho_l = (L + 2) eps
    (|a_l| + max_k |C_lk| sum_k x_k)`` bounding the error of ``r_l``
    and ``d_l = rho_l / C_ll + eps (x_l + BR_l)`` that of ``x_l - BR_l``,
    ``e_l = C_ll d_l (|x_l - BR_l| + d_l) + max(0, rho_l - |r_l|) x_l``. A
    profile whose regret cancellation could hide (``x`` of ``1e17`` in a game
    with payoffs of order one) is therefore never certified; NaN is never
    certified. ``diverged``: ``x`` is not finite, or ``max_l rho_l > max_l
    |a_l|`` (the rounding of ``r`` exceeds the utilities: the profile carries no
    information in this dtype). ``row_max``: ``max_k |C_lk|`` ``(..., L)`` if
    the caller has it.
    """
    L = x.shape[-1]
    eps = (L + 2) * float(torch.finfo(x.dtype).eps)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)

    def only(t: Tensor) -> Tensor:
        return t if present is None else torch.where(present, t, zero)

    # stacked on a leading dim and moved back: a view in the layout of the slices
    s = torch.stack(_others_parts(C, x), 0).movedim(0, -1)  # (..., L)
    if row_max is None:
        row_max = C.abs().amax(-1)  # (..., L): max_k |C_lk|
    x_sum = ordered_sum(x.unbind(-1))  # (...,)
    diag = C.diagonal(dim1=-2, dim2=-1)  # (..., L)
    r = a - s
    raw, br, gap = _regret_terms(x, r, diag)
    regret = only(raw)
    w = diag * x - r  # (C x - a)_l, as ScaleGame.pseudo_gradient
    residual = only(torch.minimum(x, w).abs()).amax(-1)
    a_abs = a.abs()
    rho = eps * torch.addcmul(a_abs, row_max, x_sum.unsqueeze(-1))  # bound on the error of r
    d = rho / diag + eps * (x + br)  # bound on the error of x - BR
    slack = torch.addcmul((rho - r.abs()).clamp_min(0) * x, diag * d, gap.abs() + d)
    bound = only(regret + slack).amax(-1)
    unit = only(a.square() / diag).amax(-1)
    converged = bound <= tol * unit
    if math.isinf(tol):
        converged = torch.ones_like(converged)
    diverged = ~(only(rho).amax(-1) <= only(a_abs).amax(-1))  # also NaN / inf
    return Certificate(regret, residual, converged, diverged)
