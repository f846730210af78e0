"""The compiled one-token step of the language models (:mod:`maha.decoding`).

Pinned three ways in float64 (max abs difference <= 1e-10): compiled decoding ==
eager decoding == the parallel forward, for every strategy the step compiles, ratios
2 and 3, 1 to 4 scales and windows 1, 5 and None. The graphs are captured with
``fullgraph=True`` and run by the ``"eager"`` backend (the captured graph, no code
generation: seconds) or ``"aot_eager"`` (also through AOTAutograd's
functionalisation); ``benchmarks/generation.py --compile`` runs inductor.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

import maha
from maha import decoding
from maha.attention import cached_attention
from maha.decoding import TokenDecoder, attend_kept, phase, token_decoder

TOL = 1e-10


@pytest.fixture(autouse=True)
def _fresh(fresh_dynamo):
    """Each test compiles from scratch (decoders are kept per model, graphs per code object)."""
    yield


@pytest.fixture
def steps(monkeypatch):
    """Counts the compiled steps taken (the decoder must actually be used)."""
    calls = {"n": 0}
    original = TokenDecoder.step

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TokenDecoder, "step", counted)
    return calls


def _model(strategy="nash", num_scales=4, ratio=2, window=5, n_layer=2, seed=0, rotary=False):
    torch.manual_seed(seed)
    config = maha.MAHAConfig(
        vocab_size=32,
        block_size=256,
        n_layer=n_layer,
        n_head=2,
        d_model=16,
        num_scales=num_scales,
        ratio=ratio,
        window=window,
        strategy=strategy,
        rotary=rotary,
    )
    return maha.MAHATransformer(config).double().eval()


def _decode(model, idx, prompt, compile, backend="eager", **first):
    """Logits of a prompt chunk, then of one token at a time: ``(B, T, vocab)``."""
    cache = model.init_cache(idx.shape[0], compile=compile, compile_backend=backend)
    outs = [model(idx[:, :prompt], cache=cache, **first)]
    outs += [model(idx[:, t : t + 1], cache=cache) for t in range(prompt, idx.shape[1])]
    return torch.cat(outs, dim=1)


def _max_diff(a, b):
    assert a.shape == b.shape
    return float((a - b).abs().max())


def _levels_completed(position, ratio, num_scales):
    """Brute force: the scales whose row count grows when token ``position`` arrives."""
    return sum(1 for l in range(num_scales) if (position + 1) // ratio**l > position // ratio**l)


@pytest.mark.parametrize(("ratio", "num_scales"), [(2, 1), (2, 4), (3, 3), (4, 4)])
def test_phase_is_the_block_rule(ratio, num_scales):
    for p in range(200):
        k, m = phase(p, ratio, num_scales)
        assert k == _levels_completed(p, ratio, num_scales)
        if k < num_scales:  # rows level k-1 has in its partial block before the token
            assert m == (p // ratio ** (k - 1)) % ratio
        else:
            assert m == 0
    graphs = {phase(p, ratio, num_scales) for p in range(ratio**num_scales * 2)}
    assert len(graphs) == (ratio - 1) * (num_scales - 1) + 1


def test_attend_kept_is_attention_over_the_concatenated_keys():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 1, 4, dtype=torch.float64) for _ in range(3))
    for n in (0, 1, 7):
        keys, values = (torch.randn(2, 3, n, 4, dtype=torch.float64) for _ in range(2))
        ref, _ = cached_attention(q, torch.cat([keys, k], 2), torch.cat([values, v], 2), None)
        assert _max_diff(attend_kept(q, keys, values, k, v), ref) <= 1e-12


@pytest.mark.parametrize(
    ("strategy", "num_scales", "ratio", "window"),
    [
        ("nash", 4, 2, 5),
        ("convex", 3, 3, 1),  # window 1: no kept key
        ("mean", 1, 2, 4),  # the "local" model
        ("softmax", 2, 2, None),  # every scale global: dynamic lengths
    ],
)
def test_compiled_decoding_equals_eager_and_parallel(strategy, num_scales, ratio, window, steps):
    model = _model(strategy, num_scales, ratio, window, n_layer=2)
    idx = torch.randint(0, 32, (2, 56), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        parallel = model(idx)
        eager = _decode(model, idx, 20, compile=False)
        compiled = _decode(model, idx, 20, compile=True)
    assert steps["n"] >= 18  # every phase took the compiled path
    # one graph of the whole model per phase, one more where a length turns dynamic
    assert counters["stats"]["unique_graphs"] <= 2 * ((ratio - 1) * (num_scales - 1) + 1)
    assert _max_diff(eager, parallel) <= TOL
    assert _max_diff(compiled, parallel) <= TOL


@pytest.mark.parametrize(("strategy", "ratio"), [("nash", 2), ("softmax", 3)])
def test_compiled_decoding_with_rotary_positions(strategy, ratio, steps):
    """The position is a tensor in the graph: every scale's block index p // r^l rotates."""
    model = _model(strategy, 3, ratio, 4, n_layer=1, rotary=True)
    idx = torch.randint(0, 32, (2, 50), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        parallel = model(idx)
        compiled = _decode(model, idx, 19, compile=True)
        plain = _model(strategy, 3, ratio, 4, n_layer=1, rotary=False)(idx)
    assert steps["n"] >= 30
    assert _max_diff(compiled, parallel) <= TOL
    assert _max_diff(plain, parallel) > 1e-6  # the rotation is applied at all


def test_aot_eager_graphs_and_later_caches_reuse_them(steps):
    model = _model("nash", 2, 2, 4, n_layer=1)
    idx = torch.randint(0, 32, (1, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        parallel = model(idx)
        first = _decode(model, idx, 9, compile=True, backend="aot_eager")
        graphs = counters["stats"]["unique_graphs"]
        again = _decode(model, idx, 9, compile=True, backend="aot_eager")
    assert counters["stats"]["unique_graphs"] == graphs  # no new graph for a new cache
    assert steps["n"] >= 40
    for out in (first, again):
        assert _max_diff(out, parallel) <= TOL


def test_greedy_generation_is_the_same_compiled():
    model = _model("convex", 2, 2, 4, n_layer=1)
    prompt = torch.randint(0, 32, (2, 11), generator=torch.Generator().manual_seed(3))
    greedy = model.generate(prompt, 20, top_k=1)
    compiled = model.generate(prompt, 20, top_k=1, compile=True, compile_backend="eager")
    assert torch.equal(compiled, greedy)


def test_steps_outside_the_compiled_path_run_eagerly_and_agree(steps):
    """Chunks of several tokens, autograd, left padding: eager steps, same numbers."""
    model = _model("nash", 3, 2, 4, n_layer=1)
    idx = torch.randint(0, 32, (2, 40), generator=torch.Generator().manual_seed(4))
    parallel = model(idx).detach()
    cache = model.init_cache(2, compile=True, compile_backend="eager")
    outs = [model(idx[:, :16], cache=cache)]  # with grad: eager
    with torch.no_grad():
        outs.append(model(idx[:, 16:17], cache=cache))  # compiled
        outs.append(model(idx[:, 17:23], cache=cache))  # a chunk: eager
        outs += [model(idx[:, t : t + 1], cache=cache) for t in range(23, 40)]
    assert steps["n"] == 18
    assert _max_diff(torch.cat(outs, 1).detach(), parallel) <= TOL
    # left-padded prompts stream eagerly, each row equal to its unpadded sequence
    kpm = torch.zeros(2, 16, dtype=torch.bool)
    kpm[1, :5] = True
    with torch.no_grad():
        out = _decode(model, idx, 16, compile=True, key_padding_mask=kpm)
        ref = model(idx[1:, 5:])
    assert steps["n"] == 18  # no compiled step with padding
    assert _max_diff(out[1:, 5:], ref) <= TOL


def test_which_models_get_a_decoder():
    assert token_decoder(_model("nash"), False) is None
    assert token_decoder(_model("logit"), True) is None  # its solver reads the host
    full = maha.build_model("full", maha.MAHAConfig(vocab_size=32, block_size=64, d_model=16))
    assert token_decoder(full, True) is None
    assert full.init_cache(1, compile=True).decoder is None
    model = _model("softmax")
    decoder = token_decoder(model, True, "eager")
    assert isinstance(decoder, TokenDecoder)
    assert token_decoder(model, True, "eager") is decoder  # one per model and backend
    assert model.init_cache(2, compile=True, compile_backend="eager").decoder is decoder
    assert decoding.RECOMPILE_LIMIT >= (4 - 1) * (4 - 1) + 2  # r = 4, L = 4 stays compiled
    with pytest.raises(ValueError, match="compile_backend"):
        model.init_cache(1, compile=True, compile_backend="no-such-backend")


def test_two_models_of_one_shape_keep_their_own_graphs(steps):
    """The graphs skip module guards; each model's own code object keeps its graphs apart."""
    idx = torch.randint(0, 32, (1, 30), generator=torch.Generator().manual_seed(5))
    models = [_model(strategy, 2, 2, 4, n_layer=1) for strategy in ("nash", "softmax")]
    with torch.no_grad():
        outs = [_decode(model, idx, 9, compile=True) for model in models]
        for model, out in zip(models, outs):
            assert _max_diff(out, model(idx)) <= TOL
    assert _max_diff(outs[0], outs[1]) > 1e-6  # the two fusions differ
    assert steps["n"] >= 40
