"""Hypothesis strategies for games, profiles and aggregation problems.

Every strategy draws its numbers through hypothesis (so failures shrink to
small, readable examples) and returns torch tensors or library objects in the
requested dtype. Games that must satisfy an assumption satisfy it *by
construction*, not by filtering:

* :func:`normal_form_games`: generic finite games (integer payoffs plus a
  small jitter, so nondegenerate with probability one);
* :func:`zero_sum_games`, :func:`potential_games` (exact potential games,
  ``u_i(a) = phi(a) + h_i(a_-i)``, Monderer & Shapley 1996) and
  :func:`degenerate_games` (duplicated actions, indifferent players or
  0/1 payoffs, on purpose);
* :func:`mixed_profiles` and :func:`profiles_for`: points of the product of
  simplices, with exact zeros;
* :func:`scale_game_params` / :func:`scale_games`: ``(a, C)`` with
  ``lambda_min((C + C^T)/2) >= margin`` (strongly monotone by construction),
  symmetric or not, optionally with nonnegative entries and a player mask;
* :func:`degenerate_scale_game_params`: scale games outside the monotone
  assumption on purpose (singular PSD, indefinite, near-singular ``C``);
* :func:`planted_scale_games`: scale games with a known equilibrium ``x``
  (``a = C x - s`` with complementary slack ``s``), strict or degenerate;
* :func:`simplex_qps`: convex aggregation problems ``(a, Q)``, Q symmetric
  positive definite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import Tensor

from ..finite.game import NormalFormGame
from ..validation import check_nonnegative, describe

__all__ = [
    "PlantedScaleGame",
    "ScaleGameParams",
    "SimplexQP",
    "DEGENERATE_SCALE_KINDS",
    "degenerate_games",
    "degenerate_scale_game_params",
    "mixed_profiles",
    "normal_form_games",
    "planted_scale_games",
    "potential_games",
    "profiles_for",
    "scale_game_params",
    "scale_games",
    "simplex_qps",
    "zero_sum_games",
]


_ACTIONS = st.integers(1, 4)  # default action counts
_ACTIONS_DEGENERATE = st.integers(2, 4)
_SCALES = st.integers(1, 6)  # default number of scales L


class ScaleGameParams(NamedTuple):
    """Utilities ``a`` ``(*batch, L)``, interaction ``C`` ``(*batch, L, L)``, mask or None."""

    a: Tensor
    C: Tensor
    mask: Tensor | None


class PlantedScaleGame(NamedTuple):
    """A scale game with its known equilibrium ``x`` ``(*batch, L)``."""

    a: Tensor
    C: Tensor
    mask: Tensor | None
    x: Tensor


class SimplexQP(NamedTuple):
    """``max_{w in simplex} a^T w - 1/2 w^T Q w``; a ``(*batch, L)``, Q ``(*batch, L, L)``."""

    a: Tensor
    Q: Tensor


# ----------------------------------------------------------------- helpers
def _ints(value: Any, name: str, low: int) -> st.SearchStrategy[int]:
    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(
            f"{name} must be an int >= {low} or a strategy; received {describe(value)}"
        )
    return st.just(int(value))


def _shapes(value: Any, name: str) -> st.SearchStrategy[tuple[int, ...]]:
    if isinstance(value, st.SearchStrategy):
        return value
    if not isinstance(value, (tuple, list)) or any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in value
    ):
        raise ValueError(f"{name} must be a tuple of positive ints or a strategy; got {value!r}")
    return st.just(tuple(int(s) for s in value))


def _check_dtype(dtype: Any) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype; received {describe(dtype)}")
    return dtype


def _action_counts(draw: Any, num_players: Any, num_actions: Any) -> tuple[int, ...]:
    n = draw(_ints(num_players, "num_players", 1))
    if isinstance(num_actions, (tuple, list)):
        counts = tuple(int(c) for c in num_actions)
        if len(counts) != n or any(c < 1 for c in counts):
            raise ValueError(
                f"num_actions must give a positive count per player ({n}); received {num_actions!r}"
            )
        return counts
    per = _ints(num_actions, "num_actions", 1)
    return tuple(draw(per) for _ in range(n))


def _integer_array(draw: Any, shape: tuple[int, ...], low: int, high: int) -> np.ndarray:
    return draw(hnp.arrays(np.int64, shape, elements=st.integers(low, high))).astype(np.float64)


def _jitter(draw: Any, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Small generic noise from a drawn seed: breaks ties with probability one."""
    seed = draw(st.integers(0, 2**32 - 1))
    return scale * np.random.default_rng(seed).uniform(-1.0, 1.0, size=shape)


def _game(payoffs: np.ndarray, n: int, dtype: torch.dtype) -> NormalFormGame:
    return NormalFormGame(torch.from_numpy(payoffs).to(dtype), num_players=n)


# ------------------------------------------------------------ finite games
@st.composite
def normal_form_games(
    draw: Any,
    num_players: int | st.SearchStrategy[int] = 2,
    num_actions: int | Sequence[int] | st.SearchStrategy[int] = _ACTIONS,
    *,
    batch_shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] = (),
    payoff_range: int = 10,
    jitter: float = 1e-2,
    dtype: torch.dtype = torch.float64,
) -> NormalFormGame:
    """Generic finite games: payoffs ``(*batch, N, A_1, ..., A_N)``.

    Entries are integers in ``[-payoff_range, payoff_range]`` (readable when
    shrunk) plus uniform noise of size ``jitter`` from a drawn seed, so that
    with ``jitter > 0`` the game is nondegenerate with probability one.

    Args:
        num_players: N, or a strategy for it.
        num_actions: the action count of every player (an int or a strategy
            drawn once per player) or a fixed tuple ``(A_1, ..., A_N)``.
        batch_shape: a fixed tuple or a strategy of tuples.
        payoff_range: bound on the integer part of the payoffs.
        jitter: size of the generic noise (0 for integer payoffs).
        dtype: the payoffs' dtype.
    """
    dtype = _check_dtype(dtype)
    jitter = check_nonnegative(jitter, "jitter")
    counts = _action_counts(draw, num_players, num_actions)
    n = len(counts)
    batch = draw(_shapes(batch_shape, "batch_shape"))
    shape = (*batch, n, *counts)
    payoffs = _integer_array(draw, shape, -payoff_range, payoff_range)
    if jitter:
        payoffs = payoffs + _jitter(draw, shape, jitter)
    return _game(payoffs, n, dtype)


@st.composite
def zero_sum_games(
    draw: Any,
    num_actions: int | Sequence[int] | st.SearchStrategy[int] = _ACTIONS,
    *,
    num_players: int | st.SearchStrategy[int] = 2,
    batch_shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] = (),
    payoff_range: int = 10,
    jitter: float = 1e-2,
    dtype: torch.dtype = torch.float64,
) -> NormalFormGame:
    """Zero-sum games: the payoffs sum to zero at every pure profile.

    For two players this is ``(A, -A)``; for N players the last player's
    payoff is minus the sum of the others'. Arguments as in
    :func:`normal_form_games`.
    """
    dtype = _check_dtype(dtype)
    counts = _action_counts(draw, num_players, num_actions)
    n = len(counts)
    if n < 2:
        raise ValueError(f"a zero-sum game needs at least 2 players; received {n}")
    batch = draw(_shapes(batch_shape, "batch_shape"))
    shape = (*batch, n - 1, *counts)
    free = _integer_array(draw, shape, -payoff_range, payoff_range)
    if jitter:
        free = free + _jitter(draw, shape, check_nonnegative(jitter, "jitter"))
    last = -free.sum(axis=len(batch), keepdims=True)
    return _game(np.concatenate([free, last], axis=len(batch)), n, dtype)


@st.composite
def potential_games(
    draw: Any,
    num_players: int | st.SearchStrategy[int] = 2,
    num_actions: int | Sequence[int] | st.SearchStrategy[int] = _ACTIONS,
    *,
    batch_shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] = (),
    payoff_range: int = 10,
    jitter: float = 1e-2,
    dtype: torch.dtype = torch.float64,
) -> NormalFormGame:
    """Exact potential games ``u_i(a) = phi(a) + h_i(a_-i)`` (Monderer & Shapley 1996).

    ``phi`` is drawn over the joint action space and ``h_i`` does not depend
    on player i's own action, so a unilateral deviation changes ``u_i`` and
    ``phi`` by the same amount. Arguments as in :func:`normal_form_games`.
    """
    dtype = _check_dtype(dtype)
    counts = _action_counts(draw, num_players, num_actions)
    n = len(counts)
    batch = draw(_shapes(batch_shape, "batch_shape"))
    b = len(batch)
    phi = _integer_array(draw, (*batch, *counts), -payoff_range, payoff_range)
    if jitter:
        phi = phi + _jitter(draw, phi.shape, check_nonnegative(jitter, "jitter"))
    players = []
    for i in range(n):
        others = tuple(1 if j == i else c for j, c in enumerate(counts))
        h = _integer_array(draw, (*batch, *others), -payoff_range, payoff_range)
        players.append(phi + h)  # h broadcasts along player i's own axis
    return _game(np.stack(players, axis=b), n, dtype)


@st.composite
def degenerate_games(
    draw: Any,
    num_players: int | st.SearchStrategy[int] = 2,
    num_actions: int | Sequence[int] | st.SearchStrategy[int] = _ACTIONS_DEGENERATE,
    *,
    batch_shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] = (),
    dtype: torch.dtype = torch.float64,
) -> NormalFormGame:
    """Degenerate games, on purpose: the cases that break tie-sensitive solvers.

    One of three constructions is drawn: a player with two payoff-identical
    actions (a duplicated row/column, hence continua of equilibria), a player
    indifferent among all its actions (constant payoffs), or payoffs in
    ``{0, 1}`` (many ties). Every player with two or more actions is a
    candidate for the first two.
    """
    dtype = _check_dtype(dtype)
    counts = _action_counts(draw, num_players, num_actions)
    n = len(counts)
    batch = draw(_shapes(batch_shape, "batch_shape"))
    b = len(batch)
    kind = draw(st.sampled_from(["duplicate", "indifferent", "binary"]))
    if kind == "binary":
        return _game(_integer_array(draw, (*batch, n, *counts), 0, 1), n, dtype)
    payoffs = _integer_array(draw, (*batch, n, *counts), -5, 5)
    candidates = [i for i, c in enumerate(counts) if c >= 2]
    if not candidates:
        return _game(payoffs, n, dtype)
    i = draw(st.sampled_from(candidates))
    axis = b + 1 + i  # player i's action axis in (*batch, N, A_1..A_N)
    if kind == "duplicate":
        src, dst = draw(st.permutations(range(counts[i])))[:2]
        index = [slice(None)] * payoffs.ndim
        index[axis] = src
        copy = payoffs[tuple(index)].copy()
        index[axis] = dst
        payoffs[tuple(index)] = copy
    else:  # player i's payoff does not depend on its own action
        own = [slice(None)] * payoffs.ndim
        own[b] = i
        mine = payoffs[tuple(own)]  # (*batch, A_1..A_N)
        payoffs[tuple(own)] = np.take(mine, [0], axis=b + i).repeat(counts[i], axis=b + i)
    return _game(payoffs, n, dtype)


@st.composite
def mixed_profiles(
    draw: Any,
    num_actions: Sequence[int],
    batch_shape: tuple[int, ...] = (),
    *,
    zeros: bool = True,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, ...]:
    """A mixed profile: N tensors ``(*batch, A_i)`` on the probability simplex.

    Weights are drawn as integers in ``[0, 8]`` (``[1, 8]`` with
    ``zeros=False``) and normalised, so pure strategies, exact zeros and
    uniform mixtures all occur; an all-zero draw becomes uniform.
    """
    dtype = _check_dtype(dtype)
    if isinstance(num_actions, (str, bytes)) or not isinstance(num_actions, Sequence):
        raise TypeError(f"num_actions must be a sequence of ints; received {describe(num_actions)}")
    batch = tuple(batch_shape)
    out = []
    for a in num_actions:
        raw = draw(
            hnp.arrays(np.int64, (*batch, int(a)), elements=st.integers(0 if zeros else 1, 8))
        )
        raw = raw.astype(np.float64)
        total = raw.sum(-1, keepdims=True)
        uniform = np.full_like(raw, 1.0 / int(a))
        sigma = np.where(total > 0, raw / np.where(total > 0, total, 1.0), uniform)
        out.append(torch.from_numpy(sigma).to(dtype))
    return tuple(out)


def profiles_for(game: NormalFormGame, *, zeros: bool = True) -> st.SearchStrategy:
    """:func:`mixed_profiles` matching ``game``'s action counts, batch shape and dtype."""
    if not isinstance(game, NormalFormGame):
        raise TypeError(f"game must be a NormalFormGame; received {describe(game)}")
    dtype = game.dtype if game.dtype.is_floating_point else torch.float64
    return mixed_profiles(game.num_actions, tuple(game.batch_shape), zeros=zeros, dtype=dtype)


# -------------------------------------------------------------- scale game
def _matrix(
    draw: Any,
    batch: tuple[int, ...],
    L: int,
    *,
    symmetric: bool,
    nonnegative: bool,
    margin: float,
    spread: float,
) -> np.ndarray:
    """``C = R + s I`` with ``lambda_min(sym C) = margin + extra`` exactly by eigenvalue shift."""
    low = 0.0 if nonnegative else -spread
    R = draw(
        hnp.arrays(
            np.float64,
            (*batch, L, L),
            elements=st.floats(low, spread, allow_nan=False, allow_infinity=False),
        )
    )
    R = R.round(3)
    if symmetric:
        R = 0.5 * (R + np.swapaxes(R, -1, -2))
    sym = 0.5 * (R + np.swapaxes(R, -1, -2))
    lam = np.linalg.eigvalsh(sym)[..., 0]  # (*batch,)
    extra = draw(st.floats(0.0, 1.0))
    shift = margin + extra - lam  # (*batch,)
    eye = np.eye(L)
    C = R + shift[..., None, None] * eye
    if symmetric:
        C = 0.5 * (C + np.swapaxes(C, -1, -2))  # exact symmetry after rounding
    return C


@st.composite
def scale_game_params(
    draw: Any,
    num_scales: int | st.SearchStrategy[int] = _SCALES,
    *,
    batch_shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] = (),
    symmetric: bool = False,
    nonnegative: bool = False,
    margin: float = 0.1,
    masked: bool = False,
    utilities: st.SearchStrategy[float] | None = None,
    dtype: torch.dtype = torch.float64,
) -> ScaleGameParams:
    """``(a, C, mask)`` of a strongly monotone scale game, by construction.

    ``C = R + s I`` with R drawn (symmetrised if ``symmetric``, entries in
    ``[0, 2]`` if ``nonnegative``, else ``[-2, 2]``) and the shift
    ``s = margin + extra - lambda_min(sym R)`` (``extra`` drawn in ``[0, 1]``),
    so ``lambda_min((C + C^T)/2) = margin + extra >= margin``: the equilibrium
    exists and is unique (Rosen 1965). With ``nonnegative`` the diagonal may
    be shifted down but off-diagonal entries stay ``>= 0``.

    Args:
        num_scales: L (an int or a strategy).
        batch_shape: a fixed tuple or a strategy of tuples.
        symmetric: draw a symmetric C (a potential game).
        nonnegative: off-diagonal entries of C are ``>= 0`` (substitutes).
        margin: the guaranteed strong-monotonicity modulus (``> 0``).
        masked: also draw a player mask with at least one present player.
        utilities: strategy for the entries of ``a`` (default floats in
            ``[-2, 2]``, rounded to 3 decimals).
        dtype: the tensors' dtype.
    """
    dtype = _check_dtype(dtype)
    margin = check_nonnegative(margin, "margin")
    L = draw(_ints(num_scales, "num_scales", 1))
    batch = draw(_shapes(batch_shape, "batch_shape"))
    C = _matrix(
        draw, batch, L, symmetric=symmetric, nonnegative=nonnegative, margin=margin, spread=2.0
    )
    elements = (
        st.floats(-2.0, 2.0, allow_nan=False).map(lambda v: round(v, 3))
        if utilities is None
        else utilities
    )
    a = draw(hnp.arrays(np.float64, (*batch, L), elements=elements))
    mask = None
    if masked:
        m = draw(hnp.arrays(np.bool_, (*batch, L)))
        keep = draw(st.integers(0, L - 1))
        m[..., keep] = True  # at least one present player everywhere
        mask = torch.from_numpy(m)
    return ScaleGameParams(torch.from_numpy(a).to(dtype), torch.from_numpy(C).to(dtype), mask)


DEGENERATE_SCALE_KINDS = ("singular", "indefinite", "near_singular")
_SCALES_DEGENERATE = st.integers(2, 4)


@st.composite
def degenerate_scale_game_params(
    draw: Any,
    num_scales: int | st.SearchStrategy[int] = _SCALES_DEGENERATE,
    *,
    batch_shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] = (),
    kind: str | None = None,
    masked: bool = False,
    dtype: torch.dtype = torch.float64,
) -> ScaleGameParams:
    """``(a, C, mask)`` of a scale game *outside* the monotone assumption, on purpose.

    ``kind`` (drawn from :data:`DEGENERATE_SCALE_KINDS` when None):

    * ``"singular"``: ``C = V V^T`` with ``V`` of rank ``1..L-1`` (symmetric
      positive semidefinite and singular: an equilibrium may not exist, and
      the support systems are singular);
    * ``"indefinite"``: ``C`` symmetric or not with indefinite symmetric part
      (several equilibria or none);
    * ``"near_singular"``: ``V V^T + delta I`` with ``delta`` in ``[1e-9, 1e-5]``
      (ill-conditioned support systems).

    The diagonal is kept positive (at least ``1e-3``), as :class:`ScaleGame`
    requires; ``a`` has entries in ``[-1, 2]`` (rounded to 2 decimals). Solvers
    must never certify a wrong profile on these games.
    """
    dtype = _check_dtype(dtype)
    L = draw(_ints(num_scales, "num_scales", 1))
    batch = draw(_shapes(batch_shape, "batch_shape"))
    if kind is None:
        kind = draw(st.sampled_from(DEGENERATE_SCALE_KINDS))
    elif kind not in DEGENERATE_SCALE_KINDS:
        raise ValueError(f"kind must be one of {DEGENERATE_SCALE_KINDS} or None; got {kind!r}")
    entries = st.floats(-1.0, 1.0, allow_nan=False).map(lambda v: round(v, 2))
    if kind == "indefinite":
        R = draw(hnp.arrays(np.float64, (*batch, L, L), elements=entries))
        if draw(st.booleans()):
            R = 0.5 * (R + np.swapaxes(R, -1, -2))
        C = R.copy()
    else:
        rank = draw(st.integers(1, max(1, L - 1)))
        V = draw(hnp.arrays(np.float64, (*batch, L, rank), elements=entries))
        C = V @ np.swapaxes(V, -1, -2)
        if kind == "near_singular":
            C = C + draw(st.floats(1e-9, 1e-5)) * np.eye(L)
    diag = np.einsum("...ii->...i", C)
    bump = np.where(diag < 1e-3, 1e-3 - diag, 0.0)  # a positive diagonal, as ScaleGame needs
    C = C + bump[..., None] * np.eye(L)
    a = draw(
        hnp.arrays(
            np.float64,
            (*batch, L),
            elements=st.floats(-1.0, 2.0, allow_nan=False).map(lambda v: round(v, 2)),
        )
    )
    mask = None
    if masked:
        m = draw(hnp.arrays(np.bool_, (*batch, L)))
        m[..., draw(st.integers(0, L - 1))] = True
        mask = torch.from_numpy(m)
    return ScaleGameParams(torch.from_numpy(a).to(dtype), torch.from_numpy(C).to(dtype), mask)


def scale_games(**kwargs: Any) -> st.SearchStrategy:
    """``aggregation.ScaleGame`` objects built from :func:`scale_game_params` (same arguments)."""
    from .. import ScaleGame  # imported lazily: the class lives in the solver package

    return scale_game_params(**kwargs).map(lambda p: ScaleGame(p.a, p.C, mask=p.mask))


@st.composite
def planted_scale_games(
    draw: Any,
    num_scales: int | st.SearchStrategy[int] = _SCALES,
    *,
    batch_shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] = (),
    symmetric: bool = False,
    margin: float = 0.1,
    strict: bool = True,
    masked: bool = False,
    dtype: torch.dtype = torch.float64,
) -> PlantedScaleGame:
    """A strongly monotone scale game whose equilibrium ``x`` is known.

    Draws C as in :func:`scale_game_params`, a point ``x >= 0`` with some
    zeros and a slack ``s >= 0`` with ``s_l = 0`` wherever ``x_l > 0``, and
    sets ``a = C x - s``. Then ``x >= 0``, ``C x - a = s >= 0`` and
    ``x^T s = 0``: ``x`` solves the LCP, so it is *the* equilibrium. With
    ``strict`` every inactive player has ``s_l >= 0.1`` (strict
    complementarity, so the support is stable under small perturbations);
    without it, one present player is inactive with ``s_l = 0`` exactly
    (weakly inactive: the equilibrium is not differentiable there).
    Absent players (``masked``) have ``x_l = 0`` and are excluded from C x.
    """
    dtype = _check_dtype(dtype)
    margin = check_nonnegative(margin, "margin")
    L = draw(_ints(num_scales, "num_scales", 1))
    batch = draw(_shapes(batch_shape, "batch_shape"))
    C = _matrix(draw, batch, L, symmetric=symmetric, nonnegative=False, margin=margin, spread=2.0)
    values = st.integers(1, 20).map(lambda v: v / 10)
    x = draw(hnp.arrays(np.float64, (*batch, L), elements=values))
    active = draw(hnp.arrays(np.bool_, (*batch, L)))
    slack = draw(hnp.arrays(np.float64, (*batch, L), elements=st.integers(1, 20))) / 10
    present = np.ones((*batch, L), dtype=bool)
    if masked:
        present = draw(hnp.arrays(np.bool_, (*batch, L)))
        present[..., draw(st.integers(0, L - 1))] = True
    if not strict:  # one present, inactive player with zero slack: degenerate
        weak = draw(st.integers(0, L - 1))
        present[..., weak] = True
        active[..., weak] = False
        slack[..., weak] = 0.0
    active = active & present
    x = np.where(active, x, 0.0)
    s = np.where(active, 0.0, slack)
    pair = present[..., :, None] & present[..., None, :]
    a = np.einsum("...lk,...k->...l", np.where(pair, C, 0.0), x) - s
    mask = torch.from_numpy(present) if masked else None
    t = lambda v: torch.from_numpy(np.ascontiguousarray(v)).to(dtype)  # noqa: E731
    return PlantedScaleGame(t(a), t(C), mask, t(x))


@st.composite
def simplex_qps(
    draw: Any,
    num_scales: int | st.SearchStrategy[int] = _SCALES,
    *,
    batch_shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] = (),
    margin: float = 0.1,
    dtype: torch.dtype = torch.float64,
) -> SimplexQP:
    """Convex aggregation problems ``(a, Q)`` with Q symmetric, ``lambda_min(Q) >= margin``."""
    p = draw(
        scale_game_params(
            num_scales, batch_shape=batch_shape, symmetric=True, margin=margin, dtype=dtype
        )
    )
    return SimplexQP(p.a, p.C)
