"""One query/key projection for every scale (``shared_qk=True``).

Pinned to the per-scale layer: with every per-scale ``W_Q, W_K`` set to one matrix the two
layers compute the same output, the shared weight's gradient is the sum of the per-scale
weights' gradients, and the shared layer has exactly ``(L - 1)`` projections fewer. The
direct reference of ``test_maha_layer`` covers the values on its own; here the models keep
streaming == compiled decoding == parallel.
"""

from __future__ import annotations

import pytest
import torch

import maha
from maha.attention import MultiscaleAttention

F64 = torch.float64


@pytest.mark.parametrize("strategy", ["nash", "softmax", "convex"])
def test_shared_layer_is_the_per_scale_layer_with_tied_weights(strategy):
    torch.manual_seed(0)
    shared = maha.MAHAAttention(8, 2, 3, 2, 4, strategy, True, shared_qk=True).double()
    per_scale = maha.MAHAAttention(8, 2, 3, 2, 4, strategy, True).double()
    state = shared.state_dict()
    for l in range(3):  # every per-scale projection := the shared one
        state[f"attention.qk.{l}.weight"] = state["attention.qk.0.weight"]
        state[f"attention.qk.{l}.bias"] = state["attention.qk.0.bias"]
    per_scale.load_state_dict(state)
    x = torch.randn(2, 21, 8, dtype=F64)
    y_shared, y_per = shared(x), per_scale(x)
    torch.testing.assert_close(y_shared, y_per, rtol=1e-12, atol=1e-12)
    cot = torch.randn_like(y_shared)
    (g_shared,) = torch.autograd.grad(y_shared, shared.attention.qk[0].weight, cot)
    g_per = torch.autograd.grad(y_per, [p.weight for p in per_scale.attention.qk], cot)
    torch.testing.assert_close(g_shared, sum(g_per), rtol=1e-10, atol=1e-12)
    assert all(float(g.abs().max()) > 0 for g in g_per)  # every scale contributes


def test_shared_layer_has_l_minus_one_projections_fewer():
    d, L = 16, 4
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    per_scale = MultiscaleAttention(d, 2, L, 4)
    shared = MultiscaleAttention(d, 2, L, 4, shared_qk=True)
    assert len(shared.qk) == 1 and len(per_scale.qk) == L
    assert count(per_scale) - count(shared) == (L - 1) * (2 * d * d + 2 * d)
    assert "shared_qk=True" in repr(shared)


@pytest.mark.parametrize("rotary", [False, True])
def test_shared_models_stream_and_decode_as_they_run_in_parallel(rotary, streams_like_parallel):
    torch.manual_seed(2)
    config = maha.MAHAConfig(
        vocab_size=40, block_size=96, n_layer=2, n_head=2, d_model=16, num_scales=3,
        window=4, shared_qk=True, rotary=rotary,
    )  # fmt: skip
    model = maha.build_model("maha-nash", config).double().eval()
    idx = torch.randint(0, 40, (2, 41), generator=torch.Generator().manual_seed(3))
    streams_like_parallel(model, idx)


def test_shared_qk_must_be_a_bool():
    with pytest.raises(TypeError, match="shared_qk must be a bool"):
        maha.MAHAConfig(shared_qk="yes")
    with pytest.raises(TypeError, match="shared_qk must be a bool"):
        MultiscaleAttention(8, 2, 3, 4, shared_qk=1)
