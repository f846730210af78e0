"""H-Transformer-1D's causal attention in the library's backbone: a peer of the LM benchmark.

H-Transformer-1D (Zhu & Soricut, "H-Transformer-1D: Fast One-Dimensional Hierarchical
Attention for Sequences", ACL 2021) approximates the attention matrix by a hierarchical
(H-matrix) one: exact attention inside diagonal blocks of ``N_r`` tokens and, at level
``l >= 1``, attention between neighbouring off-diagonal blocks of queries and keys averaged over
``2^l`` tokens (values summed), the levels' numerators ``Y_l`` and normalisers ``A_l`` added
after interpolation back to full length:

    out_i = (Σ_l Y_l[i]) / (Σ_l A_l[i] + eps),   Y_l = exp(S_l) V_l,   A_l = exp(S_l) 1.

The package ``h-transformer-1d`` (``CausalHAttention1D``, rotary position embeddings as its
``HTransformer1D`` uses them) masks every level so that position ``i`` receives a coarse level
only where ``i`` closes its ``2^l``-group: exactly causal (checked by :func:`causal_leak`), but
most positions see only their own diagonal block (:func:`receptive_field` measures it).

The model is :class:`maha.model.FullAttentionTransformer` (embeddings, per block pre-norm,
causal dilated convolution, attention, FFN; tied head) with each block's attention replaced by
the package's module through :class:`HAttentionAdapter`, initialised as the backbone
initialises its own attention. It is a variant of ``benchmarks/lm_quality.py`` only; run as a
script it trains one run in its own process (its peak memory is its own)::

    python benchmarks/peers/h_transformer.py --train-config CONFIG.json --json-out RUN.json \\
        --peer-block-size 64
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from maha import MAHAConfig
from maha.model import FullAttentionTransformer
from maha.training import PreparedRun, TrainConfig, prepare, train

VARIANT = "peer-htransformer"
#: The same peer without its rotary position embeddings: only the backbone's learned absolute
#: positions, as the library's models without ``MAHAConfig.rotary`` (the controlled comparison).
VARIANT_NO_ROTARY = "peer-htransformer-norope"
VARIANTS = (VARIANT, VARIANT_NO_ROTARY)


def available() -> bool:
    """Whether the optional ``h-transformer-1d`` package (the ``peers`` extra) is installed."""
    try:
        import h_transformer_1d  # noqa: F401
    except ImportError:
        return False
    return True


class HAttentionAdapter(nn.Module):
    """The block-attention interface of the backbone around a package attention module.

    ``forward(x (B, n, d)) -> (B, n, d)``; the package has no padding mask and no streaming
    cache, so either raises ``ValueError``.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(
        self, x: Tensor, key_padding_mask: Tensor | None = None, *, cache: object = None
    ) -> Tensor:
        if key_padding_mask is not None:
            raise ValueError("key_padding_mask: H-Transformer-1D has none; received a mask")
        if cache is not None:
            raise ValueError("cache: H-Transformer-1D does not stream; received a cache")
        return self.inner(x)  # (B, n, d)


def check_lengths(config: MAHAConfig, block_size: int) -> None:
    """``ValueError`` unless the package accepts ``config.block_size`` with ``block_size``.

    The package needs ``block_size / N_r`` to be a power of two and at least 2.
    """
    n = config.block_size
    if not isinstance(block_size, int) or block_size < 1 or n % block_size:
        raise ValueError(
            f"peer_block_size must be a positive divisor of the sequence length {n}; "
            f"received {block_size!r}"
        )
    blocks = n // block_size
    if blocks < 2 or blocks & (blocks - 1):
        raise ValueError(
            f"sequence length / peer_block_size must be a power of two >= 2 for "
            f"H-Transformer-1D; received {n} / {block_size} = {blocks}"
        )


def build_attention(config: MAHAConfig, block_size: int, rotary: bool = True) -> nn.Module:
    """One ``CausalHAttention1D`` of width ``d``, ``H`` heads of ``d / H``.

    ``rotary``: the package's rotary position embeddings (its default use), or none.
    """
    from h_transformer_1d.h_transformer_1d import CausalHAttention1D
    from rotary_embedding_torch import RotaryEmbedding

    check_lengths(config, block_size)
    dim_head = config.d_model // config.n_head
    return CausalHAttention1D(
        config.d_model,
        max_seq_len=config.block_size,
        heads=config.n_head,
        dim_head=dim_head,
        block_size=block_size,
        pos_emb=RotaryEmbedding(dim=dim_head) if rotary else None,
    )


def build_peer_model(
    config: MAHAConfig, block_size: int, rotary: bool = True
) -> FullAttentionTransformer:
    """The backbone of ``FullAttentionTransformer(config)`` with H-Transformer-1D attention.

    The new attention's linear maps get the backbone's initialisation (normal, std 0.02, zero
    biases; the output map std ``0.02 / sqrt(2 n_layer)``, GPT-2's residual scaling).
    """
    model = FullAttentionTransformer(config)
    for block in model.blocks:
        attention = HAttentionAdapter(build_attention(config, block_size, rotary))
        attention.apply(model._init_weights)
        nn.init.normal_(attention.inner.to_out.weight, 0.0, 0.02 / math.sqrt(2 * config.n_layer))
        block.attn = attention
    return model


def count_parameters(config: MAHAConfig, block_size: int, rotary: bool = True) -> int:
    """Parameters of :func:`build_peer_model` (built on the meta device).

    The package holds its rotary frequencies as a (frozen) parameter, ``d_h / 2`` per layer.
    """
    with torch.device("meta"):
        model = build_peer_model(config, block_size, rotary)
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def causal_leak(
    model: nn.Module,
    length: int,
    *,
    positions: list[int] | None = None,
    vocab: int = 256,
    seed: int = 0,
) -> float:
    """``max_t max |logits'[:, :t+1] - logits[:, :t+1]|`` when the tokens after ``t`` change.

    For every ``t`` in ``positions`` (default: every ``t < length - 1``) the tokens ``t+1..`` of
    two random sequences are redrawn; a causal model gives exactly 0 (up to the rounding of its
    dtype).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (2, length), generator=g)  # (2, n)
    base = model(x)  # (2, n, vocab)
    worst = 0.0
    for t in range(length - 1) if positions is None else positions:
        y = x.clone()
        y[:, t + 1 :] = torch.randint(0, vocab, (2, length - t - 1), generator=g)
        worst = max(worst, float((model(y)[:, : t + 1] - base[:, : t + 1]).abs().max()))
    return worst


def receptive_field(config: MAHAConfig, block_size: int, *, samples: int = 64) -> dict:
    """How many of its ``t + 1`` prefix positions one attention output depends on.

    For ``samples`` evenly spaced positions ``t``: the positions ``s <= t`` with a nonzero
    gradient of ``out_t`` with respect to ``x_s`` (float64, one sequence). Returns the mean
    share of the prefix seen, the share of positions that see only their own diagonal block
    and the mean share for the positions past the first block.
    """
    torch.manual_seed(0)
    attention = build_attention(config, block_size).double()
    n = config.block_size
    x = torch.randn(1, n, config.d_model, dtype=torch.float64, requires_grad=True)  # (1, n, d)
    out = attention(x)  # (1, n, d)
    picks = torch.linspace(0, n - 1, min(samples, n)).round().long().unique().tolist()
    shares, own_block, late = [], 0, []
    for t in picks:
        (grad,) = torch.autograd.grad(out[0, t].sum(), x, retain_graph=True)  # (1, n, d)
        seen = (grad[0].abs().sum(-1) > 0).nonzero().flatten()  # (k,)
        shares.append(seen.numel() / (t + 1))
        own_block += int(bool((seen >= (t // block_size) * block_size).all()))
        if t >= block_size:
            late.append(shares[-1])
    return {
        "length": n,
        "peer_block_size": block_size,
        "positions_sampled": len(picks),
        "mean_prefix_share_seen": round(sum(shares) / len(shares), 4),
        "share_seeing_only_own_block": round(own_block / len(picks), 4),
        "mean_prefix_share_seen_after_first_block": round(sum(late) / max(len(late), 1), 4),
    }


def train_run(config: TrainConfig, block_size: int, rotary: bool = True) -> dict:
    """Train the peer with the library's loop (:func:`maha.training.train`); its summary.

    ``config.variant`` must be ``"full"`` (the backbone): :func:`maha.training.prepare` checks
    the options and loads the data, then the model is rebuilt from ``config.seed`` with the
    peer's attention (with its rotary embeddings or, ``rotary=False``, without). The summary
    is :meth:`TrainResult.to_dict` with ``variant`` set to :data:`VARIANT` (or
    :data:`VARIANT_NO_ROTARY`).
    """
    if config.variant != "full":
        raise ValueError(
            f"config.variant must be 'full' (the backbone); received {config.variant!r}"
        )
    run = prepare(config)
    torch.manual_seed(config.seed)
    model = build_peer_model(config.model, block_size, rotary).to(dtype=run.model.wte.weight.dtype)
    result = train(PreparedRun(config, run.corpus, model, None))
    summary = result.to_dict()
    summary["variant"] = VARIANT if rotary else VARIANT_NO_ROTARY
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Train the H-Transformer-1D peer for one run.")
    p.add_argument("--train-config", type=Path, required=True, help="TrainConfig.to_dict() JSON")
    p.add_argument("--json-out", type=Path, required=True)
    p.add_argument("--peer-block-size", type=int, required=True)
    p.add_argument("--no-rotary", action="store_true", help="without rotary position embeddings")
    args = p.parse_args(argv)
    config = TrainConfig.from_dict(json.loads(args.train_config.read_text()))
    summary = train_run(config, args.peer_block_size, not args.no_rotary)
    args.json_out.write_text(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
