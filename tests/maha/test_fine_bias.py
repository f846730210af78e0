"""The fusion's initial preference for the finest scale (``fine_bias``).

Pinned to its definition: only scale 0's utility bias (game strategies) or logit (softmax)
moves, by exactly ``fine_bias``; with identical scale outputs and no content term the nash
weights are the closed-form interior equilibrium of ``C x = a`` and the softmax weights
``softmax([b, 0, ..., 0])``; the parameters stay learned (a start, not a constraint); bad
values are refused by name.
"""

from __future__ import annotations

import math

import pytest
import torch

import maha
from maha.fusion import ScaleFusion

F64 = torch.float64
INV_SOFTPLUS_ONE = math.log(math.expm1(1.0))


@pytest.mark.parametrize("strategy", ["nash", "convex", "logit"])
def test_only_the_finest_utility_bias_moves(strategy):
    plain = ScaleFusion(4, 3, 8, strategy)
    fine = ScaleFusion(4, 3, 8, strategy, fine_bias=2.5)
    torch.testing.assert_close(plain.utility_bias, torch.full((4, 3), INV_SOFTPLUS_ONE))
    expected = plain.utility_bias.detach().clone()
    expected[0] += 2.5
    torch.testing.assert_close(fine.utility_bias.detach(), expected, rtol=0, atol=0)
    assert fine.utility_bias.requires_grad  # learned from there on
    assert "fine_bias=2.5" in repr(fine) and "fine_bias" not in repr(plain)


def test_softmax_starts_at_the_softmax_of_the_fine_logit():
    fusion = ScaleFusion(3, 2, 4, "softmax", fine_bias=1.5).double()
    stack = torch.randn(1, 7, 2, 3, 4, dtype=F64)
    present = torch.ones(1, 7, 3, dtype=torch.bool)
    weights = fusion(stack, present).diagnostics.weights  # (B, n, H, L)
    expected = torch.softmax(torch.tensor([1.5, 0.0, 0.0], dtype=F64), 0)
    torch.testing.assert_close(weights, expected.expand_as(weights), rtol=0, atol=1e-15)


@pytest.mark.parametrize("fine_bias", [0.0, 1.0, 4.0])
def test_nash_weights_are_the_closed_form_equilibrium(fine_bias):
    """Identical outputs ``o`` and ``u = 0``: ``a_l = softplus(b_l) + eps`` and
    ``C = c 1 1^T + mu I`` with ``c = beta |o|^2 / d_h`` (``beta = 1`` at initialisation). The
    interior solution of ``C x = a`` is ``x = (a - c S) / mu`` with ``S = sum(a) / (mu + L c)``."""
    L, H, dh, mu, eps = 4, 2, 8, 1.0, 1e-3
    fusion = ScaleFusion(L, H, dh, "nash", mu=mu, utility_eps=eps, fine_bias=fine_bias, dtype=F64)
    with torch.no_grad():
        fusion.utility_weight.zero_()
    o = torch.full((dh,), 0.1, dtype=F64)  # |o|^2 / d_h = 0.01
    stack = o.expand(1, 5, H, L, dh).clone()  # (B, n, H, L, d_h)
    weights = fusion(stack, torch.ones(1, 5, L, dtype=torch.bool)).diagnostics.weights
    b = torch.full((L,), INV_SOFTPLUS_ONE, dtype=F64)
    b[0] += fine_bias
    a = torch.nn.functional.softplus(b) + eps
    c = float(o @ o) / dh
    x = (a - c * a.sum() / (mu + L * c)) / mu
    assert bool((x > 0).all())  # interior: the closed form applies
    torch.testing.assert_close(weights, (x / x.sum()).expand_as(weights), rtol=0, atol=1e-12)
    if fine_bias > 0:  # the finest scale starts ahead
        assert bool((weights[..., 0] > weights[..., 1] + 0.05).all())


def test_fine_bias_is_a_checked_config_number():
    config = maha.MAHAConfig(fine_bias=3)
    assert config.fine_bias == 3 and maha.MAHAConfig.from_dict(config.to_dict()) == config
    layer_fusion = ScaleFusion.from_config(config.replace(strategy="softmax"))
    assert float(layer_fusion.logits.detach()[0]) == 3.0
    with pytest.raises(TypeError, match="fine_bias must be a real number"):
        maha.MAHAConfig(fine_bias="high")
    with pytest.raises(TypeError, match="fine_bias must be a real number"):
        ScaleFusion(3, 2, 4, fine_bias=True)
    with pytest.raises(ValueError, match="fine_bias must be finite"):
        maha.MAHAConfig(fine_bias=float("inf"))


def test_the_training_cli_passes_fine_bias():
    from maha.training.cli import build_parser, config_from_args

    args = build_parser().parse_args(["--variant", "maha-nash", "--fine-bias", "2.0"])
    assert config_from_args(args).model.fine_bias == 2.0
