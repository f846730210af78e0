"""``aggregation.scale.profile_weights``: the one normalisation of every scale-game solver.

Pinned to the ``torch.where`` composition it replaces (values bit for bit, gradients), on
profiles with zero totals, absent players and exact zeros; batch invariance (a game's
weights do not depend on the batch it is solved in); and the solvers' ``weights`` field
equal to it on their own ``x``.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aggregation
from aggregation.scale import profile_weights


def _where_reference(x: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    """The selection written with ``torch.where`` (the solvers' former composition)."""
    L = x.shape[-1]
    if present is None:
        present = torch.ones_like(x, dtype=torch.bool)
    zero = torch.zeros((), dtype=x.dtype)
    kept = torch.where(present, x, zero)
    total = kept[..., 0]
    for l in range(1, L):
        total = total + kept[..., l]
    total = total.unsqueeze(-1)
    positive = total > 0
    safe = torch.where(positive, total, torch.ones_like(total))
    uniform = present.to(x.dtype) / present.sum(-1, keepdim=True).to(x.dtype)
    return torch.where(present, torch.where(positive, kept / safe, uniform), zero)


def _profiles(seed: int, G: int, L: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(G, L, generator=g, dtype=dtype)
    x = torch.where(torch.rand(G, L, generator=g) < 0.4, torch.zeros((), dtype=dtype), x)
    x[: G // 4] = 0.0  # zero totals: the uniform fallback
    present = torch.rand(G, L, generator=g) < 0.7
    present[:, 0] |= ~present.any(-1)  # every game has a player
    return x, present


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    L=st.integers(1, 8),
    masked=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_equals_the_where_composition_bit_for_bit(seed, L, masked, dtype):
    x, present = _profiles(seed, 64, L, dtype)
    mask = present if masked else None
    got, positive = profile_weights(x, mask)
    want = _where_reference(x, mask)
    assert got.dtype == dtype and positive.shape == (64, 1)
    assert torch.equal(got, want)
    kept = x if mask is None else x * mask
    assert torch.equal(positive.squeeze(-1), kept.sum(-1) > 0)
    # every row sums to 1 over the present players, absent ones weigh exactly 0
    torch.testing.assert_close(got.sum(-1), torch.ones(64, dtype=dtype))
    if mask is not None:
        assert bool((got[~mask] == 0).all())


def test_gradients_equal_the_where_composition():
    x, present = _profiles(3, 32, 4, torch.float64)
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    cot = torch.randn(32, 4, dtype=torch.float64)
    (profile_weights(x1, present)[0] * cot).sum().backward()
    (_where_reference(x2, present) * cot).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-14, atol=1e-14)
    positive = x.clamp_min(0).mul(present).sum(-1) > 0
    assert bool((x1.grad[~positive] == 0).all())  # the uniform fallback does not depend on x
    away = x.clone().add(0.1).requires_grad_()  # every total > 0: away from the fallback's kink
    assert torch.autograd.gradcheck(lambda t: profile_weights(t, present)[0], (away,))


def test_batch_invariant():
    x, present = _profiles(5, 257, 5, torch.float32)
    whole, _ = profile_weights(x, present)
    for i in (0, 100, 256):
        alone, _ = profile_weights(x[i : i + 1], present[i : i + 1])
        assert torch.equal(alone[0], whole[i])


def test_every_solver_reports_it_on_its_own_profile():
    g = torch.Generator().manual_seed(11)
    o = torch.randn(50, 4, 6, generator=g, dtype=torch.float64)
    C = o @ o.transpose(-1, -2) / 6 + 0.5 * torch.eye(4, dtype=torch.float64)
    a = torch.randn(50, 4, generator=g, dtype=torch.float64)  # some games with x = 0
    mask = torch.rand(50, 4, generator=g) < 0.8
    mask[:, 0] = True
    results = [
        aggregation.solve_scale_game(aggregation.ScaleGame(a, C, mask), method="exact"),
        aggregation.scale_game_enumeration(a, C, mask),
        aggregation.scale.scale_game_small_batch(a, C, mask),
    ]
    for result in results:
        weights, positive = profile_weights(result.x, mask)
        assert torch.equal(result.weights, weights)
        assert torch.equal(result.info["zero_total"], ~positive.squeeze(-1))
    assert bool(results[0].info["zero_total"].any())  # the fallback was exercised
