"""Dominated actions and iterated elimination of strictly dominated actions, batched.

For player i with payoff ``P_i`` and a set ``S_-i`` of opponent profiles,
action ``a`` is

* strictly dominated by action ``b`` iff ``P_i(b, s) > P_i(a, s)`` for every
  ``s`` in ``S_-i``;
* strictly dominated by a mixed strategy ``x`` iff
  ``sum_b x_b P_i(b, s) > P_i(a, s)`` for every ``s``, i.e. iff the zero-sum
  game ``G_a[b, s] = P_i(b, s) - P_i(a, s)`` (row player chooses ``b``) has a
  positive value;
* weakly dominated by action ``b`` iff ``P_i(b, s) >= P_i(a, s)`` for every
  ``s``, with strict inequality for some ``s``.

An action strictly dominated by a mixed strategy is never a best response, so
it is played in no Nash equilibrium, and removing it changes no equilibrium;
the iterated removal of strictly dominated actions ends, whatever the order,
in the same reduced game (Gilboa, Kalai & Zemel 1990). Weak dominance has
neither property (its iterated removal depends on the order and can delete
equilibria), so only the one-step test is provided for it.

All tests compare payoffs within ``tol`` (payoff units): "greater" means
greater by more than ``tol``. With pure strategies the default ``tol = 0`` is
exact (the sign of a floating-point difference is exact). The mixed test
solves one small linear program per action (:func:`~aggregation.linear_program`
on ``G_a``) and certifies a domination by the LP's strategy itself; its
default tolerance is the dtype's, :func:`aggregation.tolerance.default_tol`.

References:
    Fudenberg & Tirole (1991), *Game Theory*, section 2.1; Gilboa, Kalai &
    Zemel (1990), "On the order of eliminating dominated strategies",
    Oper. Res. Lett. 9; Myerson (1991), *Game Theory*, section 3.1.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ..result import BatchedResult
from ..tolerance import resolve_tol
from ..validation import check_nonnegative, compute_dtype, describe
from .exact.linear_program import linear_program
from .game import NormalFormGame

__all__ = [
    "EliminationResult",
    "iterated_elimination",
    "strictly_dominated_actions",
    "weakly_dominated_actions",
]


def _flatten(game: NormalFormGame) -> tuple[Tensor, list[Tensor]]:
    """The payoffs ``(B, N, *A)`` and, per player, ``(B, A_i, K_i)`` with the
    opponents' actions flattened (in player order) into ``K_i``."""
    if not isinstance(game, NormalFormGame):
        raise TypeError(f"game must be a NormalFormGame; received {describe(game)}")
    n, actions = game.num_players, game.num_actions
    size = math.prod(game.batch_shape)
    p = game.payoffs.detach().to(compute_dtype(game.dtype)).reshape(size, n, *actions)
    total = math.prod(actions)
    own = [p[:, i].movedim(1 + i, 1).reshape(size, a, total // a) for i, a in enumerate(actions)]
    return p, own  # own[i]: (B, A_i, K_i)


def _opponents(survivors: list[Tensor], i: int) -> Tensor:
    """``(B, K_i)`` True at the opponent profiles whose every action survives."""
    mask = None
    for j, s in enumerate(survivors):
        if j == i:
            continue
        mask = s if mask is None else (mask[:, :, None] & s[:, None, :]).flatten(1)
    if mask is None:  # one player: the single, empty opponent profile
        return torch.ones(survivors[i].shape[0], 1, dtype=torch.bool, device=survivors[i].device)
    return mask


def _gaps(m: Tensor) -> Tensor:
    """``(B, A, A, K)``: ``[a, b, s] = M[b, s] - M[a, s]`` for ``M`` ``(B, A, K)``."""
    return m[:, None, :, :] - m[:, :, None, :]


def _strict_pure(m: Tensor, own: Tensor, opp: Tensor, tol: float) -> Tensor:
    """``(B, A)``: surviving actions strictly dominated by a surviving action."""
    d = _gaps(m).masked_fill(~opp[:, None, None, :], math.inf)  # (B, A, A, K)
    beats = (d.amin(-1) > tol) & own[:, None, :]  # (B, a, b): b beats a everywhere
    return beats.any(-1) & own


def _weak_pure(m: Tensor, own: Tensor, opp: Tensor, tol: float) -> Tensor:
    """``(B, A)``: surviving actions weakly dominated by a surviving action."""
    d = _gaps(m)  # (B, A, A, K)
    low = d.masked_fill(~opp[:, None, None, :], math.inf).amin(-1)  # (B, a, b)
    high = d.masked_fill(~opp[:, None, None, :], -math.inf).amax(-1)  # (B, a, b)
    beats = (low >= -tol) & (high > tol) & own[:, None, :]
    return beats.any(-1) & own


def _strict_mixed(m: Tensor, own: Tensor, opp: Tensor, tol: float) -> Tensor:
    """``(B, A)``: surviving actions strictly dominated by a mixture of surviving ones.

    For each action ``a`` the zero-sum game ``G_a[b, s] = M[b, s] - M[a, s]`` is
    restricted to surviving rows and columns by padding: removed columns get
    ``max G + 1`` (never chosen by the minimising column player) and removed
    rows ``min G - 1`` (strictly dominated by the zero row ``a``), which keeps
    the value. ``a`` is dominated iff the LP's maximin strategy ``x``, zero on
    removed rows, earns more than ``tol`` against every surviving column.
    """
    size, a, k = m.shape
    if size == 0:
        return torch.zeros_like(own)
    g = _gaps(m)  # (B, a, b, K)
    rows = own[:, None, :, None].expand(size, a, a, k)  # (B, a, b, K)
    cols = opp[:, None, None, :].expand(size, a, a, k)  # (B, a, b, K)
    live = rows & cols
    top = g.masked_fill(~live, -math.inf).amax((-2, -1), keepdim=True)  # (B, a, 1, 1)
    bottom = g.masked_fill(~live, math.inf).amin((-2, -1), keepdim=True)  # (B, a, 1, 1)
    padded = torch.where(cols, g, top + 1)
    padded = torch.where(rows, padded, bottom - 1)  # (B, a, b, K)
    games = NormalFormGame.zero_sum(padded.reshape(size * a, a, k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # only x is used, checked below
        x = linear_program(games).strategies[0].reshape(size, a, a).to(g.dtype)  # (B, a, b)
    x = x.clamp_min(0) * own[:, None, :]  # weight on surviving rows only
    x = x / x.sum(-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    earned = (x[..., None] * g).sum(-2)  # (B, a, K): x's gain over a at every s
    margin = earned.masked_fill(~opp[:, None, :], math.inf).amin(-1)  # (B, a)
    return (margin > tol) & own


def _resolve(tol: float | None, mixed: bool, dtype: torch.dtype) -> float:
    if mixed:
        return resolve_tol(tol, dtype)
    return 0.0 if tol is None else check_nonnegative(tol, "tol")


def _unflatten(t: Tensor, game: NormalFormGame) -> Tensor:
    return t.reshape(tuple(game.batch_shape) + tuple(t.shape[1:]))


def strictly_dominated_actions(
    game: NormalFormGame, *, mixed: bool = False, tol: float | None = None
) -> tuple[Tensor, ...]:
    """Which actions are strictly dominated, for every player and game of a batch.

    Action ``a`` of player i is strictly dominated when another action
    (``mixed=False``) or a mixed strategy (``mixed=True``) earns more than
    ``P_i(a, s) + tol`` against every opponent profile ``s``. A mixed
    strategy can dominate where no pure one does (``P_i = [[3, 0], [0, 3],
    [1, 1]]``: the middle mixture beats the last row).

    Args:
        game: a :class:`~aggregation.NormalFormGame`, payoffs
            ``(*batch, N, A_1, ..., A_N)``.
        mixed: also test domination by mixed strategies (one linear program
            per action and game, solved as a batch).
        tol: margin in payoff units; None: 0 (exact) for pure strategies,
            :func:`~aggregation.tolerance.default_tol` of the dtype for mixed.

    Returns:
        N bool tensors ``(*batch, A_i)``, True at dominated actions.

    Example:
        >>> from aggregation.games import prisoners_dilemma
        >>> [d.tolist() for d in strictly_dominated_actions(prisoners_dilemma())]
        [[True, False], [True, False]]
    """
    _, own = _flatten(game)
    _check_bool(mixed, "mixed")
    tol = _resolve(tol, mixed, game.dtype)
    alive = [torch.ones(m.shape[:2], dtype=torch.bool, device=m.device) for m in own]
    test = _strict_mixed if mixed else _strict_pure
    return tuple(
        _unflatten(test(m, alive[i], _opponents(alive, i), tol), game) for i, m in enumerate(own)
    )


def weakly_dominated_actions(game: NormalFormGame, *, tol: float = 0.0) -> tuple[Tensor, ...]:
    """Which actions are weakly dominated by another action, batched.

    Action ``a`` of player i is weakly dominated by action ``b`` when
    ``P_i(b, s) >= P_i(a, s) - tol`` for every opponent profile ``s`` and
    ``P_i(b, s) > P_i(a, s) + tol`` for at least one (pure strategies only;
    duplicate actions do not dominate each other).

    Args:
        game: a :class:`~aggregation.NormalFormGame`, payoffs
            ``(*batch, N, A_1, ..., A_N)``.
        tol: margin in payoff units (default 0, exact).

    Returns:
        N bool tensors ``(*batch, A_i)``, True at weakly dominated actions.
    """
    tol = check_nonnegative(tol, "tol")
    _, own = _flatten(game)
    alive = [torch.ones(m.shape[:2], dtype=torch.bool, device=m.device) for m in own]
    return tuple(
        _unflatten(_weak_pure(m, alive[i], _opponents(alive, i), tol), game)
        for i, m in enumerate(own)
    )


@dataclass(frozen=True, repr=False)
class EliminationResult(BatchedResult):
    """The outcome of iterated elimination of strictly dominated actions.

    Attributes:
        survivors: one bool tensor per player, ``(*batch, A_i)``, True at the
            actions that survive.
        rounds: ``(*batch,)`` int64, the rounds in which some action was
            removed (each round removes every action dominated at its start).
        original: the game that was reduced.

    For an unbatched game, :attr:`actions` lists the surviving action
    indices and :attr:`game` is the reduced game; index a batched result
    first (``result[3]``).
    """

    survivors: tuple[Tensor, ...]
    rounds: Tensor
    original: NormalFormGame

    _repr_one = ("rounds", "actions")
    _repr_batch = ("batch_shape", "rounds")

    @property
    def batch_shape(self) -> torch.Size:
        return self.rounds.shape

    def _require_unbatched(self, what: str) -> None:
        if len(self.batch_shape):
            raise ValueError(
                f"{what} needs an unbatched result (the reduced games of a batch differ "
                f"in shape); this one has batch shape {tuple(self.batch_shape)}: index it "
                "first, as result[i]"
            )

    @property
    def actions(self) -> tuple[Tensor, ...]:
        """The surviving actions' indices in the original game, int64, per player."""
        self._require_unbatched("actions")
        return tuple(torch.nonzero(s).flatten() for s in self.survivors)

    @property
    def game(self) -> NormalFormGame:
        """The reduced game, restricted to the surviving actions."""
        self._require_unbatched("game")
        p = self.original.payoffs
        for i, keep in enumerate(self.actions):
            p = p.index_select(1 + i, keep)
        return NormalFormGame(p, num_players=self.original.num_players)


def iterated_elimination(
    game: NormalFormGame, *, mixed: bool = False, tol: float | None = None
) -> EliminationResult:
    """Iterated elimination of strictly dominated actions, batched.

    Starting from all actions, every round removes, for every player at once,
    each action strictly dominated (by a pure strategy, or with ``mixed=True``
    by a mixed one) against the opponents' surviving actions, until a round
    removes nothing. The surviving game has the same Nash equilibria as the
    original, and the order of removal does not change it (for ``tol = 0``).
    Each player keeps at least one action (a best response is never strictly
    dominated). The games of a batch are reduced together, each frozen once
    it stops changing.

    Args:
        game: a :class:`~aggregation.NormalFormGame`, payoffs
            ``(*batch, N, A_1, ..., A_N)``.
        mixed: test domination by mixed strategies too.
        tol: as in :func:`strictly_dominated_actions`.

    Returns:
        An :class:`EliminationResult`; for an unbatched game ``.game`` is the
        reduced game and ``.actions`` the surviving indices per player.

    Example:
        >>> from aggregation.games import prisoners_dilemma
        >>> out = iterated_elimination(prisoners_dilemma())
        >>> [a.tolist() for a in out.actions], out.game.num_actions
        ([[1], [1]], (1, 1))
    """
    _, own = _flatten(game)
    _check_bool(mixed, "mixed")
    tol = _resolve(tol, mixed, game.dtype)
    size = own[0].shape[0]
    device = own[0].device
    alive = [torch.ones(m.shape[:2], dtype=torch.bool, device=device) for m in own]
    rounds = torch.zeros(size, dtype=torch.int64, device=device)  # (B,)
    test = _strict_mixed if mixed else _strict_pure
    for _ in range(sum(a - 1 for a in game.num_actions)):  # each useful round removes one
        removed = [test(m, alive[i], _opponents(alive, i), tol) for i, m in enumerate(own)]
        changed = torch.stack([r.any(-1) for r in removed], dim=-1).any(-1)  # (B,)
        if not bool(changed.any()):
            break
        alive = [s & ~r for s, r in zip(alive, removed)]
        rounds += changed
    return EliminationResult(
        tuple(_unflatten(s, game) for s in alive), _unflatten(rounds, game), game
    )


def _check_bool(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool; received {describe(value)}")
