"""logit_qre / logit_qre_at: the logit QRE branch, traced and polished to a Nash equilibrium."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import NormalFormGame, QuantalResponseResult, logit_qre, logit_qre_at
from aggregation.testing import assert_nash, degenerate_games, normal_form_games

# Two integer 3x3x3 games (payoffs / 100) whose principal branch folds back twice; a
# tracer without the orientation and angle tests jumps between the arms and loops.
FOLDS = [
    """
    -17 -49 4 -65 99 15 -70 75 254 -4 -124 65 110 29 16 77 56 61
    186 79 -132 110 -28 -278 241 42 -129 135 56 -32 9 10 -89 7 -173 189
    101 58 -12 -26 100 219 32 53 69 -52 21 17 -25 30 143 -81 -121 115
    100 120 122 26 116 68 200 122 3 113 94 63 -29 65 32 -167 -209 59
    -77 66 265 -34 11 193 -41 -96 24
    """,
    """
    -29 21 -18 55 -92 -102 -77 74 -273 -121 33 -185 -161 140 13 5 212 47
    -58 61 -13 -61 -40 21 85 51 -42 29 122 -174 23 47 26 23 -75 40
    182 101 -181 -25 -4 149 -18 -283 -30 -138 -11 -20 101 -201 -135 -19 273 -86
    96 -118 32 123 -129 -251 -72 24 -44 4 13 9 -173 -140 117 105 128 28
    -53 -4 111 122 32 65 15 -140 15
    """,
]


def _random_games(seed: int, batch: int, counts: tuple[int, ...]) -> NormalFormGame:
    rng = np.random.default_rng(seed)
    P = rng.normal(size=(batch, len(counts), *counts))
    return NormalFormGame(torch.from_numpy(P), num_players=len(counts))


def _numpy_logit_response(P: np.ndarray, sigma, lam) -> list[np.ndarray]:
    """softmax(lam_i * v_i) with the action values summed explicitly over pure profiles."""
    n = len(sigma)
    out = []
    for i in range(n):
        v = np.moveaxis(P[i], i, 0)
        for j in reversed([j for j in range(n) if j != i]):
            v = v @ sigma[j]
        z = lam[i] * v
        e = np.exp(z - z.max())
        out.append(e / e.sum())
    return out


# ------------------------------------------------------------- logit_qre_at
def test_qre_at_is_the_logit_fixed_point():
    game = _random_games(7, 6, (2, 3, 2))
    lam = torch.tensor([0.5, 4.0, 30.0], dtype=torch.float64)  # one precision per player
    out = logit_qre_at(game, lam)
    assert isinstance(out, QuantalResponseResult)
    assert bool(out.converged.all()) and float(out.residual.max()) <= 1e-12
    assert out.lam.shape == (6, 3)
    P = game.payoffs.numpy()
    for b in range(6):
        sigma = [s[b].numpy() for s in out.strategies]
        for got, want in zip(sigma, _numpy_logit_response(P[b], sigma, lam.numpy())):
            np.testing.assert_allclose(got, want, atol=1e-12)


def test_qre_at_small_precision_matches_fixed_point_iteration():
    # at small lam the logit response map is a contraction: iterate it to the fixed point
    game = _random_games(8, 3, (3, 3))
    lam = np.array([0.3, 0.3])
    out = logit_qre_at(game, 0.3)
    P = game.payoffs.numpy()
    for b in range(3):
        sigma = [np.full(3, 1 / 3), np.full(3, 1 / 3)]
        for _ in range(200):
            sigma = _numpy_logit_response(P[b], sigma, lam)
        for got, want in zip(out.strategies, sigma):
            np.testing.assert_allclose(got[b].numpy(), want, atol=1e-12)


def test_qre_at_zero_precision_is_uniform_and_validation():
    game = _random_games(9, 2, (2, 3))
    out = logit_qre_at(game, 0.0)
    torch.testing.assert_close(out.strategies[1], torch.full((2, 3), 1 / 3, dtype=torch.float64))
    assert bool(out.converged.all()) and int(out.iterations.max()) == 0
    with pytest.raises(ValueError, match="lam must be >= 0"):
        logit_qre_at(game, -1.0)
    with pytest.raises(
        ValueError, match=r"lam must be a number or broadcastable to \(\*batch, N\)"
    ):
        logit_qre_at(game, torch.ones(3))
    with pytest.raises(ValueError, match="lam must be finite"):
        logit_qre_at(game, float("inf"))
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        logit_qre_at(game, 1.0, tol=-1.0)


# ----------------------------------------------------------------- logit_qre
@pytest.mark.parametrize("counts", [(3, 3), (2, 4), (3, 3, 3), (2, 3, 2)])
def test_random_games_converge_to_equilibria(counts):
    game = _random_games(10 + len(counts), 16, counts)
    out = logit_qre(game)
    assert bool(out.converged.all()) and float(out.max_regret.max()) <= 1e-6
    assert_nash(game, out, tol=1e-6)
    assert out.info["lambda"].shape == (16, len(counts))
    assert bool(out.info["polished"].all()) and not bool(out.info["failed"].any())


def test_pure_tracing_agrees_with_polishing():
    # two paths to the branch's limit: polish at lambda >= 1000, or trace until the
    # QRE itself has regret <= tol (what Gambit's logit_solve does)
    game = _random_games(11, 12, (3, 3, 3))
    polished = logit_qre(game)
    traced = logit_qre(game, tol=1e-6, polish_from=None, max_lambda=1e8, max_steps=3000)
    assert bool(traced.converged.all()) and not bool(traced.info["polished"].any())
    for a, b in zip(polished.strategies, traced.strategies):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_last_qre_is_reproduced_by_qre_at():
    game = _random_games(12, 5, (2, 3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = logit_qre(game, polish_from=None, max_lambda=20.0)
    assert not bool(out.converged.any())  # lambda = 20 is far from the limit
    again = logit_qre_at(game, out.info["lambda"])
    for a, b in zip(out.strategies, again.strategies):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("index", [0, 1])
def test_branches_that_fold_back(index):
    P = torch.tensor([float(v) for v in FOLDS[index].split()], dtype=torch.float64)
    P = P.reshape(3, 3, 3, 3) / 100
    game = NormalFormGame(P, num_players=3)
    out = logit_qre(game)
    assert bool(out.converged) and not bool(out.info["failed"])
    expected = {
        0: ([0.2608, 0.0, 0.7392], [0.0, 0.0183, 0.9817], [0.5528, 0.0, 0.4472]),
        1: ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]),
    }[index]  # Gambit's logit_solve reaches the same equilibria
    for got, want in zip(out.strategies, expected):
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), atol=1e-4, rtol=0)


def test_degenerate_continuum_one_player_and_single_actions():
    # row dominant, column indifferent: a continuum {(top, q)}
    g = NormalFormGame.bimatrix(
        torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64),
        torch.tensor([[2.0, 2.0], [1.0, 1.0]], dtype=torch.float64),
    )
    out = logit_qre(g)
    assert bool(out.converged) and out.strategies[0].tolist() == [1.0, 0.0]
    solo = logit_qre(NormalFormGame(torch.tensor([[1.0, 3.0, 2.0]], dtype=torch.float64)))
    assert solo.strategies[0].tolist() == [0.0, 1.0, 0.0] and bool(solo.converged)
    single = _random_games(13, 4, (1, 3))
    out = logit_qre(single)
    assert bool(out.converged.all())
    torch.testing.assert_close(out.strategies[0], torch.ones(4, 1, dtype=torch.float64))


def test_dtypes_and_batch_shapes():
    P = torch.from_numpy(np.random.default_rng(14).normal(size=(2, 3, 3, 2, 2, 2)))
    game = NormalFormGame(P, num_players=3)
    out = logit_qre(game)
    assert out.converged.shape == (2, 3) and out.strategies[0].shape == (2, 3, 2)
    low = logit_qre(game.to(torch.float32), tol=1e-5)
    assert low.strategies[0].dtype == torch.float32 and bool(low.converged.all())
    half = logit_qre(game.to(torch.float16), tol=5e-2)
    assert half.strategies[0].dtype == torch.float16 and bool(half.converged.all())
    empty = logit_qre(NormalFormGame(torch.zeros(0, 2, 2, 2, dtype=torch.float64), num_players=2))
    assert empty.converged.shape == (0,)


def test_validation_names_the_argument():
    game = _random_games(15, 1, (2, 2))
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        logit_qre(game, tol=-1e-6)
    with pytest.raises(ValueError, match="max_lambda must be a finite number > 0"):
        logit_qre(game, max_lambda=0.0)
    with pytest.raises(ValueError, match="max_steps must be an integer >= 0"):
        logit_qre(game, max_steps=-1)
    with pytest.raises(ValueError, match="first_step must be a finite number > 0"):
        logit_qre(game, first_step=-0.1)
    with pytest.raises(ValueError, match="polish_from must be a finite number >= 0"):
        logit_qre(game, polish_from=-1.0)
    with pytest.raises(TypeError, match="game must be a NormalFormGame"):
        logit_qre([[1.0]])
    with pytest.warns(RuntimeWarning, match="did not reach the requested tolerance"):
        out = logit_qre(game, max_steps=1)
    assert not bool(out.converged.any())


# ---------------------------------------------------------------- properties
@settings(max_examples=8, deadline=None)
@given(
    st.one_of(
        normal_form_games(st.integers(2, 3), st.integers(1, 3), batch_shape=(3,)),
        degenerate_games(st.integers(2, 3), st.integers(2, 3), batch_shape=(3,)),
    )
)
def test_converged_means_equilibrium_and_batched_equals_per_game(game):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = logit_qre(game)
        done = out.converged
        assert_nash(game[done], tuple(s[done] for s in out.strategies), tol=1e-6)
        single = logit_qre(game[1])
    for s, t in zip(out.strategies, single.strategies):
        torch.testing.assert_close(s[1], t, atol=1e-9, rtol=0)
    assert bool(single.converged) == bool(out.converged[1])


@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_invariant_under_positive_affine_payoff_changes(data):
    game = data.draw(normal_form_games(st.integers(2, 3), st.integers(2, 3)))
    n = game.num_players
    scale = data.draw(st.lists(st.floats(0.25, 4.0), min_size=n, max_size=n))
    shift = data.draw(st.lists(st.floats(-10.0, 10.0), min_size=n, max_size=n))
    view = (n,) + (1,) * n
    scale_t = torch.tensor(scale, dtype=torch.float64)
    shift_t = torch.tensor(shift, dtype=torch.float64)
    moved = NormalFormGame(
        game.payoffs * scale_t.reshape(view) + shift_t.reshape(view), num_players=n
    )
    # the traced branch is invariant (lambda is measured in units of each payoff range)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # tol at float64's resolution: no early stop (tol=0 is refused as below it)
        a = logit_qre(game, tol=1e-15, polish_from=None, max_lambda=30.0)
        b = logit_qre(moved, tol=1e-15, polish_from=None, max_lambda=30.0)
    for s, t in zip(a.strategies, b.strategies):
        torch.testing.assert_close(s, t, atol=1e-9, rtol=0)
    torch.testing.assert_close(b.info["lambda"] * scale_t, a.info["lambda"], rtol=1e-9, atol=0)
    # and so is the answer, up to the tolerance: each is an equilibrium of the other game
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a, b = logit_qre(game, tol=1e-7), logit_qre(moved, tol=1e-7 * min(scale))
    if bool(a.converged) and bool(b.converged):
        assert float((game.regret(b.strategies)).max()) <= 1e-7
        assert float((moved.regret(a.strategies) / scale_t).max()) <= 1e-7
