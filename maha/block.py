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

from aggregation._validation import check_int

from .config import MAHAConfig
from .fusion import FusionDiagnostics
from .layer import MAHAAttention

__all__ = ["DilatedConv", "FeedForward", "MAHABlock"]


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

    def forward(self, x: Tensor) -> Tensor:
        """``(B, n, d) -> (B, n, d)``."""
        n = x.shape[1]
        span = (self.kernel_size - 1) * self.dilation
        left = span if self.causal else span // 2
        xp = F.pad(x, (0, 0, left, span - left))  # (B, n + span, d)
        weight = self.weight.to(x.dtype)
        out = xp[:, :n] * weight[0]
        for i in range(1, self.kernel_size):
            start = i * self.dilation
            out = out + xp[:, start : start + n] * weight[i]  # (B, n, d)
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
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
    norm: nn.Module, conv: nn.Module, x: Tensor, key_padding_mask: Tensor | None
) -> Tensor:
    """Pre-norm plus dilated-convolution context: ``u + gelu(conv(u))``, ``u = norm(x)``.

    ``x`` is ``(B, n, d)``; padded rows (``key_padding_mask`` True) of ``u`` are
    zeroed first so that padding never leaks into real positions. Returns ``(B, n, d)``.
    """
    u = norm(x)  # (B, n, d)
    if key_padding_mask is not None:
        u = u.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
    return u + F.gelu(conv(u))  # (B, n, d)


class MAHABlock(nn.Module):
    """Hybrid block: dilated conv for local context, MAHA attention, FFN (pre-norm).

    Args:
        config: a :class:`maha.MAHAConfig` (its ``causal`` field selects the mode).

    Shapes: ``forward(x (B, n, d), key_padding_mask (B, n) bool | None) -> (B, n, d)``.
    With a key padding mask the padded rows of the conv input are zeroed so
    that padding never leaks into real positions through the convolution.
    """

    def __init__(
        self,
        config: MAHAConfig,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(config, MAHAConfig):
            raise TypeError(f"config must be a MAHAConfig; received {type(config).__name__}")
        self.config = config
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
        self.attn = MAHAAttention(
            d,
            config.n_head,
            config.num_scales,
            config.ratio,
            config.window,
            config.strategy,
            config.causal,
            decomposition=config.decomposition,
            global_coarsest=config.global_coarsest,
            gating=config.gating,
            mu=config.mu,
            asymmetric=config.asymmetric,
            utility_eps=config.utility_eps,
            solver_tol=config.solver_tol,
            solver_max_iter=config.solver_max_iter,
            bias=config.bias,
            dropout=config.dropout,
            max_length=config.block_size,
            **factory,
        )
        self.ln_2 = nn.LayerNorm(d, bias=config.bias, **factory)
        self.ffn = FeedForward(d, config.ffn_mult, config.dropout, config.bias, **factory)

    def _mix(self, x: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        return local_context(self.ln_1, self.local, x, key_padding_mask)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """``(B, n, d) -> (B, n, d)``."""
        u = self._mix(x, key_padding_mask)
        x = x + self.attn(u, key_padding_mask=key_padding_mask)
        return x + self.ffn(self.ln_2(x))

    def forward_with_diagnostics(
        self, x: Tensor, key_padding_mask: Tensor | None = None
    ) -> tuple[Tensor, FusionDiagnostics]:
        """Like :meth:`forward`, also returning the attention's fusion diagnostics."""
        u = self._mix(x, key_padding_mask)
        a, diagnostics = self.attn.forward_with_diagnostics(u, key_padding_mask=key_padding_mask)
        x = x + a
        return x + self.ffn(self.ln_2(x)), diagnostics
