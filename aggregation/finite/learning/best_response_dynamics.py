"""Pure best-response dynamics for N-player games, batched, with cycle detection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ...result import EquilibriumResult
from ...validation import check_choice, check_int, check_nonnegative
from .._nplayer_common import Trajectory, finish, initial_pure, prepare

__all__ = ["best_response_dynamics"]


def _own_values(flat: Tensor, profile: Tensor, i: int, strides: Sequence[int], a_i: int) -> Tensor:
    """``(B, A_i)`` player i's payoff for each own action against ``profile_-i``.

    ``flat`` is player i's payoff tensor flattened to ``(B, K)``; ``profile``
    holds action indices ``(B, N)``.
    """
    base = (profile * torch.tensor(strides, device=profile.device)).sum(-1)  # (B,)
    base = base - profile[:, i] * strides[i]  # (B,) offset of (a_-i) with a_i = 0
    own = torch.arange(a_i, device=profile.device) * strides[i]  # (A_i,)
    return flat.gather(1, base[:, None] + own)  # (B, A_i)


def _respond(values: Tensor, current: Tensor, tol: float) -> Tensor:
    """Deterministic best response: keep ``current`` if within ``tol`` of the best,
    else the lowest-index maximiser. ``values (B, A_i)``, ``current (B,)`` -> ``(B,)``."""
    best = values.amax(-1)  # (B,)
    mine = values.gather(1, current[:, None]).squeeze(1)  # (B,)
    return torch.where(mine >= best - tol, current, values.argmax(-1))


def best_response_dynamics(
    game: Any,
    mode: str = "simultaneous",
    initial: Sequence[Any] | None = None,
    max_iter: int = 1000,
    tol: float = 1e-8,
    path_every: int | None = None,
) -> EquilibriumResult:
    """Pure best-response dynamics until a pure equilibrium or a cycle.

    The state is a pure profile ``a^t``. With ``mode="simultaneous"`` every
    player moves at once, ``a_i^{t+1} = BR_i(a_-i^t)``; with
    ``mode="alternating"`` one iteration is a round in which players
    ``0, ..., N-1`` move in turn, each against the latest actions of the
    others (Gauss-Seidel). Tie-breaking is deterministic: a player keeps its
    action when it is within ``tol`` of its best payoff, and otherwise moves
    to the lowest-index maximiser. A rest point is exactly a pure profile with
    ``max_i regret_i <= tol``, a ``tol``-Nash equilibrium.

    The dynamics are a deterministic map on a finite set, so they either stop
    or cycle. Cycles are detected exactly (Brent's algorithm, O(1) memory per
    game), reported as non-convergence, and their length is returned in
    ``info["cycle_length"]``; detected games stop early. Converged and cycling
    games are frozen while the rest of the batch moves on.

    Args:
        game: a :class:`~aggregation.NormalFormGame`, payoffs
            ``(*batch, N, A_1, ..., A_N)``.
        mode: ``"simultaneous"`` (Jacobi) or ``"alternating"`` (Gauss-Seidel).
        initial: N action indices (ints, or integer tensors broadcastable to
            the batch shape); default every player's action 0.
        max_iter: the largest number of iterations (rounds), >= 0.
        tol: regret tolerance (payoff units) for ties and for convergence.
        path_every: record the pure profile every ``path_every`` iterations
            in ``result.path`` (None: no path).

    Returns:
        An :class:`~aggregation.EquilibriumResult` whose strategies are one-hot
        ``(*batch, A_i)``; ``converged`` iff the final pure profile has regret
        ``<= tol``; ``iterations`` ``(*batch,)`` the iterations used;
        ``info["actions"]`` ``(*batch, N)`` the final action indices and
        ``info["cycle_length"]`` ``(*batch,)`` (0 when no cycle was found);
        ``path`` (with ``path_every=k``) the one-hot profiles after
        ``0, k, 2k, ...`` iterations, ``(*batch, max_iter // k + 1, A_i)`` per
        player (a game that stopped, at a rest point or on detecting a cycle,
        repeats its final profile).

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame, best_response_dynamics
        >>> pd = NormalFormGame.bimatrix([[3., 0.], [5., 1.]], [[3., 5.], [0., 1.]])
        >>> best_response_dynamics(pd).info["actions"].tolist()
        [1, 1]

    References:
        Monderer & Shapley (1996), potential games (finite improvement
        property); Brent (1980), cycle detection.
    """
    mode = check_choice(mode, "mode", ("simultaneous", "alternating"))
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    tol = check_nonnegative(tol, "tol")
    prep = prepare(game)
    n, actions, size, device = prep.n, prep.actions, prep.size, prep.device
    profile = initial_pure(initial, prep)  # (B, N)
    flats = [prep.payoffs[:, i].flatten(1) for i in range(n)]  # N x (B, K)
    strides = [1] * n
    for i in range(n - 2, -1, -1):
        strides[i] = strides[i + 1] * actions[i + 1]

    def rest_point(prof: Tensor) -> Tensor:
        ok = torch.ones(size, dtype=torch.bool, device=device)  # (B,)
        for i in range(n):
            v = _own_values(flats[i], prof, i, strides, actions[i])  # (B, A_i)
            mine = v.gather(1, prof[:, i : i + 1]).squeeze(1)  # (B,)
            ok &= mine >= v.amax(-1) - tol
        return ok

    active = torch.ones(size, dtype=torch.bool, device=device)  # (B,)
    iterations = torch.zeros(size, dtype=torch.int64, device=device)  # (B,)
    cycle = torch.zeros(size, dtype=torch.int64, device=device)  # (B,)
    saved = profile.clone()  # (B, N) Brent's tortoise
    power, lam = 1, 0
    trajectory = Trajectory(path_every, max_iter, [profile.T])  # frames (N, B)
    for t in range(max_iter):
        active &= ~rest_point(profile)
        if not bool(active.any()):
            break
        new = profile.clone()
        if mode == "simultaneous":
            cols = [
                _respond(_own_values(flats[i], profile, i, strides, actions[i]), profile[:, i], tol)
                for i in range(n)
            ]
            new = torch.stack(cols, dim=-1)  # (B, N)
        else:
            for i in range(n):
                v = _own_values(flats[i], new, i, strides, actions[i])  # (B, A_i)
                new[:, i] = _respond(v, new[:, i], tol)
        profile = torch.where(active[:, None], new, profile)  # (B, N)
        iterations += active
        lam += 1
        looped = active & (profile == saved).all(-1)  # (B,)
        cycle = torch.where(looped, torch.full_like(cycle, lam), cycle)
        active &= ~looped
        if lam == power:
            saved = profile.clone()
            power, lam = 2 * power, 0
        trajectory.record(t + 1, [profile.T])
    converged = rest_point(profile)  # (B,)
    cycle = torch.where(converged, torch.zeros_like(cycle), cycle)
    strategies = [
        torch.nn.functional.one_hot(profile[:, i], actions[i]).to(prep.cdtype) for i in range(n)
    ]
    path = trajectory.path([profile.T])
    if path is not None:
        path = [
            torch.nn.functional.one_hot(path[0][..., i], actions[i]) for i in range(n)
        ]  # N x (B, T, A_i)
    return finish(
        prep,
        strategies,
        converged,
        iterations,
        f"best_response_dynamics[{mode}]",
        tol,
        info={"actions": profile, "cycle_length": cycle},
        path=path,
    )
