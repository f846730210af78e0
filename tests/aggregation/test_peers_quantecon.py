"""QuantEcon (quantecon.game_theory) as a peer: conversions and equilibrium sets.

Skipped when quantecon is not installed (the ``peers`` extra).
"""

import numpy as np
import pytest
import torch

from aggregation import (
    NormalFormGame,
    lemke_howson,
    pure_equilibria,
    support_enumeration,
    vertex_enumeration,
)

gt = pytest.importorskip("quantecon.game_theory")


def _as_set(pairs) -> list[np.ndarray]:
    return sorted((np.concatenate([np.asarray(x), np.asarray(y)]) for x, y in pairs), key=tuple)


def _ours(eqs, b: int) -> list[np.ndarray]:
    one = eqs[b]
    keep = one.valid.numpy()
    return _as_set(zip(one.strategies[0].numpy()[keep], one.strategies[1].numpy()[keep]))


def _same(a: list[np.ndarray], b: list[np.ndarray], atol: float = 1e-9) -> bool:
    return len(a) == len(b) and all(np.allclose(x, y, atol=atol) for x, y in zip(a, b))


@pytest.mark.parametrize("actions", [(2, 2), (3, 2), (2, 3, 4)])
def test_round_trip(actions):
    rng = np.random.default_rng(len(actions))
    theirs = gt.random_game(actions, random_state=rng)
    game = NormalFormGame.from_quantecon(theirs)
    assert game.num_actions == actions and game.dtype == torch.float64
    np.testing.assert_array_equal(
        game.payoffs.numpy(), np.moveaxis(theirs.payoff_profile_array, -1, 0)
    )
    again = game.to_quantecon()
    np.testing.assert_array_equal(again.payoff_profile_array, theirs.payoff_profile_array)
    for p, q in zip(again.players, theirs.players):
        np.testing.assert_array_equal(p.payoff_array, q.payoff_array)


def test_prisoners_dilemma_in_quantecon_layout():
    profile = np.array([[[3.0, 3.0], [0.0, 5.0]], [[5.0, 0.0], [1.0, 1.0]]])
    game = NormalFormGame.from_quantecon(gt.NormalFormGame(profile))
    assert int(pure_equilibria(game).count) == 1
    with pytest.raises(ValueError, match="ambiguous"):
        NormalFormGame(profile)
    with pytest.raises(ValueError, match="unbatched"):
        NormalFormGame(torch.zeros(3, 2, 2, 2), num_players=2).to_quantecon()
    with pytest.raises(TypeError, match="quantecon"):
        NormalFormGame.from_quantecon(profile)


@pytest.mark.parametrize("m, n", [(3, 3), (4, 4), (3, 5)])
def test_equilibrium_sets_agree_on_random_games(m, n):
    rng = np.random.default_rng(m * 10 + n)
    batch = 12
    payoffs = rng.standard_normal((batch, 2, m, n))
    game = NormalFormGame(torch.from_numpy(payoffs), num_players=2)
    support, vertex, lh = support_enumeration(game), vertex_enumeration(game), lemke_howson(game)
    for b in range(batch):
        theirs = gt.NormalFormGame([gt.Player(payoffs[b, 0]), gt.Player(payoffs[b, 1].T)])
        assert _same(_ours(support, b), _as_set(gt.support_enumeration(theirs)))
        assert _same(_ours(vertex, b), _as_set(gt.vertex_enumeration(theirs)))
        x, y = gt.lemke_howson(theirs, init_pivot=0)  # the same dropped label
        np.testing.assert_allclose(lh.strategies[0][b].numpy(), x, atol=1e-9)
        np.testing.assert_allclose(lh.strategies[1][b].numpy(), y, atol=1e-9)
