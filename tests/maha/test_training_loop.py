"""The training loop: schedule, bits per byte, reproducibility, exact resume, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from maha import MAHAConfig
from maha.training import (
    TrainConfig,
    cosine_lr_lambda,
    evaluate_bpb,
    latest_checkpoint,
    load_checkpoint,
    load_corpus,
    main,
    train,
)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    for i in range(6):
        body = "".join(f"def f{i}_{j}(x):\n    return x * {j} + {i}\n\n" for j in range(40))
        (root / f"m{i}.py").write_text(body)
    return root


def _config(corpus_dir, **changes):
    model = MAHAConfig(
        block_size=32, n_layer=1, n_head=2, d_model=16, num_scales=2, window=8, dropout=0.1
    )
    base = dict(
        variant="maha-mean",
        model=model,
        data=str(corpus_dir),
        val_fraction=0.3,
        seq_len=32,
        steps=6,
        batch_size=4,
        lr=1e-2,
        eval_every=3,
        eval_sequences=4,
        dtype="float64",
        device="cpu",
        progress=False,
    )
    base.update(changes)
    return TrainConfig(**base)


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_cosine_schedule():
    f = [cosine_lr_lambda(s, steps=100, warmup=10, min_ratio=0.1) for s in range(100)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # decays monotonically
    assert f[55] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the decay
    assert cosine_lr_lambda(100, steps=100, warmup=10, min_ratio=0.1) == pytest.approx(0.1)


class _Fixed(nn.Module):
    """Predicts the same byte distribution everywhere: logits (B, T, 256)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, idx):
        return self.logits.expand(*idx.shape, 256)


def test_bits_per_byte_matches_the_definition(corpus_dir):
    split = load_corpus(corpus_dir, val_fraction=0.3).val
    uniform = evaluate_bpb(
        _Fixed(torch.zeros(256)), split, seq_len=16, batch_size=3, num_sequences=7
    )
    assert uniform == pytest.approx(8.0, abs=1e-12)  # log2(256) bits for every byte
    # a unigram model: bpb = mean of -log2 p(y) over the evaluated targets
    counts = torch.bincount(split.data.long(), minlength=256).double() + 1.0
    logp = (counts / counts.sum()).log()
    got = evaluate_bpb(_Fixed(logp), split, seq_len=16, batch_size=3, num_sequences=7)
    total = split.num_sequences(16)
    picks = torch.linspace(0, total - 1, 7).round().long().unique()
    _, y = split.batch(picks, 16)
    assert got == pytest.approx(float(-logp[y].mean()) / math.log(2), rel=1e-12)


def test_runs_are_reproducible_and_the_loss_falls(corpus_dir):
    a = train(_config(corpus_dir, steps=8, eval_every=0))
    b = train(_config(corpus_dir, steps=8, eval_every=0))
    _assert_same(_params(a.model), _params(b.model))
    assert a.train_loss == b.train_loss
    assert a.train_loss[-1][1] < a.train_loss[0][1]
    c = train(_config(corpus_dir, steps=8, eval_every=0, seed=1))
    assert not torch.equal(c.model.wte.weight, a.model.wte.weight)
    assert a.tokens_seen == 8 * 4 * 32 and a.tokens_per_s > 0 and a.peak_mem_mb > 0
    assert a.val_curve[-1][:2] == [8, 8 * 4 * 32] and 0 < a.val_bpb < 9


def test_resume_is_exact(corpus_dir, tmp_path):
    # dropout is on (0.1), so this also checks that randomness resumes exactly
    straight = train(_config(corpus_dir, checkpoint_dir=str(tmp_path / "a"), checkpoint_every=3))
    half = tmp_path / "a" / "ckpt_00000003.pt"
    assert half.is_file() and latest_checkpoint(tmp_path / "a").name == "ckpt_00000006.pt"
    resumed = train(_config(corpus_dir, resume=str(half)))
    _assert_same(_params(straight.model), _params(resumed.model))
    assert straight.train_loss == resumed.train_loss
    assert straight.val_curve == resumed.val_curve
    end_a = load_checkpoint(tmp_path / "a" / "ckpt_00000006.pt")
    # the same through the command line, resuming the newest checkpoint of a directory
    ckpt = tmp_path / "b"
    (ckpt).mkdir()
    (ckpt / "ckpt_00000003.pt").write_bytes(half.read_bytes())
    args = [
        "--variant", "maha-mean", "--data", str(corpus_dir), "--val-fraction", "0.3",
        "--seq-len", "32", "--block-size", "32", "--n-layer", "1", "--n-head", "2",
        "--d-model", "16", "--num-scales", "2", "--window", "8", "--dropout", "0.1",
        "--steps", "6", "--batch-size", "4", "--lr", "1e-2", "--eval-every", "3",
        "--eval-sequences", "4", "--dtype", "float64", "--device", "cpu", "--no-progress",
        "--checkpoint-dir", str(ckpt), "--resume", "--json-out", str(tmp_path / "run.json"),
    ]  # fmt: skip
    assert main(args) == 0
    end_b = load_checkpoint(ckpt / "ckpt_00000006.pt")
    _assert_same(end_a["model"], end_b["model"])
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["val_bpb"] == pytest.approx(straight.val_bpb, rel=1e-12)


def test_bad_input_is_reported_before_training(corpus_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="variant"):
        train(_config(corpus_dir, variant="maha-magic"))
    with pytest.raises(ValueError, match="seq_len=64 exceeds .* block_size=32"):
        train(_config(corpus_dir, seq_len=64))
    with pytest.raises(ValueError, match="data path .* does not exist"):
        train(_config(corpus_dir, data=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="no checkpoint"):
        train(_config(corpus_dir, resume="latest", checkpoint_dir=str(tmp_path / "none")))
    with pytest.raises(ValueError, match="does not exist"):
        train(_config(corpus_dir, resume=str(tmp_path / "missing.pt")))
    done = train(_config(corpus_dir, steps=2, checkpoint_dir=str(tmp_path / "c")))
    assert done.step == 2
    other = _config(
        corpus_dir,
        steps=2,
        model=_config(corpus_dir).model.replace(d_model=24),
        resume=str(tmp_path / "c" / "ckpt_00000002.pt"),
    )
    with pytest.raises(
        ValueError, match=r"different configuration.*--d-model: 16 \(checkpoint\) vs 24"
    ):
        train(other)
    with pytest.raises(SystemExit) as exit_info:
        main(["--variant", "nope", "--data", str(corpus_dir), "--no-progress"])
    assert exit_info.value.code == 2
    assert "variant must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path / "nowhere"), "--seq-len", "32", "--no-progress"])
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("seq_len", [1024, 4096])
def test_long_context_trains(seq_len):
    model = MAHAConfig(block_size=seq_len, n_layer=1, n_head=2, d_model=16, num_scales=3, window=32)
    config = TrainConfig(
        variant="maha-nash",
        model=model,
        max_bytes=120_000,
        seq_len=seq_len,
        steps=1,
        batch_size=1,
        eval_every=0,
        eval_sequences=1,
        device="cpu",
        progress=False,
    )
    result = train(config)
    assert result.tokens_seen == seq_len and math.isfinite(result.val_bpb)
    assert math.isfinite(result.train_loss[0][1])


@pytest.mark.parametrize("variant", ["maha-nash", "maha-convex"])
def test_compiled_training_equals_eager(corpus_dir, variant):
    """compiled == eager: the same losses and weights after three steps (float32, 1e-5).

    Under torch.compile the game fusions solve by support enumeration instead of
    pivoting; the equilibria agree, so training follows the same path.
    """
    model = MAHAConfig(block_size=32, n_layer=1, n_head=2, d_model=16, num_scales=3, window=4)
    changes = dict(variant=variant, model=model, dtype="float32", steps=3, eval_every=0)
    eager = train(_config(corpus_dir, **changes))
    compiled = train(_config(corpus_dir, compile="aot_eager", **changes))
    losses_e = [loss for _, loss in eager.train_loss]
    losses_c = [loss for _, loss in compiled.train_loss]
    assert losses_c == pytest.approx(losses_e, abs=1e-5)
    a, b = _params(eager.model), _params(compiled.model)
    assert a.keys() == b.keys()  # checkpoints keep the eager module's keys
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=1e-4, msg=k)


def test_compile_option_is_checked(corpus_dir):
    with pytest.raises(ValueError, match="compile"):
        train(_config(corpus_dir, compile="no-such-backend"))


def test_command_line_compile_flag():
    from maha.training.cli import build_parser, config_from_args

    parse = build_parser().parse_args
    assert config_from_args(parse([])).compile is None
    assert config_from_args(parse(["--compile"])).compile == "inductor"
    assert config_from_args(parse(["--compile", "aot_eager"])).compile == "aot_eager"
