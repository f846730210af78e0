"""Streaming (cached) inference equals the parallel forward, and left padding is exact.

Every check pins two paths to each other in float64 (max abs difference
<= 1e-10): a sequence fed in random chunks through ``layer(x, cache=cache)``
against ``layer(x)`` on the whole sequence, for every strategy, ratio, number
of scales, window and decomposition; the same for the blocks and the language
models (logits); a left-padded batch against each unpadded row; greedy
generation with and without the cache.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import maha

TOL = 1e-10
D, HEADS = 8, 2
SETTINGS = settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@pytest.fixture(autouse=True)
def _quiet_small_budgets():
    """Iterative solvers at a small budget warn; not the point of these tests."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _layer(strategy="nash", num_scales=3, ratio=2, window=5, seed=0, **kwargs):
    torch.manual_seed(seed)
    if strategy in ("fictitious_play", "best_response"):
        kwargs.setdefault("solver_max_iter", 40)
    layer = maha.MAHAAttention(D, HEADS, num_scales, ratio, window, strategy, causal=True, **kwargs)
    return layer.double().eval()


def _cut(n: int, sizes: list[int]) -> list[int]:
    """Chunk lengths summing to ``n``: ``sizes`` in turn (cycled), the last one cropped."""
    chunks, i = [], 0
    while sum(chunks) < n:
        chunks.append(min(sizes[i % len(sizes)], n - sum(chunks)))
        i += 1
    return chunks


def _stream(module, x: torch.Tensor, chunks: list[int], **first) -> torch.Tensor:
    """Feed ``x`` to ``module`` in ``chunks``; ``first`` goes with the first chunk only."""
    cache = module.init_cache(x.shape[0])
    outs, p = [], 0
    for i, c in enumerate(chunks):
        outs.append(module(x[:, p : p + c], cache=cache, **(first if i == 0 else {})))
        p += c
    assert cache.position == x.shape[1]
    return torch.cat(outs, dim=1)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).detach().abs().max())


chunk_sizes = st.lists(st.integers(1, 24), min_size=1, max_size=8)


# ------------------------------------------------------------ the layer
@pytest.mark.parametrize("num_scales", [1, 3, 4])
@pytest.mark.parametrize("ratio", [2, 3])
@pytest.mark.parametrize("window", [1, 5, None])
@SETTINGS
@given(n=st.integers(1, 200), sizes=chunk_sizes, seed=st.integers(0, 3))
@example(n=200, sizes=[1, 2, 3, 26, 1, 1, 9, 24], seed=1)
def test_layer_streaming_equals_parallel_on_the_grid(num_scales, ratio, window, n, sizes, seed):
    """Under no_grad (inference: global keys in a growing buffer)."""
    layer = _layer("nash", num_scales, ratio, window, seed=seed)
    x = torch.randn(2, n, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        assert _max_diff(_stream(layer, x, _cut(n, sizes)), layer(x)) <= TOL


@pytest.mark.parametrize("strategy", maha.STRATEGIES)
@settings(max_examples=4, deadline=None, derandomize=True)
@given(
    num_scales=st.sampled_from([1, 3, 4]),
    ratio=st.sampled_from([2, 3]),
    window=st.sampled_from([1, 5, None]),
    decomposition=st.sampled_from(maha.DECOMPOSITIONS),
    gating=st.booleans(),
    n=st.integers(1, 200),
    sizes=chunk_sizes,
)
@example(
    num_scales=4, ratio=3, window=5, decomposition="conv", gating=True, n=200, sizes=[5, 1, 21]
)
def test_layer_streaming_equals_parallel_for_every_strategy(
    strategy, num_scales, ratio, window, decomposition, gating, n, sizes
):
    """With autograd on (the cache concatenates instead of writing into a buffer)."""
    layer = _layer(strategy, num_scales, ratio, window, decomposition=decomposition, gating=gating)
    x = torch.randn(2, n, D, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    assert _max_diff(_stream(layer, x, _cut(n, sizes)), layer(x)) <= TOL


@pytest.mark.parametrize("decomposition", maha.DECOMPOSITIONS)
@pytest.mark.parametrize("strategy", ["nash", "softmax"])
def test_token_by_token_crosses_every_block_boundary(decomposition, strategy):
    """One token per step through two coarsest blocks of r = 3, L = 4 (27 tokens each)."""
    layer = _layer(strategy, 4, 3, 2, decomposition=decomposition, global_coarsest=False)
    n = 2 * 27 + 4
    x = torch.randn(1, n, D, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert _max_diff(_stream(layer, x, [1] * n), layer(x)) <= TOL
    assert _max_diff(_stream(layer, x, [n]), layer(x)) <= TOL


def test_a_cache_fed_with_and_without_autograd_in_turn_equals_parallel():
    """Key buffers written in place (no_grad) and concatenated (autograd) share one cache.

    Long windowed runs of single tokens compact the window's buffer many times; a
    large chunk in between makes it transiently large; a chunk under autograd hands
    the buffer to autograd, after which the next in-place write must use a new one.
    """
    layer = _layer("nash", 3, 2, 3)
    n = 120
    x = torch.randn(2, n, D, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    expected = layer(x).detach()
    cache, outs, p = layer.init_cache(2), [], 0
    for i, c in enumerate([1] * 20 + [30] + [1] * 20 + [7, 1, 1] + [1] * 41):
        with torch.set_grad_enabled(i % 5 == 4):
            y = layer(x[:, p : p + c], cache=cache)
        assert y.requires_grad == (i % 5 == 4)
        outs.append(y.detach())
        p += c
    assert p == n
    assert _max_diff(torch.cat(outs, dim=1), expected) <= TOL


@pytest.mark.parametrize("variant", ["maha-mean", "full"])
def test_a_non_finite_chunk_is_refused_by_a_block_before_its_cache_changes(variant):
    """NaN or inf anywhere in a chunk, padding included: a ValueError, the cache untouched."""
    config = maha.MAHAConfig(n_layer=1, d_model=D, n_head=HEADS, block_size=32, window=4)
    block = maha.build_model(variant, config).blocks[0]
    x = torch.randn(1, 3, D)
    cache = block.init_cache(1)
    for bad, mask in [(float("nan"), None), (float("inf"), torch.tensor([[True, True, False]]))]:
        x_bad = x.clone()
        x_bad[0, 1, 2] = bad
        with pytest.raises(ValueError, match="x must be finite"):
            block(x_bad, mask, cache=cache)
        assert cache.position == 0
    torch.testing.assert_close(block(x, cache=cache), block(x), rtol=1e-6, atol=1e-6)


def test_cache_size_is_the_formula():
    """Windowed scales keep w - 1 keys/values, the coarsest all, plus partial blocks and outputs."""
    L, r, w, n = 4, 2, 5, 123
    layer = _layer("mean", L, r, w)
    cache = layer.init_cache(1)
    layer(torch.randn(1, n, D, dtype=torch.float64), cache=cache)
    rows = [n // r**l for l in range(L)]  # complete blocks per scale
    numbers = 2 * D * sum(min(w - 1, m) for m in rows[:-1])  # windowed keys and values
    numbers += 2 * D * rows[-1]  # the global coarsest scale
    numbers += 2 * D * sum(m % r for m in rows[:-1])  # inputs and values of partial blocks
    numbers += D * sum(1 for m in rows if m)  # each scale's latest block output
    assert cache.nbytes == 8 * numbers
    kv = maha.StandardAttention(D, HEADS, causal=True).double()
    kv_cache = kv.init_cache(1)
    kv(torch.randn(1, n, D, dtype=torch.float64), cache=kv_cache)
    assert kv_cache.nbytes == 8 * 2 * D * n
    assert cache.nbytes < kv_cache.nbytes / 3


def _storage_bytes(obj, seen: dict[int, int], visited: set[int]) -> dict[int, int]:
    """Bytes of the distinct storages behind every tensor reachable from ``obj``."""
    if id(obj) in visited:
        return seen
    visited.add(id(obj))
    if isinstance(obj, torch.Tensor):
        seen[obj.untyped_storage().data_ptr()] = obj.untyped_storage().nbytes()
    elif isinstance(obj, (list, tuple, dict)):
        for item in obj.values() if isinstance(obj, dict) else obj:
            _storage_bytes(item, seen, visited)
    elif hasattr(obj, "__dict__") and not isinstance(obj, (torch.nn.Module, type)):
        for item in vars(obj).values():
            _storage_bytes(item, seen, visited)
    return seen


@pytest.mark.parametrize("variant", ["maha-nash", "local"])
def test_a_long_chunk_leaves_no_chunk_sized_storage_in_the_cache(variant):
    """What a cache holds after a prompt is its own size, not views into the prompt's tensors.

    Windows keep ``w - 1`` rows in buffers of ``2 (w - 1)``, global scales a buffer
    that at most doubles; the latest block outputs, partial blocks and the
    convolution's history are copies, not slices of the chunk's activations.
    """
    config = maha.MAHAConfig(
        n_layer=2, d_model=16, n_head=2, block_size=512, window=16, num_scales=3
    )
    model = maha.build_model(variant, config).eval()
    cache = model.init_cache(1)
    with torch.no_grad():
        model(torch.randint(0, 256, (1, 300)), cache=cache)
        assert sum(_storage_bytes(cache, {}, set()).values()) <= 2 * cache.nbytes
        for _ in range(20):
            model(torch.randint(0, 256, (1, 1)), cache=cache)
        assert sum(_storage_bytes(cache, {}, set()).values()) <= 2.5 * cache.nbytes


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("factor", [1, 2, 3, 4, 9])
def test_upsample_from_a_start_is_a_slice_of_the_whole(causal, factor):
    """A chunk's rows read from ``first_block(start)`` on equal the whole sequence's rows."""
    from maha.scales import first_block, upsample

    n = 40
    blocks = torch.randn(1, n, 3)  # one row per block, more than enough
    whole, present = upsample(blocks, None, n, factor, causal=causal)
    for start in range(n):
        for length in (1, 2, 7):
            length = min(length, n - start)
            first = first_block(start, factor, causal=causal)
            part, part_present = upsample(
                blocks[:, first : first + length], None, length, factor, causal=causal, start=start
            )
            assert torch.equal(part, whole[:, start : start + length])
            assert torch.equal(part_present, present[:, start : start + length])


# ------------------------------------------------------------ left padding
def _left_padded(pads: list[int], n: int, make, fill):
    """A batch of rows ``make(n - pad)`` left-padded to ``n`` with ``fill(pad)``; and the mask."""
    rows, masks, seqs = [], [], []
    for pad in pads:
        seq = make(n - pad)
        seqs.append(seq)
        rows.append(torch.cat([fill(pad), seq]))
        masks.append(torch.arange(n) < pad)
    return torch.stack(rows), torch.stack(masks), seqs


@pytest.mark.parametrize("strategy", ["nash", "mean", "convex"])
@pytest.mark.parametrize(("num_scales", "ratio", "window"), [(3, 2, 3), (4, 3, None), (1, 2, 2)])
def test_left_padded_layer_equals_each_unpadded_row(strategy, num_scales, ratio, window):
    gen = torch.Generator().manual_seed(5)
    pads, n = [0, 3, 5, 1, 12], 30  # the last row is all padding in the first chunk
    x, kpm, seqs = _left_padded(
        pads,
        n,
        lambda m: torch.randn(m, D, dtype=torch.float64, generator=gen),
        lambda p: torch.randn(p, D, dtype=torch.float64, generator=gen),  # garbage padding
    )
    layer = _layer(strategy, num_scales, ratio, window)
    parallel = layer(x, key_padding_mask=kpm)
    streamed = _stream(layer, x, [12, 1, 1, 9, 7], key_padding_mask=kpm[:, :12])
    for b, (pad, seq) in enumerate(zip(pads, seqs)):
        ref = layer(seq.unsqueeze(0))[0]
        assert _max_diff(parallel[b, pad:], ref) <= TOL
        assert _max_diff(streamed[b, pad:], ref) <= TOL
        assert torch.count_nonzero(parallel[b, :pad]) == 0
        assert torch.count_nonzero(streamed[b, :pad]) == 0
    # right padding: today's guarantee, the rows are not moved
    right = torch.stack(
        [torch.cat([s, torch.zeros(p, D, dtype=s.dtype)]) for p, s in zip(pads, seqs)]
    )
    rkpm = torch.stack([torch.arange(n) >= n - p for p in pads])
    out = layer(right, key_padding_mask=rkpm)
    for b, (pad, seq) in enumerate(zip(pads, seqs)):
        assert _max_diff(out[b, : n - pad], layer(seq.unsqueeze(0))[0]) <= TOL


def test_left_padded_non_causal_layer_equals_each_unpadded_row():
    gen = torch.Generator().manual_seed(6)
    x, kpm, seqs = _left_padded(
        [0, 3, 6],
        20,
        lambda m: torch.randn(m, D, dtype=torch.float64, generator=gen),
        lambda p: torch.zeros(p, D, dtype=torch.float64),
    )
    torch.manual_seed(0)
    layer = maha.MAHAAttention(D, HEADS, 3, 2, 3, "nash").double()
    out, diagnostics = layer.forward_with_diagnostics(x, key_padding_mask=kpm)
    for b, (pad, seq) in enumerate(zip([0, 3, 6], seqs)):
        ref, ref_diag = layer.forward_with_diagnostics(seq.unsqueeze(0))
        assert _max_diff(out[b, pad:], ref[0]) <= TOL
        assert _max_diff(diagnostics.weights[b, pad:], ref_diag.weights[0]) <= TOL


# ------------------------------------------------------------ blocks and models
def _config(**changes) -> maha.MAHAConfig:
    base = dict(
        vocab_size=32,
        block_size=64,
        n_layer=2,
        n_head=2,
        d_model=16,
        num_scales=3,
        ratio=2,
        window=4,
        conv_kernel=3,
        conv_dilation=2,
    )
    base.update(changes)
    return maha.MAHAConfig(**base)


@pytest.mark.parametrize("variant", ["maha-nash", "maha-softmax", "full", "local"])
def test_block_streaming_equals_parallel(variant):
    torch.manual_seed(0)
    block = maha.build_model(variant, _config(ratio=3)).blocks[0].double().eval()
    x = torch.randn(2, 40, 16, dtype=torch.float64)
    assert _max_diff(_stream(block, x, [1, 2, 5, 1, 13, 18]), block(x)) <= TOL


@pytest.mark.parametrize("variant", ["maha-nash", "full"])
@settings(max_examples=3, deadline=None, derandomize=True)
@given(n=st.integers(1, 64), sizes=chunk_sizes)
def test_model_streaming_logits_equal_parallel(variant, n, sizes):
    torch.manual_seed(1)
    model = maha.build_model(variant, _config()).double().eval()
    idx = torch.randint(0, 32, (2, n), generator=torch.Generator().manual_seed(n))
    assert _max_diff(_stream(model, idx, _cut(n, sizes)), model(idx)) <= TOL


@pytest.mark.parametrize("variant", ["maha-nash", "full"])
def test_left_padded_model_logits_equal_each_unpadded_prompt(variant):
    torch.manual_seed(2)
    model = maha.build_model(variant, _config(ratio=3)).double().eval()
    gen = torch.Generator().manual_seed(7)
    pads, n = [0, 4, 7, 2], 24
    idx, kpm, seqs = _left_padded(
        pads,
        n,
        lambda m: torch.randint(0, 32, (m,), generator=gen),
        lambda p: torch.randint(0, 32, (p,), generator=gen),
    )
    parallel = model(idx, key_padding_mask=kpm)
    streamed = _stream(model, idx, [9] + [1] * (n - 9), key_padding_mask=kpm[:, :9])
    for b, (pad, seq) in enumerate(zip(pads, seqs)):
        ref = model(seq.unsqueeze(0))[0]
        assert _max_diff(parallel[b, pad:], ref) <= TOL
        assert _max_diff(streamed[b, pad:], ref) <= TOL


@pytest.mark.parametrize("variant", ["maha-nash", "full"])
def test_greedy_generation_is_the_same_with_and_without_the_cache(variant):
    """Greedy (top_k=1) tokens agree, also past block_size (the sliding context)."""
    torch.manual_seed(3)
    model = maha.build_model(variant, _config(block_size=24)).double().eval()
    prompt = torch.randint(0, 32, (2, 9), generator=torch.Generator().manual_seed(8))
    cached = model.generate(prompt, 30, top_k=1)
    uncached = model.generate(prompt, 30, top_k=1, use_cache=False)
    assert cached.shape == (2, 39)
    assert torch.equal(cached, uncached)
    # a left-padded batch generates what each prompt generates alone
    kpm = torch.tensor([[False] * 9, [True] * 4 + [False] * 5])
    batch = model.generate(prompt, 10, top_k=1, key_padding_mask=kpm)
    alone = model.generate(prompt[1:, 4:], 10, top_k=1)
    assert torch.equal(batch[1, 9:], alone[0, 5:])
    assert torch.equal(batch[0], model.generate(prompt[:1], 10, top_k=1)[0])


def test_iter_generate_yields_the_tokens_of_generate():
    torch.manual_seed(4)
    model = maha.build_model("maha-mean", _config()).double().eval()
    prompt = torch.randint(0, 32, (3, 5))
    tokens = list(model.iter_generate(prompt, 6, generator=torch.Generator().manual_seed(0)))
    assert len(tokens) == 6 and all(t.shape == (3, 1) for t in tokens)
    full = model.generate(prompt, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat([prompt, *tokens], dim=1), full)


# ------------------------------------------------------------ bad input
def test_bad_cache_use_is_refused_naming_the_argument():
    layer = _layer()
    cache = layer.init_cache(2)
    x = torch.randn(2, 3, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="batch size 3 .*batch_size=2"):
        layer(torch.randn(3, 3, D, dtype=torch.float64), cache=cache)
    with pytest.raises(TypeError, match="dtype torch.float32 .*torch.float64"):
        layer(x.float(), cache=cache)
    with pytest.raises(ValueError, match="device meta"):
        layer(x, cache=layer.init_cache(2, device="meta"))
    with pytest.raises(ValueError, match="another MAHAAttention"):
        _layer(seed=1)(x, cache=cache)
    with pytest.raises(TypeError, match="cache must be a maha.MAHACache"):
        layer(x, cache=object())
    with pytest.raises(ValueError, match="attn_mask must be None"):
        layer(x, torch.ones(3, 3, dtype=torch.bool).triu(1), cache=cache)
    with pytest.raises(ValueError, match="left padding"):  # right padding in a stream
        layer(x, key_padding_mask=torch.tensor([[False, False, True]] * 2), cache=cache)
    assert cache.position == 0  # refused chunks leave the cache untouched
    layer(x, cache=cache)
    with pytest.raises(ValueError, match="only with the first chunk"):
        layer(x, key_padding_mask=torch.zeros(2, 3, dtype=torch.bool), cache=cache)
    bounded = _layer(max_length=4)
    small = bounded.init_cache(2)
    bounded(x, cache=small)
    with pytest.raises(ValueError, match="exceed max_length=4"):
        bounded(x, cache=small)
    non_causal = maha.MAHAAttention(D, HEADS, 3, 2, 5, "mean").double()
    with pytest.raises(ValueError, match="non-causal"):
        non_causal.init_cache(2)
    with pytest.raises(ValueError, match="non-causal"):
        non_causal(x, cache=cache)


def test_a_cache_that_failed_part_way_is_refused():
    model = maha.build_model("maha-mean", _config()).double().eval()
    cache = model.init_cache(1)
    model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    del model.blocks[1].ffn  # the next call fails after block 0 has advanced its cache
    with pytest.raises(AttributeError):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="unusable"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)


def test_a_cache_belongs_to_one_model_and_one_stream():
    """The cache records its owner and its position: another model is refused, and a
    second sequence fed to the same cache is a continuation (documented as undefined)."""
    first = maha.build_model("maha-mean", _config()).double().eval()
    second = maha.build_model("maha-mean", _config()).double().eval()
    cache = first.init_cache(1)
    idx = torch.randint(0, 32, (1, 5))
    first(idx, cache=cache)
    assert cache.position == 5
    with pytest.raises(ValueError, match="another MAHATransformer"):
        second(idx, cache=cache)
    with pytest.raises(ValueError, match="another MAHABlock"):
        second.blocks[0](torch.randn(1, 1, 16, dtype=torch.float64), cache=cache.blocks[0])
    first(idx, cache=cache)  # continues the stream: positions 5..9
    assert cache.position == 10


def test_bad_generation_arguments():
    model = maha.build_model("full", _config(block_size=8)).double()
    prompt = torch.randint(0, 32, (1, 4))
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(prompt, -1)
    with pytest.raises(ValueError, match="idx must hold at least one token"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="idx length .*block_size=8"):
        model.generate(torch.zeros(1, 9, dtype=torch.long), 3)
    assert model.generate(torch.zeros(1, 9, dtype=torch.long), 2, use_cache=False).shape == (1, 11)
    with pytest.raises(TypeError, match="use_cache"):
        model.generate(prompt, 2, use_cache="yes")
    with pytest.raises(ValueError, match="key_padding_mask must have shape"):
        model.generate(prompt, 2, key_padding_mask=torch.zeros(1, 3, dtype=torch.bool))
    cache = model.init_cache(1)
    model(prompt, cache=cache)
    with pytest.raises(ValueError, match="idx of length 5 .*exceed max_length=8"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="batch size 2"):
        model(torch.zeros(2, 1, dtype=torch.long), cache=cache)
