"""Discrete replicator dynamics (exponential weights) for N-player games, batched."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ...result import EquilibriumResult
from ...validation import check_int, check_nonnegative, check_positive
from .._nplayer_common import Trajectory, finish, initial_mixed, payoff_ranges, prepare
from .._nplayer_multilinear import Multilinear, own_first

__all__ = ["replicator_dynamics"]


def replicator_dynamics(
    game: Any,
    symmetric: bool = False,
    step: float = 0.1,
    max_iter: int = 10000,
    tol: float = 1e-6,
    initial: Sequence[Any] | None = None,
    path_every: int | None = None,
) -> EquilibriumResult:
    """Replicator dynamics, discretised by exponential weights.

    The continuous replicator equation for population i is

        ``dx_i(a)/dt = x_i(a) (v_i(a) - <x_i, v_i>)``,  ``v_i = u_i(., x_-i)``.

    It is discretised by the exponential-weights (multiplicative) map

        ``x_i^{t+1}(a) ∝ x_i^t(a) exp(step * v_i^t(a) / R_i)``,

    computed in log space (``log x += step * v / R``, then a softmax). The map
    keeps every iterate on the simplex and never produces negative or NaN
    shares, whatever the step, and it tends to the replicator flow as
    ``step -> 0`` (time rescaled by ``1 / R_i``). ``R_i`` is player i's payoff
    range ``max P_i - min P_i``, so ``step`` is dimensionless and the dynamics
    are invariant under positive affine changes of each player's payoffs.

    * ``symmetric=False``: one population per player (asymmetric / multi-
      population dynamics), all players updated simultaneously.
    * ``symmetric=True``: a symmetric two-player game (``B = A^T``) played by
      a single population ``x``, with ``v = A x``; the profile returned is
      ``(x, x)``.

    A game stops (and is frozen) once ``max_i regret_i <= tol`` at the current
    iterate. Interior starts converge to strict equilibria and in potential
    games; in zero-sum games with an interior equilibrium (matching pennies,
    rock-paper-scissors) the discrete map spirals outwards, and
    ``converged`` stays False. Actions with zero initial share stay at zero
    (faces of the simplex are invariant). A share that falls below
    ``tiny ** (1 / N)`` (``1e-154`` for two players in float64) is set to
    zero, to keep the arithmetic out of the subnormal range, which is very
    slow on CPUs; such a share is zero to working precision anyway.

    Args:
        game: a :class:`~aggregation.NormalFormGame`, payoffs
            ``(*batch, N, A_1, ..., A_N)``.
        symmetric: single-population dynamics for symmetric two-player games.
        step: dimensionless step size (> 0).
        max_iter: the largest number of steps (>= 0).
        tol: regret tolerance (payoff units).
        initial: starting profile (one mixed strategy per player; with
            ``symmetric=True`` the first one is used); default uniform.
        path_every: record the iterate every ``path_every`` steps in
            ``result.path`` (None: no path).

    Returns:
        An :class:`~aggregation.EquilibriumResult` with the last iterate;
        ``path`` (with ``path_every=k``) the iterates after ``0, k, 2k, ...``
        steps, ``(*batch, max_iter // k + 1, A_i)`` per player (a game that
        stopped repeats its final iterate).

    Raises:
        ValueError: ``symmetric=True`` for a game that is not a symmetric
            two-player game.

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame, replicator_dynamics
        >>> hawk_dove = torch.tensor([[0., 3.], [1., 2.]])
        >>> out = replicator_dynamics(NormalFormGame.bimatrix(hawk_dove, hawk_dove.T),
        ...                           symmetric=True)
        >>> [round(p, 3) for p in out.strategies[0].tolist()]
        [0.5, 0.5]

    References:
        Taylor & Jonker (1978); Hofbauer & Sigmund (1998), *Evolutionary Games
        and Population Dynamics*; Arora, Hazan & Kale (2012) on exponential
        weights.
    """
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be a bool; received {type(symmetric).__name__}")
    step = check_positive(step, "step")
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    tol = check_nonnegative(tol, "tol")
    prep = prepare(game)
    n, size, device = prep.n, prep.size, prep.device
    if symmetric:
        _check_symmetric(prep.payoffs, n)
    operator = Multilinear(prep.actions, own_first(prep.payoffs))  # batch-last values
    x = [s.T.contiguous() for s in initial_mixed(initial, prep, default="uniform")]  # (A_i, B)
    if symmetric:
        x = [x[0], x[0]]
    scale = (step / payoff_ranges(prep)).T  # (N, B)
    floor = math.log(torch.finfo(prep.cdtype).tiny) / n  # log of the smallest share kept
    logx = [xi.log() for xi in x]  # N x (A_i, B), -inf on zero shares
    trajectory = Trajectory(path_every, max_iter, x)
    active = torch.ones(size, dtype=torch.bool, device=device)  # (B,)
    steps = torch.zeros(size, dtype=torch.int64, device=device)  # (B,)
    for t in range(max_iter):
        values = operator.values(x)  # N x (A_i, B)
        regret = torch.stack([v.amax(0) - (v * s).sum(0) for v, s in zip(values, x)], dim=0).amax(
            0
        )  # (B,)
        active &= regret > tol
        if not bool(active.any()):
            break
        gain = scale * active  # (N, B): 0 freezes finished games
        players = 1 if symmetric else n
        for i in range(players):
            logx[i] = logx[i] + gain[i] * values[i]  # (A_i, B)
            logx[i] = logx[i] - logx[i].amax(0, keepdim=True)
            logx[i] = logx[i].masked_fill(logx[i] < floor, -math.inf)  # share 0: no subnormals
            e = logx[i].exp()
            x[i] = e / e.sum(0, keepdim=True)
        if symmetric:
            x[1], logx[1] = x[0], logx[0]
        steps += active
        trajectory.record(t + 1, x)
    converged = torch.ones(size, dtype=torch.bool, device=device)  # finish() checks regret
    method = "replicator_dynamics[symmetric]" if symmetric else "replicator_dynamics"
    return finish(prep, [xi.T for xi in x], converged, steps, method, tol, path=trajectory.path(x))


def _check_symmetric(payoffs: torch.Tensor, n: int) -> None:
    """Raise unless ``payoffs (B, 2, m, m)`` has ``B = A^T`` (to rounding)."""
    shape = tuple(payoffs.shape[2:])
    if n != 2 or shape[0] != shape[1]:
        raise ValueError(
            "symmetric=True needs a symmetric two-player game (square, B = A^T); received "
            f"{n} players with action counts {shape}"
        )
    a, b = payoffs[:, 0], payoffs[:, 1]  # (B, m, m)
    gap = float((b - a.transpose(-1, -2)).abs().amax()) if a.numel() else 0.0
    scale = float(payoffs.abs().amax()) if a.numel() else 0.0
    if gap > 1e-9 * max(scale, 1.0):
        raise ValueError(
            "symmetric=True needs a symmetric two-player game (B = A^T); received a game "
            f"with max |B - A^T| = {gap:.3g}"
        )
