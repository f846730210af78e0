"""The numba pivot step (``tableau_kernel``) against the PyTorch path of ``pivot_step_``.

Both take the entering column, run the lexicographic ratio test, pivot and swap the basis
with the same arithmetic: on random and tie-ridden tableaux, with frozen games, partial
tiles and an objective row that never leaves, the tableaux, bases and flags after a step
are identical; Lemke-Howson and the linear program give bit-identical results with and
without the kernel on generic and degenerate games; the kernel is taken where it applies;
torch's thread count is left alone.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import NormalFormGame, lemke_howson, linear_program
from aggregation.accel import use_numba
from aggregation.finite.exact import tableau, tableau_kernel
from aggregation.testing import degenerate_games, normal_form_games

pytest.importorskip("numba")


def _tableaux(R, C, N, *, integer, seed):
    """``(T, basis, entering, active)``: tableaux with a slack basis and random rows."""
    gen = torch.Generator().manual_seed(seed)
    if integer:  # many equal ratios: the lexicographic tie-break decides
        T = torch.randint(-1, 3, (R, C, N), generator=gen).double()
        T[:, -1] = 0.0  # every ratio 0: a tie wherever two entries are positive
    else:
        T = torch.rand(R, C, N, dtype=torch.float64, generator=gen) * 2 - 0.5
    basis = torch.randint(0, C - 1, (R, N), generator=gen)
    entering = torch.randint(0, C - 1, (N,), generator=gen)
    active = torch.rand(N, generator=gen) < 0.8
    return T, basis, entering, active


def _step_both(T, basis, entering, active, lex, ratio_rows):
    out = {}
    for fast in (True, False):
        Tc, bc = T.clone(), basis.clone()
        with use_numba(fast):
            act, tie, leaving = tableau.pivot_step_(
                Tc, bc, entering, active, lex, ratio_rows=ratio_rows
            )
        out[fast] = (Tc, bc, act, tie, leaving)
    return out[True], out[False]


@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("shape", [(1, 3, 1), (3, 7, 5), (6, 13, 17), (8, 17, 40)])
@pytest.mark.parametrize("objective_row", [False, True])
def test_one_step_equals_pytorch(shape, integer, objective_row):
    R, C, N = shape
    T, basis, entering, active = _tableaux(R, C, N, integer=integer, seed=R * C + N)
    ratio_rows = R - 1 if objective_row and R > 1 else R
    lex = list(range(C - 1 - ratio_rows, C - 1))
    (Tf, bf, af, tf, lf), (Ts, bs, as_, ts, ls) = _step_both(
        T, basis[:ratio_rows].contiguous(), entering, active, lex, ratio_rows
    )
    assert torch.equal(af, as_)
    assert torch.equal(tf & af, ts & as_)  # the tie flag is read where a game pivoted
    assert torch.equal(lf[af], ls[as_])
    assert torch.equal(bf, bs)
    assert torch.equal(Tf, Ts)
    frozen = ~af
    assert torch.equal(Tf[..., frozen], T[..., frozen])  # frozen games untouched
    if integer and ratio_rows > 1 and N > 1:
        assert bool((tf & af).any())  # the tie-break was exercised


def _assert_same_result(fast, slow):
    for a, b in zip(fast.strategies, slow.strategies):
        assert torch.equal(a, b)
    assert torch.equal(fast.iterations, slow.iterations)
    assert torch.equal(fast.converged, slow.converged)
    for key in ("pivots", "hit_pivot_limit"):
        assert torch.equal(fast.info[key], slow.info[key])


def _solve_both(solver, game, **kw):
    with use_numba(True):
        fast = solver(game, **kw)
    with use_numba(False):
        slow = solver(game, **kw)
    _assert_same_result(fast, slow)
    return fast


@settings(max_examples=30, deadline=None)
@given(
    game=normal_form_games(num_players=2, num_actions=st.integers(1, 6), batch_shape=(11,)),
    label=st.integers(0, 1),
)
def test_lemke_howson_is_the_same_with_and_without_the_kernel(game, label):
    _solve_both(lemke_howson, game, label=label)


@settings(max_examples=30, deadline=None)
@given(game=degenerate_games(num_players=2, batch_shape=(5,)))
def test_lemke_howson_is_the_same_on_degenerate_games(game):
    fast = _solve_both(lemke_howson, game)
    for key in ("terminated", "degenerate"):
        with use_numba(False):
            assert torch.equal(fast.info[key], lemke_howson(game).info[key])


@pytest.mark.parametrize("shape", [(3, 3), (6, 6), (8, 8), (4, 7)])
def test_both_solvers_on_integer_games(shape):
    gen = torch.Generator().manual_seed(sum(shape))
    N = 3 * tableau_kernel.TILE + 5
    payoffs = torch.randint(0, 3, (N, 2, *shape), generator=gen).double()
    fast = _solve_both(lemke_howson, NormalFormGame(payoffs), label=shape[0])
    assert bool(fast.info["degenerate"].any())
    zero_sum = NormalFormGame(torch.stack([payoffs[:, 0], -payoffs[:, 0]], 1))
    _solve_both(linear_program, zero_sum)


def test_the_kernel_is_taken_where_it_applies(monkeypatch):
    calls = []
    original = tableau_kernel.pivot_step_

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(tableau_kernel, "pivot_step_", counting)
    game = NormalFormGame(torch.rand(4, 2, 3, 3, dtype=torch.float64))
    lemke_howson(game)
    assert calls
    seen = len(calls)
    with use_numba(False):
        lemke_howson(game)
    assert len(calls) == seen
    assert not tableau_kernel.applies(torch.zeros(2, 3, 4, dtype=torch.float32))
    assert not tableau_kernel.applies(torch.zeros(2, 3, 4, dtype=torch.float64, device="meta"))
    assert not tableau_kernel.applies(torch.zeros(2, 4, 3, dtype=torch.float64).transpose(1, 2))


_THREADS_CODE = """
from aggregation import NormalFormGame, lemke_howson
lemke_howson(NormalFormGame(torch.rand(20, 2, 4, 4, dtype=torch.float64)))
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_the_kernel_leaves_torch_thread_count_as_it_was(threads, torch_threads_after):
    """In a fresh process: numba's OpenMP layer resets the count when it starts."""
    assert torch_threads_after(_THREADS_CODE, threads) == threads
