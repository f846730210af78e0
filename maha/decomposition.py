"""Hierarchical decomposition of a sequence into L scales (MAHA paper, Section 4.1).

``X_0 = X`` and ``X_l = D_l(X_{l-1})`` for ``l = 1..L-1``, where ``D_l`` maps
each block of ``r`` consecutive rows to one row. Kernel = stride = r, so block
``j`` of scale ``l`` depends only on the input rows ``[j r^l, (j+1) r^l)``: the
operator is causal by construction (a block never sees a token outside itself).
Lengths follow ``n_l = ceil(n_{l-1} / r)``; the tail of a scale whose length is
not a multiple of ``r`` is padded with zeros, so the last block of a scale may
be *incomplete*. Whoever consumes the scales in causal mode must never let a
position use a block that ends after it (the block rule of :mod:`maha.scales`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from aggregation.validation import check_choice, describe

from . import fused_cpu
from .config import DECOMPOSITIONS, validate_layer_args
from .scales import scale_lengths

__all__ = ["HierarchicalDecomposition", "downsample_valid"]


def _pad_tail(x: Tensor, ratio: int, dim: int, value: float | bool = 0) -> Tensor:
    """Pad ``dim`` of ``x`` at the end to a multiple of ``ratio`` with ``value``."""
    n = x.shape[dim]
    extra = (-n) % ratio
    if extra == 0:
        return x
    shape = list(x.shape)
    shape[dim] = extra
    filler = torch.full(shape, value, dtype=x.dtype, device=x.device)
    return torch.cat([x, filler], dim=dim)


def downsample_valid(valid: Tensor, num_scales: int, ratio: int) -> list[Tensor]:
    """Per-scale validity masks: a block is valid iff it holds at least one valid token.

    Args:
        valid: ``(B, n)`` bool, True at real (unpadded) tokens.

    Returns:
        ``L`` bool tensors, scale l's of shape ``(B, n_l)``.
    """
    masks = [valid]
    for _ in range(num_scales - 1):
        v = _pad_tail(masks[-1], ratio, 1, False)  # (B, r * n_l)
        masks.append(v.view(v.shape[0], -1, ratio).any(-1))  # (B, n_l)
    return masks


_CHUNK_ELEMENTS = 1 << 18  # rows x channels per chunk of the weight-gradient reductions


def _depthwise(blocks: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``out[b, j] = bias + sum_k w_k * blocks[b, j, k]`` (per channel): ``r`` in-place
    multiply-adds into the ``(B, m, d)`` output, no temporary of the blocks' size."""
    batch, m, r, d = blocks.shape
    out = blocks.new_empty(batch, m, d)  # (B, m, d)
    if bias is None:
        torch.mul(blocks[:, :, 0], weight[0], out=out)
    else:
        torch.addcmul(bias, blocks[:, :, 0], weight[0], out=out)
    for k in range(1, r):
        out.addcmul_(blocks[:, :, k], weight[k])
    return out


def _depthwise_weight_grad(grad: Tensor, blocks: Tensor) -> Tensor:
    """``dw_k = sum_{b,j} grad[b, j] * blocks[b, j, k]``, ``(r, d)``, over cache-sized chunks."""
    batch, m, r, d = blocks.shape
    grad_weight = blocks.new_zeros(r, d)  # (r, d)
    step = max(1, _CHUNK_ELEMENTS // max(batch * d, 1))
    for j in range(0, m, step):
        g = grad[:, j : j + step]  # (B, c, d)
        grad_weight += (g.unsqueeze(2) * blocks[:, j : j + step]).sum((0, 1))
    return grad_weight


def _blocks(x: Tensor, ratio: int) -> Tensor:
    """``(B, n, d)`` -> its zero-padded blocks of ``ratio`` rows, ``(B, ceil(n / r), r, d)``."""
    xp = _pad_tail(x, ratio, 1)  # (B, r m, d)
    batch, rows, d = xp.shape
    return xp.view(batch, rows // ratio, ratio, d)


class _DepthwiseBlocks(torch.autograd.Function):
    """``out[b, j] = bias + sum_k w_k * blocks[b, j, k]`` (per channel), in place.

    Forward accumulates one ``addcmul`` per kernel tap into the output (no
    temporary of the blocks' size); backward forms ``d blocks_k = w_k * dout`` in
    one broadcast product and reduces ``dw_k = sum_{b,j} dout * blocks_k``
    over cache-sized chunks of rows.
    """

    @staticmethod
    def forward(ctx, blocks: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        # blocks: (B, m, r, d); weight: (r, d); bias: (d,) or None
        ctx.save_for_backward(blocks, weight)
        ctx.has_bias = bias is not None
        return _depthwise(blocks, weight, bias)  # (B, m, d)

    @staticmethod
    def backward(ctx, grad: Tensor):
        blocks, weight = ctx.saved_tensors
        grad_blocks = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_blocks = grad.unsqueeze(2) * weight  # (B, m, r, d)
        if ctx.needs_input_grad[1]:
            grad_weight = _depthwise_weight_grad(grad, blocks)  # (r, d)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 1))
        return grad_blocks, grad_weight, grad_bias


class _DepthwiseChain(torch.autograd.Function):
    """Every level of the ``"conv"`` decomposition at once, saving only its input.

    ``X_{l+1} = m_{l+1} * D(blocks(X_l); w_l, b_l)`` for ``l = 0..L-2``
    (:func:`_depthwise` on the zero-padded blocks, ``m`` the optional block
    validity masks). Forward returns ``X_1..X_{L-1}`` and saves ``X_0``, the
    weights and the masks; backward recomputes ``X_1..X_{L-2}`` from ``X_0`` (the
    same operations, so the same values: ``2 r d`` FLOPs per row, cheap next to
    keeping them) and runs the chain's adjoint from the coarsest level down,
    adding each level's own incoming gradient on the way:
    ``dX_l = dX_l^{ext} + crop(w_l * (m_{l+1} dX_{l+1}))``,
    ``dw_l = sum m_{l+1} dX_{l+1} * blocks(X_l)``, ``db_l = sum m_{l+1} dX_{l+1}``.
    The intermediate scales are thus not kept alive by the decomposition until
    the end of the backward pass (their other consumers, the projections and
    attention, free them as soon as their own backward has run).

    On the CPU with numba (the ``fast`` extra) forward and backward run as loop nests of
    :mod:`maha.fused_cpu` (``chain_forward``, ``chain_backward``: the same formulas, one
    pass over each level's rows instead of a PyTorch op per tap and reduction; equal to
    these loops to rounding, ``tests/maha/test_fused_cpu.py``); a double backward, a
    traced graph and other devices use the loops here.
    """

    @staticmethod
    def _levels(x0: Tensor, ratio: int, weight: Tensor, bias, masks, count: int) -> list[Tensor]:
        outs, cur = [], x0
        for index in range(count):
            b = None if bias is None else bias[index]
            cur = _depthwise(_blocks(cur, ratio), weight[index], b)  # (B, n_l, d)
            if masks:
                cur = cur * masks[index]  # blocks without a valid token: zero
            outs.append(cur)
        return outs

    @staticmethod
    def _kernels(x0: Tensor, weight: Tensor, bias: Tensor | None, masks) -> bool:
        """Whether the numba kernels of :mod:`maha.fused_cpu` run the chain (CPU, float32 /
        float64, numba installed and switched on, not traced)."""
        tensors = [x0, weight, *masks] + ([] if bias is None else [bias])
        return fused_cpu.applies(weight.shape[0] + 1, *tensors)

    @staticmethod
    def forward(ctx, ratio: int, x0: Tensor, weight: Tensor, bias: Tensor | None, *masks: Tensor):
        # x0: (B, n, d); weight: (L-1, r, d); bias: (L-1, d) or None;
        # masks: none, or L-1 tensors (B, n_l, 1) of 0 / 1 in x0's dtype
        if _DepthwiseChain._kernels(x0, weight, bias, masks):
            outs = fused_cpu.chain_forward(x0, weight, bias, masks, ratio)  # one pass per level
        else:
            outs = _DepthwiseChain._levels(x0, ratio, weight, bias, masks, weight.shape[0])
        ctx.save_for_backward(x0, weight, bias, *masks)
        ctx.ratio = ratio
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads: Tensor):
        x0, weight, bias, *masks = ctx.saved_tensors
        ratio, levels = ctx.ratio, weight.shape[0]
        if not torch.is_grad_enabled() and _DepthwiseChain._kernels(x0, weight, bias, masks):
            # the same adjoint in one numba pass per level (not for a double backward)
            grad_x, grad_weight, grad_bias = fused_cpu.chain_backward(
                x0, weight, bias, masks, ratio, [g.to(x0.dtype) for g in grads]
            )
            return (
                None,
                grad_x if ctx.needs_input_grad[1] else None,
                grad_weight if ctx.needs_input_grad[2] else None,
                grad_bias if bias is not None and ctx.needs_input_grad[3] else None,
                *([None] * len(masks)),
            )
        with torch.no_grad():  # X_0 .. X_{L-2}, recomputed
            inputs = [x0, *_DepthwiseChain._levels(x0, ratio, weight, bias, masks, levels - 1)]
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[2] else None
        grad_bias = torch.zeros_like(bias) if bias is not None and ctx.needs_input_grad[3] else None
        g, grad_x = grads[-1], None  # dX_{L-1}
        for index in reversed(range(levels)):
            if masks:
                g = g * masks[index]
            if grad_weight is not None:
                grad_weight[index] = _depthwise_weight_grad(g, _blocks(inputs[index], ratio))
            if grad_bias is not None:
                grad_bias[index] = g.sum((0, 1))
            n = inputs[index].shape[1]
            grad_in = (g.unsqueeze(2) * weight[index]).flatten(1, 2)[:, :n]  # (B, n_l, d)
            if index:
                g = grads[index - 1] + grad_in  # dX_l: its own consumers' and the chain's
            else:
                grad_x = grad_in
        return (None, grad_x, grad_weight, grad_bias, *([None] * len(masks)))


class HierarchicalDecomposition(nn.Module):
    """Learnable (or pooling) multiscale decomposition ``X_l = D_l(X_{l-1})``.

    Operators ``D_l`` (one per level ``l = 1..L-1``), each mapping a block
    ``B_j = X_{l-1}[r j : r j + r]`` (zero-padded at the tail) to one row:

    - ``"conv"``: depthwise strided convolution, ``D(B_j) = sum_k w_k * B_j[k] + b``
      with per-channel weights ``w_k in R^d`` (initialised to ``1 / r``, average
      pooling); ``2 r d`` elementwise FLOPs per output row (computed as ``r``
      in-place multiply-adds, :class:`_DepthwiseBlocks`: PyTorch's grouped
      ``conv1d`` is far slower on CPU). :meth:`forward` runs every level as one
      autograd function, :class:`_DepthwiseChain`, that saves only ``X_0`` and
      recomputes the other levels in backward.
    - ``"dense_conv"``: full channel-mixing strided convolution (the paper's
      code), ``D(B_j) = [W_1 .. W_r] vec(B_j) + b`` with ``W_k in R^{d x d}``
      (initialised to ``I / r``); one matrix product, ``2 r d^2`` FLOPs per output row.
    - ``"avg"`` / ``"max"``: average / max pooling over the block (no parameters).

    With ``valid`` (a key padding mask, True = real token), padded rows are
    zeroed before the first level and blocks holding no valid token are zeroed
    after every level, so that a right-padded sequence decomposes exactly like
    the unpadded one (whose tail is zero-padded).

    Args:
        d_model: channel width d.
        num_scales: L >= 1 (scale 0 is the input itself).
        ratio: r >= 2.
        mode: one of ``"conv"``, ``"dense_conv"``, ``"avg"``, ``"max"``.
        bias: learn a bias in the convolutions.
    """

    def __init__(
        self,
        d_model: int,
        num_scales: int = 4,
        ratio: int = 2,
        mode: str = "conv",
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        validate_layer_args(d_model=d_model, num_scales=num_scales, ratio=ratio)
        self.d_model, self.num_scales, self.ratio = d_model, num_scales, ratio
        self.mode = check_choice(mode, "mode", DECOMPOSITIONS)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        levels = self.num_scales - 1
        if levels == 0:  # one scale: nothing to downsample, no parameters
            weight = None
        elif self.mode == "conv":
            weight = torch.full((levels, ratio, d_model), 1.0 / ratio, **factory)  # w_k per channel
        elif self.mode == "dense_conv":
            eye = torch.eye(d_model, **factory) / ratio  # (d, d)
            weight = eye.repeat(1, ratio).unsqueeze(0).repeat(levels, 1, 1)  # (L-1, d, r d)
        else:
            weight = None
        self.weight = None if weight is None else nn.Parameter(weight)
        has_bias = bias and weight is not None
        self.bias = nn.Parameter(torch.zeros(levels, d_model, **factory)) if has_bias else None

    def lengths(self, length: int) -> list[int]:
        """The scale lengths ``[n_0, ..., n_{L-1}]`` for an input of ``length`` rows."""
        return scale_lengths(length, self.num_scales, self.ratio)

    def level(self, x: Tensor, index: int) -> Tensor:
        """Apply ``D_{index+1}`` to one scale.

        Args:
            x: ``(B, n, d)``.
            index: the level, ``0 <= index < L - 1``.

        Returns:
            ``(B, ceil(n / r), d)``.
        """
        blocks = _blocks(x, self.ratio)  # (B, m, r, d)
        batch, m, r, d = blocks.shape
        if self.weight is None:  # pooling
            return blocks.mean(2) if self.mode == "avg" else blocks.amax(2)  # (B, m, d)
        weight = self.weight[index].to(x.dtype)
        bias = None if self.bias is None else self.bias[index].to(x.dtype)
        if self.mode == "conv":
            return _DepthwiseBlocks.apply(blocks, weight, bias)  # (B, m, d)
        flat = blocks.reshape(batch, m, r * d)  # (B, m, r d)
        out = flat @ weight.t()  # (B, m, d)
        return out if bias is None else out + bias

    def forward(self, x: Tensor, valid: Tensor | None = None) -> list[Tensor]:
        """Decompose ``x`` into its L scales.

        Args:
            x: ``(B, n, d)``.
            valid: optional ``(B, n)`` bool, True at real tokens.

        Returns:
            ``[X_0, ..., X_{L-1}]``, scale l of shape ``(B, n_l, d)``,
            ``n_l = ceil(n_{l-1} / r)``.
        """
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"x must have shape (batch, length, {self.d_model}); received {describe(x)}"
            )
        masks = None if valid is None else downsample_valid(valid, self.num_scales, self.ratio)
        if masks is not None:
            x = x * masks[0].unsqueeze(-1).to(x.dtype)  # (B, n, d)
        if self.mode == "conv" and self.weight is not None:  # all levels at once, X_0 saved
            weight = self.weight.to(x.dtype)  # (L-1, r, d)
            bias = None if self.bias is None else self.bias.to(x.dtype)
            level_masks = [] if masks is None else [m.unsqueeze(-1).to(x.dtype) for m in masks[1:]]
            return [x, *_DepthwiseChain.apply(self.ratio, x, weight, bias, *level_masks)]
        scales = [x]
        for index in range(self.num_scales - 1):
            nxt = self.level(scales[-1], index)  # (B, n_l, d)
            if masks is not None:
                nxt = nxt * masks[index + 1].unsqueeze(-1).to(nxt.dtype)
            scales.append(nxt)
        return scales

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, num_scales={self.num_scales}, ratio={self.ratio}, "
            f"mode={self.mode!r}"
        )
