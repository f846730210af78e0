"""Result containers: indexing, derived quantities, the equilibrium-set layout."""

import pytest
import torch

from aggregation import EquilibriumResult, EquilibriumSet


def _result():
    strategies = (torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([[0.0, 1.0], [0.5, 0.5]]))
    regret = torch.tensor([[0.0, 0.0], [0.3, 0.1]])
    return EquilibriumResult(
        strategies=strategies,
        regret=regret,
        converged=regret.amax(-1) <= 1e-6,
        iterations=torch.tensor([3, 7]),
        method="demo",
        tol=1e-6,
        info={"pivots": torch.tensor([3, 7])},
    )


def test_derived_quantities():
    r = _result()
    assert r.batch_shape == (2,)
    assert r.num_players == 2
    torch.testing.assert_close(r.nash_conv, torch.tensor([0.0, 0.4]))
    torch.testing.assert_close(r.exploitability, torch.tensor([0.0, 0.2]))
    torch.testing.assert_close(r.max_regret, torch.tensor([0.0, 0.3]))


def test_indexing_selects_one_game_everywhere():
    r = _result()[1]
    assert r.batch_shape == ()
    assert r.strategies[0].tolist() == [0.5, 0.5]
    assert not bool(r.converged)
    assert int(r.info["pivots"]) == 7
    assert "converged=False" in repr(r)
    with pytest.raises(IndexError, match="not batched"):
        r[0]


def test_equilibrium_set_layout_and_list_view():
    eqs = EquilibriumSet(
        strategies=(
            torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]),
            torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]),
        ),
        regret=torch.zeros(1, 2, 2),
        valid=torch.tensor([[True, False]]),
        count=torch.tensor([1]),
        degenerate=torch.tensor([False]),
        method="demo",
        tol=1e-9,
    )
    with pytest.raises(TypeError, match="unbatched"):
        len(eqs)
    one = eqs[0]
    assert len(one) == 1
    (eq,) = list(one)
    assert eq.strategies[0].tolist() == [1.0, 0.0]
    assert bool(eq.converged)


def test_repr_of_an_empty_batch():
    empty = EquilibriumResult(
        strategies=(torch.zeros(0, 2),),
        regret=torch.zeros(0, 1),
        converged=torch.zeros(0, dtype=torch.bool),
        iterations=torch.zeros(0, dtype=torch.int64),
        method="demo",
        tol=1e-6,
    )
    assert "converged=0/0" in repr(empty)
