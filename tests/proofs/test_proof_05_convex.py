"""Statement 5 (proofs/05_convex_aggregator.md): the convex aggregator."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aggregation import convex_aggregate, project_simplex
from aggregation.testing import assert_kkt, assert_strongly_monotone, simplex_qps

FAST = settings(max_examples=25, deadline=None)


def _reference(a: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """The maximiser by enumerating supports with the closed form of (iii)."""
    L = len(a)
    best, best_value = None, -np.inf
    for k in range(1, L + 1):
        for S in map(list, itertools.combinations(range(L), k)):
            Qi = np.linalg.inv(Q[np.ix_(S, S)])
            one = np.ones(k)
            lam = (one @ Qi @ a[S] - 1) / (one @ Qi @ one)
            w = np.zeros(L)
            w[S] = Qi @ (a[S] - lam)
            if w.min() >= -1e-12:
                value = a @ w - 0.5 * w @ Q @ w
                if value > best_value:
                    best, best_value = np.clip(w, 0, None), value
    return best


def _objective(a, Q, w):
    return a @ w - 0.5 * w @ Q @ w


@FAST
@given(simplex_qps(st.integers(1, 6), batch_shape=(3,), margin=0.05), st.data())
def test_convex_aggregate_satisfies_kkt(problem, data):
    a, Q = problem
    result = convex_aggregate(a, Q)
    gap = assert_kkt(problem, result, tol=1e-9)
    assert bool(result.converged.all())
    assert float(result.kkt_residual.max()) <= 1e-9
    for b in range(3):
        ab, Qb = a[b].numpy(), Q[b].numpy()
        w_ref = _reference(ab, Qb)  # unique (i): the library must find this one
        np.testing.assert_allclose(result.weights[b].numpy(), w_ref, atol=1e-8)
        # (ii): the Frank-Wolfe gap of any feasible v bounds its suboptimality.
        raw = data.draw(hnp.arrays(np.float64, len(ab), elements=st.floats(0, 1)))
        v = raw / raw.sum() if raw.sum() > 0 else np.full(len(ab), 1 / len(ab))
        g = ab - Qb @ v
        assert _objective(ab, Qb, w_ref) - _objective(ab, Qb, v) <= g.max() - v @ g + 1e-9
    assert float(gap.max()) <= 1e-9


@FAST
@given(
    hnp.arrays(np.float64, st.integers(1, 6), elements=st.floats(-3, 3)),
    st.floats(0.2, 3.0),
)
def test_support_closed_form_and_exact_zeros(a, q):
    # Q = q I: w* = projection of a/q onto the simplex, with exact zeros.
    at = torch.from_numpy(a)
    Q = q * torch.eye(len(a), dtype=torch.float64)
    w = convex_aggregate(at, Q).weights
    torch.testing.assert_close(w, project_simplex(at / q), atol=1e-10, rtol=0)
    g = at - q * w
    lam = g.max()
    # w_l = 0 exactly (not 1e-17) where the marginal utility is strictly below lambda.
    zero = g < lam - 1e-9
    assert bool((w[zero] == 0).all())
    assert bool((w[g > lam - 1e-12] >= 0).all())
    # L = 2: w_2 = 0 iff a_1 - a_2 >= q.
    if len(a) == 2 and abs(a[0] - a[1] - q) > 1e-9:
        assert (float(w[1]) == 0.0) == (a[0] - a[1] >= q)


def test_l1_penalty_is_constant_on_simplex():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    G = torch.randn(64, 5, 5, generator=gen, dtype=torch.float64)
    Q = G @ G.transpose(-1, -2) + 0.1 * torch.eye(5, dtype=torch.float64)
    base = convex_aggregate(a, Q).weights
    # On the simplex gamma ||w||_1 = gamma 1^T w: the penalised problem is the same
    # problem with a - gamma 1, and its solution does not move.
    for gamma in (0.5, 3.0, -2.0):
        shifted = convex_aggregate(a - gamma, Q).weights
        torch.testing.assert_close(shifted, base, atol=1e-10, rtol=0)
        assert torch.allclose(base.abs().sum(-1), torch.ones(64, dtype=torch.float64))
    # The paper code's L1 term on softmax weights: constant value, zero gradient.
    z = torch.randn(64, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.softmax(z, -1).abs().sum().backward()
    assert float(z.grad.abs().max()) < 1e-14


def test_kkt_helper_rejects_wrong_solutions():
    a = torch.tensor([2.0, 0.5, 1.8], dtype=torch.float64)
    Q = torch.tensor([[1.0, 0.2, 0.0], [0.2, 1.0, 0.1], [0.0, 0.1, 1.0]], dtype=torch.float64)
    w = convex_aggregate(a, Q).weights
    torch.testing.assert_close(w, torch.tensor([0.6, 0.0, 0.4], dtype=torch.float64))
    assert_kkt((a, Q), w, tol=1e-12)
    with pytest.raises(AssertionError, match="coordinate 1 has weight"):
        assert_kkt((a, Q), torch.softmax(a, 0), tol=1e-6)  # the softmax baseline
    with pytest.raises(AssertionError, match="KKT"):
        assert_kkt((a, Q), torch.full((3,), 1 / 3, dtype=torch.float64), tol=1e-6)
    with pytest.raises(AssertionError, match="not on the simplex"):
        assert_kkt((a, Q), w * 1.01, tol=1e-6)
    with pytest.raises(AssertionError, match="absent"):
        assert_kkt((a, Q, torch.tensor([True, True, False])), w, tol=1e-6)
    # Outside the assumptions: Q = 0 makes every w optimal (no uniqueness), and
    # the monotonicity check rejects it.
    zero = torch.zeros(3, 3, dtype=torch.float64)
    ones = torch.ones(3, dtype=torch.float64)
    for v in (torch.tensor([1.0, 0, 0]), torch.tensor([0.2, 0.3, 0.5])):
        assert_kkt((ones, zero), v.double(), tol=1e-12)
    with pytest.raises(AssertionError, match="not strongly monotone"):
        assert_strongly_monotone(zero)
