"""The numba pivot kernels (``tableau_kernel``) against the PyTorch path.

The one-step kernel against ``pivot_step_``: both take the entering column, run the
lexicographic ratio test, pivot and swap the basis with the same arithmetic: on random
and tie-ridden tableaux, with frozen games, partial tiles and an objective row that never
leaves, the tableaux, bases and flags after a step are identical. The whole-path kernel
(``lemke_howson_paths``) against Lemke-Howson's batched PyTorch steps: strategies, regret,
pivots and every flag are identical for every label, on random, integer and degenerate
games, square or not, with partial tiles, several work items, an empty batch and a pivot
limit that is hit, and for ``lemke_howson_enumeration``. The linear program gives
bit-identical results with and without the kernel; the kernels are taken where they
apply; torch's thread count is left alone.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import NormalFormGame, lemke_howson, lemke_howson_enumeration, linear_program
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
    calls = {"step": 0, "paths": 0}

    def counting(name, original):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(tableau_kernel, "pivot_step_", counting("step", tableau_kernel.pivot_step_))
    monkeypatch.setattr(
        tableau_kernel, "lemke_howson_paths", counting("paths", tableau_kernel.lemke_howson_paths)
    )
    game = NormalFormGame(torch.rand(4, 2, 3, 3, dtype=torch.float64))
    lemke_howson(game)
    assert calls == {"step": 0, "paths": 1}  # Lemke-Howson: the whole path in one call
    lemke_howson(game, label=4)  # a column label: the transposed game
    lemke_howson_enumeration(game)  # row labels, then column labels
    assert calls == {"step": 0, "paths": 4}
    linear_program(NormalFormGame(torch.stack([game.payoffs[:, 0], -game.payoffs[:, 0]], 1)))
    assert calls["step"] > 0 and calls["paths"] == 4
    seen = dict(calls)
    with use_numba(False):
        lemke_howson(game)
        linear_program(NormalFormGame(torch.stack([game.payoffs[:, 0], -game.payoffs[:, 0]], 1)))
    assert calls == seen
    assert not tableau_kernel.applies(torch.zeros(2, 3, 4, dtype=torch.float32))
    assert not tableau_kernel.applies(torch.zeros(2, 3, 4, dtype=torch.float64, device="meta"))
    assert not tableau_kernel.applies(torch.zeros(2, 4, 3, dtype=torch.float64).transpose(1, 2))


# -- the whole-path kernel against the batched PyTorch steps, bit for bit ---------------------

_LH_INFO = ("pivots", "terminated", "hit_pivot_limit", "degenerate")


def _assert_same_lemke_howson(fast, slow):
    """Strategies, regret, convergence, iterations and every flag: identical."""
    for a, b in zip(fast.strategies, slow.strategies):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert torch.equal(fast.regret, slow.regret)
    assert torch.equal(fast.converged, slow.converged)
    assert torch.equal(fast.iterations, slow.iterations)
    for key in _LH_INFO:
        assert torch.equal(fast.info[key], slow.info[key]), key


def _lemke_howson_both(game, **kw):
    with use_numba(True):
        fast = lemke_howson(game, **kw)
    with use_numba(False):
        slow = lemke_howson(game, **kw)
    _assert_same_lemke_howson(fast, slow)
    return fast


def _every_label(payoffs, **kw):
    """Lemke-Howson from every label of ``(N, 2, m, n)`` payoffs, with and without the kernel."""
    game = NormalFormGame(payoffs, num_players=2)
    m, n = game.num_actions
    return [_lemke_howson_both(game, label=label, **kw) for label in range(m + n)]


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 3), (6, 6), (8, 8), (5, 9), (9, 5)])
@pytest.mark.parametrize("N", [1, 13, 3 * tableau_kernel.TILE + 5])
def test_paths_are_the_same_on_random_games_from_every_label(shape, N):
    gen = torch.Generator().manual_seed(100 * shape[0] + 10 * shape[1] + N)
    payoffs = torch.rand(N, 2, *shape, dtype=torch.float64, generator=gen)
    results = _every_label(payoffs)
    assert all(bool(r.info["terminated"].all()) for r in results)
    if max(shape) > 2:
        assert max(int(r.info["pivots"].max()) for r in results) > 2


@pytest.mark.parametrize("shape", [(2, 2), (3, 3), (4, 7), (7, 4), (6, 6), (8, 8)])
def test_paths_are_the_same_on_integer_games_from_every_label(shape):
    gen = torch.Generator().manual_seed(7 * shape[0] + shape[1])
    payoffs = torch.randint(0, 3, (2 * tableau_kernel.TILE + 3, 2, *shape), generator=gen)
    results = _every_label(payoffs.double())
    assert any(bool(r.info["degenerate"].any()) for r in results)  # ties on the paths


@pytest.mark.parametrize("max_pivots", [1, 2, 3, 5])
def test_paths_are_the_same_when_the_pivot_limit_is_hit(max_pivots):
    gen = torch.Generator().manual_seed(max_pivots)
    payoffs = torch.rand(29, 2, 8, 8, dtype=torch.float64, generator=gen)
    for label in (0, 3, 8, 15):  # rows and columns: P and Q tableaux at the last step
        with pytest.warns(RuntimeWarning):  # not converged where the limit is hit
            fast = _lemke_howson_both(NormalFormGame(payoffs), label=label, max_pivots=max_pivots)
        hit = fast.info["hit_pivot_limit"]
        assert bool(hit.any())
        assert bool((fast.info["pivots"][hit] == max_pivots).all())


def test_paths_are_the_same_over_several_work_items():
    """More games than one work item of the kernel: lanes are refilled many times."""
    gen = torch.Generator().manual_seed(3)
    N = 2 * tableau_kernel.CHUNK + 11
    payoffs = torch.rand(N, 2, 4, 5, dtype=torch.float64, generator=gen)
    payoffs[::7] = torch.randint(0, 2, (len(range(0, N, 7)), 2, 4, 5), generator=gen).double()
    for label in (0, 6):
        _lemke_howson_both(NormalFormGame(payoffs), label=label)


def test_paths_are_the_same_on_other_layouts_and_dtypes():
    gen = torch.Generator().manual_seed(5)
    payoffs = torch.rand(3, 5, 2, 4, 3, dtype=torch.float64, generator=gen)  # batch (3, 5)
    _lemke_howson_both(NormalFormGame(payoffs), label=5)
    strided = torch.rand(3, 4, 2, 11, dtype=torch.float64, generator=gen).permute(3, 2, 0, 1)
    _lemke_howson_both(NormalFormGame(strided), label=1)  # (11, 2, 3, 4), not contiguous
    _lemke_howson_both(NormalFormGame(payoffs.float()), label=2)  # float32 game


def test_paths_on_an_empty_batch():
    game = NormalFormGame(torch.rand(0, 2, 3, 4, dtype=torch.float64), num_players=2)
    for label in (0, 5):
        fast = _lemke_howson_both(game, label=label)
        assert fast.strategies[0].shape == (0, 3) and fast.info["pivots"].shape == (0,)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_paths_are_the_same_on_degenerate_games_from_every_label(data):
    game = data.draw(degenerate_games(num_players=2, batch_shape=(2 * tableau_kernel.TILE + 1,)))
    m, n = game.num_actions
    label = data.draw(st.integers(0, m + n - 1))
    _lemke_howson_both(game, label=label)


def _assert_same_set(fast, slow):
    for a, b in zip(fast.strategies, slow.strategies):
        assert torch.equal(a, b)
    for name in ("regret", "valid", "count", "degenerate"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    assert torch.equal(fast.info["rejected"], slow.info["rejected"])


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (4, 6), (6, 4), (8, 8)])
@pytest.mark.parametrize("integer", [False, True])
def test_enumeration_is_the_same_with_and_without_the_kernel(shape, integer):
    gen = torch.Generator().manual_seed(shape[0] * shape[1] + integer)
    N = tableau_kernel.TILE + 3
    if integer:
        payoffs = torch.randint(0, 3, (N, 2, *shape), generator=gen).double()
    else:
        payoffs = torch.rand(N, 2, *shape, dtype=torch.float64, generator=gen)
    game = NormalFormGame(payoffs, num_players=2)
    with use_numba(True):
        fast = lemke_howson_enumeration(game)
    with use_numba(False):
        slow = lemke_howson_enumeration(game)
    _assert_same_set(fast, slow)
    assert bool((fast.count >= 1).all())


@settings(max_examples=20, deadline=None)
@given(game=degenerate_games(num_players=2, batch_shape=(9,)))
def test_enumeration_is_the_same_on_degenerate_games(game):
    with use_numba(True):
        fast = lemke_howson_enumeration(game)
    with use_numba(False):
        slow = lemke_howson_enumeration(game)
    _assert_same_set(fast, slow)


_THREADS_CODE = """
from aggregation import NormalFormGame, lemke_howson
lemke_howson(NormalFormGame(torch.rand(20, 2, 4, 4, dtype=torch.float64)))
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_the_kernel_leaves_torch_thread_count_as_it_was(threads, torch_threads_after):
    """In a fresh process: numba's OpenMP layer resets the count when it starts."""
    assert torch_threads_after(_THREADS_CODE, threads) == threads
