"""The result type of the scale-game solvers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..result import EquilibriumResult
from ..small_linalg import ordered_sum

__all__ = ["ScaleGameResult", "profile_weights"]


@dataclass(frozen=True, kw_only=True, repr=False)
class ScaleGameResult(EquilibriumResult):
    """An :class:`~aggregation.EquilibriumResult` of a scale game, with the profile as one tensor.

    Inherited fields: ``strategies`` (L tensors of shape ``(*batch,)``, views of
    ``x``), ``regret`` ``(*batch, L)`` (payoff units, zero for absent players;
    ``game.regret(result.x)`` bit for bit), ``converged`` ``(*batch,)`` (True iff
    ``max_l regret_l``, plus its rounding bound, is ``<= tol * U``, ``U`` the
    game's payoff unit; judged on the returned, rounded ``x``), ``iterations``
    ``(*batch,)`` (pivots for the exact solver), ``method``, ``tol``, ``residual``
    ``(*batch,)`` (the natural complementarity residual
    ``max_l |min(x_l, (Cx - a)_l)|``) and ``info``.

    Attributes:
        x: ``(*batch, L)`` the equilibrium strategies (0 for absent players);
            differentiable with respect to ``a`` and ``C``.
        weights: ``(*batch, L)`` ``x / sum(x)`` over present players, the scale
            weights of the fused output. Where ``x = 0`` entirely (no player wants
            to play: all ``a_l <= 0``, or the fallback below) the weights are
            uniform over present players (and ``info["zero_total"]`` is True),
            never NaN. ``info["diverged"]``: the iteration diverged and ``x`` is
            the documented fallback 0; ``info["fallback"]``: the weights are
            uniform without ``x = 0`` being a certified equilibrium.
        support: ``(*batch, L)`` bool, the active set ``{l : x_l > 0}`` the solver
            used (strict complementarity is assumed for gradients).
    """

    x: Tensor
    weights: Tensor
    support: Tensor

    _repr_one = ("method", "x", "max_regret", "converged", "iterations")
    _repr_batch = ("method", "batch_shape", "num_players", "converged", "max_regret", "tol")

    def _index_fields(self, index: Any) -> dict[str, Any]:
        """As every result's, with ``strategies`` the views of the indexed ``x``."""
        values = super()._index_fields(index)
        values["strategies"] = tuple(values["x"].unbind(-1))
        return values


def profile_weights(x: Tensor, present: Tensor | None) -> tuple[Tensor, Tensor]:
    """The weights of profiles: :attr:`ScaleGameResult.weights`, the same for every solver.

        w_l = x_l / sum_k x_k   (sum over present players; uniform over them where it is 0)

    Args:
        x: ``(*batch, L)`` profiles, ``x >= 0`` and finite (every solver's returned ``x``).
        present: ``(*batch, L)`` bool, the present players (absent ones weigh 0), or None
            (all present); every batch element has one.

    Returns:
        ``(w, positive)``: ``(*batch, L)`` in ``x``'s dtype and ``(*batch, 1)`` bool,
        ``sum_l x_l > 0`` (where False the weights are the uniform fallback). Differentiable
        in ``x``.

    The total adds the players in order (batch-invariant,
    :func:`aggregation.small_linalg.ordered_sum`), so every solver's weights agree bit for bit
    on the same profile, whatever batch it comes in.

    Written with 0/1 float masks rather than ``torch.where``: for finite ``x`` the products
    by 1 and 0 and the sums with 0 are exact, so the values (and the gradients, the
    cotangent times the same masks) are those of the selection, with plain multiplies
    (which PyTorch's CPU kernels vectorise; a ``where`` on a boolean mask they do not).
    """
    dtype = x.dtype
    if present is None:
        uniform = torch.full((), 1.0 / x.shape[-1], dtype=dtype, device=x.device)
    else:
        keep = present.to(dtype)  # (*batch, L), 0 / 1
        x = x * keep
        uniform = keep / ordered_sum(keep.unbind(-1)).unsqueeze(-1).clamp_min(1)
    total = ordered_sum(x.unbind(-1)).unsqueeze(-1)  # (*batch, 1), in a fixed order
    positive = total > 0  # (*batch, 1)
    on = positive.to(dtype)
    off = 1 - on
    safe = total * on + off  # total where positive, else 1 (exact for finite totals)
    return x / safe * on + uniform * off, positive
