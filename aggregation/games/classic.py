"""Classic two-player games of the literature, as :class:`NormalFormGame` s.

Every constructor returns an unbatched two-player game with payoffs
``(2, m, n)``; player 0 chooses the row, player 1 the column. Parameters are
keyword arguments named as in the literature, validated so that the game
keeps the structure its name promises (for example ``T > R > P > S`` in the
prisoner's dilemma). Each docstring states the game's Nash equilibria, which
``tests/aggregation/test_games_constructors.py`` checks against the solvers.

``symmetric_game(A)`` builds the symmetric game ``(A, A^T)`` and
:func:`is_symmetric` tests any N-player game for symmetry.

Example:
    >>> from aggregation import pure_equilibria
    >>> from aggregation.games import battle_of_the_sexes, is_symmetric, prisoners_dilemma
    >>> pure_equilibria(battle_of_the_sexes()).actions.tolist()
    [[0, 0], [1, 1]]
    >>> bool(is_symmetric(prisoners_dilemma()))
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..finite.game import NormalFormGame
from ..validation import as_tensor, check_float_dtype, check_nonnegative, check_real, describe

__all__ = [
    "anti_coordination_game",
    "battle_of_the_sexes",
    "coordination_game",
    "is_symmetric",
    "matching_pennies",
    "prisoners_dilemma",
    "rock_paper_scissors",
    "shapley_game",
    "symmetric_game",
]


def _bimatrix(A: list, B: list, dtype: torch.dtype | None, device: Any) -> NormalFormGame:
    dtype = check_float_dtype(dtype)
    a = torch.tensor(A, dtype=torch.float64).to(dtype=dtype, device=device)  # (m, n)
    b = torch.tensor(B, dtype=torch.float64).to(dtype=dtype, device=device)  # (m, n)
    return NormalFormGame(torch.stack([a, b]), num_players=2)  # (2, m, n)


def prisoners_dilemma(
    *,
    reward: float = 3.0,
    temptation: float = 5.0,
    sucker: float = 0.0,
    punishment: float = 1.0,
    dtype: torch.dtype | None = None,
    device: Any = None,
) -> NormalFormGame:
    """The prisoner's dilemma; action 0 cooperates, action 1 defects.

    Row payoffs ``[[R, S], [T, P]]``, the column player's their transpose,
    with ``T > R > P > S`` (defaults ``T, R, P, S = 5, 3, 1, 0``, Axelrod
    1984). Defection strictly dominates cooperation, so the unique Nash
    equilibrium is mutual defection ``(1, 1)``, Pareto-dominated by mutual
    cooperation.

    Raises:
        ValueError: the payoffs do not satisfy ``T > R > P > S``.

    References:
        Flood & Dresher (1950); Axelrod (1984), *The Evolution of Cooperation*.
    """
    r = check_real(reward, "reward")
    t = check_real(temptation, "temptation")
    s = check_real(sucker, "sucker")
    p = check_real(punishment, "punishment")
    if not t > r > p > s:
        raise ValueError(
            "a prisoner's dilemma needs temptation > reward > punishment > sucker; "
            f"received temptation={t}, reward={r}, punishment={p}, sucker={s}"
        )
    A = [[r, s], [t, p]]
    return _bimatrix(A, [list(col) for col in zip(*A)], dtype, device)


def matching_pennies(
    *, stake: float = 1.0, dtype: torch.dtype | None = None, device: Any = None
) -> NormalFormGame:
    """Matching pennies: the zero-sum game ``A = stake * [[1, -1], [-1, 1]]``.

    The row player wins ``stake`` when the actions match, the column player
    when they differ. No pure equilibrium; the unique equilibrium is
    ``((1/2, 1/2), (1/2, 1/2))`` with value 0.

    Raises:
        ValueError: ``stake <= 0``.

    References:
        von Neumann & Morgenstern (1944).
    """
    k = check_real(stake, "stake")
    if k <= 0:
        raise ValueError(f"stake must be > 0; received {k}")
    A = [[k, -k], [-k, k]]
    return _bimatrix(A, [[-x for x in row] for row in A], dtype, device)


def battle_of_the_sexes(
    *, high: float = 2.0, low: float = 1.0, dtype: torch.dtype | None = None, device: Any = None
) -> NormalFormGame:
    """The battle of the sexes: coordinate, but each prefers a different outcome.

    Row payoffs ``[[high, 0], [0, low]]``, column payoffs ``[[low, 0], [0, high]]``
    with ``high > low > 0``. Three equilibria: the pure ``(0, 0)`` and
    ``(1, 1)``, and the mixed one in which the row player plays action 0 with
    probability ``high / (high + low)`` and the column player with
    probability ``low / (high + low)``.

    Raises:
        ValueError: unless ``high > low > 0``.

    References:
        Luce & Raiffa (1957), *Games and Decisions*.
    """
    h, lo = check_real(high, "high"), check_real(low, "low")
    if not h > lo > 0:
        raise ValueError(f"battle_of_the_sexes needs high > low > 0; received high={h}, low={lo}")
    return _bimatrix([[h, 0.0], [0.0, lo]], [[lo, 0.0], [0.0, h]], dtype, device)


def rock_paper_scissors(
    *, win: float = 1.0, loss: float = 1.0, dtype: torch.dtype | None = None, device: Any = None
) -> NormalFormGame:
    """Rock-paper-scissors, generalised: a win pays ``win``, a loss costs ``loss``.

    Actions 0, 1, 2 are rock, paper, scissors; paper beats rock, scissors
    beat paper, rock beats scissors; a tie pays 0. The game is symmetric,
    ``(A, A^T)`` with ``A = [[0, -loss, win], [win, 0, -loss], [-loss, win, 0]]``,
    and zero-sum when ``win == loss`` (the default). For ``win, loss > 0``
    the unique equilibrium is uniform play by both players, with expected
    payoff ``(win - loss) / 3``.

    Raises:
        ValueError: ``win <= 0`` or ``loss <= 0``.

    References:
        Hofbauer & Sigmund (1998), *Evolutionary Games and Population
        Dynamics*, section 7.7.
    """
    w, lo = check_real(win, "win"), check_real(loss, "loss")
    if w <= 0 or lo <= 0:
        raise ValueError(f"win and loss must be > 0; received win={w}, loss={lo}")
    A = [[0.0, -lo, w], [w, 0.0, -lo], [-lo, w, 0.0]]
    return _bimatrix(A, [list(col) for col in zip(*A)], dtype, device)


def shapley_game(
    *, beta: float = 0.0, dtype: torch.dtype | None = None, device: Any = None
) -> NormalFormGame:
    """Shapley's 3 x 3 game, and the one-parameter family around it.

    Row payoffs ``[[1, 0, beta], [beta, 1, 0], [0, beta, 1]]``, column payoffs
    ``[[-beta, 1, 0], [0, -beta, 1], [1, 0, -beta]]``; ``beta = 0`` is
    Shapley's (1964) game, on which fictitious play cycles forever. For
    ``-1 < beta < 1`` the unique Nash equilibrium is uniform play by both
    players, and there is no pure equilibrium.

    Raises:
        ValueError: ``beta`` outside ``(-1, 1)``.

    References:
        Shapley (1964), "Some topics in two-person games"; Sparrow, van Strien
        & Harris (2008), "Fictitious play in 3 x 3 games: the transition
        between periodic and chaotic behaviour", Games Econ. Behav. 63.
    """
    b = check_real(beta, "beta")
    if not -1 < b < 1:
        raise ValueError(f"beta must lie in (-1, 1); received {b}")
    A = [[1.0, 0.0, b], [b, 1.0, 0.0], [0.0, b, 1.0]]
    B = [[-b, 1.0, 0.0], [0.0, -b, 1.0], [1.0, 0.0, -b]]
    return _bimatrix(A, B, dtype, device)


def coordination_game(
    values: Any = (2.0, 1.0), *, dtype: torch.dtype | None = None, device: Any = None
) -> NormalFormGame:
    """A pure coordination game: both players get ``values[k]`` when both play k.

    Payoffs ``A = B = diag(values)`` (``m = len(values)`` actions each, every
    value > 0); miscoordination pays 0. Every nonempty set ``S`` of actions
    carries exactly one equilibrium, in which both players mix over ``S``
    with probabilities proportional to ``1 / values[k]`` (each action of ``S``
    then earns ``1 / sum_{k in S} 1 / values[k]``): ``2^m - 1`` equilibria,
    ``m`` of them pure.

    Raises:
        ValueError: fewer than two values, or a value ``<= 0``.

    References:
        Schelling (1960), *The Strategy of Conflict*; Harsanyi & Selten (1988).
    """
    v = as_tensor(values, "values", min_dim=1).to(torch.float64)
    if v.dim() != 1 or v.numel() < 2:
        raise ValueError(f"values must be a 1-D sequence of >= 2 payoffs; received {describe(v)}")
    if bool((v <= 0).any()):
        raise ValueError(f"every value must be > 0; received {v.tolist()}")
    A = torch.diag(v).tolist()
    return _bimatrix(A, A, dtype, device)


def anti_coordination_game(
    *, first: float = 1.0, second: float = 1.0, dtype: torch.dtype | None = None, device: Any = None
) -> NormalFormGame:
    """A symmetric 2 x 2 anti-coordination game: do what the other does not.

    A player earns ``first`` when it alone plays action 0, ``second`` when it
    alone plays action 1, and 0 when both choose the same action: row
    payoffs ``A = [[0, first], [second, 0]]``, column payoffs ``A^T``, with
    ``first, second > 0``. Three equilibria: the pure ``(0, 1)`` and
    ``(1, 0)``, and the symmetric mixed one in which both players play
    action 0 with probability ``first / (first + second)``.

    Raises:
        ValueError: ``first <= 0`` or ``second <= 0``.

    References:
        Rapoport & Chammah (1966), "The game of chicken"; Bramoullé (2007),
        "Anti-coordination and social interactions", Games Econ. Behav. 58.
    """
    f, s = check_real(first, "first"), check_real(second, "second")
    if f <= 0 or s <= 0:
        raise ValueError(f"first and second must be > 0; received first={f}, second={s}")
    A = [[0.0, f], [s, 0.0]]
    return _bimatrix(A, [list(col) for col in zip(*A)], dtype, device)


def symmetric_game(A: Any) -> NormalFormGame:
    """The symmetric two-player game ``(A, A^T)``, batched.

    The row player receives ``A[a, b]`` and the column player ``A[b, a]`` at
    the profile ``(a, b)``: both players face the same payoff matrix from
    their own point of view.

    Args:
        A: square payoff matrices ``(*batch, m, m)``.

    Returns:
        A :class:`NormalFormGame` with payoffs ``(*batch, 2, m, m)``.

    Raises:
        ValueError: ``A`` is not square.
    """
    a = as_tensor(A, "A", min_dim=2)
    if a.shape[-1] != a.shape[-2]:
        raise ValueError(f"A must be square (*batch, m, m); received shape {tuple(a.shape)}")
    return NormalFormGame(torch.stack([a, a.transpose(-1, -2)], dim=-3), num_players=2)


def is_symmetric(game: NormalFormGame, tol: float = 0.0) -> Tensor:
    """``(*batch,)`` True where the game is symmetric.

    A game is symmetric when every permutation ``pi`` of the players leaves it
    unchanged: ``P_{pi(i)}(a_{pi^{-1}(1)}, ..., a_{pi^{-1}(N)}) = P_i(a)`` for
    every player i and profile a (all players have the same number of
    actions). The transpositions ``(0 j)`` generate all permutations, so the
    test checks those ``N - 1``, within ``tol`` (payoff units, default 0: an
    exact test, which games from :func:`symmetric_game` pass exactly). For two
    players this is ``B = A^T``.

    Raises:
        TypeError: ``game`` is not a :class:`NormalFormGame`.
        ValueError: ``tol < 0``.
    """
    if not isinstance(game, NormalFormGame):
        raise TypeError(f"game must be a NormalFormGame; received {describe(game)}")
    tol = check_nonnegative(tol, "tol")
    n, p = game.num_players, game.payoffs  # p: (*batch, N, *A)
    if len(set(game.num_actions)) != 1:
        return torch.zeros(game.batch_shape, dtype=torch.bool, device=game.device)
    lead = p.dim() - n - 1  # number of batch dimensions
    ok = torch.ones(game.batch_shape, dtype=torch.bool, device=game.device)
    for j in range(1, n):
        swap = list(range(n))
        swap[0], swap[j] = j, 0
        players = torch.tensor(swap, device=p.device)
        axes = list(range(lead + 1)) + [lead + 1 + k for k in swap]
        q = p.index_select(lead, players).permute(axes)  # (*batch, N, *A) relabelled
        ok &= (q - p).abs().flatten(lead).amax(-1) <= tol
    return ok
