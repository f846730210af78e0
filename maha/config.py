"""Configuration of the MAHA layer and of the byte-level language models (nanoGPT style).

One frozen dataclass, :class:`MAHAConfig`, holds every hyper-parameter of
:class:`maha.MAHAAttention`, :class:`maha.MAHABlock` and the language models in
:mod:`maha.model`. It validates itself on construction, so a bad value fails
early with a message that names the field, what was expected and what was
received.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aggregation._validation import check_choice, check_int, check_positive, describe

__all__ = [
    "DECOMPOSITIONS",
    "STRATEGIES",
    "MAHAConfig",
    "validate_layer_args",
]

#: Fusion strategies of :class:`maha.fusion.ScaleFusion`.
STRATEGIES: tuple[str, ...] = (
    "nash",
    "convex",
    "fictitious_play",
    "best_response",
    "mean",
    "softmax",
)

#: Downsampling operators of :class:`maha.HierarchicalDecomposition`.
DECOMPOSITIONS: tuple[str, ...] = ("conv", "dense_conv", "avg", "max")


def validate_layer_args(
    *,
    d_model: Any,
    num_heads: Any,
    num_scales: Any,
    ratio: Any,
    window: Any,
    strategy: Any,
    decomposition: Any = "conv",
) -> None:
    """Validate the structural arguments shared by the layer and the config.

    Raises:
        TypeError: a non-integer size or a non-string choice.
        ValueError: ``d_model`` not divisible by ``num_heads``, ``ratio < 2``,
            ``num_scales < 1``, ``window < 1``, or an unknown choice.
    """
    check_int(d_model, "d_model", minimum=1)
    check_int(num_heads, "num_heads", minimum=1)
    if d_model % num_heads != 0:
        raise ValueError(
            f"d_model must be divisible by num_heads; received d_model={d_model}, "
            f"num_heads={num_heads} (remainder {d_model % num_heads})"
        )
    check_int(num_scales, "num_scales", minimum=1)
    check_int(ratio, "ratio", minimum=2)
    if window is not None:
        check_int(window, "window", minimum=1)
    check_choice(strategy, "strategy", STRATEGIES)
    check_choice(decomposition, "decomposition", DECOMPOSITIONS)


@dataclass(frozen=True)
class MAHAConfig:
    """Hyper-parameters of the MAHA layer, block and byte-level language model.

    Attributes:
        vocab_size: number of token ids (256 for bytes).
        block_size: the longest sequence the models accept (positional table size).
        n_layer: number of blocks.
        n_head: attention heads per layer.
        d_model: embedding width; must be divisible by ``n_head``.
        num_scales: L, the number of scales (scale 0 is the input resolution).
        ratio: r >= 2, the downsampling ratio between consecutive scales.
        window: local attention window (in tokens of each scale) of the fine
            scales; ``None`` gives full attention at every scale (the paper).
        strategy: fusion strategy, one of :data:`STRATEGIES`.
        decomposition: downsampling operator, one of :data:`DECOMPOSITIONS`.
        global_coarsest: the coarsest scale attends globally (True) or within
            the window like the fine scales (False; the "local" model variant).
        gating: apply the cross-scale gate (paper Eq. 12) before fusion.
        mu: mu > 0, the diagonal shift of the interaction matrix
            ``C = beta * Gram / d_h + mu * I`` (strong monotonicity modulus).
        asymmetric: add a learned skew-symmetric term to C (the game is then
            no longer a potential game; the equilibrium stays unique).
        utility_eps: eps > 0 in ``a = softplus(.) + eps`` (keeps x* != 0).
        solver_tol: tolerance passed to the solvers (regret relative to the
            game's payoff unit ``ScaleGame.payoff_unit()`` for the game; KKT
            residual for "convex"); None: the solver's default,
            ``aggregation.default_tol`` of the dtype (1e-9 in float64, 1e-5 in
            float32).
        solver_max_iter: iteration budget of the solvers; None: their default.
        dropout: dropout probability (embeddings, attention output, FFN).
        ffn_mult: hidden width of the feed-forward network, in units of d_model.
        conv_kernel: kernel size of the block's dilated (causal) convolution.
        conv_dilation: dilation of that convolution.
        bias: use biases in linear layers.
        causal: causal (language-model) mode of the MAHA blocks.
    """

    vocab_size: int = 256
    block_size: int = 1024
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 256
    num_scales: int = 4
    ratio: int = 2
    window: int | None = 64
    strategy: str = "nash"
    decomposition: str = "conv"
    global_coarsest: bool = True
    gating: bool = False
    mu: float = 1.0
    asymmetric: bool = False
    utility_eps: float = 1e-3
    solver_tol: float | None = None
    solver_max_iter: int | None = None
    dropout: float = 0.0
    ffn_mult: int = 4
    conv_kernel: int = 3
    conv_dilation: int = 2
    bias: bool = True
    causal: bool = True

    def __post_init__(self) -> None:
        check_int(self.vocab_size, "vocab_size", minimum=1)
        check_int(self.block_size, "block_size", minimum=1)
        check_int(self.n_layer, "n_layer", minimum=1)
        validate_layer_args(
            d_model=self.d_model,
            num_heads=self.n_head,
            num_scales=self.num_scales,
            ratio=self.ratio,
            window=self.window,
            strategy=self.strategy,
            decomposition=self.decomposition,
        )
        check_positive(self.mu, "mu")
        check_positive(self.utility_eps, "utility_eps")
        if self.solver_tol is not None:
            check_positive(self.solver_tol, "solver_tol")
        if self.solver_max_iter is not None:
            check_int(self.solver_max_iter, "solver_max_iter", minimum=1)
        check_int(self.ffn_mult, "ffn_mult", minimum=1)
        check_int(self.conv_kernel, "conv_kernel", minimum=1)
        check_int(self.conv_dilation, "conv_dilation", minimum=1)
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(
                f"dropout must be a number in [0, 1); received {describe(self.dropout)}"
            )
        for name in ("global_coarsest", "gating", "asymmetric", "bias", "causal"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool; received {describe(value)}")

    @property
    def head_dim(self) -> int:
        """d_model // n_head."""
        return self.d_model // self.n_head

    def replace(self, **changes: Any) -> MAHAConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MAHAConfig:
        """Build a config from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        if not isinstance(values, dict):
            raise TypeError(f"values must be a dict; received {describe(values)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"values has unknown config fields {unknown}; known: {sorted(known)}")
        return cls(**values)
