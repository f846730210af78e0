"""H-Transformer-1D as a peer of the LM benchmark: causal, parameter-matched, trainable.

Skipped when the optional ``h-transformer-1d`` package (the ``peers`` extra) is absent.
"""

import importlib.util
import json
import sys

import pytest
import torch
from _benchmark_run import BENCHMARKS, run_benchmark

pytest.importorskip("h_transformer_1d")
sys.path.insert(0, str(BENCHMARKS))
from peers import h_transformer as peer  # noqa: E402

from maha import MAHAConfig  # noqa: E402


def _config(n: int = 64, **changes) -> MAHAConfig:
    base = dict(block_size=n, n_layer=2, n_head=2, d_model=16, num_scales=3, window=16)
    return MAHAConfig(**{**base, **changes})


@pytest.mark.parametrize("n, block", [(64, 16), (64, 8), (128, 16)])
def test_peer_is_causal_at_every_position(n, block):
    torch.manual_seed(0)
    model = peer.build_peer_model(_config(n), block).double().eval()
    assert peer.causal_leak(model, n) == 0.0  # every t, exactly (float64)


def test_causal_leak_detects_a_non_causal_attention():
    from h_transformer_1d.h_transformer_1d import HAttention1D

    torch.manual_seed(0)
    model = peer.build_peer_model(_config(), 16).double().eval()
    for block in model.blocks:  # the package's bidirectional attention: must be flagged
        block.attn = peer.HAttentionAdapter(HAttention1D(16, heads=2, dim_head=8, block_size=16))
    model.double()
    assert peer.causal_leak(model, 64, positions=[0, 20, 62]) > 1e-3


def test_peer_sees_less_than_its_prefix():
    field = peer.receptive_field(_config(128), 16, samples=128)
    assert field["positions_sampled"] == 128
    assert 0 < field["mean_prefix_share_seen"] < 1
    assert field["share_seeing_only_own_block"] > 0.5  # the masking drops most coarse levels


def test_peer_model_is_the_backbone_with_the_peer_attention():
    torch.manual_seed(0)
    model = peer.build_peer_model(_config(), 16)
    assert all(isinstance(b.attn, peer.HAttentionAdapter) for b in model.blocks)
    assert peer.count_parameters(_config(), 16) == sum(p.numel() for p in model.parameters())
    out = model.blocks[0].attn.inner.to_out.weight
    assert out.std().item() == pytest.approx(0.02 / 2, rel=0.3)  # GPT-2 residual scaling
    x = torch.randn(1, 64, 16)
    with pytest.raises(ValueError, match="key_padding_mask"):
        model.blocks[0].attn(x, key_padding_mask=torch.zeros(1, 64, dtype=torch.bool))
    with pytest.raises(ValueError, match="cache"):
        model.blocks[0].attn(x, cache=object())


@pytest.mark.parametrize("block", [0, 24, 64, 128])
def test_bad_block_sizes_are_named(block):
    with pytest.raises(ValueError, match="peer_block_size"):
        peer.check_lengths(_config(), block)


def test_peer_is_parameter_matched():
    spec = importlib.util.spec_from_file_location("lm_quality", BENCHMARKS / "lm_quality.py")
    lmq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lmq)
    settings = lmq.grid_settings(lmq.parse_args([]), False)  # the real 1,024 grid
    nash = lmq.count_parameters("maha-nash", lmq.model_config(settings), 64)
    ffn = lmq.ffn_mult_for(peer.VARIANT, settings)
    matched = lmq.count_parameters(peer.VARIANT, lmq.model_config(settings, ffn), 64)
    step = 2 * settings["d_model"] ** 2 * settings["n_layer"]
    assert ffn > 4 and abs(matched - nash) <= step / 2


def test_peer_trains_in_the_benchmark(tmp_path):
    args = ("--quick", "--variants", peer.VARIANT, "--seeds", "0", "--out-dir", str(tmp_path))
    run_benchmark("lm_quality", *args)
    (path,) = (tmp_path / "lm_runs").glob(f"{peer.VARIANT}_seed0_*.json")
    record = json.loads(path.read_text())
    assert record["variant"] == peer.VARIANT and record["train_config"]["variant"] == "full"
    assert 0 < record["val_bpb"] < 9 and len(record["val_curve"]) == 2
    config = MAHAConfig.from_dict(record["train_config"]["model"])
    assert record["num_parameters"] == peer.count_parameters(config, 16)
    table = (tmp_path / "lm_quality.md").read_text()
    assert (
        f"| {peer.VARIANT} | 0 |" in table and "`CausalHAttention1D`) at length 64: causal" in table
    )


def test_peer_without_rotary_is_the_same_module_without_positions():
    torch.manual_seed(0)
    with_rope = peer.build_peer_model(_config(), 16).double().eval()
    torch.manual_seed(0)
    without = peer.build_peer_model(_config(), 16, rotary=False).double().eval()
    assert all(b.attn.inner.pos_emb is None for b in without.blocks)
    # the same parameters but the package's frozen rotary frequencies (d_h / 2 per layer)
    missing = without.load_state_dict(with_rope.state_dict(), strict=False).unexpected_keys
    assert missing and all("pos_emb" in key for key in missing)
    extra = peer.count_parameters(_config(), 16) - peer.count_parameters(_config(), 16, False)
    assert extra == 2 * 8 // 2
    assert peer.causal_leak(without, 64, positions=[0, 17, 40, 63]) == 0.0
    idx = torch.randint(0, 256, (1, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert float((with_rope(idx) - without(idx)).abs().max()) > 1e-6
