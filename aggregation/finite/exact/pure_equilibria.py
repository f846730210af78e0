"""All pure-strategy Nash equilibria of N-player games, vectorised."""

from __future__ import annotations

import math
from typing import Any

import torch

from ...result import EquilibriumSet
from ...validation import check_nonnegative
from .._nplayer_common import prepare

__all__ = ["pure_equilibria"]


def pure_equilibria(game: Any, tol: float = 0.0) -> EquilibriumSet:
    """Enumerate every pure Nash equilibrium of each game of a batch.

    A pure profile ``a = (a_1, ..., a_N)`` is a (``tol``-)Nash equilibrium iff
    for every player i

        ``P_i(a) >= max_b P_i(b, a_-i) - tol``,

    i.e. its regret ``max_b P_i(b, a_-i) - P_i(a)`` is at most ``tol`` (payoff
    units). The test is evaluated at all ``K = A_1 ... A_N`` profiles of all
    games at once (one max-reduction per player over its own action axis), so
    the result is exact: every pure equilibrium is found, whatever the game's
    degeneracy.

    Args:
        game: a :class:`~aggregation.NormalFormGame` with payoffs
            ``(*batch, N, A_1, ..., A_N)``.
        tol: regret tolerance (payoff units, >= 0). ``0`` is the exact test.

    Returns:
        An :class:`~aggregation.EquilibriumSet` with ``E`` = the largest number
        of pure equilibria of any game of the batch: ``strategies[i]`` of
        shape ``(*batch, E, A_i)`` (one-hot rows, zero padding), ``regret``
        ``(*batch, E, N)``, ``valid`` ``(*batch, E)``, ``count`` ``(*batch,)``.
        Equilibria are listed in lexicographic order of the pure profile.
        ``degenerate`` is True where some player has two or more pure best
        responses (within ``tol``) to some pure profile of the others, so that
        non-strict equilibria are possible; the enumeration is exact either way.
        ``actions`` ``(*batch, E, N)`` int64 holds the equilibria as action
        indices (-1 in padding rows) and ``info["strict"]`` ``(*batch, E)``
        marks strict equilibria (every player's action is its unique best
        response).

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame, pure_equilibria
        >>> A = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> eqs = pure_equilibria(NormalFormGame.bimatrix(A, A))
        >>> eqs.count.item(), eqs.actions.tolist()
        (2, [[0, 0], [1, 1]])

    References:
        Nash (1951); Gambit's ``enumpure_solve`` computes the same set per game.
    """
    tol = check_nonnegative(tol, "tol")
    prep = prepare(game)
    p, n, actions = prep.payoffs, prep.n, prep.actions  # p: (B, N, *A)
    size, device = prep.size, prep.device
    nash = torch.ones(size, *actions, dtype=torch.bool, device=device)  # (B, *A)
    strict = torch.ones_like(nash)  # (B, *A)
    degenerate = torch.zeros(size, dtype=torch.bool, device=device)  # (B,)
    gaps = []
    for i in range(n):
        pi = p[:, i]  # (B, *A)
        best = pi.amax(dim=1 + i, keepdim=True)  # (B, *A) with A_i -> 1
        near = pi >= best - tol  # (B, *A): best responses within tol
        nash &= near
        ties = near.sum(dim=1 + i, keepdim=True) > 1  # (B, *A) with A_i -> 1
        strict &= ~ties
        degenerate |= ties.flatten(1).any(-1)
        gaps.append((best - pi).clamp_min(0))  # (B, *A): player i's regret at each profile
    k = math.prod(actions)  # K, the number of pure profiles
    flat = nash.reshape(size, k)  # (B, K)
    count = flat.sum(-1)  # (B,)
    e = int(count.max()) if size else 0
    arange = torch.arange(k, device=device)  # (K,)
    key = torch.where(flat, arange, arange + k)  # (B, K): equilibria first, in order
    order = key.sort(dim=-1).values[:, :e]  # (B, E)
    valid = order < k  # (B, E)
    index = torch.where(valid, order, torch.zeros_like(order))  # (B, E)
    regret = torch.stack([g.reshape(size, k).gather(1, index) for g in gaps], dim=-1)  # (B,E,N)
    regret = regret * valid[..., None]
    is_strict = strict.reshape(size, k).gather(1, index) & valid  # (B, E)
    strategies, cols = [], []
    rest = index
    for i in reversed(range(n)):
        cols.append(rest % actions[i])  # (B, E)
        rest = torch.div(rest, actions[i], rounding_mode="floor")
    cols.reverse()
    for i, a in enumerate(cols):
        one_hot = torch.nn.functional.one_hot(a, actions[i]).to(p.dtype)  # (B, E, A_i)
        strategies.append(one_hot * valid[..., None])
    idx = torch.stack(cols, dim=-1)  # (B, E, N)
    idx = torch.where(valid[..., None], idx, torch.full_like(idx, -1))
    shape = prep.batch_shape

    def unflatten(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(tuple(shape) + tuple(t.shape[1:]))

    return EquilibriumSet(
        strategies=tuple(unflatten(s).to(prep.dtype) for s in strategies),
        regret=unflatten(regret),
        valid=unflatten(valid),
        count=unflatten(count.to(torch.int64)),
        degenerate=unflatten(degenerate),
        method="pure_equilibria",
        tol=tol,
        info={"strict": unflatten(is_strict)},
        actions=unflatten(idx),
    )
