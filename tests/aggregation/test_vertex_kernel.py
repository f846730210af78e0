"""The numba vertex test (``vertex_kernel``) against the PyTorch path of ``side_candidates``.

Both decide the feasibility of every basis of a best-response polytope and flag the
degenerate games with the same arithmetic: their masks and flags are identical on
generic games, on degenerate games of the testing kit (ties, duplicated actions,
constant payoffs), on integer games and on every shape up to 8x8 (one game to several
tiles); the kernel is actually taken where it applies; the solvers built on it give
the same equilibria with it and without it; torch's thread count is left alone.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import NormalFormGame, support_enumeration, vertex_enumeration
from aggregation.accel import use_numba
from aggregation.finite.exact import vertex_kernel, vertices
from aggregation.finite.exact.vertex_enumeration import prepare
from aggregation.testing import degenerate_games, normal_form_games

pytest.importorskip("numba")


def _both_paths(M):
    tables = vertices.side_tables(*M.shape[1:])
    with use_numba(True):
        fast = vertices.side_candidates(M, tables, sparse=False)
    with use_numba(False):
        slow = vertices.side_candidates(M, tables, sparse=False)
    return fast, slow


def _assert_same_test(game):
    _, _, _, A, Bt = prepare(game, None, "test")
    for M in (A, Bt):  # the y side (rows = the row player's actions) and the x side
        fast, slow = _both_paths(M)
        assert len(fast.dense) == len(slow.dense)
        for k, (f, s) in enumerate(zip(fast.dense, slow.dense), start=1):
            assert f.shape == s.shape, k
            assert torch.equal(f, s), f"size-{k} bases differ"
        assert torch.equal(fast.degenerate, slow.degenerate)


@settings(max_examples=40, deadline=None)
@given(game=normal_form_games(num_players=2, num_actions=st.integers(1, 6), batch_shape=(11,)))
def test_kernel_equals_pytorch_on_generic_games(game):
    _assert_same_test(game)


@settings(max_examples=40, deadline=None)
@given(game=degenerate_games(num_players=2, batch_shape=(5,)))
def test_kernel_equals_pytorch_on_degenerate_games(game):
    _assert_same_test(game)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1), (3, 7), (7, 3), (8, 8)])
@pytest.mark.parametrize("integer", [False, True])
def test_kernel_equals_pytorch_on_every_shape(shape, integer):
    gen = torch.Generator().manual_seed(sum(shape))
    N = 2 * vertex_kernel.TILE + 3  # full tiles and a partial one
    if integer:  # many ties: degenerate vertices in most games
        payoffs = torch.randint(0, 3, (N, 2, *shape), generator=gen).double()
    else:
        payoffs = torch.rand(N, 2, *shape, dtype=torch.float64, generator=gen)
    game = NormalFormGame(payoffs, num_players=2)
    _assert_same_test(game)


def test_the_kernel_is_taken_where_it_applies(monkeypatch):
    calls = []
    original = vertex_kernel.dense_side

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(vertex_kernel, "dense_side", counting)
    game = NormalFormGame(torch.rand(4, 2, 3, 3, dtype=torch.float64))
    support_enumeration(game)
    assert len(calls) == 2  # both sides
    with use_numba(False):
        support_enumeration(game)
    assert len(calls) == 2
    assert not vertex_kernel.applies(torch.zeros(1, 2, 2, dtype=torch.float32))
    assert not vertex_kernel.applies(torch.zeros(1, 2, 2, dtype=torch.float64, device="meta"))


@pytest.mark.parametrize("solver", [support_enumeration, vertex_enumeration])
def test_solvers_give_the_same_equilibria_with_and_without_the_kernel(solver):
    gen = torch.Generator().manual_seed(3)
    payoffs = torch.cat(
        [
            torch.rand(30, 2, 5, 6, dtype=torch.float64, generator=gen),
            torch.randint(0, 2, (10, 2, 5, 6), generator=gen).double(),  # degenerate
        ]
    )
    game = NormalFormGame(payoffs)
    with use_numba(True):
        fast = solver(game)
    with use_numba(False):
        slow = solver(game)
    assert bool(fast.degenerate[30:].all()) and not bool(fast.degenerate[:30].any())
    assert torch.equal(fast.count, slow.count)
    assert torch.equal(fast.valid, slow.valid)
    for a, b in zip(fast.strategies, slow.strategies):
        assert torch.equal(a, b)


def test_empty_batch_and_switch_validation():
    game = NormalFormGame(torch.zeros(0, 2, 3, 4, dtype=torch.float64))
    assert support_enumeration(game).count.shape == (0,)
    with pytest.raises(TypeError, match="enabled must be a bool"):
        with use_numba(1):
            pass


_THREADS_CODE = """
from aggregation import NormalFormGame, support_enumeration
support_enumeration(NormalFormGame(torch.rand(20, 2, 4, 4, dtype=torch.float64)))
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_the_kernel_leaves_torch_thread_count_as_it_was(threads, torch_threads_after):
    """In a fresh process: numba's OpenMP layer resets the count when it starts."""
    assert torch_threads_after(_THREADS_CODE, threads) == threads


def test_narrower_tiles_where_the_levels_are_large(monkeypatch):
    """Shapes whose two minor levels exceed ``SCRATCH`` at ``TILE`` games take tiles of
    down to 16 games (8x8 at 64 games fits): the same masks and flags."""
    assert vertex_kernel.tile_lanes(3920) == vertex_kernel.TILE  # 8x8
    assert vertex_kernel.tile_lanes(10**7) == 16
    monkeypatch.setattr(vertex_kernel, "SCRATCH", 1)
    assert vertex_kernel.tile_lanes(1) == 16
    gen = torch.Generator().manual_seed(5)
    payoffs = torch.cat(
        [
            torch.rand(37, 2, 5, 6, dtype=torch.float64, generator=gen),
            torch.randint(0, 3, (20, 2, 5, 6), generator=gen).double(),  # degenerate
        ]
    )
    _assert_same_test(NormalFormGame(payoffs))
