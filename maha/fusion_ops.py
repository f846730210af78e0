"""Kernels of the fusion step that read the upsampled scales without building their stack.

The fusion reads, at every position ``t`` and head ``h``, the L upsampled scale
outputs ``o_l(t) = O_l[j_l(t)]`` (block index ``j_l`` of :mod:`maha.scales`). The
stack ``(B, n, H, L, d_h)`` of these rows is ``L`` times larger than the input,
and every pass over it (building it, products, their adjoints, summing
gradients) is a memory-bound sweep; above 32 MiB each fresh buffer is also a
fresh ``mmap`` whose pages fault on first touch. Nothing here builds it:

- :func:`game_features`: the utilities' scores ``s[..., l] = <u_{l,h}, o_l>``
  (computed per scale at its own resolution, then upsampled) and the Gram
  matrices ``G[..., l, k] = <o_l, o_k>``, one autograd function for both
  (:class:`_Features`: the positions in cache-sized chunks, each chunk's stack built
  in a small buffer, ``f = r^l`` repeated rows per block, one batched product, then
  discarded; backward works pair by pair at the finer scale's resolution:
  ``dG_lk + dG_kl`` and ``ds_l`` summed over the positions of each row of scale ``l``
  (the adjoint of the repetition), then ``do_l += S o_k``, ``do_k += sum S o_l`` and
  ``do_l += ds u_l`` on the rows themselves, with no stack). Only the per-scale
  outputs and ``u`` are saved.
- :func:`mix`: ``y = sum_l w_l o_l``, one in-place product per scale (scale l's
  own rows against the weights viewed as blocks of ``r^l`` positions), with a
  chunked backward. On the CPU kernels, a mix of rows whose Gram matrices are in the
  graph hands its gradient with respect to the outputs to the Gram's backward, which
  adds it in its own pass over the rows (:class:`_MixLink`).

The block rule comes from :mod:`maha.scales` (:func:`maha.scales.block_span`); the
Gram chunks cut the positions only at boundaries that every scale's blocks share. A stack that the
caller already built and that fits in one chunk (:meth:`ScaleRows.small_stack`,
e.g. the one position of a streamed decoding step) is read directly: one
broadcast product and one batched product each, through autograd, instead of a
copy into a chunk buffer scale by scale.
Everything is per position: row ``t`` of a result reads ``o_l(t)`` only, so
causality is untouched. ``tests/maha/test_fusion_ops.py`` pins both functions to the
plain composition (upsample, stack, products) and runs ``gradcheck`` in float64.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor

from . import fused_cpu
from .scales import block_span, upsample, upsample_presence

__all__ = ["ScaleRows", "scale_rows", "game_features", "mix", "stack_scales"]

_CHUNK_ELEMENTS = 1 << 18  # stack entries per chunk: 1 MiB of float32, in cache


class ScaleRows:
    """The L scale outputs of one layer call and their upsampling geometry.

    Stands for the stack ``o[b, t, h, l] = O_l[b, j_l(t), h]`` of shape
    ``(B, n, H, L, d_h)`` without holding it: ``j_l(t) = floor((t + 1) / r^l) - 1``
    in causal mode (the scale is absent, a zero row, while ``j_l(t) < 0``) and
    ``floor(t / r^l)`` otherwise (:func:`maha.scales.upsample_index`).

    ``chunks`` cut the positions at boundaries shared by every scale's blocks
    (``m F - 1`` causal, ``m F`` otherwise, ``F = r^{L-1}``), about
    ``_CHUNK_ELEMENTS`` stack entries each, so that every block lies in one chunk.

    Args:
        outs: L tensors ``O_l`` of shape ``(B, n_l, H, d_h)``, zero rows where a
            block has no key.
        length: n, the input length.
        ratio: r.
        causal: causal block indices (see :func:`maha.scales.upsample_index`).
    """

    def __init__(self, outs: Sequence[Tensor], length: int, ratio: int, causal: bool) -> None:
        self.outs = tuple(outs)
        self.length = int(length)
        self.ratio = int(ratio)
        self.causal = bool(causal)
        batch, _, heads, dh = self.outs[0].shape
        self.shape = (batch, self.length, heads, len(self.outs), dh)  # the stack's shape
        self.dtype, self.device = self.outs[0].dtype, self.outs[0].device
        coarsest = self.ratio ** (len(self.outs) - 1)
        per_row = batch * heads * len(self.outs) * dh
        rows = max(coarsest, (_CHUNK_ELEMENTS // max(per_row, 1)) // coarsest * coarsest)
        shift = 1 if self.causal else 0
        cuts = [c - shift for c in range(rows, self.length + shift, rows) if c > shift]
        edges = [0, *cuts, self.length]
        self.chunks = list(zip(edges[:-1], edges[1:]))
        self.stack: Tensor | None = None  # the stack itself, when built from one
        # set by game_features, taken by the first mix of these rows (see _MixLink)
        self.mix_link: tuple[_MixLink, Tensor] | None = None

    @classmethod
    def from_stack(cls, stack: Tensor) -> ScaleRows:
        """An already upsampled stack ``(B, n, H, L, d_h)`` as L scales of one row per block."""
        rows = cls(stack.unbind(3), stack.shape[1], 1, False)
        rows.stack = stack
        return rows

    def geometry(self) -> ScaleRows:
        """These rows' geometry (shape, ratio, chunks) without the outputs themselves.

        What an autograd function keeps on its context: the outputs go through
        ``save_for_backward``, which frees them once the function's backward has
        run, whereas a context attribute would hold every scale's output until
        the whole graph is freed.
        """
        bare = copy.copy(self)
        bare.outs, bare.stack, bare.mix_link = (), None, None
        return bare

    def small_stack(self) -> Tensor | None:
        """The stack, when built from one that fits in one chunk (None otherwise).

        The kernels then read it directly, one product each, rather than copy it
        into a chunk buffer scale by scale (what they would do for one chunk).
        """
        return self.stack if self.stack is not None and len(self.chunks) == 1 else None

    def to(self, dtype: torch.dtype) -> ScaleRows:
        """The same rows in ``dtype`` (differentiable)."""
        if self.outs[0].dtype == dtype:
            return self
        if self.stack is not None:
            return ScaleRows.from_stack(self.stack.to(dtype))
        return ScaleRows([out.to(dtype) for out in self.outs], self.length, self.ratio, self.causal)

    def fill(self, buf: Tensor, lo: int, hi: int, outs: Sequence[Tensor]) -> Tensor:
        """Write the stack rows of the positions ``[lo, hi)`` into ``buf`` ``(B, c, H, L, d_h)``."""
        for l, out in enumerate(outs):
            f = self.ratio**l
            first, j0, full, rest = block_span(lo, hi, f, self.causal)
            dest = buf[:, first - lo :, :, l]  # (B, hi - first, H, d_h)
            buf[:, : first - lo, :, l].zero_()  # absent: no block has ended yet
            if full:
                dest[:, : full * f].unflatten(1, (full, f)).copy_(
                    out[:, j0 : j0 + full].unsqueeze(2)
                )
            if rest:
                dest[:, full * f :].copy_(out[:, j0 + full : j0 + full + 1])
        return buf


def scale_rows(
    outs: Sequence[Tensor],
    has_keys: Sequence[Tensor | None],
    length: int,
    ratio: int,
    *,
    causal: bool,
) -> tuple[ScaleRows, Tensor]:
    """The geometry of the upsampled scales and the presence mask.

    Args:
        outs: L tensors ``O_l`` of shape ``(B, n_l, H, d_h)``.
        has_keys: L ``(B, n_l)`` bool tensors or None (every block has a key); rows
            without a key are zeroed.
        length: n.
        ratio: r.
        causal: causal block indices.

    Returns:
        ``(rows, present)``: a :class:`ScaleRows` and the ``(B, n, L)`` bool mask of
        the scales that are players at each position.
    """
    batch = outs[0].shape[0]
    presents, kept = [], []
    for l, (out, has_key) in enumerate(zip(outs, has_keys)):
        _, present = upsample_presence(
            has_key, batch, length, ratio**l, causal=causal, device=out.device
        )
        presents.append(present)  # (B, n)
        kept.append(out if has_key is None else out.masked_fill(~has_key[:, :, None, None], 0.0))
    if fused_cpu.applies(len(kept), *kept):  # the kernels read head-major rows: lay out once
        kept = [fused_cpu.head_major(out) for out in kept]
    return ScaleRows(kept, length, ratio, causal), torch.stack(presents, dim=-1)


def stack_scales(rows: ScaleRows) -> Tensor:
    """The upsampled stack ``(B, n, H, L, d_h)`` (autograd-differentiable; for references)."""
    ups = [
        upsample(out, None, rows.length, rows.ratio**l, causal=rows.causal)[0]
        for l, out in enumerate(rows.outs)
    ]
    return torch.stack(ups, dim=3)


def _used_rows(length: int, factor: int, causal: bool) -> int:
    """How many rows of a scale with ``factor`` positions per block the positions read.

    Causal: blocks ``0 .. floor(n / f) - 1`` (the last, partial block ends after ``n - 1``);
    non-causal: every block, ``ceil(n / f)``.
    """
    return length // factor if causal else -(-length // factor)


def _pair_grads(
    s: Tensor, fine: Tensor, coarse: Tensor, m: int, causal: bool, d_fine: Tensor, d_coarse: Tensor
) -> None:
    """The gradients of ``p[:, j] = <fine[:, j], coarse[:, j_m(j)]>`` for the cotangent ``s``.

    ``fine`` ``(B, R, H, d_h)`` are the rows of a scale, ``coarse`` ``(B, R_c, H, d_h)`` the
    rows of a scale ``m`` times coarser, and ``j_m`` the block rule of :mod:`maha.scales`
    applied to the fine scale's row indices with factor ``m``: every position served by fine
    row ``j`` reads coarse row ``j_m(j)`` (none before the first block, where ``p`` is 0).
    Added in place: ``d_fine[:, j] += s[:, j] coarse[:, j_m(j)]`` and
    ``d_coarse[:, i] += sum_{j_m(j) = i} s[:, j] fine[:, j]``; ``s`` is ``(B, R, H)``.
    """
    R = s.shape[1]
    first, j0, full, rest = block_span(0, R, m, causal)
    end = first + full * m
    if full:
        sb = s[:, first:end].unflatten(1, (full, m)).unsqueeze(-1)  # (B, full, m, H, 1)
        d_fine[:, first:end].unflatten(1, (full, m)).addcmul_(
            sb, coarse[:, j0 : j0 + full].unsqueeze(2)
        )
        d_coarse[:, j0 : j0 + full] += (sb * fine[:, first:end].unflatten(1, (full, m))).sum(2)
    if rest:
        sr = s[:, end:].unsqueeze(-1)  # (B, rest, H, 1)
        d_fine[:, end:R].addcmul_(sr, coarse[:, j0 + full : j0 + full + 1])
        d_coarse[:, j0 + full] += (sr * fine[:, end:R]).sum(1)


def _fold(src: Tensor, rows: int, factor: int, causal: bool) -> Tensor:
    """The adjoint of upsampling: ``out[:, j] = sum of src[:, t]`` over the positions ``t``
    that read block ``j`` (:func:`maha.scales.block_span`); ``src`` ``(B, n, ...)``,
    ``out`` ``(B, rows, ...)``."""
    n = src.shape[1]
    first, j0, full, rest = block_span(0, n, factor, causal)
    end = first + full * factor
    out = src.new_zeros(src.shape[0], rows, *src.shape[2:])
    if full:
        out[:, j0 : j0 + full] = src[:, first:end].unflatten(1, (full, factor)).sum(2)
    if rest:
        out[:, j0 + full] += src[:, end:].sum(1)
    return out


class _MixLink:
    """Hands a :func:`mix` of some scale outputs to the Gram backward of the same outputs.

    Both kernels' backward passes write a gradient of every scale's rows, which autograd
    then sums: two writes and one more sweep over ``sum_l n_l`` rows. With a link (CPU
    kernels, :mod:`maha.fused_cpu`), :func:`game_features` also returns a *carrier*, a
    zero ``(B, n, H, d_h)`` (one broadcast scalar) that :func:`mix` of the same rows adds
    to its output, ``y = sum_l w_l o_l + carrier``. The carrier's cotangent is the mix's
    ``dy``; autograd runs the Gram's backward after the mix's (the carrier feeds the
    mix), and the Gram kernel adds the mix's term ``sum_{t in block j} w_l(t) dy(t)`` to
    each row in its own pass, while the mix's backward computes ``dw`` alone and returns
    no gradient for the outputs. The sum is the same; a double backward (``create_graph``)
    does not use the link. ``weights`` is set by the mix's forward.
    """

    def __init__(self) -> None:
        self.weights: Tensor | None = None


def _block_chunks(rows: ScaleRows, l: int) -> list[tuple[int, int, int, int, int]]:
    """Cache-sized chunks of the blocks of scale ``l``: ``(j0, j1, lo, hi, size)``, blocks
    ``j0 .. j1 - 1`` serving the positions ``[lo, hi)``, ``size`` positions each (the last,
    partial block alone in its chunk)."""
    batch, n, heads, _, dh = rows.shape
    f = rows.ratio**l
    start, _, full, rest = block_span(0, n, f, rows.causal)
    step = max(1, _CHUNK_ELEMENTS // max(batch * f * heads * dh, 1))  # blocks per chunk
    spans = [(j, min(j + step, full), f) for j in range(0, full, step)]
    if rest:
        spans.append((full, full + 1, rest))
    chunks = []
    for j0, j1, size in spans:
        lo = start + j0 * f
        chunks.append((j0, j1, lo, lo + (j1 - j0) * size, size))
    return chunks


def _mix_output_grads(
    rows: ScaleRows, w: Tensor, grad: Tensor, outs: Sequence[Tensor]
) -> list[Tensor]:
    """``dO_l[j] = sum_{t in block j} w[:, t, :, l] dy[:, t]``, the gradient of :func:`mix`
    with respect to the scale outputs (PyTorch, over cache-sized chunks of blocks)."""
    grads = [torch.zeros_like(out) for out in outs]
    for l in range(len(outs)):
        for j0, j1, lo, hi, size in _block_chunks(rows, l):
            dy = grad[:, lo:hi].unflatten(1, (j1 - j0, size))  # (B, c, size, H, d_h)
            wl = w[:, lo:hi, :, l].unflatten(1, (j1 - j0, size)).unsqueeze(-1)
            grads[l][:, j0:j1] = (dy * wl).sum(2)  # dO_l[j] = sum_i w dy
    return grads


class _Features(torch.autograd.Function):
    """``(u, O_0..O_{L-1})`` -> ``s[..., l] = <u_l, o_l>`` and ``G[..., l, k] = <o_l, o_k>``.

    Forward: the scores at each scale's own resolution (``n_l`` rows), upsampled; the Gram
    matrices over the positions in cache-sized chunks, each chunk's stack built in a small
    buffer (:meth:`ScaleRows.fill`) and multiplied by its transpose in one batched product.
    Backward, at the finer resolution: every position served by row ``j`` of scale ``l``
    reads the same row ``j_m(j)`` of a coarser scale ``k`` (``m = r^(k - l)``, the block
    rule on the row indices, :func:`_pair_grads`), so ``dG_lk + dG_kl`` and ``ds_l`` are
    first summed over the positions of each row of scale ``l`` (:func:`_fold`) and then
    applied to ``n_l`` rows: ``sum_{l <= k} n_l`` products of ``d_h`` instead of ``L^2 n``,
    and no stack. Only the outputs and ``u`` are saved. On CPU the numba kernels of
    :mod:`maha.fused_cpu` compute both in one loop nest each way.
    """

    @staticmethod
    def forward(
        ctx, rows: ScaleRows, link: _MixLink | None, u: Tensor, *outs: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        batch, n, heads, L, dh = rows.shape
        ctx.rows, ctx.link = rows.geometry(), link
        ctx.save_for_backward(u, *outs)
        ctx.set_materialize_grads(False)  # an unused output's cotangent stays None
        carrier = outs[0].new_zeros(()).expand(batch, n, heads, dh)  # see _MixLink
        if fused_cpu.applies(L, u, *outs):  # one loop nest (numba), pinned to the loops below
            return (*fused_cpu.gram_forward(outs, u, n, rows.ratio, rows.causal), carrier)
        ref = outs[0]
        gram = ref.new_empty(batch, n, heads, L, L)  # (B, n, H, L, L)
        for lo, hi in rows.chunks:
            o = rows.fill(ref.new_empty(batch, hi - lo, heads, L, dh), lo, hi, outs)
            gram[:, lo:hi] = torch.matmul(o, o.transpose(-1, -2))
        scores = [
            upsample((out * u[:, l]).sum(-1), None, n, rows.ratio**l, causal=rows.causal)[0]
            for l, out in enumerate(outs)
        ]  # L x (B, n, H)
        return torch.stack(scores, dim=-1), gram, carrier  # (B, n, H, L), (B, n, H, L, L)

    @staticmethod
    def backward(ctx, grad_score: Tensor | None, grad_gram: Tensor | None, grad_carrier):
        rows: ScaleRows = ctx.rows
        u, *outs = ctx.saved_tensors
        batch, n, heads, L, _ = rows.shape
        if grad_score is None:
            grad_score = u.new_zeros(batch, n, heads, L)
        if grad_gram is None:
            grad_gram = u.new_zeros(batch, n, heads, L, L)
        # the mix's cotangent dy when its gradient of the outputs comes here (_MixLink; a
        # traced backward may pass a zero cotangent for the carrier, which no link uses)
        linked = ctx.link is not None and grad_carrier is not None
        mix_term = (ctx.link.weights, grad_carrier) if linked else None
        kernel = fused_cpu.applies(L, grad_score, grad_gram, u, *outs)
        if kernel and not torch.is_grad_enabled():
            du, grads = fused_cpu.gram_backward(
                outs, u, grad_score, grad_gram, n, rows.ratio, rows.causal, mix_term
            )
            return (None, None, du, *grads)
        sym = grad_gram + grad_gram.transpose(-1, -2)  # (B, n, H, L, L): dG_lk + dG_kl
        if mix_term is None:
            grads = [torch.zeros_like(out) for out in outs]
        else:
            grads = _mix_output_grads(rows, mix_term[0], mix_term[1], outs)
        du = []
        for l in range(L):
            f = rows.ratio**l
            R = _used_rows(n, f, rows.causal)
            S = _fold(sym[..., l, l:], R, f, rows.causal)  # (B, R, H, L - l)
            own = _fold(grad_score[..., l], R, f, rows.causal)  # (B, R, H)
            fine, d_fine = outs[l][:, :R], grads[l][:, :R]
            d_fine.addcmul_(S[..., 0].unsqueeze(-1), fine)  # G_ll = |o_l|^2: S = 2 dG_ll
            d_fine.addcmul_(own.unsqueeze(-1), u[:, l])  # s_l = <u_l, o_l>
            du.append(torch.einsum("brh,brhd->hd", own, fine))  # (H, d_h)
            for k in range(l + 1, L):
                m = rows.ratio ** (k - l)
                _pair_grads(S[..., k - l], fine, outs[k], m, rows.causal, d_fine, grads[k])
        return (None, None, torch.stack(du, dim=1), *grads)  # du: (H, L, d_h)


def game_features(rows: ScaleRows, u: Tensor) -> tuple[Tensor, Tensor]:
    """Utility scores and Gram matrices of the upsampled scale outputs.

    ``s[b, t, h, l] = <u[h, l], o_l(t)>`` and ``G[b, t, h, l, k] = <o_l(t), o_k(t)>``
    with ``o_l(t)`` row ``t`` of scale l upsampled (zero where absent), both by
    :class:`_Features` (at each scale's own resolution, then written to the positions).

    Args:
        rows: the scale outputs, :func:`scale_rows`.
        u: ``(H, L, d_h)``.

    Returns:
        ``(s, G)``: ``(B, n, H, L)`` and ``(B, n, H, L, L)``.
    """
    stack = rows.small_stack()
    if stack is not None:  # (B, n, H, L, d_h), e.g. one streamed position
        return (stack * u).sum(-1), torch.matmul(stack, stack.transpose(-1, -2))
    tracked = torch.is_grad_enabled() and any(t.requires_grad for t in (u, *rows.outs))
    link = _MixLink() if tracked and fused_cpu.applies(len(rows.outs), u, *rows.outs) else None
    score, gram, carrier = _Features.apply(rows, link, u, *rows.outs)
    rows.mix_link = None if link is None else (link, carrier)
    return score, gram


class _Mix(torch.autograd.Function):
    """``(w, O_0..O_{L-1})`` -> ``y = sum_l w_l o_l`` (see :func:`mix`)."""

    @staticmethod
    def forward(
        ctx, rows: ScaleRows, w: Tensor, link: _MixLink | None, carrier: Tensor | None, *outs
    ) -> Tensor:
        batch, n, heads, L, dh = rows.shape
        ctx.rows, ctx.link = rows.geometry(), link
        ctx.save_for_backward(w, *outs)
        if link is not None:  # the carrier is zero: y = sum_l w_l o_l + carrier needs no add
            link.weights = w.detach()
        if fused_cpu.applies(L, w, *outs):  # one loop nest (numba), pinned to the loop below
            return fused_cpu.mix_forward(outs, w, n, rows.ratio, rows.causal)
        y = outs[0].new_empty(batch, n, heads, dh)  # (B, n, H, d_h)
        torch.mul(w[..., 0].unsqueeze(-1), outs[0], out=y)  # scale 0: one row per position
        for l in range(1, L):
            f = rows.ratio**l
            start, _, full, rest = block_span(0, n, f, rows.causal)
            end = start + full * f
            if full:  # y[start + j f + i] += w[start + j f + i, l] * O_l[j], in place
                y[:, start:end].unflatten(1, (full, f)).addcmul_(
                    w[:, start:end, :, l].unflatten(1, (full, f)).unsqueeze(-1),
                    outs[l][:, :full].unsqueeze(2),
                )
            if rest:
                y[:, end:].addcmul_(w[:, end:, :, l].unsqueeze(-1), outs[l][:, full : full + 1])
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        rows: ScaleRows = ctx.rows
        w, *outs = ctx.saved_tensors
        batch, n, heads, L, dh = rows.shape
        if fused_cpu.applies(L, grad, w, *outs) and not torch.is_grad_enabled():
            linked = ctx.link is not None  # the Gram's backward adds w dy to the rows
            grad = grad.contiguous()  # (B, n, H, d_h), read by both kernels: at most one copy
            grad_w, grads = fused_cpu.mix_backward(
                outs, w, grad, n, rows.ratio, rows.causal, write_grads=not linked
            )
            grad_w = grad_w if ctx.needs_input_grad[1] else None
            if linked:
                return (None, grad_w, None, grad, *([None] * L))
            return (None, grad_w, None, None, *grads)
        grad_w = torch.zeros_like(w) if ctx.needs_input_grad[1] else None
        if grad_w is not None:  # dw_l = <dy, o_l>, by chunks of blocks
            for l, out in enumerate(outs):
                for j0, j1, lo, hi, size in _block_chunks(rows, l):
                    dy = grad[:, lo:hi].unflatten(1, (j1 - j0, size))  # (B, c, size, H, d_h)
                    dw = (dy * out[:, j0:j1].unsqueeze(2)).sum(-1)  # (B, c, size, H)
                    grad_w[:, lo:hi, :, l] = dw.flatten(1, 2)
        return (None, grad_w, None, None, *_mix_output_grads(rows, w, grad, outs))


def mix(rows: ScaleRows, w: Tensor) -> Tensor:
    """``y[b, t, h] = sum_l w[b, t, h, l] o_l(t)``, accumulated in place scale by scale.

    Scale l's rows repeat over blocks of ``f = r^l`` positions (block ``j`` serves
    ``t in [s + j f, s + (j + 1) f)``, ``s = f - 1`` causal, 0 otherwise; the scale
    is absent before ``s``), so its term is one in-place ``addcmul`` of the
    weights viewed as ``(B, blocks, f, H)`` with the scale's own rows broadcast
    over ``f``: no upsampled copy of a scale and no temporary of the output's
    size. The adjoint (``dw_l = <dy, O_l>``, ``dO_l[j] = sum_{t in block j} w dy``)
    runs over cache-sized chunks of blocks.

    Args:
        rows: the scale outputs, :func:`scale_rows`.
        w: ``(B, n, H, L)`` weights (dtype of the outputs).

    Returns:
        ``(B, n, H, d_h)``.
    """
    stack = rows.small_stack()
    if stack is not None:  # (B, n, H, L, d_h), e.g. one streamed position
        return (w.unsqueeze(-1) * stack).sum(-2)  # elementwise, like _Mix (no matmul FLOPs)
    link, carrier = rows.mix_link or (None, None)
    rows.mix_link = None  # one mix per link: its weights are the ones the Gram adds
    return _Mix.apply(rows, w, link, carrier, *rows.outs)
