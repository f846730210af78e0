"""Statement 10 (proofs/10_logit_equilibrium.md): the logit equilibrium of the scale game."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import logit_scale_equilibrium
from aggregation.testing import scale_game_params

FAST = settings(max_examples=25, deadline=None, derandomize=True)
F64 = torch.float64


def _logit_iteration(a, C, tau, w0, steps=3000, damping=0.5):
    """Damped plain iteration of (1) from ``w0`` (numpy, one game): an independent solver."""
    w = np.array(w0, dtype=float)
    for _ in range(steps):
        z = (a - C @ w) / tau
        t = np.exp(z - z.max())
        w = (1 - damping) * w + damping * t / t.sum()
    return w


def _vi_gap(a, C, tau, w):
    """``F(w) + tau grad phi(w)`` minus its mean: zero iff (1) holds at interior w (i)."""
    g = C @ w - a + tau * (np.log(w) + 1)
    return np.abs(g - g.mean()).max()


@FAST
@given(params=scale_game_params(st.integers(1, 5)), tau=st.sampled_from([0.2, 1.0, 4.0]))
def test_fixed_point_is_the_variational_inequality_solution(params, tau):
    a, C, _ = params
    w = logit_scale_equilibrium(a, C, tau=tau).weights.numpy()
    assert _vi_gap(a.numpy(), C.numpy(), tau, w) <= 1e-8
    # a wrong point (softmax ignoring C) violates it whenever C w is not constant
    wrong = torch.softmax(a / tau, -1).numpy()
    Cw = C.numpy() @ wrong
    if np.ptp(Cw) > 1e-3:
        assert _vi_gap(a.numpy(), C.numpy(), tau, wrong) > 1e-6


@FAST
@given(params=scale_game_params(st.integers(2, 4), margin=0.0), seed=st.integers(0, 10**6))
def test_unique_under_monotone_C_from_every_start(params, seed):
    """sym(C) PSD (margin 0 allowed): damped iterations from random starts reach the solver's w."""
    a, C, _ = params
    tau = 2.0 + float(np.abs(C.numpy()).sum())  # the damped iteration contracts here
    w = logit_scale_equilibrium(a, C, tau=tau).weights.numpy()
    rng = np.random.default_rng(seed)
    for _ in range(3):
        start = rng.dirichlet(np.ones(a.shape[-1]))
        other = _logit_iteration(a.numpy(), C.numpy(), tau, start, steps=400)
        assert np.abs(other - w).max() <= 1e-9


def test_non_monotone_counterexample_has_three_equilibria():
    """C = -2 I, a = 0, tau = 1/2: w_1 in {p, 1/2, 1 - p}, p ~ 0.0212 (ii)."""
    a, C, tau = np.zeros(2), -2.0 * np.eye(2), 0.5
    found = sorted(
        round(float(_logit_iteration(a, C, tau, [p, 1 - p], steps=2000, damping=0.2)[0]), 6)
        for p in (0.01, 0.5, 0.99)
    )
    assert found[0] < 0.05 and abs(found[1] - 0.5) < 1e-9 and found[2] > 0.95
    for w1 in found:
        w = np.array([w1, 1 - w1])
        assert _vi_gap(a, C, tau, w) <= 1e-5  # each one is a logit equilibrium
    assert np.linalg.eigvalsh(C).min() < 0  # outside the assumption of (ii)


@FAST
@given(
    params=scale_game_params(st.integers(1, 6), batch_shape=(4,), masked=True),
    tau=st.sampled_from([0.1, 0.5, 2.0]),
)
def test_interior_with_the_lower_bound(params, tau):
    a, C, mask = params
    w = logit_scale_equilibrium(a, C, mask, tau=tau).weights
    for i in range(a.shape[0]):
        P = mask[i]
        ai, Ci = a[i][P], C[i][P][:, P]
        L = int(P.sum())
        bound = math.exp(-(float(ai.max() - ai.min()) + 2 * float(Ci.abs().max())) / tau) / L
        assert (w[i][P] >= bound * (1 - 1e-9)).all() and (w[i][~P] == 0).all()


def test_softmax_is_the_zero_interaction_case():
    g = torch.Generator().manual_seed(0)
    for L in (1, 2, 5):
        a = torch.randn(3, L, dtype=F64, generator=g) * 3
        for tau in (0.05, 1.0, 20.0):
            r = logit_scale_equilibrium(a, torch.zeros(L, L, dtype=F64), tau=tau)
            assert torch.equal(r.weights, torch.softmax(a / tau, -1))
    # and a nonzero C moves it
    a = torch.tensor([1.0, 0.0], dtype=F64)
    r = logit_scale_equilibrium(a, torch.eye(2, dtype=F64), tau=1.0)
    assert (r.weights - torch.softmax(a, -1)).abs().max() > 1e-2


def _simplex_vi(a, C):
    """w_0: the VI of F(w) = C w - a on the simplex, by enumerating supports (numpy)."""
    L = len(a)
    for bits in range(1, 2**L):
        S = [l for l in range(L) if bits >> l & 1]
        K = np.zeros((len(S) + 1, len(S) + 1))
        K[:-1, :-1] = C[np.ix_(S, S)]
        K[:-1, -1] = 1.0
        K[-1, :-1] = 1.0
        sol = np.linalg.solve(K, np.concatenate([a[S], [1.0]]))
        w = np.zeros(L)
        w[S] = sol[:-1]
        if w.min() >= -1e-12 and (a - C @ w).max() <= sol[-1] + 1e-12:
            return w
    raise AssertionError("no support")


@FAST
@given(params=scale_game_params(st.integers(2, 4), margin=0.2))
def test_tau_to_zero_within_the_bound(params):
    a, C, _ = params
    m = float(np.linalg.eigvalsh(0.5 * (C.numpy() + C.numpy().T)).min())
    w0 = _simplex_vi(a.numpy(), C.numpy())
    L = a.shape[-1]
    previous = math.inf
    for tau in (1.0, 0.1, 0.01):
        w = logit_scale_equilibrium(a, C, tau=tau, max_iter=60).weights.numpy()
        gap = float(np.linalg.norm(w - w0))
        assert gap <= math.sqrt(tau * math.log(L) / m) + 1e-7
        previous = min(previous, gap)
    assert previous <= math.sqrt(0.01 * math.log(L) / m) + 1e-7


@FAST
@given(
    params=scale_game_params(st.integers(2, 6), margin=0.0),
    tau=st.sampled_from([0.01, 0.3, 3.0]),
    seed=st.integers(0, 10**6),
)
def test_jacobian_eigenvalues_have_real_part_at_least_one(params, tau, seed):
    a, C, _ = params
    rng = np.random.default_rng(seed)
    s = rng.dirichlet(np.ones(a.shape[-1]) * 0.5)  # any point of the simplex
    Js = np.diag(s) - np.outer(s, s)
    J = np.eye(len(s)) + C.numpy() @ Js / tau
    assert np.linalg.eigvals(J).real.min() >= 1 - 1e-9
    Jw = np.eye(len(s)) + Js @ C.numpy() / tau  # the w-space form: the same spectrum
    assert np.linalg.eigvals(Jw).real.min() >= 1 - 1e-9
    # outside the assumption the bound fails: C = -k I makes J singular somewhere
    k = 4 * tau / s.size
    Jbad = np.eye(len(s)) - k * Js / tau
    if np.linalg.eigvalsh(Js).max() * k / tau > 1:
        assert np.linalg.eigvals(Jbad).real.min() < 0
