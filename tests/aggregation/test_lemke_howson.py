"""Lemke-Howson: literature games, every label, degenerate games, pivot limit, bad input."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import (
    NormalFormGame,
    lemke_howson,
    lemke_howson_enumeration,
    regret,
    support_enumeration,
)
from aggregation.testing import assert_nash, degenerate_games, normal_form_games

TOL = 1e-9

BOS = NormalFormGame.bimatrix([[3.0, 0.0], [0.0, 2.0]], [[2.0, 0.0], [0.0, 3.0]])
PENNIES = NormalFormGame.zero_sum([[1.0, -1.0], [-1.0, 1.0]])
RPS = NormalFormGame.zero_sum([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
PD = NormalFormGame.bimatrix([[-1.0, -3.0], [0.0, -2.0]], [[-1.0, 0.0], [-3.0, -2.0]])
COORD = NormalFormGame.bimatrix([[2.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 1.0]])
CONTINUUM = NormalFormGame.bimatrix([[3, 3], [2, 5], [0, 6]], [[3, 3], [2, 6], [3, 1]])


def _close(strategies, x, y):
    return np.allclose(strategies[0].numpy(), x, atol=1e-12) and np.allclose(
        strategies[1].numpy(), y, atol=1e-12
    )


def test_literature_games_from_every_label():
    # Battle of the sexes: labels 0 and 2 reach (row 0, column 0), labels 1 and 3 reach
    # (row 1, column 1), two pivots each; the mixed equilibrium is on no path from the
    # artificial equilibrium (Shapley 1974).
    ends = {lab: lemke_howson(BOS, label=lab) for lab in range(4)}
    for lab in (0, 2):
        assert _close(ends[lab].strategies, [1, 0], [1, 0]) and int(ends[lab].iterations) == 2
    for lab in (1, 3):
        assert _close(ends[lab].strategies, [0, 1], [0, 1]) and int(ends[lab].iterations) == 2
    for game, x, y in [
        (PENNIES, [0.5, 0.5], [0.5, 0.5]),
        (RPS, [1 / 3] * 3, [1 / 3] * 3),
        (PD, [0, 1], [0, 1]),
    ]:
        m, n = game.num_actions
        for lab in range(m + n):
            res = lemke_howson(game, label=lab)
            assert bool(res.converged) and _close(res.strategies, x, y)
            assert bool(res.info["terminated"]) and not bool(res.info["hit_pivot_limit"])
    found = lemke_howson_enumeration(COORD)
    assert int(found.count) == 2  # the two pure equilibria; the mixed one is not on a path


def test_degenerate_continuum_game_terminates_and_flags_degeneracy():
    degenerate_seen = False
    for lab in range(5):
        res = lemke_howson(CONTINUUM, label=lab)
        assert bool(res.info["terminated"]) and bool(res.converged)
        assert float(res.max_regret) <= TOL
        degenerate_seen |= bool(res.info["degenerate"])
    assert degenerate_seen
    eqs = lemke_howson_enumeration(CONTINUUM)
    assert bool(eqs.degenerate) and int(eqs.count) >= 1


def test_every_label_on_random_games_batched():
    g = torch.Generator().manual_seed(11)
    for m, n in [(2, 2), (3, 5), (6, 6), (9, 7)]:
        A = torch.rand(300, m, n, generator=g, dtype=torch.float64)
        B = torch.rand(300, m, n, generator=g, dtype=torch.float64)
        game = NormalFormGame.bimatrix(A, B)
        for lab in range(m + n):
            res = lemke_howson(game, label=lab)
            assert bool(res.converged.all()), (m, n, lab)
            assert_nash(game, res, tol=TOL)
            assert (res.iterations == res.info["pivots"]).all()
            assert (res.iterations >= 1).all()


def test_degenerate_integer_games_terminate_and_never_lie():
    rng = np.random.default_rng(12)
    for m, n in [(3, 3), (4, 4), (6, 6)]:
        A = rng.integers(0, 2, (400, m, n)).astype(float)
        B = rng.integers(0, 2, (400, m, n)).astype(float)
        game = NormalFormGame.bimatrix(A, B)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for lab in range(m + n):
                res = lemke_howson(game, label=lab)
                assert bool(res.info["terminated"].all())
                assert not bool(res.info["hit_pivot_limit"].any())
                # converged <=> regret within tol: never a false equilibrium
                assert (res.converged == (res.regret.amax(-1) <= TOL)).all()
                assert float(res.converged.double().mean()) > 0.99


def test_pivot_limit_is_reported_per_game():
    game = NormalFormGame.bimatrix(
        torch.rand(50, 6, 6, dtype=torch.float64), torch.rand(50, 6, 6, dtype=torch.float64)
    )
    full = lemke_howson(game, label=0)
    with pytest.warns(RuntimeWarning, match="did not reach the requested tolerance"):
        cut = lemke_howson(game, label=0, max_pivots=2)
    long = full.iterations > 2
    assert bool(long.any())
    assert (cut.info["hit_pivot_limit"] == long).all()
    assert not bool(cut.converged[long].any())
    assert (cut.iterations <= 2).all()
    assert (cut.converged[~long] == full.converged[~long]).all()


@settings(max_examples=30, deadline=None)
@given(
    normal_form_games(num_players=2, num_actions=st.integers(1, 4), batch_shape=(4,)),
    st.data(),
)
def test_batched_equals_per_game_loop(game, data):
    m, n = game.num_actions
    lab = data.draw(st.integers(0, m + n - 1))
    batched = lemke_howson(game, label=lab)
    for i in range(4):
        alone = lemke_howson(game[i], label=lab)
        torch.testing.assert_close(batched.strategies[0][i], alone.strategies[0])
        torch.testing.assert_close(batched.strategies[1][i], alone.strategies[1])
        assert int(batched.iterations[i]) == int(alone.iterations)


@settings(max_examples=30, deadline=None)
@given(
    normal_form_games(num_players=2, num_actions=st.integers(1, 4), batch_shape=(3,)),
    st.floats(0.01, 100.0),
    st.floats(-50.0, 50.0),
    st.floats(0.01, 100.0),
    st.floats(-50.0, 50.0),
    st.data(),
)
def test_invariant_under_positive_affine_payoff_changes(game, a, b, c, d, data):
    m, n = game.num_actions
    lab = data.draw(st.integers(0, m + n - 1))
    moved = NormalFormGame.bimatrix(a * game.A + b, c * game.B + d)
    before, after = lemke_howson(game, label=lab), lemke_howson(moved, label=lab, tol=1e-6)
    assert before.converged.all() and after.converged.all()
    torch.testing.assert_close(before.strategies[0], after.strategies[0], atol=1e-8, rtol=0)
    torch.testing.assert_close(before.strategies[1], after.strategies[1], atol=1e-8, rtol=0)


@settings(max_examples=30, deadline=None)
@given(degenerate_games(num_players=2, batch_shape=(2,)))
def test_degenerate_games_converged_means_equilibrium(game):
    m, n = game.num_actions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for lab in range(m + n):
            res = lemke_howson(game, label=lab)
            assert bool(res.info["terminated"].all())
            r = regret(game, res.strategies)
            assert (res.converged == (r.amax(-1) <= TOL)).all()
    eqs = lemke_howson_enumeration(game)
    assert_nash(game, eqs, tol=TOL)
    every = support_enumeration(game)
    for i in range(2):  # LH end points are extreme equilibria
        for e in torch.nonzero(eqs.valid[i]).flatten().tolist():
            p = torch.cat([eqs.strategies[0][i, e], eqs.strategies[1][i, e]])
            q = torch.cat([every.strategies[0][i], every.strategies[1][i]], -1)[every.valid[i]]
            assert bool(((q - p).abs().amax(-1) <= 1e-6).any())


def test_enumeration_finds_a_subset_of_all_equilibria():
    g = torch.Generator().manual_seed(2)
    game = NormalFormGame.bimatrix(
        torch.rand(200, 5, 5, generator=g, dtype=torch.float64),
        torch.rand(200, 5, 5, generator=g, dtype=torch.float64),
    )
    lh, every = lemke_howson_enumeration(game), support_enumeration(game)
    assert (lh.count >= 1).all() and (lh.count <= every.count).all()
    assert int(lh.info["rejected"].sum()) == 0
    assert (every.count > lh.count).any()  # some equilibria are on no path


def test_output_dtype_and_shapes():
    game = NormalFormGame.bimatrix(torch.rand(2, 3, 4, 2), torch.rand(2, 3, 4, 2))
    res = lemke_howson(game, label=5, tol=1e-5)
    assert res.strategies[0].shape == (2, 3, 4) and res.strategies[1].shape == (2, 3, 2)
    assert res.strategies[0].dtype == torch.float32 and res.regret.shape == (2, 3, 2)
    assert set(res.info) == {"pivots", "terminated", "hit_pivot_limit", "degenerate"}
    assert all(v.shape == (2, 3) for v in res.info.values())
    assert bool(res.converged.all())
    empty = lemke_howson(NormalFormGame.bimatrix(torch.zeros(0, 2, 2), torch.zeros(0, 2, 2)))
    assert empty.strategies[0].shape == (0, 2)


def test_bad_input():
    with pytest.raises(ValueError, match="label must be an integer >= 0 and <= 3; received 4"):
        lemke_howson(BOS, label=4)
    with pytest.raises(ValueError, match="label"):
        lemke_howson(BOS, label=-1)
    with pytest.raises(TypeError, match="label must be an integer"):
        lemke_howson(BOS, label=1.5)
    with pytest.raises(ValueError, match="max_pivots must be an integer >= 1"):
        lemke_howson(BOS, max_pivots=0)
    with pytest.raises(TypeError, match="max_pivots must be an integer"):
        lemke_howson(BOS, max_pivots=2.0)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        lemke_howson(BOS, tol=-1.0)
    with pytest.raises(ValueError, match="two-player"):
        lemke_howson(NormalFormGame(torch.zeros(3, 2, 2, 2), num_players=3))
    with pytest.raises(TypeError, match="game must be a NormalFormGame"):
        lemke_howson_enumeration([[1.0]])
    with pytest.raises(ValueError, match="max_pivots"):
        lemke_howson_enumeration(BOS, max_pivots=-3)
