"""ScaleGame: construction, validation, and the closed forms of its evaluation methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import ScaleGame, solve_scale_game
from aggregation.testing.strategies import scale_game_params

D = torch.float64


def _utility(a, C, x, l, y):
    """u_l(y, x_-l) straight from the definition (numpy, one game)."""
    others = sum(C[l, k] * x[k] for k in range(len(a)) if k != l)
    return a[l] * y - 0.5 * C[l, l] * y * y - y * others


def test_two_players_by_hand():
    game = ScaleGame(
        torch.tensor([3.0, 1.0], dtype=D), torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=D)
    )
    x = torch.tensor([1.0, 0.5], dtype=D)
    # BR_1 = (3 - 0.5)/2, BR_2 = (1 - 1)/2 = 0
    torch.testing.assert_close(game.best_response(x), torch.tensor([1.25, 0.0], dtype=D))
    torch.testing.assert_close(game.pseudo_gradient(x), torch.tensor([2.5 - 3, 2.0 - 1], dtype=D))
    # u_1 = 3 - 1 - 0.5 = 1.5; u_2 = 0.5 - 0.25 - 0.5 = -0.25
    torch.testing.assert_close(game.utilities(x), torch.tensor([1.5, -0.25], dtype=D))
    torch.testing.assert_close(game.costs(x), -game.utilities(x))
    # regret_1 = C11/2 (x - BR)^2 = (0.25)^2 = 0.0625; regret_2 = u(0) - u(0.5) = 0.25
    torch.testing.assert_close(game.regret(x), torch.tensor([0.0625, 0.25], dtype=D))
    torch.testing.assert_close(game.exploitability(x), torch.tensor(0.15625, dtype=D))
    eq = torch.tensor([1.5, 0.0], dtype=D)
    assert bool(game.is_nash(eq, tol=1e-14))
    assert float(game.complementarity_residual(eq)) == 0.0
    assert not bool(game.is_nash(x, tol=1e-3))
    torch.testing.assert_close(game.min_eigenvalue(), torch.tensor(1.0, dtype=D))


@settings(max_examples=25, deadline=None)
@given(scale_game_params(st.integers(1, 4), batch_shape=(3,), masked=True), st.data())
def test_regret_matches_the_definition(params, data):
    game = ScaleGame(params.a, params.C, params.mask)
    x = torch.from_numpy(
        data.draw(
            st.lists(
                st.floats(0, 3), min_size=3 * params.a.shape[-1], max_size=3 * params.a.shape[-1]
            ).map(np.array)
        ).reshape(params.a.shape)
    )
    regret = game.regret(x).numpy()
    present = game.present().numpy()
    a, C = params.a.numpy(), params.C.numpy()
    for b in range(3):
        idx = np.flatnonzero(present[b])
        ab, Cb, xb = a[b][idx], C[b][np.ix_(idx, idx)], x[b].numpy()[idx]
        for j, l in enumerate(idx):
            grid = np.linspace(0, 10, 20001)
            best = max(_utility(ab, Cb, xb, j, grid).max(), _utility(ab, Cb, xb, j, 0.0))
            brute = best - _utility(ab, Cb, xb, j, xb[j])
            assert regret[b, l] >= -1e-12
            assert regret[b, l] >= brute - 1e-9  # closed form is the supremum
            r = ab[j] - sum(Cb[j, k] * xb[k] for k in range(len(idx)) if k != j)
            y = max(0.0, r / Cb[j, j])
            assert (
                abs(regret[b, l] - (_utility(ab, Cb, xb, j, y) - _utility(ab, Cb, xb, j, xb[j])))
                < 1e-9
            )
        assert np.all(regret[b][~present[b]] == 0)


@settings(max_examples=20, deadline=None)
@given(scale_game_params(st.integers(1, 5), batch_shape=(4,), masked=True))
def test_min_eigenvalue_is_that_of_the_present_block(params):
    game = ScaleGame(params.a, params.C, params.mask)
    got = game.min_eigenvalue().numpy()
    C = params.C.numpy()
    for b in range(4):
        idx = np.flatnonzero(params.mask[b].numpy())
        block = C[b][np.ix_(idx, idx)]
        want = np.linalg.eigvalsh(0.5 * (block + block.T))[0]
        assert abs(got[b] - want) < 1e-9
    assert bool(game.is_monotone().all())  # the strategy guarantees margin 0.1
    torch.testing.assert_close(game.monotonicity(), game.min_eigenvalue())


def test_broadcasting_and_indexing():
    a = torch.rand(5, 3, dtype=D)
    C = torch.eye(3, dtype=D) * 2  # shared across the batch
    mask = torch.tensor([True, True, False])  # shared mask
    game = ScaleGame(a, C, mask)
    assert game.batch_shape == (5,) and game.num_players == 3
    x = torch.ones(3, dtype=D)
    assert game.best_response(x).shape == (5, 3)
    assert bool((game.best_response(x)[:, 2] == 0).all())
    sub = game[1:3]
    assert sub.batch_shape == (2,)
    torch.testing.assert_close(sub.best_response(x), game.best_response(x)[1:3])
    with pytest.raises(IndexError):
        ScaleGame(a[0], C)[0]


def test_half_precision_is_evaluated_in_float32():
    game = ScaleGame(torch.ones(2, dtype=torch.float16), torch.eye(2, dtype=torch.bfloat16))
    assert game.compute_dtype == torch.float32
    assert game.best_response(torch.zeros(2)).dtype == torch.float32


@pytest.mark.parametrize(
    ("a", "C", "mask", "error", "match"),
    [
        (torch.ones(3), torch.ones(3, 2), None, ValueError, "C must be square"),
        (torch.ones(3), torch.eye(2), None, ValueError, r"C must have shape \(\*batch, 3, 3\)"),
        (
            torch.ones(3),
            torch.eye(3),
            torch.zeros(3, dtype=torch.bool),
            ValueError,
            "mask must leave",
        ),
        (torch.ones(3), torch.eye(3), torch.ones(3), TypeError, "mask must be a boolean"),
        (
            torch.ones(3),
            torch.eye(3),
            torch.ones(2, dtype=torch.bool),
            ValueError,
            "mask must have",
        ),
        (torch.tensor([1.0, float("nan")]), torch.eye(2), None, ValueError, "a must be finite"),
        (
            torch.ones(2),
            torch.tensor([[1.0, float("inf")], [0, 1]]),
            None,
            ValueError,
            "C must be finite",
        ),
        (torch.ones(2), torch.tensor([[1.0, 0], [0, 0]]), None, ValueError, "positive diagonal"),
        (  # the mask is read only after a non-positive diagonal entry is found
            torch.ones(2),
            torch.tensor([[0.0, 0], [0, 1]]),
            torch.tensor([True, False]),
            ValueError,
            "positive diagonal",
        ),
        (torch.ones(2, 2), torch.eye(2).expand(3, 2, 2), None, ValueError, "must broadcast"),
        ("abc", torch.eye(2), None, TypeError, "a must"),
    ],
)
def test_bad_input_names_the_argument(a, C, mask, error, match):
    with pytest.raises(error, match=match):
        ScaleGame(a, C, mask)


def test_check_values_false_skips_only_the_value_checks():
    """``check_values=False`` reads no value (no NaN, diagonal or empty-mask check) but still
    checks types and shapes, and a valid game is the same game either way."""
    ScaleGame(torch.tensor([1.0, float("nan")]), torch.eye(2), check_values=False)
    ScaleGame(torch.ones(2), torch.zeros(2, 2), check_values=False)
    ScaleGame(torch.ones(3), torch.eye(3), torch.zeros(3, dtype=torch.bool), check_values=False)
    with pytest.raises(ValueError, match="C must be square"):
        ScaleGame(torch.ones(2), torch.ones(2, 3), check_values=False)
    with pytest.raises(TypeError, match="mask must be a boolean"):
        ScaleGame(torch.ones(2), torch.eye(2), torch.ones(2), check_values=False)
    with pytest.raises(TypeError, match="check_values must be a bool"):
        ScaleGame(torch.ones(2), torch.eye(2), check_values=1)
    gen = torch.Generator().manual_seed(0)
    a, B = torch.rand(5, 3, generator=gen, dtype=D), torch.randn(5, 3, 3, generator=gen, dtype=D)
    C = B @ B.transpose(-1, -2) + torch.eye(3, dtype=D)
    mask = torch.rand(5, 3, generator=gen) < 0.7
    mask[:, 0] = True
    checked = solve_scale_game(ScaleGame(a, C, mask))
    unchecked = solve_scale_game(ScaleGame(a, C, mask, check_values=False))
    assert torch.equal(checked.x, unchecked.x) and bool(checked.converged.all())


def test_absent_player_may_have_a_zero_diagonal():
    game = ScaleGame(
        torch.ones(2), torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([True, False])
    )
    torch.testing.assert_close(game.best_response(torch.zeros(2)), torch.tensor([1.0, 0.0]))


def test_profile_validation():
    game = ScaleGame(torch.ones(3, dtype=D), torch.eye(3, dtype=D))
    with pytest.raises(ValueError, match=r"x must have shape \(\*batch, 3\)"):
        game.regret(torch.ones(2))
    with pytest.raises(ValueError, match="x must be nonnegative"):
        game.regret(-torch.ones(3))
    with pytest.raises(ValueError, match="tol must be"):
        game.is_nash(torch.ones(3), tol=-1.0)
