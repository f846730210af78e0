r"""Analytic FLOP counts of the MAHA layer and of standard attention (forward pass).

Conventions. One multiply-add is 2 FLOPs; ``counted`` is the *matrix-class*
work that ``torch.utils.flop_counter.FlopCounterMode`` counts (matrix products,
batched products, convolutions, SDPA; the game strategies' Gram matrices are one
batched product), so both counts can be compared exactly.
Elementwise work (softmax, masks, activations, pooling, bias adds) is left out
of both the MAHA and the standard ``counted``. Three elementwise parts of the
MAHA layer are nevertheless reported (analytically) and included in ``total``:
the depthwise decomposition (``elementwise``), the fusion's products
(``fusion``: weighted sum and utilities, computed as broadcast products and
sums, faster on CPU than batched products of millions of ``1 x L`` rows) and an
estimate of the scale-game solver (``solver``).

Notation: batch B, length n, width d, heads H, head width d_h = d / H,
scales L, ratio r, window w, scale lengths

    n_0 = n,   n_l = ceil(n_{l-1} / r)   (so n_l = ceil(n / r^l)),   N_s = sum_l n_l.

Standard attention (fused QKV projection, SDPA, output projection):

    F_std,proj = 8 B n d^2                      (Q, K, V, O)
    F_std,core = 4 B n^2 d                      (Q K^T and A V: 2 n^2 d each)

MAHA layer:

    F_proj   = 4 B d^2 N_s  +  2 B n d^2  +  2 B n d^2      (Q_l,K_l per scale; V; O)
    F_dec    = 2 * sum_{l=1}^{L-1} 2 B n_l d^2 r        (dense conv, on X and on V)
               0                                        (depthwise conv, avg / max pooling:
                                                         elementwise, 2 * sum_l 2 B n_l d r
                                                         for the conv, reported as ``elementwise``)
    F_core   = sum_l  4 B n_l^2 d                       (global scale l)
                      4 B E_l d                         (windowed scale l)

with ``E_l`` the score entries of the blocked kernel (:func:`maha.blocked.score_entries`):
``w S`` for each interior block of ``w`` queries (``S = 2w`` keys causal, ``3w`` not) and,
for the first and last blocks, their queries times the keys that exist, so
``E_l <= ceil(n_l / w) w S`` (the first block has no previous block's keys).
    F_gate   = 4 B n (L-1) d d_h                        (cross-scale gate, if enabled)
    F_gram   = 2 B n L^2 d                              (Gram matrices, game and convex
                                                         strategies; 0 if L = 1)

    counted  = F_proj + F_dec + F_core + F_gate + F_gram

Elementwise (in ``total``, not in ``counted``):

    F_fuse   = 2 B n L d                                (sum_l w_l o_l, every strategy; 0 if L = 1)
             + 2 B n L d                                (utilities, game and convex
                                                         strategies)

A scale l is *windowed* iff ``w`` is not None, ``n_l > w`` and it is not the
coarsest scale with ``global_coarsest`` (when ``n_l <= w`` the window covers
every key, and plain attention is computed). Since ``N_s < n r / (r - 1)``,
``F_proj < (4 r / (r - 1) + 4) B n d^2`` (12 B n d^2 for r = 2), and with a
fixed window the core is ``O(n w d)`` on the fine scales plus
``4 B n_{L-1}^2 d`` on the coarsest, ``n_{L-1} ~ n / r^{L-1}``: a factor
``r^{2(L-1)}`` (64 for r = 2, L = 4) below the standard core.

Solver estimate (exact method, per game, one game per position and head):
at most ``P = 3 + 2L`` pivots, each an ``L x L`` elimination with two
right-hand sides and a feasibility check, ``<= L^3 + 6 L^2`` FLOPs:
``F_solver <= B n H (3 + 2L)(L^3 + 6 L^2)``. Iterative methods cost
``T (2 L^2 + 4 L)`` per game for T iterations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from aggregation.validation import check_int, describe

from .blocked import score_entries
from .config import validate_layer_args
from .scales import scale_lengths

__all__ = [
    "FlopBreakdown",
    "count_flops",
    "layer_flops",
    "maha_flops",
    "standard_attention_flops",
]


@dataclass(frozen=True)
class FlopBreakdown:
    """Forward FLOPs by component (see the module docstring for the formulas).

    Attributes:
        projections: linear projections (Q, K, V, O).
        decomposition: the dense-conv decomposition (on X and on V); 0 for the
            depthwise conv and the poolings (elementwise).
        core: attention scores and weighted sums.
        gate: the cross-scale gate's products (0 without gating).
        gram: the Gram matrices of the game and convex strategies (a batched product).
        fusion: the fusion's elementwise products (weighted sum, utilities).
        solver: analytic estimate of the scale-game solver (0 for "mean" and "softmax").
        elementwise: the depthwise decomposition's products and sums.
    """

    projections: int = 0
    decomposition: int = 0
    core: int = 0
    gate: int = 0
    gram: int = 0
    fusion: int = 0
    solver: int = 0
    elementwise: int = 0

    @property
    def counted(self) -> int:
        """What FlopCounterMode sees: projections, decomposition, core, gate, Gram."""
        return self.projections + self.decomposition + self.core + self.gate + self.gram

    @property
    def total(self) -> int:
        """``counted + fusion + solver + elementwise``."""
        return self.counted + self.fusion + self.solver + self.elementwise

    def as_dict(self) -> dict[str, int]:
        """The components plus ``counted`` and ``total``."""
        out = asdict(self)
        out.update(counted=self.counted, total=self.total)
        return out


def standard_attention_flops(length: int, d_model: int, *, batch: int = 1) -> FlopBreakdown:
    """``8 B n d^2`` projection and ``4 B n^2 d`` core FLOPs of standard attention."""
    n = check_int(length, "length", minimum=1)
    d = check_int(d_model, "d_model", minimum=1)
    B = check_int(batch, "batch", minimum=1)
    return FlopBreakdown(projections=8 * B * n * d * d, core=4 * B * n * n * d)


def _is_windowed(scale: int, n_l: int, num_scales: int, window: int | None, global_coarsest: bool):
    if window is None or n_l <= window:
        return False
    return not (global_coarsest and scale == num_scales - 1)


def maha_flops(
    length: int,
    d_model: int,
    num_heads: int,
    num_scales: int = 4,
    ratio: int = 2,
    window: int | None = 64,
    *,
    causal: bool = True,
    strategy: str = "nash",
    decomposition: str = "conv",
    gating: bool = False,
    global_coarsest: bool = True,
    batch: int = 1,
) -> FlopBreakdown:
    """Forward FLOPs of :class:`maha.MAHAAttention` (formulas in the module docstring).

    Args mirror the layer's; ``length`` is n and ``batch`` is B.
    """
    n = check_int(length, "length", minimum=1)
    B = check_int(batch, "batch", minimum=1)
    validate_layer_args(
        d_model=d_model,
        num_heads=num_heads,
        num_scales=num_scales,
        ratio=ratio,
        window=window,
        strategy=strategy,
        decomposition=decomposition,
    )
    d, H, L, r = d_model, num_heads, num_scales, ratio
    dh = d // H
    lengths = scale_lengths(n, L, r)
    projections = 4 * B * d * d * sum(lengths) + 4 * B * n * d * d
    per_row = 2 * d * d * r if decomposition == "dense_conv" else 0
    decomp = 2 * B * per_row * sum(lengths[1:])
    elementwise = 2 * B * 2 * d * r * sum(lengths[1:]) if decomposition == "conv" else 0
    core = 0
    for l, n_l in enumerate(lengths):
        if window is not None and _is_windowed(l, n_l, L, window, global_coarsest):
            core += 4 * B * score_entries(n_l, window, causal=causal) * d
        else:
            core += 4 * B * n_l * n_l * d
    fusion = 2 * B * n * L * d if L > 1 else 0  # one scale: nothing to fuse
    solver = gram = 0
    if strategy not in ("mean", "softmax") and L > 1:
        fusion += 2 * B * n * L * d
        gram = 2 * B * n * L * L * d
        solver = B * n * H * (3 + 2 * L) * (L**3 + 6 * L * L)
    gate = 4 * B * n * (L - 1) * d * dh if gating and L > 1 else 0
    return FlopBreakdown(
        projections=projections,
        decomposition=decomp,
        core=core,
        gate=gate,
        gram=gram,
        fusion=fusion,
        solver=solver,
        elementwise=elementwise,
    )


def layer_flops(layer: nn.Module, length: int, *, causal: bool | None = None, batch: int = 1):
    """:func:`maha_flops` for the settings of a :class:`maha.MAHAAttention` instance.

    ``causal=None`` uses the layer's own ``causal`` flag.
    """
    from .layer import MAHAAttention

    if not isinstance(layer, MAHAAttention):
        raise TypeError(f"layer must be a MAHAAttention; received {describe(layer)}")
    return maha_flops(
        length,
        layer.d_model,
        layer.num_heads,
        layer.num_scales,
        layer.ratio,
        layer.window,
        causal=layer.causal if causal is None else causal,
        strategy=layer.strategy,
        decomposition=layer.decomposition.mode,
        gating=layer.fusion.gating,
        global_coarsest=layer.attention.global_coarsest,
        batch=batch,
    )


def count_flops(module: nn.Module, *inputs: Tensor, **kwargs) -> int:
    """Forward FLOPs of ``module(*inputs, **kwargs)`` counted by ``FlopCounterMode``.

    Run it on the meta device (``module.to("meta")`` and meta inputs): nothing is
    computed, and SDPA is lowered to batched matrix products that the counter
    sees (on CPU tensors the fused SDPA kernel is not counted at all).
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs, **kwargs)
    return int(counter.get_total_flops())
