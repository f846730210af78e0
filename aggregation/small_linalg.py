"""Batched linear algebra for many tiny systems (n <= 8 or so), elementwise over the batch.

``torch.linalg.solve`` on a batch of a million 4 x 4 systems spends most of its
time in per-matrix LAPACK overhead. Here the batch is the *inner* (contiguous)
dimension instead: a matrix is stored as ``n * n`` vectors of shape ``(B,)``
("structure of arrays", SoA) and Gaussian elimination is unrolled in Python,
so every step is one fused elementwise op (``addcmul``) over the whole batch.
The batch is processed in chunks that fit in cache (large temporaries would
otherwise cost page faults on every allocation).

Threads. An op on a 64K-element chunk takes tens of microseconds, so OpenMP's
fork/join per op gains nothing, and on a busy machine (other processes on the
cores) its barriers cost milliseconds per op: measured 5-10x slowdowns. The
chunk loops therefore run their ops single-threaded (:func:`serial_ops`, which
sets the calling thread's OpenMP thread count to 1 and restores it), and
:func:`map_chunks` spreads independent chunks over up to
``torch.get_num_threads()`` Python worker threads instead (torch releases the
GIL inside each op), so an idle machine's cores are still used. The exact
scale-game solver and the convex aggregator also run their few large,
memory-bound ops (assembling results, the fused backward's bookkeeping) under
:func:`serial_ops`. On a machine
whose cores are busy with other work, ``torch.set_num_threads(1)`` is faster
still (no worker threads competing for the GIL).

Elimination runs *without pivoting*. It is well defined (no zero pivot) for
matrices all of whose leading principal minors are nonzero (P-matrices,
positive definite matrices, the bordered KKT matrices of
:mod:`aggregation.scale.convex`) and backward stable for symmetric positive definite
and diagonally dominant ones; elements
whose pivots come out tiny relative to the diagonal are re-solved with
``torch.linalg.solve_ex`` (partial pivoting), and elements that are singular
even then are reported through the ``ok`` flag, with a zero solution.

Every function here is built from differentiable out-of-place torch ops, so it
can be used inside autograd (and double backward).

Public (documented, stable names): the solvers of :mod:`aggregation.scale`,
:mod:`aggregation.finite.differentiable` and :mod:`aggregation.implicit_diff`
use it, and a test that wants many chunks sets :data:`CHUNK` (monkeypatch).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import TypeVar

import torch
from torch import Tensor

__all__ = [
    "CHUNK",
    "chunk_size",
    "lu_solve_soa",
    "map_chunks",
    "matvec",
    "ordered_sum",
    "outer_threads",
    "serial_ops",
    "solve_small",
]

CHUNK = 1 << 16  # batch elements per CPU chunk: 256 KiB float32 SoA vectors (L2-sized)

T = TypeVar("T")
_POOL: dict[str, object] = {}
_POOL_LOCK = threading.Lock()


def chunk_size(device: torch.device) -> int:
    """Chunk length: cache-sized on CPU, large on accelerators (launch-bound there)."""
    return CHUNK if device.type == "cpu" else 1 << 22


_OUTER = threading.local()


@contextmanager
def serial_ops(device: torch.device | None = None) -> Iterator[None]:
    """Run the enclosed torch CPU ops single-threaded in this thread, then restore.

    A no-op for a non-CPU ``device``. Inside, :func:`outer_threads` still tells the
    thread count outside (for kernels that split their own work).
    """
    previous = torch.get_num_threads()
    if previous == 1 or (device is not None and device.type != "cpu"):
        yield
        return
    saved = getattr(_OUTER, "threads", None)
    _OUTER.threads = previous if saved is None else saved
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        _OUTER.threads = saved


def outer_threads() -> int:
    """torch's thread count outside any :func:`serial_ops` block of this thread (inside
    one, the count it replaced; elsewhere ``torch.get_num_threads()``)."""
    saved = getattr(_OUTER, "threads", None)
    return torch.get_num_threads() if saved is None else saved


def _worker_init() -> None:
    torch.set_num_threads(1)


def _pool(workers: int) -> ThreadPoolExecutor:
    """A per-process pool (recreated after a fork, whose child has no threads)."""
    with _POOL_LOCK:
        key = f"{os.getpid()}:{workers}"
        pool = _POOL.get(key)
        if pool is None:
            pool = ThreadPoolExecutor(
                workers, thread_name_prefix="aggregation-", initializer=_worker_init
            )
            _POOL.clear()
            _POOL[key] = pool
        return pool  # type: ignore[return-value]


def map_chunks(fn: Callable[[int, int], T], total: int, device: torch.device) -> list[T]:
    """``[fn(start, stop) for each chunk]`` without a graph, in order.

    On CPU, each chunk's ops run single-threaded and chunks are spread over
    ``min(torch.get_num_threads(), chunks)`` worker threads; elsewhere the
    chunks run in this thread. ``fn`` must not need autograd.
    """
    step = chunk_size(device)
    starts = list(range(0, total, step))

    def run(start: int) -> T:
        with torch.no_grad():
            return fn(start, min(total, start + step))

    workers = min(torch.get_num_threads(), len(starts))
    if (
        device.type != "cpu"
        or workers <= 1
        or threading.current_thread().name.startswith("aggregation-")
    ):
        with serial_ops() if device.type == "cpu" else nullcontext():
            return [run(s) for s in starts]
    return list(_pool(workers).map(run, starts))


def matvec(Q: Tensor, w: Tensor) -> Tensor:
    """``(..., L)`` ``(Q w)_l = sum_k Q_lk w_k``, summed over ``k = 0..L-1`` in order.

    Elementwise ops only (a product, then fused multiply-adds), so each batch
    element's result is the same bits whatever the batch around it, its size
    or its layout (a batched matrix product's blocking depends on them; so does
    the order of a reduction). ``Q (..., L, L)`` and ``w (..., L)`` broadcast.
    """
    L = w.shape[-1]
    acc = Q[..., :, 0] * w[..., 0:1]  # (..., L)
    for k in range(1, L):
        acc = torch.addcmul(acc, Q[..., :, k], w[..., k : k + 1])
    return acc


def ordered_sum(parts: Sequence[Tensor]) -> Tensor:
    """``parts[0] + parts[1] + ...`` in this order (batch-invariant, unlike ``sum``)."""
    acc = parts[0]
    for p in parts[1:]:
        acc = acc + p
    return acc


def lu_solve_soa(
    M: list[list[Tensor]],
    rhs: list[list[Tensor]],
    *,
    rtol: float,
    positive: bool = False,
) -> tuple[list[list[Tensor]], Tensor]:
    """Solve ``M X = R`` for every batch element by unpivoted Gaussian elimination.

    Args:
        M: ``n x n`` nested list of ``(B,)`` tensors, ``M[i][j]`` the (i, j) entry.
        rhs: ``n`` lists of ``r`` tensors ``(B,)``: ``rhs[i][q]`` is entry i of
            right-hand side q.
        rtol: a pivot with ``|p_k| <= rtol * |M_kk|`` (or ``p_k <= rtol * M_kk``
            with ``positive``; or NaN) marks the element as unreliable.
        positive: expect a positive diagonal and positive pivots (P-matrices,
            positive definite matrices): a nonpositive pivot is then unreliable.

    Returns:
        ``(X, bad)``: ``X[i][q]`` of shape ``(B,)`` and ``bad`` ``(B,)`` bool.
    """
    n = len(M)
    U = [list(row) for row in M]
    R = [list(row) for row in rhs]
    inv: list[Tensor] = []
    margin = torch.full_like(M[0][0], torch.inf)  # min_k slack_k; bad unless > 0
    for k in range(n):
        pivot = U[k][k]  # (B,)
        if positive:  # the diagonal is positive too: p_k - rtol * M_kk
            slack = torch.add(pivot, M[k][k], alpha=-rtol)
        else:
            slack = torch.add(pivot.abs(), M[k][k].abs(), alpha=-rtol)
        margin = torch.minimum(margin, slack)
        inv.append(pivot.reciprocal())
        for i in range(k + 1, n):
            f = U[i][k] * inv[k]  # (B,) multiplier
            for j in range(k + 1, n):
                U[i][j] = torch.addcmul(U[i][j], f, U[k][j], value=-1)
            R[i] = [torch.addcmul(ri, f, rk, value=-1) for ri, rk in zip(R[i], R[k])]
    X: list[list[Tensor]] = [[] for _ in range(n)]
    for i in reversed(range(n)):
        row = []
        for q, s in enumerate(R[i]):
            for j in range(i + 1, n):
                s = torch.addcmul(s, U[i][j], X[j][q], value=-1)
            row.append(s * inv[i])
        X[i] = row
    bad = ~(margin > 0)  # NaN -> bad
    return X, bad


def _solve_chunk(A: Tensor, B: Tensor, transpose: bool, rtol: float) -> tuple[Tensor, Tensor]:
    """A (b, n, n), B (b, n, r) -> X (b, n, r), bad (b,)."""
    n = A.shape[-1]
    As = A.permute(1, 2, 0).contiguous()  # (n, n, b)
    Bs = B.permute(1, 2, 0).contiguous()  # (n, r, b)
    if transpose:
        M = [[As[j, i] for j in range(n)] for i in range(n)]
    else:
        M = [[As[i, j] for j in range(n)] for i in range(n)]
    R = [list(Bs[i].unbind(0)) for i in range(n)]
    X, bad = lu_solve_soa(M, R, rtol=rtol)
    out = torch.stack([torch.stack(row, 0) for row in X], 0)  # (n, r, b)
    return out.permute(2, 0, 1), bad


def _solve_chunks(
    Af: Tensor, Bf: Tensor, transpose: bool, rtol: float, chunk: int
) -> tuple[Tensor, Tensor]:
    total = Af.shape[0]
    if total == 0:
        return Bf.clone(), torch.zeros(0, dtype=torch.bool, device=Af.device)
    outs, bads = [], []
    with serial_ops() if Af.device.type == "cpu" else nullcontext():
        for start in range(0, total, chunk):
            x, bad = _solve_chunk(
                Af[start : start + chunk], Bf[start : start + chunk], transpose, rtol
            )
            outs.append(x)
            bads.append(bad)
    if len(outs) == 1:
        return outs[0], bads[0]
    return torch.cat(outs, 0), torch.cat(bads, 0)


def solve_small(
    A: Tensor, b: Tensor, *, transpose: bool = False, chunk: int = CHUNK
) -> tuple[Tensor, Tensor]:
    """Solve ``A x = b`` (or ``A^T x = b``) for a batch of small matrices.

    Args:
        A: ``(*batch, n, n)``.
        b: ``(*batch, n)`` or ``(*batch, n, r)`` (same batch shape as ``A``).
        transpose: solve with ``A^T`` instead of ``A`` (no copy needed).
        chunk: batch elements per elimination chunk.

    Returns:
        ``(x, ok)``: ``x`` shaped like ``b``; ``ok`` ``(*batch,)`` bool, False
        where the system is singular (then ``x`` is zero there, never NaN).
    """
    n = A.shape[-1]
    vector = b.dim() == A.dim() - 1
    batch = A.shape[:-2]
    Af = A.reshape(-1, n, n)
    Bf = (b.unsqueeze(-1) if vector else b).reshape(Af.shape[0], n, 1 if vector else b.shape[-1])
    rtol = float(torch.finfo(A.dtype).eps) ** 0.5
    X, bad = _solve_chunks(Af, Bf, transpose, rtol, chunk)
    ok = torch.ones_like(bad)
    if bool(bad.any()):
        if torch.is_grad_enabled() and (A.requires_grad or b.requires_grad):
            # re-run with the unreliable systems replaced by the identity, so that
            # their NaN/inf intermediates cannot leak NaN into the backward pass
            eye = torch.eye(n, dtype=A.dtype, device=A.device)
            safe = torch.where(bad[:, None, None], eye, Af)
            X, _ = _solve_chunks(safe, Bf, transpose, rtol, chunk)
        idx = bad.nonzero().squeeze(-1)
        Ab = Af[idx]
        if transpose:
            Ab = Ab.transpose(-1, -2)
        xb, info = torch.linalg.solve_ex(Ab, Bf[idx])
        good = (info == 0) & torch.isfinite(xb).all(-1).all(-1)
        xb = torch.where(good[:, None, None], xb, torch.zeros_like(xb))
        X = X.index_put((idx,), xb)
        ok = ok.index_put((idx,), good)
    X = X.reshape(*batch, n, Bf.shape[-1])
    if vector:
        X = X.squeeze(-1)
    return X, ok.reshape(batch)
