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

from aggregation.validation import check_int, describe

from .config import validate_layer_args
from .layer import check_attention_inputs
from .rotary import rotate_queries_keys
from .streaming import KVCache, check_compile

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
        rotary: rotate queries and keys by their token positions (RoPE,
            :func:`maha.rotary.rotate_queries_keys`); needs an even head width.
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
        rotary: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        validate_layer_args(d_model=d_model, num_heads=num_heads, rotary=rotary)
        if not isinstance(causal, bool):
            raise TypeError(f"causal must be a bool; received {describe(causal)}")
        self.d_model, self.num_heads, self.causal = d_model, num_heads, causal
        self.rotary = rotary
        self.max_length = None if max_length is None else check_int(max_length, "max_length")
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias, **factory)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)

    def init_cache(
        self,
        batch_size: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        compile: bool = False,
        compile_backend: str = "inductor",
    ) -> KVCache:
        """An empty key/value cache for ``forward(x_chunk, cache=cache)`` (causal layers only).

        Args:
            batch_size: B.
            dtype, device: of the chunks (default: the layer's parameters').
            compile, compile_backend: accepted for the interface of
                :meth:`maha.MAHAAttention.init_cache` and checked; a decoding step
                here is one attention call, nothing is compiled.

        Returns:
            A :class:`maha.KVCache` (the keys and values of every token seen).
        """
        if not self.causal:
            raise ValueError(
                "init_cache needs a causal layer (built with causal=True); this layer is non-causal"
            )
        check_compile(compile, compile_backend)
        param = self.qkv.weight
        return KVCache(
            self,
            batch_size,
            param.dtype if dtype is None else dtype,
            param.device if device is None else device,
        )

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
        *,
        cache: KVCache | None = None,
    ) -> Tensor:
        """``(B, n, d) -> (B, n, d)``; see :class:`maha.MAHAAttention` for the masks.

        With ``cache`` (:meth:`init_cache`, causal layers), ``x`` is the next chunk
        of the sequence: its queries attend the cached keys and themselves
        (a standard key/value cache); ``key_padding_mask`` only with the first
        chunk, as left padding.
        """
        if cache is not None:
            return self._stream(x, attn_mask, key_padding_mask, cache)
        causal, valid = check_attention_inputs(
            x, self.d_model, attn_mask, key_padding_mask, is_causal, self.max_length
        )
        causal = causal or self.causal
        batch, n, d = x.shape
        q, k, v = self._qkv(x)  # (B, H, n, d_h) each
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

    def _qkv(self, x: Tensor, start: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """``Q, K, V = x W_{Q,K,V}`` in head layout, each ``(B, H, n, d_h)``.

        With :attr:`rotary`, ``Q`` and ``K`` at position ``start + i`` are rotated by it.
        """
        batch, n, d = x.shape
        H = self.num_heads
        q, k, v = self.qkv(x).view(batch, n, 3, H, d // H).permute(2, 0, 3, 1, 4)
        if self.rotary:
            q, k = rotate_queries_keys(q, k, start)
        return q, k, v

    def _stream(
        self,
        x: Tensor,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        cache: KVCache,
    ) -> Tensor:
        """Validate a streamed chunk and attend it over the cache."""
        if not isinstance(cache, KVCache):
            raise TypeError(
                f"cache must be a maha.KVCache from init_cache; received {describe(cache)}"
            )
        if not self.causal:
            raise ValueError(
                "cache is only for causal layers (built with causal=True); this layer is non-causal"
            )
        if attn_mask is not None:
            raise ValueError(
                f"attn_mask must be None with cache (the layer is causal); "
                f"received {describe(attn_mask)}"
            )
        check_attention_inputs(x, self.d_model, None, None, False, None)
        cache.check(self, x, "x")
        cache.check_room(x.shape[1], self.max_length, "x")
        cache.check_mask(key_padding_mask, x.shape[0], x.shape[1])
        batch, c, d = x.shape
        with cache.updating(c):
            q, k, v = self._qkv(x, cache.position)  # (B, H, c, d_h) each
            out = cache.attend(q, k, v, key_padding_mask)  # (B, H, c, d_h)
            out = self.out_proj(out.transpose(1, 2).reshape(batch, c, d))  # (B, c, d)
            if key_padding_mask is not None:
                out = out.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
            return self.dropout(out)
