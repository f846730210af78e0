"""ScaleFusion's small-batch path (a decoding step's few games) against the pivoting solver.

Without a graph and with at most ``maha.fusion.SMALL_BATCH_GAMES`` games, the nash
fusion solves with ``aggregation.scale.small_batch``; with the threshold at 0 the same
call pivots (``solve_scale_game(method="exact")``). Both must give the same output,
weights and certificates, with scales absent and with gating and a skew term.
"""

from __future__ import annotations

import pytest
import torch

import maha
import maha.fusion as fusion_module


def _fuse(fusion, o, present, threshold, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(fusion_module, "SMALL_BATCH_GAMES", threshold)
        with torch.no_grad():
            return fusion(o, present)


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("gating,asymmetric", [(False, False), (True, True)])
def test_small_batch_fusion_equals_pivoting(n, gating, asymmetric, monkeypatch):
    torch.manual_seed(0)
    B, H, L, dh = 3, 2, 4, 8
    fusion = maha.ScaleFusion(
        L, H, dh, "nash", gating=gating, asymmetric=asymmetric, dtype=torch.float64
    )
    if asymmetric:
        with torch.no_grad():
            fusion.skew.normal_()
    o = torch.randn(B, n, H, L, dh, dtype=torch.float64)
    present = torch.rand(B, n, L) < 0.7
    present[0, 0] = False  # a position with no scale at all: zero weights
    present[1, 0] = True
    o = o * present[:, :, None, :, None]  # absent scales are zero, as upsampled
    fast = _fuse(fusion, o, present, fusion_module.SMALL_BATCH_GAMES, monkeypatch)
    slow = _fuse(fusion, o, present, 0, monkeypatch)
    torch.testing.assert_close(fast.output, slow.output, atol=1e-12, rtol=0)
    d_fast, d_slow = fast.diagnostics, slow.diagnostics
    torch.testing.assert_close(d_fast.weights, d_slow.weights, atol=1e-12, rtol=0)
    torch.testing.assert_close(d_fast.regret, d_slow.regret, atol=1e-12, rtol=0)
    assert torch.equal(d_fast.converged, d_slow.converged)
    assert torch.equal(d_fast.fallback, d_slow.fallback)
    assert bool(d_fast.converged.all())
    assert bool((d_fast.weights[0, 0] == 0).all())


def test_small_batch_is_not_used_with_a_graph(monkeypatch):
    """Training keeps the pivoting solver's implicit gradients: same gradients either way."""
    torch.manual_seed(1)
    fusion = maha.ScaleFusion(3, 2, 4, "nash", dtype=torch.float64)
    o = torch.randn(2, 1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    present = torch.ones(2, 1, 3, dtype=torch.bool)
    calls = []
    real = fusion_module.scale_game_small_batch
    monkeypatch.setattr(
        fusion_module, "scale_game_small_batch", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    fusion(o, present).output.sum().backward()
    assert not calls and o.grad is not None and bool(torch.isfinite(o.grad).all())
    with torch.no_grad():
        fusion(o, present)
    assert calls == [1]
