"""Statement 6 (proofs/06_price_of_anarchy.md): Nash welfare vs the social optimum."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch
from _proof_reference import social_optimum, welfare
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aggregation import ScaleGame, price_of_anarchy, solve_scale_game
from aggregation.testing import assert_scale_equilibrium, scale_game_params

FAST = settings(max_examples=25, deadline=None)
POSITIVE = st.floats(0.1, 2.0).map(lambda v: round(v, 3))


def _nash(a: np.ndarray, C: np.ndarray) -> np.ndarray:
    game = ScaleGame(torch.from_numpy(a), torch.from_numpy(C))
    result = solve_scale_game(game, method="exact")
    assert_scale_equilibrium(game, result, tol=1e-9)
    return result.x.numpy()


def _faces_nonsingular(M: np.ndarray) -> bool:
    L = len(M)
    return all(
        abs(np.linalg.det(M[np.ix_(S, S)])) > 1e-9
        for k in range(1, L + 1)
        for S in map(list, itertools.combinations(range(L), k))
    )


@FAST
@given(scale_game_params(st.integers(1, 5), batch_shape=(2,), margin=0.05))
def test_nash_welfare_closed_form(params):
    a, C, _ = params
    result = solve_scale_game(ScaleGame(a, C), method="exact")
    for b in range(2):
        ab, Cb, x = a[b].numpy(), C[b].numpy(), result.x[b].numpy()
        d = np.diag(Cb)
        utilities = x * (ab - Cb @ x + d * x) - 0.5 * d * x * x
        np.testing.assert_allclose(utilities, 0.5 * d * x * x, atol=1e-9)
        assert abs(welfare(ab, Cb, x) - 0.5 * np.sum(d * x * x)) <= 1e-9
        assert (welfare(ab, Cb, x) > 1e-12) == bool(x.max() > 0) == bool(ab.max() > 0)


@FAST
@given(
    scale_game_params(
        st.integers(1, 5), symmetric=True, nonnegative=True, margin=0.05, utilities=POSITIVE
    )
)
def test_price_of_anarchy_bound(params):
    a, C = params.a.numpy(), params.C.numpy()
    L = len(a)
    D = np.diag(np.diag(C))
    M = C + C.T - D
    assume(_faces_nonsingular(M))
    x = _nash(a, C)
    w_nash = welfare(a, C, x)
    w_opt = social_optimum(a, C)
    d = np.sqrt(np.diag(C))
    lam = np.linalg.eigvalsh(C / np.outer(d, d))[-1]
    rho = (x @ C @ x) / (x @ D @ x)
    poa = w_opt / w_nash
    assert 1 - 1e-9 <= poa <= rho * (1 + 1e-9)
    assert rho <= lam * (1 + 1e-12) and lam <= L * (1 + 1e-12)
    assert w_opt <= 0.5 * x @ C @ x + 1e-9  # W* <= Phi(x*)
    # The library's price of anarchy is this one.
    lib = price_of_anarchy(ScaleGame(params.a, params.C))
    assert bool(lib.defined)
    assert float(lib.ratio) == pytest.approx(poa, rel=1e-9)
    assert float(lib.welfare_optimum) == pytest.approx(w_opt, rel=1e-9, abs=1e-12)
    assert float(lib.welfare_nash) == pytest.approx(0.5 * np.sum(np.diag(C) * x * x), abs=1e-12)


@pytest.mark.parametrize("L", [2, 3, 5])
def test_uniform_family_worst_case(L):
    ones = np.ones(L)
    for c in (Fraction(0), Fraction(1, 4), Fraction(1, 2), Fraction(3, 4), Fraction(99, 100)):
        C = (1 - float(c)) * np.eye(L) + float(c) * np.ones((L, L))
        x = _nash(ones, C)
        s = (L - 1) * c
        np.testing.assert_allclose(x, float(1 / (1 + s)), atol=1e-12)
        w_nash = L / (2 * (1 + s) ** 2)
        w_opt = L / (2 * (1 + 2 * s)) if c <= Fraction(1, 2) else Fraction(1, 2)
        assert welfare(ones, C, x) == pytest.approx(float(w_nash), abs=1e-12)
        assert social_optimum(ones, C) == pytest.approx(float(w_opt), abs=1e-9)
        bound = 1 + s  # lambda_max(C_c)
        assert w_opt / w_nash <= bound
        lib = price_of_anarchy((torch.ones(L, dtype=torch.float64), torch.from_numpy(C)))
        assert float(lib.ratio) == pytest.approx(float(w_opt / w_nash), rel=1e-9)
    # The supremum over the family is L: the bound L cannot be improved.
    c = Fraction(9999, 10000)
    s = (L - 1) * c
    assert float((1 + s) ** 2 / L) > L - 1e-3 * L


def test_outside_assumptions():
    # (a) complements: M is not copositive and welfare is unbounded along x = t(1, 1).
    a = np.ones(2)
    C = np.array([[1.0, -0.8], [-0.8, 1.0]])
    assert np.linalg.eigvalsh(C)[0] > 0  # still strongly monotone: the Nash point exists
    x = _nash(a, C)
    assert [welfare(a, C, t * np.ones(2)) for t in (10.0, 100.0)] == pytest.approx([80.0, 6200.0])
    assert welfare(a, C, x) < 80.0
    # The library must say so instead of returning a number.
    lib = price_of_anarchy((torch.from_numpy(a), torch.from_numpy(C)))
    assert not bool(lib.defined) and int(lib.status) == 1
    assert float(lib.ratio) == float("inf") and float(lib.welfare_optimum) == float("inf")
    # (b) asymmetric nonnegative C: PoA = 50/13 > L = 2 > lambda_max of the normalised sym part.
    C = np.array([[1.0, 0.0], [0.9, 0.25]])
    x = _nash(a, C)
    np.testing.assert_allclose(x, [1.0, 0.4], atol=1e-12)
    poa = social_optimum(a, C) / welfare(a, C, x)
    assert Fraction(poa).limit_denominator(100) == Fraction(50, 13)
    lib = price_of_anarchy((torch.from_numpy(a), torch.from_numpy(C)))
    assert float(lib.ratio) == pytest.approx(50 / 13, rel=1e-9)
    S = 0.5 * (C + C.T)
    d = np.sqrt(np.diag(C))
    assert poa > 2 > np.linalg.eigvalsh(S / np.outer(d, d))[-1]
