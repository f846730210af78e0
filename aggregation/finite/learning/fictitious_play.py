"""Fictitious play (classic, smooth and stochastic) for N-player games, batched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ...result import EquilibriumResult
from ...validation import check_choice, check_int, check_nonnegative, check_positive, describe
from .._nplayer_common import Trajectory, finish, initial_mixed, prepare, running_mean
from .._nplayer_multilinear import Multilinear, first_max_one_hot, own_first

__all__ = ["fictitious_play"]


def fictitious_play(
    game: Any,
    iterations: int = 1000,
    mode: str = "classic",
    temperature: float = 0.01,
    initial: Sequence[Any] | None = None,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
    path_every: int | None = None,
) -> EquilibriumResult:
    """Fictitious play: every player best-responds to the others' empirical play.

    Let ``sigma_i^t`` be player i's empirical frequency after ``t`` rounds
    (the ``initial`` profile counts as round 0). At round ``t`` every player
    computes its action values against the others' frequencies,
    ``v_i^t(a) = u_i(a, sigma_-i^t)``, plays a response ``b_i^t`` and

        ``sigma_i^{t+1} = sigma_i^t + (b_i^t - sigma_i^t) / (t + 2)``.

    * ``mode="classic"`` (Brown 1951): ``b_i^t`` is the pure best response
      ``argmax_a v_i^t(a)`` (one-hot; ties go to the lowest index).
    * ``mode="smooth"`` (Fudenberg & Kreps 1993): the logit response
      ``b_i^t = softmax(v_i^t / temperature)``, deterministic; this is the
      expected motion of stochastic fictitious play, whose rest points are the
      logit QREs with ``lambda = 1 / temperature`` (regret at most
      ``temperature * log(A_i)``, so pick ``tol`` accordingly).
    * ``mode="stochastic"``: ``b_i^t`` is an action sampled from that logit
      response (Gumbel-max with ``generator``).

    The returned profile is the empirical frequency. A game stops (and is
    frozen) as soon as its frequencies satisfy ``max_i regret_i <= tol``; its
    regret comes for free from the values computed for the responses.
    Classic fictitious play converges in two-player zero-sum games
    (Robinson 1951), 2 x n games, potential games and games solvable by
    iterated dominance; it cycles forever in Shapley's (1964) 3 x 3 game, and
    then ``converged`` is False.

    Args:
        game: a :class:`~aggregation.NormalFormGame`, payoffs
            ``(*batch, N, A_1, ..., A_N)``.
        iterations: the largest number of rounds, >= 0.
        mode: ``"classic"``, ``"smooth"`` or ``"stochastic"``.
        temperature: logit temperature (payoff units, > 0) for the smooth and
            stochastic modes; ignored by the classic mode.
        initial: the round-0 profile, one mixed strategy per player
            (broadcastable to ``(*batch, A_i)``); default every player's first
            action.
        tol: regret tolerance (payoff units) for ``converged`` and stopping.
        generator: random generator for ``mode="stochastic"``.
        path_every: record the empirical frequencies every ``path_every``
            rounds in ``result.path`` (None: no path).

    Returns:
        An :class:`~aggregation.EquilibriumResult` with the empirical
        frequencies ``(*batch, A_i)``; ``iterations`` the rounds each game ran;
        ``path`` (with ``path_every=k``) the frequencies after ``0, k, 2k, ...``
        rounds, ``(*batch, iterations // k + 1, A_i)`` per player (a game that
        stopped repeats its final frequencies).

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame, fictitious_play
        >>> rps = NormalFormGame.zero_sum([[0., -1., 1.], [1., 0., -1.], [-1., 1., 0.]])
        >>> out = fictitious_play(rps, iterations=2000, tol=0.05)
        >>> bool(out.converged)
        True

    References:
        Brown (1951); Robinson (1951); Shapley (1964); Fudenberg & Kreps (1993);
        Fudenberg & Levine (1998), *The Theory of Learning in Games*.
    """
    iterations = check_int(iterations, "iterations", minimum=0)
    mode = check_choice(mode, "mode", ("classic", "smooth", "stochastic"))
    temperature = check_positive(temperature, "temperature")
    tol = check_nonnegative(tol, "tol")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None; received {describe(generator)}"
        )
    prep = prepare(game)
    size, device, dtype = prep.size, prep.device, prep.cdtype
    operator = Multilinear(prep.actions, own_first(prep.payoffs))  # batch-last values
    start = initial_mixed(initial, prep, default="first")
    sigma = [s.T.contiguous() for s in start]  # N x (A_i, B), batch-last
    trajectory = Trajectory(path_every, iterations, sigma)
    active = torch.ones(size, dtype=torch.bool, device=device)  # (B,)
    rounds = torch.zeros(size, dtype=torch.int64, device=device)  # (B,)
    for t in range(iterations):
        values = operator.values(sigma)  # N x (A_i, B)
        regret = torch.stack(
            [v.amax(0) - (v * s).sum(0) for v, s in zip(values, sigma)], dim=0
        ).amax(0)  # (B,)
        active &= regret > tol
        if not bool(active.any()):
            break
        step = active.to(dtype) / (t + 2.0)  # (B,): 0 freezes finished games
        for i, v in enumerate(values):
            sigma[i] = running_mean(sigma[i], _response(v, mode, temperature, generator), step)
        rounds += active
        trajectory.record(t + 1, sigma)
    converged = torch.ones(size, dtype=torch.bool, device=device)  # finish() checks regret
    strategies = [s.T for s in sigma]  # N x (B, A_i)
    method = f"fictitious_play[{mode}]"
    return finish(prep, strategies, converged, rounds, method, tol, path=trajectory.path(sigma))


def _response(values: Tensor, mode: str, temperature: float, generator) -> Tensor:
    """``(A, B)`` the response to action values ``(A, B)`` (batch-last)."""
    if mode == "smooth":
        return torch.softmax(values / temperature, dim=0)
    if mode == "stochastic":
        u = torch.rand(values.shape, generator=generator, dtype=values.dtype, device=values.device)
        gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(values.dtype).tiny)))
        values = values / temperature + gumbel
    return first_max_one_hot(values)  # (A, B): ties go to the lowest index
