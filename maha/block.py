"""``MAHABlock``: the hybrid dilated-convolution / MAHA transformer block (paper Section 4.4).

Pre-norm residual layout, for ``x`` of shape ``(B, n, d)``:

    u = LN_1(x)
    u = u + GELU(DilatedConv(u))          local context (causal in causal mode)
    x = x + MAHAAttention(u)
    x = x + FFN(LN_2(x))                  FFN(z) = W_2 GELU(W_1 z)

``DilatedConv`` is a depthwise convolution with kernel ``k`` and dilation
``delta``; in causal mode it is padded ``(k - 1) delta`` on the left only, so
output ``t`` sees inputs ``t - i delta``, ``i = 0..k-1``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aggregation.validation import check_int, describe

from .config import MAHAConfig, check_config
from .fusion import FusionDiagnostics
from .layer import MAHAAttention, check_attention_inputs
from .standard import StandardAttention
from .streaming import BlockCache

__all__ = ["DilatedConv", "FeedForward", "MAHABlock", "ResidualBlock"]


class DilatedConv(nn.Module):
    """Depthwise dilated convolution along the sequence, causal or centred.

    ``y[t] = b + sum_{i=0}^{k-1} w_i * x[t - (k - 1 - i) delta + shift]`` per channel,
    with zero padding; ``shift = 0`` in causal mode (output t sees only inputs
    ``<= t``) and ``shift = floor((k - 1) delta / 2)`` otherwise (centred). It is
    computed as k shifted broadcast products (PyTorch's grouped ``conv1d`` is
    much slower on CPU for this shape).

    Args:
        d_model: channels d.
        kernel_size: k >= 1.
        dilation: delta >= 1.
        causal: one-sided (left) padding.
        bias: learn ``b``.
    """

    def __init__(
        self,
        d_model: int,
        kernel_size: int = 3,
        dilation: int = 2,
        *,
        causal: bool = True,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_int(d_model, "d_model", minimum=1)
        self.kernel_size = check_int(kernel_size, "kernel_size", minimum=1)
        self.dilation = check_int(dilation, "dilation", minimum=1)
        self.causal = bool(causal)
        bound = 1.0 / math.sqrt(kernel_size)  # nn.Conv1d's default for a depthwise kernel
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(kernel_size, d_model, **factory).uniform_(-bound, bound)
        )
        self.bias = (
            nn.Parameter(torch.empty(d_model, **factory).uniform_(-bound, bound)) if bias else None
        )

    @property
    def span(self) -> int:
        """``(k - 1) delta``: how many earlier inputs a causal output reads."""
        return (self.kernel_size - 1) * self.dilation

    def forward(self, x: Tensor) -> Tensor:
        """``(B, n, d) -> (B, n, d)``."""
        span = self.span
        left = span if self.causal else span // 2
        return self._convolve(F.pad(x, (0, 0, left, span - left)))  # (B, n + span, d) padded

    def step(self, x: Tensor, history: Tensor) -> tuple[Tensor, Tensor]:
        """Causal streaming: the outputs of a chunk given the inputs before it.

        Args:
            x: ``(B, c, d)`` the next inputs.
            history: ``(B, span, d)`` the ``span = (k - 1) delta`` inputs before
                ``x`` (zeros before the start of the sequence, as the causal
                zero padding of :meth:`forward`).

        Returns:
            ``(y, history)``: ``(B, c, d)``, exactly the rows of :meth:`forward`
            on the whole sequence, and the new ``(B, span, d)`` history.
        """
        if not self.causal:
            raise ValueError("DilatedConv.step needs a causal convolution; this one is centred")
        xp = torch.cat([history, x], dim=1)  # (B, span + c, d)
        history = xp[:, xp.shape[1] - self.span :]  # a copy after a long chunk: xp can go
        return self._convolve(xp), history.clone() if x.shape[1] > self.span else history

    def _convolve(self, xp: Tensor) -> Tensor:
        """``y[t] = b + sum_i w_i xp[t + i delta]``, ``(B, n + span, d) -> (B, n, d)``."""
        n = xp.shape[1] - self.span
        weight = self.weight.to(xp.dtype)
        out = xp[:, :n] * weight[0]
        for i in range(1, self.kernel_size):
            start = i * self.dilation
            out = out + xp[:, start : start + n] * weight[i]  # (B, n, d)
        if self.bias is not None:
            out = out + self.bias.to(xp.dtype)
        return out


class FeedForward(nn.Module):
    """``W_2 GELU(W_1 z)`` with hidden width ``mult * d``: ``(B, n, d) -> (B, n, d)``."""

    def __init__(
        self,
        d_model: int,
        mult: int = 4,
        dropout: float = 0.0,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.fc = nn.Linear(d_model, mult * d_model, bias=bias, **factory)
        self.proj = nn.Linear(mult * d_model, d_model, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


def local_context(
    norm: nn.Module,
    conv: DilatedConv,
    x: Tensor,
    key_padding_mask: Tensor | None,
    cache: BlockCache | None = None,
) -> Tensor:
    """Pre-norm plus dilated-convolution context: ``u + gelu(conv(u))``, ``u = norm(x)``.

    ``x`` is ``(B, n, d)``; padded rows (``key_padding_mask`` True) of ``u`` are
    zeroed first so that padding never leaks into real positions (a left-padded
    row then sees zeros before its first token, as the unpadded one). With
    ``cache`` the convolution streams (:meth:`DilatedConv.step`) and its history
    is updated in the cache. Returns ``(B, n, d)``.
    """
    u = norm(x)  # (B, n, d)
    if key_padding_mask is not None:
        u = u.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
    if cache is None:
        return u + F.gelu(conv(u))  # (B, n, d)
    y, cache.history = conv.step(u, cache.history)  # (B, n, d), (B, span, d)
    return u + F.gelu(y)


class ResidualBlock(nn.Module):
    """The pre-norm layout shared by :class:`MAHABlock` and :class:`maha.model.FullAttentionBlock`.

    ``x + attn(local_context(x))`` then ``+ FFN(LN_2(x))``; subclasses build
    ``ln_1``, ``local`` (a :class:`DilatedConv`), ``attn`` (with ``init_cache``
    and ``forward(u, key_padding_mask=..., cache=...)``), ``ln_2`` and ``ffn``.
    """

    ln_1: nn.LayerNorm
    local: DilatedConv
    attn: MAHAAttention | StandardAttention
    ln_2: nn.LayerNorm
    ffn: FeedForward

    def init_cache(
        self,
        batch_size: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        compile: bool = False,
        compile_backend: str = "inductor",
    ) -> BlockCache:
        """An empty streaming state for ``forward(x_chunk, cache=cache)`` (causal blocks).

        Args:
            batch_size: B.
            dtype, device: of the chunks (default: the block's parameters').
            compile, compile_backend: compile the attention's decoding steps
                (:meth:`maha.MAHAAttention.init_cache`).

        Returns:
            A :class:`maha.BlockCache`: the convolution's last ``(k - 1) delta``
            inputs and the attention's cache.
        """
        if not self.local.causal:
            raise ValueError("init_cache needs a causal block (config.causal=True)")
        param = self.ffn.fc.weight
        dtype = param.dtype if dtype is None else dtype
        device = param.device if device is None else device
        attention = self.attn.init_cache(
            batch_size,
            dtype=dtype,
            device=device,
            compile=compile,
            compile_backend=compile_backend,
        )
        return BlockCache(
            self,
            batch_size,
            dtype,
            device,
            span=self.local.span,
            width=param.shape[1],
            attention=attention,
        )

    def forward(
        self,
        x: Tensor,
        key_padding_mask: Tensor | None = None,
        *,
        cache: BlockCache | None = None,
    ) -> Tensor:
        """``(B, n, d) -> (B, n, d)``.

        With ``cache`` (:meth:`init_cache`), ``x`` is the next chunk of the
        sequence and the result the rows of the parallel forward on the whole
        sequence at its positions; ``key_padding_mask`` then only with the first
        chunk, as left padding.
        """
        if cache is None:
            u = local_context(self.ln_1, self.local, x, key_padding_mask)
            x = x + self.attn(u, key_padding_mask=key_padding_mask)
            return x + self.ffn(self.ln_2(x))
        if not isinstance(cache, BlockCache):
            raise TypeError(
                f"cache must be a maha.BlockCache from init_cache; received {describe(cache)}"
            )
        check_attention_inputs(x, self.ln_1.normalized_shape[0], None, None, False, None)
        cache.check(self, x, "x")
        cache.check_room(x.shape[1], getattr(self.attn, "max_length", None), "x")
        cache.check_mask(key_padding_mask, x.shape[0], x.shape[1])
        with cache.updating(x.shape[1]):
            u = local_context(self.ln_1, self.local, x, key_padding_mask, cache)
            x = x + self.attn(u, key_padding_mask=key_padding_mask, cache=cache.attention)
            return x + self.ffn(self.ln_2(x))


class MAHABlock(ResidualBlock):
    """Hybrid block: dilated conv for local context, MAHA attention, FFN (pre-norm).

    Args:
        config: a :class:`maha.MAHAConfig` (its ``causal`` field selects the mode).

    Shapes: ``forward(x (B, n, d), key_padding_mask (B, n) bool | None) -> (B, n, d)``.
    With a key padding mask the padded rows of the conv input are zeroed so
    that padding never leaks into real positions through the convolution.
    Streaming (causal): ``cache = block.init_cache(B)``, ``block(x_chunk, cache=cache)``.
    """

    attn: MAHAAttention

    def __init__(
        self,
        config: MAHAConfig,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.config = check_config(config)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        d = config.d_model
        self.ln_1 = nn.LayerNorm(d, bias=config.bias, **factory)
        self.local = DilatedConv(
            d,
            config.conv_kernel,
            config.conv_dilation,
            causal=config.causal,
            bias=config.bias,
            **factory,
        )
        self.attn = MAHAAttention.from_config(config, **factory)
        self.ln_2 = nn.LayerNorm(d, bias=config.bias, **factory)
        self.ffn = FeedForward(d, config.ffn_mult, config.dropout, config.bias, **factory)

    def forward_with_diagnostics(
        self, x: Tensor, key_padding_mask: Tensor | None = None
    ) -> tuple[Tensor, FusionDiagnostics]:
        """Like :meth:`forward`, also returning the attention's fusion diagnostics."""
        u = local_context(self.ln_1, self.local, x, key_padding_mask)
        a, diagnostics = self.attn.forward_with_diagnostics(u, key_padding_mask=key_padding_mask)
        x = x + a
        return x + self.ffn(self.ln_2(x)), diagnostics
