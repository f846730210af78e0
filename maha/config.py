"""Configuration of the MAHA layer and of the byte-level language models (nanoGPT style).

One frozen dataclass, :class:`MAHAConfig`, holds every hyper-parameter of
:class:`maha.MAHAAttention`, :class:`maha.MAHABlock` and the language models in
:mod:`maha.model`. It validates itself on construction, so a bad value fails
early with a message that names the field, what was expected and what was
received. Modules take it whole (nanoGPT's ``Block(config)``): the models,
``MAHABlock(config)``, ``MAHAAttention.from_config(config)`` and
``ScaleFusion.from_config(config)``; :func:`check_config` is their one type check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aggregation.validation import check_choice, check_int, check_positive, check_real, describe

__all__ = [
    "DECOMPOSITIONS",
    "STRATEGIES",
    "MAHAConfig",
    "check_config",
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
    "logit",
)

#: Downsampling operators of :class:`maha.HierarchicalDecomposition`.
DECOMPOSITIONS: tuple[str, ...] = ("conv", "dense_conv", "avg", "max")


def _optional(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda value, name: None if value is None else check(value, name)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool; received {describe(value)}")
    return value


def _dropout(value: Any, name: str) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1); received {describe(value)}")
    return float(value)


#: The one rule of each hyper-parameter of the layer and its parts, by argument name.
_LAYER_RULES: dict[str, Callable[[Any, str], Any]] = {
    "d_model": lambda value, name: check_int(value, name, minimum=1),
    "num_heads": lambda value, name: check_int(value, name, minimum=1),
    "head_dim": lambda value, name: check_int(value, name, minimum=1),
    "num_scales": lambda value, name: check_int(value, name, minimum=1),
    "ratio": lambda value, name: check_int(value, name, minimum=2),
    "window": _optional(lambda value, name: check_int(value, name, minimum=1)),
    "strategy": lambda value, name: check_choice(value, name, STRATEGIES),
    "decomposition": lambda value, name: check_choice(value, name, DECOMPOSITIONS),
    "mu": check_positive,
    "fine_bias": check_real,
    "utility_eps": check_positive,
    "solver_tol": _optional(check_positive),
    "solver_max_iter": _optional(lambda value, name: check_int(value, name, minimum=1)),
    "dropout": _dropout,
    "rotary": _bool,
    "shared_qk": _bool,
    **{
        name: _bool
        for name in (
            "global_coarsest",
            "gating",
            "asymmetric",
            "learn_mu",
            "bias",
            "causal",
            "anchor_fine",
        )
    },  # fmt: skip
}


def validate_layer_args(**fields: Any) -> dict[str, Any]:
    """Validate hyper-parameters of the layer or of its parts, each by its one rule.

    The one home of these checks: :class:`MAHAConfig` validates its fields here
    (``num_heads`` is its ``n_head``), and so do the parts built alone
    (:class:`maha.ScaleFusion`, :class:`maha.MultiscaleAttention`,
    :class:`maha.HierarchicalDecomposition`, :func:`maha.flops.maha_flops`), each
    with the arguments it has. Rules: ``d_model``, ``num_heads``, ``head_dim``,
    ``num_scales`` integers ``>= 1`` and ``d_model`` divisible by ``num_heads``
    (when both are given); ``ratio >= 2``; ``window`` None or ``>= 1``;
    ``strategy`` in :data:`STRATEGIES`; ``decomposition`` in
    :data:`DECOMPOSITIONS`; ``mu``, ``utility_eps`` ``> 0``; ``fine_bias`` a finite
    number; ``solver_tol`` None or ``> 0``; ``solver_max_iter`` None or ``>= 1``;
    ``dropout`` in ``[0, 1)``;
    ``rotary`` a bool, True only with an even head width ``d_model / num_heads``
    (when both are given); ``shared_qk``, ``global_coarsest``, ``gating``,
    ``asymmetric``, ``learn_mu``, ``bias``, ``causal``, ``anchor_fine`` bools.

    Returns:
        The checked values by name (integers as ``int``, numbers as ``float``).

    Raises:
        TypeError: a non-integer size or a non-string choice.
        ValueError: a value out of its range or an unknown choice, naming the
            argument, the expectation and what was received.
    """
    unknown = sorted(set(fields) - set(_LAYER_RULES))
    if unknown:
        raise TypeError(
            f"validate_layer_args has no rule for {unknown}; known: {sorted(_LAYER_RULES)}"
        )
    checked = {name: _LAYER_RULES[name](value, name) for name, value in fields.items()}
    d_model, num_heads = checked.get("d_model"), checked.get("num_heads")
    if d_model is not None and num_heads is not None and d_model % num_heads != 0:
        raise ValueError(
            f"d_model must be divisible by num_heads; received d_model={d_model}, "
            f"num_heads={num_heads} (remainder {d_model % num_heads})"
        )
    if checked.get("rotary") and d_model is not None and num_heads is not None:
        if (d_model // num_heads) % 2:
            raise ValueError(
                f"rotary=True needs an even head width d_model / num_heads; received "
                f"d_model={d_model}, num_heads={num_heads} (head width {d_model // num_heads})"
            )
    return checked


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
        learn_mu: learn the diagonal shift per head, ``mu_h = mu * m_h`` with
            ``m_h = softplus(.) + 1e-3 > 0`` initialised to 1 (so ``mu_h > 0`` and
            the game stays strongly monotone); False: ``mu_h = mu`` fixed.
        utility_eps: eps > 0 in ``a = softplus(.) + eps`` (keeps x* != 0).
        fine_bias: initial preference for the finest scale: added to scale 0's utility
            bias (game and convex strategies) or logit (softmax) at initialisation only;
            0 starts every scale alike (:class:`maha.fusion.ScaleFusion`).
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
        rotary: rotate queries and keys by their positions (RoPE, :mod:`maha.rotary`):
            at every MAHA scale by the scale's block index, in full attention by the
            token position; needs an even head width. The learned absolute position
            table is kept either way (the parameter count does not change).
        anchor_fine: the finest scale enters the fused output with weight one and the
            fusion strategy weighs only the coarser scales,
            ``y = o_0 + sum_{l >= 1} w_l o_l`` (:class:`maha.fusion.ScaleFusion`).
        shared_qk: one query/key projection ``W_Q, W_K`` for every scale instead of one per
            scale (:class:`maha.attention.MultiscaleAttention`): ``2 (L - 1) d^2`` fewer
            parameters per layer, the same FLOPs.
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
    learn_mu: bool = False
    utility_eps: float = 1e-3
    fine_bias: float = 0.0
    solver_tol: float | None = None
    solver_max_iter: int | None = None
    dropout: float = 0.0
    ffn_mult: int = 4
    conv_kernel: int = 3
    conv_dilation: int = 2
    bias: bool = True
    causal: bool = True
    rotary: bool = False
    anchor_fine: bool = False
    shared_qk: bool = False

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
            mu=self.mu,
            utility_eps=self.utility_eps,
            fine_bias=self.fine_bias,
            solver_tol=self.solver_tol,
            solver_max_iter=self.solver_max_iter,
            dropout=self.dropout,
            rotary=self.rotary,
            shared_qk=self.shared_qk,
            global_coarsest=self.global_coarsest,
            gating=self.gating,
            asymmetric=self.asymmetric,
            learn_mu=self.learn_mu,
            bias=self.bias,
            causal=self.causal,
            anchor_fine=self.anchor_fine,
        )
        check_int(self.ffn_mult, "ffn_mult", minimum=1)
        check_int(self.conv_kernel, "conv_kernel", minimum=1)
        check_int(self.conv_dilation, "conv_dilation", minimum=1)

    @property
    def num_heads(self) -> int:
        """``n_head`` under the layer's name (:class:`maha.MAHAAttention`'s ``num_heads``)."""
        return self.n_head

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


def check_config(config: object, name: str = "config") -> MAHAConfig:
    """``config`` itself if it is a :class:`MAHAConfig` (already validated on construction).

    The one type check of every public constructor that takes the config whole
    (:class:`maha.MAHABlock`, the language models, ``from_config``).

    Raises:
        TypeError: ``config`` is not a :class:`MAHAConfig`, naming what was received.
    """
    if not isinstance(config, MAHAConfig):
        raise TypeError(f"{name} must be a MAHAConfig; received {describe(config)}")
    return config
