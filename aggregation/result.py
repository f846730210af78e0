"""Result types shared by every solver.

A solver for one equilibrium returns an :class:`EquilibriumResult`; an
enumeration method (all equilibria of each game) returns an
:class:`EquilibriumSet`, whose tensors carry an extra equilibrium dimension
``E`` after the batch dimensions, padded and marked by ``valid``.

Convention: a profile is called an equilibrium only when ``converged`` is
True, which every solver sets only if ``max_i regret_i <= tol`` for the
tolerance the caller asked for (payoff units).

Every batched result (these two, :class:`aggregation.ScaleGameResult`,
:class:`aggregation.ConvexAggregateResult`, :class:`aggregation.EliminationResult`)
is a frozen dataclass built on
:class:`BatchedResult`, whose indexing and repr walk the dataclass fields.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = ["BatchedResult", "EquilibriumResult", "EquilibriumSet", "warn_not_converged"]


def _index_value(value: Any, index: Any) -> Any:
    """``value`` with its leading batch dimensions indexed by ``index``.

    Tensors, and batched objects (a value with a ``batch_shape`` that indexes
    its batch, such as a game), are indexed; tuples, lists and dicts are walked;
    None, strings and numbers (``method``, ``tol``) are per-result, not
    per-element, and kept.
    """
    if isinstance(value, Tensor) or hasattr(value, "batch_shape"):
        return value[index]
    if isinstance(value, (tuple, list)):
        return type(value)(_index_value(v, index) for v in value)
    if isinstance(value, dict):
        return {k: _index_value(v, index) for k, v in value.items()}
    return value


def _format_one(value: Any) -> str:
    """One unbatched value: a 0-d tensor as a number, a vector as a list, strategies as lists."""
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_format_one(v) for v in value) + ")"
    if isinstance(value, Tensor):
        v = value.detach()
        if v.dim() == 0:
            if v.dtype == torch.bool:
                return str(bool(v))
            if not v.is_floating_point():
                return str(int(v))
            return f"{float(v):.3g}"
        return "[" + ", ".join(f"{x:.4g}" for x in v.reshape(-1).tolist()) + "]"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _format_batch(name: str, value: Any) -> str:
    """``name=...`` for one batched value: a bool tensor as ``k/n`` True, a
    float tensor as its largest entry (``max_<name>``), an integer tensor as its
    sum (``total_<name>``), a shape as a tuple, anything else as unbatched."""
    if isinstance(value, Tensor):
        v = value.detach()
        if v.dtype == torch.bool:
            return f"{name}={int(v.sum())}/{v.numel()}"
        if v.is_floating_point():
            label = name if name.startswith("max_") else f"max_{name}"
            return f"{label}={float(v.max()) if v.numel() else 0.0:.3g}"
        return f"total_{name}={int(v.sum())}"
    if isinstance(value, torch.Size):
        return f"{name}={tuple(value)}"
    return f"{name}={_format_one(value)}"


class BatchedResult:
    """Base of every batched result: indexing and repr that walk the dataclass fields.

    A subclass is a frozen dataclass (declared with ``repr=False``, so that
    this ``__repr__`` is kept) whose tensor fields, and the tensors inside its
    tuple and dict fields, all lead with the batch dimensions ``(*batch, ...)``,
    and which defines :attr:`batch_shape`. Then:

    * ``result[index]`` indexes the batch dimensions of every field (tensors,
      tuples and dicts of tensors; None, ``method`` and ``tol`` are kept), so
      ``result[i]`` is batch element ``i``'s result; an unbatched result raises
      ``IndexError``. A subclass whose fields derive from one another adjusts
      :meth:`_index_fields`.
    * ``repr(result)`` names the class and the attributes listed in
      ``_repr_one`` (an unbatched result: their values) or ``_repr_batch``
      (a batched result: ``batch_shape`` and, per attribute, how many elements
      are True, the largest value or the total: :func:`_format_batch`).
    """

    _repr_one: ClassVar[tuple[str, ...]] = ()
    _repr_batch: ClassVar[tuple[str, ...]] = ()

    @property
    def batch_shape(self) -> torch.Size:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _index_fields(self, index: Any) -> dict[str, Any]:
        """Every dataclass field's value with the batch dimensions indexed."""
        return {f.name: _index_value(getattr(self, f.name), index) for f in fields(self)}

    def __getitem__(self, index: Any):
        """Index the batch dimensions: ``result[3]`` is batch element 3's result."""
        if len(self.batch_shape) == 0:
            raise IndexError("this result is not batched; there is nothing to index")
        return type(self)(**self._index_fields(index))

    def __repr__(self) -> str:
        name = type(self).__name__
        if len(self.batch_shape) == 0:
            parts = [f"{a}={_format_one(getattr(self, a))}" for a in self._repr_one]
        else:
            parts = [_format_batch(a, getattr(self, a)) for a in self._repr_batch]
        return f"{name}({', '.join(parts)})"


@dataclass(frozen=True, repr=False)
class EquilibriumResult(BatchedResult):
    """One (approximate) equilibrium per game of a batch.

    Attributes:
        strategies: one tensor per player; player i's has shape ``(*batch, A_i)``
            (a mixed strategy on the simplex) for finite games, or ``(*batch,)``
            (a scalar strategy) for the scale game.
        regret: ``(*batch, N)``, player i's gain from its best deviation,
            ``max_a u_i(a, sigma_-i) - u_i(sigma)`` (payoff units, >= 0).
        converged: ``(*batch,)`` bool, True iff ``regret.max(-1) <= tol``
            (and, for iterative methods, the stopping rule fired).
        iterations: ``(*batch,)`` int64, iterations (or pivots) used per game.
        method: the name of the algorithm that produced the result.
        tol: the tolerance (payoff units) that ``converged`` refers to.
        residual: optional ``(*batch,)`` solver-specific residual (for example
            a KKT or complementarity residual), or None.
        info: free-form extra per-element diagnostics (for example
            ``{"degenerate": Tensor}``), never required by callers.
        path: the trajectory of a learning dynamic, or None. Set only when
            the caller asks for it (``path_every=k``): one tensor per player
            of shape ``(*batch, T, A_i)``, point ``t`` being the profile the
            solver would return after ``t * k`` rounds (point 0 the start),
            ``T = rounds // k + 1``; a game that stopped earlier repeats its
            final profile.
    """

    strategies: tuple[Tensor, ...]
    regret: Tensor
    converged: Tensor
    iterations: Tensor
    method: str
    tol: float
    residual: Tensor | None = None
    info: dict[str, Tensor] = field(default_factory=dict)
    path: tuple[Tensor, ...] | None = None

    _repr_one = ("method", "strategies", "max_regret", "converged", "iterations")
    _repr_batch = ("method", "batch_shape", "converged", "max_regret", "tol")

    @property
    def batch_shape(self) -> torch.Size:
        """The batch shape ``(*batch,)``."""
        return self.converged.shape

    @property
    def num_players(self) -> int:
        return len(self.strategies)

    @property
    def nash_conv(self) -> Tensor:
        """``(*batch,)`` sum of the players' regrets."""
        return self.regret.sum(-1)

    @property
    def exploitability(self) -> Tensor:
        """``(*batch,)`` NashConv divided by the number of players."""
        return self.regret.sum(-1) / self.regret.shape[-1]

    @property
    def max_regret(self) -> Tensor:
        """``(*batch,)`` the largest player regret; an eps-equilibrium iff <= eps."""
        return self.regret.max(-1).values


@dataclass(frozen=True, repr=False)
class EquilibriumSet(BatchedResult):
    """All equilibria found for each game of a batch, padded to a common count.

    Attributes:
        strategies: one tensor per player of shape ``(*batch, E, A_i)``; rows
            with ``valid == False`` are padding (zeros).
        regret: ``(*batch, E, N)`` per-equilibrium, per-player regret.
        valid: ``(*batch, E)`` bool, which of the E slots hold an equilibrium.
        count: ``(*batch,)`` int64, the number of equilibria found per game.
        degenerate: ``(*batch,)`` bool, True where the game was detected as
            degenerate (then completeness guarantees are weaker: see the
            solver's docstring).
        method: the algorithm's name.
        tol: the regret tolerance (payoff units) every returned profile meets.
        actions: for sets of pure equilibria (``pure_equilibria``), the
            action indices ``(*batch, E, N)`` int64 of each equilibrium's
            pure profile, -1 in padding rows; None for mixed equilibria.
    """

    strategies: tuple[Tensor, ...]
    regret: Tensor
    valid: Tensor
    count: Tensor
    degenerate: Tensor
    method: str
    tol: float
    info: dict[str, Tensor] = field(default_factory=dict)
    actions: Tensor | None = None

    _repr_one = ("method", "count", "degenerate")
    _repr_batch = ("method", "batch_shape", "count", "degenerate")

    @property
    def batch_shape(self) -> torch.Size:
        return self.count.shape

    def __len__(self) -> int:
        """The number of equilibria of an unbatched game."""
        if len(self.batch_shape) != 0:
            raise TypeError(
                "len() is defined for an unbatched EquilibriumSet only; "
                f"this one has batch shape {tuple(self.batch_shape)}: use .count"
            )
        return int(self.count)

    def to_list(self) -> list[EquilibriumResult]:
        """The equilibria of an unbatched game as a list of results."""
        if len(self.batch_shape) != 0:
            raise TypeError(
                "to_list() needs an unbatched EquilibriumSet; index the batch first "
                f"(batch shape {tuple(self.batch_shape)})"
            )
        out = []
        for e in torch.nonzero(self.valid).flatten().tolist():
            regret = self.regret[e]
            out.append(
                EquilibriumResult(
                    strategies=tuple(s[e] for s in self.strategies),
                    regret=regret,
                    converged=regret.max() <= self.tol,
                    iterations=torch.zeros((), dtype=torch.int64),
                    method=self.method,
                    tol=self.tol,
                )
            )
        return out

    def __iter__(self):
        return iter(self.to_list())


def warn_not_converged(converged: Tensor, method: str) -> None:
    """Warn once per call when some batch elements did not converge."""
    failed = int((~converged).sum())
    if failed:
        warnings.warn(
            f"{method}: {failed} of {converged.numel()} batch elements did not reach "
            "the requested tolerance; see result.converged and result.regret",
            RuntimeWarning,
            stacklevel=3,
        )
