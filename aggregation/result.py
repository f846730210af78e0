"""Result types shared by every solver.

A solver for one equilibrium returns an :class:`EquilibriumResult`; an
enumeration method (all equilibria of each game) returns an
:class:`EquilibriumSet`, whose tensors carry an extra equilibrium dimension
``E`` after the batch dimensions, padded and marked by ``valid``.

Convention: a profile is called an equilibrium only when ``converged`` is
True, which every solver sets only if ``max_i regret_i <= tol`` for the
tolerance the caller asked for (payoff units).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["EquilibriumResult", "EquilibriumSet", "warn_not_converged"]


def _index_batch(tensor: Tensor, index, batch_dims: int) -> Tensor:
    if batch_dims == 0:
        raise IndexError("this result is not batched; there is nothing to index")
    return tensor[index]


@dataclass(frozen=True)
class EquilibriumResult:
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

    def __getitem__(self, index) -> EquilibriumResult:
        """Index the batch dimensions: ``result[3]`` is game 3's result."""
        b = len(self.batch_shape)
        return EquilibriumResult(
            strategies=tuple(_index_batch(s, index, b) for s in self.strategies),
            regret=_index_batch(self.regret, index, b),
            converged=_index_batch(self.converged, index, b),
            iterations=_index_batch(self.iterations, index, b),
            method=self.method,
            tol=self.tol,
            residual=None if self.residual is None else _index_batch(self.residual, index, b),
            info={k: _index_batch(v, index, b) for k, v in self.info.items()},
            path=None if self.path is None else tuple(_index_batch(p, index, b) for p in self.path),
        )

    def __repr__(self) -> str:
        if len(self.batch_shape) == 0:
            probs = ", ".join(
                "[" + ", ".join(f"{p:.4g}" for p in s.reshape(-1).tolist()) + "]"
                for s in self.strategies
            )
            return (
                f"EquilibriumResult(method={self.method!r}, strategies=({probs}), "
                f"max_regret={float(self.max_regret):.3g}, converged={bool(self.converged)}, "
                f"iterations={int(self.iterations)})"
            )
        done = int(self.converged.sum())
        worst = float(self.max_regret.max()) if self.converged.numel() else 0.0
        return (
            f"EquilibriumResult(method={self.method!r}, batch_shape={tuple(self.batch_shape)}, "
            f"converged={done}/{self.converged.numel()}, max_regret={worst:.3g}, tol={self.tol:g})"
        )


@dataclass(frozen=True)
class EquilibriumSet:
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

    def __getitem__(self, index) -> EquilibriumSet:
        """Index the batch dimensions: ``eqs[3]`` is game 3's equilibria."""
        b = len(self.batch_shape)
        return EquilibriumSet(
            strategies=tuple(_index_batch(s, index, b) for s in self.strategies),
            regret=_index_batch(self.regret, index, b),
            valid=_index_batch(self.valid, index, b),
            count=_index_batch(self.count, index, b),
            degenerate=_index_batch(self.degenerate, index, b),
            method=self.method,
            tol=self.tol,
            info={k: _index_batch(v, index, b) for k, v in self.info.items()},
            actions=None if self.actions is None else _index_batch(self.actions, index, b),
        )

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

    def __repr__(self) -> str:
        if len(self.batch_shape) == 0:
            return (
                f"EquilibriumSet(method={self.method!r}, count={int(self.count)}, "
                f"degenerate={bool(self.degenerate)})"
            )
        return (
            f"EquilibriumSet(method={self.method!r}, batch_shape={tuple(self.batch_shape)}, "
            f"total={int(self.count.sum())}, degenerate={int(self.degenerate.sum())})"
        )


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
