"""The FlexAttention path of the local windows (``maha/flex.py``) equals the blocked CPU path.

- ``window_block_mask`` lists exactly the partial and full tiles of PyTorch's own
  ``create_block_mask`` on the same ``mask_mod`` (with and without padding).
- ``flex_local_attention`` == ``local_attention``'s blocked path: outputs (float64,
  <= 1e-10) for lengths that are and are not multiples of the window and shorter
  than it, several windows and tile sizes, causal or not, with or without padding;
  and input gradients, through FlexAttention's operator with PyTorch's dense
  reference backward (PyTorch 2.13's public ``flex_attention`` refuses inputs that
  require grad on a CPU, so the kernel is swapped for that operator here; the CUDA
  kernel cannot be run without a GPU).
- causality: the output at ``t`` does not change when the inputs after ``t`` do.
- the whole ``MAHAAttention`` layer with the flex path forced == its default path.
- the dispatch: CUDA uses flex, other devices the blocked path, ``use_flex`` forces.
"""

from __future__ import annotations

import shutil

import pytest
import torch

import maha
from maha import flex
from maha.attention import local_attention

fa = pytest.importorskip("torch.nn.attention.flex_attention")
if not flex.flex_available():
    pytest.skip("torch has no FlexAttention", allow_module_level=True)

TOL = 1e-10

pytestmark = [
    # eager flex_attention on a CPU is PyTorch's unfused reference: the point here
    pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile"),
    # raised by inductor's own imports (the compiled test)
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated"),
]


def _reference_kernel(device):
    """FlexAttention's operator without the public wrapper's CPU backward refusal."""
    hop_module = pytest.importorskip("torch._higher_order_ops.flex_attention")

    def score(s, b, h, q_idx, kv_idx):
        return s

    def run(q, k, v, block_mask):
        out, _, _ = hop_module.flex_attention(
            q, k, v, score, block_mask.as_tuple(), q.shape[-1] ** -0.5, {}
        )
        return out

    return run


@pytest.fixture
def differentiable_flex(monkeypatch):
    """Route ``flex_local_attention`` through the operator with a CPU backward."""
    monkeypatch.setattr(flex, "_kernel", _reference_kernel)


def _dense_tiles(num: torch.Tensor, indices: torch.Tensor, tiles: int) -> torch.Tensor:
    """``(B, H, nq, nk)`` bool tile map from FlexAttention's ordered layout."""
    slot = torch.arange(indices.shape[-1])
    dense = torch.zeros(*indices.shape[:-1], tiles + 1, dtype=torch.bool)
    cols = torch.where(slot < num.unsqueeze(-1), indices.long(), tiles)
    dense.scatter_(-1, cols, True)
    return dense[..., :tiles]


@pytest.mark.parametrize(
    "n, window, causal, block, padded",
    [
        (37, 5, True, 8, False),
        (37, 5, True, 8, True),
        (37, 5, False, 8, True),
        (50, 7, False, 16, False),
        (9, 12, True, 4, True),
        (33, 1, True, 4, True),
    ],
)
def test_block_mask_lists_the_tiles_of_create_block_mask(n, window, causal, block, padded):
    gen = torch.Generator().manual_seed(n + window)
    valid = torch.rand(3, n, generator=gen) > 0.4 if padded else None
    ours = flex.window_block_mask(n, window, causal=causal, valid=valid, block_size=block)
    theirs = fa.create_block_mask(
        flex.window_mask_mod(window, causal=causal, valid=valid),
        None if valid is None else 3,
        None,
        n,
        n,
        device="cpu",
        BLOCK_SIZE=block,
    )
    tiles = -(-n // block)
    for num, idx in (("kv_num_blocks", "kv_indices"), ("full_kv_num_blocks", "full_kv_indices")):
        a = _dense_tiles(getattr(ours, num), getattr(ours, idx), tiles)
        b = _dense_tiles(getattr(theirs, num), getattr(theirs, idx), tiles)
        assert torch.equal(a, b), num
    assert ours.shape == theirs.shape


def _qkv(batch, n, dh, seed, grad=False):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, 2, n, dh, dtype=torch.float64, generator=gen).requires_grad_(grad)
        for _ in range(3)
    ]


CASES = [  # n, window, causal, block, padded
    (37, 5, True, 8, False),
    (37, 5, False, 8, True),
    (40, 8, True, 16, True),
    (6, 9, True, 128, False),  # n < window
    (23, 4, False, 4, False),
    (29, 3, True, 4, True),
]


@pytest.mark.parametrize("n, window, causal, block, padded", CASES)
def test_flex_equals_blocked_outputs(n, window, causal, block, padded):
    q, k, v = _qkv(2, n, 4, seed=n * window)
    valid = torch.rand(2, n, generator=torch.Generator().manual_seed(n)) > 0.5 if padded else None
    out, has_key = flex.flex_local_attention(
        q, k, v, window, causal=causal, valid=valid, block_size=block
    )
    ref, ref_has_key = local_attention(q, k, v, window, causal=causal, valid=valid)
    assert (out - ref).abs().max() <= TOL
    if valid is None:
        assert has_key is None and ref_has_key is None
    else:
        assert torch.equal(has_key, ref_has_key)


@pytest.mark.parametrize("n, window, causal, block, padded", CASES[1:4])
def test_flex_equals_blocked_gradients(differentiable_flex, n, window, causal, block, padded):
    q, k, v = _qkv(2, n, 4, seed=n + window, grad=True)
    valid = torch.rand(2, n, generator=torch.Generator().manual_seed(n)) > 0.5 if padded else None
    weight = torch.randn(2, 2, n, 4, dtype=torch.float64)
    grads = []
    for run in (
        lambda: flex.flex_local_attention(
            q, k, v, window, causal=causal, valid=valid, block_size=block
        ),
        lambda: local_attention(q, k, v, window, causal=causal, valid=valid),
    ):
        out, _ = run()
        grads.append((out, *torch.autograd.grad((out * weight).sum(), (q, k, v))))
    for ours, ref in zip(*grads):
        assert torch.isfinite(ours).all()
        assert (ours - ref).abs().max() <= TOL


@pytest.mark.slow  # one inductor compilation (C++), tens of seconds on a busy CPU
@pytest.mark.skipif(shutil.which("g++") is None, reason="inductor needs a C++ compiler")
def test_compiled_flex_kernel_equals_blocked(monkeypatch):
    """The fused (compiled) kernel with the tile lists: full tiles skip ``mask_mod``.

    On a CPU inductor compiles FlexAttention to its C++ template, which reads the
    block mask as the CUDA kernels do (partial tiles masked, full tiles not,
    other tiles skipped); ``w = 300 > 2 * 128`` makes some tiles full.
    """
    compiled = torch.compile(fa.flex_attention, dynamic=False)
    monkeypatch.setattr(flex, "_kernel", lambda device: compiled)
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 1, 600, 16, generator=gen) for _ in range(3))
    valid = torch.ones(2, 600, dtype=torch.bool)
    valid[1, :150] = False  # leading padding on one row: its first tiles are partial
    mask = flex.window_block_mask(600, 300, causal=True, valid=valid)
    assert mask.full_kv_num_blocks[0].sum() > 0 and mask.full_kv_num_blocks[1].sum() > 0
    with torch.no_grad():
        out, has_key = flex.flex_local_attention(q, k, v, 300, causal=True, valid=valid)
        ref, ref_has_key = local_attention(q, k, v, 300, causal=True, valid=valid)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(has_key, ref_has_key) and not has_key[1, :150].any()


def test_flex_path_traces_into_one_graph():
    """``torch.compile(..., fullgraph=True)`` of the flex path: no graph break.

    The block mask is built inside the graph (no cache lookup while compiling),
    as in a compiled layer on CUDA; ``aot_eager`` traces forward and the joint
    graph without a C++ compiler.
    """
    q, k, v = _qkv(2, 30, 4, seed=11)
    valid = torch.rand(2, 30, generator=torch.Generator().manual_seed(2)) > 0.3

    def run(q, k, v, valid):
        return local_attention(q, k, v, 6, causal=True, valid=valid)

    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    with flex.use_flex(True):
        out, has_key = compiled(q, k, v, valid)
    ref, ref_has_key = local_attention(q, k, v, 6, causal=True, valid=valid)
    assert (out - ref).abs().max() <= TOL and torch.equal(has_key, ref_has_key)


def test_local_attention_dispatches_to_flex_when_forced():
    q, k, v = _qkv(1, 20, 4, seed=3)
    with flex.use_flex(True):
        forced, _ = local_attention(q, k, v, 6, causal=True, valid=None)
    direct, _ = flex.flex_local_attention(q, k, v, 6, causal=True, valid=None)
    assert torch.equal(forced, direct)


@pytest.mark.parametrize("causal_t", [0, 11])
def test_flex_path_is_causal(causal_t):
    n, window = 27, 5
    q, k, v = _qkv(1, n, 4, seed=7)
    out, _ = flex.flex_local_attention(q, k, v, window, causal=True, valid=None, block_size=8)
    q2, k2, v2 = (t.clone() for t in (q, k, v))
    for t in (q2, k2, v2):
        t[:, :, causal_t + 1 :] = torch.randn_like(t[:, :, causal_t + 1 :]) * 10
    out2, _ = flex.flex_local_attention(q2, k2, v2, window, causal=True, valid=None, block_size=8)
    assert torch.equal(out[:, :, : causal_t + 1], out2[:, :, : causal_t + 1])
    if causal_t + 1 < n:
        assert not torch.equal(out[:, :, causal_t + 1 :], out2[:, :, causal_t + 1 :])


def _layer():
    torch.manual_seed(0)
    return maha.MAHAAttention(16, 2, 3, 2, 4, "nash", True, dtype=torch.float64)


def test_layer_with_flex_forced_equals_default():
    layer = _layer()
    x = torch.randn(2, 29, 16, dtype=torch.float64)  # scales of 29, 15, 8 rows: two windowed
    pad = torch.zeros(2, 29, dtype=torch.bool)
    pad[1, :5] = True  # leading padding on one row
    assert layer.attention.is_local(1, 15)
    with torch.no_grad():
        for mask in (None, pad):
            ref = layer(x, key_padding_mask=mask)
            with flex.use_flex(True):
                out = layer(x, key_padding_mask=mask)
            assert (out - ref).abs().max() <= TOL


def test_layer_gradients_with_flex_equal_default(differentiable_flex):
    layer = _layer()
    x = torch.randn(1, 21, 16, dtype=torch.float64, requires_grad=True)
    grads = []
    for forced in (True, False):
        layer.zero_grad(set_to_none=True)
        with flex.use_flex(forced):
            out = layer(x)
        (gx,) = torch.autograd.grad(out.square().sum(), x)
        grads.append((out, gx))
    for ours, ref in zip(*grads):
        assert (ours - ref).abs().max() <= TOL


def test_dispatch_by_device_and_override():
    assert flex.flex_enabled("cuda") and not flex.flex_enabled("cpu")
    with flex.use_flex(False):
        assert not flex.flex_enabled("cuda")
        with flex.use_flex(True):
            assert flex.flex_enabled("cpu")
        with flex.use_flex(None):
            assert flex.flex_enabled("cuda") and not flex.flex_enabled("cpu")
        assert not flex.flex_enabled("cuda")
    assert flex.flex_enabled("cuda") and not flex.flex_enabled("cpu")
    # what FlexAttention's CUDA kernels do not take stays on the blocked path
    assert flex.flex_enabled("cuda", dtype=torch.bfloat16, head_dim=16)
    assert not flex.flex_enabled("cuda", dtype=torch.float64, head_dim=64)
    assert not flex.flex_enabled("cuda", dtype=torch.float32, head_dim=8)
    with flex.use_flex(True):
        assert flex.flex_enabled("cpu", dtype=torch.float64, head_dim=4)
    with pytest.raises(TypeError, match="enabled must be a bool or None; received str"):
        with flex.use_flex("yes"):
            pass


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"length": 0, "window": 4}, ValueError, ["length", ">= 1", "0"]),
        ({"length": 8, "window": 2.5}, TypeError, ["window", "integer", "2.5"]),
        (
            {"length": 8, "window": 4, "valid": torch.ones(2, 7, dtype=torch.bool)},
            ValueError,
            ["valid", "(B, 8)", "(2, 7)"],
        ),
        ({"length": 8, "window": 4, "valid": torch.ones(2, 8)}, TypeError, ["bool", "float32"]),
    ],
)
def test_block_mask_rejects_bad_arguments(kwargs, error, words):
    with pytest.raises(error) as info:
        flex.window_block_mask(causal=True, **kwargs)
    for word in words:
        assert word in str(info.value)
