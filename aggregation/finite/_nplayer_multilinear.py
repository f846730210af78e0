"""Batch-last multilinear payoff operators of the N-player solvers.

Internal to :mod:`aggregation.finite` (shared by ``exact/`` and ``learning/``).

The solvers for small games spend their time in tiny contractions (``3 x 3``
blocks) over a large batch. Laid out batch-last (``(..., B)``, contiguous in
``B``), those contractions are elementwise products and reductions over a
contiguous batch, which vectorise well; batch-first they would be reductions
over inner dimensions of size 2 or 3, several times slower on CPUs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["Multilinear", "first_max_one_hot", "own_first"]


def own_first(payoffs: Tensor) -> list[Tensor]:
    """``(B, N, *A)`` -> N tensors ``(B, A_i, A_-i...)`` with player i's axis first."""
    n = payoffs.dim() - 2
    return [payoffs[:, i].movedim(1 + i, 1) for i in range(n)]


class Multilinear:
    """Bilinear slices and action values of N payoff-like tensors, batch-last.

    Built from tensors ``own_i`` of shape ``(B, R_i, A_-i...)`` (player i's
    payoffs with its own axis first, or their differences
    ``P_i(a) - P_i(0)``), it computes for profiles ``sigma_j`` ``(A_j, B)``

        ``T_ij[r, c, b] = sum_{a_-ij} own_i[b, r, ..., c, ...] prod_{k != i, j} sigma_k``

    (``(R_i, A_j, B)``) and ``v_i = sum_c T_ij[:, c] sigma_j(c)`` (``(R_i, B)``).
    """

    def __init__(self, actions: tuple[int, ...], own: list[Tensor]) -> None:
        self.actions = actions
        self.n = len(actions)
        self.mats: dict[tuple[int, int], Tensor] = {}  # (R_i, A_j, P_rest, B)
        self.rest: dict[tuple[int, int], list[int]] = {}
        self.single = [t.movedim(0, -1).contiguous() for t in own] if self.n == 1 else []
        for i in range(self.n):
            others = [p for p in range(self.n) if p != i]
            for j in others:
                t = own[i].movedim(2 + others.index(j), 2)  # (B, R_i, A_j, rest...)
                rest = math.prod(actions[p] for p in others if p != j)
                t = t.reshape(t.shape[0], t.shape[1], actions[j], rest)  # (B, R_i, A_j, P)
                self.mats[(i, j)] = t.permute(1, 2, 3, 0).contiguous()
                self.rest[(i, j)] = [k for k in others if k != j]

    def index(self, keep: Tensor) -> Multilinear:
        """The same operator restricted to the games ``keep`` (a mask or indices)."""
        out = Multilinear.__new__(Multilinear)
        out.actions, out.n, out.rest = self.actions, self.n, self.rest
        out.mats = {key: m[..., keep] for key, m in self.mats.items()}
        out.single = [t[..., keep] for t in self.single]
        return out

    def __call__(self, sigma: list[Tensor]) -> tuple[dict[tuple[int, int], Tensor], list[Tensor]]:
        """``sigma`` (N x ``(A_i, B)``) -> ``({(i, j): T_ij}, [v_i])``."""
        if self.n == 1:
            return {}, list(self.single)
        pairs: dict[tuple[int, int], Tensor] = {}
        values: list[Tensor] = []
        for i in range(self.n):
            for j in range(self.n):
                if j == i:
                    continue
                mat = self.mats[(i, j)]  # (R_i, A_j, P, B)
                kron = None
                for k in self.rest[(i, j)]:
                    kron = sigma[k] if kron is None else (kron[:, None] * sigma[k][None])
                    kron = kron.flatten(0, -2)  # (P, B), also for an empty batch
                pairs[(i, j)] = mat[:, :, 0] if kron is None else (mat * kron).sum(2)
            j = 1 if i == 0 else 0  # any opponent gives v_i = T_ij sigma_j
            values.append((pairs[(i, j)] * sigma[j]).sum(1))  # (R_i, B)
        return pairs, values

    def values(self, sigma: list[Tensor]) -> list[Tensor]:
        """Only the action values ``v_i`` ``(R_i, B)`` (one slice per player)."""
        if self.n == 1:
            return list(self.single)
        out = []
        for i in range(self.n):
            j = 1 if i == 0 else 0
            mat = self.mats[(i, j)]  # (R_i, A_j, P, B)
            kron = None
            for k in self.rest[(i, j)]:
                kron = sigma[k] if kron is None else (kron[:, None] * sigma[k][None])
                kron = kron.flatten(0, -2)  # (P, B), also for an empty batch
            t = mat[:, :, 0] if kron is None else (mat * kron).sum(2)  # (R_i, A_j, B)
            out.append((t * sigma[j]).sum(1))  # (R_i, B)
        return out


def first_max_one_hot(values: Tensor) -> Tensor:
    """``(A, B)`` -> ``(A, B)`` one-hot of the first maximiser along dim 0 (batch-last).

    Equivalent to ``one_hot(values.argmax(0))``; ``argmax`` along a
    non-contiguous dimension is an order of magnitude slower on CPUs.
    """
    is_max = values == values.amax(0, keepdim=True)  # (A, B)
    if values.shape[0] > 8:
        first = is_max & (is_max.cumsum(0) == 1)
    else:  # a short loop over the actions beats cumsum
        taken = torch.zeros_like(is_max[0])
        rows = []
        for row in is_max:
            rows.append(row & ~taken)
            taken = taken | row
        first = torch.stack(rows)
    return first.to(values.dtype)
