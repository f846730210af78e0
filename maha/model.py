"""Causal byte-level language models: MAHA, its full-attention peer and a local-only variant.

All models map token ids ``idx`` of shape ``(B, T)`` (int64 in ``[0, vocab)``,
``T <= block_size``) to next-token logits ``(B, T, vocab)``:

    h_0 = E_tok[idx] + E_pos[0..T-1]
    h_i = Block_i(h_{i-1}),  i = 1..n_layer
    logits = LN_f(h) E_tok^T                (tied input/output embeddings)

- :class:`MAHATransformer`: blocks are :class:`maha.MAHABlock` (causal).
- :class:`FullAttentionTransformer`: the same width, depth, heads, FFN,
  embeddings and dilated convolution, with standard causal SDPA attention.
- ``build_model("local", cfg)``: a MAHA model with only its finest scale
  (``num_scales=1``, windowed, ``strategy="mean"``), i.e. sliding-window attention
  after the dilated convolution.

:func:`build_model` builds any of :data:`VARIANTS` from one :class:`MAHAConfig`.

Streaming: ``cache = model.init_cache(B)`` then ``logits = model(idx_chunk,
cache=cache)`` for chunks of any sizes gives the logits of the full forward at
the chunk's positions (to rounding); MAHA blocks keep the cache of
:mod:`maha.streaming`, full-attention blocks a standard key/value cache.
:meth:`_LanguageModel.generate` / ``iter_generate`` use it by default. Padding:
``model(idx, key_padding_mask)`` counts each row's positions and scale blocks
from its first real token, so left-padded prompts of different lengths give
the logits of each unpadded prompt at its real positions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aggregation.validation import check_choice, check_int, check_positive, describe

from .block import DilatedConv, FeedForward, MAHABlock, ResidualBlock
from .config import MAHAConfig, check_config
from .decoding import token_decoder
from .padding import check_padding_mask, leading_padding
from .standard import StandardAttention
from .streaming import ModelCache, check_compile

__all__ = [
    "VARIANTS",
    "FullAttentionBlock",
    "FullAttentionTransformer",
    "MAHATransformer",
    "build_model",
]

#: Model variants accepted by :func:`build_model`.
VARIANTS: tuple[str, ...] = (
    "full",
    "local",
    "maha-nash",
    "maha-convex",
    "maha-fictitious_play",
    "maha-best_response",
    "maha-mean",
    "maha-softmax",
    "maha-logit",
)


class FullAttentionBlock(ResidualBlock):
    """Pre-norm block with standard causal attention: ``(B, n, d) -> (B, n, d)``.

    It has the same dilated (causal) convolution for local context as
    :class:`maha.MAHABlock`, so that a comparison of the two models differs in
    the attention alone; streaming (``init_cache``) keeps a standard key/value
    cache (:class:`maha.KVCache`).
    """

    def __init__(self, config: MAHAConfig) -> None:
        super().__init__()
        d = config.d_model
        self.ln_1 = nn.LayerNorm(d, bias=config.bias)
        self.local = DilatedConv(
            d, config.conv_kernel, config.conv_dilation, causal=config.causal, bias=config.bias
        )
        self.attn = StandardAttention(
            d,
            config.n_head,
            config.causal,
            bias=config.bias,
            dropout=config.dropout,
            max_length=config.block_size,
            rotary=config.rotary,
        )
        self.ln_2 = nn.LayerNorm(d, bias=config.bias)
        self.ffn = FeedForward(d, config.ffn_mult, config.dropout, config.bias)


class _LanguageModel(nn.Module):
    """Embeddings, a stack of blocks, final norm and a tied head (nanoGPT layout)."""

    def __init__(self, config: MAHAConfig, block: Callable[[MAHAConfig], nn.Module]) -> None:
        config = check_config(config)
        if not config.causal:
            raise ValueError("config.causal must be True for a language model; received False")
        # the blocks first: their parameters draw from the RNG before the embeddings'
        blocks = [block(config) for _ in range(config.n_layer)]
        super().__init__()
        self.config = config
        d = config.d_model
        self.wte = nn.Embedding(config.vocab_size, d)
        self.wpe = nn.Embedding(config.block_size, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(blocks)
        self.ln_f = nn.LayerNorm(d, bias=config.bias)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init_weights)
        for name, param in self.named_parameters():  # GPT-2 scaled residual projections
            if name.endswith(("out_proj.weight", "ffn.proj.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / (2 * config.n_layer) ** 0.5)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameter count (tied weights counted once); optionally without E_pos."""
        total = sum(p.numel() for p in self.parameters())
        return total - self.wpe.weight.numel() if exclude_embeddings else total

    def _check_idx(self, idx: Tensor, max_length: int | None) -> None:
        if not isinstance(idx, Tensor):
            raise TypeError(
                f"idx must be an int64 tensor of shape (B, T); received {describe(idx)}"
            )
        if idx.dtype not in (torch.int64, torch.int32, torch.uint8, torch.int16):
            raise TypeError(f"idx must be an integer tensor of token ids; received {describe(idx)}")
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (batch, length); received {describe(idx)}")
        T = idx.shape[1]
        if T < 1:
            raise ValueError(f"idx must hold at least one token; received length {T}")
        if max_length is not None and T > max_length:
            raise ValueError(f"idx length must be in [1, block_size={max_length}]; received {T}")
        if idx.numel():
            lo, hi = (int(t) for t in torch.aminmax(idx))  # one reduction, two host reads
            if lo < 0 or hi >= self.config.vocab_size:
                raise ValueError(
                    f"idx values must be in [0, vocab_size={self.config.vocab_size}); "
                    f"received values in [{lo}, {hi}]"
                )

    def init_cache(
        self,
        batch_size: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        compile: bool = False,
        compile_backend: str = "inductor",
    ) -> ModelCache:
        """An empty streaming state for ``model(idx_chunk, cache=cache)``.

        Args:
            batch_size: B.
            dtype: of the hidden states (default, and the only one accepted by
                :meth:`forward`: the model's parameters').
            device: default: the model's parameters'.
            compile: compile the model's one-token decoding step as one graph
                per phase (:class:`maha.decoding.TokenDecoder`: MAHA models whose
                strategy is in :data:`maha.decoding.STRATEGIES`, ``"local"``
                included); chunks of several tokens, the first steps of a stream,
                left-padded rows and other strategies run eagerly. The first steps
                of each phase pay the compilation (1-3 minutes with ``"inductor"``
                on a CPU at d=256, L=4, for the 4 phases of ``r = 2``); later steps
                and later caches of this model reuse it. Same logits as the eager
                cache to rounding. The full-attention model has nothing to compile.
            compile_backend: the ``torch.compile`` backend (default ``"inductor"``).

        Returns:
            A :class:`maha.ModelCache`, one block cache per block (see
            :mod:`maha.streaming` for the MAHA cache's size; the full-attention
            model keeps a standard key/value cache).
        """
        decoder = token_decoder(self, compile, compile_backend)
        param = self.wte.weight
        dtype = param.dtype if dtype is None else dtype
        device = param.device if device is None else device
        blocks = [
            cast(ResidualBlock, block).init_cache(batch_size, dtype=dtype, device=device)
            for block in self.blocks
        ]
        return ModelCache(self, batch_size, dtype, device, blocks=blocks, decoder=decoder)

    def forward(
        self,
        idx: Tensor,
        key_padding_mask: Tensor | None = None,
        *,
        cache: ModelCache | None = None,
    ) -> Tensor:
        """Next-token logits.

        Args:
            idx: ``(B, T)`` integer token ids in ``[0, vocab_size)``, ``T <= block_size``;
                with ``cache``, the next ``T`` tokens of the sequences the cache has
                seen (at most ``block_size`` in all).
            key_padding_mask: optional ``(B, T)`` bool, True at padding. Each row's
                positions (``E_pos``) and scale blocks count from its first real
                token, so a left-padded (or right-padded) row gives, at its real
                positions, the logits of the unpadded sequence. With ``cache``,
                only with the first chunk, as left padding.
            cache: a :class:`maha.ModelCache` from :meth:`init_cache`: the result
                is the rows of the full forward on the whole sequence at the
                chunk's positions.

        Returns:
            ``(B, T, vocab_size)`` logits; position t depends on ``idx[:, :t+1]`` only.
        """
        if cache is not None:
            return self._stream(idx, key_padding_mask, cache)
        self._check_idx(idx, self.config.block_size)
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)  # (T,)
        if key_padding_mask is not None:
            check_padding_mask(key_padding_mask, B, T)
            start = leading_padding(key_padding_mask.to(idx.device))  # (B,)
            pos = (pos - start.unsqueeze(1)).clamp(min=0)  # (B, T)
        h = self.drop(self.wte(idx.long()) + self.wpe(pos))  # (B, T, d)
        for block in self.blocks:
            h = block(h, key_padding_mask)
        return self.lm_head(self.ln_f(h))  # (B, T, vocab)

    def _stream(self, idx: Tensor, key_padding_mask: Tensor | None, cache: ModelCache) -> Tensor:
        """Validate a streamed chunk of token ids and run it through the block caches."""
        if not isinstance(cache, ModelCache):
            raise TypeError(
                f"cache must be a maha.ModelCache from init_cache; received {describe(cache)}"
            )
        self._check_idx(idx, None)
        cache.check(self, idx, "idx", floating=False)
        if cache.dtype != self.wte.weight.dtype:
            raise TypeError(
                f"cache was built for dtype {cache.dtype} but the model's parameters are "
                f"{self.wte.weight.dtype}; build it with init_cache(batch_size)"
            )
        B, T = idx.shape
        cache.check_room(T, self.config.block_size, "idx")
        offsets = cache.check_mask(key_padding_mask, B, T)
        decoder = cache.decoder
        if decoder is not None and decoder.applies(cache, idx):
            with cache.updating(T):
                return decoder.step(cast("MAHATransformer", self), idx, cache)
        with cache.updating(T):
            if offsets is not None:
                cache.offsets = torch.tensor(offsets, device=idx.device)  # (B,)
            pos = torch.arange(cache.position, cache.position + T, device=idx.device)  # (T,)
            if cache.offsets is not None:
                pos = (pos - cache.offsets.unsqueeze(1)).clamp(min=0)  # (B, T)
            h = self.drop(self.wte(idx.long()) + self.wpe(pos))  # (B, T, d)
            for block, block_cache in zip(self.blocks, cache.blocks):
                h = block(h, key_padding_mask, cache=block_cache)
            return self.lm_head(self.ln_f(h))  # (B, T, vocab)

    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        *,
        key_padding_mask: Tensor | None = None,
        compile: bool = False,
        compile_backend: str = "inductor",
    ) -> Tensor:
        """Sample ``max_new_tokens`` tokens autoregressively (all of :meth:`iter_generate`).

        Returns:
            ``(B, T0 + max_new_tokens)``: the prompt followed by the new tokens.
        """
        tokens = list(
            self.iter_generate(
                idx,
                max_new_tokens,
                temperature,
                top_k,
                generator,
                use_cache,
                key_padding_mask=key_padding_mask,
                compile=compile,
                compile_backend=compile_backend,
            )
        )
        return torch.cat([idx, *tokens], dim=1)

    def iter_generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        *,
        key_padding_mask: Tensor | None = None,
        compile: bool = False,
        compile_backend: str = "inductor",
    ) -> Iterator[Tensor]:
        """Sample tokens one at a time, yielding each ``(B, 1)`` as soon as it is drawn.

        Each token is drawn from ``softmax(logits / temperature)`` restricted to
        the ``top_k`` most likely tokens. Greedy decoding: ``top_k=1`` (the argmax;
        exact ties are sampled among the tied tokens).

        Context and ``block_size``: without the cache, every step runs the model
        on the last ``block_size`` tokens (the context is cropped). With the cache
        (``use_cache=True``, the default) the prompt is fed once and each new
        token costs one streamed step, exactly the logits of the uncached step
        (to rounding), as long as the sequence fits in ``block_size``; the prompt
        must then have at most ``block_size`` tokens (ValueError naming ``idx``).
        Once the sequence is longer than ``block_size`` the positional table is
        exhausted and every further step runs the model on the last ``block_size``
        tokens as without the cache (a sliding context, same tokens as the
        uncached path, at the uncached cost).

        Args:
            idx: ``(B, T0)`` prompt ids, ``T0 >= 1``.
            max_new_tokens: >= 0, the number of tokens to draw.
            temperature: > 0, logits are divided by it.
            top_k: keep only the k most likely tokens (None: all; 1: greedy).
            generator: optional RNG for the sampling.
            use_cache: stream with :meth:`init_cache` (default) or rerun the
                context at every step.
            key_padding_mask: optional ``(B, T0)`` bool, True at the left padding
                of prompts of different lengths; each row then generates as its
                unpadded prompt would (positions count from its first real token).
            compile: with the cache, compile the one-token decoding step
                (:meth:`init_cache`, :mod:`maha.decoding`; the first new tokens after
                the prompt pay the compilation unless an earlier call compiled it);
                the same tokens to rounding.
            compile_backend: the ``torch.compile`` backend (default ``"inductor"``).

        Returns:
            An iterator over ``max_new_tokens`` tensors ``(B, 1)`` (dtype of ``idx``).
        """
        check_int(max_new_tokens, "max_new_tokens", minimum=0)
        check_positive(temperature, "temperature")
        if top_k is not None:
            check_int(top_k, "top_k", minimum=1, maximum=self.config.vocab_size)
        if not isinstance(use_cache, bool):
            raise TypeError(f"use_cache must be a bool; received {describe(use_cache)}")
        check_compile(compile, compile_backend)
        self._check_idx(idx, self.config.block_size if use_cache else None)
        if key_padding_mask is not None:
            check_padding_mask(key_padding_mask, idx.shape[0], idx.shape[1])
        cache = None
        if use_cache:
            cache = self.init_cache(
                idx.shape[0], device=idx.device, compile=compile, compile_backend=compile_backend
            )
        return self._tokens(
            idx, max_new_tokens, temperature, top_k, generator, cache, key_padding_mask
        )

    @torch.no_grad()
    def _tokens(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator | None,
        cache: ModelCache | None,
        key_padding_mask: Tensor | None,
    ) -> Iterator[Tensor]:
        """The generator behind :meth:`iter_generate` (arguments validated; a new cache or None)."""
        block_size = self.config.block_size
        batch = idx.shape[0]
        seq, pad = idx, key_padding_mask
        fresh, fresh_pad = idx, key_padding_mask  # what the cache has not seen yet
        for _ in range(max_new_tokens):
            if cache is not None and cache.position + fresh.shape[1] <= block_size:
                logits = self(fresh, fresh_pad, cache=cache)[:, -1, :]  # (B, vocab)
            else:  # no cache, or past block_size: the cropped context
                cache = None
                crop = None if pad is None else pad[:, -block_size:]
                logits = self(seq[:, -block_size:], crop)[:, -1, :]  # (B, vocab)
            nxt = _sample(logits, temperature, top_k, generator).to(idx.dtype)  # (B, 1)
            yield nxt
            seq = torch.cat([seq, nxt], dim=1)
            if pad is not None:
                pad = torch.cat([pad, pad.new_zeros(batch, 1)], dim=1)
            fresh, fresh_pad = nxt, None


def _sample(
    logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> Tensor:
    """One token per row from ``softmax(logits / temperature)`` over the top k: ``(B, 1)``."""
    logits = logits / temperature  # (B, vocab)
    if top_k is not None:
        kth = torch.topk(logits, top_k).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)


class MAHATransformer(_LanguageModel):
    """Causal byte-level language model with :class:`maha.MAHABlock` blocks.

    ``forward(idx (B, T) int) -> logits (B, T, vocab_size)``. The config's
    ``causal`` field must be True (a language model).
    """

    def __init__(self, config: MAHAConfig) -> None:
        super().__init__(config, MAHABlock)


class FullAttentionTransformer(_LanguageModel):
    """The full-attention peer of :class:`MAHATransformer`: same embeddings, width,
    depth, heads, FFN and dilated convolution, standard causal SDPA attention.

    ``forward(idx (B, T) int) -> logits (B, T, vocab_size)``.
    """

    def __init__(self, config: MAHAConfig) -> None:
        super().__init__(config, FullAttentionBlock)


def build_model(variant: str, config: MAHAConfig | None = None) -> _LanguageModel:
    """Build a language model variant from one config.

    Args:
        variant: one of :data:`VARIANTS`: ``"full"`` (standard attention),
            ``"local"`` (MAHA's finest scale alone: windowed attention, one
            scale) or ``"maha-<strategy>"`` (the config with that strategy).
        config: a :class:`MAHAConfig` (default: ``MAHAConfig()``).

    Returns:
        The model; ``model(idx (B, T)) -> logits (B, T, vocab_size)``.
    """
    check_choice(variant, "variant", VARIANTS)
    config = MAHAConfig() if config is None else check_config(config)
    if variant == "full":
        return FullAttentionTransformer(config)
    if variant == "local":
        if config.window is None:
            raise ValueError(
                "variant 'local' needs config.window to be an integer >= 1; received None"
            )
        local = config.replace(num_scales=1, global_coarsest=False, strategy="mean", gating=False)
        return MAHATransformer(local)
    return MAHATransformer(config.replace(strategy=variant.removeprefix("maha-")))
