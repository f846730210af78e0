"""The result type of the scale-game solvers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..result import EquilibriumResult

__all__ = ["ScaleGameResult"]


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
