"""Assertion helpers that check a solver's output against the mathematics.

Each helper recomputes the defining conditions in float64 (on the input's
device) and raises an ``AssertionError`` naming the first offending batch
element, player (or coordinate), action and the size of the violation, plus
how many elements of the batch fail. Bad *arguments* (a tolerance below
zero, an object that is not a game) raise ``TypeError`` or ``ValueError``
instead, so that a broken test is never mistaken for a broken solver.

* :func:`assert_nash`: ``max_i regret_i(sigma) <= tol`` for a finite game
  (Nash 1951), where ``regret_i = max_a u_i(a, sigma_-i) - u_i(sigma)``.
* :func:`assert_scale_equilibrium`: the scale game's equilibrium conditions,
  ``x >= 0`` and every player's regret ``max_{y>=0} u_l(y, x_-l) - u_l(x)``
  ``<= tol`` (equivalently the LCP ``x >= 0, Cx - a >= 0, x^T(Cx - a) = 0``).
* :func:`assert_kkt`: the KKT conditions of the convex aggregator
  ``max_{w in simplex} a^T w - 1/2 w^T Q w``, measured by the Frank-Wolfe gap
  ``max_l g_l - w^T g`` with ``g = a - Q w`` (zero iff KKT holds; an upper
  bound on the suboptimality when Q is positive semidefinite).
* :func:`assert_strongly_monotone`: ``lambda_min((C + C^T)/2) >= margin``,
  the assumption behind existence, uniqueness and convergence.
* :func:`assert_causal`: changing inputs after position t changes no output
  at positions ``<= t``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..finite.game import NormalFormGame, payoff_action_values
from ..result import EquilibriumResult, EquilibriumSet
from ..validation import as_tensor, check_int, check_nonnegative, describe

__all__ = [
    "assert_causal",
    "assert_kkt",
    "assert_nash",
    "assert_scale_equilibrium",
    "assert_strongly_monotone",
]


# ----------------------------------------------------------------- helpers
def _exact_dtype(device: torch.device) -> torch.dtype:
    """float64 wherever the device supports it (MPS does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _index(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    """Unravel a flat index into a batch index tuple."""
    out = []
    for size in reversed(tuple(shape)):
        out.append(flat % size)
        flat //= size
    return tuple(reversed(out))


def _where(shape: Sequence[int], flat: int) -> str:
    """``"at batch element (i, j): "``, or nothing for an unbatched input."""
    return f"at batch element {_index(flat, shape)}: " if len(shape) else ""


def _summary(failing: Tensor, what: str) -> str:
    """``"3 of 16 batch elements fail (what); "``, or nothing for an unbatched input."""
    if failing.dim() == 0:
        return ""
    return f"{int(failing.sum())} of {failing.numel()} batch elements fail ({what}); "


def _tensor_for_check(value: Any, name: str, min_dim: int = 0) -> Tensor:
    """A float64 copy of a solver output; non-finite entries are a failure."""
    t = as_tensor(value, name, min_dim=min_dim, finite=False)
    t = t.detach().to(_exact_dtype(t.device))
    if t.numel() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise AssertionError(f"{name} contains {bad} NaN or infinite entries: {describe(t)}")
    return t


# ------------------------------------------------------------- finite games
def _profile_of(profile: Any) -> tuple[Any, ...]:
    if isinstance(profile, (EquilibriumResult, EquilibriumSet)):
        return tuple(profile.strategies)
    if isinstance(profile, (Tensor, str)) or not isinstance(profile, Sequence):
        raise TypeError(
            "profile must be a tuple of per-player strategies, an EquilibriumResult or an "
            f"EquilibriumSet; received {describe(profile)}"
        )
    return tuple(profile)


def assert_nash(
    game: NormalFormGame,
    profile: Any,
    tol: float = 1e-6,
    *,
    simplex_tol: float = 1e-6,
) -> Tensor:
    """Assert that ``profile`` is a ``tol``-Nash equilibrium of every game in the batch.

    Checks, per batch element, that each ``sigma_i`` lies on the simplex
    (entries ``>= -simplex_tol`` summing to 1 within ``simplex_tol``) and that

        regret_i(sigma) = max_a u_i(a, sigma_-i) - u_i(sigma) <= tol   for all i,

    computed in float64. An :class:`~aggregation.EquilibriumSet` is checked on
    its ``valid`` slots only.

    Args:
        game: a :class:`~aggregation.NormalFormGame` with batch shape ``(*batch,)``.
        profile: N tensors ``(*batch, A_i)`` (a tuple or list), an
            ``EquilibriumResult``, or an ``EquilibriumSet`` (tensors
            ``(*batch, E, A_i)``).
        tol: the regret tolerance in payoff units.
        simplex_tol: tolerance on the simplex constraints.

    Returns:
        The regrets, ``(*batch, N)`` (``(*batch, E, N)`` for a set; zero on
        invalid slots), so a test can make further claims.

    Raises:
        AssertionError: naming the batch element, the player, its best
            deviation (action), that action's value, the profile's value and
            the regret; or the player whose strategy is off the simplex.
        TypeError, ValueError: the arguments themselves are malformed.

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame
        >>> pennies = NormalFormGame.zero_sum(torch.tensor([[1., -1.], [-1., 1.]]))
        >>> half = torch.tensor([0.5, 0.5])
        >>> assert_nash(pennies, (half, half)).tolist()
        [0.0, 0.0]
        >>> assert_nash(pennies, (torch.tensor([1., 0.]), half))
        Traceback (most recent call last):
        ...
        AssertionError: not a 1e-06-Nash equilibrium: player 1 gains by \
deviating to action 1: it earns 1 there against 0 for its strategy (regret 1 > tol 1e-06)
    """
    if not isinstance(game, NormalFormGame):
        raise TypeError(f"game must be a NormalFormGame; received {describe(game)}")
    tol = check_nonnegative(tol, "tol")
    simplex_tol = check_nonnegative(simplex_tol, "simplex_tol")
    strategies = _profile_of(profile)
    n = game.num_players
    if len(strategies) != n:
        raise ValueError(
            f"profile must hold one strategy per player ({n}); received {len(strategies)}"
        )
    valid = None
    payoffs = game.payoffs.detach().to(_exact_dtype(game.device))
    if isinstance(profile, EquilibriumSet):
        valid = profile.valid.to(game.device)
        payoffs = payoffs.unsqueeze(-(n + 2))  # (*batch, 1, N, A_1..A_N)
    sigma = []
    for i, (s, a) in enumerate(zip(strategies, game.num_actions)):
        t = _tensor_for_check(s, f"profile[{i}]", min_dim=1).to(game.device)
        if t.shape[-1] != a:
            raise ValueError(
                f"profile[{i}] must have {a} entries (player {i}'s actions) in its last "
                f"dimension; received shape {tuple(t.shape)}"
            )
        sigma.append(t.to(payoffs.dtype))
    batch = torch.broadcast_shapes(payoffs.shape[: -(n + 1)], *(s.shape[:-1] for s in sigma))
    keep = torch.ones(batch, dtype=torch.bool, device=game.device)
    if valid is not None:
        keep = keep & valid
    # Simplex feasibility first: a regret is meaningless off the simplex.
    for i, s in enumerate(sigma):
        s = s.expand(*batch, s.shape[-1])  # (*batch, A_i)
        low = s.amin(-1)  # (*batch,)
        off = (s.sum(-1) - 1).abs()  # (*batch,)
        bad = ((low < -simplex_tol) | (off > simplex_tol)) & keep
        if bool(bad.any()):
            flat = int(torch.nonzero(bad.reshape(-1))[0])
            k = _index(flat, batch)
            raise AssertionError(
                f"not a mixed profile: {_summary(bad, f'player {i} off the simplex')}"
                f"{_where(batch, flat)}player {i}'s strategy is off the simplex: min entry "
                f"{float(low[k]):.4g} and sums to {float(s[k].sum()):.10g} "
                f"(simplex_tol {simplex_tol:g})"
            )
    values = payoff_action_values(payoffs, sigma, n)  # N x (*batch, A_i)
    regrets, best, earned = [], [], []
    for v, s in zip(values, sigma):
        v = v.expand(*batch, v.shape[-1])
        top, arg = v.max(-1)  # (*batch,)
        own = (v * s).sum(-1)  # (*batch,)
        regrets.append((top - own).clamp_min(0))
        best.append((arg, top))
        earned.append(own)
    regret = torch.stack(regrets, dim=-1) * keep.unsqueeze(-1)  # (*batch, N)
    worst, who = regret.max(-1)  # (*batch,)
    failing = worst > tol
    if bool(failing.any()):
        flat = int(torch.argmax(torch.where(failing, worst, -1.0).reshape(-1)))
        k = _index(flat, batch)
        i = int(who[k])
        action = int(best[i][0][k])
        raise AssertionError(
            f"not a {tol:g}-Nash equilibrium: {_summary(failing, 'regret above tol')}"
            f"{_where(batch, flat)}player {i} gains by deviating to action {action}: it earns "
            f"{float(best[i][1][k]):.6g} there against {float(earned[i][k]):.6g} for its "
            f"strategy (regret {float(worst[k]):.6g} > tol {tol:g})"
        )
    return regret


# --------------------------------------------------------------- scale game
#: What each kind of input may be: (the name in messages, its matrix, the attribute
#: pairs of an object holding one, what the message says was expected).
_PARTS = {
    "game": (
        "C",
        (("a", "C"), ("utilities", "interaction")),
        "a ScaleGame (with attributes a, C and optionally mask) or a tuple (a, C[, mask])",
    ),
    "problem": (
        "Q",
        (("a", "Q"), ("a", "C")),
        "a tuple (a, Q[, mask]) or have attributes a and Q",
    ),
}


def _parts(obj: Any, name: str) -> tuple[Any, Any, Any]:
    """``(a, M, mask)`` from an ``(a, M[, mask])`` tuple or an object holding them
    (a ScaleGame-like ``game``, a QP-like ``problem``: :data:`_PARTS`)."""
    second, attributes, expected = _PARTS[name]
    if isinstance(obj, (tuple, list)):
        if len(obj) not in (2, 3):
            raise ValueError(
                f"{name} must be (a, {second}) or (a, {second}, mask); received a sequence "
                f"of length {len(obj)}"
            )
        return obj[0], obj[1], obj[2] if len(obj) == 3 else None
    for a_name, m_name in attributes:
        if hasattr(obj, a_name) and hasattr(obj, m_name):
            return getattr(obj, a_name), getattr(obj, m_name), getattr(obj, "mask", None)
    raise TypeError(f"{name} must be {expected}; received {describe(obj)}")


def _scale_strategies(x: Any) -> Any:
    if isinstance(x, EquilibriumResult):
        return torch.stack([torch.as_tensor(s) for s in x.strategies], dim=-1)
    for name in ("x", "strategy", "weights"):
        if not isinstance(x, (Tensor, list, tuple)) and hasattr(x, name):
            return getattr(x, name)
    return x


def _scale_regret(a: Tensor, C: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-player regret, best response and ``b_l = a_l - sum_{k != l} C_lk x_k``."""
    diag = torch.diagonal(C, dim1=-2, dim2=-1)  # (*batch, L)
    b = a - (C @ x.unsqueeze(-1)).squeeze(-1) + diag * x  # (*batch, L)
    inf = torch.full_like(b, float("inf"))
    safe = torch.where(diag > 0, diag, torch.ones_like(diag))
    best = torch.where(diag > 0, b.clamp_min(0) / safe, torch.zeros_like(b))  # (*batch, L)
    util = b * x - 0.5 * diag * x * x  # (*batch, L)
    best_util = b * best - 0.5 * diag * best * best
    regret = (best_util - util).clamp_min(0)
    # With C_ll <= 0 the best response is unbounded unless C_ll == 0 and b_l <= 0.
    unbounded = (diag < 0) | ((diag == 0) & (b > 0))
    regret = torch.where(unbounded, inf, regret)
    best = torch.where(unbounded, inf, best)
    return regret, best, b


def assert_scale_equilibrium(
    game: Any,
    x: Any,
    tol: float = 1e-6,
    *,
    mask: Any = None,
    nonneg_tol: float = 0.0,
) -> Tensor:
    """Assert that ``x`` is a ``tol``-Nash equilibrium of the scale game.

    Player l chooses ``x_l >= 0`` to maximise
    ``u_l(x) = a_l x_l - 1/2 C_ll x_l^2 - x_l sum_{k != l} C_lk x_k``. With
    ``b_l = a_l - sum_{k != l} C_lk x_k`` its best response is
    ``max(0, b_l) / C_ll`` and its regret is
    ``max_{y >= 0} u_l(y, x_-l) - u_l(x) >= 0`` (infinite if ``C_ll <= 0`` and
    the player can gain without bound). ``x`` is a ``tol``-equilibrium iff
    ``x >= -nonneg_tol`` and every present player's regret is ``<= tol``; with
    ``tol = 0`` this is exactly the LCP ``x >= 0, Cx - a >= 0, x^T(Cx - a) = 0``.
    Absent players (``mask`` False) must play exactly 0.

    Args:
        game: a ``ScaleGame`` (attributes ``a``, ``C``, optional ``mask``) or a
            tuple ``(a, C)`` / ``(a, C, mask)``: ``a`` ``(*batch, L)``, ``C``
            ``(*batch, L, L)``, mask ``(*batch, L)`` bool.
        x: ``(*batch, L)`` strategies, or an ``EquilibriumResult`` whose
            strategies are L tensors ``(*batch,)``.
        tol: the regret tolerance (payoff units).
        mask: overrides the game's mask.
        nonneg_tol: how far below zero a strategy may be.

    Returns:
        The regrets ``(*batch, L)`` (0 for absent players).

    Raises:
        AssertionError: naming the batch element, the player, its strategy,
            its best response, ``b_l``, ``C_ll`` and the regret; or a negative
            strategy; or an absent player that does not play 0.

    Example:
        >>> import torch
        >>> a, C = torch.tensor([1.0, 1.0]), torch.tensor([[1.0, 1.0], [0.0, 1.0]])
        >>> assert_scale_equilibrium((a, C), torch.tensor([0.0, 1.0])).tolist()
        [0.0, 0.0]
    """
    tol = check_nonnegative(tol, "tol")
    nonneg_tol = check_nonnegative(nonneg_tol, "nonneg_tol")
    a_in, c_in, game_mask = _parts(game, "game")
    a = as_tensor(a_in, "a", min_dim=1).detach()
    dtype = _exact_dtype(a.device)
    a = a.to(dtype)
    C = as_tensor(c_in, "C", min_dim=2).detach().to(dtype=dtype, device=a.device)
    L = a.shape[-1]
    if C.shape[-2:] != (L, L):
        raise ValueError(
            f"C must have shape (*batch, {L}, {L}) to match a of shape {tuple(a.shape)}; "
            f"received {tuple(C.shape)}"
        )
    xs = _tensor_for_check(_scale_strategies(x), "x", min_dim=1).to(a.device)
    if xs.shape[-1] != L:
        raise ValueError(f"x must have {L} entries in its last dimension; received {describe(xs)}")
    mask = game_mask if mask is None else mask
    try:
        batch = torch.broadcast_shapes(a.shape[:-1], C.shape[:-2], xs.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"a {tuple(a.shape)}, C {tuple(C.shape)} and x {tuple(xs.shape)} have batch "
            "shapes that do not broadcast"
        ) from None
    a = a.expand(*batch, L)
    C = C.expand(*batch, L, L)
    xs = xs.expand(*batch, L)
    if mask is None:
        present = torch.ones(*batch, L, dtype=torch.bool, device=a.device)
    else:
        m = torch.as_tensor(mask, device=a.device)
        if m.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor; received {describe(m)}")
        present = m.expand(*batch, L)

    def fail(bad: Tensor, what: str, detail: Callable[[tuple[int, ...], int], str]) -> None:
        anybad = bad.any(-1)  # (*batch,)
        flat = int(torch.nonzero(anybad.reshape(-1))[0])
        k = _index(flat, batch)
        player = int(torch.nonzero(bad[k])[0])
        where = _where(batch, flat)
        raise AssertionError(
            f"not a scale-game equilibrium ({what}): {_summary(anybad, what)}{where}"
            f"{detail(k, player)}"
        )

    neg = (xs < -nonneg_tol) & present
    if bool(neg.any()):
        fail(neg, "negative strategy", lambda k, p: f"player {p} plays {float(xs[k][p]):.6g} < 0")
    ghost = (~present) & (xs != 0)
    if bool(ghost.any()):
        fail(
            ghost,
            "absent player does not play 0",
            lambda k, p: f"absent player {p} plays {float(xs[k][p]):.6g}",
        )
    x_eff = torch.where(present, xs.clamp_min(0), torch.zeros_like(xs))
    C_eff = C * (present.unsqueeze(-1) & present.unsqueeze(-2))
    regret, best, b = _scale_regret(a, C_eff, x_eff)
    regret = torch.where(present, regret, torch.zeros_like(regret))  # (*batch, L)
    failing = regret > tol
    if bool(failing.any()):
        # Report the worst player of the worst element.
        worst = regret.amax(-1)
        flat = int(torch.argmax(torch.where(failing.any(-1), worst, -1.0).reshape(-1)))
        k = _index(flat, batch)
        p = int(torch.argmax(regret[k]))
        anybad = failing.any(-1)
        raise AssertionError(
            f"not a {tol:g}-equilibrium of the scale game: "
            f"{_summary(anybad, 'regret above tol')}{_where(batch, flat)}player {p} "
            f"plays x = {float(xs[k][p]):.6g} but its best response is "
            f"{float(best[k][p]):.6g} (b = a_l - sum_k C_lk x_k = {float(b[k][p]):.6g}, "
            f"C_ll = {float(C[k][p][p]):.6g}): regret {float(regret[k][p]):.6g} > tol {tol:g}"
        )
    return regret


# ---------------------------------------------------------- convex problem
def assert_kkt(
    problem: Any,
    solution: Any,
    tol: float = 1e-6,
    *,
    mask: Any = None,
    simplex_tol: float = 1e-6,
) -> Tensor:
    """Assert the KKT conditions of ``max_{w in simplex} a^T w - 1/2 w^T Q w``.

    With ``g = a - Q w`` (the gradient) the KKT conditions are: ``w >= 0``,
    ``sum(w) = 1``, and a multiplier ``lambda`` with ``g_l = lambda`` where
    ``w_l > 0`` and ``g_l <= lambda`` where ``w_l = 0``. They hold iff the
    Frank-Wolfe gap ``max_l g_l - w^T g = sum_l w_l (lambda - g_l)`` (with
    ``lambda = max_l g_l``) is zero; the helper asserts ``gap <= tol``. For
    positive semidefinite Q the gap also bounds the suboptimality of ``w``.

    Args:
        problem: ``(a, Q)`` or ``(a, Q, mask)`` with ``a`` ``(*batch, L)``,
            ``Q`` ``(*batch, L, L)`` and mask ``(*batch, L)`` bool (absent
            scales), or an object with attributes ``a`` and ``Q``.
        solution: ``(*batch, L)`` weights, or an object with ``.weights``.
        tol: tolerance on the gap (objective units).
        mask: overrides the problem's mask: absent scales must have weight 0
            and are left out of the problem.
        simplex_tol: tolerance on ``w >= 0`` and ``sum(w) = 1``.

    Returns:
        The gap, ``(*batch,)``.

    Raises:
        AssertionError: naming the batch element and the coordinate that
            violates feasibility or complementarity (its weight, its gradient
            and the multiplier).

    Example:
        >>> import torch
        >>> problem = (torch.tensor([2.0, 0.0]), torch.eye(2))
        >>> assert_kkt(problem, torch.tensor([1.0, 0.0])).item()
        0.0
    """
    tol = check_nonnegative(tol, "tol")
    simplex_tol = check_nonnegative(simplex_tol, "simplex_tol")
    a_in, q_in, problem_mask = _parts(problem, "problem")
    a = as_tensor(a_in, "a", min_dim=1).detach()
    a = a.to(_exact_dtype(a.device))
    Q = as_tensor(q_in, "Q", min_dim=2).detach().to(dtype=a.dtype, device=a.device)
    L = a.shape[-1]
    if Q.shape[-2:] != (L, L):
        raise ValueError(
            f"Q must have shape (*batch, {L}, {L}) to match a of shape {tuple(a.shape)}; "
            f"received {tuple(Q.shape)}"
        )
    w = _scale_strategies(solution)
    w = _tensor_for_check(w, "solution", min_dim=1).to(a.device)
    if w.shape[-1] != L:
        raise ValueError(f"solution must have {L} entries in its last dimension; got {describe(w)}")
    try:
        batch = torch.broadcast_shapes(a.shape[:-1], Q.shape[:-2], w.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"a {tuple(a.shape)}, Q {tuple(Q.shape)} and solution {tuple(w.shape)} have batch "
            "shapes that do not broadcast"
        ) from None
    a, Q, w = a.expand(*batch, L), Q.expand(*batch, L, L), w.expand(*batch, L)
    mask = problem_mask if mask is None else mask
    if mask is None:
        present = torch.ones(*batch, L, dtype=torch.bool, device=a.device)
    else:
        m = torch.as_tensor(mask, device=a.device)
        if m.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor; received {describe(m)}")
        present = m.expand(*batch, L)
    ghost = (~present) & (w != 0)
    if bool(ghost.any()):
        anybad = ghost.any(-1)
        flat = int(torch.nonzero(anybad.reshape(-1))[0])
        k = _index(flat, batch)
        coord = int(torch.nonzero(ghost[k])[0])
        raise AssertionError(
            f"absent scale with nonzero weight: {_summary(anybad, 'absent scale weighted')}"
            f"{_where(batch, flat)}coordinate {coord} is absent but has weight "
            f"{float(w[k][coord]):.6g}"
        )
    low = w.amin(-1)  # (*batch,)
    total = w.sum(-1)  # (*batch,)
    infeasible = (low < -simplex_tol) | ((total - 1).abs() > simplex_tol)
    if bool(infeasible.any()):
        flat = int(torch.nonzero(infeasible.reshape(-1))[0])
        k = _index(flat, batch)
        raise AssertionError(
            f"not on the simplex: {_summary(infeasible, 'infeasible')}{_where(batch, flat)}"
            f"min weight {float(low[k]):.6g} at coordinate {int(w[k].argmin())}, sum "
            f"{float(total[k]):.10g} (simplex_tol {simplex_tol:g})"
        )
    pair = present.unsqueeze(-1) & present.unsqueeze(-2)  # (*batch, L, L)
    Q = torch.where(pair, Q, torch.zeros_like(Q))
    g = a - (Q @ w.unsqueeze(-1)).squeeze(-1)  # (*batch, L)
    g = torch.where(present, g, torch.full_like(g, -float("inf")))  # absent: not a candidate
    lam = g.amax(-1)  # (*batch,)
    contrib = torch.where(present, w.clamp_min(0) * (lam.unsqueeze(-1) - g), torch.zeros_like(g))
    gap = contrib.sum(-1)  # (*batch,)
    failing = gap > tol
    if bool(failing.any()):
        flat = int(torch.argmax(torch.where(failing, gap, -1.0).reshape(-1)))
        k = _index(flat, batch)
        coord = int(contrib[k].argmax())
        raise AssertionError(
            f"KKT conditions violated: {_summary(failing, 'Frank-Wolfe gap above tol')}"
            f"{_where(batch, flat)}coordinate {coord} has weight {float(w[k][coord]):.6g} "
            f"but gradient g = a - Qw = {float(g[k][coord]):.6g} below the multiplier "
            f"max_l g_l = {float(lam[k]):.6g} (attained at coordinate {int(g[k].argmax())}); "
            f"gap {float(gap[k]):.6g} > tol {tol:g}"
        )
    return gap


def assert_strongly_monotone(C: Any, margin: float = 0.0) -> Tensor:
    """Assert ``lambda_min((C + C^T) / 2) > margin`` for every matrix of the batch.

    This is the assumption under which the scale game ``F(x) = Cx - a`` is
    strongly monotone with modulus ``lambda_min`` (Rosen 1965): the
    equilibrium exists and is unique, and projected dynamics converge.

    Args:
        C: ``(*batch, L, L)``.
        margin: the required lower bound (strict).

    Returns:
        ``(*batch,)`` the smallest eigenvalues of the symmetric parts.

    Raises:
        AssertionError: naming the batch element, its smallest eigenvalue and
            the eigenvector that witnesses it.
    """
    margin = float(margin)
    M = as_tensor(C, "C", min_dim=2).detach()
    M = M.to(_exact_dtype(M.device))
    if M.shape[-1] != M.shape[-2]:
        raise ValueError(f"C must be square (*batch, L, L); received {describe(M)}")
    sym = 0.5 * (M + M.transpose(-1, -2))  # (*batch, L, L)
    values, vectors = torch.linalg.eigh(sym)  # (*batch, L), (*batch, L, L)
    lam = values[..., 0]  # (*batch,)
    failing = lam <= margin
    if bool(failing.any()):
        batch = lam.shape
        flat = int(torch.argmin(lam.reshape(-1)))
        k = _index(flat, batch)
        vec = ", ".join(f"{v:.4g}" for v in vectors[k][..., 0].tolist())
        raise AssertionError(
            f"not strongly monotone: {_summary(failing, f'lambda_min <= {margin:g}')}"
            f"{_where(batch, flat)}the symmetric part of C has eigenvalue "
            f"{float(lam[k]):.6g} <= {margin:g} with eigenvector [{vec}]"
        )
    return lam


# ---------------------------------------------------------------- causality
def _default_perturb(x: Tensor, generator: torch.Generator) -> Tensor:
    if x.is_floating_point() or x.is_complex():
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x + 1.0 + noise.to(x.device)
    if x.dtype == torch.bool:
        return ~x
    top = max(2, int(x.max()) + 1) if x.numel() else 2
    return (x + 1) % top


def assert_causal(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    dim: int = 1,
    cuts: Sequence[int] | None = None,
    tol: float = 0.0,
    perturb: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    seed: int = 0,
) -> None:
    """Assert that ``fn`` is causal along ``dim``: outputs at ``<= t`` ignore inputs ``> t``.

    For every cut ``t`` (default: all positions but the last) the inputs at
    positions ``> t`` are replaced (by default: shifted and noised, or
    incremented for integer tokens), and the outputs at positions ``<= t``
    must change by at most ``tol`` (default 0: bitwise equal).

    Args:
        fn: maps ``x`` to a tensor whose ``dim`` indexes the same positions.
        x: the input, of length ``n`` along ``dim``.
        dim: the sequence dimension of both input and output.
        cuts: the positions ``t`` to test.
        tol: the largest allowed absolute change.
        perturb: ``perturb(suffix, generator) -> new suffix``.
        seed: seeds the perturbation.

    Raises:
        AssertionError: naming the cut, the earliest position that changed
            and by how much.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor; received {describe(x)}")
    if not callable(fn):
        raise TypeError(f"fn must be callable; received {describe(fn)}")
    tol = check_nonnegative(tol, "tol")
    dim = dim % x.dim() if x.dim() else 0
    n = x.shape[dim] if x.dim() else 0
    if n < 1:
        raise ValueError(f"x must have at least one position along dim {dim}; got {describe(x)}")
    if cuts is None:
        cuts = range(n - 1)
    perturb = _default_perturb if perturb is None else perturb
    generator = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    with torch.no_grad():
        base = fn(x)
        for t in cuts:
            t = check_int(t, "cuts[i]", minimum=0, maximum=n - 1)
            if t == n - 1:
                continue
            head = x.narrow(dim, 0, t + 1)
            tail = perturb(x.narrow(dim, t + 1, n - t - 1), generator)
            changed = fn(torch.cat([head, tail.to(x.dtype)], dim=dim))
            old = base.narrow(dim, 0, t + 1)
            new = changed.narrow(dim, 0, t + 1)
            diff = (new.to(torch.float64) - old.to(torch.float64)).abs()
            diff = torch.where(torch.isnan(diff), torch.full_like(diff, float("inf")), diff)
            if bool((diff > tol).any()):
                per_pos = diff.movedim(dim, 0).reshape(t + 1, -1).amax(-1)  # (t+1,)
                first = int(torch.nonzero(per_pos > tol)[0])
                raise AssertionError(
                    f"not causal along dim {dim}: changing the inputs after position {t} "
                    f"changed the output at position {first} by {float(per_pos[first]):.6g} "
                    f"(max over positions <= {t}: {float(per_pos.max()):.6g} > tol {tol:g})"
                )
