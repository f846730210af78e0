"""Lyapunov-function minimisation for N-player games, batched and certified."""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import Tensor

from ...result import EquilibriumResult, warn_not_converged
from ...tolerance import resolve_tol
from ...validation import check_int
from .._nplayer_common import finish, payoff_ranges, prepare
from .._nplayer_multilinear import Multilinear, own_first
from ..game import payoff_action_values, payoff_regret
from ._nplayer_faces import Faces, candidate_regret, face_candidates, face_count
from ._nplayer_homotopy import Layout
from ._nplayer_polish import polish_reduced, polish_support
from .support_profiles import Dominance, relabel_supports, wide_support_count, wide_supports

__all__ = ["liapunov"]

_MAX_FACES = 4096  # closed-form faces per game beyond which that stage is skipped
_MAX_SUPPORTS = 512  # prod_i (2^A_i - 1) beyond which the wide supports are skipped
_EXTRA = 1  # Newton rounds (of 8 iterations) on the wide supports beyond the first
_RESTARTS = (4, 12)  # random starts per wide support after the centroids, batch by batch
_COLUMNS = 1 << 16  # candidates, supports or starts (times games) at most at a time
_GROW = 1.5  # a successful step multiplies the step length by this
_SHRINK = 0.25  # a rejected step (the function rose) multiplies it by this
_FIRST_STEP = 4.0  # the first step length (payoffs scaled to range 1)
_SUPPORT = 1e-2  # support guess: sigma_i(a) >= this * max_b sigma_i(b)
_SLACK = 1e-6  # dominance margin beyond tol, times the payoff range (clamping, residuals)
_VALUE_GAP = 1e-2  # second guess: v_i(a) >= max_b v_i(b) - this (scaled payoffs)


def liapunov(
    game: Any,
    tol: float | None = None,
    starts: int = 32,
    max_iter: int = 200,
    polish_every: int = 10,
    seed: int = 0,
) -> EquilibriumResult:
    """A Nash equilibrium by minimising the Lyapunov function (Gambit's ``liap``), batched.

    For a profile ``sigma = (sigma_1, ..., sigma_N)`` in the product of simplices,
    with action values ``v_i(a) = u_i(a, sigma_-i)`` and ``u_i = <sigma_i, v_i>``,

        ``L(sigma) = sum_i sum_a max(0, v_i(a) - u_i)^2  >= 0``,

    and ``L(sigma) = 0`` iff no player gains by deviating to a pure action, i.e.
    iff ``sigma`` is a Nash equilibrium (McKelvey 1991): the equilibria are
    exactly the global minimisers of ``L`` with value zero, and

        ``sigma* = argmin_{sigma in Delta_1 x ... x Delta_N} L(sigma)``.

    ``L`` has local minima with ``L > 0``, so the method restarts from several
    points (as Gambit's ``liap`` does from user-given starts), and looks for
    zeros of ``L`` first where they can be found exactly. Batched over games
    (and starts), each stage working only on the games not yet certified:

    1. the vertices: a pure profile with ``L = 0`` (every action a best
       response) is an equilibrium;
    2. the small faces: where all players but two (or three) are pure and
       those mix over two actions each, the zeros of ``L`` restricted to the
       face solve the mixers' indifference conditions, in closed form (a ratio
       for two mixers, a quadratic for three; see ``_nplayer_faces``); every
       candidate is checked by its regret (skipped when a game shape has more
       than 4096 such faces);
    3. the wider supports: for every other *generic* support profile (each
       mixer's ``|S_i| - 1`` indifference conditions at most the others'
       ``sum_{j != i} (|S_j| - 1)`` free weights; e.g. 46 of the 343 of a
       3x3x3 game) that survives conditional strict dominance, Newton's
       method on the indifference system from the support's centroid (the
       polish of :func:`~aggregation.logit_qre` in reduced coordinates, one
       free weight per support action beyond the first and ``u_i``
       eliminated, two rounds of 8 iterations; skipped when ``prod_i (2^A_i -
       1) > 512``), then, for the games still open, from 4 and then 12 more
       random points of each surviving support (Dirichlet(1) weights drawn
       from ``seed``, the same for every game). A support profile ``S`` is
       pruned for a game (Porter, Nudelman & Shoham 2004) when some ``a in
       S_i`` is beaten by some ``b in A_i`` against every pure profile of
       ``S_-i`` by more than ``tol + 1e-6 * range_i``:
       ``min_{s_-i in S_-i} (P_i(b, s_-i) - P_i(a, s_-i)) > tol + 1e-6 range_i``.
       Then at any solution of the system on ``S`` (``v_i(a) = u_i``, the
       opponents mixing within ``S_-i``) ``v_i(b) - u_i`` is an average of
       those differences, so player ``i``'s regret exceeds ``tol``: nothing
       certifiable is lost (the ``1e-6 * range_i`` covers the clamping of
       entries down to ``-1e-9`` and Newton's residual), and the equilibria,
       of regret 0, keep their supports. On the random 3x3x3 games that
       stages 1-2 leave open, about 40% of the (game, support) pairs are
       pruned. For the reduced coordinates each pair's actions are relabelled
       so that every ``S_i`` holds action 0;
    4. entropic mirror descent on ``L`` from the centroid and ``starts - 1``
       random interior points (the same for every game),
       ``sigma_i <- sigma_i * exp(-eta grad_i L)``
       normalised, with a per-start step ``eta`` that grows after a decrease
       and shrinks (the step rejected) after an increase; every
       ``polish_every`` steps, at each game's start of least ``L``, the
       supports are guessed (the actions with ``sigma_i(a) >= 1e-2 max
       sigma_i``, and those within ``1e-2`` of the best value, payoffs scaled
       to each player's range 1) and the indifference system on each guess is
       solved by Newton's method.

    A game is certified, and leaves the working set, once a profile of one of
    these stages, recomputed with the game's regret function on the original
    payoffs, has ``max_i regret_i <= tol``; the returned profile is the
    candidate of least regret, and ``converged`` is recomputed from it. A
    game that no stage certifies within ``max_iter`` descent steps is returned
    with ``converged = False`` (and a warning): stages 2 and 3 only propose
    (Newton from a few starts may miss a support's solution; degenerate faces
    are skipped) and the descent may end in a local minimum of ``L`` from
    every start, or run out of ``max_iter``. On 10,000 random 3x3x3 games
    (uniform payoffs, ``tol=1e-6``) 68.7% were certified at the vertices,
    29.2% on the faces and 2.1% on the wider supports, none by the descent,
    and every game was certified (``benchmarks/solvers.py``, 2026-12-06; the
    same games, stage by stage, as without the dominance pruning, which a run
    on 10,000 other games confirmed: 6850, 2928 and 222 both ways; before the
    random restarts of stage 3, the descent was left 0.13% of the
    games and 2 of them, 0.02%, were not certified).

    Args:
        game: a :class:`~aggregation.NormalFormGame`, payoffs
            ``(*batch, N, A_1, ..., A_N)``. Use float64 for ``tol < 1e-5``.
        tol: regret tolerance (payoff units) that ``converged`` refers to;
            None means :func:`~aggregation.default_tol` of the game's dtype.
        starts: descent starting points per game (the centroid and
            ``starts - 1`` random interior points), ``>= 1``.
        max_iter: descent steps per start, at most (``0``: stages 1-3 only).
        polish_every: descent steps between support guesses, ``>= 1``.
        seed: seed of the random starting points (a private generator; the
            same points for every game, so a game's answer does not depend on
            the rest of its batch).

    Returns:
        An :class:`~aggregation.EquilibriumResult` with strategies
        ``(*batch, A_i)``; ``converged`` iff ``max_i regret_i <= tol`` for the
        returned profile; ``iterations`` the descent steps used (0 for a pure
        equilibrium); ``residual`` ``(*batch,)`` the Lyapunov value ``L`` of the
        returned profile (payoff units squared); ``info["pure"]``,
        ``info["face"]`` and ``info["support"]`` ``(*batch,)`` whether the
        returned profile came from stage 1, 2 or 3 (none of them: the descent,
        or nothing certified).

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame, liapunov
        >>> pennies = NormalFormGame.zero_sum(torch.tensor([[1., -1.], [-1., 1.]]).double())
        >>> out = liapunov(pennies)
        >>> bool(out.converged), out.strategies[0].tolist()
        (True, [0.5, 0.5])

    References:
        McKelvey (1991), "A Liapunov function for Nash equilibria", Caltech
        Social Science Working Paper 953; Porter, Nudelman & Shoham (2004),
        "Simple search methods for finding a Nash equilibrium", AAAI (2004),
        and Games and Economic Behavior 63 (2008); McKelvey, McLennan & Turocy, *Gambit:
        Software Tools for Game Theory* (``gambit-liap``); McKelvey &
        McLennan (1997), "The maximal number of regular totally mixed Nash
        equilibria", J. Economic Theory; Beck & Teboulle
        (2003), "Mirror descent and nonlinear projected subgradient methods for
        convex optimization", Operations Research Letters.
    """
    starts = check_int(starts, "starts", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    polish_every = check_int(polish_every, "polish_every", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    prep = prepare(game)
    tol = resolve_tol(tol, prep.dtype)
    n, size, dtype, device = prep.n, prep.size, prep.cdtype, prep.device
    ranges = payoff_ranges(prep)  # (B, N)
    scaled = prep.payoffs / ranges.reshape((size, n) + (1,) * n)  # (B, N, *A)

    out = [torch.zeros(size, a, dtype=dtype, device=device) for a in prep.actions]
    iters = torch.zeros(size, dtype=torch.int64, device=device)
    best = torch.full((size,), math.inf, dtype=dtype, device=device)  # best regret seen
    pure, pure_profile = _pure_equilibrium(scaled, prep.actions)  # (B,), N x (B, A_i)
    for o, p in zip(out, pure_profile):
        o.copy_(p)
    best = torch.where(pure, torch.zeros_like(best), best)
    source = pure.to(torch.int64)  # 1 vertex, 2 face, 3 wider support, 0 descent or none
    for mixers in (2, 3):
        left = (best > tol).nonzero().squeeze(-1)  # games still open
        count = face_count(prep.actions, mixers) if n >= mixers else 0
        if not left.numel() or not 0 < count <= _MAX_FACES:
            continue
        faces = _faces(prep.actions, mixers)
        per_game = faces.count * (1 if mixers == 2 else 7)  # candidates per game
        for part in left.split(max(1, _COLUMNS // per_game)):  # bounded memory
            _on_faces(prep, part, faces, out, best, source)
    left = (best > tol).nonzero().squeeze(-1)
    if left.numel() and wide_support_count(prep.actions) <= _MAX_SUPPORTS:
        masks = _wide(prep.actions)  # (K, M)
        # conditional strict dominance: no solution of regret <= tol on a pruned support
        margin = tol + _SLACK * ranges  # (B, N) payoff units
        dominance = _dominance(prep.actions)
        alive = torch.zeros(size, masks.shape[0], dtype=torch.bool, device=device)  # (B, K)
        work = masks.shape[0] * math.prod(prep.actions) * max(prep.actions)  # per game
        per = max(1, 64 * _COLUMNS // work)  # games at a time: (G, A_i, A_i, U, Q) bounded
        for part in left.split(per):
            alive[part] = ~dominance.pruned(prep.payoffs[part], margin[part])
        gen = torch.Generator(device="cpu").manual_seed(seed)
        # the centroids (equal weights), then random points in batches
        rounds = [(masks, torch.ones(masks.shape, dtype=torch.float64), 1)]
        for count in _RESTARTS:  # Dirichlet(1) weights, the same for every game
            w = -torch.rand(count, masks.shape[1], generator=gen, dtype=torch.float64).log()
            rounds.append((masks.repeat(count, 1), w.repeat_interleave(masks.shape[0], 0), count))
        for rows, weights, count in rounds:
            for part in left.split(max(1, _COLUMNS // max(1, rows.shape[0]))):
                keep = alive[part].repeat(1, count)  # (G, R) the rows of masks.repeat(count, 1)
                _on_supports(
                    prep, scaled, ranges, part, (rows, weights, keep), out, best, source, tol
                )
            left = (best > tol).nonzero().squeeze(-1)
            if not left.numel():
                break
    left = (best > tol).nonzero().squeeze(-1)
    if left.numel() and max_iter > 0:
        config = (starts, max_iter, polish_every, seed)
        for part in left.split(max(1, _COLUMNS // starts)):
            _descend(prep, scaled, part, out, iters, best, source, tol, config)
    converged = torch.ones(size, dtype=torch.bool, device=device)  # finish() checks regret
    lyap = _lyapunov_value(prep.payoffs, out, n)
    info = {"pure": pure, "face": source == 2, "support": source == 3}
    result = finish(prep, out, converged, iters, "liapunov", tol, lyap, info)
    warn_not_converged(result.converged, "liapunov")
    return result


@functools.lru_cache(maxsize=32)
def _faces(actions: tuple[int, ...], mixers: int) -> Faces:
    return Faces(actions, mixers)


@functools.lru_cache(maxsize=32)
def _wide(actions: tuple[int, ...]) -> Tensor:
    return wide_supports(actions)


@functools.lru_cache(maxsize=32)
def _dominance(actions: tuple[int, ...]) -> Dominance:
    return Dominance(actions, _wide(actions))


def _on_supports(prep, scaled, ranges, left: Tensor, starts, out, best, source, tol) -> None:
    """Newton's method on the surviving (game, support) pairs, one start per pair.

    ``starts`` is ``(masks, weights, keep)``: supports ``(R, M)``, positive start
    weights ``(R, M)`` (all ones: the support's centroid) and ``keep`` ``(G, R)``,
    the pairs of the games ``left`` and rows that conditional dominance did not
    prune. The start of a pair is proportional to its row's weights on its
    support, the same for every game, so that a game's answer does not depend on
    its batch. ``1 + _EXTRA`` rounds of the polish; after each, the certified
    games leave. Each game keeps its candidate of least regret over its pairs
    (the first such row), as if the pruned pairs had infinite regret.
    """
    masks, weights, keep = starts
    r, g = masks.shape[0], left.numel()
    pairs = keep.nonzero()  # (S, 2): (game position, row), game-major
    if not pairs.numel():
        return
    rep, row = pairs[:, 0], pairs[:, 1]  # (S,) each
    n, actions = prep.n, prep.actions
    layout = Layout(actions)
    order, cells = relabel_supports(actions, masks.cpu())  # (R, M), (R, prod A): min S_i to 0
    order, cells = order.to(left.device)[row], cells.to(left.device)[row]  # (S, M), (S, prod A)
    flat = scaled[left].flatten(2)[rep]  # (S, N, prod A)
    relabelled = flat.gather(2, cells[:, None].expand(-1, n, -1)).reshape(flat.shape[:2] + actions)
    own = Multilinear(actions, own_first(relabelled))  # payoffs relabelled per pair
    rows = row.to(masks.device)
    mask = masks[rows].to(left.device).gather(1, order).T  # (M, S) holding each action 0
    start = mask.to(scaled.dtype) * weights[rows].to(scaled).gather(1, order).T  # (M, S)
    sigma = [m / m.sum(0, keepdim=True) for m in layout.split(start)]
    back = [order[:, o : o + a].T - o for o, a in zip(layout.offsets, actions)]  # N x (A_i, S)
    for _ in range(1 + _EXTRA):
        cand, _, ok = polish_reduced(layout, own, sigma, layout.split(mask))  # N x (A_i, S)
        values = own.values(cand)  # scaled payoffs: regret in units of each player's range
        reg = torch.stack([v.amax(0) - (v * c).sum(0) for v, c in zip(values, cand)])  # (N, S)
        reg = (reg * ranges[left][rep].T).amax(0)  # (S,) in payoff units
        reg = torch.where(ok, reg, torch.full_like(reg, math.inf))
        place = rep * r + row  # (S,) the pair's place in a (G, R) table
        table = reg.new_full((g * r,), math.inf)
        table[place] = reg
        low, pick = table.reshape(g, r).min(-1)  # (G,)
        column = torch.zeros(g * r, dtype=torch.int64, device=left.device)
        column[place] = torch.arange(place.numel(), device=left.device)
        pick = column[pick + torch.arange(g, device=left.device) * r]  # (G,) a pair
        better = low < best[left]
        games, chosen = left[better], pick[better]
        for o, c, b in zip(out, cand, back):
            o[games] = torch.zeros_like(c[:, chosen]).scatter(0, b[:, chosen], c[:, chosen]).T
        best[games] = low[better]
        source[games] = 3
        open_games = best[left] > tol  # (G,)
        if not bool(open_games.any()):
            return
        cols = open_games[rep]  # (S,) the pairs of the open games
        renumber = open_games.cumsum(0) - 1  # (G,) a game's position among the open ones
        left, g = left[open_games], int(open_games.sum())
        rep, row = renumber[rep[cols]], row[cols]
        own, mask = own.index(cols), mask[:, cols]
        sigma = [c[:, cols] for c in cand]
        back = [b[:, cols] for b in back]


def _on_faces(prep, left: Tensor, faces: Faces, out, best, source) -> None:
    """Certify the best closed-form candidate on ``faces`` for the games ``left``.

    Only the valid candidates (weights in ``[0, 1]``) are evaluated, each game's
    first, in their order (:func:`face_candidates`): the least
    regret, at the first such candidate, is the same as over all of them.
    """
    payoffs = prep.payoffs[left]  # (G, N, *A)
    profile = face_candidates(payoffs, prep.actions, faces)  # N x (G, W, A_i)
    if not profile[0].shape[1]:
        return
    reg = candidate_regret(payoffs, profile)  # (G, W)
    low, pick = torch.nan_to_num(reg, nan=math.inf).min(-1)  # (G,)
    better = low < best[left]
    games = left[better]
    for o, p in zip(out, profile):
        o[games] = p[better, pick[better]]
    best[games] = low[better]
    source[games] = 2


def _pure_equilibrium(scaled: Tensor, actions: tuple[int, ...]) -> tuple[Tensor, list[Tensor]]:
    """The first pure profile (row-major order) where every action is a best response.

    Returns a ``(B,)`` mask of games with one and N one-hot strategies ``(B, A_i)``
    (the first actions where there is none).
    """
    n, size = len(actions), scaled.shape[0]
    nash = torch.ones((size, *actions), dtype=torch.bool, device=scaled.device)
    for i in range(n):
        p = scaled[:, i]  # (B, *A)
        nash &= p == p.amax(1 + i, keepdim=True)
    flat = nash.reshape(size, math.prod(actions))  # (B, prod A)
    found = flat.any(-1)  # (B,)
    index = flat.to(torch.uint8).argmax(-1)  # (B,) the first True (0 where none)
    profile = []
    for a in reversed(actions):
        profile.append(torch.nn.functional.one_hot(index % a, a).to(scaled.dtype))
        index = index // a
    return found, profile[::-1]


def _lyapunov_value(payoffs: Tensor, sigma: list[Tensor], n: int) -> Tensor:
    """``(B,)`` ``L(sigma)`` for batch-first strategies ``(B, A_i)``."""

    values = payoff_action_values(payoffs, sigma, n)
    total = payoffs.new_zeros(payoffs.shape[0])
    for v, s in zip(values, sigma):
        total = total + (v - (v * s).sum(-1, keepdim=True)).clamp_min(0).square().sum(-1)
    return total


def _value_and_grad(
    layout: Layout, own: Multilinear, sigma: list[Tensor]
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """``L`` ``(S,)``, its gradient and the action values, N x ``(A_i, S)`` each.

    Batch-last. With ``r_i = max(0, v_i - u_i)`` and ``T_ij = dv_i/dsigma_j``:
    ``dL/dsigma_j = -2 (sum_a r_j(a)) v_j
    + 2 sum_{i != j} (r_i^T T_ij - (sum_a r_i(a)) sigma_i^T T_ij)``.
    """
    pairs, values = own(sigma)  # T_ij (A_i, A_j, S), v_i (A_i, S)
    n = layout.n
    pos = [(v - (v * s).sum(0, keepdim=True)).clamp_min(0) for v, s in zip(values, sigma)]
    total = [r.sum(0) for r in pos]  # (S,) per player
    lyap = sum(r.square().sum(0) for r in pos)  # (S,)
    grad = []
    for j in range(n):
        g = -total[j] * values[j]  # (A_j, S): d(-u_j)/d sigma_j = -v_j
        for i in range(n):
            if i == j:
                continue
            t = pairs[(i, j)]  # (A_i, A_j, S)
            g = g + (pos[i][:, None] * t).sum(0) - total[i] * (sigma[i][:, None] * t).sum(0)
        grad.append(2 * g)
    return lyap, grad, values


def _descend(prep, scaled, left, out, iters, best, source, tol, config) -> None:
    """Multi-start mirror descent with periodic polishing on the open games ``left``.

    Writes into ``out`` (N x ``(B, A_i)``), ``iters`` and ``best`` (``(B,)``,
    the least regret of a candidate so far) and sets ``source`` to 0 where a
    descent candidate replaced an earlier stage's; ``config`` is ``(starts,
    max_iter, polish_every, seed)``.
    """
    starts, max_iter, polish_every, seed = config
    n, dtype, device = prep.n, prep.cdtype, prep.device
    layout = Layout(prep.actions)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    count = left.numel()
    ids = left.repeat_interleave(starts)  # (S,) game of each start
    sigma = []
    for a in prep.actions:
        # the same points for every game: a game's answer does not depend on its batch
        x = -torch.rand(a, starts, generator=gen, dtype=torch.float64).log()  # Dirichlet(1)
        x[:, 0] = 1.0  # start 0: the centroid
        x = (x / x.sum(0, keepdim=True)).to(dtype=dtype, device=device)  # (A_i, starts)
        sigma.append(x.repeat(1, count))  # (A_i, S), game-major
    own = Multilinear(prep.actions, own_first(scaled[ids]))
    eta = torch.full((ids.numel(),), _FIRST_STEP, dtype=dtype, device=device)
    floor = torch.finfo(dtype).tiny ** (1.0 / n)
    lyap, grad, values = _value_and_grad(layout, own, sigma)
    done = 0
    while done < max_iter and ids.numel():
        for _ in range(min(polish_every, max_iter - done)):
            trial = []
            for s, g in zip(sigma, grad):
                e = s * torch.exp(-(eta * (g - g.amax(0, keepdim=True))))
                e = e.masked_fill(e < floor, 0.0)
                trial.append(e / e.sum(0, keepdim=True))
            t_lyap, t_grad, t_values = _value_and_grad(layout, own, trial)
            good = t_lyap <= lyap  # (S,)
            sigma = [torch.where(good, t, s) for t, s in zip(trial, sigma)]
            grad = [torch.where(good, t, g) for t, g in zip(t_grad, grad)]
            values = [torch.where(good, t, v) for t, v in zip(t_values, values)]
            lyap = torch.where(good, t_lyap, lyap)
            eta = eta * torch.where(good, _GROW, _SHRINK)
        done += min(polish_every, max_iter - done)
        iters[ids] = done
        # support guesses at each game's lowest start, polished, certified on the payoffs
        games = ids[::starts]  # (G,) ids is game-major, `starts` entries per game
        pick = lyap.reshape(-1, starts).argmin(-1)  # (G,)
        pick = pick + torch.arange(games.numel(), device=device) * starts
        both = torch.cat([pick, pick])  # (2G,) the two guesses side by side: one polish
        at = [s[:, both] for s in sigma]  # N x (A_i, 2G)
        support = _guesses(at, [v[:, both] for v in values], games.numel())
        cand, _, ok = polish_support(layout, own.index(both), at, support)
        cand_first = [c.T for c in cand]  # N x (2G, A_i)
        reg = payoff_regret(prep.payoffs[games.repeat(2)], cand_first, n).amax(-1)  # (2G,)
        reg = torch.where(ok, reg, torch.full_like(reg, math.inf))
        low, which = reg.reshape(2, -1).min(0)  # (G,) the better guess
        col = which * games.numel() + torch.arange(games.numel(), device=device)
        better = low < best[games]  # (G,)
        for o, c in zip(out, cand_first):
            o[games[better]] = c[col[better]]
        best[games[better]] = low[better]
        source[games[better]] = 0
        game_done = torch.zeros(prep.size, dtype=torch.bool, device=device)
        game_done[games] = best[games] <= tol
        keep = ~game_done[ids]
        if not bool(keep.all()):
            ids, eta, lyap = ids[keep], eta[keep], lyap[keep]
            sigma = [s[:, keep] for s in sigma]
            grad = [g[:, keep] for g in grad]
            values = [v[:, keep] for v in values]
            own = own.index(keep)


def _guesses(sigma: list[Tensor], values: list[Tensor], g: int) -> list[Tensor]:
    """Support guesses N x ``(A_i, 2G)``: by probability (first G columns), by value."""
    out = []
    for s, v in zip(sigma, values):
        by_prob = s[:, :g] >= _SUPPORT * s[:, :g].amax(0, keepdim=True)  # (A_i, G)
        by_value = v[:, g:] >= v[:, g:].amax(0, keepdim=True) - _VALUE_GAP  # (A_i, G)
        out.append(torch.cat([by_prob, by_value], dim=1))
    return out
