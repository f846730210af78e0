"""The blocked kernel of the windowed scales reads its packed inputs in place.

- ``packed_local_attention(qk, v, ...)`` keeps the caller's ``[Q | K]`` and ``V`` for
  backward (no padded or head-major copy), and its values and gradients equal the
  head-layout ``local_attention`` (float64, bit for bit: the same operations) and a dense
  masked reference, for lengths with and without a partial last block, shorter than the
  window, causal or not, with padding.
- Its traced form (``torch.compile``, one batched computation over every pair and block)
  equals the eager loops.
- ``rotate_packed`` rotates packed queries and keys exactly as ``rotate_queries_keys``
  rotates them in head layout; ``MultiscaleAttention.project`` is the head-layout view of
  ``project_packed``.
- ``score_entries`` counts the entries the kernel computes (the FLOP formula's ``E_l``).
"""

from __future__ import annotations

import pytest
import torch

import maha
from maha.blocked import local_attention, packed_local_attention, score_entries
from maha.rotary import rotate_packed, rotate_queries_keys

HEADS, DH = 3, 4


def _packed(batch, n, *, seed):
    gen = torch.Generator().manual_seed(seed)
    qk = torch.randn(batch, n, 2 * HEADS * DH, dtype=torch.float64, generator=gen)
    v = torch.randn(batch, n, HEADS * DH, dtype=torch.float64, generator=gen)
    return qk.requires_grad_(), v.requires_grad_()


def _heads(qk, v):
    """The head-layout views ``(B, H, n, d_h)`` of packed ``[Q | K]`` and ``V``."""
    batch, n, _ = qk.shape
    q, k = qk.view(batch, n, 2, HEADS, DH).permute(2, 0, 3, 1, 4)
    return q, k, v.view(batch, n, HEADS, DH).transpose(1, 2)


def _dense(q, k, v, window, causal, valid):
    n = q.shape[2]
    rel = torch.arange(n).view(-1, 1) - torch.arange(n).view(1, -1)
    allowed = ((rel >= 0) & (rel < window)) if causal else rel.abs() < window
    allowed = allowed.expand(q.shape[0], n, n)
    if valid is not None:
        allowed = allowed & valid[:, None, :]
    has_key = allowed.any(-1)
    safe = allowed | ~has_key.unsqueeze(-1)
    scores = q @ k.transpose(-1, -2) / DH**0.5 + torch.where(safe, 0.0, float("-inf"))[:, None]
    return (torch.softmax(scores, -1) @ v) * has_key[:, None, :, None].to(v.dtype)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize(("n", "window"), [(1, 4), (3, 4), (16, 4), (17, 4), (30, 7), (9, 1)])
def test_packed_equals_head_layout_and_dense(n, window, causal, padded):
    qk, v = _packed(2, n, seed=n * window)
    valid = torch.rand(2, n, generator=torch.Generator().manual_seed(n)) > 0.3 if padded else None
    out, has_key = packed_local_attention(qk, v, HEADS, window, causal=causal, valid=valid)
    q, k, v_h = (t.detach().requires_grad_() for t in _heads(qk, v))
    ref, ref_has_key = local_attention(q, k, v_h, window, causal=causal, valid=valid)
    assert torch.equal(out, ref)
    assert (has_key is None) == (ref_has_key is None)
    if has_key is not None:
        assert torch.equal(has_key, ref_has_key)
    torch.testing.assert_close(out, _dense(q, k, v_h, window, causal, valid), rtol=0, atol=1e-13)
    cot = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grad_qk, grad_v = torch.autograd.grad(out, (qk, v), cot)
    grad_q, grad_k, grad_vh = torch.autograd.grad(ref, (q, k, v_h), cot)
    theirs_q, theirs_k, theirs_v = _heads(grad_qk, grad_v)
    assert torch.equal(theirs_q, grad_q) and torch.equal(theirs_k, grad_k)
    assert torch.equal(theirs_v, grad_vh)
    dense_grads = torch.autograd.grad(_dense(q, k, v_h, window, causal, valid), (q, k, v_h), cot)
    for a, b in zip((grad_q, grad_k, grad_vh), dense_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_packed_inputs_are_kept_in_place():
    """Backward keeps the caller's ``[Q | K]`` and ``V`` themselves, the output and an empty
    mask: nothing else of the inputs' size (no padded or head-major copy)."""
    qk, v = _packed(2, 40, seed=0)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out, _ = packed_local_attention(qk, v, HEADS, 8, causal=True, valid=None)
    storages = {t.untyped_storage().data_ptr() for t in saved if t.numel()}
    assert storages == {
        qk.untyped_storage().data_ptr(),
        v.untyped_storage().data_ptr(),
        out.untyped_storage().data_ptr(),
    }


@pytest.mark.parametrize(("n", "causal", "padded"), [(19, True, False), (24, False, True)])
def test_traced_equals_eager(n, causal, padded):
    torch._dynamo.reset()
    qk, v = _packed(2, n, seed=n)
    valid = torch.rand(2, n, generator=torch.Generator().manual_seed(0)) > 0.3 if padded else None

    def attend(qk, v):
        return packed_local_attention(qk, v, HEADS, 5, causal=causal, valid=valid)[0]

    out = attend(qk, v)
    traced = torch.compile(attend, backend="aot_eager", fullgraph=True)(qk, v)
    torch.testing.assert_close(traced, out, rtol=0, atol=1e-13)
    cot = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for a, b in zip(
        torch.autograd.grad(traced, (qk, v), cot), torch.autograd.grad(out, (qk, v), cot)
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_rotate_packed_equals_head_layout_rotation():
    qk, _ = _packed(2, 11, seed=3)
    q, k, _ = _heads(qk.detach(), torch.zeros(2, 11, HEADS * DH, dtype=torch.float64))
    rotated_q, rotated_k = rotate_queries_keys(q, k, 5)
    ours_q, ours_k, _ = _heads(rotate_packed(qk.detach(), HEADS, 5), torch.zeros(2, 11, 12))
    assert torch.equal(ours_q, rotated_q) and torch.equal(ours_k, rotated_k)
    with pytest.raises(ValueError, match="heads=5"):
        rotate_packed(qk, 5)


@pytest.mark.parametrize("rotary", [False, True])
def test_project_is_the_head_view_of_project_packed(rotary):
    attention = maha.MultiscaleAttention(12, 3, 2, 4, rotary=rotary).double()
    x = torch.randn(2, 9, 12, dtype=torch.float64)
    v = torch.randn(2, 9, 12, dtype=torch.float64)
    q, k, v_h = attention.project(1, x, v, 3)
    packed = attention.project_packed(1, x, 3).view(2, 9, 2, 3, 4).permute(2, 0, 3, 1, 4)
    assert torch.equal(q, packed[0]) and torch.equal(k, packed[1])
    assert torch.equal(v_h, v.view(2, 9, 3, 4).transpose(1, 2))


@pytest.mark.parametrize("causal", [True, False])
def test_score_entries_count_the_allowed_window(causal):
    """Every allowed (query, key) pair is computed, and the masked remainder is at most the
    slots of whole blocks: ``allowed <= E <= ceil(n / w) w S``."""
    for n in (1, 5, 16, 17, 64, 100):
        w = 8
        rel = torch.arange(n).view(-1, 1) - torch.arange(n).view(1, -1)
        allowed = ((rel >= 0) & (rel < w)) if causal else rel.abs() < w
        span = (2 if causal else 3) * w
        assert int(allowed.sum()) <= score_entries(n, w, causal=causal)
        assert score_entries(n, w, causal=causal) <= -(-n // w) * w * span
