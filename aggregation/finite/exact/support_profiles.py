"""Support profiles of N-player games: the generic wide ones, their pruning, their relabelling.

A support profile ``S = (S_1, ..., S_N)`` fixes the actions each player may
play. :func:`~aggregation.liapunov` solves the indifference system on the
*wide* profiles (:func:`wide_supports`: beyond the small faces it solves in
closed form) by Newton's method, for the games its first stages leave open.

:class:`Dominance` prunes them per game by conditional strict dominance
(Porter, Nudelman & Shoham 2004): if an action ``a in S_i`` is beaten by some
``b in A_i`` by more than ``margin_i`` against every pure profile
``s_-i in S_-i``,

    ``min_{s_-i in S_-i} (P_i(b, s_-i) - P_i(a, s_-i)) > margin_i``,

then at every profile ``sigma`` with ``supp sigma_j`` in ``S_j`` where ``a``
is a best response among ``S_i`` (``v_i(a) = u_i``, as the indifference
system on ``S`` demands), ``v_i(b) - u_i = sum_{s_-i} sigma_-i(s_-i)
(P_i(b, s_-i) - P_i(a, s_-i)) > margin_i``: player ``i``'s regret exceeds
``margin_i``. No equilibrium (``margin = 0``), nor any solution of that
system of regret ``<= margin`` (a caller's tolerance), has supports in ``S``.

:func:`relabel_supports` renumbers each player's actions so that every ``S_i``
holds action 0, the form the reduced Newton system needs (one free weight per
support action beyond action 0).

References:
    R. Porter, E. Nudelman, Y. Shoham (2008), "Simple search methods for finding
    a Nash equilibrium", Games and Economic Behavior 63, 642-662.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

__all__ = ["Dominance", "relabel_supports", "wide_support_count", "wide_supports"]


def wide_supports(actions: tuple[int, ...]) -> Tensor:
    """The support profiles beyond the closed-form faces, as ``(K, sum A_i)`` bool masks.

    Those with at least two players mixing, some mixing over three or more
    actions or more than three mixing, and *generic*: every mixer's
    ``|S_i| - 1`` indifference conditions are at most the others' ``sum_{j != i}
    (|S_j| - 1)`` free weights (otherwise a nondegenerate game has no
    equilibrium there). Row order: by total support size, then lexicographic.
    """
    subsets = [
        [s for k in range(1, a + 1) for s in itertools.combinations(range(a), k)] for a in actions
    ]
    rows = []
    for profile in itertools.product(*subsets):
        free = [len(s) - 1 for s in profile]
        mixers = sum(f > 0 for f in free)
        if mixers < 2 or (max(free) == 1 and mixers <= 3):
            continue
        if any(f > sum(free) - f for f in free):
            continue
        mask = []
        for s, a in zip(profile, actions):
            mask += [k in s for k in range(a)]
        rows.append((sum(free), mask))
    rows.sort(key=lambda r: r[0])
    total = sum(actions)
    return torch.tensor([m for _, m in rows], dtype=torch.bool).reshape(-1, total)


def wide_support_count(actions: tuple[int, ...]) -> int:
    """An upper bound on the rows of :func:`wide_supports`: ``prod_i (2^A_i - 1)``."""
    return math.prod(2**a - 1 for a in actions)


def relabel_supports(actions: tuple[int, ...], masks: Tensor) -> tuple[Tensor, Tensor]:
    """Per support, each player's actions relabelled so that the support's first is 0.

    Player ``i``'s new action ``k`` is ``pi_i(k)``: ``pi_i(0) = a0_i = min S_i``,
    then the other actions in increasing order, ``pi_i(k) = k - 1 + [k - 1 >= a0_i]``.

    Returns:
        ``order`` ``(R, M)`` long: the old flat index (offset of ``i`` plus
        ``pi_i(k)``) of each new one, so that ``masks.gather(1, order)`` is the
        relabelled support (each holding action 0); ``cells`` ``(R, prod A)``
        long: the old row-major payoff cell of each new one,
        ``sum_i pi_i(k_i) stride_i``.
    """
    r = masks.shape[0]
    order, cells, offset = [], torch.zeros(r, 1, dtype=torch.int64), 0
    for i, a in enumerate(actions):
        first = masks[:, offset : offset + a].to(torch.uint8).argmax(1)[:, None]  # (R, 1)
        k = torch.arange(a - 1)[None]  # (1, A_i - 1)
        pi = torch.cat([first, k + (k >= first).to(torch.int64)], dim=1)  # (R, A_i)
        order.append(pi + offset)
        stride = math.prod(actions[i + 1 :])
        cells = (cells[:, :, None] + pi[:, None, :] * stride).reshape(r, -1)  # (R, prod A_<=i)
        offset += a
    return torch.cat(order, dim=1), cells


class Dominance:
    """Conditional strict dominance tables of K support profiles of one game shape.

    For player ``i`` the ``K`` opponents' supports ``S_-i`` are grouped into the
    ``U_i`` distinct ones, each a ``(Q_i,)`` mask over the opponents' pure
    profiles ``s_-i`` (``Q_i = prod_{j != i} A_j``, row-major, as in
    ``P_i`` with ``i``'s axis moved first) with ``s_-i in S_-i`` iff every
    ``s_j in S_j``.

    Attributes:
        actions: the game shape ``(A_1, ..., A_N)``.
        own: N bool tensors ``(K, A_i)``, the supports ``S_i``.
        opp: N bool tensors ``(U_i, Q_i)``, the distinct ``S_-i``.
        which: N long tensors ``(K,)``, the row of ``opp`` of each support.
    """

    def __init__(self, actions: tuple[int, ...], masks: Tensor) -> None:
        self.actions = actions
        n, k = len(actions), masks.shape[0]
        offsets = [sum(actions[:i]) for i in range(n)]
        parts = [masks[:, o : o + a] for o, a in zip(offsets, actions)]  # N x (K, A_i)
        self.own, self.opp, self.which = parts, [], []
        for i in range(n):
            cells = torch.ones(k, 1, dtype=torch.bool)  # (K, Q) over the players so far
            for j in range(n):
                if j != i:
                    cells = (cells[:, :, None] & parts[j][:, None, :]).reshape(k, -1)
            opp, which = torch.unique(cells, dim=0, return_inverse=True)  # (U_i, Q_i), (K,)
            self.opp.append(opp)
            self.which.append(which)

    def pruned(self, payoffs: Tensor, margin: Tensor) -> Tensor:
        """``(G, K)``: True where some ``a in S_i`` is dominated by more than ``margin_i``.

        That is, where for some player ``i``, ``a in S_i`` and ``b in A_i``,
        ``min_{s_-i in S_-i} (P_i(b, s_-i) - P_i(a, s_-i)) > margin_i``
        (``b = a`` gives 0, never above a margin ``>= 0``).

        Args:
            payoffs: ``(G, N, *A)``.
            margin: ``(G, N)`` nonnegative, in payoff units.
        """
        g = payoffs.shape[0]
        device = payoffs.device
        out = torch.zeros(g, self.own[0].shape[0], dtype=torch.bool, device=device)  # (G, K)
        for i, a in enumerate(self.actions):
            p = payoffs[:, i].movedim(1 + i, 1).reshape(g, a, -1)  # (G, A_i, Q)
            diff = p[:, :, None] - p[:, None]  # (G, b, a, Q): P_i(b, .) - P_i(a, .)
            opp = self.opp[i].to(device)  # (U, Q)
            inf = torch.tensor(math.inf, dtype=p.dtype, device=device)
            low = torch.where(opp, diff[:, :, :, None], inf).amin(-1)  # (G, b, a, U)
            beaten = (low > margin[:, i, None, None, None]).any(1)  # (G, a, U)
            beaten = beaten[:, :, self.which[i].to(device)]  # (G, a, K)
            out |= (beaten & self.own[i].to(device).T).any(1)  # (G, K): some a in S_i
        return out
