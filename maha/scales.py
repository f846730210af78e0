"""The scale geometry of the MAHA layer, in one place: lengths, blocks and the block rule.

Scale ``l`` of an input of ``n`` rows has ``n_l = ceil(n_{l-1} / r)`` rows
(:func:`scale_lengths`); its block ``j`` covers the input positions
``[j f, (j+1) f)`` with ``f = r^l``, so it *ends* at ``(j+1) f - 1``.

The block rule (which block of scale ``l`` the output at position ``t`` reads):

- Non-causal: position ``t`` receives block ``floor(t / f)`` (the block holding it).
- Causal: position ``t`` receives the last block that ends at or before ``t``,
  ``j(t) = floor((t + 1) / f) - 1``; when ``t + 1 < f`` no block has ended yet and
  the scale is *absent* at ``t`` (``present`` is False, the output row is zero).
  Because ``(j(t) + 1) f - 1 <= t``, every token the block holds is at or before
  ``t`` (blocks never straddle their end), and a block that is incomplete (it
  overlaps the zero-padded tail) ends at or after ``n`` and is never used.

There is no drift for lengths that are not multiples of ``f``: indices are
computed from the block geometry, not by interpolating ``n_l`` rows onto ``n``.

The rule has two forms here, one per consumer: per position
(:func:`upsample_index`, :func:`upsample_presence`, :func:`upsample`: the
reference path, the presence masks and the streamed chunks) and per range of
positions (:func:`block_span`: the runs of ``f`` equal rows that the chunked
fusion kernels of :mod:`maha.fusion_ops` fill and fold). The proof of exact
causality built on it is ``proofs/08_causality.md``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "block_span",
    "first_block",
    "scale_lengths",
    "upsample",
    "upsample_index",
    "upsample_presence",
]


def scale_lengths(length: int, num_scales: int, ratio: int) -> list[int]:
    """``[n_0, ..., n_{L-1}]`` with ``n_0 = length`` and ``n_l = ceil(n_{l-1} / ratio)``."""
    lengths = [int(length)]
    for _ in range(num_scales - 1):
        lengths.append(math.ceil(lengths[-1] / ratio))
    return lengths


def first_block(start: int, factor: int, *, causal: bool) -> int:
    """The block index of position ``start`` (clamped to 0 where the scale is absent).

    The host-side value of ``upsample_index(1, factor, causal=causal, start=start)[0][0]``:
    the first block that the positions ``start, start + 1, ...`` read.
    """
    if causal:
        return max((start + 1) // factor - 1, 0)
    return start // factor


def upsample_index(
    length: int,
    factor: int,
    *,
    causal: bool,
    device: torch.device | str | None = None,
    start: int = 0,
) -> tuple[Tensor, Tensor]:
    """Block index and presence of every input position.

    Args:
        length: n, the number of positions.
        factor: f = r^l >= 1, input positions per block.
        causal: use the last block ending at or before ``t``.
        start: the first position (the positions are ``start .. start + n - 1``;
            a streamed chunk starts after the tokens already seen).

    Returns:
        ``(index, present)``: ``(n,)`` int64 global block indices (clamped to 0
        where absent) and ``(n,)`` bool.
    """
    t = torch.arange(start, start + length, device=device)  # (n,)
    if causal:
        index = torch.div(t + 1, factor, rounding_mode="floor") - 1  # (n,)
        present = index >= 0
        return index.clamp(min=0), present
    index = torch.div(t, factor, rounding_mode="floor")  # (n,)
    return index, torch.ones(length, dtype=torch.bool, device=device)


def upsample_presence(
    has_key: Tensor | None,
    batch: int,
    length: int,
    factor: int,
    *,
    causal: bool,
    device: torch.device | str | None = None,
    start: int = 0,
) -> tuple[Tensor, Tensor]:
    """Block index of every position and where the scale is a player.

    ``present[b, t]`` is True iff position ``t`` has a block
    (:func:`upsample_index`) and that block had a key to attend
    (``has_key[b, index[t]]``; every block has one when ``has_key`` is None).

    With ``start > 0`` the positions are ``start .. start + n - 1`` and the
    blocks (and ``has_key``) are counted from :func:`first_block` of ``start``.

    Returns:
        ``(index, present)``: ``(n,)`` int64 (clamped to 0 where absent) and
        ``(B, n)`` bool.
    """
    index, present = upsample_index(length, factor, causal=causal, device=device, start=start)
    if start:
        index = index - first_block(start, factor, causal=causal)  # (n,) from the first block
    if has_key is None:
        return index, present.expand(batch, length)
    return index, present.unsqueeze(0) & has_key.index_select(1, index)  # (B, n)


def upsample(
    out: Tensor,
    has_key: Tensor | None,
    length: int,
    factor: int,
    *,
    causal: bool,
    start: int = 0,
) -> tuple[Tensor, Tensor]:
    """Upsample one scale's output to the input length.

    Absent positions read an appended zero row, so the result is one gather
    (no masking pass); scale 0 (``factor = 1``) without padding is returned as is.

    Args:
        out: ``(B, n_l, ...)`` the scale's output (any trailing shape).
        has_key: ``(B, n_l)`` bool, False where a block had no key to attend, or
            None when every block had one (no padding).
        length: n, the input length.
        factor: f = r^l.
        causal: see :func:`upsample_index`.
        start: the first position; ``out`` (and ``has_key``) then hold the
            blocks from :func:`first_block` of ``start`` on (a streamed chunk).

    Returns:
        ``(up, present)``: ``(B, n, ...)`` with zero rows where absent, and
        ``(B, n)`` bool, True where the scale is a player at that position.
    """
    batch, n_l = out.shape[:2]
    index, present = upsample_presence(
        has_key, batch, length, factor, causal=causal, device=out.device, start=start
    )  # (n,), (B, n)
    if factor == 1 and has_key is None and start == 0:
        return out, present
    zero = out.new_zeros(batch, 1, *out.shape[2:])
    padded = torch.cat([out, zero], dim=1)  # (B, n_l + 1, ...), row n_l is zero
    if has_key is None:
        index = torch.where(present[0], index, n_l)  # (n,): the same for every b
        return padded.index_select(1, index), present
    index = torch.where(present, index.unsqueeze(0), n_l)  # (B, n)
    rows = torch.arange(batch, device=out.device).unsqueeze(1)  # (B, 1)
    return padded[rows, index], present


def block_span(lo: int, hi: int, factor: int, causal: bool) -> tuple[int, int, int, int]:
    """Scale blocks serving the positions ``[lo, hi)``: ``(first, j0, full, rest)``.

    Block ``j`` of a scale with ``f = factor`` rows per block serves the positions
    ``[s + j f, s + (j + 1) f)`` with ``s = f - 1`` in causal mode (a block is used
    once it is complete; the scale is absent before ``s``) and ``s = 0`` otherwise:
    the rule of :func:`upsample_index`. Within ``[lo, hi)`` the
    positions before ``first`` are absent, blocks ``j0 .. j0 + full - 1`` each fill
    ``f`` rows from ``first`` on, and block ``j0 + full`` the last ``rest < f`` rows.
    ``lo`` must be ``0`` or a block boundary.
    """
    s = factor - 1 if causal else 0
    first = min(max(lo, s), hi)
    # // and - rather than divmod: dynamo traces them on symbolic sizes
    # (divmod it cannot, once a recompile has made the length dynamic)
    full = (hi - first) // factor
    rest = hi - first - full * factor
    return first, (first - s) // factor, full, rest
