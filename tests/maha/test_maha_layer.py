"""The MAHA layer against direct references, padding, the game inside, gradients, dtypes."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import maha
from maha.attention import local_attention

D, HEADS = 8, 2


def _layer(strategy="mean", num_scales=3, ratio=2, window=4, causal=False, seed=0, **kw):
    torch.manual_seed(seed)
    return maha.MAHAAttention(D, HEADS, num_scales, ratio, window, strategy, causal, **kw).double()


# ---------------------------------------------------------------- references
def reference_layer(layer: maha.MAHAAttention, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """The layer with "mean" fusion, written directly with explicit loops.

    Depthwise strided conv over zero-padded blocks; per-scale Q_l, K_l; one
    shared V downsampled by the same conv; dense masked softmax (window on
    the fine scales, global on the coarsest); causal block selection by block
    end; the mean of the present scales; output projection. With ``shared_qk`` every
    scale is projected by the first (and only) ``W_Q, W_K``.
    """
    B, n, d = x.shape
    L, r, H, w = layer.num_scales, layer.ratio, layer.num_heads, layer.window
    dh = d // H
    dec = layer.decomposition

    def down(seq, level):
        blocks = []
        for j in range(math.ceil(seq.shape[1] / r)):
            acc = dec.bias[level].expand(B, d).clone()
            for k in range(r):
                if j * r + k < seq.shape[1]:
                    acc = acc + dec.weight[level, k] * seq[:, j * r + k]
            blocks.append(acc)
        return torch.stack(blocks, 1)

    xs = [x]
    vs = [F.linear(x, layer.attention.value.weight, layer.attention.value.bias)]
    for level in range(L - 1):
        xs.append(down(xs[-1], level))
        vs.append(down(vs[-1], level))
    outs = []
    for l in range(L):
        n_l = xs[l].shape[1]
        proj = layer.attention.qk[0 if layer.attention.shared_qk else l]
        q, k = F.linear(xs[l], proj.weight, proj.bias).chunk(2, -1)
        q, k, v = (t.reshape(B, n_l, H, dh) for t in (q, k, vs[l]))
        scores = torch.einsum("bjhe,bkhe->bhjk", q, k) / math.sqrt(dh)
        j = torch.arange(n_l).view(-1, 1)
        kk = torch.arange(n_l).view(1, -1)
        allowed = torch.ones(n_l, n_l, dtype=torch.bool)
        if causal:
            allowed &= kk <= j
        if w is not None and l < L - 1:
            allowed &= (j - kk < w) if causal else ((j - kk).abs() < w)
        probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1)
        outs.append(torch.einsum("bhjk,bkhe->bjhe", probs, v))
    fused = torch.zeros(B, n, H, dh, dtype=x.dtype)
    for t in range(n):
        chosen = []
        for l in range(L):
            f = r**l
            j = (t + 1) // f - 1 if causal else t // f
            if j >= 0:
                chosen.append(outs[l][:, j])
        fused[:, t] = torch.stack(chosen).mean(0)
    return F.linear(fused.reshape(B, n, d), layer.out_proj.weight, layer.out_proj.bias)


def paper_layer(layer: maha.MAHAAttention, x: torch.Tensor) -> torch.Tensor:
    """The paper code's formulation: adaptive max pooling, full attention per scale,
    ``F.interpolate`` nearest upsampling, softmax of one weight vector."""
    B, n, d = x.shape
    L, r, H = layer.num_scales, layer.ratio, layer.num_heads
    dh = d // H

    def pyramid(seq):
        out, cur = [seq], seq.transpose(1, 2)
        for _ in range(L - 1):
            cur = F.adaptive_max_pool1d(cur, output_size=max(1, cur.shape[2] // r))
            out.append(cur.transpose(1, 2))
        return out

    xs = pyramid(x)
    vs = pyramid(F.linear(x, layer.attention.value.weight, layer.attention.value.bias))
    ups = []
    for l in range(L):
        n_l = xs[l].shape[1]
        q, k = layer.attention.qk[l](xs[l]).chunk(2, -1)
        q, k, v = (t.reshape(B, n_l, H, dh).transpose(1, 2) for t in (q, k, vs[l]))
        o = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), -1) @ v  # (B, H, n_l, dh)
        o = o.transpose(1, 2).reshape(B, n_l, d)
        ups.append(F.interpolate(o.transpose(1, 2), size=n, mode="nearest").transpose(1, 2))
    weights = torch.softmax(layer.fusion.logits, 0)
    fused = sum(wt * u for wt, u in zip(weights, ups))
    return layer.out_proj(fused)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    ("num_scales", "ratio", "n"), [(3, 2, 13), (2, 3, 10), (4, 2, 16), (1, 2, 5)]
)
def test_window_covering_the_sequence_equals_direct_reference(causal, num_scales, ratio, n):
    layer = _layer("mean", num_scales, ratio, window=n, causal=causal, seed=n)
    with torch.no_grad():  # non-trivial decomposition weights
        layer.decomposition.weight.normal_() if layer.decomposition.weight is not None else None
        layer.decomposition.bias.normal_() if layer.decomposition.bias is not None else None
    x = torch.randn(2, n, D, dtype=torch.float64)
    torch.testing.assert_close(layer(x), reference_layer(layer, x, causal), rtol=1e-12, atol=1e-12)
    layer.window = None  # same result with full attention everywhere
    layer.attention.window = None
    torch.testing.assert_close(layer(x), reference_layer(layer, x, causal), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shared_qk", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("window", "n"), [(1, 9), (2, 11), (3, 20), (5, 33)])
def test_small_window_equals_direct_reference(causal, window, n, shared_qk):
    layer = _layer("mean", 3, 2, window=window, causal=causal, seed=window, shared_qk=shared_qk)
    x = torch.randn(2, n, D, dtype=torch.float64)
    torch.testing.assert_close(layer(x), reference_layer(layer, x, causal), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("num_scales", "ratio", "n"), [(3, 2, 16), (4, 2, 24), (2, 3, 18)])
def test_window_none_matches_paper_formulation(num_scales, ratio, n):
    layer = _layer("softmax", num_scales, ratio, window=None, decomposition="max", seed=1)
    with torch.no_grad():
        layer.fusion.logits.normal_()
    x = torch.randn(2, n, D, dtype=torch.float64)
    torch.testing.assert_close(layer(x), paper_layer(layer, x), rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    window=st.integers(1, 12),
    causal=st.booleans(),
    padded=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_local_attention_equals_dense_masked_attention(n, window, causal, padded, seed):
    """Values and gradients (the fused backward) equal dense masked attention."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn(2, 3, n, 4, dtype=torch.float64, generator=gen, requires_grad=True)
        for _ in range(3)
    )
    valid = torch.rand(2, n, generator=gen) > 0.3 if padded else None
    out, has_key = local_attention(q, k, v, window, causal=causal, valid=valid)
    j = torch.arange(n).view(-1, 1)
    kk = torch.arange(n).view(1, -1)
    allowed = ((j - kk >= 0) & (j - kk < window)) if causal else ((j - kk).abs() < window)
    allowed = allowed.expand(2, n, n)
    if valid is not None:
        allowed = allowed & valid[:, None, :]
    any_key = allowed.any(-1)  # (2, n); rows without keys: zero output and gradient
    safe = allowed | ~any_key.unsqueeze(-1)
    scores = (q @ k.transpose(-1, -2)) / 2.0 + torch.where(safe, 0.0, float("-inf"))[:, None]
    expected = (torch.softmax(scores, -1) @ v) * any_key[:, None, :, None].to(v.dtype)
    if valid is None:
        assert has_key is None  # every query has a key: itself
        has_key = any_key
    assert torch.equal(has_key, any_key)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    cot = torch.randn(out.shape, dtype=torch.float64, generator=gen)
    ours = torch.autograd.grad(out, (q, k, v), cot)
    theirs = torch.autograd.grad(expected, (q, k, v), cot)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


# ------------------------------------------------------------------- padding
@pytest.mark.parametrize("strategy", ["nash", "convex", "mean"])
@pytest.mark.parametrize("causal", [False, True])
def test_right_padding_equals_unpadded_sequence(strategy, causal):
    layer = _layer(strategy, 4, 2, window=3, causal=causal)
    gen = torch.Generator().manual_seed(0)
    lengths = [5, 13, 1, 16]
    N = 16
    x = torch.randn(len(lengths), N, D, dtype=torch.float64, generator=gen)
    pad = torch.arange(N).view(1, -1) >= torch.tensor(lengths).view(-1, 1)  # True = padding
    y = layer(x, key_padding_mask=pad)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(y[b, :n], layer(x[b : b + 1, :n])[0], rtol=1e-10, atol=1e-10)
        assert (y[b, n:] == 0).all()


@pytest.mark.parametrize("strategy", maha.STRATEGIES)
def test_fully_padded_rows_are_zero_not_nan(strategy):
    layer = _layer(strategy, 3, 2, window=2, causal=True)
    x = torch.randn(3, 9, D, dtype=torch.float64, requires_grad=True)
    pad = torch.zeros(3, 9, dtype=torch.bool)
    pad[1] = True  # one row entirely padding
    pad[2, ::2] = True  # holes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = layer(x, key_padding_mask=pad)
        y.sum().backward()
    assert torch.isfinite(y).all() and (y[1] == 0).all() and (y[pad] == 0).all()
    assert torch.isfinite(x.grad).all() and (x.grad[1] == 0).all()


# ------------------------------------------------------------- the game inside
def _independent_regret(a, C, x):
    """Regret of each player of the scale game, from its definition."""
    others = (C * x.unsqueeze(-2)).sum(-1) - C.diagonal(dim1=-2, dim2=-1) * x
    cll = C.diagonal(dim1=-2, dim2=-1)

    def utility(z):
        return a * z - 0.5 * cll * z * z - z * others

    best = ((a - others) / cll).clamp(min=0)
    return utility(best) - utility(x)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("asymmetric", [False, True])
def test_nash_weights_are_equilibria(causal, asymmetric):
    layer = _layer("nash", 4, 2, window=3, causal=causal, asymmetric=asymmetric, gating=True)
    with torch.no_grad():
        layer.fusion.utility_weight.normal_(std=2.0)
        if asymmetric:
            layer.fusion.skew.normal_()
    x = 3 * torch.randn(2, 37, D, dtype=torch.float64)
    _, diag = layer.forward_with_diagnostics(x)
    present = diag.present.unsqueeze(2).expand_as(diag.weights)  # (B, n, H, L)
    a, C, xs = diag.utilities, diag.interaction, diag.strategies
    mask2 = present.unsqueeze(-1) & present.unsqueeze(-2)
    C = torch.where(mask2, C, torch.diag_embed(torch.ones_like(a)))  # absent players: decoupled
    xs_present = torch.where(present, xs, torch.zeros_like(xs))
    regret = _independent_regret(a, C, xs_present)[present]
    assert regret.max().item() <= 1e-6
    assert diag.regret.max().item() <= 1e-6 and bool(diag.converged.all())
    # the LCP conditions on the present players
    w = (C @ xs_present.unsqueeze(-1)).squeeze(-1) - a
    assert (xs_present[present] >= 0).all() and (w[present] >= -1e-9).all()
    assert (xs_present * w)[present].abs().max().item() <= 1e-9
    # the weights are x / sum(x) over the present scales, zero elsewhere
    torch.testing.assert_close(diag.weights, xs_present / xs_present.sum(-1, keepdim=True))
    assert (diag.weights[~present] == 0).all()
    # not collapsed onto one scale: several scales share the weight somewhere
    assert ((diag.weights > 0.05).sum(-1) >= 2).any()


def test_convex_weights_satisfy_kkt():
    layer = _layer("convex", 3, 2, window=3, causal=True)
    with torch.no_grad():
        layer.fusion.utility_weight.normal_(std=2.0)
    _, diag = layer.forward_with_diagnostics(torch.randn(2, 21, D, dtype=torch.float64))
    present = diag.present.unsqueeze(2).expand_as(diag.weights)
    a, C, w = diag.utilities, diag.interaction, diag.weights
    Q = 0.5 * (C + C.transpose(-1, -2))
    grad = (Q @ w.unsqueeze(-1)).squeeze(-1) - a  # Q w - a; on the support it equals -nu
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
    support = (w > 1e-12) & present
    nu = -(torch.where(support, grad, 0.0).sum(-1) / support.sum(-1))
    mu = grad + nu.unsqueeze(-1)  # multiplier of w >= 0: >= 0, zero on the support
    assert mu[present].min().item() >= -1e-8
    assert mu[support].abs().max().item() <= 1e-8


@pytest.mark.parametrize("strategy", ["mean", "softmax", "best_response"])
def test_weights_are_a_distribution_over_present_scales(strategy):
    layer = _layer(strategy, 3, 3, window=2, causal=True)
    _, diag = layer.forward_with_diagnostics(torch.randn(1, 20, D, dtype=torch.float64))
    present = diag.present.unsqueeze(2).expand_as(diag.weights)
    torch.testing.assert_close(diag.weights.sum(-1), torch.ones(1, 20, HEADS, dtype=torch.float64))
    assert (diag.weights[~present] == 0).all() and (diag.weights >= 0).all()


# ------------------------------------------------------- gradients and dtypes
@pytest.mark.parametrize(
    ("strategy", "options"),
    [
        ("nash", {"gating": True, "asymmetric": True}),
        ("convex", {}),
        ("mean", {"decomposition": "dense_conv"}),
    ],
)
def test_gradcheck_whole_layer(strategy, options):
    layer = _layer(strategy, 3, 2, window=2, causal=True, **options)
    x = torch.randn(2, 7, D, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)
    if strategy == "nash":  # also with respect to the fusion's own parameters
        names = ("fusion.utility_weight", "fusion.beta_raw", "fusion.skew")
        params = {k: v.detach().clone().requires_grad_() for k, v in layer.named_parameters()}

        def fn(*tensors):
            state = {**params, **dict(zip(names, tensors))}
            return torch.func.functional_call(layer, state, (x.detach(),))

        inputs = tuple(params[k] for k in names)
        assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("strategy", ["nash", "mean"])
def test_autocast_bfloat16_on_cpu(strategy):
    torch.manual_seed(0)
    layer = maha.MAHAAttention(16, 2, 3, 2, 4, strategy, causal=True)
    x = torch.randn(2, 30, 16)
    reference = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
    torch.testing.assert_close(y.float(), reference, rtol=0.1, atol=0.05)
    y.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_captures_the_layer_in_one_graph(dynamic):
    """torch.compile traces the "mean" layer without graph breaks (dynamo only), with
    static lengths and with symbolic ones (what a recompile for a new length gives)."""
    torch.manual_seed(0)
    layer = maha.MAHAAttention(16, 2, 3, 2, 4, "mean", causal=True)
    compiled = torch.compile(layer, backend="eager", fullgraph=True, dynamic=dynamic)
    x = torch.randn(2, 37 if dynamic else 19, 16)
    torch.testing.assert_close(compiled(x), layer(x))


def test_float32_and_shapes():
    torch.manual_seed(0)
    layer = maha.MAHAAttention(32, 4, 4, 2, 8, "nash", causal=True)
    x = torch.randn(3, 50, 32)
    y, diag = layer.forward_with_diagnostics(x)
    assert y.shape == (3, 50, 32) and y.dtype == torch.float32
    assert diag.weights.shape == (3, 50, 4, 4) and diag.present.shape == (3, 50, 4)
    assert diag.interaction.shape == (3, 50, 4, 4, 4) and diag.regret.shape == (3, 50, 4, 4)
    assert diag.converged.all()
    assert torch.equal(layer(x), y)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"d_model": 10, "num_heads": 3}, ValueError, ["d_model", "num_heads", "10"]),
        ({"ratio": 1}, ValueError, ["ratio", ">= 2", "1"]),
        ({"ratio": 2.0}, TypeError, ["ratio", "integer"]),
        ({"num_scales": 0}, ValueError, ["num_scales", ">= 1", "0"]),
        ({"window": 0}, ValueError, ["window", ">= 1", "0"]),
        ({"strategy": "nashh"}, ValueError, ["strategy", "nashh", "nash"]),
        ({"decomposition": "wavelet"}, ValueError, ["decomposition", "wavelet"]),
        ({"causal": 1}, TypeError, ["causal", "bool"]),
        ({"max_length": 0}, ValueError, ["max_length"]),
    ],
)
def test_bad_constructor_arguments(kwargs, error, words):
    args = {"d_model": 8, "num_heads": 2, **kwargs}
    with pytest.raises(error) as info:
        maha.MAHAAttention(**args)
    for word in words:
        assert word in str(info.value)


def test_bad_forward_arguments():
    layer = maha.MAHAAttention(8, 2, 3, 2, 4, "mean", max_length=20)
    x = torch.randn(2, 10, 8)
    cases = [
        (lambda: layer(torch.randn(10, 8)), ValueError, ["x", "3 dimensions", "(10, 8)"]),
        (lambda: layer(torch.randn(2, 10, 6)), ValueError, ["d_model=8", "(2, 10, 6)"]),
        (lambda: layer(torch.ones(2, 10, 8, dtype=torch.int64)), TypeError, ["floating"]),
        (lambda: layer(torch.randn(2, 21, 8)), ValueError, ["max_length=20", "21"]),
        (
            lambda: layer(x, key_padding_mask=torch.zeros(2, 9, dtype=torch.bool)),
            ValueError,
            ["key_padding_mask", "(2, 10)", "(2, 9)"],
        ),
        (
            lambda: layer(x, key_padding_mask=torch.zeros(2, 10)),
            TypeError,
            ["key_padding_mask", "bool", "float32"],
        ),
        (
            lambda: layer(x, attn_mask=torch.zeros(10, 9, dtype=torch.bool)),
            ValueError,
            ["attn_mask", "(10, 10)", "(10, 9)"],
        ),
        (
            lambda: layer(x, attn_mask=torch.zeros(10, 10, dtype=torch.int32)),
            TypeError,
            ["attn_mask", "bool", "int32"],
        ),
        (
            lambda: layer(x, attn_mask=torch.zeros(10, 10, dtype=torch.bool)),
            ValueError,
            ["attn_mask", "causal"],
        ),
        (lambda: layer(x, is_causal=1), TypeError, ["is_causal", "bool"]),
        (lambda: layer([[1.0]]), TypeError, ["x", "tensor"]),
    ]
    for call, error, words in cases:
        with pytest.raises(error) as info:
            call()
        for word in words:
            assert word in str(info.value), (word, str(info.value))


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="d_model must be divisible by num_heads"):
        maha.MAHAConfig(d_model=30, n_head=4)
    with pytest.raises(ValueError, match="window"):
        maha.MAHAConfig(window=0)
    with pytest.raises(ValueError, match="mu"):
        maha.MAHAConfig(mu=0.0)
    with pytest.raises(ValueError, match="unknown config fields"):
        maha.MAHAConfig.from_dict({"d_modle": 3})
    config = maha.MAHAConfig(d_model=32, n_head=4)
    assert maha.MAHAConfig.from_dict(config.to_dict()) == config
    assert config.replace(window=None).window is None


def test_from_config_is_the_constructor_path():
    """The layer built from a config whole equals the one built from the same arguments."""
    config = maha.MAHAConfig(
        d_model=16,
        n_head=2,
        num_scales=3,
        ratio=3,
        window=4,
        strategy="convex",
        gating=True,
        mu=0.5,
        asymmetric=True,
        utility_eps=1e-2,
        solver_tol=1e-7,
        solver_max_iter=50,
        bias=False,
        decomposition="dense_conv",
        global_coarsest=False,
        block_size=40,
    )
    torch.manual_seed(0)
    built = maha.MAHAAttention.from_config(config).double()
    torch.manual_seed(0)
    direct = maha.MAHAAttention(
        16,
        2,
        3,
        3,
        4,
        "convex",
        True,
        gating=True,
        mu=0.5,
        asymmetric=True,
        utility_eps=1e-2,
        solver_tol=1e-7,
        solver_max_iter=50,
        bias=False,
        decomposition="dense_conv",
        global_coarsest=False,
        max_length=40,
    ).double()
    assert built.extra_repr() == direct.extra_repr() and built.max_length == 40
    assert (built.fusion.mu, built.fusion.solver_tol, built.fusion.solver_max_iter) == (
        0.5,
        1e-7,
        50,
    )
    a, b = built.state_dict(), direct.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 13, 16, dtype=torch.float64)
    torch.testing.assert_close(built(x), direct(x), rtol=0, atol=0)
    block = maha.MAHABlock(config)
    assert block.attn.extra_repr() == direct.extra_repr() and block.attn.max_length == 40
    with pytest.raises(TypeError, match="config must be a MAHAConfig"):
        maha.MAHAAttention.from_config({"d_model": 16})
    with pytest.raises(TypeError, match="config must be a MAHAConfig"):
        maha.MAHABlock({"d_model": 16})


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: maha.MAHAConfig(num_scales=0), ["num_scales", ">= 1", "0"]),
        (lambda: maha.MAHAAttention(8, 2, num_scales=0), ["num_scales", ">= 1", "0"]),
        (lambda: maha.ScaleFusion(0, 2, 4), ["num_scales", ">= 1", "0"]),
        (lambda: maha.MultiscaleAttention(8, 2, 0), ["num_scales", ">= 1", "0"]),
        (lambda: maha.HierarchicalDecomposition(8, 0), ["num_scales", ">= 1", "0"]),
        (lambda: maha.MultiscaleAttention(10, 3), ["d_model", "num_heads", "10", "3"]),
        (lambda: maha.ScaleFusion(3, 2, 4, mu=-1.0), ["mu", "-1"]),
        (lambda: maha.ScaleFusion(3, 2, 4, solver_max_iter=0), ["solver_max_iter", "0"]),
        (lambda: maha.MAHAConfig(dropout=1.0), ["dropout", "[0, 1)"]),
        (lambda: maha.HierarchicalDecomposition(8, 3, 1), ["ratio", ">= 2", "1"]),
    ],
)
def test_each_field_has_one_rule_and_every_part_uses_it(build, words):
    """The config, the layer and the parts built alone refuse a value with the same message."""
    with pytest.raises((TypeError, ValueError)) as info:
        build()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_validate_layer_args_returns_checked_values_and_refuses_unknown_names():
    from maha.config import validate_layer_args

    checked = validate_layer_args(num_scales=3, mu=2, window=None, solver_tol=None)
    assert checked == {"num_scales": 3, "mu": 2.0, "window": None, "solver_tol": None}
    with pytest.raises(TypeError, match="no rule for \\['n_head'\\]"):
        validate_layer_args(n_head=2)
