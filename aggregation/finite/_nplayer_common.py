"""Shared plumbing for the N-player iterative solvers (private).

Every N-player solver flattens the game's batch dimensions into one leading
dimension ``B``, computes in the game's compute dtype (half precision in
float32), and at the end reshapes to ``(*batch, ...)``, casts the strategies
back to the input dtype and recomputes the regret from scratch, so that a
returned ``converged`` flag never rests on a stale or approximate regret.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..result import EquilibriumResult
from ..validation import as_tensor, check_int, compute_dtype, describe
from .game import NormalFormGame, payoff_regret

__all__ = [
    "Prepared",
    "Trajectory",
    "finish",
    "initial_mixed",
    "initial_pure",
    "payoff_ranges",
    "prepare",
    "running_mean",
]


@dataclass(frozen=True)
class Prepared:
    """A game flattened for a solver.

    Attributes:
        payoffs: ``(B, N, A_1, ..., A_N)`` in the compute dtype.
        n: the number of players N.
        actions: ``(A_1, ..., A_N)``.
        batch_shape: the game's batch shape (``B`` is its product).
        dtype: the input dtype (strategies are returned in it).
    """

    payoffs: Tensor
    n: int
    actions: tuple[int, ...]
    batch_shape: torch.Size
    dtype: torch.dtype

    @property
    def size(self) -> int:
        return self.payoffs.shape[0]

    @property
    def device(self) -> torch.device:
        return self.payoffs.device

    @property
    def cdtype(self) -> torch.dtype:
        return self.payoffs.dtype


def prepare(game: Any) -> Prepared:
    """Validate ``game`` and flatten its batch dimensions."""
    if not isinstance(game, NormalFormGame):
        raise TypeError(f"game must be a NormalFormGame; received {describe(game)}")
    payoffs = game.payoffs
    n = game.num_players
    cdtype = compute_dtype(payoffs.dtype)
    size = math.prod(game.batch_shape)  # B, explicit: -1 is ambiguous for B = 0
    flat = payoffs.detach().to(cdtype).reshape(size, *payoffs.shape[-(n + 1) :])  # (B,N,*A)
    return Prepared(flat, n, game.num_actions, game.batch_shape, payoffs.dtype)


def payoff_ranges(prep: Prepared) -> Tensor:
    """``(B, N)`` each player's payoff range ``max P_i - min P_i`` (1 where it is 0)."""
    flat = prep.payoffs.flatten(2)  # (B, N, K)
    span = flat.amax(-1) - flat.amin(-1)  # (B, N)
    return torch.where(span > 0, span, torch.ones_like(span))


def _broadcast_rows(t: Tensor, prep: Prepared, name: str) -> Tensor:
    """Broadcast a ``(*b, k)`` tensor against the batch and flatten to ``(B, k)``."""
    try:
        full = t.expand(*prep.batch_shape, t.shape[-1])  # (*batch, k)
    except RuntimeError:
        raise ValueError(
            f"{name} must have batch shape broadcastable to the game's "
            f"{tuple(prep.batch_shape)}; received shape {tuple(t.shape)}"
        ) from None
    return full.reshape(prep.size, t.shape[-1])


def initial_mixed(
    initial: Sequence[Any] | None,
    prep: Prepared,
    default: str,
    name: str = "initial",
    atol: float = 1e-6,
) -> tuple[Tensor, ...]:
    """A starting mixed profile, flattened to ``(B, A_i)`` per player.

    ``initial=None`` gives ``default``: ``"uniform"`` or ``"first"`` (every
    player's first action). Otherwise ``initial`` must hold one strategy per
    player, each on the probability simplex within ``atol``.
    """
    n, device, dtype = prep.n, prep.device, prep.cdtype
    if initial is None:
        out = []
        for a in prep.actions:
            if default == "uniform":
                row = torch.full((a,), 1.0 / a, dtype=dtype, device=device)
            else:
                row = torch.zeros(a, dtype=dtype, device=device)
                row[0] = 1.0
            out.append(row.expand(prep.size, a))
        return tuple(out)
    if isinstance(initial, (Tensor, str)) or not isinstance(initial, Sequence):
        raise TypeError(
            f"{name} must be a tuple or list of {n} mixed strategies (one per player); "
            f"received {describe(initial)}"
        )
    if len(initial) != n:
        raise ValueError(f"{name} must hold one strategy per player ({n}); received {len(initial)}")
    out = []
    for i, (s, a) in enumerate(zip(initial, prep.actions)):
        t = as_tensor(s, f"{name}[{i}]", min_dim=1)
        if t.shape[-1] != a:
            raise ValueError(
                f"{name}[{i}] must have {a} entries (player {i}'s actions) in its last "
                f"dimension; received shape {tuple(t.shape)}"
            )
        low = float(t.min())
        worst = float((t.sum(-1) - 1).abs().max())
        if low < -atol or worst > atol:
            raise ValueError(
                f"{name}[{i}] must lie on the probability simplex (entries >= 0 summing to 1 "
                f"within {atol:g}); received min entry {low:.3g} and sums off by up to "
                f"{worst:.3g}"
            )
        t = t.detach().to(dtype=dtype, device=device).clamp_min(0)
        t = t / t.sum(-1, keepdim=True)
        out.append(_broadcast_rows(t, prep, f"{name}[{i}]"))
    return tuple(out)


def initial_pure(initial: Sequence[Any] | None, prep: Prepared, name: str = "initial") -> Tensor:
    """A starting pure profile as action indices, ``(B, N)`` int64.

    ``initial=None`` starts every player at action 0. Otherwise ``initial``
    holds one integer (or integer tensor broadcastable to the batch shape) per
    player, each in ``[0, A_i)``.
    """
    n, device = prep.n, prep.device
    if initial is None:
        return torch.zeros(prep.size, n, dtype=torch.int64, device=device)
    if isinstance(initial, (Tensor, str)) or not isinstance(initial, Sequence):
        raise TypeError(
            f"{name} must be a tuple or list of {n} action indices (one per player); "
            f"received {describe(initial)}"
        )
    if len(initial) != n:
        raise ValueError(f"{name} must hold one action per player ({n}); received {len(initial)}")
    cols = []
    for i, (s, a) in enumerate(zip(initial, prep.actions)):
        if isinstance(s, Tensor):
            if s.is_floating_point() or s.is_complex() or s.dtype == torch.bool:
                raise TypeError(
                    f"{name}[{i}] must hold integer action indices; received {describe(s)}"
                )
            t = s.detach().to(device=device, dtype=torch.int64)
        else:
            t = torch.tensor(check_int(s, f"{name}[{i}]", minimum=0), device=device)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= a):
            raise ValueError(
                f"{name}[{i}] must be action indices in [0, {a}) for player {i}; received "
                f"values in [{int(t.min())}, {int(t.max())}]"
            )
        try:
            t = t.expand(prep.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"{name}[{i}] must have a shape broadcastable to the game's batch shape "
                f"{tuple(prep.batch_shape)}; received shape {tuple(t.shape)}"
            ) from None
        cols.append(t.reshape(prep.size))
    return torch.stack(cols, dim=-1)  # (B, N)


class Trajectory:
    """Records a batch-last profile every ``every`` rounds (``path_every``).

    Point ``t`` is the profile after ``t * every`` rounds, point 0 the start;
    a run of ``rounds`` rounds has ``T = rounds // every + 1`` points whatever
    the data, so a game's path does not depend on the rest of its batch. When
    the loop stops early (every game converged or stopped), the missing points
    repeat the final profile, which no longer moves. ``every=None`` records
    nothing and :meth:`path` returns None.
    """

    def __init__(self, every: Any, rounds: int, start: Sequence[Tensor]) -> None:
        self.every = None if every is None else check_int(every, "path_every", minimum=1)
        self.points = 0 if self.every is None else rounds // self.every + 1
        self.frames: list[tuple[Tensor, ...]] = []
        self.record(0, start)

    def record(self, done: int, profile: Sequence[Tensor]) -> None:
        """Keep ``profile`` (N x ``(A_i, B)``) if ``done`` rounds is a multiple of ``every``."""
        if self.every is not None and done % self.every == 0 and len(self.frames) < self.points:
            self.frames.append(tuple(profile))

    def path(self, final: Sequence[Tensor]) -> tuple[Tensor, ...] | None:
        """N tensors ``(B, T, A_i)``, padded with ``final`` (N x ``(A_i, B)``)."""
        if self.every is None:
            return None
        frames = self.frames + [tuple(final)] * (self.points - len(self.frames))
        players = len(frames[0])
        return tuple(
            torch.stack([f[i] for f in frames]).permute(2, 0, 1) for i in range(players)
        )  # N x (B, T, A_i)


def running_mean(mean: Tensor, new: Tensor, frac: Tensor) -> Tensor:
    """One step of a running mean of mixed strategies, kept on the simplex.

    Returns ``(mean + frac * (new - mean)) / sum`` for batch-last strategies
    ``mean``, ``new`` ``(A, B)`` and weights ``frac`` ``(B,)`` in ``[0, 1]``
    (``frac = 0`` leaves a game's mean bit for bit unchanged, so frozen games
    stay frozen). In exact arithmetic the sum is 1; in floating point each
    step moves it by up to ``A`` machine epsilons, and over thousands of steps
    the drift (1e-5 in float32 after 2,000 steps) would put the returned
    average off the simplex, so it is divided out at every step: the mean
    stays on the simplex to the dtype's resolution.
    """
    step = torch.lerp(mean, new, frac)  # (A, B), nonnegative: a convex combination
    return step * torch.where(frac > 0, step.sum(0).reciprocal(), 1.0)  # (A, B)


def finish(
    prep: Prepared,
    strategies: Sequence[Tensor],
    converged: Tensor,
    iterations: Tensor,
    method: str,
    tol: float,
    residual: Tensor | None = None,
    info: dict[str, Tensor] | None = None,
    path: Sequence[Tensor] | None = None,
) -> EquilibriumResult:
    """Assemble an :class:`EquilibriumResult` from flattened ``(B, ...)`` tensors.

    The regret is recomputed from the profile exactly as returned (cast to the
    input dtype, evaluated in the compute dtype) and ``converged`` is
    intersected with ``max_i regret_i <= tol``. ``path`` (N x ``(B, T, A_i)``,
    see :class:`Trajectory`) is cast to the input dtype like the strategies.
    """
    sigma = tuple(s.detach().to(prep.dtype) for s in strategies)  # as returned
    reg = payoff_regret(prep.payoffs, [s.to(prep.cdtype) for s in sigma], prep.n)  # (B, N)
    ok = converged & (reg.amax(-1) <= tol)  # (B,)
    shape = prep.batch_shape

    def unflatten(t: Tensor) -> Tensor:
        return t.reshape(tuple(shape) + tuple(t.shape[1:]))

    return EquilibriumResult(
        strategies=tuple(unflatten(s) for s in sigma),
        regret=unflatten(reg),
        converged=unflatten(ok),
        iterations=unflatten(iterations.to(torch.int64)),
        method=method,
        tol=tol,
        residual=None if residual is None else unflatten(residual),
        info={k: unflatten(v) for k, v in (info or {}).items()},
        path=None if path is None else tuple(unflatten(p.detach().to(prep.dtype)) for p in path),
    )
