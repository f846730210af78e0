"""Random finite games: uniform payoffs and covariance games, batched and seeded.

Both generators draw a whole batch at once with a ``torch.Generator`` (or an
integer ``seed``, from which one is made), so the same seed gives the same
games on the same device whatever else the program draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..finite.game import NormalFormGame
from ..validation import check_float_dtype, check_int, check_real, compute_dtype, describe

__all__ = ["covariance_game", "random_game"]


def _actions(num_actions: Any, minimum_players: int) -> tuple[int, ...]:
    if isinstance(num_actions, (str, bytes)) or not isinstance(num_actions, Sequence):
        raise TypeError(
            "num_actions must be a sequence of action counts, one per player; "
            f"received {describe(num_actions)}"
        )
    counts = tuple(check_int(a, f"num_actions[{i}]", minimum=1) for i, a in enumerate(num_actions))
    if len(counts) < minimum_players:
        raise ValueError(
            f"num_actions must list at least {minimum_players} players' action counts; "
            f"received {counts}"
        )
    return counts


def _batch(batch_shape: Any) -> tuple[int, ...]:
    if isinstance(batch_shape, int) and not isinstance(batch_shape, bool):
        batch_shape = (batch_shape,)
    if not isinstance(batch_shape, Sequence) or isinstance(batch_shape, (str, bytes)):
        raise TypeError(f"batch_shape must be a tuple of ints; received {describe(batch_shape)}")
    return tuple(check_int(b, f"batch_shape[{i}]", minimum=0) for i, b in enumerate(batch_shape))


def _generator(
    generator: torch.Generator | None, seed: int | None, device: Any
) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None; received {describe(generator)}"
            )
        return generator
    if seed is None:
        return None
    seed = check_int(seed, "seed", minimum=0)
    gen = torch.Generator(device=torch.device("cpu" if device is None else device))
    return gen.manual_seed(seed)


def random_game(
    num_actions: Sequence[int],
    *,
    batch_shape: Sequence[int] = (),
    low: float = 0.0,
    high: float = 1.0,
    dtype: torch.dtype | None = None,
    device: Any = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> NormalFormGame:
    """Games whose payoffs are independent and uniform on ``[low, high)``.

    Every payoff ``P_i(a)``, for every player i, profile a and game of the
    batch, is drawn independently from the uniform distribution (in float32
    for half-precision dtypes, then rounded, so ``high`` itself may occur).
    Such games are nondegenerate with probability one.

    Args:
        num_actions: ``(A_1, ..., A_N)``, the action counts (N >= 1).
        batch_shape: the batch shape of the result (an int means ``(int,)``).
        low, high: the payoff range, ``low < high``.
        dtype: a floating dtype; default ``torch.get_default_dtype()``.
        device: where the payoffs live.
        generator: the ``torch.Generator`` to draw from.
        seed: an integer seed (a fresh generator); exclusive with ``generator``.

    Returns:
        A :class:`NormalFormGame` with payoffs ``(*batch_shape, N, A_1, ..., A_N)``.

    Example:
        >>> from aggregation.games import random_game
        >>> random_game((3, 2), batch_shape=(5,), seed=0).payoffs.shape
        torch.Size([5, 2, 3, 2])
    """
    actions = _actions(num_actions, 1)
    batch = _batch(batch_shape)
    lo, hi = check_real(low, "low"), check_real(high, "high")
    if not lo < hi:
        raise ValueError(f"low must be < high; received low={lo}, high={hi}")
    dtype = check_float_dtype(dtype)
    gen = _generator(generator, seed, device)
    shape = (*batch, len(actions), *actions)
    u = torch.rand(shape, generator=gen, dtype=compute_dtype(dtype), device=device)
    return NormalFormGame((lo + (hi - lo) * u).to(dtype), num_players=len(actions))


def covariance_game(
    num_actions: Sequence[int],
    rho: float,
    *,
    batch_shape: Sequence[int] = (),
    dtype: torch.dtype | None = None,
    device: Any = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> NormalFormGame:
    """Covariance games: the players' payoffs at a profile are correlated normals.

    At every pure profile ``a`` the payoff vector ``(P_1(a), ..., P_N(a))``
    is drawn from ``N(0, Sigma)`` with unit variances and correlation ``rho``
    between any two players, ``Sigma = (1 - rho) I + rho 1 1^T``, independently
    across profiles and games. ``rho = 1`` gives common-interest games,
    ``rho = -1`` (two players) zero-sum games, ``rho = 0`` independent
    normal payoffs. ``Sigma`` is positive semidefinite exactly for
    ``-1/(N-1) <= rho <= 1``. The draw uses ``Sigma``'s eigendecomposition:
    with ``z ~ N(0, I)`` and ``zbar`` its mean,

        ``P(a) = sqrt(1 - rho) (z - zbar 1) + sqrt(1 + (N - 1) rho) zbar 1``,

    valid on the closed interval (no Cholesky factor of a singular matrix).

    Args:
        num_actions: ``(A_1, ..., A_N)`` with N >= 2.
        rho: the correlation, in ``[-1/(N-1), 1]``.
        batch_shape, dtype, device, generator, seed: as in :func:`random_game`.

    Returns:
        A :class:`NormalFormGame` with payoffs ``(*batch_shape, N, A_1, ..., A_N)``.

    Raises:
        ValueError: fewer than two players, or ``rho`` outside its range.

    References:
        Rinott & Scarsini (2000), "On the number of pure strategy Nash
        equilibria in random games", Games Econ. Behav. 33; Nudelman et al.
        (2004), GAMUT's CovariantGame.
    """
    actions = _actions(num_actions, 2)
    n = len(actions)
    r = check_real(rho, "rho")
    if not -1.0 / (n - 1) <= r <= 1.0:
        raise ValueError(
            f"rho must lie in [-1/(N-1), 1] = [{-1.0 / (n - 1):.6g}, 1] for N={n} players; "
            f"received {r}"
        )
    batch = _batch(batch_shape)
    dtype = check_float_dtype(dtype)
    gen = _generator(generator, seed, device)
    cdtype = compute_dtype(dtype)
    z = torch.randn((*batch, *actions, n), generator=gen, dtype=cdtype, device=device)
    zbar = z.mean(-1, keepdim=True)  # (*batch, *A, 1)
    x = math.sqrt(1.0 - r) * (z - zbar) + math.sqrt(max(1.0 + (n - 1) * r, 0.0)) * zbar
    payoffs = x.movedim(-1, len(batch))  # (*batch, N, *A)
    return NormalFormGame(payoffs.to(dtype), num_players=n)
