"""``MAHAAttention``: a multiscale self-attention layer (batch_first, ``layer(x)``).

Pipeline for an input ``x`` of shape ``(B, n, d)``:

1. decomposition ``X_0 = x, X_l = D_l(X_{l-1})`` (lengths ``n_l = ceil(n_{l-1}/r)``),
2. shared values ``V_0 = x W_V``, ``V_l = D_l(V_{l-1})`` (the same operators),
3. per-scale attention with scale-specific ``Q_l, K_l`` (windowed on fine
   scales, global on the coarsest),
4. causal nearest-neighbour upsampling to length n, with absent scales masked,
5. per (position, head) fusion by the scale game (or another strategy),
6. output projection ``W_O``.

Exact causality (causal mode): the output at position ``t`` is a function of
``x[:, :t+1]`` only, bit for bit: decomposition blocks never straddle their end,
a position uses only coarse blocks that end at or before it, each block attends
only earlier-or-equal blocks, and the fusion is per position.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from aggregation.validation import all_finite, check_int, describe

from .attention import MultiscaleAttention
from .config import MAHAConfig, check_config
from .decomposition import HierarchicalDecomposition, downsample_valid
from .fusion import FusionDiagnostics, ScaleFusion
from .fusion_ops import ScaleRows, scale_rows
from .padding import leading_padding, roll_rows
from .streaming import MAHACache

__all__ = ["MAHAAttention", "check_attention_inputs"]


def _is_causal_mask(mask: Tensor) -> bool:
    """True iff ``mask`` (n, n) masks exactly the strictly upper triangle."""
    n = mask.shape[-1]
    upper = torch.ones(n, n, dtype=torch.bool, device=mask.device).triu(1)
    if mask.dtype == torch.bool:
        return bool(torch.equal(mask, upper))
    blocked = torch.isneginf(mask)
    return bool(torch.equal(blocked, upper)) and bool((mask[~upper] == 0).all())


def check_attention_inputs(
    x: Tensor,
    d_model: int,
    attn_mask: Tensor | None,
    key_padding_mask: Tensor | None,
    is_causal: bool,
    max_length: int | None,
) -> tuple[bool, Tensor | None]:
    """Validate the forward arguments of an attention layer.

    Returns:
        ``(causal_from_mask, valid)``: whether ``attn_mask`` (or ``is_causal``)
        asks for causal attention, and the ``(B, n)`` bool validity mask (True
        = real token) derived from ``key_padding_mask`` (None when absent).

    Raises:
        TypeError / ValueError naming the argument, the expectation and what
        was received; ValueError if ``x`` holds NaN or inf (checked with one
        host read per call, skipped while ``torch.compile`` traces).
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"x must be a tensor of shape (batch, length, d_model); received {describe(x)}"
        )
    if x.dim() != 3:
        raise ValueError(
            f"x must have 3 dimensions (batch, length, d_model={d_model}) with batch_first=True; "
            f"received {describe(x)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor; received {describe(x)}")
    # One host read per call (skipped while torch.compile traces): a NaN/inf would
    # reach earlier positions through the fusion and real tokens through padding.
    if not torch.compiler.is_compiling() and x.device.type != "meta" and not all_finite(x):
        raise ValueError(
            "x must be finite everywhere, padding included (NaN or inf would spread to "
            f"other positions); received {int((~torch.isfinite(x)).sum())} non-finite "
            f"entries in {describe(x)}"
        )
    batch, n, width = x.shape
    if width != d_model:
        raise ValueError(f"x must have last dimension d_model={d_model}; received {describe(x)}")
    if n < 1:
        raise ValueError(f"x must have length >= 1; received {describe(x)}")
    if max_length is not None and n > max_length:
        raise ValueError(f"x length must be <= max_length={max_length}; received length {n}")
    if not isinstance(is_causal, bool):
        raise TypeError(f"is_causal must be a bool; received {describe(is_causal)}")
    causal = is_causal
    if attn_mask is not None:
        if not isinstance(attn_mask, Tensor):
            raise TypeError(f"attn_mask must be a tensor or None; received {describe(attn_mask)}")
        if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
            raise TypeError(
                f"attn_mask must be bool (True = masked) or floating (-inf = masked); "
                f"received {describe(attn_mask)}"
            )
        if tuple(attn_mask.shape) != (n, n):
            raise ValueError(
                f"attn_mask must have shape (length, length) = ({n}, {n}); "
                f"received {describe(attn_mask)}"
            )
        if not _is_causal_mask(attn_mask):
            raise ValueError(
                "attn_mask must be None or the causal mask (True / -inf strictly above the "
                "diagonal, as from nn.Transformer.generate_square_subsequent_mask): coarse "
                "scales attend blocks of tokens, so arbitrary token-level masks have no "
                "multiscale meaning; received another mask"
            )
        causal = True
    valid = None
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, Tensor):
            raise TypeError(
                f"key_padding_mask must be a tensor or None; received {describe(key_padding_mask)}"
            )
        if key_padding_mask.dtype != torch.bool:
            raise TypeError(
                f"key_padding_mask must be a bool tensor (True = padding); "
                f"received {describe(key_padding_mask)}"
            )
        if tuple(key_padding_mask.shape) != (batch, n):
            raise ValueError(
                f"key_padding_mask must have shape (batch, length) = ({batch}, {n}); "
                f"received {describe(key_padding_mask)}"
            )
        valid = ~key_padding_mask.to(x.device)
    return causal, valid


def _roll_diagnostics(diagnostics: FusionDiagnostics, shift: Tensor) -> FusionDiagnostics:
    """Rotate every per-position field (dim 1) of ``diagnostics`` by ``shift`` (``roll_rows``)."""
    changes = {
        field.name: roll_rows(value, shift)
        for field in dataclasses.fields(diagnostics)
        if isinstance(value := getattr(diagnostics, field.name), Tensor)
    }
    return dataclasses.replace(diagnostics, **changes)  # type: ignore[arg-type]


class MAHAAttention(nn.Module):
    """Multiscale Aggregated Hierarchical Attention, a self-attention layer: ``layer(x)``.

    Shapes (batch_first): ``x`` is ``(B, n, d_model)``, the output is
    ``(B, n, d_model)``. Internally scale ``l`` has length ``n_l = ceil(n / r^l)``,
    per-scale outputs are ``(B, n_l, H, d_h)``; the fusion reads them as the
    upsampled stack ``(B, n, H, L, d_h)`` (without building it, see
    :mod:`maha.fusion_ops`), fuses to ``(B, n, H, d_h)``, and ``W_O`` projects.

    Args:
        d_model: d, divisible by ``num_heads``.
        num_heads: H.
        num_scales: L >= 1.
        ratio: r >= 2.
        window: local window (rows of each scale) of the fine scales, or None
            for full attention at every scale (the paper's formulation).
        strategy: ``"nash"`` (default), ``"convex"``, ``"fictitious_play"``,
            ``"best_response"``, ``"mean"`` or ``"softmax"``; see
            :mod:`maha.fusion`.
        causal: always causal (a language model layer); otherwise causal only
            when ``forward`` gets ``is_causal=True`` or a causal ``attn_mask``.
        decomposition: ``"conv"`` (depthwise strided conv), ``"dense_conv"``,
            ``"avg"`` or ``"max"``.
        global_coarsest: the coarsest scale attends globally.
        gating: cross-scale gating (paper Eq. 12) before fusion.
        mu, asymmetric, utility_eps, solver_tol, solver_max_iter: see
            :class:`maha.fusion.ScaleFusion`.
        bias: biases in the projections and convolutions.
        dropout: dropout on the output.
        max_length: optional longest accepted input length.
        rotary: rotary position embeddings of every scale's queries and keys by the
            scale's block index (:mod:`maha.rotary`); needs an even head width.
        shared_qk: one query/key projection for every scale instead of one per scale.

    The arguments are validated once, as the fields of a :class:`maha.MAHAConfig`
    (``num_heads`` is its ``n_head``); :meth:`from_config` builds the same layer
    from a config taken whole (``block_size`` as ``max_length``).

    Padding: ``key_padding_mask`` (``(B, n)`` bool, True = padding, as in
    ``nn.MultiheadAttention``) excludes padded tokens as keys and from the
    decomposition (they are zeroed; a coarse block made only of padding is not
    a key). Outputs at padded positions are zero, also for rows that are
    entirely padding (never NaN). The scale blocks of every row are aligned at
    its first real token (:mod:`maha.padding`), so for left padding, right
    padding or both the outputs at real positions equal those of the unpadded
    sequence.

    Streaming (causal layers): ``cache = layer.init_cache(B)`` then
    ``layer(x_chunk, cache=cache)`` for chunks of any sizes gives the rows of the
    parallel causal forward on the whole sequence at the chunk's positions (to
    rounding), at ``O(L w + n / r^(L-1))`` attention cost per token; see
    :mod:`maha.streaming` for the cache's contents and size.

    Masks: ``attn_mask`` may only be the causal mask (it then means
    ``is_causal=True``); coarse scales attend *blocks* of tokens, so an
    arbitrary token-level mask has no multiscale meaning and raises.

    dtypes and compilation: the layer runs in the input's dtype and under
    ``torch.autocast`` (bfloat16 on CPU included); the games are built and
    solved in float32 at least. ``torch.compile`` works: with ``"mean"`` or
    ``"softmax"`` the layer traces into one graph (``fullgraph=True``); the game
    strategies compile with graph breaks at the solver, whose input validation
    and pivoting are data-dependent (they read tensor values on the host).

    Devices: on CUDA the windowed scales' attention runs through FlexAttention
    (a block mask of the sliding window, ``torch.compile``-d ``flex_attention``;
    :mod:`maha.flex`), the global scales through SDPA's fused kernels; on the
    CPU (and other devices) the windowed scales use the blocked kernel of
    :func:`maha.attention.local_attention`, faster there. The two paths compute
    the same attention (``tests/maha/test_flex.py``); :func:`maha.flex.use_flex`
    forces one.

    Not a drop-in for ``nn.MultiheadAttention``: self-attention only (one input
    ``x``; the second positional argument is ``attn_mask``, not ``key``),
    ``batch_first`` always, and ``forward`` returns the output alone, not an
    ``(output, weights)`` pair (use :meth:`forward_with_diagnostics` for the
    fusion weights). :class:`maha.MAHAMultiheadAttention` wraps this layer in
    ``nn.MultiheadAttention``'s constructor and call convention, e.g. as
    ``nn.TransformerEncoderLayer.self_attn``; its docstring lists what carries
    over and what does not.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_scales: int = 4,
        ratio: int = 2,
        window: int | None = 64,
        strategy: str = "nash",
        causal: bool = False,
        *,
        decomposition: str = "conv",
        global_coarsest: bool = True,
        gating: bool = False,
        mu: float = 1.0,
        asymmetric: bool = False,
        utility_eps: float = 1e-3,
        solver_tol: float | None = None,
        solver_max_iter: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        max_length: int | None = None,
        rotary: bool = False,
        shared_qk: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if max_length is not None:
            check_int(max_length, "max_length", minimum=1)
        config = MAHAConfig(  # validates every field once; block_size is the layer's max_length
            d_model=d_model,
            n_head=num_heads,
            num_scales=num_scales,
            ratio=ratio,
            window=window,
            strategy=strategy,
            decomposition=decomposition,
            global_coarsest=global_coarsest,
            gating=gating,
            mu=mu,
            asymmetric=asymmetric,
            utility_eps=utility_eps,
            solver_tol=solver_tol,
            solver_max_iter=solver_max_iter,
            dropout=dropout,
            bias=bias,
            causal=causal,
            rotary=rotary,
            shared_qk=shared_qk,
            **({} if max_length is None else {"block_size": max_length}),
        )
        self._build(config, max_length, device, dtype)

    @classmethod
    def from_config(
        cls,
        config: MAHAConfig,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> MAHAAttention:
        """The layer with every hyper-parameter taken from ``config`` (nanoGPT's ``Block(config)``).

        ``d_model``, ``n_head`` (the layer's ``num_heads``), ``causal``, ``bias``,
        ``dropout`` and the scale, window, fusion and solver fields are used;
        ``block_size`` becomes ``max_length`` (the longest accepted input). The
        fields were validated when the config was built; this checks its type.
        The same layer as the constructor with those arguments (one build path,
        :meth:`_build`); a subclass's own ``__init__`` is not run.
        """
        config = check_config(config)
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._build(config, config.block_size, device, dtype)
        return layer

    def _build(
        self,
        config: MAHAConfig,
        max_length: int | None,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        """Build the sub-modules from a validated ``config`` (the one constructor path)."""
        self.d_model = config.d_model
        self.num_heads = config.num_heads
        self.num_scales = config.num_scales
        self.ratio = config.ratio
        self.window = config.window
        self.strategy = config.strategy
        self.causal = config.causal
        self.max_length = max_length
        self.batch_first = True
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.decomposition = HierarchicalDecomposition(
            config.d_model,
            config.num_scales,
            config.ratio,
            config.decomposition,
            bias=config.bias,
            **factory,
        )
        self.attention = MultiscaleAttention(
            config.d_model,
            config.num_heads,
            config.num_scales,
            config.window,
            global_coarsest=config.global_coarsest,
            bias=config.bias,
            rotary=config.rotary,
            shared_qk=config.shared_qk,
            **factory,
        )
        self.fusion = ScaleFusion.from_config(config, **factory)
        self.out_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias, **factory)
        self.dropout = nn.Dropout(config.dropout)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def init_cache(
        self,
        batch_size: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        compile: bool = False,
        compile_backend: str = "inductor",
    ) -> MAHACache:
        """An empty streaming state for ``forward(x_chunk, cache=cache)`` (causal layers only).

        Args:
            batch_size: B, the rows of every chunk.
            dtype: the chunks' dtype (default: the layer's parameters').
            device: the chunks' device (default: the layer's parameters').
            compile: run the fusion of every one-token chunk after the first (a
                decoding step) through ``torch.compile`` with static shapes
                (:func:`maha.streaming.fuse_step`; nash and convex strategies, ``L >= 2``).
                The first decoding step pays the compilation (20-45 s with
                ``"inductor"`` on a CPU at d=256, L=4), later steps and later caches
                of this layer reuse it; outputs equal the eager cache's to rounding.
            compile_backend: the ``torch.compile`` backend (``"inductor"``;
                ``"aot_eager"`` compiles in seconds, without code generation).

        Returns:
            A :class:`maha.MAHACache`; see :mod:`maha.streaming` for what it holds
            (a fraction of a key/value cache when ``window`` is set).
        """
        if not self.causal:
            raise ValueError(
                "init_cache needs a causal layer (built with causal=True): streaming feeds a "
                "sequence in order; this layer is non-causal"
            )
        param = self.out_proj.weight
        return MAHACache(
            self,
            batch_size,
            param.dtype if dtype is None else dtype,
            param.device if device is None else device,
            compile=compile,
            compile_backend=compile_backend,
        )

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
        *,
        cache: MAHACache | None = None,
    ) -> Tensor:
        """Self-attention output.

        Args:
            x: ``(B, n, d_model)`` (batch_first); with ``cache``, the next ``c = n``
                tokens of the stream.
            attn_mask: None or the causal ``(n, n)`` mask (bool True = masked, or
                float with ``-inf`` above the diagonal); it means ``is_causal=True``.
                None with ``cache``.
            key_padding_mask: optional ``(B, n)`` bool, True at padding. With
                ``cache``, only with the first chunk, as left padding.
            is_causal: causal attention (always on if the layer was built causal).
            cache: a :class:`maha.MAHACache` from :meth:`init_cache` (causal layers):
                ``x`` continues the sequence the cache has seen, and the result is
                the rows of the parallel causal forward on the whole sequence at
                the chunk's positions.

        Returns:
            ``(B, n, d_model)``.
        """
        if cache is not None:
            return self._stream(x, attn_mask, key_padding_mask, cache)
        return self._run(x, attn_mask, key_padding_mask, is_causal)[0]

    def _stream(
        self,
        x: Tensor,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        cache: MAHACache,
    ) -> Tensor:
        """Validate a streamed chunk and feed it to ``cache``."""
        if not isinstance(cache, MAHACache):
            raise TypeError(
                f"cache must be a maha.MAHACache from init_cache; received {describe(cache)}"
            )
        if not self.causal:
            raise ValueError(
                "cache is only for causal layers (built with causal=True); this layer is "
                "non-causal, so a chunk cannot be processed before the tokens after it"
            )
        if attn_mask is not None:
            raise ValueError(
                "attn_mask must be None with cache (the streamed layer is causal); "
                f"received {describe(attn_mask)}"
            )
        check_attention_inputs(x, self.d_model, None, None, False, None)
        cache.check(self, x, "x")
        cache.check_room(x.shape[1], self.max_length, "x")
        cache.check_mask(key_padding_mask, x.shape[0], x.shape[1])
        with cache.updating(x.shape[1]):
            return self.dropout(cache.run(self, x, key_padding_mask))

    def forward_with_diagnostics(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> tuple[Tensor, FusionDiagnostics]:
        """Like :meth:`forward`, also returning the fusion's diagnostics.

        Returns:
            ``(out, diagnostics)``: ``(B, n, d_model)`` and a
            :class:`maha.fusion.FusionDiagnostics` with the weights ``(B, n, H, L)``,
            the presence mask ``(B, n, L)`` and, for game strategies, the
            utilities, interaction matrices, equilibria, regrets and
            convergence flags.
        """
        return self._run(x, attn_mask, key_padding_mask, is_causal)

    def _run(
        self,
        x: Tensor,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        is_causal: bool,
    ) -> tuple[Tensor, FusionDiagnostics]:
        causal, valid = check_attention_inputs(
            x, self.d_model, attn_mask, key_padding_mask, is_causal, self.max_length
        )
        causal = causal or self.causal
        n = x.shape[1]
        shift = None
        if valid is not None:  # align every row at its first real token (maha.padding)
            shift = leading_padding(~valid)  # (B,)
            x, valid = roll_rows(x, shift), roll_rows(valid, shift)
        L = self.num_scales
        valids = None if valid is None else downsample_valid(valid, L, self.ratio)
        scales = self.decomposition(x, valid)  # L x (B, n_l, d)
        values = self.decomposition(self.attention.value(x), valid)  # L x (B, n_l, d)
        per_scale = self.attention(scales, values, valids, causal=causal)
        outs = [out_l for out_l, _ in per_scale]  # L x (B, n_l, H, d_h)
        has_keys = [has_key for _, has_key in per_scale]  # L x (B, n_l) or None
        # The fusion reads the upsampled stack (B, n, H, L, d_h) chunk by chunk.
        rows, present = scale_rows(outs, has_keys, n, self.ratio, causal=causal)  # (B, n, L)
        out, diagnostics = self.fuse(rows, present)  # (B, n, d)
        if valid is not None and shift is not None:
            out = roll_rows(out.masked_fill(~valid.unsqueeze(-1), 0.0), -shift)
            diagnostics = _roll_diagnostics(diagnostics, -shift)
        return self.dropout(out), diagnostics

    def fuse(self, rows: ScaleRows | Tensor, present: Tensor) -> tuple[Tensor, FusionDiagnostics]:
        """Fusion and output projection of the scale outputs of ``n`` positions.

        Args:
            rows: the upsampled scale outputs, :func:`maha.fusion_ops.scale_rows` or
                the stack ``(B, n, H, L, d_h)`` (see :meth:`maha.ScaleFusion.forward`).
            present: ``(B, n, L)`` bool.

        Returns:
            ``(W_O fused, diagnostics)``: ``(B, n, d_model)`` and the fusion's
            :class:`maha.fusion.FusionDiagnostics`.
        """
        fused = self.fusion(rows, present)
        batch, n = present.shape[:2]
        out = self.out_proj(fused.output.reshape(batch, n, self.d_model))  # (B, n, d)
        return out, fused.diagnostics

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, num_heads={self.num_heads}, num_scales={self.num_scales}, "
            f"ratio={self.ratio}, window={self.window}, strategy={self.strategy!r}, "
            f"causal={self.causal}, batch_first=True"
        )
