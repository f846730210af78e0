"""Per-scale attention with scale-specific queries and keys and one shared value projection.

For scale ``l`` with input ``X_l`` (length ``n_l``) and head ``h``:

    Q_l = X_l W_Q^l,   K_l = X_l W_K^l,   V_l = D_l(... D_1(X W_V))
    O_l[j] = sum_k softmax_k( <Q_l[j], K_l[k]> / sqrt(d_h) + M_l[j, k] ) V_l[k]

with one value projection ``W_V`` shared by every scale and downsampled by the
same operators as the input (``values`` below). The mask ``M_l`` is 0 on the
allowed keys and ``-inf`` elsewhere:

- fine scales (``l < L - 1``, or every scale when ``global_coarsest=False``) with
  ``window = w``: ``0 <= j - k < w`` (causal) or ``|j - k| < w`` (non-causal);
- the coarsest scale, or every scale when ``window is None``: all keys (non-causal)
  or ``k <= j`` (causal);
- keys that are padding (``valid`` False) are never allowed.

Local attention is computed blockwise: the queries of block ``b`` (``w`` rows)
attend the keys of blocks ``b-1, b`` (causal) or ``b-1, b, b+1`` with an exact
``(w, 2w)`` / ``(w, 3w)`` mask, two batched products over all blocks with a
hand-written backward (:class:`_BlockedAttention`): cost ``4 n w' d_h`` per head
with ``w' = 2w`` or ``3w`` instead of ``4 n^2 d_h``. A query with no allowed key
(only possible with padding) gets a zero output and ``has_key = False``. The
coarsest scale (and any scale the window covers) uses PyTorch's SDPA.

Devices: that blocked path runs on the CPU (and any device but CUDA); on CUDA
the windowed scales run through FlexAttention with a block mask of the same
window (:mod:`maha.flex`, one fused compiled kernel), and the global scales
through SDPA's fused kernels. :func:`maha.flex.use_flex` forces either path.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import validate_layer_args
from .flex import flex_enabled, flex_local_attention
from .rotary import rotate_queries_keys

__all__ = ["MultiscaleAttention", "cached_attention", "local_attention", "global_attention"]


def _finish(out: Tensor, allowed_any: Tensor | None) -> Tensor:
    """Zero the rows that had no allowed key (their SDPA output is meaningless)."""
    if allowed_any is None:
        return out
    return out.masked_fill(~allowed_any.unsqueeze(-1), 0.0)


def global_attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool, valid: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Full (optionally causal) attention of one scale.

    Args:
        q, k, v: ``(B, H, n, d_h)``.
        causal: allow key ``k`` for query ``j`` only if ``k <= j``.
        valid: optional ``(B, n)`` bool, True at real keys.

    Returns:
        ``(out, has_key)``: ``(B, H, n, d_h)`` and ``(B, n)`` bool (a query with
        no allowed key has a zero output), or None without ``valid`` (every
        query has a key).
    """
    batch, _, n, _ = q.shape
    if valid is None:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, n, d_h)
        return out, None
    allowed = valid[:, None, :].expand(batch, n, n)  # (B, n, n) [query, key]
    if causal:
        allowed = allowed & torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    has_key = allowed.any(-1)  # (B, n)
    allowed = allowed | ~has_key.unsqueeze(-1)  # rows without keys: anything finite
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.unsqueeze(1))
    return _finish(out, has_key.unsqueeze(1)), has_key


def _no_autocast(device: torch.device):
    """A context that turns autocast off on ``device`` (a no-op where autocast is off)."""
    kind = device.type
    if kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind):
        return torch.autocast(kind, enabled=False)
    return contextlib.nullcontext()


def _window_bias(
    nb: int, w: int, span: int, n: int, causal: bool, device, dtype: torch.dtype
) -> Tensor:
    """The additive ``0 / -inf`` window mask of the blocked layout, ``(nb, w, S)``.

    Query ``j`` of block ``i`` sits at ``i w + j``, key slot ``m`` of block ``i`` at
    ``i w - w + m``; the pair is allowed iff ``0 <= rel < w`` (causal) or
    ``|rel| < w`` with ``rel = j + w - m``, and the slot holds a key (``0 <= k < n``).
    The rule is :class:`_BlockBias`'s, whose pattern and edge slots this writes out in
    full (for padded batches, which add their own keys, and for a traced graph).
    """
    blocks = _BlockBias.build(nb, w, span, n, causal, device, dtype)
    return blocks.fill_(blocks.rows(0, nb).clone(), 0, nb)  # (nb, w, S)


@dataclass(frozen=True)
class _BlockBias:
    """The window bias of :func:`_window_bias` without its ``(nb, w, S)`` copy.

    Every block shares one ``(w, S)`` pattern, read as a broadcast view; the *edge*
    blocks differ from it only by slots that hold no key (the first block's previous
    block, the last blocks' slots past ``n``), listed in ``fills`` as
    ``(block, first slot, end slot)`` and set to ``-inf`` in the chunk's scores
    (:meth:`fill_`), which is what adding their ``-inf`` bias does.
    """

    pattern: Tensor  # (w, S)
    fills: tuple[tuple[int, int, int], ...]

    def rows(self, start: int, stop: int) -> Tensor:
        """The shared bias of blocks ``start .. stop - 1``, ``(c, w, S)`` (a view)."""
        return self.pattern.expand(stop - start, *self.pattern.shape)

    def fill_(self, scores: Tensor, start: int, stop: int) -> Tensor:
        """Set the edge slots of blocks ``start .. stop - 1`` to ``-inf`` in ``scores``
        ``(c, w, S)`` (in place)."""
        for block, lo, hi in self.fills:
            if start <= block < stop:
                scores[block - start, :, lo:hi] = -math.inf
        return scores

    @staticmethod
    def build(
        nb: int, w: int, span: int, n: int, causal: bool, device, dtype: torch.dtype
    ) -> _BlockBias:
        rel = torch.arange(w, device=device).view(w, 1) + w - torch.arange(span, device=device)
        allowed = (rel >= 0) & (rel < w) if causal else rel.abs() < w  # (w, S)
        pattern = torch.zeros(w, span, dtype=dtype, device=device)
        pattern.masked_fill_(~allowed, -math.inf)
        fills = [(0, 0, w)]  # slot group of block -1: no keys
        for i in range(max(0, (n + w - span) // w), nb):  # block i's slot m is key i w - w + m
            if n - i * w + w < span:  # slots at or past n hold no key
                fills.append((i, max(0, n - i * w + w), span))
        return _BlockBias(pattern, tuple(fills))


def _bias_rows(bias: Tensor | _BlockBias, b: int | slice, start: int, stop: int) -> Tensor:
    """The bias of query blocks ``start .. stop - 1`` of batch row ``b``: ``(c, w, S)``, or
    ``(B, 1, c, w, S)`` / ``(c, w, S)`` for every row (``b`` a slice)."""
    if isinstance(bias, _BlockBias):
        return bias.rows(start, stop)
    if bias.dim() == 3:
        return bias[start:stop]
    return bias[:, :, start:stop] if isinstance(b, slice) else bias[b, 0, start:stop]


def _windows(t: Tensor, start: int, stop: int, span: int) -> Tensor:
    """The key/value windows of query blocks ``start .. stop - 1``, as a view (no copy).

    ``t`` ``(..., nbp, w, d)`` contiguous holds the blocks of one (batch, head) pair with
    ``-offsets[0]`` zero blocks before them, so the ``S = span`` keys of block ``i``
    (blocks ``i + offsets``) are the ``S`` consecutive rows from row ``i w``: windows
    that overlap in memory, ``(..., stop - start, S, d)`` with strides ``(w d, d, 1)``.
    """
    w = t.shape[-2]
    windows = t.flatten(-3, -2).unfold(-2, span, w)  # (..., nbp - G + 1, d, S)
    return windows[..., start:stop, :, :].transpose(-1, -2)  # (..., c, S, d)


def _fold_windows(grad: Tensor, start: int, groups: int, into: Tensor) -> None:
    """Adjoint of :func:`_windows`: add ``grad`` ``(..., c, S, d)`` into ``(..., nbp, w, d)``."""
    c, w = grad.shape[-3], into.shape[-2]
    for g in range(groups):  # slot group g of block i is padded block i + g
        into[..., start + g : start + g + c, :, :] += grad[..., g * w : (g + 1) * w, :]


_CHUNK_ELEMENTS = 1 << 18  # score entries per chunk of query blocks (1 MiB of float32)


class _BlockedAttention(torch.autograd.Function):
    """Softmax attention of query blocks over their neighbour key blocks, fused backward.

    Forward, per query block ``i`` (``w`` rows) with ``K_S, V_S`` the ``S`` keys and
    values of blocks ``i + offsets``:

        P = softmax(Q_i K_S^T / sqrt(d_h) + bias_i),   O_i = P V_S .

    Backward (the softmax Jacobian written out, as in FlashAttention), with ``P``
    recomputed from ``Q``, ``K`` and the mask rather than saved:

        dV_S = P^T dO,  dP = dO V_S^T,  dS = P * (dP - rowsum(dO * O)),
        dQ = dS K_S / sqrt(d_h),    dK_S = dS^T Q / sqrt(d_h),

    with ``dK_S``, ``dV_S`` folded back onto the blocks they were read from. The keys and
    values are padded with zero blocks once (before the first block, and after the last when
    non-causal), so the ``S`` keys of every block are ``S`` consecutive rows: they are read
    as overlapping windows of one (batch, head) pair (:func:`_windows`, a strided view),
    with no copy, and the scaled scores plus the bias are one ``baddbmm``. Saved: ``q`` and
    the padded ``k, v``, ``O`` (the caller keeps it anyway) and the mask: a
    :class:`_BlockBias` (one ``(w, S)`` pattern and its edge slots) as it is, a full bias
    tensor as one bool per entry (it holds only ``0`` and ``-inf``; no head axis); not ``P``
    (``w S`` floats per block and head). Every query row has all its ``S`` keys in one
    chunk, so the recomputation is the forward's softmax of the same scores, by the same
    operations: ``P`` is the forward's bit for bit and no row statistic (FlashAttention's
    log-sum-exp, needed there because a row's keys span several tiles) has to be kept. It
    costs one product ``Q K_S^T`` and one softmax per chunk. Scores, probabilities and score
    gradients are built per chunk of query blocks of one (batch, head) pair (cache-sized, so
    no large temporary is allocated) and dropped. Masked entries have ``P = 0`` exactly, so
    no gradient reaches a masked key (exact causality of the gradients).
    """

    @staticmethod
    def _probs(q: Tensor, k_w: Tensor, bias: Tensor, scale: float, edges=None) -> Tensor:
        """``P`` of one chunk, ``(c, w, S)``, float32 at least.

        Args:
            q: ``(c, w, d_h)`` the chunk's queries.
            k_w: ``(c, S, d_h)`` their key windows.
            bias: ``(c, w, S)`` ``0 / -inf``, float32 at least.
            scale: ``1 / sqrt(d_h)``.
            edges: None, or ``(block_bias, start, stop)``: set the chunk's edge slots to
                ``-inf`` (:meth:`_BlockBias.fill_`) before the softmax.
        """
        if q.dim() == 3 and q.dtype not in (torch.float16, torch.bfloat16):
            scores = torch.baddbmm(bias, q, k_w.transpose(-1, -2), alpha=scale)  # (c, w, S)
        else:  # scores and softmax in float32; (B, H, c, w, S) for the traced whole
            scores = torch.matmul(q, k_w.transpose(-1, -2)).float() * scale + bias
        if edges is not None:
            edges[0].fill_(scores, edges[1], edges[2])
        return torch.softmax(scores, dim=-1)

    @staticmethod
    def _chunks(batch: int, heads: int, nb: int, rows: int):
        """``(b, h, start, stop)`` of every chunk: ``rows`` query blocks of one pair. While
        ``torch.compile`` traces, one chunk of every pair and block (``b, h`` whole
        slices), so that the graph does not unroll the loops."""
        if torch.compiler.is_compiling():
            yield slice(None), slice(None), 0, nb
            return
        for b in range(batch):
            for h in range(heads):
                for start in range(0, nb, rows):
                    yield b, h, start, min(nb, start + rows)

    @staticmethod
    def forward(ctx, q: Tensor, kp: Tensor, vp: Tensor, bias: Tensor, offsets: tuple[int, ...]):
        # q: (B, H, nb, w, d_h); kp, vp: (B, H, nb + G - 1, w, d_h), the key and value
        # blocks with -offsets[0] zero blocks before and offsets[-1] after;
        # bias: 0 / -inf, (nb, w, S) or (B, 1, nb, w, S), or a _BlockBias
        batch, heads, nb, w, dh = q.shape
        span = len(offsets) * w
        scale = dh**-0.5
        rows = max(1, _CHUNK_ELEMENTS // (w * span))  # query blocks per chunk
        if kp.shape[2] != nb + len(offsets) - 1 or vp.shape != kp.shape:
            raise ValueError(
                "k and v must be the key and value blocks padded for the windows: "
                f"{nb + len(offsets) - 1} blocks; received {tuple(kp.shape)}, {tuple(vp.shape)}"
            )
        with _no_autocast(q.device):
            q, kp, vp = q.contiguous(), kp.contiguous(), vp.contiguous()
            out = q.new_empty(batch, heads, nb, w, dh)  # (B, H, nb, w, d_h)
            blockwise = isinstance(bias, _BlockBias)  # kept whole; a tensor as its bool mask
            masked = torch.empty(0, dtype=torch.bool) if blockwise else torch.isneginf(bias)
            for b, h, start, stop in _BlockedAttention._chunks(batch, heads, nb, rows):
                bias_c = _bias_rows(bias, b, start, stop)  # (c, w, S)
                edges = (bias, start, stop) if blockwise else None
                k_w = _windows(kp[b, h], start, stop, span)  # (c, S, d_h)
                v_w = _windows(vp[b, h], start, stop, span)
                p = _BlockedAttention._probs(q[b, h, start:stop], k_w, bias_c, scale, edges)
                if p.dim() == 3:
                    torch.bmm(p.to(vp.dtype), v_w, out=out[b, h, start:stop])
                else:
                    out[b, h, start:stop] = torch.matmul(p.to(vp.dtype), v_w)
        ctx.save_for_backward(q, kp, vp, masked, out)
        ctx.offsets, ctx.rows = offsets, rows
        ctx.block_bias = bias if blockwise else None
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, kp, vp, masked, out = ctx.saved_tensors
        offsets, rows = ctx.offsets, ctx.rows
        batch, heads, nb, w, dh = q.shape
        groups = len(offsets)
        span = groups * w
        scale = dh**-0.5
        with _no_autocast(q.device):
            grad_out = grad_out.to(out.dtype).contiguous()
            bias = ctx.block_bias
            if bias is None:  # the forward's bias, rebuilt once from its mask
                dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
                bias = torch.zeros(masked.shape, dtype=dtype, device=q.device)
                bias.masked_fill_(masked, -math.inf)
            blockwise = isinstance(bias, _BlockBias)
            grad_q = torch.empty_like(q)
            grad_kp = torch.zeros_like(kp)
            grad_vp = torch.zeros_like(vp)
            for b, h, start, stop in _BlockedAttention._chunks(batch, heads, nb, rows):
                bias_c = _bias_rows(bias, b, start, stop)  # (c, w, S)
                edges = (bias, start, stop) if blockwise else None
                k_w = _windows(kp[b, h], start, stop, span)  # (c, S, d_h)
                v_w = _windows(vp[b, h], start, stop, span)
                q_c = q[b, h, start:stop]  # (c, w, d_h)
                d_out = grad_out[b, h, start:stop]
                p = _BlockedAttention._probs(q_c, k_w, bias_c, scale, edges).to(q.dtype)
                # dV_S = P^T dO (matmul: bmm on one pair's chunk, batched on the whole)
                _fold_windows(
                    torch.matmul(p.transpose(-1, -2), d_out), start, groups, grad_vp[b, h]
                )
                grad_p = torch.matmul(d_out, v_w.transpose(-1, -2))  # (c, w, S)
                row = (d_out * out[b, h, start:stop]).sum(-1, keepdim=True)  # (c, w, 1)
                grad_s = grad_p.sub_(row).mul_(p)  # d / d(scaled scores)
                if grad_s.dim() == 3:  # one pair's chunk: straight into grad_q
                    torch.bmm(grad_s, k_w, out=grad_q[b, h, start:stop]).mul_(scale)
                else:
                    grad_q[b, h, start:stop] = torch.matmul(grad_s, k_w).mul_(scale)
                grad_kw = torch.matmul(grad_s.transpose(-1, -2), q_c).mul_(scale)  # dS^T Q
                _fold_windows(grad_kw, start, groups, grad_kp[b, h])
        return grad_q, grad_kp, grad_vp, None, None  # zero on the padding


def local_attention(
    q: Tensor, k: Tensor, v: Tensor, window: int, *, causal: bool, valid: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Sliding-window attention computed blockwise.

    Query ``j`` attends key ``k`` iff ``0 <= j - k < window`` (causal) or
    ``|j - k| < window`` (non-causal), and the key is valid:

        O[j] = sum_k softmax_k( <Q[j], K[k]> / sqrt(d_h) + M[j, k] ) V[k] .

    Layout: queries are cut into ``nb = ceil(n / w)`` blocks of ``w`` rows; block
    ``i`` scores its queries against key blocks ``i - 1, i`` (causal) or
    ``i - 1, i, i + 1`` (``S = 2w`` or ``3w`` keys) with an exact ``0 / -inf``
    mask: ``4 n S d_h`` FLOPs per head against ``4 n^2 d_h`` for full attention.
    Forward and backward are one fused autograd function (see
    :class:`_BlockedAttention`); PyTorch's fused CPU SDPA kernel is slower than
    this on many tiny masked blocks.

    Args:
        q, k, v: ``(B, H, n, d_h)``.
        window: w >= 1.
        causal: one-sided window.
        valid: optional ``(B, n)`` bool, True at real keys.

    Returns:
        ``(out, has_key)``: ``(B, H, n, d_h)`` and ``(B, n)`` bool, or None
        without ``valid`` (every query has a key: itself).

    On CUDA (or under :func:`maha.flex.use_flex`) the same attention runs through
    FlexAttention instead, :func:`maha.flex.flex_local_attention`.
    """
    if flex_enabled(q.device, dtype=q.dtype, head_dim=q.shape[-1]):
        return flex_local_attention(q, k, v, window, causal=causal, valid=valid)
    batch, heads, n, dh = q.shape
    w = window
    nb = -(-n // w)
    offsets = (-1, 0) if causal else (-1, 0, 1)
    span = len(offsets) * w
    tail = nb * w - n
    device = q.device
    dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    has_key = None
    bias: Tensor | _BlockBias
    if valid is None and not torch.compiler.is_compiling():  # the shared pattern, no copy
        bias = _BlockBias.build(nb, w, span, n, causal, device, dtype)
    else:  # traced as one chunk, or a per-row bias: the full (nb, w, S) bias
        bias = _window_bias(nb, w, span, n, causal, device, dtype)
    if valid is not None:  # and the keys that are padding
        kpos = (torch.arange(nb, device=device) * w - w).view(nb, 1) + torch.arange(
            span, device=device
        )  # (nb, S): the key position of each slot
        kvalid = F.pad(valid, (w, tail + w), value=False)  # key k at index k + w
        key_ok = kvalid[:, (kpos + w).view(-1)].view(batch, nb, 1, span)  # (B, nb, 1, S)
        bias = bias.masked_fill(~key_ok, -math.inf)  # (B, nb, w, S)
        has_key = ~torch.isneginf(bias).all(-1)  # (B, nb, w)
        # rows without keys: anything finite (their output is zeroed below)
        bias = bias.masked_fill(~has_key.unsqueeze(-1), 0.0).unsqueeze(1)  # (B, 1, nb, w, S)

    def blocked(t: Tensor, before: int = 0, after: int = 0) -> Tensor:
        if tail or before or after:  # one copy: pad and lay out the blocks together
            t = F.pad(t, (0, 0, before * w, tail + after * w))  # (B, H, (nb + b + a) w, d_h)
        return t.reshape(batch, heads, -1, w, dh)

    lead, trail = -offsets[0], offsets[-1]  # the key/value blocks padded for the windows
    out = _BlockedAttention.apply(
        blocked(q), blocked(k, lead, trail), blocked(v, lead, trail), bias, offsets
    )
    if has_key is not None:
        out = _finish(out, has_key.unsqueeze(1))
        has_key = has_key.reshape(batch, nb * w)[:, :n]  # (B, n)
    return out.reshape(batch, heads, nb * w, dh)[:, :, :n], has_key


def cached_attention(
    q: Tensor, k: Tensor, v: Tensor, window: int | None, *, valid: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """Causal attention of the newest ``c`` rows over the keys a cache kept (streaming).

    The keys are the ``m`` earlier rows a cache kept followed by the ``c`` new
    ones; query ``i`` sits at key row ``m + i`` and attends key row ``j`` iff
    ``0 <= m + i - j < window`` (``window`` None: ``j <= m + i``) and the key is
    valid, the mask ``M`` of :func:`local_attention` / :func:`global_attention`:

        O[i] = sum_j softmax_j( <Q[i], K[j]> / sqrt(d_h) + M[i, j] ) V[j] .

    Args:
        q: ``(B, H, c, d_h)``.
        k, v: ``(B, H, m + c, d_h)``.
        window: w >= 1 or None.
        valid: optional ``(B, m + c)`` bool, True at real keys.

    Returns:
        ``(out, has_key)``: ``(B, H, c, d_h)`` and ``(B, c)`` bool (a query with no
        allowed key has a zero output), or None without ``valid``.
    """
    c, total = q.shape[2], k.shape[2]
    if valid is None and c == 1 and (window is None or total <= window):
        return F.scaled_dot_product_attention(q, k, v), None  # every kept key is allowed
    rel = torch.arange(total - c, total, device=q.device).view(c, 1) - torch.arange(
        total, device=q.device
    )  # (c, m + c): query row minus key row
    allowed = rel >= 0
    if window is not None:
        allowed = allowed & (rel < window)
    if valid is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), None
    allowed = allowed & valid.unsqueeze(1)  # (B, c, m + c)
    has_key = allowed.any(-1)  # (B, c)
    allowed = allowed | ~has_key.unsqueeze(-1)  # rows without keys: anything finite
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.unsqueeze(1))
    return _finish(out, has_key.unsqueeze(1)), has_key


class MultiscaleAttention(nn.Module):
    """Attention at every scale: scale-specific Q_l, K_l, one shared V (MAHA Section 4.2).

    Fine scales attend within ``window`` (in rows of their own scale, so scale
    ``l`` covers ``window * r^l`` input tokens), the coarsest attends globally
    (unless ``global_coarsest=False``); ``window=None`` gives full attention at
    every scale, the paper's formulation. The query/key projections act on the
    downsampled sequences, whose lengths sum to less than ``n r / (r - 1)``, so
    the projection cost is ``4 d^2 sum_l n_l`` FLOPs (+ ``2 n d^2`` for V).

    Devices: windowed scales use FlexAttention on CUDA (:mod:`maha.flex`) and
    the blocked path of :func:`local_attention` elsewhere; global scales use SDPA
    everywhere (its fused kernels on CUDA).

    Args:
        d_model: d, divisible by ``num_heads``.
        num_heads: H.
        num_scales: L.
        window: w >= 1 or None.
        global_coarsest: the coarsest scale attends globally.
        bias: biases in the projections.
        rotary: rotate ``Q_l`` and ``K_l`` by the rows' block indices at scale l
            (RoPE, :func:`maha.rotary.rotate_queries_keys`), so that scale l's scores depend
            on relative offsets in its own blocks; needs an even head width.
        shared_qk: one projection ``W_Q, W_K`` applied to every scale's rows
            (``Q_l = X_l W_Q``) instead of one per scale: ``2 (L - 1) d^2`` fewer parameters,
            the same FLOPs (the downsampling is depthwise, so it does not commute with the
            projection and each scale is still projected on its own rows).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_scales: int = 4,
        window: int | None = 64,
        *,
        global_coarsest: bool = True,
        bias: bool = True,
        rotary: bool = False,
        shared_qk: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        validate_layer_args(
            d_model=d_model,
            num_heads=num_heads,
            num_scales=num_scales,
            window=window,
            rotary=rotary,
            shared_qk=shared_qk,
        )
        self.d_model = d_model
        self.num_heads = num_heads
        self.num_scales = num_scales
        self.window = window
        self.global_coarsest = bool(global_coarsest)
        self.head_dim = d_model // num_heads
        self.rotary = rotary
        self.shared_qk = shared_qk
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.qk = nn.ModuleList(  # one (W_Q | W_K) per scale, or one for all
            nn.Linear(d_model, 2 * d_model, bias=bias, **factory)
            for _ in range(1 if shared_qk else num_scales)
        )
        self.value = nn.Linear(d_model, d_model, bias=bias, **factory)

    def scale_window(self, scale: int) -> int | None:
        """The window of scale ``scale`` in its own rows, or None where it attends globally."""
        if self.global_coarsest and scale == self.num_scales - 1:
            return None
        return self.window

    def is_local(self, scale: int, length: int) -> bool:
        """Whether scale ``scale`` of length ``length`` uses the windowed path."""
        window = self.scale_window(scale)
        # a window covering every key is plain (causal) attention
        return window is not None and length > window

    def _heads(self, t: Tensor) -> Tensor:
        batch, n, _ = t.shape
        return t.view(batch, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, n, d_h)

    def project(
        self, scale: int, x_l: Tensor, v_l: Tensor, start: int | Tensor = 0
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``Q_l = X_l W_Q^l``, ``K_l = X_l W_K^l`` and the values, in head layout.

        With :attr:`rotary`, the row of block index ``j`` has ``Q_l``, ``K_l``
        rotated by ``j`` (:func:`maha.rotary.rotate_queries_keys`).

        Args:
            scale: l.
            x_l: ``(B, n_l, d)`` rows of scale l.
            v_l: ``(B, n_l, d)`` their values (``X W_V`` downsampled like ``X``).
            start: the block index of the first row (int, or a one-element integer
                tensor in a compiled decoding step); streaming passes the number of
                scale-l blocks before the chunk.

        Returns:
            ``(q, k, v)``, each ``(B, H, n_l, d_h)``.
        """
        proj = self.qk[0 if self.shared_qk else scale]
        q_l, k_l = proj(x_l).chunk(2, dim=-1)  # (B, n_l, d) each
        q, k = self._heads(q_l), self._heads(k_l)  # (B, H, n_l, d_h) each
        if self.rotary:
            q, k = rotate_queries_keys(q, k, start)
        return q, k, self._heads(v_l)

    def forward(
        self,
        scales: Sequence[Tensor],
        values: Sequence[Tensor],
        valid: Sequence[Tensor] | None = None,
        *,
        causal: bool = False,
    ) -> list[tuple[Tensor, Tensor | None]]:
        """Attention output of every scale.

        Args:
            scales: L tensors, scale l's ``X_l`` of shape ``(B, n_l, d)``.
            values: L tensors, ``V_l`` of shape ``(B, n_l, d)`` (the shared value
                projection ``X W_V``, see :attr:`value`, downsampled like ``X``).
            valid: optional L bool tensors ``(B, n_l)``, True at real blocks.
            causal: block ``j`` attends only blocks ``k <= j``.

        Returns:
            L pairs ``(O_l, has_key_l)``: ``(B, n_l, H, d_h)`` and ``(B, n_l)`` bool
            (None without ``valid``: every block then has a key).
        """
        outputs = []
        for l, (x_l, v_l) in enumerate(zip(scales, values)):
            q_l, k_l, v_h = self.project(l, x_l, v_l)  # (B, H, n_l, d_h) each
            valid_l = None if valid is None else valid[l]
            if self.window is not None and self.is_local(l, x_l.shape[1]):
                out, has_key = local_attention(
                    q_l, k_l, v_h, self.window, causal=causal, valid=valid_l
                )
            else:
                out, has_key = global_attention(q_l, k_l, v_h, causal=causal, valid=valid_l)
            outputs.append((out.transpose(1, 2), has_key))  # (B, n_l, H, d_h)
        return outputs

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, num_heads={self.num_heads}, num_scales={self.num_scales}, "
            f"window={self.window}, global_coarsest={self.global_coarsest}"
            + (", rotary=True" if self.rotary else "")
            + (", shared_qk=True" if self.shared_qk else "")
        )
