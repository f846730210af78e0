"""Zeros of the Lyapunov function on small faces, in closed form (private).

A face of the product of simplices is fixed by a support ``S_i`` per player.
On the faces where every player is pure except two or three "mixers", each
mixing over exactly two actions ``{x_m, y_m}`` with weight ``t_m`` on ``x_m``,
the indifference conditions of the mixers are explicit:

* two mixers ``i, j``: ``t_j D_i(x_j) + (1 - t_j) D_i(y_j) = 0`` with
  ``D_i(b) = P_i(x_i, b, .) - P_i(y_i, b, .)`` (the others' pure actions fixed),
  so ``t_j = D_i(y_j) / (D_i(y_j) - D_i(x_j))``, and symmetrically ``t_i``;
* three mixers: each condition is bilinear in the other two weights,
  ``alpha_m t t' + beta_m t + gamma_m t' + delta_m = 0``; eliminating two
  weights leaves one quadratic in the third (at most two solutions, as a
  2x2x2 game has at most two completely mixed equilibria; McKelvey & McLennan
  1997). The elimination divides by a condition's coefficient, which vanishes
  when a mixer's condition does not involve one of the others (Jordan's
  game), so it is done three times, solving for each weight in turn, and the
  linear system without the bilinear terms is solved too (Cramer's rule):
  seven candidates per face.

Each candidate with weights in ``[0, 1]`` is a profile; it is a Nash
equilibrium iff its regret vanishes (then the pure players' actions and the
mixers' supports are best responses), which the caller checks on the
original payoffs. Degenerate candidates (a vanishing denominator) give
non-finite weights and are discarded: this stage only proposes; what it
misses is left to the later stages. :func:`candidate_regret` evaluates many
candidates per game quickly. The support profiles beyond these faces, for
Newton's method, and their pruning by conditional strict dominance are in
:mod:`.support_profiles`.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

__all__ = ["Faces", "candidate_regret", "face_candidates", "face_count"]


class Faces:
    """Index tables of the two- and three-mixer faces of one game shape.

    Attributes:
        mixers: the number of mixers (2 or 3).
        cells: ``(C, mixers, 2, 2**(mixers-1))`` flat payoff indices: for a
            candidate, a mixer ``m``, its action ``x_m`` (0) or ``y_m`` (1) and a
            combination of the other mixers' actions (bit ``k`` set: the
            ``k``-th other mixer plays ``y``), the index into ``P_m.flatten()``.
        first, second: N tensors ``(C, A_i)``: one-hot of ``x_i`` (a pure
            player's action) and of ``y_i`` (zero for a pure player).
        slot: ``(C, N)`` long, the mixer number of each player (``mixers`` for
            a pure player, whose weight is 1).
    """

    def __init__(self, actions: tuple[int, ...], mixers: int) -> None:
        n = len(actions)
        strides = [math.prod(actions[k + 1 :]) for k in range(n)]
        cells, slots, firsts, seconds = [], [], [], []
        for group in itertools.combinations(range(n), mixers):
            pure_players = [k for k in range(n) if k not in group]
            pairs = [list(itertools.combinations(range(actions[m]), 2)) for m in group]
            pures = [range(actions[k]) for k in pure_players]
            for choice in itertools.product(*pairs):
                for fixed in itertools.product(*pures):
                    base = sum(strides[k] * a for k, a in zip(pure_players, fixed))
                    table = []
                    for mi, m in enumerate(group):
                        others = [g for g in range(mixers) if g != mi]
                        rows = []
                        for own in range(2):
                            row = []
                            for bits in range(2 ** (mixers - 1)):
                                idx = base + strides[m] * choice[mi][own]
                                for k, g in enumerate(others):
                                    idx += strides[group[g]] * choice[g][(bits >> k) & 1]
                                row.append(idx)
                            rows.append(row)
                        table.append(rows)
                    cells.append(table)
                    slot, first, second = [], [], []
                    for k in range(n):
                        one = [0.0] * actions[k]
                        two = [0.0] * actions[k]
                        if k in group:
                            mi = group.index(k)
                            one[choice[mi][0]], two[choice[mi][1]] = 1.0, 1.0
                            slot.append(mi)
                        else:
                            one[fixed[pure_players.index(k)]] = 1.0
                            slot.append(mixers)
                        first.append(one)
                        second.append(two)
                    slots.append(slot)
                    firsts.append(first)
                    seconds.append(second)
        self.mixers = mixers
        self.cells = torch.tensor(cells, dtype=torch.long)
        self.slot = torch.tensor(slots, dtype=torch.long).reshape(-1, n)
        self.first = [
            torch.tensor([f[k] for f in firsts]).reshape(-1, a) for k, a in enumerate(actions)
        ]
        self.second = [
            torch.tensor([s[k] for s in seconds]).reshape(-1, a) for k, a in enumerate(actions)
        ]

    @property
    def count(self) -> int:
        return self.cells.shape[0]


def face_count(actions: tuple[int, ...], mixers: int) -> int:
    """The number of faces with ``mixers`` two-action mixers and pure others."""
    n = len(actions)
    total = 0
    for group in itertools.combinations(range(n), mixers):
        term = 1
        for k in range(n):
            term *= math.comb(actions[k], 2) if k in group else actions[k]
        total += term
    return total


def _weights(mixers: int, delta: Tensor) -> list[Tensor]:
    """The mixers' weights ``t``: a list (one per root) of ``(B, C, mixers)`` tensors.

    ``delta`` is ``(B, C, mixers, 2**(mixers-1))``: ``D_m`` at each combination
    of the other mixers' actions.
    """
    if mixers == 2:
        d0, d1 = delta[..., 0], delta[..., 1]  # (B, C, 2): the other plays x / y
        t = d1 / (d1 - d0)  # the OTHER mixer's weight making m indifferent
        return [t.flip(-1)]  # mixer 0's weight comes from mixer 1's condition
    # three mixers; for mixer m with others (t, t') in increasing order (weights on
    # x; bit 0 of the combination: the first other plays y, bit 1: the second):
    # D_m = alpha t t' + beta t + gamma t' + delta0
    e0, e1, e2, e3 = (delta[..., k] for k in range(4))  # (B, C, 3)
    coef = (e0 - e1 - e2 + e3, e2 - e3, e1 - e3, e3)  # alpha, beta, gamma, delta0

    def solve_for(m: int, x: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """Mixer m's condition solved for weight x: ``t_x = -num(y) / den(y)``,
        each a linear polynomial (slope, constant) in the other weight y."""
        alpha, beta, gamma, d0 = (c[..., m] for c in coef)
        if x == min(k for k in range(3) if k != m):  # x is m's first other
            return (gamma, d0), (alpha, beta)
        return (beta, d0), (alpha, gamma)

    def mul(u: tuple[Tensor, Tensor], v: tuple[Tensor, Tensor]) -> list[Tensor]:
        return [u[0] * v[0], u[0] * v[1] + u[1] * v[0], u[1] * v[1]]  # r^2, r, 1

    out = []
    for z in range(3):  # eliminate the other two weights, solve a quadratic in t_z
        u, w = (k for k in range(3) if k != z)
        num_u, den_u = solve_for(w, u)  # t_u = -num_u(t_z) / den_u(t_z)
        num_w, den_w = solve_for(u, w)
        alpha, beta, gamma, d0 = (c[..., z] for c in coef)  # D_z over (t_u, t_w)
        # alpha t_u t_w + beta t_u + gamma t_w + d0 = 0, times den_u den_w:
        parts = [
            (alpha, mul(num_u, num_w)),
            (-beta, mul(num_u, den_w)),
            (-gamma, mul(num_w, den_u)),
            (d0, mul(den_u, den_w)),
        ]
        k2, k1, k0 = (sum(c * p[j] for c, p in parts) for j in range(3))
        disc = (k1 * k1 - 4 * k2 * k0).clamp_min(0).sqrt()
        big = -0.5 * (k1 + torch.where(k1 >= 0, disc, -disc))  # stable roots
        roots = [torch.where(k2 == 0, -k0 / k1, big / k2), k0 / big]
        for r in roots:
            t = [r, r, r]
            t[u] = -(num_u[0] * r + num_u[1]) / (den_u[0] * r + den_u[1])
            t[w] = -(num_w[0] * r + num_w[1]) / (den_w[0] * r + den_w[1])
            out.append(torch.stack(t, dim=-1))  # (B, C, 3)
    # the conditions without their bilinear terms, a linear system (Cramer's rule): exact
    # where every alpha vanishes, e.g. when each condition involves one other weight only
    _, beta, gamma, d0 = coef
    (b0, b1, b2), (g0, g1, g2), (r0, r1, r2) = beta.unbind(-1), gamma.unbind(-1), (-d0).unbind(-1)
    det = b0 * g1 * b2 + g0 * b1 * g2
    t0 = -r0 * g1 * g2 + b0 * g1 * r2 + g0 * r1 * g2
    t1 = r0 * g1 * b2 + g0 * b1 * r2 - g0 * r1 * b2
    t2 = -b0 * b1 * r2 + b0 * r1 * b2 + r0 * b1 * g2
    out.append(torch.stack([t0, t1, t2], dim=-1) / det[..., None])
    return out


def face_candidates(payoffs: Tensor, actions: tuple[int, ...], faces: Faces) -> list[Tensor]:
    """The valid candidate profiles on ``faces``: N tensors ``(B, W, A_i)``.

    ``payoffs`` is ``(B, N, *A)``; ``R`` candidates per face (the roots of
    each elimination), ``R * C`` per game. Those with weights in ``[0, 1]``
    (the valid ones) come first, in their order, and only the first
    ``W = max_b #valid_b`` are built; past a game's valid ones the profiles
    are NaN (never certified). About 14% of the 189 three-mixer candidates of
    a random 3x3x3 game are valid, 50% of the 81 two-mixer ones.
    """
    size, n = payoffs.shape[0], len(actions)
    cells = faces.cells.to(payoffs.device)  # (C, M, 2, K)
    mixers = faces.mixers
    flat = payoffs.reshape(size, n, -1)  # (B, N, prod A)
    player = faces.slot.to(payoffs.device)  # (C, N)
    who = torch.stack(
        [(player == m).nonzero()[:, 1].reshape(-1) for m in range(mixers)], dim=-1
    )  # (C, M) the player number of each mixer
    index = who[:, :, None, None] * flat.shape[-1] + cells  # (C, M, 2, K)
    vals = flat.reshape(size, -1)[:, index]  # (B, C, M, 2, K)
    delta = vals[..., 0, :] - vals[..., 1, :]  # (B, C, M, K)
    t = torch.cat(_weights(mixers, delta), dim=1)  # (B, R * C, M)
    roots = t.shape[1] // cells.shape[0]
    good = (torch.isfinite(t) & (t >= 0) & (t <= 1)).all(-1, keepdim=True)  # (B, R * C, 1)
    t = torch.where(good, t, torch.full_like(t, math.nan))
    slot = player.repeat(roots, 1).expand(size, -1, -1)  # (B, R * C, N)
    width = int(good.sum(1).amax()) if good.numel() else 0  # the most valid ones of a game
    pick = torch.argsort((~good[..., 0]).to(torch.uint8), dim=1, stable=True)[:, :width]  # (B, W)
    t = t.gather(1, pick[..., None].expand(-1, -1, mixers))  # (B, W, M)
    slot = slot.gather(1, pick[..., None].expand(-1, -1, n))  # (B, W, N)
    ones = torch.ones_like(t[..., :1])
    w = torch.cat([t, ones], dim=-1).gather(-1, slot)  # (B, W, N)
    profile = []
    for k in range(n):
        x = faces.first[k].to(payoffs).repeat(roots, 1)[pick]  # (B, W, A_k)
        y = faces.second[k].to(payoffs).repeat(roots, 1)[pick]
        wk = w[..., k : k + 1]  # (B, W, 1)
        profile.append(wk * x + (1 - wk) * y)  # (B, W, A_k)
    return profile


def candidate_regret(payoffs: Tensor, profile: list[Tensor]) -> Tensor:
    """``(B, C)`` the max regret of C profiles per game (N x ``(B, C, A_i)``).

    The same quantity as :func:`~aggregation.finite.game.payoff_regret` on
    ``payoffs[:, None]``, contracted one opponent at a time with the C
    profiles last (one batched matrix product, then products and sums over a
    contiguous ``C``), which is an order of magnitude faster for many profiles
    per game. NaN profiles give NaN regrets.
    """
    size, n = payoffs.shape[0], payoffs.shape[1]
    cols = [p.transpose(1, 2) for p in profile]  # N x (B, A_i, C)
    worst = None
    for i in range(n):
        t = payoffs[:, i].movedim(1 + i, 1)  # (B, A_i, A_-i...)
        others = [j for j in range(n) if j != i]
        if not others:
            v = t[..., None].expand(-1, -1, cols[i].shape[-1])  # (B, A_i, C)
        else:
            last = others[-1]
            v = torch.bmm(t.reshape(size, -1, t.shape[-1]), cols[last])  # (B, X, C)
            for j in reversed(others[:-1]):
                a = cols[j].shape[1]
                v = (v.reshape(size, -1, a, v.shape[-1]) * cols[j][:, None]).sum(2)
        reg = v.amax(1) - (v * cols[i]).sum(1)  # (B, C)
        worst = reg if worst is None else torch.maximum(worst, reg)
    return worst
