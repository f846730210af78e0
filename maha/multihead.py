"""``MAHAMultiheadAttention``: MAHA behind ``nn.MultiheadAttention``'s call convention.

:class:`maha.MAHAAttention` has its own short signature, ``layer(x)`` on a
batch-first ``x``. This adapter wraps one (composition, as :attr:`layer`) so that
code written for ``nn.MultiheadAttention`` runs unchanged where it uses
*self*-attention::

    out, weights = attn(query, key, value, key_padding_mask=None, need_weights=True,
                        attn_mask=None, average_attn_weights=True, is_causal=False)

with ``key is query and value is query``; in particular it can replace
``nn.TransformerEncoderLayer(...).self_attn``. The computation is exactly
``layer(x, attn_mask, key_padding_mask, is_causal)`` on the batch-first view of
``query``: no arithmetic is added.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from aggregation.validation import describe

from .config import MAHAConfig
from .layer import MAHAAttention

__all__ = ["MAHAMultiheadAttention"]


def _padding_as_bool(key_padding_mask: Tensor | None) -> Tensor | None:
    """``key_padding_mask`` as bool (True = padding).

    ``nn.MultiheadAttention`` takes a bool mask (True = ignore) or a float mask added to the
    attention logits; ``nn.TransformerEncoderLayer`` turns a bool mask into the float mask
    with ``-inf`` at padding and ``0`` elsewhere before it calls ``self_attn``. A float mask
    must be of that form (any other value has no meaning for MAHA's block keys).
    """
    if key_padding_mask is None or not isinstance(key_padding_mask, Tensor):
        return key_padding_mask
    if not key_padding_mask.is_floating_point():
        return key_padding_mask
    pad = torch.isneginf(key_padding_mask)
    if not bool((pad | (key_padding_mask == 0)).all()):  # public boundary: one host read
        raise ValueError(
            "key_padding_mask must be bool (True = padding) or float with only 0 (keep) and "
            "-inf (padding), as nn.TransformerEncoderLayer passes it; received a float mask "
            "with other values"
        )
    return pad


class MAHAMultiheadAttention(nn.Module):
    """Multiscale self-attention with ``nn.MultiheadAttention``'s constructor and call.

    ``forward(query, key, value, ...)`` computes :class:`maha.MAHAAttention`'s output
    ``y = W_O fuse_l(upsample(Attn_l(Q_l, K_l, V_l)))`` (see :mod:`maha.layer`) of
    ``x = query`` and returns ``(y, None)``.

    Shapes (as ``nn.MultiheadAttention``): ``query`` is ``(n, B, E)`` with
    ``batch_first=False`` (the default, as in torch), ``(B, n, E)`` with
    ``batch_first=True``, or unbatched ``(n, E)``; the output has the shape of
    ``query``. ``key_padding_mask`` is ``(B, n)`` (``(n,)`` unbatched), bool with True
    at padding, or float with ``-inf`` at padding and ``0`` elsewhere (the form
    ``nn.TransformerEncoderLayer`` passes).

    What is drop-in:

    - the constructor's leading arguments ``(embed_dim, num_heads, dropout, bias,
      add_bias_kv, add_zero_attn, kdim, vdim, batch_first, device, dtype)`` in
      ``nn.MultiheadAttention``'s order (the unsupported ones must keep their
      defaults); MAHA's own hyper-parameters are keyword-only after them, or come
      whole from a :class:`maha.MAHAConfig` via :meth:`from_config`;
    - the forward signature and the ``(output, weights)`` return;
    - ``batch_first``, unbatched inputs, ``key_padding_mask``, ``is_causal`` and the
      causal ``attn_mask`` (bool, or float with ``-inf`` above the diagonal);
    - use as ``nn.TransformerEncoderLayer(...).self_attn`` (and in
      ``nn.TransformerEncoder``), forward and backward, train and eval:
      :attr:`in_proj_weight` and :attr:`in_proj_bias` are None and
      :attr:`_qkv_same_embed_dim` is False (there is no packed ``(3E, E)`` input
      projection), so the encoder layer's fused inference kernel, which needs one,
      is never taken and the layer always calls this module. An
      ``nn.TransformerEncoder`` built around ``nn.MultiheadAttention`` layers whose
      ``self_attn`` were swapped afterwards still packs a right-padded batch into a
      nested tensor (eval mode, no gradients): nested queries are accepted too.

    What is not:

    - self-attention only: ``key`` and ``value`` must be the ``query`` tensor
      itself, else ``ValueError`` (cross-attention is not supported); so it cannot
      serve as ``nn.TransformerDecoderLayer.multihead_attn``;
    - the returned weights are always ``None``, whatever ``need_weights`` and
      ``average_attn_weights`` say: MAHA has no single ``(n, n)`` attention matrix
      (each scale attends its own keys, and the scales are fused per position and
      head). The fusion weights ``(B, n, H, L)`` are available from
      ``attn.layer.forward_with_diagnostics(x)``;
    - ``attn_mask`` may only be the causal mask (``(n, n)``; no per-head
      ``(B H, n, n)`` masks, no arbitrary masks: coarse scales attend blocks of
      tokens, so a token-level mask has no multiscale meaning) and raises otherwise;
    - ``dropout`` applies to the layer's output, not to attention weights;
    - outputs at padded query positions are zero (``nn.MultiheadAttention``
      computes them; it gives NaN for a row that is all padding, MAHA zero); real
      positions follow :class:`maha.MAHAAttention`'s padding guarantee;
    - ``add_bias_kv``, ``add_zero_attn``, ``kdim``/``vdim`` other than ``embed_dim``
      raise ``ValueError``;
    - streaming: the cache of :meth:`maha.MAHAAttention.init_cache` is used through
      :attr:`layer` (``attn.layer(x_chunk, cache=cache)``, batch first).

    Reference: MAHA, arXiv 2512.14925; ``torch.nn.MultiheadAttention`` for the
    call convention.

    Args:
        embed_dim: E, divisible by ``num_heads``.
        num_heads: H.
        dropout: dropout probability on the output.
        bias: biases in the projections and convolutions.
        add_bias_kv, add_zero_attn, kdim, vdim: accepted at their defaults only.
        batch_first: inputs are ``(B, n, E)`` (True) or ``(n, B, E)`` (False).
        device, dtype: of the parameters.
        **options: :class:`maha.MAHAAttention`'s keyword arguments (``num_scales``,
            ``ratio``, ``window``, ``strategy``, ``causal``, ``decomposition``,
            ``global_coarsest``, ``gating``, ``mu``, ``asymmetric``, ``utility_eps``,
            ``solver_tol``, ``solver_max_iter``, ``max_length``), passed to it as
            they are (one constructor path; its defaults and checks apply).

    Attributes:
        layer: the wrapped :class:`maha.MAHAAttention` (batch first); calling it
            directly gives the same numbers.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        for name, value in (("add_bias_kv", add_bias_kv), ("add_zero_attn", add_zero_attn)):
            if value is not False:
                raise ValueError(
                    f"{name} must be False: MAHA has no extra key/value rows; received "
                    f"{describe(value)}"
                )
        for name, value in (("kdim", kdim), ("vdim", vdim)):
            if value is not None and value != embed_dim:
                raise ValueError(
                    f"{name} must be None or embed_dim={embed_dim} (self-attention only); "
                    f"received {describe(value)}"
                )
        layer = MAHAAttention(
            embed_dim, num_heads, bias=bias, dropout=dropout, device=device, dtype=dtype, **options
        )
        self._wrap(layer, batch_first)

    @classmethod
    def from_config(
        cls,
        config: MAHAConfig,
        *,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> MAHAMultiheadAttention:
        """The adapter around :meth:`maha.MAHAAttention.from_config` (the fields of ``config``).

        ``d_model``, ``n_head``, ``dropout``, ``bias``, ``causal`` and the scale,
        window, fusion and solver fields are used; ``block_size`` becomes
        ``max_length`` (the longest accepted input).
        """
        adapter = cls.__new__(cls)
        nn.Module.__init__(adapter)
        adapter._wrap(MAHAAttention.from_config(config, device=device, dtype=dtype), batch_first)
        return adapter

    def _wrap(self, layer: MAHAAttention, batch_first: bool) -> None:
        """Hold ``layer`` and set ``nn.MultiheadAttention``'s attributes (both constructors)."""
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first must be a bool; received {describe(batch_first)}")
        self.layer = layer
        # nn.MultiheadAttention's public attributes, with their meaning here.
        self.embed_dim = layer.d_model
        self.kdim = layer.d_model
        self.vdim = layer.d_model
        self.num_heads = layer.num_heads
        self.head_dim = layer.head_dim
        self.dropout = float(layer.dropout.p)
        self.batch_first = batch_first
        self.add_zero_attn = False
        self.bias_k: Tensor | None = None
        self.bias_v: Tensor | None = None
        # No packed (3E, E) input projection: torch's fused fast paths check these and
        # fall back to calling forward().
        self._qkv_same_embed_dim = False
        self.in_proj_weight: Tensor | None = None
        self.in_proj_bias: Tensor | None = None

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, None]:
        """Self-attention of ``query``, in ``nn.MultiheadAttention``'s convention.

        Args:
            query: ``(n, B, E)`` (``batch_first=False``), ``(B, n, E)``
                (``batch_first=True``) or ``(n, E)`` (unbatched).
            key, value: the ``query`` tensor itself (self-attention only).
            key_padding_mask: None, or ``(B, n)`` (``(n,)`` unbatched): bool, True at
                padding, or float, ``-inf`` at padding and ``0`` elsewhere.
            need_weights, average_attn_weights: accepted for compatibility; no
                weights are ever returned (see the class docstring).
            attn_mask: None or the causal ``(n, n)`` mask; it means ``is_causal=True``.
            is_causal: causal attention (always on if built with ``causal=True``).

        Returns:
            ``(output, None)``; ``output`` has the shape of ``query``.

        Raises:
            ValueError: ``key`` or ``value`` is not ``query`` (cross-attention), a
                mask of the wrong shape or kind; TypeError: a non-tensor input or a
                non-bool flag.
        """
        if not isinstance(query, Tensor):
            raise TypeError(f"query must be a tensor; received {describe(query)}")
        if key is not query or value is not query:
            raise ValueError(
                "MAHAMultiheadAttention is self-attention only: key and value must be the "
                "query tensor itself, as in attn(x, x, x); cross-attention is not supported; "
                f"received query {describe(query)}, key {describe(key)}, value {describe(value)}"
                " (not the same tensor object)"
            )
        for name, flag in (
            ("need_weights", need_weights),
            ("average_attn_weights", average_attn_weights),
            ("is_causal", is_causal),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool; received {describe(flag)}")
        if query.dim() not in (2, 3):
            layout = "(B, n, E)" if self.batch_first else "(n, B, E)"
            raise ValueError(
                f"query must be {layout} (batch_first={self.batch_first}) or unbatched (n, E) "
                f"with E=embed_dim={self.embed_dim}; received {describe(query)}"
            )
        if query.is_nested:
            return self._forward_nested(query, attn_mask, key_padding_mask, is_causal), None
        unbatched = query.dim() == 2
        padding = _padding_as_bool(key_padding_mask)
        if unbatched:
            x = query.unsqueeze(0)  # (1, n, E)
            if isinstance(padding, Tensor):
                if padding.dim() != 1:
                    raise ValueError(
                        "key_padding_mask must have shape (n,) for an unbatched query; "
                        f"received {describe(key_padding_mask)}"
                    )
                padding = padding.unsqueeze(0)  # (1, n)
        elif self.batch_first:
            x = query  # (B, n, E)
        else:
            x = query.transpose(0, 1)  # (n, B, E) -> (B, n, E)
        out = self.layer(x, attn_mask, padding, is_causal)  # (B, n, E)
        if unbatched:
            return out.squeeze(0), None  # (n, E)
        return (out if self.batch_first else out.transpose(0, 1)), None

    def _forward_nested(
        self, query: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None, causal: bool
    ) -> Tensor:
        """A nested ``(B, n_b, E)`` query: the padded batch with its padding mask, re-nested.

        ``nn.TransformerEncoder`` in eval mode without gradients, whose constructor saw
        ``nn.MultiheadAttention`` layers, packs a right-padded batch into a nested tensor
        before calling the layers. Rows are right-padded here, so every real position gets
        exactly the output of its unpadded sequence (:class:`maha.MAHAAttention`).
        """
        if key_padding_mask is not None or attn_mask is not None:
            raise ValueError(
                "a nested query carries its own lengths: key_padding_mask and attn_mask must "
                f"be None (use is_causal); received {describe(key_padding_mask)} and "
                f"{describe(attn_mask)}"
            )
        rows = query.unbind()  # B x (n_b, E)
        lengths = torch.tensor([row.shape[0] for row in rows], device=query.device)  # (B,)
        padded = query.to_padded_tensor(0.0)  # (B, n_max, E)
        positions = torch.arange(padded.shape[1], device=query.device)  # (n_max,)
        padding = positions >= lengths.unsqueeze(1)  # (B, n_max) True at padding
        out = self.layer(padded, None, padding, causal)  # (B, n_max, E)
        parts = [out[b, : row.shape[0]] for b, row in enumerate(rows)]  # B x (n_b, E)
        return torch.nested.as_nested_tensor(parts, layout=query.layout)

    @property
    def out_proj(self) -> nn.Linear:
        """The output projection ``W_O`` (``nn.MultiheadAttention`` has one of this name)."""
        return self.layer.out_proj

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, " + (
            f"batch_first={self.batch_first}"
        )
