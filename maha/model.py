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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aggregation._validation import check_choice, check_int, check_positive, describe

from .block import DilatedConv, FeedForward, MAHABlock, local_context
from .config import MAHAConfig
from .standard import StandardAttention

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
)


class FullAttentionBlock(nn.Module):
    """Pre-norm block with standard causal attention: ``(B, n, d) -> (B, n, d)``.

    It has the same dilated (causal) convolution for local context as
    :class:`maha.MAHABlock`, so that a comparison of the two models differs in
    the attention alone.
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
        )
        self.ln_2 = nn.LayerNorm(d, bias=config.bias)
        self.ffn = FeedForward(d, config.ffn_mult, config.dropout, config.bias)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        u = local_context(self.ln_1, self.local, x, key_padding_mask)  # (B, n, d)
        x = x + self.attn(u, key_padding_mask=key_padding_mask)
        return x + self.ffn(self.ln_2(x))


class _LanguageModel(nn.Module):
    """Embeddings, a stack of blocks, final norm and a tied head (nanoGPT layout)."""

    def __init__(self, config: MAHAConfig, blocks: list[nn.Module]) -> None:
        super().__init__()
        if not isinstance(config, MAHAConfig):
            raise TypeError(f"config must be a MAHAConfig; received {describe(config)}")
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

    def _check_idx(self, idx: Tensor) -> None:
        if not isinstance(idx, Tensor):
            raise TypeError(
                f"idx must be an int64 tensor of shape (B, T); received {describe(idx)}"
            )
        if idx.dtype not in (torch.int64, torch.int32, torch.uint8, torch.int16):
            raise TypeError(f"idx must be an integer tensor of token ids; received {describe(idx)}")
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (batch, length); received {describe(idx)}")
        T = idx.shape[1]
        if T < 1 or T > self.config.block_size:
            raise ValueError(
                f"idx length must be in [1, block_size={self.config.block_size}]; received {T}"
            )
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise ValueError(
                f"idx values must be in [0, vocab_size={self.config.vocab_size}); received "
                f"values in [{int(idx.min())}, {int(idx.max())}]"
            )

    def forward(self, idx: Tensor) -> Tensor:
        """Next-token logits.

        Args:
            idx: ``(B, T)`` integer token ids in ``[0, vocab_size)``, ``T <= block_size``.

        Returns:
            ``(B, T, vocab_size)`` logits; position t depends on ``idx[:, :t+1]`` only.
        """
        self._check_idx(idx)
        T = idx.shape[1]
        pos = torch.arange(T, device=idx.device)
        h = self.drop(self.wte(idx.long()) + self.wpe(pos))  # (B, T, d)
        for block in self.blocks:
            h = block(h)
        return self.lm_head(self.ln_f(h))  # (B, T, vocab)

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample ``max_new_tokens`` tokens autoregressively.

        Args:
            idx: ``(B, T0)`` prompt ids.
            max_new_tokens: number of tokens to append.
            temperature: > 0, logits are divided by it.
            top_k: keep only the k most likely tokens (None: all).
            generator: optional RNG.

        Returns:
            ``(B, T0 + max_new_tokens)``; the context is cropped to the last
            ``block_size`` tokens at each step.
        """
        check_int(max_new_tokens, "max_new_tokens", minimum=0)
        check_positive(temperature, "temperature")
        if top_k is not None:
            check_int(top_k, "top_k", minimum=1, maximum=self.config.vocab_size)
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size :]
            logits = self(context)[:, -1, :] / temperature  # (B, vocab)
            if top_k is not None:
                kth = torch.topk(logits, top_k).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            idx = torch.cat([idx, nxt.to(idx.dtype)], dim=1)
        return idx


class MAHATransformer(_LanguageModel):
    """Causal byte-level language model with :class:`maha.MAHABlock` blocks.

    ``forward(idx (B, T) int) -> logits (B, T, vocab_size)``. The config's
    ``causal`` field must be True (a language model).
    """

    def __init__(self, config: MAHAConfig) -> None:
        if not isinstance(config, MAHAConfig):
            raise TypeError(f"config must be a MAHAConfig; received {describe(config)}")
        if not config.causal:
            raise ValueError("config.causal must be True for a language model; received False")
        super().__init__(config, [MAHABlock(config) for _ in range(config.n_layer)])


class FullAttentionTransformer(_LanguageModel):
    """The full-attention peer of :class:`MAHATransformer`: same embeddings, width,
    depth, heads, FFN and dilated convolution, standard causal SDPA attention.

    ``forward(idx (B, T) int) -> logits (B, T, vocab_size)``.
    """

    def __init__(self, config: MAHAConfig) -> None:
        if not isinstance(config, MAHAConfig):
            raise TypeError(f"config must be a MAHAConfig; received {describe(config)}")
        if not config.causal:
            raise ValueError("config.causal must be True for a language model; received False")
        super().__init__(config, [FullAttentionBlock(config) for _ in range(config.n_layer)])


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
    if config is None:
        config = MAHAConfig()
    if not isinstance(config, MAHAConfig):
        raise TypeError(f"config must be a MAHAConfig; received {describe(config)}")
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
