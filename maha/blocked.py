"""Sliding-window attention computed blockwise: the windowed scales' path off CUDA.

For queries and keys of one (batch, head) pair, ``n`` rows each, and a window ``w``:

    O[j] = sum_k softmax_k( <Q[j], K[k]> / sqrt(d_h) + M[j, k] ) V[k] ,

``M[j, k] = 0`` iff ``0 <= j - k < w`` (causal) or ``|j - k| < w`` (non-causal) and the key
is valid, ``-inf`` otherwise.

Layout (the *blocked* computation): queries are cut into ``nb = ceil(n / w)`` blocks of
``w`` rows; block ``i`` scores its queries against the key blocks ``i - 1, i`` (causal) or
``i - 1, i, i + 1`` (``S = 2w`` or ``3w`` keys) with an exact ``0 / -inf`` mask, the
window bias: ``4 n S d_h`` FLOPs per head against ``4 n^2 d_h`` for full attention.

Packed inputs (:func:`packed_local_attention`, the layer's call): the queries and keys
are one ``(B, n, 2d)`` tensor ``[Q | K]``, the output of the scale's query/key
projection, and the values one ``(B, n, d)`` tensor; head ``h`` reads columns
``h d_h .. (h + 1) d_h`` of each. The blocked kernel reads every (batch, head) pair in
place, as ``(n, d_h)`` views with a row stride of ``2d`` or ``d``:

- *interior* blocks, whose ``S`` keys all exist (every block but the first, and the
  last one or two), read their keys as windows over the pair's rows
  (``Tensor.unfold``: the ``S`` rows from row ``(i - 1) w``, overlapping views, no
  copy), chunk by chunk (:data:`CHUNK_ELEMENTS` scores per chunk);
- *edge* blocks (the first, and the blocks whose window runs past the last row) read
  their queries and the keys that exist as views too, with the bias cut to those key
  slots (the slots cut off hold no key: their bias is ``-inf``), one block at a time.

The shared window pattern holds for every interior block, so the layer's bias is one
``(w, S)`` tensor (:class:`BlockBias`); a padded batch adds its own masked keys, one bias
per block and batch row.

So no padded or head-major copy of Q, K or V is made (the former layout padded and
copied all three), and in backward the gradients of ``[Q | K]`` and ``V`` are written
once, per (batch, head) pair, into the ``(B, n, 2d)`` and ``(B, n, d)`` layouts the
projections take (no concatenation of per-head gradients afterwards).

Backward (FlashAttention's recomputation, Dao et al. 2022) recomputes ``P`` per chunk
from ``Q``, ``K`` and the bias by the forward's operations, bit for bit (every query row
has its ``S`` keys in one chunk, so no row statistic has to be kept), and applies the
softmax Jacobian:

    dV_S = P^T dO,  dP = dO V_S^T,  dS = P * (dP - rowsum(dO * O)),
    dQ = dS K_S / sqrt(d_h),    dK_S = dS^T Q / sqrt(d_h),

folding ``dK_S``, ``dV_S`` back onto the blocks they were read from. Saved: the packed
``[Q | K]``, ``V``, ``O`` and the mask (a :class:`BlockBias` as it is, a full bias
tensor as one bool per entry); not ``P``. Masked entries have ``P = 0`` exactly, so no
gradient reaches a masked key (exact causality of the gradients).

While ``torch.compile`` traces, the same formulas run once over every pair and block
at once (the rows padded into whole blocks, one batched product per step), so the
graph does not unroll the loops.

On CUDA (or under :func:`maha.flex.use_flex`) the same attention runs through
FlexAttention instead, :func:`maha.flex.flex_local_attention`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .flex import flex_enabled, flex_local_attention

__all__ = [
    "CHUNK_ELEMENTS",
    "BlockBias",
    "local_attention",
    "packed_local_attention",
    "score_entries",
    "window_bias",
]

#: Score entries per chunk of query blocks (1 MiB of float32): a chunk's scores,
#: probabilities and score gradients stay in cache.
CHUNK_ELEMENTS = 1 << 18


def no_autocast(device: torch.device):
    """A context that turns autocast off on ``device`` (a no-op where autocast is off)."""
    kind = device.type
    if kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind):
        return torch.autocast(kind, enabled=False)
    return contextlib.nullcontext()


def window_bias(
    nb: int, w: int, span: int, n: int, causal: bool, device, dtype: torch.dtype
) -> Tensor:
    """The additive ``0 / -inf`` window mask of the blocked layout, ``(nb, w, S)``.

    Query ``j`` of block ``i`` sits at ``i w + j``, key slot ``m`` of block ``i`` at
    ``k = i w - w + m``; the pair is allowed iff ``0 <= rel < w`` (causal) or
    ``|rel| < w`` with ``rel = j + w - m`` (:class:`BlockBias`'s pattern), and the slot
    holds a key (``0 <= k < n``). Written out in full for padded batches, which add their
    own masked keys, and for a traced graph; the eager kernel cuts its edge blocks to the
    slots that hold a key instead.
    """
    pattern = BlockBias.build(w, span, causal, device, dtype).rows(0, nb)  # (nb, w, S)
    key = (torch.arange(nb, device=device) * w - w).view(nb, 1) + torch.arange(span, device=device)
    no_key = (key < 0) | (key >= n)  # (nb, S)
    return pattern.masked_fill(no_key.unsqueeze(1), -math.inf)


@dataclass(frozen=True)
class BlockBias:
    """The window bias shared by every block: one ``(w, S)`` pattern, read as a broadcast
    view instead of :func:`window_bias`'s ``(nb, w, S)`` copy. It is every interior block's
    bias; edge blocks differ only in slots that hold no key, which the kernel cuts off."""

    pattern: Tensor  # (w, S)

    def rows(self, start: int, stop: int) -> Tensor:
        """The shared bias of blocks ``start .. stop - 1``, ``(c, w, S)`` (a view)."""
        return self.pattern.expand(stop - start, *self.pattern.shape)

    @staticmethod
    def build(w: int, span: int, causal: bool, device, dtype: torch.dtype) -> BlockBias:
        """The pattern of ``w`` queries over ``span`` key slots (slot ``m`` at ``j + w - m``
        rows before query ``j``)."""
        rel = torch.arange(w, device=device).view(w, 1) + w - torch.arange(span, device=device)
        allowed = (rel >= 0) & (rel < w) if causal else rel.abs() < w  # (w, S)
        pattern = torch.zeros(w, span, dtype=dtype, device=device)
        return BlockBias(pattern.masked_fill_(~allowed, -math.inf))


def _bias_rows(bias: Tensor | BlockBias, b: int, start: int, stop: int) -> Tensor:
    """The bias of query blocks ``start .. stop - 1`` of batch row ``b``: ``(c, w, S)``."""
    if isinstance(bias, BlockBias):
        return bias.rows(start, stop)
    return bias[start:stop] if bias.dim() == 3 else bias[b, 0, start:stop]


@dataclass(frozen=True)
class _Geometry:
    """The blocks of ``n`` rows in windows of ``w``: which are interior, which are edges.

    Query block ``i`` reads the key blocks ``i - 1 .. i - 1 + groups - 1`` (``groups = 2``
    causal, ``3`` non-causal), the ``S = groups w`` rows from row ``(i - 1) w``; it is
    *interior* iff they all exist, ``1 <= i < interior_stop``.
    """

    n: int
    w: int
    groups: int

    @property
    def nb(self) -> int:
        return -(-self.n // self.w)

    @property
    def span(self) -> int:
        return self.groups * self.w

    @property
    def interior_stop(self) -> int:
        return max(1, self.n // self.w - self.groups + 2)

    def chunks(self, rows: int) -> list[tuple[int, int]]:
        """``(start, stop)`` of the interior blocks, ``rows`` blocks per chunk."""
        stop = self.interior_stop
        return [(s, min(stop, s + rows)) for s in range(1, stop, rows)]

    def edges(self) -> list[int]:
        """The edge blocks: the first, and those from :attr:`interior_stop` on."""
        return [0, *range(self.interior_stop, self.nb)] if self.nb > 0 else []

    def entries(self) -> int:
        """The score entries ``(query, key slot)`` computed per pair: ``w S`` per interior
        block, ``rows x m`` per edge block (its queries and the keys that exist)."""
        total = max(0, self.interior_stop - 1) * self.w * self.span
        for i in self.edges():
            rows, _, lo, hi = self.edge_rows(i)
            total += rows * (hi - lo)
        return total

    def edge_rows(self, i: int) -> tuple[int, int, int, int]:
        """``(query rows, first key row, first slot, end slot)`` of edge block ``i``: its
        queries are rows ``i w .. i w + query rows - 1``; slots ``first .. end - 1`` hold
        the keys from ``first key row`` on."""
        rows = min(self.w, self.n - i * self.w)
        first_key = (i - 1) * self.w
        lo = max(0, -first_key)
        hi = min(self.span, self.n - first_key)
        return rows, first_key + lo, lo, hi


def score_entries(length: int, window: int, *, causal: bool) -> int:
    """How many scores ``<Q[j], K[k]>`` the blocked kernel computes for one (batch, head)
    pair of ``length`` rows: ``w S`` per interior block, the queries times the keys that
    exist per edge block (``<= ceil(n / w) w S``); :mod:`maha.flops` counts ``4 d`` FLOPs
    per entry and batch row (``Q K^T`` and ``P V``)."""
    return _Geometry(length, window, 2 if causal else 3).entries()


def _windows(t: Tensor, start: int, stop: int, span: int, w: int) -> Tensor:
    """The key/value windows of the interior query blocks ``start .. stop - 1`` of one pair's
    rows ``t`` ``(n, d_h)`` (any row stride): ``(c, S, d_h)``, the ``S`` rows from row
    ``(i - 1) w`` for block ``i``, as an overlapping view (no copy)."""
    return t.unfold(0, span, w)[start - 1 : stop - 1].transpose(-1, -2)


def _edge_inputs(
    qk: Tensor, v: Tensor, bias: Tensor | BlockBias, heads: int, geometry: _Geometry, i: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, slice, slice]:
    """Edge block ``i`` of every pair at once: queries ``(B, H, rows, d_h)``, the keys and
    values that exist in its window ``(B, H, m, d_h)`` (strided views), their bias
    ``(rows, m)`` or ``(B, 1, rows, m)``, and the query and key rows as slices. The slots cut
    off hold no key, so their bias is ``-inf`` and dropping them leaves every row's softmax
    as it was."""
    batch, n, _ = qk.shape
    rows, first, lo, hi = geometry.edge_rows(i)
    queries = slice(i * geometry.w, i * geometry.w + rows)
    keys = slice(first, first + hi - lo)
    q_k = qk.view(batch, n, 2, heads, -1)
    v_h = v.view(batch, n, heads, -1)
    if isinstance(bias, BlockBias):
        bias_e = bias.pattern[:rows, lo:hi]
    elif bias.dim() == 3:
        bias_e = bias[i, :rows, lo:hi]
    else:
        bias_e = bias[:, :, i, :rows, lo:hi]
    q_e = q_k[:, queries, 0].transpose(1, 2)  # (B, H, rows, d_h)
    k_e = q_k[:, keys, 1].transpose(1, 2)  # (B, H, m, d_h)
    return q_e, k_e, v_h[:, keys].transpose(1, 2), bias_e, queries, keys


def _probs(q: Tensor, k_w: Tensor, bias: Tensor, scale: float) -> Tensor:
    """``P = softmax(Q K_S^T / sqrt(d_h) + bias)`` of a chunk, ``(c, w, S)``, float32 at least.

    Args:
        q: ``(c, w, d_h)`` the chunk's queries (``(B, H, rows, d_h)`` for an edge block of
            every pair, ``(B, H, nb, w, d_h)`` traced).
        k_w: ``(c, S, d_h)`` their key windows (``(B, H, m, d_h)`` for an edge block).
        bias: ``(c, w, S)`` ``0 / -inf``, float32 at least (broadcast to the scores).
        scale: ``1 / sqrt(d_h)``.
    """
    if q.dtype in (torch.float16, torch.bfloat16):  # scores and softmax in float32
        scores = torch.matmul(q, k_w.transpose(-1, -2)).float() * scale + bias
    elif q.dim() == 3:
        scores = torch.baddbmm(bias, q, k_w.transpose(-1, -2), alpha=scale)  # (c, w, S)
    else:  # the edge blocks of every pair, or the traced whole: (B, H, ..., w, S)
        scores = torch.matmul(q, k_w.transpose(-1, -2)) * scale + bias
    return torch.softmax(scores, dim=-1)


def _chunk_grads(
    q: Tensor,
    k_w: Tensor,
    v_w: Tensor,
    d_out: Tensor,
    out: Tensor,
    p: Tensor,
    scale: float,
    grad_q: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dQ, dK_S, dV_S)`` of one chunk (``(c, w, d_h)``, ``(c, S, d_h)`` twice; or the
    traced whole with leading ``(B, H)``) from its probabilities ``p`` (the softmax
    Jacobian written out, see the module docstring); ``dQ`` into ``grad_q`` where given
    (contiguous, of ``dQ``'s shape). An edge block of every pair passes ``(B, H, rows, d_h)``
    and ``(B, H, m, d_h)`` twice."""
    grad_vw = torch.matmul(p.transpose(-1, -2), d_out)  # dV_S = P^T dO
    grad_p = torch.matmul(d_out, v_w.transpose(-1, -2))  # (c, w, S)
    row = (d_out * out).sum(-1, keepdim=True)  # (c, w, 1)
    grad_s = grad_p.sub_(row).mul_(p)  # d / d(scaled scores)
    if grad_q is None:
        grad_q = torch.matmul(grad_s, k_w)  # dS K_S
    else:
        torch.matmul(grad_s, k_w, out=grad_q)
    grad_kw = torch.matmul(grad_s.transpose(-1, -2), q).mul_(scale)  # dS^T Q
    return grad_q.mul_(scale), grad_kw, grad_vw


def _fold(grad_w: Tensor, start: int, groups: int, w: int, into: Tensor) -> None:
    """Add the window gradients of interior blocks ``start ..`` ``(c, S, d_h)`` into the
    pair's rows ``into`` ``(n, d_h)``: slot group ``g`` of block ``i`` is block ``i - 1 + g``."""
    c = grad_w.shape[0]
    for g in range(groups):
        rows = into[(start - 1 + g) * w : (start - 1 + g + c) * w]
        rows.view(c, w, -1).add_(grad_w[:, g * w : (g + 1) * w])


class _BlockedAttention(torch.autograd.Function):
    """Blocked sliding-window attention of packed ``[Q | K]`` and ``V`` (module docstring).

    ``forward(qk, v, bias, heads, window, groups)``: ``qk`` ``(B, n, 2d)``, ``v`` ``(B, n, d)``,
    ``bias`` a :class:`BlockBias` or a ``0 / -inf`` tensor ``(nb, w, S)`` / ``(B, 1, nb, w, S)``;
    returns ``O`` ``(B, H, n, d_h)``. Backward returns the gradients of ``qk`` and ``v`` in
    their own layouts.
    """

    @staticmethod
    def _pairs(qk: Tensor, v: Tensor, heads: int):
        """``(b, h, q, k, v)`` of every (batch, head) pair: ``(n, d_h)`` strided views."""
        batch, n, _ = qk.shape
        q_k = qk.view(batch, n, 2, heads, -1)
        v_h = v.view(batch, n, heads, -1)
        for b in range(batch):
            for h in range(heads):
                yield b, h, q_k[b, :, 0, h], q_k[b, :, 1, h], v_h[b, :, h]

    @staticmethod
    def forward(ctx, qk: Tensor, v: Tensor, bias, heads: int, window: int, groups: int):
        batch, n, _ = qk.shape
        geometry = _Geometry(n, window, groups)
        w, span = window, geometry.span
        dh = v.shape[-1] // heads
        scale = dh**-0.5
        blockwise = isinstance(bias, BlockBias)  # kept whole; a tensor as its bool mask
        masked = torch.empty(0, dtype=torch.bool) if blockwise else torch.isneginf(bias)
        with no_autocast(qk.device):
            qk, v = qk.contiguous(), v.contiguous()
            if torch.compiler.is_compiling():
                out = _BlockedAttention._traced_forward(qk, v, bias, heads, geometry, scale)
            else:
                out = qk.new_empty(batch, heads, n, dh)  # (B, H, n, d_h)
                rows = max(1, CHUNK_ELEMENTS // (w * span))  # query blocks per chunk
                for b, h, q_r, k_r, v_r in _BlockedAttention._pairs(qk, v, heads):
                    o_r = out[b, h]  # (n, d_h)
                    for start, stop in geometry.chunks(rows):
                        c = stop - start
                        q_c = q_r[start * w : stop * w].unflatten(0, (c, w))  # (c, w, d_h)
                        k_w = _windows(k_r, start, stop, span, w)
                        p = _probs(q_c, k_w, _bias_rows(bias, b, start, stop), scale)
                        o_c = o_r[start * w : stop * w].view(c, w, dh)
                        if p.dtype == v.dtype:
                            torch.bmm(p, _windows(v_r, start, stop, span, w), out=o_c)
                        else:
                            o_c.copy_(torch.bmm(p.to(v.dtype), _windows(v_r, start, stop, span, w)))
                for i in geometry.edges():  # every pair at once
                    q_e, k_e, v_e, bias_e, queries, _ = _edge_inputs(
                        qk, v, bias, heads, geometry, i
                    )
                    p = _probs(q_e, k_e, bias_e, scale)
                    out[:, :, queries] = torch.matmul(p.to(v.dtype), v_e)
        ctx.save_for_backward(qk, v, masked, out)
        ctx.geometry, ctx.heads = geometry, heads
        ctx.block_bias = bias if blockwise else None
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        qk, v, masked, out = ctx.saved_tensors
        geometry, heads = ctx.geometry, ctx.heads
        w, span, groups = geometry.w, geometry.span, geometry.groups
        batch, n, _ = qk.shape
        dh = v.shape[-1] // heads
        scale = dh**-0.5
        with no_autocast(qk.device):
            grad_out = grad_out.to(out.dtype).contiguous()
            bias = ctx.block_bias
            if bias is None:  # the forward's bias, rebuilt once from its mask
                dtype = torch.float32 if qk.dtype in (torch.float16, torch.bfloat16) else qk.dtype
                bias = torch.zeros(masked.shape, dtype=dtype, device=qk.device)
                bias.masked_fill_(masked, -math.inf)
            if torch.compiler.is_compiling():
                grads = _BlockedAttention._traced_backward(
                    qk, v, out, grad_out, bias, heads, geometry, scale
                )
                return (*grads, None, None, None, None)
            grad_qk = torch.empty_like(qk)  # (B, n, 2d), every entry written below
            grad_v = torch.empty_like(v)  # (B, n, d)
            rows = max(1, CHUNK_ELEMENTS // (w * span))
            # one pair's gradients, reused for every pair: dK and dV are summed over the
            # blocks that read each row, dQ is written once per row
            grad_q_r = qk.new_empty(n, dh)
            grad_k_r = qk.new_empty(n, dh)
            grad_v_r = v.new_empty(n, dh)
            for b, h, q_r, k_r, v_r in _BlockedAttention._pairs(qk, v, heads):
                grad_k_r.zero_()
                grad_v_r.zero_()
                d_r, o_r = grad_out[b, h], out[b, h]  # (n, d_h)
                for start, stop in geometry.chunks(rows):
                    c = stop - start
                    lo, hi = start * w, stop * w
                    k_w = _windows(k_r, start, stop, span, w)
                    v_w = _windows(v_r, start, stop, span, w)
                    q_c = q_r[lo:hi].unflatten(0, (c, w))
                    p = _probs(q_c, k_w, _bias_rows(bias, b, start, stop), scale)
                    _, grad_kw, grad_vw = _chunk_grads(
                        q_c,
                        k_w,
                        v_w,
                        d_r[lo:hi].view(c, w, dh),
                        o_r[lo:hi].view(c, w, dh),
                        p.to(qk.dtype),
                        scale,
                        grad_q=grad_q_r[lo:hi].view(c, w, dh),
                    )
                    _fold(grad_kw, start, groups, w, grad_k_r)
                    _fold(grad_vw, start, groups, w, grad_v_r)
                packed = grad_qk.view(batch, n, 2, heads, dh)
                packed[b, :, 0, h] = grad_q_r
                packed[b, :, 1, h] = grad_k_r
                grad_v.view(batch, n, heads, dh)[b, :, h] = grad_v_r
            for i in geometry.edges():  # every pair at once, after the interior's writes
                q_e, k_e, v_e, bias_e, queries, keys = _edge_inputs(qk, v, bias, heads, geometry, i)
                p = _probs(q_e, k_e, bias_e, scale).to(qk.dtype)
                grad_q, grad_ke, grad_ve = _chunk_grads(
                    q_e, k_e, v_e, grad_out[:, :, queries], out[:, :, queries], p, scale
                )
                packed = grad_qk.view(batch, n, 2, heads, dh)
                packed[:, queries, 0] = grad_q.transpose(1, 2)  # (B, rows, H, d_h)
                packed[:, keys, 1] += grad_ke.transpose(1, 2)
                grad_v.view(batch, n, heads, dh)[:, keys] += grad_ve.transpose(1, 2)
        return grad_qk, grad_v, None, None, None, None

    # ---------------------------------------------------------------- traced path
    @staticmethod
    def _traced_blocks(qk: Tensor, v: Tensor, heads: int, geometry: _Geometry):
        """Every pair's query blocks ``(B, H, nb, w, d_h)`` and key/value rows padded into
        whole blocks, one before and ``groups - 2`` after: ``(B, H, (nb + groups - 1) w, d_h)``."""
        batch, n, _ = qk.shape
        w, nb = geometry.w, geometry.nb
        tail = nb * w - n
        q_k = qk.view(batch, n, 2, heads, -1).permute(2, 0, 3, 1, 4)  # (2, B, H, n, d_h)
        v_h = v.view(batch, n, heads, -1).transpose(1, 2)  # (B, H, n, d_h)
        q = F.pad(q_k[0], (0, 0, 0, tail)).unflatten(2, (nb, w))
        after = tail + (geometry.groups - 2) * w
        k = F.pad(q_k[1], (0, 0, w, after))
        v_p = F.pad(v_h, (0, 0, w, after))
        return q, k, v_p

    @staticmethod
    def _traced_windows(t: Tensor, geometry: _Geometry) -> Tensor:
        """``(B, H, nb, S, d_h)`` windows of padded rows ``(B, H, (nb + groups - 1) w, d_h)``."""
        return t.unfold(2, geometry.span, geometry.w).transpose(-1, -2)

    @staticmethod
    def _traced_forward(qk, v, bias, heads, geometry, scale) -> Tensor:
        n = geometry.n
        q, k, v_p = _BlockedAttention._traced_blocks(qk, v, heads, geometry)
        p = _probs(q, _BlockedAttention._traced_windows(k, geometry), bias, scale)
        out = torch.matmul(p.to(v.dtype), _BlockedAttention._traced_windows(v_p, geometry))
        return out.flatten(2, 3)[:, :, :n].contiguous()  # (B, H, n, d_h)

    @staticmethod
    def _traced_backward(qk, v, out, grad_out, bias, heads, geometry, scale):
        batch, n, _ = qk.shape
        w, nb, groups = geometry.w, geometry.nb, geometry.groups
        q, k, v_p = _BlockedAttention._traced_blocks(qk, v, heads, geometry)
        k_w = _BlockedAttention._traced_windows(k, geometry)
        v_w = _BlockedAttention._traced_windows(v_p, geometry)
        pad = (0, 0, 0, nb * w - n)
        d_out = F.pad(grad_out, pad).unflatten(2, (nb, w))
        o = F.pad(out, pad).unflatten(2, (nb, w))
        p = _probs(q, k_w, bias, scale).to(qk.dtype)
        grad_q, grad_kw, grad_vw = _chunk_grads(q, k_w, v_w, d_out, o, p, scale)

        def fold(grad_w: Tensor) -> Tensor:  # (B, H, nb, S, d_h) -> rows (B, H, n, d_h)
            rows = grad_w.new_zeros(batch, heads, nb + groups - 1, w, grad_w.shape[-1])
            for g in range(groups):
                rows[:, :, g : g + nb] += grad_w[:, :, :, g * w : (g + 1) * w]
            return rows.flatten(2, 3)[:, :, w : w + n]

        grad_q = grad_q.flatten(2, 3)[:, :, :n]  # (B, H, n, d_h)
        grad_qk = torch.stack([grad_q, fold(grad_kw)], dim=0).permute(1, 3, 0, 2, 4)
        grad_v = fold(grad_vw).transpose(1, 2)  # (B, n, H, d_h)
        return grad_qk.reshape(batch, n, -1), grad_v.reshape(batch, n, -1)


def packed_local_attention(
    qk: Tensor, v: Tensor, heads: int, window: int, *, causal: bool, valid: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Sliding-window attention of packed queries and keys (the layer's call).

    Query ``j`` attends key ``k`` iff ``0 <= j - k < window`` (causal) or
    ``|j - k| < window`` (non-causal), and the key is valid:

        O[j] = sum_k softmax_k( <Q[j], K[k]> / sqrt(d_h) + M[j, k] ) V[k] .

    Args:
        qk: ``(B, n, 2d)``, ``[Q | K]``: the queries in columns ``0 .. d - 1``, the keys in
            ``d .. 2d - 1``, head ``h`` in the ``d_h`` columns from ``h d_h`` of each (the
            output of one ``nn.Linear(d, 2d)``).
        v: ``(B, n, d)``, the values, head ``h`` in columns ``h d_h .. (h + 1) d_h``.
        heads: H.
        window: w >= 1.
        causal: one-sided window.
        valid: optional ``(B, n)`` bool, True at real keys.

    Returns:
        ``(out, has_key)``: ``(B, H, n, d_h)`` and ``(B, n)`` bool (a query with no allowed
        key, possible only with padding, has a zero output), or None without ``valid``
        (every query has a key: itself).

    The blocked kernel reads ``qk`` and ``v`` in place (module docstring); on CUDA (or
    under :func:`maha.flex.use_flex`) FlexAttention runs instead.
    """
    batch, n, width = qk.shape
    dh = v.shape[-1] // heads
    if flex_enabled(qk.device, dtype=qk.dtype, head_dim=dh):
        q_k = qk.view(batch, n, 2, heads, dh).transpose(1, 3)  # (B, H, 2, n, d_h)
        v_h = v.view(batch, n, heads, dh).transpose(1, 2)
        return flex_local_attention(
            q_k[:, :, 0], q_k[:, :, 1], v_h, window, causal=causal, valid=valid
        )
    w = window
    geometry = _Geometry(n, w, 2 if causal else 3)
    nb, span = geometry.nb, geometry.span
    device = qk.device
    dtype = torch.float32 if qk.dtype in (torch.float16, torch.bfloat16) else qk.dtype
    has_key = None
    bias: Tensor | BlockBias
    if valid is None and not torch.compiler.is_compiling():  # the shared pattern, no copy
        bias = BlockBias.build(w, span, causal, device, dtype)
    else:  # traced as one chunk, or a per-row bias: the full (nb, w, S) bias
        bias = window_bias(nb, w, span, n, causal, device, dtype)
    if valid is not None:  # and the keys that are padding
        kpos = (torch.arange(nb, device=device) * w - w).view(nb, 1) + torch.arange(
            span, device=device
        )  # (nb, S): the key position of each slot
        kvalid = F.pad(valid, (w, nb * w - n + w), value=False)  # key k at index k + w
        key_ok = kvalid[:, (kpos + w).view(-1)].view(batch, nb, 1, span)  # (B, nb, 1, S)
        bias = bias.masked_fill(~key_ok, -math.inf)  # (B, nb, w, S)
        has_key = ~torch.isneginf(bias).all(-1)  # (B, nb, w)
        # rows without keys: anything finite (their output is zeroed below)
        bias = bias.masked_fill(~has_key.unsqueeze(-1), 0.0).unsqueeze(1)  # (B, 1, nb, w, S)
    out = _BlockedAttention.apply(qk, v, bias, heads, w, geometry.groups)  # (B, H, n, d_h)
    if has_key is not None:
        has_key = has_key.reshape(batch, nb * w)[:, :n]  # (B, n)
        out = out.masked_fill(~has_key[:, None, :, None], 0.0)
    return out, has_key


def local_attention(
    q: Tensor, k: Tensor, v: Tensor, window: int, *, causal: bool, valid: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Sliding-window attention of head-layout inputs (:func:`packed_local_attention`).

    Args:
        q, k, v: ``(B, H, n, d_h)``.
        window: w >= 1.
        causal: one-sided window (``0 <= j - k < w``), else ``|j - k| < w``.
        valid: optional ``(B, n)`` bool, True at real keys.

    Returns:
        ``(out, has_key)``: ``(B, H, n, d_h)`` and ``(B, n)`` bool, or None without
        ``valid``.

    Packs ``q, k`` into ``[Q | K]`` and ``v`` into ``(B, n, d)`` (copies) for the blocked
    kernel; on CUDA (or under :func:`maha.flex.use_flex`) FlexAttention takes the head
    layout directly, :func:`maha.flex.flex_local_attention`.
    """
    batch, heads, n, dh = q.shape
    if flex_enabled(q.device, dtype=q.dtype, head_dim=dh):
        return flex_local_attention(q, k, v, window, causal=causal, valid=valid)
    qk = torch.stack([q, k], dim=1).permute(0, 3, 1, 2, 4).reshape(batch, n, 2 * heads * dh)
    v_rows = v.transpose(1, 2).reshape(batch, n, heads * dh)
    return packed_local_attention(qk, v_rows, heads, window, causal=causal, valid=valid)
