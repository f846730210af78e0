"""Result containers: indexing, derived quantities, the equilibrium-set layout."""

import dataclasses

import pytest
import torch

from aggregation import (
    ConvexAggregateResult,
    EquilibriumResult,
    EquilibriumSet,
    NormalFormGame,
    ScaleGameResult,
    iterated_elimination,
)
from aggregation.result import BatchedResult


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


# ------------------------------------------------- one batched base class
def _batched_results():
    """One batched result of each class, every optional field set (so every field is walked)."""
    base = _result()
    er = dataclasses.replace(
        base,
        residual=torch.tensor([0.0, 0.25]),
        path=tuple(x.unsqueeze(-2).expand(2, 3, 2) for x in base.strategies),
    )
    es = EquilibriumSet(
        strategies=(torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.5, 0.5], [1.0, 0.0]]]),) * 2,
        regret=torch.zeros(2, 2, 2),
        valid=torch.tensor([[True, False], [True, True]]),
        count=torch.tensor([1, 2]),
        degenerate=torch.tensor([False, True]),
        method="demo",
        tol=1e-9,
        info={"k": torch.tensor([1, 2])},
        actions=torch.tensor([[[0, 0], [-1, -1]], [[0, 1], [1, 0]]]),
    )
    x = torch.tensor([[0.25, 0.75, 0.0], [1.0, 0.0, 0.5]])
    sg = ScaleGameResult(
        strategies=tuple(x.unbind(-1)),
        regret=torch.tensor([[0.0, 1e-3, 0.0], [0.0, 0.0, 0.0]]),
        converged=torch.tensor([False, True]),
        iterations=torch.tensor([2, 4]),
        method="exact",
        tol=1e-5,
        residual=torch.tensor([1e-3, 0.0]),
        info={"zero_total": torch.tensor([False, False])},
        x=x,
        weights=x / x.sum(-1, keepdim=True),
        support=x > 0,
        path=tuple(v.unsqueeze(-1) for v in x.unbind(-1)),
    )
    w = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    cv = ConvexAggregateResult(
        weights=w,
        multiplier=torch.tensor([0.5, 1.5]),
        kkt_residual=torch.tensor([1e-9, 2e-7]),
        converged=torch.tensor([True, False]),
        iterations=torch.tensor([1, 3]),
        support=w > 0,
        objective=torch.tensor([0.125, 0.5]),
        method="active_set",
        tol=1e-7,
        info={"n": torch.tensor([1, 1])},
    )
    game = NormalFormGame(torch.tensor([[[[3.0, 0.0], [5.0, 1.0]], [[3.0, 5.0], [0.0, 1.0]]]] * 2))
    el = iterated_elimination(game)  # a batch of two prisoner's dilemmas
    return er, es, sg, cv, el


def _same(got, want) -> bool:
    if isinstance(want, torch.Tensor):
        return isinstance(got, torch.Tensor) and got.shape == want.shape and torch.equal(got, want)
    if isinstance(want, tuple):
        return isinstance(got, tuple) and len(got) == len(want) and all(map(_same, got, want))
    if isinstance(want, NormalFormGame):
        return isinstance(got, NormalFormGame) and torch.equal(got.payoffs, want.payoffs)
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    return got == want


def test_the_base_class_indexes_every_field_of_every_result():
    for result in _batched_results():
        assert isinstance(result, BatchedResult)
        names = [f.name for f in dataclasses.fields(result)]
        walked = [n for n in names if n not in ("method", "tol")]
        assert all(getattr(result, n) is not None for n in walked), type(result)
        for i in (0, 1, -1, slice(1, 2), torch.tensor([1, 0])):
            part = result[i]
            assert type(part) is type(result)
            for n in names:  # each field's batch dims indexed, the rest kept
                value = getattr(result, n)
                if isinstance(value, (torch.Tensor, NormalFormGame)):
                    want = value[i]
                elif isinstance(value, tuple):
                    want = tuple(v[i] for v in value)
                elif isinstance(value, dict):
                    want = {k: v[i] for k, v in value.items()}
                else:
                    want = value
                assert _same(getattr(part, n), want), (type(result).__name__, n, i)
        one = result[1]
        assert one.batch_shape == ()
        with pytest.raises(IndexError, match="not batched"):
            one[0]
    sg = _batched_results()[2][1]
    # the strategies are still views of the (indexed) x, as the solvers build them
    assert [s.data_ptr() for s in sg.strategies] == [v.data_ptr() for v in sg.x.unbind(-1)]


def test_reprs_walk_the_fields():
    er, es, sg, cv, el = _batched_results()
    # unbatched: as the hand-written reprs printed them
    assert repr(er[1]) == (
        "EquilibriumResult(method='demo', strategies=([0.5, 0.5], [0.5, 0.5]), "
        "max_regret=0.3, converged=False, iterations=7)"
    )
    assert repr(es[1]) == "EquilibriumSet(method='demo', count=2, degenerate=True)"
    assert repr(sg[0]) == (
        "ScaleGameResult(method='exact', x=[0.25, 0.75, 0], max_regret=0.001, "
        "converged=False, iterations=2)"
    )
    assert repr(cv[0]) == (
        "ConvexAggregateResult(method='active_set', weights=[0.25, 0.75], "
        "kkt_residual=1e-09, converged=True)"
    )
    assert repr(el[0]) == "EliminationResult(rounds=1, actions=([1], [1]))"  # was the raw dataclass
    # batched: a summary per field (k/n True, the largest value, the total)
    assert repr(er) == (
        "EquilibriumResult(method='demo', batch_shape=(2,), converged=1/2, "
        "max_regret=0.3, tol=1e-06)"
    )
    assert repr(es) == (
        "EquilibriumSet(method='demo', batch_shape=(2,), total_count=3, degenerate=1/2)"
    )
    assert repr(sg) == (
        "ScaleGameResult(method='exact', batch_shape=(2,), num_players=3, converged=1/2, "
        "max_regret=0.001, tol=1e-05)"
    )
    assert repr(cv) == (
        "ConvexAggregateResult(method='active_set', batch_shape=(2,), num_scales=2, "
        "converged=1/2, max_kkt_residual=2e-07)"
    )
    assert repr(el) == "EliminationResult(batch_shape=(2,), total_rounds=2)"
