"""Batched enumeration of the vertices of the best-response polytopes.

Shared engine of :func:`support_enumeration` and :func:`vertex_enumeration`.

Take one side of a bimatrix game: a matrix ``M`` of shape ``(r, c)`` (``M = A``
for the column player's strategy ``y``, ``M = B^T`` for the row player's
``x``). A *basis* is a pair ``(L, J)``, ``L`` a set of ``k`` rows and ``J`` a
set of ``k`` columns. Its candidate strategy solves the indifference system

    M[L, J] y_J = v 1_L,   1^T y_J = 1,   y_j = 0 for j not in J,

and it is *feasible* when ``y >= 0`` and no row beats the rows of ``L``:
``(M y)_q <= v`` for every row ``q``. Feasible bases are exactly the bases of
the nonzero vertices of the best-response polytope ``{y >= 0 : M' y <= 1}``
(``M'`` any positive affine image of ``M``), and the *labels* of the vertex
are its tight constraints: the rows ``q`` with ``(M y)_q = v`` and the
columns ``j`` with ``y_j = 0`` (von Stengel 2002, section 3).

Everything is computed from signed *bordered minors* of ``M``,
``T(R, C) = det [M[R, C] | 1_R]`` with ``|R| = |C| + 1`` (rows and columns in
increasing order). They are invariant under adding a constant to ``M`` and are
built for all ``(R, C)`` at once by Laplace expansion along the first column,
``T(R, C) = sum_t (-1)^t M[R_t, C_0] T(R - R_t, C - C_0)``, one level
``|C|`` at a time, vectorised over the subsets and over the batch of games.
By Cramer's rule (with ``s_t = (-1)^t T(L, J - J_t)`` and ``S = sum_t s_t``):

    y_{J_t} = s_t / S,       (M y)_q - v = (-1)^{p + k} T(L + q, J) / S,

where ``p`` counts the rows of ``L`` above ``q``. ``S = 0`` iff the
indifference system is singular. So feasibility and labels are sign tests on
gathered minors, with no linear solve; the few surviving bases are then solved
accurately by LU (:func:`basis_strategies`).

Complexity: ``sum_k C(r, k) C(c, k) = C(r + c, r) - 1`` bases, each tested
with ``r + 1`` gathered minors; memory is bounded by chunking the batch.

Two implementations of the dense test (every basis's feasibility and the
degeneracy flags), with the same arithmetic and decisions: batched PyTorch ops
(any device; the reference), and on the CPU, when numba is installed
(:mod:`aggregation.accel`), one loop nest over tiles of games that keeps the
intermediates in registers (:mod:`.vertex_kernel`; ``benchmarks/solvers.py`` with
and without ``--no-numba`` measures the difference, several times at 8x8).

:func:`extreme_equilibria` puts the pieces together: the dense test on both
sides, the equal-support pairs of nondegenerate games, and the label pairing
(:func:`labelled_pairs`) of the degenerate ones.

References:
    B. von Stengel (2002), "Computing equilibria for two-person games",
    Handbook of Game Theory 3, ch. 45; D. Avis, G. Rosenberg, R. Savani,
    B. von Stengel (2010), "Enumeration of Nash equilibria for two-player
    games", Economic Theory 42.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from math import comb
from typing import Any

import torch
from torch import Tensor

from ...tolerance import default_tol
from . import vertex_kernel

__all__ = [
    "CHUNK_ELEMS",
    "MASK_BYTES",
    "MAX_LABELS",
    "SideCandidates",
    "basis_strategies",
    "extreme_equilibria",
    "global_labels",
    "labelled_pairs",
    "pair_vertices",
    "side_candidates",
    "side_tables",
    "solve_bases",
    "solve_size",
]

#: Labels are packed into int64 bit masks, so ``r + c`` is limited.
MAX_LABELS = 62

#: ``|S|`` below this (normalised units) marks a singular indifference system.
_SINGULAR = 1e-12

#: Bytes of dense feasibility mask per side and chunk of games in
#: :func:`extreme_equilibria` (a test lowers it to exercise the chunked path).
MASK_BYTES = 1 << 26

#: Upper bound on the elements of one per-level working tensor (a test lowers it
#: to exercise the chunked path).
CHUNK_ELEMS = 1 << 18


@dataclass(frozen=True)
class _Tables:
    """Index tables for one matrix shape ``(r, c)`` (CPU int64 tensors).

    Minor levels are stored flat, ``(C(r, lv + 1) * C(c, lv), N)``; level
    ``lv`` also has a negated copy appended (rows ``size .. 2 size - 1``) so
    that a signed gather is a single ``index_select``.
    """

    r: int
    c: int
    lap_prev: list  # [lv] -> (lv + 1, size_lv) flat index of T(R - R_t, C - C_0) in level lv - 1
    lap_ent: list  # [lv] -> (lv + 1, size_lv) flat index of M[R_t, C_0] in M (r * c)
    rows: list  # [k] -> (C(r, k), k) members of L
    cols: list  # [k] -> (C(c, k), k) members of J
    num: list  # [k] -> (k, C(r,k) C(c,k)) signed flat index of (-1)^t T(L, J - J_t)
    border: list  # [k] -> (r - k, C(r,k) C(c,k)) signed flat index of the row-q border minor
    other_row: list  # [k] -> (r - k, C(r, k)) the row q (not in L)


@lru_cache(maxsize=32)
def side_tables(r: int, c: int) -> _Tables:
    """Build (once per shape) the index tables of :func:`side_candidates`."""
    rsub = [list(combinations(range(r), k)) for k in range(r + 1)]
    csub = [list(combinations(range(c), k)) for k in range(c + 1)]
    ridx = [{s: i for i, s in enumerate(x)} for x in rsub]
    cidx = [{s: i for i, s in enumerate(x)} for x in csub]
    lap_prev: list[Any] = [None]
    lap_ent: list[Any] = [None]
    for lv in range(1, min(r - 1, c) + 1):
        width_prev = comb(c, lv - 1)
        prev: list[list[int]] = []
        ent: list[list[int]] = []
        for t in range(lv + 1):
            prev.append(
                [
                    ridx[lv][R[:t] + R[t + 1 :]] * width_prev + cidx[lv - 1][C[1:]]
                    for R in rsub[lv + 1]
                    for C in csub[lv]
                ]
            )
            ent.append([R[t] * c + C[0] for R in rsub[lv + 1] for C in csub[lv]])
        lap_prev.append(torch.tensor(prev, dtype=torch.int64))
        lap_ent.append(torch.tensor(ent, dtype=torch.int64))
    rows: list[Any] = [None]
    cols: list[Any] = [None]
    num: list[Any] = [None]
    border: list[Any] = [None]
    other_row: list[Any] = [None]
    for k in range(1, min(r, c) + 1):
        L, J = rsub[k], csub[k]
        rows.append(torch.tensor(L, dtype=torch.int64).reshape(len(L), k))
        cols.append(torch.tensor(J, dtype=torch.int64).reshape(len(J), k))
        size_prev = comb(r, k) * comb(c, k - 1)  # level k - 1
        width_prev = comb(c, k - 1)
        num.append(
            torch.tensor(
                [
                    [
                        a * width_prev + cidx[k - 1][Jb[:t] + Jb[t + 1 :]] + (t % 2) * size_prev
                        for a in range(len(L))
                        for Jb in J
                    ]
                    for t in range(k)
                ],
                dtype=torch.int64,
            ).reshape(k, len(L) * len(J))
        )
        others = [[q for q in range(r) if q not in s] for s in L]
        if k < r:
            size_k = comb(r, k + 1) * comb(c, k)  # level k
            rows_b: list[list[int]] = []
            for j in range(r - k):
                flat: list[int] = []
                for s, o in zip(L, others):
                    q = o[j]
                    p = sum(1 for l in s if l > q)
                    negative = (p + k) % 2 == 1
                    base = ridx[k + 1][tuple(sorted(s + (q,)))] * len(J) + negative * size_k
                    flat.extend(base + b for b in range(len(J)))
                rows_b.append(flat)
            border.append(torch.tensor(rows_b, dtype=torch.int64).reshape(r - k, len(L) * len(J)))
        else:
            border.append(torch.zeros(0, len(L) * len(J), dtype=torch.int64))
        other_row.append(
            torch.tensor([[o[j] for o in others] for j in range(r - k)], dtype=torch.int64).reshape(
                r - k, len(L)
            )
        )
    return _Tables(r, c, lap_prev, lap_ent, rows, cols, num, border, other_row)


_DEVICE_CACHE: dict = {}
_FIELDS = ("lap_prev", "lap_ent", "rows", "cols", "num", "border", "other_row")


def _on(tables: _Tables, device: torch.device) -> _Tables:
    """The tables with every tensor on ``device`` (cached)."""
    if device.type == "cpu":
        return tables
    key = (tables.r, tables.c, str(device))
    hit = _DEVICE_CACHE.get(key)
    if hit is None:
        moved = {
            f: [None if t is None else t.to(device) for t in getattr(tables, f)] for f in _FIELDS
        }
        hit = _Tables(tables.r, tables.c, **moved)
        _DEVICE_CACHE[key] = hit
    return hit


@dataclass(frozen=True)
class SideCandidates:
    """The feasible bases of one side, flattened over (basis, game), sorted by game.

    Attributes:
        game: ``(F,)`` int64 game index.
        k: ``(F,)`` int64 basis size.
        row: ``(F,)`` int64 index of ``L`` among the ``k``-subsets of rows.
        col: ``(F,)`` int64 index of ``J`` among the ``k``-subsets of columns.
        row_labels: ``(F,)`` int64 bit mask of the tight rows (zeros unless
            labels were requested).
        col_labels: ``(F,)`` int64 bit mask of the zero columns.
        degenerate: ``(N,)`` bool, some feasible basis of the game has a label
            beyond the ``c`` of a nondegenerate vertex (a zero probability in
            ``J`` or a tight row outside ``L``).
        dense: with ``sparse=False``, ``dense[k - 1]`` is the ``(C(r,k) C(c,k), N)``
            bool feasibility of every size-``k`` basis (row-major in ``(L, J)``),
            and the flat fields above are empty.
    """

    game: Tensor
    k: Tensor
    row: Tensor
    col: Tensor
    row_labels: Tensor
    col_labels: Tensor
    degenerate: Tensor
    dense: tuple[Tensor, ...] = ()


def _levels(Mflat: Tensor, tables: _Tables) -> list[Tensor]:
    """All bordered minors, each level flat and with its negation appended.

    Args:
        Mflat: ``(r * c, N)`` the matrices, batch last.

    Returns:
        ``[lv] -> (2 * C(r, lv + 1) * C(c, lv), N)``.
    """
    N = Mflat.shape[1]
    ones = Mflat.new_ones(tables.r, N)
    out = [torch.cat([ones, -ones])]
    for lv in range(1, len(tables.lap_prev)):
        prev, ent = tables.lap_prev[lv], tables.lap_ent[lv]
        acc = out[-1].index_select(0, prev[0]) * Mflat.index_select(0, ent[0])
        for t in range(1, lv + 1):
            term = out[-1].index_select(0, prev[t])
            acc.addcmul_(term, Mflat.index_select(0, ent[t]), value=-1.0 if t % 2 else 1.0)
        out.append(torch.cat([acc, -acc]))
    return out


def side_candidates(
    M: Tensor,
    tables: _Tables,
    *,
    sparse: bool = True,
    labels: bool = True,
    tol: float | None = None,
) -> SideCandidates:
    """Feasible bases (vertices of the best-response polytope) of a batch of matrices.

    Args:
        M: ``(N, r, c)`` float64, each matrix centred and scaled (any affine
            image works mathematically; this one keeps rounding small).
        tables: ``side_tables(r, c)``.
        sparse: return the flat list of feasible bases (else dense masks).
        labels: with ``sparse``, also compute their label bit masks.
        tol: feasibility and label tolerance in normalised payoff units (the
            matrix is centred and scaled to max-abs entry 1): a probability
            ``>= -tol`` counts as nonnegative, one ``<= tol`` as zero (a
            label). None: ``default_tol(M.dtype)``, the tolerance of the
            arithmetic the bases are solved in (the solvers work on a float64
            copy of any game, whose entries are exact in float64, so this is
            1e-9 whatever the game's dtype).
    """
    tol = default_tol(M.dtype) if tol is None else tol
    N, r, c = M.shape
    device = M.device
    if not sparse and vertex_kernel.applies(M):  # the same tests in one numba loop nest
        dense, degenerate = vertex_kernel.dense_side(M, tables, tol, _SINGULAR)
        empty = torch.zeros(0, dtype=torch.int64)
        return SideCandidates(empty, empty, empty, empty, empty, empty, degenerate, tuple(dense))
    tables = _on(tables, device)
    kmax = min(r, c)
    biggest = max(comb(r, k) * comb(c, k) * max(k, r - k) for k in range(1, kmax + 1))
    chunk = max(1, CHUNK_ELEMS // biggest)
    parts: list[tuple[Tensor, ...]] = []
    dense: list[list[Tensor]] = [[] for _ in range(kmax)]
    degenerate = torch.zeros(N, dtype=torch.bool, device=device)
    for start in range(0, max(N, 1), chunk):  # at least once: an empty batch still has shapes
        stop = min(N, start + chunk)
        Mflat = M[start:stop].reshape(stop - start, r * c).t().contiguous()  # (r * c, n)
        T = _levels(Mflat, tables)
        for k in range(1, kmax + 1):
            feasible, extra, s, d, inv = _bases_of_size(T, tables, k, tol)
            degenerate[start:stop] = degenerate[start:stop] | (feasible & extra).any(0)
            if sparse:
                parts.append(_sparse(tables, k, feasible, s, d, inv, labels, tol, start))
            else:
                dense[k - 1].append(feasible)
    if not sparse:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return SideCandidates(
            game=empty,
            k=empty,
            row=empty,
            col=empty,
            row_labels=empty,
            col_labels=empty,
            degenerate=degenerate,
            dense=tuple(torch.cat(x, 1) for x in dense),
        )
    game, size, row, col, row_labels, col_labels = (torch.cat(p) for p in zip(*parts))
    order = torch.argsort(game, stable=True)
    return SideCandidates(
        game=game[order],
        k=size[order],
        row=row[order],
        col=col[order],
        row_labels=row_labels[order],
        col_labels=col_labels[order],
        degenerate=degenerate,
    )


def _bases_of_size(T: list[Tensor], tables: _Tables, k: int, tol: float):
    """Feasibility of every size-``k`` basis of one chunk of ``n`` games.

    Returns ``(feasible, extra, s, d, inv)``: ``(ab, n)`` bool feasibility and
    "has a label beyond a nondegenerate vertex's", the signed numerators
    ``s (k, ab, n)``, the border minors ``d (r - k, ab, n)`` (or None) and
    ``inv = 1 / S (ab, n)``.
    """
    r = tables.r
    n = T[0].shape[1]
    ab = tables.num[k].shape[1]
    s = T[k - 1].index_select(0, tables.num[k].flatten()).view(k, ab, n)  # signed numerators
    S = s.sum(0)  # (ab, n)
    ok = S * S > _SINGULAR * _SINGULAR
    inv = S.reciprocal()  # (ab, n); +-inf where singular, masked by ok
    # min_t y_t with y_t = s_t / S, as min(min_t s_t / S, max_t s_t / S): no
    # broadcast multiply over t and no where (both slow on CPU).
    ymin = torch.minimum(s.amin(0) * inv, s.amax(0) * inv)  # (ab, n)
    feasible = ok & (ymin >= -tol)
    extra = ymin <= tol
    d = None
    if k < r:
        d = T[k].index_select(0, tables.border[k].flatten()).view(r - k, ab, n)
        # max_q of (M y)_q - v = d_q / S over the rows q outside L.
        dmax = torch.maximum(d.amax(0) * inv, d.amin(0) * inv)  # (ab, n)
        feasible &= dmax <= tol
        extra |= dmax >= -tol
    return feasible, extra, s, d, inv


def _sparse(tables: _Tables, k: int, feasible, s, d, inv, labels: bool, tol: float, start: int):
    """Flat list ``(game, k, row, col, row_labels, col_labels)`` of the feasible bases."""
    idx, g = torch.nonzero(feasible, as_tuple=True)  # (F,)
    width = comb(tables.c, k)
    a, b = idx // width, idx % width
    if labels:
        one = torch.ones((), dtype=torch.int64, device=g.device)
        J = tables.cols[k][b]  # (F, k)
        zero = (s[:, idx, g] * inv[idx, g] <= tol).t()  # (F, k) probabilities that are 0
        col_lab = (one << torch.arange(tables.c, device=g.device)).sum() - (one << J).sum(-1)
        col_lab = col_lab + ((one << J) * zero).sum(-1)  # (F,)
        row_lab = (one << tables.rows[k][a]).sum(-1)  # (F,)
        if d is not None:
            tight = (d[:, idx, g] * inv[idx, g] >= -tol).t()  # (F, r - k) rows outside L
            row_lab = row_lab + ((one << tables.other_row[k][:, a].t()) * tight).sum(-1)
    else:
        row_lab = col_lab = torch.zeros_like(g)
    return g + start, torch.full_like(g, k), a, b, row_lab, col_lab


def basis_strategies(M: Tensor, game: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Solve the indifference systems of some bases accurately (batched LU).

    For each basis ``e`` solves ``[[M[L, J], -1], [1^T, 0]] [y_J; v] = [0; 1]``.

    Args:
        M: ``(N, r, c)`` float64 matrices.
        game: ``(E,)`` int64 game index of each basis.
        rows, cols: ``(E, k)`` int64 members of ``L`` and ``J`` (one ``k`` per call).

    Returns:
        ``(E, c)`` float64 strategies, zero outside ``J`` (NaN rows where the
        system is singular).
    """
    E, k = rows.shape
    c = M.shape[-1]
    sub = M[game[:, None, None], rows[:, :, None], cols[:, None, :]]  # (E, k, k)
    system = M.new_zeros(E, k + 1, k + 1)
    system[:, :k, :k] = sub
    system[:, :k, k] = -1.0
    system[:, k, :k] = 1.0
    rhs = M.new_zeros(E, k + 1, 1)
    rhs[:, k] = 1.0
    sol, info = torch.linalg.solve_ex(system, rhs)  # (E, k + 1, 1)
    sol = torch.where((info == 0)[:, None, None], sol, torch.full_like(sol, float("nan")))
    out = M.new_zeros(E, c)
    out.scatter_(1, cols, sol[:, :k, 0])
    return out


def global_labels(cand: SideCandidates, row_shift: int, col_shift: int) -> Tensor:
    """``(F,)`` int64 labels in the game's numbering (row ``i``: ``i``; column ``j``: ``m + j``)."""
    return (cand.row_labels << row_shift) | (cand.col_labels << col_shift)


def solve_size(
    M: Tensor, tables: _Tables, k: int, game: Tensor, row: Tensor, col: Tensor
) -> Tensor:
    """Accurate strategies ``(E, c)`` of size-``k`` bases given by subset indices ``(E,)``."""
    rows = tables.rows[k].to(M.device)[row]  # (E, k)
    cols = tables.cols[k].to(M.device)[col]  # (E, k)
    return basis_strategies(M, game, rows, cols)


def solve_bases(M: Tensor, tables: _Tables, cand: SideCandidates, index: Tensor) -> Tensor:
    """Accurate strategies ``(E, c)`` of the candidates ``cand[index]`` (grouped by size)."""
    E = index.shape[0]
    out = M.new_zeros(E, M.shape[-1])
    ks = cand.k[index]
    for k in torch.unique(ks).tolist():
        sel = torch.nonzero(ks == k).flatten()  # (E_k,)
        pick = index[sel]
        out[sel] = solve_size(M, tables, k, cand.game[pick], cand.row[pick], cand.col[pick])
    return out


def extreme_equilibria(A: Tensor, Bt: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """All extreme equilibria of a batch of bimatrix games, solved accurately.

    The shared engine of :func:`~aggregation.support_enumeration` and
    :func:`~aggregation.vertex_enumeration` (whose answers are therefore the same):

    1. *Vertex test* (:func:`side_candidates` with ``sparse=False``, both sides):
       the feasibility of every basis of both best-response polytopes, and
       per game whether some vertex is degenerate (has more labels than a
       nondegenerate vertex).
    2. *Nondegenerate games*: every extreme equilibrium ``(x, y)`` pairs a
       nondegenerate vertex of each polytope, so its supports have equal size
       ``k`` and the labels are complementary: ``y``'s basis is ``(I, J)`` and
       ``x``'s is ``(J, I)`` for the supports ``I`` (rows) and ``J`` (columns).
       The equilibria are the ``(I, J)`` feasible on both sides, each once.
    3. *Degenerate games* (rare; none in a random continuous game): the
       completely labelled pairs of distinct vertices, from their label bit
       masks (:func:`labelled_pairs`).

    Args:
        A: ``(N, m, n)`` and ``Bt``: ``(N, n, m)`` normalised payoff matrices
            (float64).

    Returns:
        ``(game, x, y, degenerate)``: ``(P,)`` game index (sorted), ``(P, m)``
        and ``(P, n)`` float64 strategies, ``(N,)`` bool degeneracy flags.
    """
    N, m, n = A.shape
    # The dense feasibility masks hold C(m + n, m) bools per game and side: chunk the batch.
    chunk = max(1, MASK_BYTES // comb(m + n, m))
    starts = range(0, max(N, 1), chunk)  # at least once: an empty batch still has shapes
    parts = [_equal_supports(A[s : s + chunk], Bt[s : s + chunk]) for s in starts]
    g = torch.cat([p[0] + s for p, s in zip(parts, starts)])
    x = torch.cat([p[1] for p in parts])
    y = torch.cat([p[2] for p in parts])
    degenerate = torch.cat([p[3] for p in parts])  # (N,)
    if bool(degenerate.any()):
        sub = torch.nonzero(degenerate).flatten()
        dg, dx, dy = labelled_pairs(A[sub], Bt[sub])
        g, x, y = torch.cat([g, sub[dg]]), torch.cat([x, dx]), torch.cat([y, dy])
    order = torch.argsort(g, stable=True)
    return g[order], x[order], y[order], degenerate


def _equal_supports(A: Tensor, Bt: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Equilibria with supports of equal size of the nondegenerate games, and the flags.

    Args:
        A: ``(N, m, n)``, Bt: ``(N, n, m)`` normalised matrices.

    Returns:
        ``(game (E,), x (E, m), y (E, n), degenerate (N,))``, float64 strategies.
    """
    N, m, n = A.shape
    ty, tx = side_tables(m, n), side_tables(n, m)
    ydense = side_candidates(A, ty, sparse=False)
    xdense = side_candidates(Bt, tx, sparse=False)
    degenerate = ydense.degenerate | xdense.degenerate  # (N,)
    games, xs, ys = [], [], []
    for k in range(1, min(m, n) + 1):
        a_k, b_k = comb(m, k), comb(n, k)
        # Supports (I, J): the y-basis (L = I, J) and the x-basis (K = J, I).
        x_feasible = xdense.dense[k - 1].view(b_k, a_k, N).transpose(0, 1).reshape(a_k * b_k, N)
        both = ydense.dense[k - 1] & x_feasible & ~degenerate  # (a_k * b_k, N)
        idx, g = torch.nonzero(both, as_tuple=True)
        a, b = idx // b_k, idx % b_k  # row-support and column-support indices
        games.append(g)
        ys.append(solve_size(A, ty, k, g, a, b))  # (E_k, n)
        xs.append(solve_size(Bt, tx, k, g, b, a))  # (E_k, m)
    return torch.cat(games), torch.cat(xs), torch.cat(ys), degenerate


def labelled_pairs(A: Tensor, Bt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every completely labelled pair of vertices, solved accurately.

    The route of :func:`extreme_equilibria` for degenerate games: all vertices of
    both polytopes with their label bit masks (:func:`side_candidates`), paired
    by :func:`pair_vertices`.

    Args:
        A: ``(N, m, n)`` and ``Bt``: ``(N, n, m)`` normalised payoff matrices.

    Returns:
        ``(game, x, y)``: ``(P,)`` game index (sorted), ``(P, m)`` and
        ``(P, n)`` float64 strategies.
    """
    m, n = A.shape[-2:]
    ty, tx = side_tables(m, n), side_tables(n, m)
    ycand = side_candidates(A, ty)
    xcand = side_candidates(Bt, tx)
    degenerate = ycand.degenerate | xcand.degenerate  # (N,)
    g, ix, iy = pair_vertices(ycand, xcand, m, n, degenerate)
    x = solve_bases(Bt, tx, xcand, ix)  # (P, m)
    y = solve_bases(A, ty, ycand, iy)  # (P, n)
    return g, x, y


def pair_vertices(
    ycand: SideCandidates, xcand: SideCandidates, m: int, n: int, degenerate: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Completely labelled pairs of vertices: the extreme equilibria.

    A pair (x-vertex, y-vertex) of the same game is an equilibrium iff every
    label ``0..m+n-1`` is a label of one of them (von Stengel 2002, Thm 3.4).
    Vertices reached from several bases (degenerate games) are counted once.
    In a nondegenerate game a vertex of ``P`` has exactly ``m`` labels and one
    of ``Q`` exactly ``n``, so the partner of ``x`` has exactly the labels that
    ``x`` lacks: a sorted join on ``(game, labels)``. Degenerate games are
    paired by testing all pairs (bit masks, padded per game).

    Args:
        ycand: y-side candidates (``M = A``, rows = row player's actions).
        xcand: x-side candidates (``M = B^T``).
        degenerate: ``(N,)`` bool.

    Returns:
        ``(game, ix, iy)``: ``(P,)`` game index and indices into ``xcand`` and
        ``ycand`` of each completely labelled pair, sorted by game.
    """
    ylab = global_labels(ycand, 0, m)  # (Fy,)
    xlab = global_labels(xcand, m, 0)  # (Fx,)
    iy = _first_per_label(ycand.game, ylab)  # distinct vertices
    ix = _first_per_label(xcand.game, xlab)
    full = (1 << (m + n)) - 1
    # Nondegenerate games: exact join of (game, y labels) with (game, full ^ x labels).
    bits = m + n
    exact = ~degenerate  # (N,)
    if (degenerate.shape[0] - 1).bit_length() + bits > 62:  # composite keys would overflow
        exact = torch.zeros_like(degenerate)
    ny, nx = exact[ycand.game[iy]], exact[xcand.game[ix]]
    jy, jx = iy[ny], ix[nx]
    want = full ^ xlab[jx]  # (Vx,) the labels x lacks
    pos = _join(ycand.game[jy], ylab[jy], xcand.game[jx], want, bits)
    hit = pos >= 0
    g1, ix1, iy1 = xcand.game[jx][hit], jx[hit], jy[pos[hit]]
    # Degenerate games: every pair, superset test on the labels.
    dy, dx = iy[~ny], ix[~nx]
    if dy.numel() and dx.numel():
        G = int(degenerate.shape[0])
        py, vy = _pad(ycand.game[dy], dy, G)  # (G, Vy)
        px, vx = _pad(xcand.game[dx], dx, G)  # (G, Vx)
        rows = torch.nonzero(vy.any(1) & vx.any(1)).flatten()  # the degenerate games
        py, vy, px, vx = py[rows], vy[rows], px[rows], vx[rows]
        ly = torch.where(vy, ylab[py.clamp_min(0)], torch.zeros_like(py))  # (G', Vy)
        lx = torch.where(vx, xlab[px.clamp_min(0)], torch.zeros_like(px))  # (G', Vx)
        complete = ((lx[:, :, None] | ly[:, None, :]) == full) & vx[:, :, None] & vy[:, None, :]
        h, a, b = torch.nonzero(complete, as_tuple=True)
        g1 = torch.cat([g1, rows[h]])
        ix1 = torch.cat([ix1, px[h, a]])
        iy1 = torch.cat([iy1, py[h, b]])
    order = torch.argsort(g1, stable=True)
    return g1[order], ix1[order], iy1[order]


def _lex_order(game: Tensor, label: Tensor) -> Tensor:
    """Permutation sorting by ``(game, label)`` lexicographically."""
    order = torch.argsort(label, stable=True)
    return order[torch.argsort(game[order], stable=True)]


def _first_per_label(game: Tensor, label: Tensor) -> Tensor:
    """Indices of the first candidate of each distinct ``(game, label)``, sorted that way."""
    if game.numel() == 0:
        return game
    order = _lex_order(game, label)
    g, lab = game[order], label[order]
    new = torch.ones_like(g, dtype=torch.bool)
    new[1:] = (g[1:] != g[:-1]) | (lab[1:] != lab[:-1])
    return order[new]


def _join(game: Tensor, label: Tensor, qgame: Tensor, qlabel: Tensor, bits: int) -> Tensor:
    """Position of each query pair ``(qgame, qlabel)`` among the distinct pairs
    ``(game, label)`` (sorted lexicographically), or -1. Labels are < ``2**bits``."""
    if game.numel() == 0 or qgame.numel() == 0:
        return torch.full_like(qgame, -1)
    key = (game << bits) | label  # (F,) ascending
    query = (qgame << bits) | qlabel  # (Q,)
    pos = torch.searchsorted(key, query).clamp(max=key.numel() - 1)
    return torch.where(key[pos] == query, pos, torch.full_like(pos, -1))


def _pad(game: Tensor, index: Tensor, G: int) -> tuple[Tensor, Tensor]:
    """Scatter ``index`` (sorted by ``game``) into ``(G, V)`` slots, ``-1`` padding."""
    counts = torch.bincount(game, minlength=G)  # (G,)
    V = int(counts.max()) if game.numel() else 0
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(game.numel(), device=game.device) - starts[game]
    out = torch.full((G, V), -1, dtype=torch.int64, device=game.device)
    out[game, pos] = index
    return out, out >= 0
