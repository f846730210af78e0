"""Standard multi-head self-attention with PyTorch SDPA: the peer MAHA is measured against.

``out = W_O concat_h softmax(Q_h K_h^T / sqrt(d_h) + M) V_h`` with ``Q, K, V = x W_{Q,K,V}``.
Cost for length n and width d: ``8 n d^2`` FLOPs of projections and ``4 n^2 d``
FLOPs of attention core (scores and weighted sums).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aggregation._validation import check_int, describe

from .layer import check_attention_inputs

__all__ = ["StandardAttention"]


class StandardAttention(nn.Module):
    """Multi-head self-attention (fused QKV projection + ``scaled_dot_product_attention``).

    Same forward signature and shapes as :class:`maha.MAHAAttention`:
    ``forward(x (B, n, d), attn_mask=None, key_padding_mask=None, is_causal=False)
    -> (B, n, d)``; outputs at padded positions are zero.

    Args:
        d_model: d, divisible by ``num_heads``.
        num_heads: H.
        causal: always causal.
        bias: biases in the projections.
        dropout: dropout on the output.
        max_length: optional longest accepted input length.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        causal: bool = False,
        *,
        bias: bool = True,
        dropout: float = 0.0,
        max_length: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_int(d_model, "d_model", minimum=1)
        check_int(num_heads, "num_heads", minimum=1)
        if d_model % num_heads:
            raise ValueError(
                f"d_model must be divisible by num_heads; received d_model={d_model}, "
                f"num_heads={num_heads}"
            )
        if not isinstance(causal, bool):
            raise TypeError(f"causal must be a bool; received {describe(causal)}")
        self.d_model, self.num_heads, self.causal = d_model, num_heads, causal
        self.max_length = None if max_length is None else check_int(max_length, "max_length")
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias, **factory)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        """``(B, n, d) -> (B, n, d)``; see :class:`maha.MAHAAttention` for the masks."""
        causal, valid = check_attention_inputs(
            x, self.d_model, attn_mask, key_padding_mask, is_causal, self.max_length
        )
        causal = causal or self.causal
        batch, n, d = x.shape
        H = self.num_heads
        q, k, v = self.qkv(x).view(batch, n, 3, H, d // H).permute(2, 0, 3, 1, 4)  # (B,H,n,d_h)
        if valid is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, n, d_h)
        else:
            allowed = valid[:, None, None, :].expand(batch, 1, n, n)  # (B, 1, n, n)
            if causal:
                allowed = allowed & torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
            has_key = allowed.any(-1, keepdim=True)  # (B, 1, n, 1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed | ~has_key)
            out = out.masked_fill(~has_key, 0.0)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, n, d))  # (B, n, d)
        if valid is not None:
            out = out.masked_fill(~valid.unsqueeze(-1), 0.0)
        return self.dropout(out)
