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

Local attention is computed blockwise (:mod:`maha.blocked`): the queries of block
``b`` (``w`` rows) attend the keys of blocks ``b-1, b`` (causal) or ``b-1, b, b+1``
with an exact ``(w, 2w)`` / ``(w, 3w)`` mask, batched products over chunks of blocks
with a hand-written backward: cost ``4 n w' d_h`` per head with ``w' = 2w`` or ``3w``
instead of ``4 n^2 d_h``. The layer hands it each scale's query/key projection output
``[Q_l | K_l]`` ``(B, n_l, 2d)`` and values ``(B, n_l, d)`` as they are
(:meth:`MultiscaleAttention.project_packed`), read in place. A query with no allowed
key (only possible with padding) gets a zero output and ``has_key = False``. The
coarsest scale (and any scale the window covers) uses PyTorch's SDPA.

Devices: that blocked path runs on the CPU (and any device but CUDA); on CUDA
the windowed scales run through FlexAttention with a block mask of the same
window (:mod:`maha.flex`, one fused compiled kernel), and the global scales
through SDPA's fused kernels. :func:`maha.flex.use_flex` forces either path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocked import local_attention, packed_local_attention
from .config import validate_layer_args
from .rotary import rotate_packed

__all__ = [
    "MultiscaleAttention",
    "cached_attention",
    "global_attention",
    "local_attention",
    "packed_local_attention",
]


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

    def project_packed(self, scale: int, x_l: Tensor, start: int | Tensor = 0) -> Tensor:
        """``[Q_l | K_l] = X_l [W_Q^l | W_K^l]``, packed: ``(B, n_l, 2d)``.

        Columns ``0 .. d - 1`` hold the queries, ``d .. 2d - 1`` the keys, head ``h`` in
        the ``d_h`` columns from ``h d_h`` of each (the layout of
        :func:`maha.blocked.packed_local_attention`). With :attr:`rotary`, the row of
        block index ``j`` has ``Q_l``, ``K_l`` rotated by ``j``
        (:func:`maha.rotary.rotate_packed`).

        Args:
            scale: l.
            x_l: ``(B, n_l, d)`` rows of scale l.
            start: the block index of the first row (int, or a one-element integer
                tensor in a compiled decoding step); streaming passes the number of
                scale-l blocks before the chunk.
        """
        qk = self.qk[0 if self.shared_qk else scale](x_l)  # (B, n_l, 2d)
        if self.rotary:
            qk = rotate_packed(qk, self.num_heads, start)
        return qk

    def project(
        self, scale: int, x_l: Tensor, v_l: Tensor, start: int | Tensor = 0
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``Q_l = X_l W_Q^l``, ``K_l = X_l W_K^l`` and the values, in head layout.

        Views of :meth:`project_packed` (rotated by block index with :attr:`rotary`).

        Args:
            scale: l.
            x_l: ``(B, n_l, d)`` rows of scale l.
            v_l: ``(B, n_l, d)`` their values (``X W_V`` downsampled like ``X``).
            start: the block index of the first row (see :meth:`project_packed`).

        Returns:
            ``(q, k, v)``, each ``(B, H, n_l, d_h)``.
        """
        q_l, k_l = self.project_packed(scale, x_l, start).chunk(2, dim=-1)  # (B, n_l, d) each
        return self._heads(q_l), self._heads(k_l), self._heads(v_l)  # (B, H, n_l, d_h) each

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
        return [
            self.scale_attention(l, x_l, v_l, None if valid is None else valid[l], causal=causal)
            for l, (x_l, v_l) in enumerate(zip(scales, values))
        ]

    def scale_attention(
        self, scale: int, x_l: Tensor, v_l: Tensor, valid_l: Tensor | None, *, causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Attention output of one scale (one item of :meth:`forward`).

        Windowed scales (:meth:`is_local`) run the blocked kernel on the packed projection
        (:func:`packed_local_attention`), the others SDPA (:func:`global_attention`).

        Args:
            scale: l.
            x_l: ``(B, n_l, d)`` rows of scale l.
            v_l: ``(B, n_l, d)`` their values.
            valid_l: optional ``(B, n_l)`` bool, True at real blocks.
            causal: block ``j`` attends only blocks ``k <= j``.

        Returns:
            ``(O_l, has_key_l)``: ``(B, n_l, H, d_h)`` and ``(B, n_l)`` bool or None.
        """
        if self.is_local(scale, x_l.shape[1]):
            qk = self.project_packed(scale, x_l)  # (B, n_l, 2d), read in place
            out, has_key = packed_local_attention(
                qk, v_l, self.num_heads, self.window, causal=causal, valid=valid_l
            )
        else:
            q_l, k_l, v_h = self.project(scale, x_l, v_l)  # (B, H, n_l, d_h) each
            out, has_key = global_attention(q_l, k_l, v_h, causal=causal, valid=valid_l)
        return out.transpose(1, 2), has_key  # (B, n_l, H, d_h)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, num_heads={self.num_heads}, num_scales={self.num_scales}, "
            f"window={self.window}, global_coarsest={self.global_coarsest}"
            + (", rotary=True" if self.rotary else "")
            + (", shared_qk=True" if self.shared_qk else "")
        )
