"""Regret matching and regret-matching+ for N-player games, batched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ...result import EquilibriumResult
from ...validation import check_int, check_nonnegative
from .._nplayer_common import Trajectory, finish, initial_mixed, prepare, running_mean
from .._nplayer_multilinear import Multilinear, own_first

__all__ = ["regret_matching"]


def _match(cumulative: Tensor) -> Tensor:
    """``(A, B)`` strategy proportional to the positive part of ``cumulative``
    (uniform where no regret is positive); batch-last."""
    positive = cumulative.clamp_min(0)  # (A, B)
    total = positive.sum(0, keepdim=True)  # (1, B)
    uniform = torch.full_like(positive, 1.0 / positive.shape[0])
    return torch.where(total > 0, positive / torch.where(total > 0, total, 1.0), uniform)


def regret_matching(
    game: Any,
    iterations: int = 1000,
    plus: bool = False,
    tol: float = 1e-3,
    initial: Sequence[Any] | None = None,
    path_every: int | None = None,
) -> EquilibriumResult:
    """Regret matching (Hart & Mas-Colell 2000), returning the average strategy.

    At round ``t`` every player plays ``sigma_i^t``, observes its action values
    ``v_i^t = u_i(., sigma_-i^t)`` (full information, expected payoffs) and
    accumulates its regrets ``r_i^t(a) = v_i^t(a) - <sigma_i^t, v_i^t>``:

    * regret matching: ``Q_i^{t+1} = Q_i^t + r_i^t``;
    * regret-matching+ (``plus=True``, Tammelin 2014):
      ``Q_i^{t+1} = max(Q_i^t + r_i^t, 0)``, with the average weighted
      linearly in ``t`` (weights ``1, 2, 3, ...``).

    The next strategy is ``sigma_i^{t+1} ∝ max(Q_i^{t+1}, 0)`` (uniform when no
    regret is positive). The returned profile is the (weighted) average of the
    ``sigma_i^t``. Its external regret vanishes at rate ``O(1/sqrt(t))``, so
    in two-player zero-sum games it converges to a Nash equilibrium; in
    general games the average *joint* play approaches the coarse correlated
    equilibria, and the product of the averages need not be Nash, in which
    case ``converged`` stays False. A game stops (and is frozen) once the
    average profile has ``max_i regret_i <= tol``. Regrets scale with the
    payoffs, so the iterates are invariant under positive affine payoff
    changes of each player.

    Args:
        game: a :class:`~aggregation.NormalFormGame`, payoffs
            ``(*batch, N, A_1, ..., A_N)``.
        iterations: the largest number of rounds (>= 0).
        plus: use regret-matching+ with linear averaging.
        tol: regret tolerance (payoff units) of the average profile.
        initial: the round-0 strategies (one mixed strategy per player);
            default uniform.
        path_every: record the average profile every ``path_every`` rounds
            in ``result.path`` (None: no path).

    Returns:
        An :class:`~aggregation.EquilibriumResult` with the average profile;
        ``path`` (with ``path_every=k``) the average profile after
        ``0, k, 2k, ...`` rounds, ``(*batch, iterations // k + 1, A_i)`` per
        player (a game that stopped repeats its final average).

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame, regret_matching
        >>> pennies = NormalFormGame.zero_sum([[1., -1.], [-1., 1.]])
        >>> out = regret_matching(pennies, initial=([0.9, 0.1], [0.2, 0.8]), tol=0.05)
        >>> bool(out.converged)
        True

    References:
        Hart & Mas-Colell (2000), "A simple adaptive procedure leading to
        correlated equilibrium", Econometrica; Tammelin (2014), "Solving large
        imperfect information games using CFR+".
    """
    iterations = check_int(iterations, "iterations", minimum=0)
    if not isinstance(plus, bool):
        raise TypeError(f"plus must be a bool; received {type(plus).__name__}")
    tol = check_nonnegative(tol, "tol")
    prep = prepare(game)
    size, device, dtype = prep.size, prep.device, prep.cdtype
    operator = Multilinear(prep.actions, own_first(prep.payoffs))  # batch-last values
    sigma = [s.T.contiguous() for s in initial_mixed(initial, prep, default="uniform")]
    cumulative = [torch.zeros_like(s) for s in sigma]  # N x (A_i, B)
    average = [s.clone() for s in sigma]  # N x (A_i, B)
    trajectory = Trajectory(path_every, iterations, average)
    weight_sum = 0.0
    active = torch.ones(size, dtype=torch.bool, device=device)  # (B,)
    rounds = torch.zeros(size, dtype=torch.int64, device=device)  # (B,)
    for t in range(iterations):
        values = operator.values(sigma)  # N x (A_i, B)
        weight = float(t + 1) if plus else 1.0
        frac = active.to(dtype) * (weight / (weight_sum + weight))  # (B,)
        weight_sum += weight
        for i, v in enumerate(values):
            average[i] = running_mean(average[i], sigma[i], frac)  # (A_i, B)
            r = v - (v * sigma[i]).sum(0, keepdim=True)  # (A_i, B) instantaneous regret
            q = cumulative[i] + active * r
            cumulative[i] = q.clamp_min(0) if plus else q
            sigma[i] = _match(cumulative[i])
        rounds += active
        avg_values = operator.values(average)  # N x (A_i, B)
        avg_regret = torch.stack(
            [v.amax(0) - (v * s).sum(0) for v, s in zip(avg_values, average)], dim=0
        ).amax(0)  # (B,)
        trajectory.record(t + 1, average)
        active &= avg_regret > tol
        if not bool(active.any()):
            break
    converged = torch.ones(size, dtype=torch.bool, device=device)  # finish() checks regret
    path = trajectory.path(average)
    average = [s.T for s in average]  # N x (B, A_i)
    method = "regret_matching_plus" if plus else "regret_matching"
    return finish(prep, average, converged, rounds, method, tol, path=path)
