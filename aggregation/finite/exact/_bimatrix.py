"""Shared plumbing for the two-player exact solvers.

Validation of a two-player game, payoff normalisation (every exact solver is
invariant under positive affine changes of each player's payoffs, so it works
on a normalised copy), evaluation of candidate profiles against the caller's
game and tolerance, de-duplication, and packing per-game lists of equilibria
into a padded :class:`~aggregation.result.EquilibriumSet`.

Everything here is batched over a flat batch dimension ``N``; the public
solvers flatten ``game.batch_shape`` to ``N`` on entry and restore it on exit.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from ...result import EquilibriumSet
from ...tolerance import default_tol
from ...validation import describe
from ..game import NormalFormGame, payoff_regret

__all__ = [
    "DEDUP_TOL",
    "attach_gradients",
    "check_bimatrix",
    "dedup_mask",
    "evaluate_profiles",
    "finish_set",
    "flat_payoffs",
    "normalise_centered",
    "normalise_positive",
    "pack_set",
    "positive_affine",
]

#: Two profiles (max-abs difference of the concatenated probability vectors)
#: closer than this are the same equilibrium (or than ``default_tol(dtype)``
#: for profiles rounded to a coarser dtype).
DEDUP_TOL = 1e-6


def check_bimatrix(game: Any, name: str = "game") -> NormalFormGame:
    """Require a two-player :class:`NormalFormGame`; return it."""
    if not isinstance(game, NormalFormGame):
        raise TypeError(f"{name} must be a NormalFormGame; received {describe(game)}")
    if game.num_players != 2:
        raise ValueError(
            f"{name} must be a two-player (bimatrix) game; received a game with "
            f"{game.num_players} players"
        )
    return game


def flat_payoffs(game: NormalFormGame) -> Tensor:
    """The payoffs as a float64 tensor ``(N, 2, m, n)`` (batch flattened, detached)."""
    m, n = game.num_actions
    return game.payoffs.detach().to(torch.float64).reshape(-1, 2, m, n)


def normalise_positive(M: Tensor) -> Tensor:
    """``(N, m, n) -> (N, m, n)`` affine image of each matrix with entries in ``[1, 2]``.

    ``M' = 1 + (M - min M) / (max M - min M)`` (a constant matrix maps to all
    ones). Best responses, supports and equilibria are unchanged; the
    best-response polytopes ``{x >= 0 : M'^T x <= 1}`` are bounded.
    """
    low, span = positive_affine(M)  # (N, 1, 1) each
    return 1.0 + (M - low) / span  # (N, m, n)


def positive_affine(M: Tensor) -> tuple[Tensor, Tensor]:
    """``(low, span)`` of :func:`normalise_positive`, ``M' = 1 + (M - low) / span``.

    ``low = min M`` and ``span = max M - min M`` over the last two dimensions,
    each ``(..., 1, 1)`` (``span = 1`` for a constant matrix). Solvers that write ``M`` into a
    tableau first apply the map there in place, with the same arithmetic.
    """
    low = M.amin((-2, -1), keepdim=True)  # (..., 1, 1)
    span = M.amax((-2, -1), keepdim=True) - low  # (..., 1, 1)
    return low, torch.where(span > 0, span, torch.ones_like(span))


def normalise_centered(M: Tensor) -> Tensor:
    """``(N, m, n) -> (N, m, n)`` affine image with mean 0 and max-abs entry 1 (or all 0)."""
    centered = M - M.mean((-2, -1), keepdim=True)  # (N, m, n)
    scale = centered.abs().amax((-2, -1), keepdim=True)  # (N, 1, 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return centered / scale


def evaluate_profiles(
    payoffs: Tensor, games: Tensor | None, x: Tensor, y: Tensor, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    """Cast candidate profiles to the output dtype and compute their regret.

    Args:
        payoffs: ``(N, 2, m, n)`` float64 payoffs.
        games: ``(E,)`` int64, the game each candidate belongs to (None: candidate
            ``e`` belongs to game ``e``, ``E == N``).
        x, y: ``(E, m)``, ``(E, n)`` float64 candidate strategies (nonnegative).
        dtype: the output dtype.

    Returns:
        ``(x, y, regret)``: the strategies renormalised and cast to ``dtype``,
        and ``(E, 2)`` float64 regret of exactly those (rounded) strategies,
        computed with the game's regret function in float64 arithmetic.
    """
    x = x.clamp_min(0)
    y = y.clamp_min(0)
    x = (x / x.sum(-1, keepdim=True)).to(dtype)  # (E, m)
    y = (y / y.sum(-1, keepdim=True)).to(dtype)  # (E, n)
    own = payoffs if games is None else payoffs[games]  # (E, 2, m, n)
    regret = payoff_regret(own, (x.to(torch.float64), y.to(torch.float64)), 2)  # (E, 2)
    return x, y, regret


def attach_gradients(
    game: NormalFormGame, games: Tensor, x: Tensor, y: Tensor
) -> tuple[Tensor, Tensor]:
    """Attach the implicit derivative of each equilibrium to the payoffs' graph.

    When ``game.payoffs`` requires grad (and grad mode is on), every profile
    ``(x[e], y[e])`` of game ``games[e]`` is differentiated on its supports by
    :func:`~aggregation.differentiable_bimatrix_nash` (the indifference system
    and the implicit function theorem, in float64). The values are returned
    unchanged (``x + (z - z.detach())``); only the graph is added. Profiles
    whose system is singular (a degenerate game, supports of unequal size) get
    a zero gradient and a ``RuntimeWarning`` at backward time. Otherwise
    ``x`` and ``y`` are returned as they are.

    Args:
        games: ``(E,)`` int64, the flat game index of each profile.
        x, y: ``(E, m)``, ``(E, n)`` detached strategies (output dtype).
    """
    if not (torch.is_grad_enabled() and game.payoffs.requires_grad) or games.numel() == 0:
        return x, y
    from ..differentiable.bimatrix import differentiable_bimatrix_nash

    m, n = game.num_actions
    payoffs = game.payoffs.reshape(-1, 2, m, n)[games].to(torch.float64)  # (E, 2, m, n)
    out = differentiable_bimatrix_nash(
        payoffs[:, 0], payoffs[:, 1], strategies=(x.to(torch.float64), y.to(torch.float64))
    )
    zx, zy = out.strategies  # (E, m), (E, n) carrying the graph
    return x + (zx - zx.detach()).to(x.dtype), y + (zy - zy.detach()).to(y.dtype)


def dedup_mask(games: Tensor, profile: Tensor, tol: float = DEDUP_TOL) -> Tensor:
    """``(E,)`` bool: True for the first occurrence of each distinct profile per game.

    Args:
        games: ``(E,)`` int64 game index of each candidate, sorted ascending.
        profile: ``(E, d)`` concatenated strategies.
    """
    E = games.shape[0]
    if E <= 1:
        return torch.ones(E, dtype=torch.bool, device=games.device)
    packed, valid = _pad_by_game(games, profile)  # (G, K, d), (G, K)
    dist = (packed[:, :, None, :] - packed[:, None, :, :]).abs().amax(-1)  # (G, K, K)
    K = packed.shape[1]
    earlier = torch.ones(K, K, dtype=torch.bool, device=games.device).tril(-1)  # (K, K)
    dup = ((dist <= tol) & earlier & valid[:, None, :]).any(-1)  # (G, K)
    keep = valid & ~dup  # (G, K)
    return keep[valid]  # (E,) in the original (sorted) order


def _pad_by_game(games: Tensor, values: Tensor, num_games: int | None = None):
    """Scatter rows of ``values`` (sorted by ``games``) into ``(G, K, ...)`` slots."""
    device = games.device
    G = int(games.max()) + 1 if num_games is None else num_games
    counts = torch.bincount(games, minlength=G)  # (G,)
    K = int(counts.max()) if games.numel() else 0
    starts = torch.cumsum(counts, 0) - counts  # (G,)
    pos = torch.arange(games.shape[0], device=device) - starts[games]  # (E,)
    out = values.new_zeros((G, K, *values.shape[1:]))
    out[games, pos] = values
    valid = torch.zeros(G, K, dtype=torch.bool, device=device)
    valid[games, pos] = True
    return out, valid


def pack_set(
    *,
    num_games: int,
    batch_shape: torch.Size,
    games: Tensor,
    x: Tensor,
    y: Tensor,
    regret: Tensor,
    degenerate: Tensor,
    method: str,
    tol: float,
    info: dict[str, Tensor] | None = None,
) -> EquilibriumSet:
    """Pack a flat list of verified equilibria into a padded :class:`EquilibriumSet`.

    Args:
        num_games: N, the flattened batch size.
        batch_shape: the game's batch shape (``N == prod(batch_shape)``).
        games: ``(E,)`` int64, the game of each equilibrium, sorted ascending.
        x, y: ``(E, m)``, ``(E, n)`` strategies (output dtype).
        regret: ``(E, 2)`` regret of each equilibrium.
        degenerate: ``(N,)`` bool.
        info: extra ``(N,)`` per-game tensors.
    """
    m, n = x.shape[-1], y.shape[-1]
    device = x.device
    if games.numel():
        xs, valid = _pad_by_game(games, x, num_games)  # (N, E, m), (N, E)
        ys, _ = _pad_by_game(games, y, num_games)  # (N, E, n)
        rs, _ = _pad_by_game(games, regret, num_games)  # (N, E, 2)
    else:
        xs = x.new_zeros(num_games, 0, m)
        ys = y.new_zeros(num_games, 0, n)
        rs = regret.new_zeros(num_games, 0, 2)
        valid = torch.zeros(num_games, 0, dtype=torch.bool, device=device)
    count = valid.sum(-1)  # (N,)
    E = valid.shape[1]
    shape = tuple(batch_shape)
    return EquilibriumSet(
        strategies=(xs.reshape(*shape, E, m), ys.reshape(*shape, E, n)),
        regret=rs.reshape(*shape, E, 2),
        valid=valid.reshape(*shape, E),
        count=count.reshape(shape),
        degenerate=degenerate.reshape(shape),
        method=method,
        tol=tol,
        info={k: v.reshape(shape) for k, v in (info or {}).items()},
    )


def finish_set(
    game: NormalFormGame,
    tol: float,
    payoffs: Tensor,
    g: Tensor,
    x: Tensor,
    y: Tensor,
    degenerate: Tensor,
    method: str,
    warn: bool = True,
) -> EquilibriumSet:
    """Verify candidate equilibria, drop duplicates (degenerate games only) and pack.

    Args:
        g: ``(P,)`` game index of each candidate, sorted ascending.
        x, y: ``(P, m)``, ``(P, n)`` float64 candidate strategies (NaN rows allowed).
        degenerate: ``(N,)`` bool; nondegenerate games cannot produce duplicates.
        warn: warn when candidates fail the regret check.
    """
    N = payoffs.shape[0]
    x, y, regret = evaluate_profiles(payoffs, g, x, y, game.dtype)
    ok = regret.amax(-1) <= tol  # (P,) False for NaN
    rejected = torch.bincount(g[~ok], minlength=N)  # (N,)
    failed = int(rejected.sum())
    if warn and failed:
        warnings.warn(
            f"{method}: {failed} candidate equilibria failed the final check regret <= "
            f"tol={tol:g} and were dropped (see info['rejected']); with {game.dtype} "
            "strategies the rounding alone costs about 1e-7 (float32) or 1e-3 (half) times "
            "the payoff scale, so pass a larger tol or use float64",
            RuntimeWarning,
            stacklevel=3,
        )
    g, x, y, regret = g[ok], x[ok], y[ok], regret[ok]
    deg = degenerate[g]  # (P',)
    if bool(deg.any()):
        sub = torch.nonzero(deg).flatten()
        profile = torch.cat([x[sub], y[sub]], -1).to(torch.float64)
        keep = torch.ones_like(g, dtype=torch.bool)
        # rounded to a half dtype, copies of one equilibrium can differ by an ulp
        same = max(DEDUP_TOL, default_tol(game.dtype))
        keep[sub] = dedup_mask(g[sub], profile, same)
        g, x, y, regret = g[keep], x[keep], y[keep], regret[keep]
    x, y = attach_gradients(game, g, x, y)
    return pack_set(
        num_games=N,
        batch_shape=game.batch_shape,
        games=g,
        x=x,
        y=y,
        regret=regret.to(game.dtype),
        degenerate=degenerate,
        method=method,
        tol=tol,
        info={"rejected": rejected},
    )
