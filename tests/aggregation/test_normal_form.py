"""NormalFormGame: construction, evaluation (payoffs, regret, best responses), peers, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aggregation
from aggregation import NormalFormGame, exploitability, is_nash, nash_conv, regret
from aggregation.testing import normal_form_games, profiles_for


def _brute_values(P: np.ndarray, sigma: list[np.ndarray]) -> list[np.ndarray]:
    """Action values by an explicit sum over pure profiles (independent of einsum)."""
    n = len(sigma)
    counts = P.shape[1:]
    values = [np.zeros(a) for a in counts]
    for profile in itertools.product(*(range(a) for a in counts)):
        for i in range(n):
            weight = np.prod([sigma[j][profile[j]] for j in range(n) if j != i])
            values[i][profile[i]] += weight * P[(i, *profile)]
    return values


def _random_profile(rng: np.random.Generator, counts) -> list[np.ndarray]:
    return [rng.dirichlet(np.ones(a)) for a in counts]


# ------------------------------------------------------------ construction
def test_shape_inference_and_properties():
    g = NormalFormGame(torch.zeros(2, 3, 4))
    assert (g.num_players, g.num_actions, tuple(g.batch_shape)) == (2, (3, 4), ())
    g = NormalFormGame(torch.zeros(5, 3, 2, 2, 2), num_players=3)
    assert (g.num_players, g.num_actions, tuple(g.batch_shape)) == (3, (2, 2, 2), (5,))
    with pytest.raises(ValueError, match="several ways.*pass num_players"):
        NormalFormGame(torch.zeros(5, 3, 2, 2, 2))


def test_bimatrix_broadcasts_batches_and_zero_sum():
    A = torch.randn(4, 1, 2, 3, dtype=torch.float64)
    B = torch.randn(5, 2, 3, dtype=torch.float64)
    g = NormalFormGame.bimatrix(A, B)
    assert tuple(g.batch_shape) == (4, 5)
    torch.testing.assert_close(g.A[2, 3], A[2, 0])
    torch.testing.assert_close(g.B[2, 3], B[3])
    z = NormalFormGame.zero_sum(A[0, 0])
    torch.testing.assert_close(z.B, -z.A)
    assert bool(z.is_zero_sum()) and not bool(g.is_zero_sum().any())


@pytest.mark.parametrize(
    "payoffs, dtype",
    [
        (torch.tensor([[[1, 0], [0, 1]], [[0, 1], [1, 0]]]), torch.get_default_dtype()),
        (np.array([[[1, 0], [0, 1]], [[0, 1], [1, 0]]]), torch.float64),
        ([[[1, 0], [0, 1]], [[0, 1], [1, 0]]], torch.float64),
    ],
)
def test_integer_payoffs_are_promoted(payoffs, dtype):
    g = NormalFormGame(payoffs, num_players=2)  # (2, 2, 2) alone is ambiguous
    assert g.dtype == dtype and g.payoffs.is_floating_point()
    out = aggregation.pure_equilibria(g)
    assert int(out.count) == 0  # matching pennies, as integers


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_payoffs_are_rejected(bad):
    P = torch.zeros(2, 2, 2)
    P[1, 0, 1] = bad
    with pytest.raises(ValueError, match="payoffs must be finite"):
        NormalFormGame(P)
    with pytest.raises(ValueError, match="A must be finite"):
        NormalFormGame.bimatrix(P[0] + P[1], P[0])


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="payoffs must have at least 2 dimensions"):
        NormalFormGame(torch.zeros(3))
    with pytest.raises(ValueError, match="fits no N"):
        NormalFormGame(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="num_players=3"):
        NormalFormGame(torch.zeros(2, 2, 2), num_players=3)
    with pytest.raises(ValueError, match="at least one action"):
        NormalFormGame(torch.zeros(2, 0, 2), num_players=2)
    with pytest.raises(ValueError, match="ragged"):
        NormalFormGame([[[1.0, 2.0], [3.0]], [[1.0, 2.0], [3.0, 4.0]]])
    with pytest.raises(TypeError, match="payoffs must"):
        NormalFormGame("not a game")
    with pytest.raises(ValueError, match="batch shapes must broadcast"):
        NormalFormGame.bimatrix(torch.zeros(2, 3, 3), torch.zeros(4, 3, 3))
    with pytest.raises(ValueError, match="same action shape"):
        NormalFormGame.bimatrix(torch.zeros(3, 3), torch.zeros(3, 2))


def test_profile_errors_name_the_argument():
    g = NormalFormGame(torch.randn(4, 2, 2, 3))
    ok = (torch.full((2,), 0.5), torch.full((3,), 1 / 3))
    with pytest.raises(ValueError, match=r"strategies\[0\] must lie on the probability simplex"):
        g.regret((torch.tensor([0.7, 0.7]), ok[1]))
    with pytest.raises(ValueError, match=r"strategies\[1\] must lie on the probability simplex"):
        g.regret((ok[0], torch.tensor([1.2, -0.1, -0.1])))
    with pytest.raises(ValueError, match="one strategy per player"):
        g.regret(ok[:1])
    with pytest.raises(ValueError, match=r"strategies\[1\] must have 3 entries"):
        g.regret((ok[0], torch.full((2,), 0.5)))
    with pytest.raises(ValueError, match="does not broadcast"):
        g.regret((torch.full((3, 2), 0.5), ok[1]))
    with pytest.raises(TypeError, match="tuple or list"):
        g.regret(torch.zeros(2))
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        g.is_nash(ok, tol=-1e-3)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        g.best_responses(ok, tol=-1.0)
    with pytest.raises(ValueError, match=r"strategies\[0\] must be finite"):
        g.regret((torch.tensor([float("nan"), 1.0]), ok[1]))


# -------------------------------------------------------------- evaluation
def test_values_payoffs_and_regret_match_brute_force():
    rng = np.random.default_rng(0)
    for counts in [(2, 3), (2, 3, 2), (3, 2, 2, 2)]:
        n = len(counts)
        P = rng.normal(size=(n, *counts))
        sigma = _random_profile(rng, counts)
        g = NormalFormGame(torch.from_numpy(P), num_players=n)
        prof = [torch.from_numpy(s) for s in sigma]
        expected = _brute_values(P, sigma)
        for got, want in zip(g.action_values(prof), expected):
            np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
        pay = np.array([v @ s for v, s in zip(expected, sigma)])
        np.testing.assert_allclose(g.expected_payoffs(prof).numpy(), pay, atol=1e-12)
        reg = np.array([v.max() - p for v, p in zip(expected, pay)])
        np.testing.assert_allclose(regret(g, prof).numpy(), reg, atol=1e-12)
        assert float(nash_conv(g, prof)) == pytest.approx(reg.sum(), abs=1e-12)
        assert float(exploitability(g, prof)) == pytest.approx(reg.sum() / n, abs=1e-12)
        assert bool(is_nash(g, prof, tol=reg.max() + 1e-9))
        assert not bool(is_nash(g, prof, tol=reg.max() - 1e-6))


def test_best_responses_show_ties():
    # row player: actions 0 and 2 tie against column 0; action 1 is 1e-3 worse
    A = torch.tensor([[1.0, 0.0], [0.999, 0.0], [1.0, 5.0]], dtype=torch.float64)
    g = NormalFormGame.bimatrix(A, -A)
    pure_col = (torch.full((3,), 1 / 3, dtype=torch.float64), torch.tensor([1.0, 0.0]))
    rows, _ = g.best_responses(pure_col)
    assert rows.tolist() == [True, False, True]
    rows, _ = g.best_responses(pure_col, tol=2e-3)
    assert rows.tolist() == [True, True, True]
    # a mixed profile on the tied set is a Nash best response: zero regret for the row player
    tie = (torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64), torch.tensor([1.0, 0.0]))
    assert float(g.regret(tie)[0]) == 0.0


def test_matching_pennies_equilibrium():
    g = NormalFormGame.zero_sum([[1.0, -1.0], [-1.0, 1.0]])
    half = torch.tensor([0.5, 0.5])
    assert bool(is_nash(g, (half, half), tol=0.0))
    assert not bool(is_nash(g, (torch.tensor([0.6, 0.4]), half), tol=0.0))
    assert float(regret(g, (torch.tensor([1.0, 0.0]), half)).max()) == pytest.approx(1.0)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_batched_regret_equals_per_game_loop(data):
    g = data.draw(normal_form_games(st.integers(1, 3), st.integers(1, 3), batch_shape=(3,)))
    prof = data.draw(profiles_for(g))
    batched = g.regret(prof)
    for b in range(3):
        single = g[b].regret(tuple(s[b] for s in prof))
        torch.testing.assert_close(batched[b], single, rtol=0, atol=1e-12)
    assert bool((batched >= 0).all())


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_regret_scales_under_positive_affine_payoff_changes(data):
    g = data.draw(normal_form_games(st.integers(1, 3), st.integers(1, 3)))
    prof = data.draw(profiles_for(g))
    n = g.num_players
    scale = torch.tensor(data.draw(st.lists(st.floats(0.1, 10), min_size=n, max_size=n)))
    shift = torch.tensor(data.draw(st.lists(st.floats(-10, 10), min_size=n, max_size=n)))
    view = (n,) + (1,) * n
    h = NormalFormGame(g.payoffs * scale.reshape(view) + shift.reshape(view), num_players=n)
    torch.testing.assert_close(h.regret(prof), g.regret(prof) * scale, rtol=1e-9, atol=1e-9)


# -------------------------------------------------------------------- peers
def test_nashpy_round_trip():
    nashpy = pytest.importorskip("nashpy")
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    g = NormalFormGame.from_nashpy(nashpy.Game(A, B))
    np.testing.assert_array_equal(g.A.numpy(), A)
    back = g.to_nashpy()
    np.testing.assert_array_equal(back.payoff_matrices[1], B)
    with pytest.raises(ValueError, match="unbatched"):
        NormalFormGame.bimatrix(torch.zeros(2, 2, 2), torch.zeros(2, 2, 2)).to_nashpy()
    with pytest.raises(TypeError, match="nashpy.Game"):
        NormalFormGame.from_nashpy(object())


def test_gambit_round_trip_and_regret_agree():
    gbt = pytest.importorskip("pygambit")
    rng = np.random.default_rng(2)
    P = rng.normal(size=(3, 2, 3, 2))
    g = NormalFormGame(torch.from_numpy(P), num_players=3)
    gg = g.to_gambit()
    back = NormalFormGame.from_gambit(gg)
    np.testing.assert_allclose(back.payoffs.numpy(), P, atol=1e-12)
    sigma = _random_profile(rng, (2, 3, 2))
    profile = gg.mixed_strategy_profile(rational=False)
    for player, s in zip(gg.players, sigma):
        for strategy, p in zip(player.strategies, s):
            profile[strategy] = float(p)
    ours = regret(g, [torch.from_numpy(s) for s in sigma])
    theirs = [profile.player_regret(p) for p in gg.players]
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-12)
    assert isinstance(gbt.Game, type)


def test_simplex_tolerance_follows_the_profile_dtype():
    g = NormalFormGame(torch.randn(2, 3, 3, dtype=torch.float64))
    third = torch.full((3,), 1 / 3, dtype=torch.float64)
    rounded = third.half()  # sums to 1 only within float16 rounding
    assert abs(float(rounded.double().sum()) - 1) > 1e-6
    torch.testing.assert_close(
        g.regret((rounded, third)), g.regret((third, third)), atol=1e-3, rtol=0
    )
    with pytest.raises(ValueError, match="within 1e-06"):
        g.regret((third + 1e-5, third))  # float64: the plain 1e-6 tolerance


# ------------------------------------------------------------- layout check
PD_ACTION_FIRST = np.array([[[3.0, 3.0], [0.0, 5.0]], [[5.0, 0.0], [1.0, 1.0]]])  # (a1, a2, i)


def test_ambiguous_layout_is_refused_with_what_to_pass():
    # QuantEcon's prisoner's dilemma (a1, a2, player) has shape (2, 2, 2): read player
    # first it is another game (two pure equilibria instead of one), so it is refused
    with pytest.raises(ValueError, match=r"ambiguous.*num_players=2.*from_payoff_profiles"):
        NormalFormGame(PD_ACTION_FIRST)
    with pytest.raises(ValueError, match=r"ambiguous.*num_players=3"):
        NormalFormGame(torch.zeros(3, 4, 4, 3))
    with pytest.raises(ValueError, match=r"fits no N.*action-first.*from_quantecon"):
        NormalFormGame(torch.zeros(3, 4, 2))  # a 3x4 game, action first
    pd = NormalFormGame.from_payoff_profiles(PD_ACTION_FIRST)
    assert int(aggregation.pure_equilibria(pd).count) == 1
    np.testing.assert_array_equal(pd.A.numpy(), [[3.0, 0.0], [5.0, 1.0]])
    np.testing.assert_array_equal(pd.B.numpy(), [[3.0, 5.0], [0.0, 1.0]])
    confirmed = NormalFormGame(PD_ACTION_FIRST, num_players=2)  # the caller says player first
    assert int(aggregation.pure_equilibria(confirmed).count) == 2
    # unambiguous shapes are read as before
    assert NormalFormGame(torch.zeros(2, 3, 3)).num_actions == (3, 3)
    assert NormalFormGame(torch.zeros(4, 2, 2, 2)).batch_shape == (4,)
    with pytest.raises(ValueError, match=r"shape \(A_1, \.\.\., A_N, N\) with N = .* = 2"):
        NormalFormGame.from_payoff_profiles(torch.zeros(2, 2, 3))


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_payoff_profiles_match_the_player_first_layout(data):
    game = data.draw(normal_form_games(st.integers(1, 3), st.integers(1, 3)))
    profiles = torch.movedim(game.payoffs, 0, -1)  # (A_1, ..., A_N, N)
    again = NormalFormGame.from_payoff_profiles(profiles)
    assert torch.equal(again.payoffs, game.payoffs)


# ------------------------------------------------------------- repr and str
@settings(max_examples=30, deadline=None)
@given(
    game=st.one_of(
        normal_form_games(
            st.integers(1, 3), st.integers(1, 3), batch_shape=st.sampled_from([(), (2,)])
        ),
        normal_form_games(2, st.integers(1, 4), dtype=torch.float32),
    )
)
def test_repr_round_trips(game):
    again = eval(repr(game), {"torch": torch, "NormalFormGame": NormalFormGame})
    assert again.num_players == game.num_players and again.dtype == game.dtype
    assert torch.equal(again.payoffs, game.payoffs)


def test_repr_of_a_large_game_is_abbreviated():
    text = repr(NormalFormGame(torch.zeros(100, 2, 6, 6), num_players=2))
    assert text.startswith("NormalFormGame(<payoffs of shape (100, 2, 6, 6)")


def test_str_shows_the_payoffs_of_small_games():
    pd = NormalFormGame.from_payoff_profiles(PD_ACTION_FIRST)
    lines = str(pd).splitlines()
    assert "2 players" in lines[0] and "(2, 2)" in lines[0]
    assert lines[2].split() == ["0", "3,", "3", "0,", "5"]
    assert lines[3].split() == ["1", "5,", "0", "1,", "1"]
    three = NormalFormGame(torch.arange(24.0).reshape(3, 2, 2, 2), num_players=3)
    assert "(1, 0, 1): 5, 13, 21" in str(three).splitlines()
    batched = str(NormalFormGame(torch.zeros(5, 2, 3, 3), num_players=2))
    assert batched.count("\n") == 0 and "batch shape (5,)" in batched
