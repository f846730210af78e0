"""The "logit" fusion strategy and the learned per-head ``mu`` of :class:`maha.ScaleFusion`.

The layer-wide properties (causality, padding, streaming == parallel) run for "logit"
through the tests parametrised over ``maha.STRATEGIES``; here: the fusion equals the
library's logit equilibrium of its own games, its parameters start where documented
and learn, ``learn_mu`` keeps ``mu_h > 0``, and the layer compiles in one graph.
"""

from __future__ import annotations

import pytest
import torch

import aggregation
import maha
from maha import MAHAConfig, build_model
from maha.fusion import MU_FLOOR, TAU_FLOOR, ScaleFusion

F64 = torch.float64


def _fusion(strategy="logit", **kw):
    torch.manual_seed(0)
    return ScaleFusion(3, 2, 4, strategy, dtype=F64, **kw)


def test_logit_fusion_is_the_logit_equilibrium_of_its_games():
    fusion = _fusion()
    o = torch.randn(2, 5, 2, 3, 4, dtype=F64)
    present = torch.ones(2, 5, 3, dtype=torch.bool)
    present[0, :2, 2] = False
    out = fusion(o, present)
    a, C = fusion.game_inputs(o)
    mask = present.unsqueeze(2).expand(2, 5, 2, 3)
    tau = fusion.temperature(F64).view(1, 1, -1)
    ref = aggregation.logit_scale_equilibrium(a, C, mask, tau=tau)
    torch.testing.assert_close(out.diagnostics.weights, ref.weights, rtol=0, atol=1e-14)
    d = out.diagnostics
    assert d.converged.all() and (d.residual <= 1e-9).all() and d.residual.shape == (2, 5, 2)
    assert (d.weights[0, :2, :, 2] == 0).all() and (d.weights[mask] > 0).all()
    expected = (d.weights.unsqueeze(-1) * o).sum(-2)
    torch.testing.assert_close(out.output, expected, rtol=0, atol=1e-13)


def test_temperature_starts_at_one_and_learns():
    fusion = _fusion()
    torch.testing.assert_close(fusion.temperature(F64), torch.ones(2, dtype=F64))
    o = torch.randn(1, 4, 2, 3, 4, dtype=F64)
    present = torch.ones(1, 4, 3, dtype=torch.bool)
    fusion(o, present).output.square().sum().backward()
    assert fusion.tau_raw.grad is not None and fusion.tau_raw.grad.abs().min() > 0
    with torch.no_grad():
        fusion.tau_raw.fill_(-1e4)  # the floor keeps tau > 0
    assert (fusion.temperature(F64) == TAU_FLOOR).all()


@pytest.mark.parametrize("strategy", ["nash", "convex", "logit"])
def test_learned_mu_starts_at_mu_stays_positive_and_learns(strategy):
    fixed = _fusion(strategy, mu=0.7)
    learned = _fusion(strategy, mu=0.7, learn_mu=True)
    assert not hasattr(fixed, "mu_raw")
    o = torch.randn(1, 4, 2, 3, 4, dtype=F64)
    present = torch.ones(1, 4, 3, dtype=torch.bool)
    torch.testing.assert_close(learned.mu_per_head(F64), torch.full((2,), 0.7, dtype=F64))
    torch.testing.assert_close(learned(o, present).output, fixed(o, present).output)
    learned(o, present).output.square().sum().backward()
    assert learned.mu_raw.grad is not None and learned.mu_raw.grad.abs().max() > 0
    with torch.no_grad():
        learned.mu_raw.fill_(-1e4)
    assert (learned.mu_per_head(F64) == 0.7 * MU_FLOOR).all()  # > 0: strongly monotone


def test_learn_mu_is_a_checked_config_bool_and_adds_one_vector_per_layer():
    with pytest.raises(TypeError, match="learn_mu must be a bool"):
        MAHAConfig(learn_mu=1)
    with pytest.raises(TypeError, match="learn_mu must be a bool"):
        ScaleFusion(3, 2, 4, "nash", learn_mu="yes")
    config = MAHAConfig(block_size=32, n_layer=2, n_head=2, d_model=16, num_scales=3, window=8)
    base = sum(p.numel() for p in build_model("maha-nash", config).parameters())
    more = sum(
        p.numel() for p in build_model("maha-nash", config.replace(learn_mu=True)).parameters()
    )
    logit = sum(p.numel() for p in build_model("maha-logit", config).parameters())
    assert more == base + 2 * 2 and logit == base + 2 * 2  # (H,) per layer


def test_logit_layer_compiles_in_one_graph():
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = maha.MAHAAttention(8, 2, 2, 2, 4, "logit", causal=True, solver_max_iter=2)
    x = torch.randn(1, 7, 8)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    results = []
    for f in (compiled, layer):
        xi = x.clone().requires_grad_()
        y = f(xi)
        (g,) = torch.autograd.grad(y.square().sum(), xi)
        results.append((y, g))
    for u, v in zip(*results):
        assert torch.allclose(u, v, rtol=0, atol=1e-5)
