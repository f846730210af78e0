"""The local windows of :mod:`maha.attention` through FlexAttention: the CUDA path.

A windowed scale of :class:`maha.MultiscaleAttention` computes, in its own rows
(scale ``l`` has ``n_l`` rows, each standing for ``r^l`` input tokens),

    O[j] = sum_k softmax_k( <Q[j], K[k]> / sqrt(d_h) + M[j, k] ) V[k] ,

with ``M[j, k] = 0`` on the allowed keys and ``-inf`` elsewhere. The allowed keys
are those of :func:`maha.attention.local_attention` (the blocked CPU path):

- causal: ``0 <= j - k < w`` (the key is at or before the query and within the
  window; a query at scale ``l`` thus sees only blocks that have ended, the block
  rule of :mod:`maha.scales` applied to the keys);
- non-causal: ``|j - k| < w``;
- with padding, only keys with ``valid[b, k]`` True.

FlexAttention (``torch.nn.attention.flex_attention``; He, Guessous, Liang,
Zhang, "Flex Attention: A Programming Model for Generating Optimized Attention
Kernels", 2024) takes this rule as a ``mask_mod(b, h, q_idx, kv_idx) -> bool``
(:func:`window_mask_mod`) and a :class:`~torch.nn.attention.flex_attention.BlockMask`
listing, per tile of ``block_size`` queries, the tiles of keys that are partly
allowed (the kernel evaluates ``mask_mod`` there) or fully allowed (it does not)
and skips every other tile, so the cost is ``O(n w d_h)`` per head, as on the
blocked path, in one fused kernel (FlashAttention's online softmax, forward and
backward). :func:`window_block_mask` builds the block mask from the tile
geometry in ``O((n / block_size)^2)`` work and memory; it lists exactly the tiles
``create_block_mask(window_mask_mod(...), ...)`` lists, without that function's
``n x n`` boolean mask (``tests/maha/test_flex.py`` pins the two together).

Which path runs (:func:`flex_enabled`): CUDA tensors use FlexAttention, compiled
once per process (``torch.compile(flex_attention)``, created lazily on first use:
FlexAttention's fused kernels exist only compiled), where its kernels take them
(float16, bfloat16 or float32, head width >= 16; float64 or narrower heads stay on
the blocked path); every other device keeps the blocked path of
:mod:`maha.attention`, faster on a CPU than FlexAttention's unfused eager reference
(1 thread, ``n = 1024``, ``w = 64``, 4 heads of 64, forward: about 8x).
:func:`use_flex` forces either path (``True``: flex on any device, e.g. to test it
on a CPU, where PyTorch runs its eager reference implementation, forward only:
PyTorch 2.13's ``flex_attention`` refuses inputs that require grad on a CPU;
``False``: the blocked path on any device, e.g. to compare the two on a GPU).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from aggregation.validation import check_int, describe

try:
    from torch.nn.attention.flex_attention import BlockMask, flex_attention
except ImportError:  # a PyTorch without FlexAttention (< 2.5)
    BlockMask = None  # type: ignore[assignment,misc]
    flex_attention = None  # type: ignore[assignment]

__all__ = [
    "flex_available",
    "flex_enabled",
    "flex_local_attention",
    "use_flex",
    "window_block_mask",
    "window_mask_mod",
]

BLOCK_SIZE = 128  # FlexAttention's default tile (queries and keys per tile)
KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)  # FlexAttention's CUDA kernels
MIN_HEAD_DIM = 16  # its CUDA kernels' smallest head width (Triton's tl.dot)

_forced: bool | None = None  # set by use_flex
_compiled: Callable | None = None  # torch.compile(flex_attention), made on first CUDA call


def flex_available() -> bool:
    """Whether the installed PyTorch has ``torch.nn.attention.flex_attention``."""
    return flex_attention is not None


def flex_enabled(
    device: torch.device | str, *, dtype: torch.dtype | None = None, head_dim: int | None = None
) -> bool:
    """Whether windowed attention on ``device`` runs through FlexAttention.

    By default True on CUDA where FlexAttention's fused kernels take the input
    (``dtype`` in :data:`KERNEL_DTYPES`, ``head_dim >= MIN_HEAD_DIM`` where given)
    and False elsewhere (the blocked path, e.g. float64 or ``d_h < 16`` on CUDA);
    :func:`use_flex` forces one path regardless.
    """
    if not flex_available():
        return False
    if _forced is not None:
        return _forced
    if torch.device(device).type != "cuda":
        return False
    if dtype is not None and dtype not in KERNEL_DTYPES:
        return False
    return head_dim is None or head_dim >= MIN_HEAD_DIM


@contextlib.contextmanager
def use_flex(enabled: bool | None = True) -> Iterator[None]:
    """Force the local-attention path inside the block (process-wide, not thread-local).

    Args:
        enabled: True: FlexAttention on every device (on a CPU PyTorch's eager
            reference, which has no backward there); False: the blocked path of
            :func:`maha.attention.local_attention` on every device; None: the
            default of :func:`flex_enabled` (FlexAttention on CUDA only).

    Raises:
        TypeError: ``enabled`` is not a bool or None.
        RuntimeError: ``enabled=True`` where PyTorch has no FlexAttention.
    """
    global _forced
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool or None; received {describe(enabled)}")
    if enabled and not flex_available():
        raise RuntimeError(
            f"use_flex(True): torch {torch.__version__} has no torch.nn.attention.flex_attention"
        )
    saved = _forced
    _forced = enabled
    try:
        yield
    finally:
        _forced = saved


def window_mask_mod(window: int, *, causal: bool, valid: Tensor | None = None) -> Callable:
    """The mask of a windowed scale as a FlexAttention ``mask_mod``.

    ``mask_mod(b, h, q_idx, kv_idx)`` is True iff key ``kv_idx`` is allowed for
    query ``q_idx``: ``0 <= q_idx - kv_idx < window`` (causal) or
    ``|q_idx - kv_idx| < window``, and ``valid[b, kv_idx]`` where ``valid`` (a
    ``(B, n)`` bool tensor, True at real keys) is given. The same for every head.
    """

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        rel = q_idx - kv_idx
        allowed = (rel >= 0) & (rel < window) if causal else (rel < window) & (rel > -window)
        if valid is not None:
            allowed = allowed & valid[b, kv_idx]
        return allowed

    return mask_mod


def _valid_counts(valid: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Number of valid keys in ``[lo, hi)`` per batch row: ``(B, *lo.shape)`` int.

    ``lo``, ``hi`` are int tensors of one shape with ``0 <= lo <= hi <= n``.
    """
    cum = torch.nn.functional.pad(valid.long().cumsum(-1), (1, 0))  # (B, n + 1)
    batch = cum.shape[0]
    upper = cum.gather(1, hi.reshape(1, -1).expand(batch, -1))  # (B, m)
    lower = cum.gather(1, lo.reshape(1, -1).expand(batch, -1))
    return (upper - lower).view(batch, *lo.shape)


def _ordered(tiles: Tensor) -> tuple[Tensor, Tensor]:
    """``(num, indices)`` of a ``(B, 1, nq, nk)`` bool tile map, FlexAttention's layout.

    ``num[..., a]`` counts the tiles of query tile ``a``; ``indices[..., a, :num]``
    lists them in increasing order (the rest is any index, never read).
    """
    as_int = tiles.to(torch.int32)
    num = as_int.sum(-1, dtype=torch.int32)  # (B, 1, nq)
    indices = torch.argsort(as_int, dim=-1, descending=True, stable=True)  # (B, 1, nq, nk)
    return num.contiguous(), indices.to(torch.int32).contiguous()


def _tile_maps(
    length: int,
    window: int,
    causal: bool,
    valid: Tensor | None,
    block_size: int,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """``(partial, full)`` bool ``(B or 1, 1, nq, nk)`` tile maps of the window mask."""
    tiles = -(-length // block_size)
    start = torch.arange(tiles, device=device) * block_size  # (T,) first row of each tile
    stop = torch.clamp(start + block_size, max=length) - 1  # (T,) last row
    qs, qe = start.view(tiles, 1), stop.view(tiles, 1)  # query tiles (rows)
    ks, ke = start.view(1, tiles), stop.view(1, tiles)  # key tiles (columns)
    # q - k over a tile takes every integer in [qs - ke, qe - ks]
    low = -(window - 1) if not causal else 0
    high = window - 1
    # the allowed keys of the tile's queries: k in [max(ks, qs - high), min(ke, qe - low)]
    k_lo = torch.maximum(ks, qs - high)  # (T, T)
    k_hi = torch.minimum(ke, qe - low)
    some = k_lo <= k_hi  # some pair allowed by the window
    whole = (qs - ke >= low) & (qe - ks <= high)  # every pair allowed by the window
    # a tile cut by n is never full: create_block_mask pads past n with masked rows
    whole_rows = stop - start + 1 == block_size  # (T,)
    complete = whole_rows.view(tiles, 1) & whole_rows.view(1, tiles)  # (T, T)
    if valid is None:
        full = whole & complete
        return (some & ~full).view(1, 1, tiles, tiles), full.view(1, 1, tiles, tiles)
    k_lo_c = torch.clamp(k_lo, min=0, max=length)
    k_hi_c = torch.clamp(k_hi + 1, min=0, max=length)
    reachable = _valid_counts(valid, k_lo_c, torch.maximum(k_hi_c, k_lo_c))  # (B, T, T)
    in_tile = _valid_counts(valid, ks.expand(tiles, tiles), (ke + 1).expand(tiles, tiles))
    some_b = some & (reachable > 0)  # (B, T, T)
    full_b = whole & complete & (in_tile == block_size)
    return (some_b & ~full_b).unsqueeze(1), full_b.unsqueeze(1)


def window_block_mask(
    length: int,
    window: int,
    *,
    causal: bool,
    valid: Tensor | None = None,
    block_size: int = BLOCK_SIZE,
    device: torch.device | str | None = None,
) -> BlockMask:
    """The FlexAttention block mask of a windowed scale, built from its tile geometry.

    Tile ``(a, c)`` covers queries ``[a s, min((a+1) s, n))`` and keys
    ``[c s, min((c+1) s, n))`` (``s = block_size``); over it ``q - k`` takes every
    integer between ``q_start - k_end`` and ``q_end - k_start``, so the tile is

    - *full* (every pair allowed, ``mask_mod`` skipped) iff that interval lies in
      the window (``[0, w - 1]`` causal, ``[-(w - 1), w - 1]`` otherwise), the tile
      is complete (``s x s`` rows inside ``n``) and all its keys are valid;
    - *partial* iff it is not full and some query of it has an allowed valid key
      (the keys in the window of its queries form one interval, whose valid keys
      are counted with a cumulative sum);
    - skipped otherwise.

    These are exactly the tiles of ``create_block_mask(window_mask_mod(...), B,
    None, n, n, BLOCK_SIZE=s)``, at ``O((n / s)^2)`` cost instead of ``O(B n^2)``.

    Args:
        length: n >= 1, the rows of the scale (queries and keys alike).
        window: w >= 1.
        causal: one-sided window.
        valid: optional ``(B, n)`` bool, True at real keys (one mask per batch row).
        block_size: s, rows per tile (FlexAttention's kernels on CUDA want 128).
        device: where the mask lives (that of ``valid`` when given).

    Returns:
        A ``torch.nn.attention.flex_attention.BlockMask`` of shape ``(B or 1, 1, n, n)``
        with :func:`window_mask_mod` as its ``mask_mod``.

    Raises:
        TypeError, ValueError: an argument of the wrong type or value (named).
        RuntimeError: PyTorch has no FlexAttention.
    """
    if not flex_available():
        raise RuntimeError(f"torch {torch.__version__} has no torch.nn.attention.flex_attention")
    length = check_int(length, "length")
    window = check_int(window, "window")
    block_size = check_int(block_size, "block_size")
    if valid is not None:
        if not isinstance(valid, Tensor) or valid.dtype != torch.bool or valid.dim() != 2:
            raise TypeError(
                f"valid must be a (B, {length}) bool tensor; received {describe(valid)}"
            )
        if valid.shape[1] != length:
            raise ValueError(f"valid must have shape (B, {length}); received {describe(valid)}")
        device = valid.device
    elif device is None:
        device = "cpu"
    return _window_block_mask(length, window, bool(causal), valid, block_size, torch.device(device))


def _window_block_mask(
    length: int,
    window: int,
    causal: bool,
    valid: Tensor | None,
    block_size: int,
    device: torch.device,
) -> BlockMask:
    if valid is None and not torch.compiler.is_compiling():
        return _cached_block_mask(length, window, causal, block_size, device)
    return _build_block_mask(length, window, causal, valid, block_size, device)


@functools.lru_cache(maxsize=64)
def _cached_block_mask(
    length: int, window: int, causal: bool, block_size: int, device: torch.device
) -> BlockMask:
    """One block mask per geometry and device (no padding: it depends on nothing else)."""
    return _build_block_mask(length, window, causal, None, block_size, device)


def _build_block_mask(
    length: int,
    window: int,
    causal: bool,
    valid: Tensor | None,
    block_size: int,
    device: torch.device,
) -> BlockMask:
    """The block mask of the window from its tile lists (partial and full tiles)."""
    partial, full = _tile_maps(length, window, causal, valid, block_size, device)
    kv_num, kv_idx = _ordered(partial)
    full_num, full_idx = _ordered(full)
    return BlockMask.from_kv_blocks(
        kv_num,
        kv_idx,
        full_num,
        full_idx,
        BLOCK_SIZE=block_size,
        mask_mod=window_mask_mod(window, causal=causal, valid=valid),
        seq_lengths=(length, length),
    )


def _kernel(device: torch.device) -> Callable:
    """``flex_attention`` compiled once on CUDA (its fused kernels); eager elsewhere."""
    global _compiled
    if device.type != "cuda" or torch.compiler.is_compiling():
        return flex_attention  # eager reference; inside a compiled graph dynamo lowers it
    if _compiled is None:
        _compiled = torch.compile(flex_attention)
    return _compiled


def _has_key(valid: Tensor, window: int, causal: bool) -> Tensor:
    """``(B, n)`` bool: query ``j`` has a valid key in its window."""
    n = valid.shape[1]
    j = torch.arange(n, device=valid.device)  # (n,)
    lo = torch.clamp(j - window + 1, min=0)
    hi = j + 1 if causal else torch.clamp(j + window, max=n)
    return _valid_counts(valid, lo, hi) > 0


def flex_local_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: int,
    *,
    causal: bool,
    valid: Tensor | None,
    block_size: int = BLOCK_SIZE,
) -> tuple[Tensor, Tensor | None]:
    """Sliding-window attention through FlexAttention, with the contract of ``local_attention``.

    ``O[j] = sum_k softmax_k(<Q[j], K[k]> / sqrt(d_h) + M[j, k]) V[k]`` with the
    mask of :func:`window_mask_mod`, through ``flex_attention`` and the block mask
    of :func:`window_block_mask` (compiled on CUDA, see :func:`flex_enabled`). A
    query with no allowed key (only possible with padding) gets a zero output
    and ``has_key = False``.

    Args:
        q, k, v: ``(B, H, n, d_h)``.
        window: w >= 1.
        causal: one-sided window.
        valid: optional ``(B, n)`` bool, True at real keys.
        block_size: FlexAttention's tile (128 on CUDA; smaller tiles for tests).

    Returns:
        ``(out, has_key)``: ``(B, H, n, d_h)`` and ``(B, n)`` bool, or None without
        ``valid`` (every query has a key: itself).
    """
    n = q.shape[2]
    mask = _window_block_mask(n, window, bool(causal), valid, block_size, q.device)
    out = _kernel(q.device)(q, k, v, block_mask=mask)  # (B, H, n, d_h)
    if valid is None:
        return out, None
    has_key = _has_key(valid, window, causal)  # (B, n)
    return out.masked_fill(~has_key[:, None, :, None], 0.0), has_key
