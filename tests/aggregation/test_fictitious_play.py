"""fictitious_play: classic, smooth and stochastic fictitious play, batched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import NormalFormGame, fictitious_play, logit_qre_at
from aggregation.testing import assert_nash, normal_form_games, zero_sum_games

SHAPLEY = NormalFormGame.bimatrix(
    torch.eye(3, dtype=torch.float64), torch.roll(torch.eye(3, dtype=torch.float64), 1, dims=1)
)


def _reference(P: np.ndarray, rounds: int) -> list[np.ndarray]:
    """Classic simultaneous fictitious play from everyone's first action, in numpy."""
    n, counts = P.shape[0], P.shape[1:]
    sigma = [np.eye(a)[0] for a in counts]
    for t in range(rounds):
        responses = []
        for i in range(n):
            v = np.moveaxis(P[i], i, 0)
            for j in reversed([j for j in range(n) if j != i]):
                v = v @ sigma[j]  # contract the last axis (player j, in increasing order)
            responses.append(np.eye(counts[i])[int(np.argmax(v))])
        sigma = [s + (r - s) / (t + 2) for s, r in zip(sigma, responses)]
    return sigma


def test_shapley_game_reports_non_convergence():
    for rounds in (1000, 5000):
        out = fictitious_play(SHAPLEY, iterations=rounds)
        assert not bool(out.converged)
        assert float(out.max_regret) > 0.1  # the frequencies keep cycling
        assert int(out.iterations) == rounds


def test_matches_numpy_reference_on_three_player_games():
    rng = np.random.default_rng(4)
    P = rng.normal(size=(4, 3, 2, 3, 2))
    out = fictitious_play(NormalFormGame(torch.from_numpy(P), num_players=3), 200, tol=0.0)
    for b in range(4):
        for got, want in zip(out.strategies, _reference(P[b], 200)):
            np.testing.assert_allclose(got[b].numpy(), want, atol=1e-12)


def test_early_stopping_freezes_converged_games():
    pd = torch.tensor([[3.0, 0.0, -9.0], [5.0, 1.0, -9.0], [-9.0, -9.0, -9.0]], dtype=torch.float64)
    dominance = NormalFormGame.bimatrix(pd, pd.T)  # prisoner's dilemma plus a bad action
    g = NormalFormGame(torch.stack([dominance.payoffs, SHAPLEY.payoffs]))
    out = fictitious_play(g, iterations=3000, tol=0.01)
    assert out.converged.tolist() == [True, False]
    assert int(out.iterations[0]) < 3000 and int(out.iterations[1]) == 3000
    assert float(out.max_regret[0]) <= 0.01
    assert_nash(g[0], out[0], tol=0.01)


def test_smooth_play_approaches_the_logit_qre():
    A = torch.tensor([[2.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    g = NormalFormGame.zero_sum(A)  # unique mixed equilibrium
    temperature = 0.5
    out = fictitious_play(g, iterations=4000, mode="smooth", temperature=temperature, tol=0.0)
    qre = logit_qre_at(g, 1 / temperature)
    for got, want in zip(out.strategies, qre.strategies):
        torch.testing.assert_close(got, want, atol=5e-3, rtol=0)


def test_stochastic_play_is_reproducible_with_a_generator():
    g = NormalFormGame.bimatrix([[3.0, 0.0], [5.0, 1.0]], [[3.0, 5.0], [0.0, 1.0]])
    runs = [
        fictitious_play(
            g, 500, mode="stochastic", temperature=0.3, generator=torch.Generator().manual_seed(7)
        )
        for _ in range(2)
    ]
    for a, b in zip(runs[0].strategies, runs[1].strategies):
        assert torch.equal(a, b)
    assert float(runs[0].strategies[0][1]) > 0.9  # mostly the dominant action


def test_validation_names_the_argument():
    g = SHAPLEY
    with pytest.raises(ValueError, match="iterations must be an integer >= 0"):
        fictitious_play(g, iterations=-1)
    with pytest.raises(TypeError, match="iterations must be an integer"):
        fictitious_play(g, iterations=10.5)
    with pytest.raises(ValueError, match="mode must be one of"):
        fictitious_play(g, mode="fast")
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        fictitious_play(g, mode="smooth", temperature=-1.0)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        fictitious_play(g, tol=-1e-3)
    with pytest.raises(ValueError, match=r"initial\[1\] must lie on the probability simplex"):
        fictitious_play(g, initial=([1.0, 0.0, 0.0], [0.5, 0.6, 0.0]))
    with pytest.raises(ValueError, match="one strategy per player"):
        fictitious_play(g, initial=([1.0, 0.0, 0.0],))
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        fictitious_play(g, mode="stochastic", generator=3)
    with pytest.raises(TypeError, match="game must be a NormalFormGame"):
        fictitious_play(np.zeros((2, 2, 2)))


def test_dtypes_are_preserved():
    for dtype in (torch.float32, torch.float16):
        out = fictitious_play(SHAPLEY.to(dtype), iterations=50)
        assert out.strategies[0].dtype == dtype and out.regret.dtype == torch.float32


@settings(max_examples=10, deadline=None)
@given(zero_sum_games(st.integers(2, 4), batch_shape=(6,)))
def test_exploitability_falls_in_zero_sum_games(game):
    span = float(game.payoffs.amax() - game.payoffs.amin()) or 1.0
    curve = [
        float(fictitious_play(game, iterations=t, tol=0.0).exploitability.mean()) / span
        for t in (10, 100, 1000)
    ]
    # Robinson (1951): -> 0; each tenfold increase cuts it by 30% unless already tiny
    assert curve[1] <= max(0.7 * curve[0], 1e-3) and curve[2] <= max(0.7 * curve[1], 1e-3)
    assert curve[2] <= 0.05


@settings(max_examples=15, deadline=None)
@given(
    normal_form_games(st.integers(1, 3), st.integers(1, 3), batch_shape=(3,)),
    st.sampled_from(["classic", "smooth"]),
)
def test_batched_equals_per_game_and_converged_means_equilibrium(game, mode):
    out = fictitious_play(game, iterations=150, mode=mode, temperature=0.5, tol=0.05)
    for b in range(3):
        single = fictitious_play(game[b], iterations=150, mode=mode, temperature=0.5, tol=0.05)
        for s, t in zip(out.strategies, single.strategies):
            torch.testing.assert_close(s[b], t, atol=1e-12, rtol=0)
        assert int(single.iterations) == int(out.iterations[b])
    done = out.converged
    assert_nash(game[done], tuple(s[done] for s in out.strategies), tol=0.05)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_classic_play_is_invariant_under_positive_affine_payoff_changes(data):
    game = data.draw(normal_form_games(st.integers(2, 3), st.integers(2, 3)))
    n = game.num_players
    scale = data.draw(st.lists(st.floats(0.25, 4.0), min_size=n, max_size=n))
    shift = data.draw(st.lists(st.floats(-10.0, 10.0), min_size=n, max_size=n))
    view = (n,) + (1,) * n
    scale_t = torch.tensor(scale, dtype=torch.float64).reshape(view)
    moved = NormalFormGame(
        game.payoffs * scale_t + torch.tensor(shift, dtype=torch.float64).reshape(view),
        num_players=n,
    )
    a = fictitious_play(game, iterations=100, tol=0.0)
    b = fictitious_play(moved, iterations=100, tol=0.0)
    for s, t in zip(a.strategies, b.strategies):
        torch.testing.assert_close(s, t, atol=1e-9, rtol=0)
    factor = torch.tensor(scale, dtype=torch.float64)
    torch.testing.assert_close(b.regret, a.regret * factor, atol=1e-9, rtol=1e-9)
