"""The dense vertex test of :mod:`.vertices` as one numba loop nest (CPU, optional).

Computes what ``side_candidates(M, tables, sparse=False)`` computes with batched
PyTorch ops, with the same arithmetic and the same decisions: all bordered minors
``T(R, C)`` by the Laplace recursion, one level ``|C|`` at a time, and for every basis
``(L, J)`` of size ``k`` the signed numerators ``s_t`` (level ``k - 1``), their sum
``S``, the border minors ``d_q`` (level ``k``) and the tests

    feasible = S^2 > eps^2  and  min_t s_t / S >= -tol  and  max_q d_q / S <= tol,
    extra    = min_t s_t / S <= tol  or  max_q d_q / S >= -tol,

with ``degenerate[g] = any(feasible & extra)`` over the bases of game ``g``. The
PyTorch path makes a pass over a ``(bases, games)`` intermediate for every one of
these steps; here a tile of up to ``TILE`` = 64 games runs through them in one sweep
(the inner loops over the tile vectorise), with only two minor levels alive at a time
(the tile shrinks, down to 16 games, to keep them within ``SCRATCH`` bytes). Tiles
run in parallel. The index tables are the PyTorch path's
(:func:`.vertices.side_tables`), flattened once per shape.

Three things keep the loops fast (each measured on 10,000 random 8x8 games; the
arithmetic is the same whatever the tile). The games per tile reach the kernel as a
run-time value: with a compile-time trip count LLVM fully unrolls the lane loops
into scalar code (numba leaves the SLP vectoriser off), and the loop vectoriser
leaves loops of fewer than 16 lanes scalar; wide tiles also amortise the per-loop
overhead (index loads, alias checks). The tests are bitwise ``&``/``|``, not
short-circuit ``and``/``or``, so the decision loop has no branches. Each tile writes
its masks contiguously (``(tiles, bases, lanes)``), and :func:`_untile` moves them
into the ``(bases, games)`` layout in blocks of rows, 8 games a word: storing a
tile's few bytes into every row of that layout directly misses the cache on every
row and cost more than all the arithmetic.

:func:`.vertices.side_candidates` calls it where :func:`applies` holds (switch it off
with :func:`aggregation.accel.use_numba`); ``tests/aggregation/test_vertex_kernel.py``
pins it to the PyTorch path.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np
import torch
from torch import Tensor

from ...accel import available, numba, numba_threads

__all__ = ["SCRATCH", "TILE", "applies", "dense_side", "tile_lanes"]

#: Games per tile (at most; :func:`tile_lanes`): the inner loops run over them.
TILE = 64

#: Bytes of the two alive minor levels of a tile, at most (down to 16 games a tile).
SCRATCH = 4 << 20

#: Rows per block of :func:`_untile`.
_ROWS = 64


def applies(M: Tensor) -> bool:
    """Whether the kernel serves ``M``: numba available, CPU, float64."""
    return available() and M.device.type == "cpu" and M.dtype == torch.float64


def tile_lanes(width: int) -> int:
    """Games per tile for levels of up to ``width`` minors: ``TILE``, halved while the two
    levels of a tile exceed ``SCRATCH`` bytes, but at least 16 (the loop vectoriser
    leaves shorter lane loops scalar). A multiple of 8: a word of 8 bool masks."""
    lanes = TILE
    while lanes > 16 and 2 * 8 * width * lanes > SCRATCH:
        lanes //= 2
    return lanes


@dataclass(frozen=True)
class _Flat:
    """The index tables of one shape ``(r, c)``, flattened for the kernel (numpy)."""

    level_size: np.ndarray  # (Lmax + 1,) int64, C(r, lv + 1) C(c, lv)
    lap_off: np.ndarray  # (Lmax + 1,) int64, start of level lv's (lv + 1, size) block
    lap_prev: np.ndarray  # int32, index into level lv - 1 (t-major blocks)
    lap_ent: np.ndarray  # int32, index of M[R_t, C_0] in the flat matrix
    num_ab: np.ndarray  # (kmax + 1,) int64, C(r, k) C(c, k)
    num_off: np.ndarray  # (kmax + 1,) int64, start of size k's (k, ab) block
    num_idx: np.ndarray  # int32, index into level k - 1
    num_sign: np.ndarray  # float64, +-1
    bor_off: np.ndarray  # (kmax + 1,) int64, start of size k's (r - k, ab) block
    bor_idx: np.ndarray  # int32, index into level k
    bor_sign: np.ndarray  # float64, +-1


_FLAT: dict[tuple[int, int], _Flat] = {}


def _flat(tables) -> _Flat:
    """Flatten ``side_tables(r, c)`` (cached per shape); signed indices (an offset of the
    level's size marks the negated copy in the PyTorch layout) become an index and a sign."""
    r, c = tables.r, tables.c
    hit = _FLAT.get((r, c))
    if hit is not None:
        return hit
    lmax = len(tables.lap_prev) - 1
    kmax = min(r, c)
    level_size = np.array([comb(r, lv + 1) * comb(c, lv) for lv in range(lmax + 1)], np.int64)
    lap_off = np.zeros(lmax + 1, np.int64)
    lap_prev, lap_ent = [np.zeros(0, np.int32)], [np.zeros(0, np.int32)]
    for lv in range(1, lmax + 1):
        lap_off[lv] = lap_off[lv - 1] + lap_prev[-1].size  # level 0's placeholder is empty
        lap_prev.append(tables.lap_prev[lv].numpy().astype(np.int32).ravel())
        lap_ent.append(tables.lap_ent[lv].numpy().astype(np.int32).ravel())
    num_ab = np.zeros(kmax + 1, np.int64)
    num_off = np.zeros(kmax + 1, np.int64)
    bor_off = np.zeros(kmax + 1, np.int64)
    num_idx, num_sign, bor_idx, bor_sign = [], [], [], []
    n_at, b_at = 0, 0
    for k in range(1, kmax + 1):
        num_ab[k] = comb(r, k) * comb(c, k)
        num_off[k], bor_off[k] = n_at, b_at
        signed = tables.num[k].numpy().ravel()
        size = level_size[k - 1]
        num_idx.append((signed % size).astype(np.int32))
        num_sign.append(np.where(signed >= size, -1.0, 1.0))
        n_at += signed.size
        if k < r:
            signed = tables.border[k].numpy().ravel()
            size = level_size[k]
            bor_idx.append((signed % size).astype(np.int32))
            bor_sign.append(np.where(signed >= size, -1.0, 1.0))
            b_at += signed.size

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    hit = _Flat(
        level_size,
        lap_off,
        cat(lap_prev, np.int32),
        cat(lap_ent, np.int32),
        num_ab,
        num_off,
        cat(num_idx, np.int32),
        cat(num_sign, np.float64),
        bor_off,
        cat(bor_idx, np.int32),
        cat(bor_sign, np.float64),
    )
    _FLAT[(r, c)] = hit
    return hit


def dense_side(M: Tensor, tables, tol: float, singular: float) -> tuple[list[Tensor], Tensor]:
    """Feasibility of every basis and the degeneracy flags of a batch of matrices.

    Args:
        M: ``(N, r, c)`` float64 CPU matrices (centred and scaled, as in
            :func:`.vertices.side_candidates`).
        tables: ``side_tables(r, c)``.
        tol: feasibility and label tolerance (normalised payoff units).
        singular: ``|S|`` at or below this marks a singular indifference system.

    Returns:
        ``(dense, degenerate)``: ``dense[k - 1]`` the ``(C(r,k) C(c,k), N)`` bool
        feasibility of the size-``k`` bases (row-major in ``(L, J)``; views of one
        array padded to whole tiles, so rows are ``tiles * lanes`` apart), ``degenerate``
        ``(N,)`` bool.
    """
    N, r, c = M.shape
    flat = _flat(tables)
    total = int(flat.num_ab.sum())
    lanes = tile_lanes(int(flat.level_size.max()))
    tiles = (N + lanes - 1) // lanes
    by_tile = np.empty((tiles, total, lanes), np.bool_)  # each tile's masks, contiguous
    feasible = np.empty((total, tiles * lanes), np.bool_)  # padded to whole tiles
    degenerate = np.zeros(N, np.bool_)
    Mflat = M.detach().reshape(N, r * c).contiguous().numpy()
    if N:
        with numba_threads():
            _kernel(
                Mflat,
                r,
                c,
                flat.level_size,
                flat.lap_off,
                flat.lap_prev,
                flat.lap_ent,
                flat.num_ab,
                flat.num_off,
                flat.num_idx,
                flat.num_sign,
                flat.bor_off,
                flat.bor_idx,
                flat.bor_sign,
                tol,
                singular,
                by_tile,
                degenerate,
                lanes,
            )
            _untile(by_tile.view(np.uint64), feasible.view(np.uint64))
    out = torch.from_numpy(feasible)[:, :N]
    bounds = np.cumsum(flat.num_ab[1:]).tolist()
    dense = [out[lo:hi] for lo, hi in zip([0, *bounds[:-1]], bounds)]
    return dense, torch.from_numpy(degenerate)


if numba is not None:

    @numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _kernel(  # pragma: no cover - compiled
        M,
        r,
        c,
        level_size,
        lap_off,
        lap_prev,
        lap_ent,
        num_ab,
        num_off,
        num_idx,
        num_sign,
        bor_off,
        bor_idx,
        bor_sign,
        tol,
        singular,
        by_tile,
        degenerate,
        lanes_per_tile,
    ):
        # ``lanes_per_tile`` (:func:`tile_lanes`) is a run-time value on purpose: a compile-time
        # trip count gets the lane loops fully unrolled into scalar code (module docstring).
        N = M.shape[0]
        T = lanes_per_tile
        lmax = level_size.shape[0] - 1
        kmax = num_ab.shape[0] - 1
        width = 1
        for lv in range(lmax + 1):
            width = max(width, level_size[lv])
        base = np.zeros(kmax + 1, np.int64)  # first row of size k in ``by_tile[tile]``
        for k in range(2, kmax + 1):
            base[k] = base[k - 1] + num_ab[k - 1]
        s2 = singular * singular
        tiles = (N + T - 1) // T
        for tile in numba.prange(tiles):
            g0 = tile * T
            lanes = min(T, N - g0)
            mt = np.zeros((r * c, T))  # the tile's matrices, game innermost (padding: 0)
            for j in range(lanes):
                for e in range(r * c):
                    mt[e, j] = M[g0 + j, e]
            prev = np.empty((width, T))  # level k - 1
            cur = np.empty((width, T))  # level k
            for i in range(r):
                for j in range(T):
                    prev[i, j] = 1.0  # level 0: det [1] = 1
            lo = np.empty(T)
            hi = np.empty(T)
            total = np.empty(T)
            inv = np.empty(T)
            deg = np.zeros(T, np.bool_)
            out = by_tile[tile]
            for k in range(1, kmax + 1):
                if k <= lmax:  # level k from level k - 1 (Laplace along the first column)
                    size = level_size[k]
                    off = lap_off[k]
                    for i in range(size):
                        p = lap_prev[off + i]
                        e = lap_ent[off + i]
                        for j in range(T):
                            cur[i, j] = prev[p, j] * mt[e, j]
                        for t in range(1, k + 1):
                            p = lap_prev[off + t * size + i]
                            e = lap_ent[off + t * size + i]
                            sg = -1.0 if t % 2 else 1.0
                            for j in range(T):
                                cur[i, j] += sg * (prev[p, j] * mt[e, j])
                ab = num_ab[k]
                no = num_off[k]
                bo = bor_off[k]
                for i in range(ab):
                    p = num_idx[no + i]
                    sg = num_sign[no + i]
                    for j in range(T):
                        s = sg * prev[p, j]
                        total[j] = s
                        lo[j] = s
                        hi[j] = s
                    for t in range(1, k):
                        p = num_idx[no + t * ab + i]
                        sg = num_sign[no + t * ab + i]
                        for j in range(T):  # branch-free: the signs are random
                            s = sg * prev[p, j]
                            total[j] += s
                            lo[j] = s if s < lo[j] else lo[j]
                            hi[j] = s if s > hi[j] else hi[j]
                    for j in range(T):
                        inv[j] = 1.0 / total[j]
                        a, b = lo[j] * inv[j], hi[j] * inv[j]
                        lo[j] = a if a < b else b  # min_t y_t
                        hi[j] = -np.inf  # max_q d_q / S
                    if k < r:
                        for q in range(r - k):
                            p = bor_idx[bo + q * ab + i]
                            sg = bor_sign[bo + q * ab + i]
                            for j in range(T):
                                d = sg * cur[p, j] * inv[j]  # (M y)_q - v, as d_q / S
                                hi[j] = d if d > hi[j] else hi[j]
                    row = base[k] + i
                    for j in range(T):  # bitwise, not short-circuit: no branches
                        f = (total[j] * total[j] > s2) & (lo[j] >= -tol) & (hi[j] <= tol)
                        out[row, j] = f
                        deg[j] |= f & ((lo[j] <= tol) | (hi[j] >= -tol))
                prev, cur = cur, prev
            for j in range(lanes):
                degenerate[g0 + j] = deg[j]

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _untile(by_tile, feasible):  # pragma: no cover - compiled
        """``feasible[row, tile * W + q] = by_tile[tile, row, q]`` (8 games a word), in
        blocks of rows: a block's destination lines stay in cache while the tiles go by."""
        tiles, total, W = by_tile.shape
        blocks = (total + _ROWS - 1) // _ROWS
        for blk in numba.prange(blocks):
            r0 = blk * _ROWS
            r1 = min(total, r0 + _ROWS)
            for tile in range(tiles):
                for row in range(r0, r1):
                    for q in range(W):
                        feasible[row, tile * W + q] = by_tile[tile, row, q]
