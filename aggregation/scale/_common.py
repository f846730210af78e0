"""Shared plumbing of the scale-game solvers: preparation, result assembly, gradients.

Every solver computes, without a graph, a profile ``x`` ``(B, L)`` (flattened
batch) and an active set ``S``; :func:`finish` turns it into a
:class:`~aggregation.scale.result.ScaleGameResult` and, when ``a`` or ``C``
require grad, attaches ``x`` to their graph through the KKT conditions on the
active set (implicit differentiation,
:func:`aggregation.scale.active_set.attach_kkt`):

    F(x; a, C) = (C x - a)_l  for l in S,     F(x; a, C) = x_l  for l not in S ,

whose Jacobian ``dF/dx`` is ``C`` on the rows of S and the identity elsewhere.
For a P-matrix (in particular a monotone game) and strict complementarity this
gives the exact derivative ``dx_S = C_SS^{-1} (da_S - dC_S. x)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..result import warn_not_converged
from ..tolerance import default_tol
from ..validation import check_choice, check_int, check_nonnegative, describe
from .active_set import attach_kkt
from .game import Certificate, ScaleGame, certify_profile
from .result import ScaleGameResult, profile_weights

__all__ = [
    "Prepared",
    "certify",
    "finish",
    "out_dtype",
    "prepare",
]


@dataclass
class Prepared:
    """A game flattened for a solver: everything ``(B, ...)`` in the compute dtype."""

    game: ScaleGame
    a: Tensor  # (B, L) effective utilities, detached
    C: Tensor  # (B, L, L) effective interaction matrix, detached
    present: Tensor  # (B, L) bool
    dtype: torch.dtype
    batch: torch.Size
    L: int
    tol: float


def out_dtype(game: ScaleGame) -> torch.dtype:
    """The dtype of the returned profile: the game's (half precision stays half)."""
    return game.dtype if game.dtype in (torch.float16, torch.bfloat16) else game.compute_dtype


def prepare(
    game: ScaleGame,
    tol: float | None,
    dtype: torch.dtype | None = None,
    effective: tuple[Tensor, Tensor] | None = None,
) -> Prepared:
    """Validate ``game``/``tol`` and flatten the effective game (no graph).

    ``tol`` (relative to the payoff unit, :func:`certify`) defaults to
    :func:`aggregation.tolerance.default_tol` of the returned profile's dtype.
    ``effective``: ``game.effective(dtype)`` when the caller has it already (a solver
    that attaches gradients builds it once, with its graph, for both uses).
    """
    if not isinstance(game, ScaleGame):
        raise TypeError(f"game must be a ScaleGame; received {describe(game)}")
    dtype = dtype or game.compute_dtype
    tol = default_tol(out_dtype(game)) if tol is None else check_nonnegative(tol, "tol")
    batch, L = game.batch_shape, game.num_players
    with torch.no_grad():
        a, C = game.effective(dtype) if effective is None else effective
        a = a.detach().expand(*batch, L).reshape(-1, L)
        C = C.detach().expand(*batch, L, L).reshape(-1, L, L)
        present = game.present().reshape(-1, L)
    return Prepared(game, a, C, present, dtype, batch, L, tol)


def certify(prep: Prepared, x: Tensor, idx: Tensor | None = None) -> Certificate:
    """The certificate of flat profiles ``x`` ``(B, L)`` (``(len(idx), L)`` for batch rows ``idx``).

    The formula is :func:`aggregation.scale.game.certify_profile` (regret as
    :meth:`~aggregation.ScaleGame.regret`, ``converged`` iff the regret plus its
    rounding bound is at most ``tol`` times the payoff unit). ``x`` is judged in
    the dtype of the returned profile: a half-precision game's profile is
    rounded to it first (the arithmetic stays float32).
    """
    x = x.to(out_dtype(prep.game)).to(prep.dtype)
    a, C, present = prep.a, prep.C, prep.present
    if idx is not None:
        a, C, present = a[idx], C[idx], present[idx]
    return certify_profile(a, C, x, present, prep.tol)


def check_options(
    method: str, backward: str, differentiable: bool, max_iter: int | None, default_iter: int
) -> int:
    check_choice(backward, "backward", ("implicit", "unrolled"))
    if not isinstance(differentiable, bool):
        raise TypeError(
            f"differentiable must be True or False; received {describe(differentiable)}"
        )
    if max_iter is None:
        return default_iter
    return check_int(max_iter, "max_iter", minimum=1)


def wants_grad(game: ScaleGame, differentiable: bool) -> bool:
    return (
        differentiable
        and torch.is_grad_enabled()
        and (game.a.requires_grad or game.C.requires_grad)
    )


def finish(
    prep: Prepared,
    x: Tensor,
    support: Tensor,
    iterations: Tensor,
    method: str,
    *,
    x_graph: Tensor | None = None,
    grad: bool = False,
    info: dict[str, Tensor] | None = None,
    certificate: Certificate | None = None,
    effective: tuple[Tensor, Tensor] | None = None,
) -> ScaleGameResult:
    """Assemble the result for flattened ``x`` ``(B, L)`` (detached) and active set ``S``.

    ``x_graph``, if given, is a differentiable version of ``x`` (unrolled mode);
    otherwise, with ``grad``, ``x`` is attached by implicit differentiation to the
    effective game (``effective``, with its graph, if the caller built it already).

    Elements whose ``x`` diverged (not finite, or beyond the range where the
    dtype resolves its regret: ``Certificate.diverged``)
    are replaced by the documented fallback ``x = 0`` (uniform weights over the
    present players) and flagged in ``info["diverged"]``. The certificate
    (``regret``, ``residual``, ``converged``) is then computed from the profile
    returned, rounded to its dtype; ``certificate``, if given, must have been
    computed by :func:`certify` on exactly the values of ``x`` (it saves the
    recomputation; ignored when the returned profile differs from ``x``).
    """
    game, batch, L = prep.game, prep.batch, prep.L
    dtype_out = out_dtype(game)
    with torch.no_grad():
        if x_graph is not None:
            x = x_graph.detach().reshape(x.shape)
        if certificate is None or x_graph is not None or dtype_out != prep.dtype:
            certificate = certify(prep, x)
        diverged = certificate.diverged  # (B,)
        if bool(diverged.any()):  # the documented fallback x = 0, judged as returned
            idx = diverged.nonzero().squeeze(-1)
            x = x.index_put((idx,), torch.zeros((), dtype=x.dtype, device=x.device))
            redo = certify(prep, x[idx], idx)
            certificate = Certificate(
                certificate.regret.index_put((idx,), redo.regret),
                certificate.residual.index_put((idx,), redo.residual),
                certificate.converged.index_put((idx,), redo.converged),
                diverged,
            )
        regret, residual, converged, _ = certificate
    regret = regret.reshape(*batch, L)
    residual = residual.reshape(batch)
    converged = converged.reshape(batch)
    diverged = diverged.reshape(batch)
    support = (support & ~diverged.reshape(-1, 1).expand_as(support)).reshape(*batch, L)
    if x_graph is not None:
        x_out = x_graph.reshape(*batch, L)
        zero = torch.zeros((), dtype=x_out.dtype, device=x_out.device)
        x_out = torch.where(diverged.unsqueeze(-1), zero, x_out)
    elif grad:
        a, C = game.effective(prep.dtype) if effective is None else effective
        x_out = attach_kkt(x.reshape(*batch, L), a, C, support, converged, method, bordered=False)
    else:
        x_out = x.reshape(*batch, L)
    weights, positive = profile_weights(x_out, None if game.mask is None else game.present())
    x_out = x_out.to(dtype_out)
    weights = weights.to(dtype_out)
    extra = {} if info is None else {k: v.reshape(batch) for k, v in info.items()}
    zero_total = ~positive.squeeze(-1)
    extra["zero_total"] = zero_total
    extra["diverged"] = diverged
    extra["fallback"] = zero_total & ~converged
    if not bool(converged.all()):
        warn_not_converged(converged, method)
    return ScaleGameResult(
        strategies=tuple(x_out.unbind(-1)),
        regret=regret.to(dtype_out),
        converged=converged,
        iterations=iterations.reshape(batch).to(torch.int64),
        method=method,
        tol=prep.tol,
        residual=residual.to(dtype_out),
        info=extra,
        x=x_out,
        weights=weights,
        support=support,
    )
