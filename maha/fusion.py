"""Fusion of the scale outputs, per position and head, by the scale game (MAHA Section 4.3).

At every position ``t`` and head ``h`` the L scales produce ``o_1..o_L in R^{d_h}``
(absent scales, see :mod:`maha.scales`, are masked out). The fused output is
``sum_l w_l o_l`` with weights from one of the strategies:

- ``"nash"``: the Nash equilibrium ``x*`` of the scale game (existence, uniqueness
  and the LCP form: ``proofs/01_existence_uniqueness.md``) with utilities and
  interactions built from the outputs,

      a_l = softplus(<u_{l,h}, o_l> + b_{l,h}) + eps                 (a > 0)
      C   = beta_h * Gram(o) / d_h + mu * I  (+ S_h - S_h^T)          (sym(C) > 0)

  i.e. ``x* >= 0, C x* - a >= 0, x*^T (C x* - a) = 0``, solved exactly by
  ``aggregation.solve_scale_game(method="exact")`` (eager, CPU), by
  ``aggregation.scale.small_batch.scale_game_small_batch`` (eager, at most
  ``SMALL_BATCH_GAMES`` games and no graph: a decoding step) or by support
  enumeration, ``aggregation.scale_game_enumeration`` (while compiling and off the
  CPU); the last two read nothing on the host; ``w = x* / sum x*``.
- ``"fictitious_play"`` / ``"best_response"``: the same game solved by those
  iterative methods (a fixed iteration budget per element).
- ``"convex"``: the planner's problem ``w* = argmax_{w in simplex} a^T w -
  1/2 w^T Q w`` with ``Q = sym(C)`` (``aggregation.convex_aggregate``, or
  ``aggregation.convex_aggregate_enumeration`` where nash uses enumeration).
- ``"mean"``: the average of the present scales.
- ``"softmax"``: ``softmax(theta)`` of one learned vector ``theta in R^L``
  restricted to the present scales (the paper code's baseline).
- ``"logit"``: the logit (entropy-regularised) equilibrium of the same game on the
  simplex, ``w = softmax_present((a - C w) / tau_h)``
  (``aggregation.logit_scale_equilibrium``; ``proofs/10_logit_equilibrium.md``):
  unique, every present scale weighted ``> 0`` (none loses its gradient), with a
  learned per-head temperature ``tau_h = softplus(.) + 0.05`` initialised to 1;
  ``C = 0`` would give ``softmax(a / tau_h)``.

Gradients of the game and convex strategies come from ``aggregation``'s implicit
differentiation. ``beta_h = softplus(.)`` is learned and positive, ``mu > 0`` is
fixed (or, with ``learn_mu``, ``mu_h = mu * (softplus(.) + 1e-3)`` learned per head,
initialised to ``mu``), so the symmetric part of C is positive definite and the
equilibrium is unique (Rosen 1965). The solvers run in float32 at least (float64 stays float64).

Anchored form (``anchor_fine=True``): the finest scale is not a player but is added with weight
one, ``y = o_0 + sum_{l >= 1} w_l o_l``, the strategy weighing the coarser scales present (an
equivalent of the fusion above with scale 0 absent, plus ``o_0``). Measured in the language-model
benchmark (``benchmarks/lm_quality.py``, variant ``maha-nash-anchor-rope``) it trains worse than
the plain fusion; it stays as an option for comparison.

Optional cross-scale gating (paper Eq. 12), applied before fusion:
``z_l = sigmoid(W_g^l [o_l; o_{l+1}] + b_g^l)``, ``o_l <- z_l * o_l + (1 - z_l) * o_{l+1}``
for ``l < L - 1`` wherever scale ``l + 1`` is present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import aggregation
from aggregation.scale.small_batch import scale_game_small_batch
from aggregation.validation import all_finite, compute_dtype, describe

from .blocked import no_autocast
from .config import MAHAConfig, check_config, validate_layer_args
from .fusion_ops import ScaleRows, game_features, mix, stack_scales

__all__ = ["FusionDiagnostics", "FusionOutput", "ScaleFusion", "gram_matrix"]


# The nash and convex strategies solve by support enumeration (a fixed amount of work
# with no host reads, so it compiles with fullgraph=True and never synchronises a GPU)
# while compiling and off the CPU. Eager CPU calls keep the pivoting solvers: measured
# faster there at every batch size (16384 games, L = 4: 9 vs 109 ms; one position,
# 4 heads: 2.2 vs 2.5 ms). Both return the same equilibria, certified the same way.
def _use_enumeration(num_scales: int, device: torch.device) -> bool:
    if num_scales > aggregation.scale.enumeration.MAX_ENUMERATION_PLAYERS:
        return False
    return torch.compiler.is_compiling() or device.type != "cpu"


#: Lower bound of the logit strategy's learned temperature (tau_h = softplus(.) + floor):
#: it keeps the equilibrium away from the sharp Nash limit, where float32 cannot certify it.
TAU_FLOOR = 0.05
#: Lower bound of the learned diagonal shift, relative to mu (mu_h >= MU_FLOOR * mu > 0).
MU_FLOOR = 1e-3

# Eager calls that solve at most this many nash games and need no graph (a decoding
# step: B * H games for one new position) use aggregation's small-batch solver: every
# support in one batched solve, about a hundred tensor ops instead of the pivoting
# solver's several hundred (measured on 2 loaded cores, 4 games of L = 4: 0.9 vs 1.4 ms;
# 64 games: 1.3 vs 1.5 ms). It returns the same equilibria and certificates
# (tests/aggregation/test_small_batch.py, tests/maha/test_fusion_small_batch.py);
# larger batches pivot.
SMALL_BATCH_GAMES = 1024


def _few_games(a: Tensor, C: Tensor) -> bool:
    """Whether the small-batch solver takes these games (eager, few games, no graph)."""
    if a.shape[-1] > aggregation.scale.enumeration.MAX_ENUMERATION_PLAYERS:
        return False
    if torch.is_grad_enabled() and (a.requires_grad or C.requires_grad):
        return False
    return a.numel() <= SMALL_BATCH_GAMES * a.shape[-1]


_GAME_METHODS = {
    "nash": "exact",
    "fictitious_play": "fictitious_play",
    "best_response": "best_response",
}


@dataclass(frozen=True)
class FusionDiagnostics:
    """What the fusion did at every position and head.

    Attributes:
        strategy: the fusion strategy.
        weights: ``(B, n, H, L)``, the fusion weights (zero on absent scales,
            summing to 1 over the present ones; all zero where none is present).
        present: ``(B, n, L)`` bool, which scales are players at each position.
        utilities: ``(B, n, H, L)`` the utilities ``a`` (game and convex strategies).
        interaction: ``(B, n, H, L, L)`` the interaction matrix ``C`` (idem).
        strategies: ``(B, n, H, L)`` the solver's raw solution, ``x*`` (game) or
            ``w*`` (convex).
        regret: ``(B, n, H, L)`` each player's regret at ``x*`` (game strategies).
        converged: ``(B, n, H)`` bool, the solver's convergence flag.
        residual: ``(B, n, H)`` (``"logit"``) the fixed-point residual
            ``max_l |w_l - softmax((a - C w) / tau)_l|`` that ``converged`` judges.
        fallback: ``(B, n, H)`` bool (game strategies): the weights are the
            documented fallback, uniform over the present scales, because the
            solver returned no certified profile with positive total (an
            iteration that diverged is stopped and its profile set to 0:
            ``aggregation.ScaleGameResult.info["diverged"]``). ``int(fallback.sum())``
            counts the games fused that way.
    """

    strategy: str
    weights: Tensor
    present: Tensor
    utilities: Tensor | None = None
    interaction: Tensor | None = None
    strategies: Tensor | None = None
    regret: Tensor | None = None
    converged: Tensor | None = None
    fallback: Tensor | None = None
    residual: Tensor | None = None


@dataclass(frozen=True)
class FusionOutput:
    """The fused output ``(B, n, H, d_h)`` and its :class:`FusionDiagnostics`."""

    output: Tensor
    diagnostics: FusionDiagnostics


def _check_finite(a: Tensor, C: Tensor) -> None:
    """Refuse non-finite games, naming their source (one host read; skipped under compile)."""
    if torch.compiler.is_compiling():
        return
    if not all_finite(a, C):
        raise ValueError(
            "o (the scale outputs) must be finite, and so must the fusion's parameters: the "
            "utilities and interactions of the fusion games built from them hold NaN or inf"
        )


def gram_matrix(o: Tensor) -> Tensor:
    """``G[..., l, k] = <o_l, o_k>`` for ``o`` of shape ``(..., L, d)``: ``(..., L, L)``.

    One batched matrix product (``2 L^2 d`` FLOPs per matrix).
    """
    return torch.matmul(o, o.transpose(-1, -2))  # (..., L, L)


class ScaleFusion(nn.Module):
    """Per-position, per-head fusion of L scale outputs (see the module docstring).

    Args:
        num_scales: L.
        num_heads: H.
        head_dim: d_h.
        strategy: one of ``"nash"``, ``"convex"``, ``"fictitious_play"``,
            ``"best_response"``, ``"mean"``, ``"softmax"``, ``"logit"``.
        gating: apply the cross-scale gate (paper Eq. 12).
        mu: mu > 0, the diagonal shift of C.
        asymmetric: add a learned skew-symmetric term ``S_h - S_h^T`` to C.
        learn_mu: learn the shift per head, ``mu_h = mu * (softplus(.) + 1e-3)``,
            initialised to ``mu`` (game and convex strategies).
        utility_eps: eps > 0 added to the utilities.
        fine_bias: initial preference for the finest scale (scale 0): added to its utility
            bias ``b_{0,h}`` (game and convex strategies) or to its logit (softmax) at
            initialisation, so the fusion starts closer to the finest scale alone; a starting
            point, not a constraint (both stay learned). 0: every scale starts alike.
        solver_tol: tolerance of the solvers (None: their default,
            ``aggregation.tolerance.default_tol`` of the dtype: 1e-9 in float64,
            1e-5 in float32; relative to each game's payoff unit for the game
            strategies, see ``aggregation.solve_scale_game``).
        solver_max_iter: iteration budget of the solvers (None: their default; the
            enumeration path does a fixed amount of work and does not use it).
        anchor_fine: the finest scale is not a player: it enters the output with weight
            one, ``y = o_0 + sum_{l >= 1} w_l o_l``, and the strategy allocates the
            weights ``w`` (in the simplex) among the coarser scales present (none
            present: ``y = o_0``).
    """

    def __init__(
        self,
        num_scales: int,
        num_heads: int,
        head_dim: int,
        strategy: str = "nash",
        *,
        gating: bool = False,
        mu: float = 1.0,
        asymmetric: bool = False,
        learn_mu: bool = False,
        utility_eps: float = 1e-3,
        fine_bias: float = 0.0,
        solver_tol: float | None = None,
        solver_max_iter: int | None = None,
        anchor_fine: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        checked = validate_layer_args(
            num_scales=num_scales,
            num_heads=num_heads,
            head_dim=head_dim,
            strategy=strategy,
            mu=mu,
            utility_eps=utility_eps,
            fine_bias=fine_bias,
            solver_tol=solver_tol,
            solver_max_iter=solver_max_iter,
            learn_mu=learn_mu,
            anchor_fine=anchor_fine,
        )
        self.num_scales = checked["num_scales"]
        self.num_heads = checked["num_heads"]
        self.head_dim = checked["head_dim"]
        self.strategy = checked["strategy"]
        self.gating = bool(gating)
        self.mu = checked["mu"]
        self.utility_eps = checked["utility_eps"]
        self.fine_bias = checked["fine_bias"]
        self.solver_tol = checked["solver_tol"]
        self.solver_max_iter = checked["solver_max_iter"]
        self.asymmetric = bool(asymmetric)
        self.learn_mu = learn_mu
        self.anchor_fine = anchor_fine
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        L, H, dh = self.num_scales, self.num_heads, self.head_dim
        self.uses_game = self.strategy not in ("mean", "softmax")
        if self.uses_game:
            # a_l = softplus(<u, o_l> + b) + eps; softplus(b0) = 1 at initialisation.
            self.utility_weight = nn.Parameter(torch.randn(L, H, dh, **factory) * 0.02)
            inv_softplus_one = math.log(math.expm1(1.0))
            bias = torch.full((L, H), inv_softplus_one, **factory)  # (L, H)
            bias[0] += self.fine_bias
            self.utility_bias = nn.Parameter(bias)
            self.beta_raw = nn.Parameter(torch.full((H,), inv_softplus_one, **factory))
            if self.asymmetric:
                self.skew = nn.Parameter(torch.zeros(H, L, L, **factory))
            if self.learn_mu:  # mu_h = mu * (softplus(raw) + MU_FLOOR) = mu at initialisation
                raw = math.log(math.expm1(1.0 - MU_FLOOR))
                self.mu_raw = nn.Parameter(torch.full((H,), raw, **factory))
            if self.strategy == "logit":  # tau_h = softplus(raw) + TAU_FLOOR = 1 initially
                raw = math.log(math.expm1(1.0 - TAU_FLOOR))
                self.tau_raw = nn.Parameter(torch.full((H,), raw, **factory))
        if self.strategy == "softmax":
            logits = torch.zeros(L, **factory)  # (L,)
            logits[0] = self.fine_bias
            self.logits = nn.Parameter(logits)
        if self.gating and L > 1:
            bound = 1.0 / math.sqrt(2 * dh)
            self.gate_weight = nn.Parameter(
                torch.empty(L - 1, 2 * dh, dh, **factory).uniform_(-bound, bound)
            )
            self.gate_bias = nn.Parameter(torch.zeros(L - 1, dh, **factory))

    @classmethod
    def from_config(
        cls,
        config: MAHAConfig,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> ScaleFusion:
        """The fusion of a layer built from ``config``: its scale, head, strategy and solver fields.

        ``L = num_scales``, ``H = n_head``, ``d_h = d_model // n_head``; ``strategy``,
        ``gating``, ``mu``, ``asymmetric``, ``learn_mu``, ``utility_eps``, ``fine_bias``,
        ``solver_tol``, ``solver_max_iter`` and ``anchor_fine`` as in the config
        (:class:`maha.MAHAConfig`).
        """
        config = check_config(config)
        return cls(
            config.num_scales,
            config.num_heads,
            config.head_dim,
            config.strategy,
            gating=config.gating,
            mu=config.mu,
            asymmetric=config.asymmetric,
            learn_mu=config.learn_mu,
            utility_eps=config.utility_eps,
            fine_bias=config.fine_bias,
            solver_tol=config.solver_tol,
            solver_max_iter=config.solver_max_iter,
            anchor_fine=config.anchor_fine,
            device=device,
            dtype=dtype,
        )

    # ------------------------------------------------------------------ parts
    def gate(self, o: Tensor, present: Tensor) -> Tensor:
        """Cross-scale gating (paper Eq. 12).

        Args:
            o: ``(B, n, H, L, d_h)`` upsampled scale outputs.
            present: ``(B, n, L)`` bool.

        Returns:
            ``(B, n, H, L, d_h)``: ``o_l <- z_l o_l + (1 - z_l) o_{l+1}`` for
            ``l < L - 1`` where scale ``l + 1`` is present, unchanged elsewhere.
        """
        if not self.gating or self.num_scales == 1:
            return o
        fine, coarse = o[..., :-1, :], o[..., 1:, :]  # (B, n, H, L-1, d_h)
        pair = torch.cat([fine, coarse], dim=-1)  # (B, n, H, L-1, 2 d_h)
        w = self.gate_weight.to(o.dtype)
        z = torch.sigmoid(torch.einsum("bnhlc,lcd->bnhld", pair, w) + self.gate_bias.to(o.dtype))
        mixed = z * fine + (1 - z) * coarse  # (B, n, H, L-1, d_h)
        use = present[:, :, None, 1:, None]  # (B, n, 1, L-1, 1)
        gated = torch.where(use, mixed, fine)
        return torch.cat([gated, o[..., -1:, :]], dim=-2)  # (B, n, H, L, d_h)

    def mu_per_head(self, dtype: torch.dtype) -> Tensor:
        """``(H,)`` the diagonal shifts ``mu_h``: ``mu`` or, with ``learn_mu``,
        ``mu * (softplus(raw_h) + MU_FLOOR)`` (``> 0``, ``mu`` at initialisation)."""
        if not self.learn_mu:
            return torch.full((self.num_heads,), self.mu, dtype=dtype, device=self.beta_raw.device)
        return self.mu * (F.softplus(self.mu_raw.to(dtype)) + MU_FLOOR)

    def temperature(self, dtype: torch.dtype) -> Tensor:
        """``(H,)`` the logit strategy's temperatures ``tau_h = softplus(raw_h) + TAU_FLOOR``."""
        return F.softplus(self.tau_raw.to(dtype)) + TAU_FLOOR

    def game_inputs(self, o: Tensor | ScaleRows) -> tuple[Tensor, Tensor]:
        """Utilities and interaction matrix of every (position, head) game.

        Args:
            o: the stack ``(B, n, H, L, d_h)`` or its :class:`maha.fusion_ops.ScaleRows`,
                in the solver dtype.

        Returns:
            ``a``: ``(B, n, H, L)``, ``a_l = softplus(<u_{l,h}, o_l> + b_{l,h}) + eps``;
            ``C``: ``(B, n, H, L, L)``, ``beta_h <o_l, o_k> / d_h + mu_h [l = k] (+ S_h - S_h^T)``
            (``mu_h`` from :meth:`mu_per_head`).
        """
        rows = self._rows(o)
        dtype = rows.dtype
        u = self.utility_weight.to(dtype).transpose(0, 1)  # (H, L, d_h)
        score, gram = game_features(rows, u)  # (B, n, H, L), (B, n, H, L, L)
        a = F.softplus(score + self.utility_bias.to(dtype).t()) + self.utility_eps  # (B,n,H,L)
        beta = F.softplus(self.beta_raw.to(dtype)).view(-1, 1, 1)  # (H, 1, 1)
        eye = torch.eye(self.num_scales, dtype=dtype, device=rows.device)
        offset = self.mu_per_head(dtype).view(-1, 1, 1) * eye  # (H, L, L)
        if self.asymmetric:
            skew = self.skew.to(dtype)
            offset = offset + (skew - skew.transpose(-1, -2))
        # C = offset + (beta / d_h) G: one pass over the (B, n, H, L, L) games
        C = torch.addcmul(offset, beta / self.head_dim, gram)  # (B, n, H, L, L)
        return a, C

    def _rows(self, o: Tensor | ScaleRows, present: Tensor | None = None) -> ScaleRows:
        """Validate the fusion's input and view it as :class:`maha.fusion_ops.ScaleRows`."""
        L, H, dh = self.num_scales, self.num_heads, self.head_dim
        if isinstance(o, ScaleRows):
            rows = o
        elif isinstance(o, Tensor):
            if o.dim() != 5 or tuple(o.shape[2:]) != (H, L, dh) or not o.is_floating_point():
                raise ValueError(
                    f"o must be a floating stack of shape (batch, length, {H}, {L}, {dh}) "
                    f"(heads, scales, head_dim) or ScaleRows; received {describe(o)}"
                )
            rows = ScaleRows.from_stack(o)
        else:
            raise TypeError(
                f"o must be a tensor (batch, length, {H}, {L}, {dh}) or maha.fusion_ops."
                f"ScaleRows; received {describe(o)}"
            )
        if rows.shape[2:] != (H, L, dh):
            raise ValueError(
                f"o must hold {L} scales of {H} heads x {dh}; received rows of shape "
                f"{rows.shape} (batch, length, heads, scales, head_dim)"
            )
        if present is not None:
            expected = (rows.shape[0], rows.shape[1], L)
            if not isinstance(present, Tensor) or present.dtype != torch.bool:
                raise TypeError(f"present must be a bool tensor; received {describe(present)}")
            if tuple(present.shape) != expected:
                raise ValueError(
                    f"present must have shape (batch, length, scales) = {expected}; "
                    f"received {describe(present)}"
                )
        return rows

    # ---------------------------------------------------------------- forward
    def forward(self, o: Tensor | ScaleRows, present: Tensor) -> FusionOutput:
        """Fuse the scale outputs.

        Args:
            o: the upsampled scale outputs (zero where absent): the stack
                ``(B, n, H, L, d_h)``, or the per-scale outputs with their upsampling
                geometry (:func:`maha.fusion_ops.scale_rows`), from which the fusion
                reads the stack chunk by chunk without building it.
            present: ``(B, n, L)`` bool, True where scale l is a player at position t.

        Returns:
            :class:`FusionOutput` with ``output`` of shape ``(B, n, H, d_h)`` (dtype of ``o``).
        """
        rows = self._rows(o, present)
        batch, n, H, L, dh = rows.shape
        if self.gating and L > 1:
            rows = ScaleRows.from_stack(self.gate(stack_scales(rows), present))
        if self.anchor_fine and L > 1:  # the finest scale is added, not a player
            fine = rows.outs[0]  # (B, n, H, d_h): scale 0 is at the input resolution
            present = torch.cat([torch.zeros_like(present[..., :1]), present[..., 1:]], -1)
            fused = self._fuse(rows, present)
            return FusionOutput(output=fine + fused.output, diagnostics=fused.diagnostics)
        return self._fuse(rows, present)

    def _fuse(self, rows: ScaleRows, present: Tensor) -> FusionOutput:
        """``sum_l w_l o_l`` with the strategy's weights over the scales ``present``."""
        batch, n, H, L, dh = rows.shape
        dtype = rows.dtype
        # the masks are per position, the same for every head: computed on (B, n, .) and
        # expanded over the heads (views), not per game
        mask = present.unsqueeze(2).expand(batch, n, H, L)  # (B, n, H, L)
        any_position = present.any(-1, keepdim=True)  # (B, n, 1)
        any_present = any_position.unsqueeze(2).expand(batch, n, H, 1)  # (B, n, H, 1)
        extra: dict[str, Tensor | None] = {}
        if L == 1:  # one player: every strategy gives it the whole weight
            weights = mask.to(dtype)  # (B, n, H, 1)
            output = mix(rows, weights)  # (B, n, H, d_h)
            diagnostics = FusionDiagnostics(self.strategy, weights=weights, present=present)
            return FusionOutput(output=output, diagnostics=diagnostics)
        if self.strategy == "mean":
            counts = mask.sum(-1, keepdim=True).clamp(min=1)
            weights = mask.to(dtype) / counts.to(dtype)  # (B, n, H, L)
        elif self.strategy == "softmax":
            logits = self.logits.to(dtype).expand(batch, n, H, L)
            logits = logits.masked_fill(~mask, float("-inf")).masked_fill(~any_present, 0.0)
            weights = torch.softmax(logits, dim=-1) * any_present.to(dtype)  # (B, n, H, L)
        else:
            # positions where no scale is present (fully padded rows): solve a dummy full
            # game there and zero its weights, so the solvers never see L = 0
            solve_mask = (present | ~any_position).unsqueeze(2).expand(batch, n, H, L)
            weights, extra = self._solve(rows, solve_mask, any_present)
        output = mix(rows, weights.to(dtype))  # (B, n, H, d_h)
        diagnostics = FusionDiagnostics(
            strategy=self.strategy, weights=weights, present=present, **extra
        )
        return FusionOutput(output=output, diagnostics=diagnostics)

    def _solve(
        self, rows: ScaleRows, solve_mask: Tensor, any_present: Tensor
    ) -> tuple[Tensor, dict[str, Tensor | None]]:
        """Build and solve the games of the players ``solve_mask`` ``(B, n, H, L)``; returns
        weights ``(B, n, H, L)`` (zero where ``any_present`` ``(B, n, H, 1)`` is False) and
        diagnostics."""
        dtype = compute_dtype(rows.dtype)
        with no_autocast(rows.device):
            a, C = self.game_inputs(rows.to(dtype))
            _check_finite(a, C)
            options: dict[str, Any] = {"tol": self.solver_tol, "max_iter": self.solver_max_iter}
            enumerate_ = _use_enumeration(self.num_scales, a.device)
            if self.strategy == "logit":
                tau = self.temperature(a.dtype).view(1, 1, -1)  # (1, 1, H): per head
                equilibrium = aggregation.logit_scale_equilibrium(
                    a,
                    C,
                    solve_mask,
                    tau=tau,
                    tol=self.solver_tol,
                    max_iter=self.solver_max_iter or aggregation.scale.logit.DEFAULT_MAX_ITER,
                    check_values=False,  # a, C checked above; tau > 0 by construction
                )
                weights = equilibrium.weights
                extra: dict[str, Tensor | None] = {
                    "utilities": a,
                    "interaction": C,
                    "strategies": equilibrium.weights,
                    "converged": equilibrium.converged,
                    "residual": equilibrium.residual,
                }
            elif self.strategy == "convex":
                Q = 0.5 * (C + C.transpose(-1, -2))  # (B, n, H, L, L)
                if enumerate_:
                    planner = aggregation.convex_aggregate_enumeration(
                        a, Q, solve_mask, tol=self.solver_tol
                    )
                else:
                    planner = aggregation.convex_aggregate(a, Q, solve_mask, **options)
                weights = planner.weights
                extra = {
                    "utilities": a,
                    "interaction": C,
                    "strategies": planner.weights,
                    "converged": planner.converged,
                }
            else:
                if self.strategy == "nash" and enumerate_:
                    result = aggregation.scale_game_enumeration(
                        a, C, solve_mask, tol=self.solver_tol
                    )
                elif self.strategy == "nash" and _few_games(a, C):
                    result = scale_game_small_batch(a, C, solve_mask, tol=self.solver_tol)
                else:
                    # a, C checked finite above; C_ll >= mu > 0 and a player in every game
                    # (solve_mask) hold by construction: no value checks (host reads) again
                    game = aggregation.ScaleGame(a, C, solve_mask, check_values=False)
                    method = _GAME_METHODS[self.strategy]
                    result = aggregation.solve_scale_game(game, method=method, **options)
                weights = result.weights
                extra = {
                    "utilities": a,
                    "interaction": C,
                    "strategies": result.x,
                    "regret": result.regret,
                    "converged": result.converged,
                    "fallback": result.info["fallback"] & any_present.squeeze(-1),
                }
            weights = weights * any_present.to(weights.dtype)  # (B, n, H, L)
        return weights, extra

    def extra_repr(self) -> str:
        return (
            f"num_scales={self.num_scales}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"strategy={self.strategy!r}, gating={self.gating}, mu={self.mu}, "
            f"asymmetric={self.asymmetric}, learn_mu={self.learn_mu}"
            + (", anchor_fine=True" if self.anchor_fine else "")
            + (f", fine_bias={self.fine_bias}" if self.fine_bias else "")
        )
