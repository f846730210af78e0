"""Support enumeration: literature games, degenerate games, properties, bad input."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import NormalFormGame, regret, support_enumeration, vertex_enumeration
from aggregation.accel import use_numba
from aggregation.finite.exact import vertices
from aggregation.testing import assert_nash, degenerate_games, normal_form_games

TOL = 1e-9


def profiles(eqs, index=()):
    """The equilibria of one game as a list of concatenated numpy vectors."""
    one = eqs[index] if index != () else eqs
    return [
        np.concatenate(
            [one.strategies[0][e].double().numpy(), one.strategies[1][e].double().numpy()]
        )
        for e in torch.nonzero(one.valid).flatten().tolist()
    ]


def same_set(a, b, tol=1e-6):
    """Two lists of profiles are equal as sets (within ``tol``), without duplicates."""
    return len(a) == len(b) and all(any(np.abs(p - q).max() <= tol for q in b) for p in a)


def expected(*pairs):
    return [np.array([*x, *y], dtype=float) for x, y in pairs]


# ---------------------------------------------------------------- literature
PENNIES = NormalFormGame.zero_sum([[1.0, -1.0], [-1.0, 1.0]])
RPS = NormalFormGame.zero_sum([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
BOS = NormalFormGame.bimatrix([[3.0, 0.0], [0.0, 2.0]], [[2.0, 0.0], [0.0, 3.0]])
PD = NormalFormGame.bimatrix([[-1.0, -3.0], [0.0, -2.0]], [[-1.0, 0.0], [-3.0, -2.0]])
COORD = NormalFormGame.bimatrix([[2.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 1.0]])
# von Stengel (2007, AGT ch. 3, eq. 3.7): degenerate; row 0 has two best responses, and
# x = (1, 0, 0) is an equilibrium with every y = (p, 1 - p), p in [2/3, 1]: a continuum.
CONTINUUM = NormalFormGame.bimatrix([[3, 3], [2, 5], [0, 6]], [[3, 3], [2, 6], [3, 1]])

LITERATURE = [
    (PENNIES, expected(([0.5, 0.5], [0.5, 0.5])), False),
    (RPS, expected(([1 / 3] * 3, [1 / 3] * 3)), False),
    (BOS, expected(([1, 0], [1, 0]), ([0, 1], [0, 1]), ([0.6, 0.4], [0.4, 0.6])), False),
    (PD, expected(([0, 1], [0, 1])), False),
    (COORD, expected(([1, 0], [1, 0]), ([0, 1], [0, 1]), ([1 / 3, 2 / 3], [1 / 3, 2 / 3])), False),
    (
        CONTINUUM,
        expected(
            ([1, 0, 0], [1, 0]),
            ([1, 0, 0], [2 / 3, 1 / 3]),  # supports of unequal size (1 and 2)
            ([0, 1 / 3, 2 / 3], [1 / 3, 2 / 3]),
        ),
        True,
    ),
]


@pytest.mark.parametrize("solver", [support_enumeration, vertex_enumeration])
@pytest.mark.parametrize("game,answer,degenerate", LITERATURE)
def test_literature_games(solver, game, answer, degenerate):
    eqs = solver(game)
    assert same_set(profiles(eqs), answer, tol=1e-12)
    assert bool(eqs.degenerate) == degenerate
    assert int(eqs.info["rejected"]) == 0
    assert (eqs.regret[eqs.valid] <= TOL).all()
    for e in eqs:
        assert bool(e.converged)


def test_continuum_is_represented_by_its_extreme_points():
    eqs = support_enumeration(CONTINUUM)
    # The midpoint of the continuum is an equilibrium but not an extreme one: not listed.
    mid = torch.tensor([1.0, 0.0, 0.0]).double(), torch.tensor([5 / 6, 1 / 6], dtype=torch.float64)
    assert float(regret(CONTINUUM, mid).max()) <= 1e-12
    assert not any(
        np.abs(p - np.array([1, 0, 0, 5 / 6, 1 / 6])).max() < 1e-6 for p in profiles(eqs)
    )
    # Both ends of the segment are.
    sizes = sorted(
        (int((e.strategies[0] > 0).sum()), int((e.strategies[1] > 0).sum())) for e in eqs
    )
    assert (1, 2) in sizes  # unequal supports


def test_constant_game_every_pure_profile_is_extreme():
    game = NormalFormGame.bimatrix(torch.zeros(2, 3), torch.zeros(2, 3))
    eqs = support_enumeration(game)
    assert bool(eqs.degenerate) and int(eqs.count) == 6
    pure = [np.eye(2)[i].tolist() + np.eye(3)[j].tolist() for i in range(2) for j in range(3)]
    assert same_set(profiles(eqs), [np.array(p) for p in pure])


def test_one_action_games():
    game = NormalFormGame.bimatrix([[1.0, 2.0, 0.0]], [[0.0, 1.0, 2.0]])
    assert same_set(profiles(support_enumeration(game)), expected(([1], [0, 0, 1])))
    game = NormalFormGame.bimatrix([[5.0]], [[-1.0]])
    assert same_set(profiles(support_enumeration(game)), expected(([1], [1])))


def test_tiny_negative_probabilities_are_zero_not_rejections():
    # A pure equilibrium embedded in a game where the solve of the 2x2 support returns a
    # probability that is zero up to rounding: the equilibrium must still be found once.
    A = torch.tensor([[1.0, 0.0], [0.0, 1.0]]) + 1e-17
    game = NormalFormGame.bimatrix(A, A)
    assert int(support_enumeration(game).count) == 3


# ---------------------------------------------------------------- shapes, dtypes
def test_batch_shapes_dtype_and_padding():
    torch.manual_seed(0)
    A, B = torch.rand(2, 3, 4, 3, dtype=torch.float64), torch.rand(2, 3, 4, 3, dtype=torch.float64)
    eqs = support_enumeration(NormalFormGame.bimatrix(A, B))
    E = eqs.valid.shape[-1]
    assert eqs.strategies[0].shape == (2, 3, E, 4) and eqs.strategies[1].shape == (2, 3, E, 3)
    assert eqs.regret.shape == (2, 3, E, 2) and eqs.count.shape == (2, 3)
    assert eqs.strategies[0].dtype == eqs.regret.dtype == torch.float64
    assert (eqs.count == eqs.valid.sum(-1)).all()
    assert (eqs.strategies[0][~eqs.valid] == 0).all()
    assert (eqs.count >= 1).all()


def test_empty_batch():
    eqs = support_enumeration(NormalFormGame.bimatrix(torch.zeros(0, 3, 3), torch.zeros(0, 3, 3)))
    assert eqs.count.shape == (0,) and eqs.strategies[0].shape[0] == 0


def test_float32_profiles_are_checked_after_rounding():
    # Strategies come back in float32; their regret is that of the rounded numbers.
    # The default tol follows the dtype (1e-5), so nothing is lost; a tolerance near
    # float32's resolution may reject some and says so in info["rejected"]; one below
    # it is refused.
    torch.manual_seed(3)
    A, B = torch.rand(50, 4, 4), torch.rand(50, 4, 4)
    loose = support_enumeration(NormalFormGame.bimatrix(A, B))
    exact = support_enumeration(NormalFormGame.bimatrix(A.double(), B.double()))
    assert loose.tol == 1e-5 and exact.tol == 1e-9
    assert loose.strategies[0].dtype == loose.strategies[1].dtype == torch.float32
    assert (loose.count == exact.count).all()
    assert (loose.regret[loose.valid] <= 1e-5).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # some may fail the tight check
        strict = support_enumeration(NormalFormGame.bimatrix(A, B), tol=1.2e-7)
    assert (strict.count + strict.info["rejected"] == exact.count).all()
    assert (strict.regret[strict.valid] <= 1.2e-7).all()
    with pytest.raises(ValueError, match="below the resolution of torch.float32.*tol=None"):
        support_enumeration(NormalFormGame.bimatrix(A, B), tol=1e-12)


# ---------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(normal_form_games(num_players=2, num_actions=st.integers(1, 4), batch_shape=(3,)))
def test_every_returned_profile_is_an_equilibrium_and_matches_vertex_enumeration(game):
    eqs = support_enumeration(game, tol=TOL)
    assert_nash(game, eqs, tol=TOL)
    assert (eqs.count >= 1).all()  # every finite game has an (extreme) equilibrium
    other = vertex_enumeration(game, tol=TOL)
    for i in range(3):
        assert same_set(profiles(eqs, i), profiles(other, i))


@settings(max_examples=40, deadline=None)
@given(degenerate_games(num_players=2, batch_shape=(2,)))
def test_degenerate_games_extreme_equilibria(game):
    eqs = support_enumeration(game, tol=TOL)
    assert_nash(game, eqs, tol=TOL)
    assert (eqs.count >= 1).all()
    other = vertex_enumeration(game, tol=TOL)
    for i in range(2):
        found = profiles(eqs, i)
        assert same_set(found, profiles(other, i))
        # No duplicates.
        assert all(np.abs(p - q).max() > 1e-6 for j, p in enumerate(found) for q in found[:j])


@settings(max_examples=25, deadline=None)
@given(
    normal_form_games(num_players=2, num_actions=st.integers(1, 4), batch_shape=(4,), jitter=0.5)
)
def test_batched_equals_per_game_loop(game):
    batched = support_enumeration(game)
    for i in range(4):
        alone = support_enumeration(game[i])
        assert same_set(profiles(batched, i), profiles(alone), tol=1e-12)
        assert bool(batched.degenerate[i]) == bool(alone.degenerate)


@settings(max_examples=25, deadline=None)
@given(
    normal_form_games(num_players=2, num_actions=st.integers(1, 4), batch_shape=(2,)),
    st.floats(0.01, 100.0),
    st.floats(-50.0, 50.0),
    st.floats(0.01, 100.0),
    st.floats(-50.0, 50.0),
)
def test_invariant_under_positive_affine_payoff_changes(game, a, b, c, d):
    A, B = game.A, game.B
    moved = NormalFormGame.bimatrix(a * A + b, c * B + d)
    before, after = support_enumeration(game), support_enumeration(moved, tol=1e-7)
    assert (before.degenerate == after.degenerate).all()
    for i in range(2):
        assert same_set(profiles(before, i), profiles(after, i), tol=1e-8)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("solver", [support_enumeration, vertex_enumeration])
def test_bad_input(solver):
    with pytest.raises(TypeError, match="game must be a NormalFormGame"):
        solver(torch.zeros(2, 2, 2))
    three = NormalFormGame(torch.zeros(3, 2, 2, 2), num_players=3)
    with pytest.raises(ValueError, match="game must be a two-player"):
        solver(three)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        solver(BOS, tol=-1e-9)
    with pytest.raises(TypeError, match="tol must be a real number"):
        solver(BOS, tol="small")
    with pytest.raises(ValueError, match="m \\+ n <= 62"):
        solver(NormalFormGame.bimatrix(torch.zeros(40, 30), torch.zeros(40, 30)))
    with pytest.raises(ValueError, match="A must be finite"):
        NormalFormGame.bimatrix([[float("nan"), 0.0]], [[0.0, 0.0]])


@pytest.mark.parametrize("kernel", [False, True])
def test_chunked_batches_equal_one_chunk(monkeypatch, kernel):
    if kernel:
        pytest.importorskip("numba")
    rng = np.random.default_rng(9)
    A = rng.integers(0, 3, (37, 4, 5)).astype(float)
    A[20:] += rng.random((17, 4, 5))  # games 0..19 degenerate (integer), the rest generic
    game = NormalFormGame.bimatrix(A, rng.integers(0, 3, (37, 4, 5)).astype(float))
    with use_numba(kernel):
        whole_s, whole_v = support_enumeration(game), vertex_enumeration(game)
        monkeypatch.setattr(vertices, "MASK_BYTES", 300)
        monkeypatch.setattr(vertices, "CHUNK_ELEMS", 50)
        for whole, solver in [(whole_s, support_enumeration), (whole_v, vertex_enumeration)]:
            chunked = solver(game)
            assert torch.equal(whole.count, chunked.count)
            assert torch.equal(whole.degenerate, chunked.degenerate)
            for i in range(37):
                assert same_set(profiles(whole, i), profiles(chunked, i), tol=1e-12)
