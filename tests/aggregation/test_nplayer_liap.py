"""liapunov: Lyapunov-function minimisation (Gambit's liap), batched and certified by regret."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from aggregation import NormalFormGame, default_tol, liapunov, matching_pennies, prisoners_dilemma
from aggregation.finite.exact import support_profiles
from aggregation.finite.exact.support_profiles import Dominance, relabel_supports, wide_supports
from aggregation.testing import assert_nash, normal_form_games


def _random_games(seed: int, batch: int, counts: tuple[int, ...]) -> NormalFormGame:
    rng = np.random.default_rng(seed)
    P = rng.normal(size=(batch, len(counts), *counts))
    return NormalFormGame(torch.from_numpy(P), num_players=len(counts))


def _jordan() -> NormalFormGame:
    """Jordan's three-player matching pennies: 1 matches 2, 2 matches 3, 3 mismatches 1.

    Its unique equilibrium is (1/2, 1/2) for every player (no pure one; each
    player's indifference involves one other player only).
    """
    P = torch.zeros(3, 2, 2, 2, dtype=torch.float64)
    for a in range(2):
        for b in range(2):
            for c in range(2):
                P[0, a, b, c] = float(a == b)
                P[1, a, b, c] = float(b == c)
                P[2, a, b, c] = float(c != a)
    return NormalFormGame(P, num_players=3)


def _check(game: NormalFormGame, out) -> None:
    """converged <=> the returned profile's regret, recomputed, is <= tol."""
    regret = game.regret(list(out.strategies)).amax(-1)
    assert torch.equal(out.converged, regret <= out.tol)
    torch.testing.assert_close(out.regret.amax(-1), regret, rtol=0, atol=1e-15)
    for s in out.strategies:
        assert bool((s >= 0).all())
        torch.testing.assert_close(s.sum(-1), torch.ones_like(s[..., 0]))


def _assert_solved_are_nash(game: NormalFormGame, out) -> None:
    """Every certified game is a Nash equilibrium; hypothesis draws degenerate games too,
    where the multi-start search may honestly give up (the seeded batches below require
    every game to be solved)."""
    solved = out.converged.nonzero().flatten()
    assert solved.numel() >= 1
    assert_nash(game[solved], out[solved], tol=default_tol(torch.float64))


@settings(max_examples=5, deadline=None)
@given(normal_form_games(num_players=3, num_actions=3, batch_shape=(4,)))
def test_random_three_player_games_are_solved(game):
    out = liapunov(game)
    _check(game, out)  # the certificate is honest on every game, solved or not
    _assert_solved_are_nash(game, out)


@settings(max_examples=5, deadline=None)
@given(normal_form_games(num_players=4, num_actions=2, batch_shape=(4,)))
def test_random_four_player_games_are_solved(game):
    out = liapunov(game)
    _check(game, out)  # the certificate is honest on every game, solved or not
    _assert_solved_are_nash(game, out)


def _stages(out) -> tuple:
    pure, face, wide = out.info["pure"], out.info["face"], out.info["support"]
    return pure, face, wide, out.converged & ~pure & ~face & ~wide


def test_seeded_batch_every_stage_certifies():
    game = _random_games(3, 300, (3, 3, 3))
    out = liapunov(game, tol=1e-9)
    _check(game, out)
    assert bool(out.converged.all())
    pure, face, wide, _ = _stages(out)
    # each stage certified some games: vertices, closed-form faces, wider supports
    assert bool(pure.any()) and bool(face.any()) and bool(wide.any())
    assert bool((out.iterations == 0).all())  # no descent needed on this seed
    # 3x3x4 games: the wider supports are skipped (7 * 7 * 15 > 512), the descent works
    game = _random_games(4, 200, (3, 3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = liapunov(game, tol=1e-9)
    _check(game, out)
    pure, face, wide, descent = _stages(out)
    assert out.converged.double().mean() >= 0.97
    assert not bool(wide.any()) and bool(descent.any())
    assert bool((out.iterations[descent] > 0).all())


# A 3x3x3 game whose equilibrium has supports (2, 3, 2): Newton from the supports'
# centroids misses it, and the descent from 32 starts needs about 2,000 steps (200 by
# default); a random start on the right support finds it (stage 3's restarts).
_HARD = [
    [[[81, 58, 8], [77, 39, 3], [94, 5, 18]], [[2, 83, 99], [74, 85, 90], [74, 2, 37]],
     [[4, 58, 20], [88, 17, 94], [37, 11, 31]]],
    [[[9, 45, 73], [22, 85, 38], [19, 91, 70]], [[67, 58, 14], [49, 42, 90], [38, 74, 51]],
     [[79, 52, 100], [49, 72, 36], [96, 18, 91]]],
    [[[93, 15, 18], [18, 62, 7], [9, 51, 10]], [[79, 36, 61], [12, 87, 11], [68, 46, 46]],
     [[34, 34, 60], [30, 83, 96], [1, 43, 42]]],
]  # fmt: skip


def test_wide_support_restarts_certify_what_the_centroids_miss():
    game = NormalFormGame(torch.tensor(_HARD, dtype=torch.float64) / 100, num_players=3)
    out = liapunov(game, tol=1e-9, max_iter=0)  # stages 1-3 only
    _check(game, out)
    assert bool(out.converged) and bool(out.info["support"])
    assert [int((s > 1e-12).sum()) for s in out.strategies] == [2, 3, 2]


def test_batched_equals_loop():
    game = _random_games(5, 40, (3, 3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = liapunov(game)
        picks = [0, 1, 2] + out.iterations.nonzero().squeeze(-1)[:3].tolist()  # some descents
        for b in picks:
            one = liapunov(game[b])
            assert bool(one.converged) == bool(out.converged[b])
            assert int(one.iterations) == int(out.iterations[b])
            for s, t in zip(one.strategies, out.strategies):
                torch.testing.assert_close(s, t[b], rtol=0, atol=1e-12)
    assert any(int(out.iterations[b]) > 0 for b in picks)


def test_known_games():
    out = liapunov(_jordan())
    assert bool(out.converged) and bool(out.info["face"])  # the linear candidates
    for s in out.strategies:
        torch.testing.assert_close(s, torch.full((2,), 0.5, dtype=torch.float64))
    out = liapunov(matching_pennies(dtype=torch.float64))
    assert bool(out.converged)
    torch.testing.assert_close(out.strategies[0], torch.tensor([0.5, 0.5], dtype=torch.float64))
    out = liapunov(prisoners_dilemma(dtype=torch.float64))
    assert bool(out.converged) and bool(out.info["pure"])
    assert out.strategies[0].tolist() == [0.0, 1.0] and out.strategies[1].tolist() == [0.0, 1.0]


def _cyclic() -> NormalFormGame:
    """A cyclic three-player game of weighted rock-paper-scissors: 1 plays against 2,
    2 against 3, and 3 loses what 1 would win against it (so no pure best-response
    cycle closes). Its unique equilibrium (by Gambit's enumpoly) is completely mixed,
    ``(0.2, 0.55, 0.25)`` for every player: beyond the vertices and the small faces."""
    R = torch.tensor([[0.0, -1, 2], [1, 0, -1], [-3, 1, 0]], dtype=torch.float64)
    P = torch.stack(
        [
            R[:, :, None].expand(3, 3, 3),  # u_1(a, b, c) = R[a, b]
            R[None, :, :].expand(3, 3, 3),  # u_2 = R[b, c]
            -R.T[:, None, :].expand(3, 3, 3),  # u_3 = -R[c, a]
        ]
    )
    return NormalFormGame(P, num_players=3)


def test_descent_finds_a_completely_mixed_equilibrium():
    out = liapunov(_cyclic())  # Newton on the full support, from its centroid
    assert bool(out.converged) and bool(out.info["support"])
    expected = torch.tensor([0.2, 0.55, 0.25], dtype=torch.float64)
    for s in out.strategies:
        torch.testing.assert_close(s, expected)
    # a fourth, strictly dominated action for every player: 4x4x4, no wide supports
    # (15^3 > 512), the same unique equilibrium; only the descent can find it
    idx = torch.tensor([0, 1, 2, 0])  # action 3 acts on the others like action 0 ...
    P = _cyclic().payoffs[:, idx][:, :, idx][:, :, :, idx].clone()
    for i in range(3):
        P[i].select(i, 3).fill_(-10.0)  # ... and pays its player -10: strictly dominated
    padded = NormalFormGame(P, num_players=3)
    out = liapunov(padded)
    assert bool(out.converged) and int(out.iterations) > 0
    assert not bool(out.info["pure"] | out.info["face"] | out.info["support"])
    for s in out.strategies:
        torch.testing.assert_close(s, torch.nn.functional.pad(expected, (0, 1)))
    with pytest.warns(RuntimeWarning, match="liapunov"):
        assert not bool(liapunov(padded, max_iter=0).converged)


def test_float32_and_empty_batch():
    game = _random_games(1, 20, (3, 3, 3))
    game32 = NormalFormGame(game.payoffs.float(), num_players=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = liapunov(game32)
    assert out.strategies[0].dtype == torch.float32 and out.tol == default_tol(torch.float32)
    assert out.converged.double().mean() >= 0.9
    _check(game32, out)
    empty = liapunov(game[:0])
    assert empty.converged.shape == (0,) and empty.strategies[0].shape == (0, 3)


def test_not_converged_is_flagged_per_game():
    game = _random_games(4, 200, (3, 3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        full = liapunov(game)
    hard = _stages(full)[3]  # certified by the descent
    assert bool(hard.any())
    with pytest.warns(RuntimeWarning, match="liapunov"):
        out = liapunov(game, max_iter=0)
    _check(game, out)
    assert not bool(out.converged[hard].any())
    assert bool((out.max_regret[hard] > out.tol).all())
    assert torch.equal(out.converged, full.converged & ~hard)


def test_agrees_with_gambit():
    gbt = pytest.importorskip("pygambit")
    rng = np.random.default_rng(11)
    P = rng.normal(size=(12, 3, 2, 2, 2))
    game = NormalFormGame(torch.from_numpy(P), num_players=3)
    out = liapunov(game)
    assert bool(out.converged.all())
    for b in range(P.shape[0]):
        g = gbt.Game.from_arrays(*P[b])
        theirs = [
            [np.array([float(eq[s]) for s in pl.strategies]) for pl in g.players]
            for eq in gbt.nash.enumpoly_solve(g).equilibria
        ]
        mine = [s[b].numpy() for s in out.strategies]
        gap = min(max(np.abs(m - e).max() for m, e in zip(mine, eq)) for eq in theirs)
        assert gap <= 1e-6  # ours is one of Gambit's equilibria
        profile = g.mixed_strategy_profile(rational=False)
        for player, sigma in zip(g.players, mine):
            for strategy, p in zip(player.strategies, sigma):
                profile[strategy] = float(p)
        assert float(profile.max_regret()) <= 1e-9  # and Gambit's regret agrees


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"starts": 0}, "starts"),
        ({"max_iter": -1}, "max_iter"),
        ({"polish_every": 0}, "polish_every"),
        ({"seed": -1}, "seed"),
        ({"tol": 1e-30}, "tol"),
        ({"starts": 1.5}, "starts"),
    ],
)
def test_bad_input(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        liapunov(_jordan(), **kwargs)


def test_bad_game():
    with pytest.raises(TypeError, match="game"):
        liapunov(torch.zeros(3, 2, 2, 2))


def _all_supports(actions: tuple[int, ...]) -> torch.Tensor:
    """``(K, sum A_i)`` every support profile (each ``S_i`` nonempty)."""
    subsets = [
        [s for k in range(1, a + 1) for s in itertools.combinations(range(a), k)] for a in actions
    ]
    rows = []
    for profile in itertools.product(*subsets):
        rows.append([k in s for s, a in zip(profile, actions) for k in range(a)])
    return torch.tensor(rows, dtype=torch.bool)


def _brute_pruned(P: np.ndarray, masks: np.ndarray, margin: np.ndarray, actions) -> list:
    """Plain loops: some ``a in S_i`` and ``b in A_i`` with
    ``P_i(b, s_-i) - P_i(a, s_-i) > margin_i`` for every pure ``s_-i in S_-i``."""
    n = len(actions)
    offsets = [sum(actions[:i]) for i in range(n)]
    out = []
    for row in masks:
        supports = [[k for k in range(a) if row[o + k]] for o, a in zip(offsets, actions)]
        pruned = False
        for i in range(n):
            others = [supports[j] for j in range(n) if j != i]
            for a in supports[i]:
                for b in range(actions[i]):
                    beats = True
                    for rest in itertools.product(*others):
                        low, high = list(rest), list(rest)
                        low.insert(i, a)
                        high.insert(i, b)
                        if not P[i][tuple(high)] - P[i][tuple(low)] > margin[i]:
                            beats = False
                            break
                    pruned = pruned or beats
        out.append(pruned)
    return out


@pytest.mark.parametrize("actions", [(3, 3, 3), (2, 2, 2, 2), (2, 3, 2)])
def test_dominance_pruning_matches_brute_force(actions):
    rng = np.random.default_rng(sum(actions))
    # small integer payoffs: many ties, where "strictly greater" must not prune
    P = rng.integers(0, 4, size=(6, len(actions), *actions)).astype(np.float64)
    margin = rng.choice([0.0, 0.5, 1.0], size=(6, len(actions)))
    for masks in (_all_supports(actions), wide_supports(actions)):
        pruned = Dominance(actions, masks).pruned(torch.from_numpy(P), torch.from_numpy(margin))
        assert pruned.shape == (6, masks.shape[0])
        for g in range(6):
            expected = _brute_pruned(P[g], masks.numpy(), margin[g], actions)
            assert pruned[g].tolist() == expected
        if masks.shape[0] > 1:  # both outcomes occur
            assert bool(pruned.any()) and not bool(pruned.all())


def _support_row(masks: torch.Tensor, strategies, tol: float = 1e-12) -> int:
    support = torch.cat([s > tol for s in strategies])
    return int((masks == support).all(-1).nonzero())


def test_pruning_keeps_the_supports_of_equilibria():
    zero = torch.zeros(1, 3, dtype=torch.float64)
    masks = wide_supports((3, 3, 3))
    dominance = Dominance((3, 3, 3), masks)
    # the cyclic game's completely mixed equilibrium, the hard game's (2, 3, 2) one
    hard = NormalFormGame(torch.tensor(_HARD, dtype=torch.float64) / 100, num_players=3)
    for game in (_cyclic(), hard):
        out = liapunov(game, tol=1e-9, max_iter=0)
        assert bool(out.converged) and bool(out.info["support"])
        pruned = dominance.pruned(game.payoffs[None], zero)[0]  # (K,)
        assert not bool(pruned[_support_row(masks, out.strategies)])
        assert bool(pruned.any())  # but other supports of these games are pruned
    # every wide-support equilibrium of a seeded batch: its support survives at margin 0
    game = _random_games(3, 300, (3, 3, 3))
    out = liapunov(game, tol=1e-9)
    wide = out.info["support"].nonzero().flatten()
    assert wide.numel() >= 3
    pruned = dominance.pruned(game.payoffs[wide], zero.expand(wide.numel(), 3))
    for k, b in enumerate(wide.tolist()):
        assert not bool(pruned[k, _support_row(masks, [s[b] for s in out.strategies])])
    # a strictly dominated action: every support containing it is pruned
    P = _cyclic().payoffs.clone()
    P[0, 2] = P[0, 0] - 0.5  # player 1's action 2 is action 0 minus 0.5
    pruned = dominance.pruned(P[None], zero)[0]
    assert torch.equal(pruned | ~masks[:, 2], torch.ones_like(pruned))


def test_pruning_certifies_the_same_games(monkeypatch):
    """Stages 1-3 certify the same games as before the pruning (counts measured then,
    2026-12-06), and as with the pruning switched off."""
    expected = {(3, 3, 3): (400, 273, 120, 7), (2, 2, 2, 2): (400, 280, 119, 1)}
    for seed, actions in ((7, (3, 3, 3)), (8, (2, 2, 2, 2))):
        P = np.random.default_rng(seed).normal(size=(400, len(actions), *actions))
        game = NormalFormGame(torch.from_numpy(P), num_players=len(actions))
        out = liapunov(game, tol=1e-6, max_iter=0)
        _check(game, out)
        counts = tuple(int(x.sum()) for x in (out.converged, *_stages(out)[:3]))
        assert counts == expected[actions]
        with monkeypatch.context() as m:  # nothing pruned: all (game, support) pairs
            m.setattr(
                support_profiles.Dominance,
                "pruned",
                lambda self, payoffs, margin: torch.zeros(
                    payoffs.shape[0], self.own[0].shape[0], dtype=torch.bool
                ),
            )
            full = liapunov(game, tol=1e-6, max_iter=0)
        assert torch.equal(out.converged, full.converged)
        assert torch.equal(out.info["support"], full.info["support"])


def test_relabel_puts_each_support_first_action_at_zero():
    actions = (3, 2, 3)
    masks = _all_supports(actions)  # (K, M)
    order, cells = relabel_supports(actions, masks)
    relabelled = masks.gather(1, order)
    assert bool(relabelled[:, [0, 3, 5]].all())  # action 0 in every S_i
    assert torch.equal(relabelled.sum(1), masks.sum(1))
    P = torch.arange(18.0).reshape(actions)  # the cell number of each profile
    for k in range(0, masks.shape[0], 7):
        pi = [order[k, o : o + a] - o for o, a in zip((0, 3, 5), actions)]
        for new in itertools.product(*(range(a) for a in actions)):
            old = tuple(int(p[b]) for p, b in zip(pi, new))
            assert int(cells[k].reshape(actions)[new]) == int(P[old])
