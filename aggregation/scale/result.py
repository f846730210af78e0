"""The result type of the scale-game solvers."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..result import EquilibriumResult, _index_batch

__all__ = ["ScaleGameResult"]


@dataclass(frozen=True, kw_only=True)
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

    def __getitem__(self, index) -> ScaleGameResult:
        """Index the batch dimensions."""
        b = len(self.batch_shape)
        x = _index_batch(self.x, index, b)
        return ScaleGameResult(
            strategies=tuple(x.unbind(-1)),
            regret=_index_batch(self.regret, index, b),
            converged=_index_batch(self.converged, index, b),
            iterations=_index_batch(self.iterations, index, b),
            method=self.method,
            tol=self.tol,
            residual=None if self.residual is None else _index_batch(self.residual, index, b),
            info={k: _index_batch(v, index, b) for k, v in self.info.items()},
            x=x,
            weights=_index_batch(self.weights, index, b),
            support=_index_batch(self.support, index, b),
        )

    def __repr__(self) -> str:
        if len(self.batch_shape) == 0:
            xs = ", ".join(f"{v:.4g}" for v in self.x.detach().reshape(-1).tolist())
            return (
                f"ScaleGameResult(method={self.method!r}, x=[{xs}], "
                f"max_regret={float(self.max_regret):.3g}, converged={bool(self.converged)}, "
                f"iterations={int(self.iterations)})"
            )
        done = int(self.converged.sum())
        worst = float(self.max_regret.max()) if self.regret.numel() else 0.0
        return (
            f"ScaleGameResult(method={self.method!r}, batch_shape={tuple(self.batch_shape)}, "
            f"L={self.x.shape[-1]}, converged={done}/{self.converged.numel()}, "
            f"max_regret={worst:.3g}, tol={self.tol:g})"
        )
