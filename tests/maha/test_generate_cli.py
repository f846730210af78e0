"""``maha.load_model`` and ``maha generate``, end to end on tiny models trained for 2 steps.

The loaded model is pinned to the model training returned (same logits), the command's
output to ``model.generate`` with the same seed, the cache to ``--no-cache``, and the
subprocess to the in-process run.
"""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import maha
from maha.cli import main
from maha.generate_cli import stream_text
from maha.training import TrainConfig, load_checkpoint, train
from maha.training.loop import checkpoint_path

ROOT = Path(__file__).resolve().parents[2]


def _corpus(directory: Path) -> Path:
    text = "".join((ROOT / "maha" / name).read_text() for name in ("config.py", "cli.py"))
    path = directory / "corpus.txt"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A maha-nash run of 2 steps written by ``maha train`` (in process)."""
    tmp = tmp_path_factory.mktemp("generate")
    argv = [
        "train", "--data", str(_corpus(tmp)), "--seq-len", "32", "--batch-size", "2",
        "--d-model", "16", "--n-layer", "1", "--n-head", "2", "--num-scales", "3",
        "--window", "4", "--steps", "2", "--eval-every", "0", "--eval-sequences", "2",
        "--device", "cpu", "--dtype", "float64", "--checkpoint-dir", str(tmp / "run"),
        "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    return tmp / "run"


def _generated(capsys, run_dir, *extra: str) -> str:
    argv = ["generate", "--checkpoint", str(run_dir), "--prompt", "def ", *extra]
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("variant", ["maha-nash", "full", "local"])
def test_load_model_rebuilds_the_trained_model(tmp_path, variant):
    config = TrainConfig(
        variant=variant,
        model=maha.MAHAConfig(
            n_layer=1, n_head=2, d_model=16, num_scales=2, window=4, block_size=32
        ),
        data=str(_corpus(tmp_path)),
        seq_len=32,
        steps=2,
        batch_size=2,
        eval_every=0,
        eval_sequences=2,
        checkpoint_dir=str(tmp_path / "run"),
        device="cpu",
        dtype="float64",
        progress=False,
    )
    trained = train(config).model
    loaded = maha.load_model(tmp_path / "run")
    assert type(loaded) is type(trained) and loaded.config == trained.config
    assert not loaded.training
    assert next(loaded.parameters()).dtype == torch.float64
    idx = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(idx), trained(idx))
    # a checkpoint file names the same model as its directory
    from_file = maha.load_model(checkpoint_path(tmp_path / "run", 2))
    for (name, a), (_, b) in zip(from_file.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_load_model_bad_input(tmp_path, run_dir):
    with pytest.raises(ValueError, match="path .* does not exist"):
        maha.load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="path .* is a directory without a checkpoint"):
        maha.load_model(tmp_path / "empty")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint .* could not be read"):
        maha.load_model(junk)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="was not written by maha.training"):
        maha.load_model(tmp_path / "other.pt")
    with pytest.raises(TypeError, match="path must be a checkpoint file or directory"):
        maha.load_model(3)
    # the training checkpoint holds everything the loader needs
    state = load_checkpoint(checkpoint_path(run_dir, 2))
    assert state["train_config"]["variant"] == "maha-nash"
    assert state["train_config"]["model"]["d_model"] == 16


def test_generate_streams_what_model_generate_samples(capsys, run_dir):
    out = _generated(capsys, run_dir, "--max-new-tokens", "24", "--seed", "3")
    model = maha.load_model(run_dir)
    prompt = torch.tensor([list(b"def ")])
    ids = model.generate(prompt, 24, generator=torch.Generator().manual_seed(3))  # (1, 28)
    assert ids.shape == (1, 28)
    expected = bytes(ids[0].tolist()).decode("utf-8", errors="replace")
    assert out == expected + "\n"
    assert out.startswith("def ")


def test_generate_with_and_without_the_cache_agree_when_greedy(capsys, run_dir):
    args = ("--max-new-tokens", "30", "--top-k", "1", "--temperature", "0.5")
    cached = _generated(capsys, run_dir, *args)
    recomputed = _generated(capsys, run_dir, *args, "--no-cache")
    assert cached == recomputed
    assert len(cached.encode("utf-8", errors="replace")) >= len("def ") + 1


def test_generate_compiled_agrees_with_eager_when_greedy(capsys, run_dir):
    """``--compile`` (aot_eager here: inductor is too slow to compile in a test) samples the
    same greedy text as the eager cache."""
    args = ("--max-new-tokens", "12", "--top-k", "1")
    eager = _generated(capsys, run_dir, *args)
    compiled = _generated(capsys, run_dir, *args, "--compile", "--compile-backend", "aot_eager")
    assert compiled == eager


def test_generate_zero_new_tokens_echoes_the_prompt(capsys, run_dir):
    assert _generated(capsys, run_dir, "--max-new-tokens", "0") == "def \n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-new-tokens", "-1"], "--max-new-tokens must be >= 0"),
        (["--prompt", ""], "--prompt must be non-empty"),
        (["--top-k", "0"], "top_k"),
        (["--temperature", "0"], "temperature"),
        (["--compile", "--no-cache"], "--no-cache"),
        (["--compile", "--compile-backend", "no-such-backend"], "compile_backend"),
    ],
)
def test_generate_bad_input_exits_before_any_output(capsys, run_dir, extra, message):
    argv = ["generate", "--checkpoint", str(run_dir), "--prompt", "def ", *extra]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_generate_names_a_bad_checkpoint(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["generate", "--checkpoint", str(tmp_path), "--prompt", "x"])
    assert "--checkpoint: path" in capsys.readouterr().err


class _Recorder(io.StringIO):
    def __init__(self):
        super().__init__()
        self.at_flush: list[str] = []

    def flush(self):
        self.at_flush.append(self.getvalue())


def test_stream_text_writes_each_character_once_complete_and_flushes_per_token():
    text = "aé€😀"
    tokens = [torch.tensor([[b]]) for b in text.encode("utf-8")] + [torch.tensor([[0xFF]])]
    out = _Recorder()
    written = stream_text(iter(tokens), out)
    assert written == out.getvalue() == text + "\ufffd"
    # one flush per token (plus the final one); a character appears with its last byte
    assert len(out.at_flush) == len(tokens) + 1
    assert out.at_flush[:4] == ["a", "a", "aé", "aé"]
    assert out.at_flush[5] == "aé€"


def test_generate_subprocess_matches_in_process(capsys, run_dir):
    args = ["generate", "--checkpoint", str(run_dir), "--prompt", "x = ", "--seed", "1"]
    args += ["--max-new-tokens", "16"]
    capsys.readouterr()
    assert main(args) == 0
    in_process = capsys.readouterr().out
    done = subprocess.run(
        [sys.executable, "-m", "maha.cli", *args],
        capture_output=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.decode("utf-8") == in_process  # bytes: no newline translation


def test_generate_past_block_size_and_a_prompt_longer_than_it(capsys, run_dir):
    # block_size is 32: 28 prompt bytes + 12 new tokens run past it (a sliding context)
    prompt = "import torch\nfrom x import y"
    args = ["generate", "--checkpoint", str(run_dir), "--prompt", prompt]
    args += ["--max-new-tokens", "12", "--top-k", "1"]
    capsys.readouterr()
    assert main(args) == 0
    cached = capsys.readouterr().out
    assert main([*args, "--no-cache"]) == 0
    assert capsys.readouterr().out == cached and cached.startswith(prompt)
    with pytest.raises(SystemExit):
        main(["generate", "--checkpoint", str(run_dir), "--prompt", "x" * 40])
    captured = capsys.readouterr()
    assert "block_size=32" in captured.err and captured.out == ""
    # without the cache the prompt is cropped to its last block_size bytes
    assert main(["generate", "--checkpoint", str(run_dir), "--prompt", "x" * 40, "--no-cache"]) == 0
    assert capsys.readouterr().out.startswith("x" * 40)


def _requirement_names(block: str) -> set[str]:
    return {
        re.match(r"[A-Za-z0-9_.-]+", item).group(0).lower()
        for item in re.findall(r'"([^"]+)"', block)
    }


def test_train_and_generate_need_only_the_core_dependencies(tmp_path):
    """A plain ``pip install`` (no extras) runs both commands: extras are made unimportable."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    core = _requirement_names(re.search(r"dependencies = \[(.*?)\]", pyproject, re.S).group(1))
    extras_block = pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = _requirement_names(extras_block) - core
    assert "tqdm" in core and "matplotlib" in extras
    modules = {"pygambit": "pygambit", "cvxpylayers": "cvxpylayers"}
    blocked = sorted(modules.get(name, name.replace("-", "_")) for name in extras)
    script = f"""
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # import raises ImportError, find_spec finds nothing
from maha.cli import main
assert main(["train", "--data", {str(_corpus(tmp_path))!r}, "--seq-len", "16",
             "--batch-size", "2", "--d-model", "8", "--n-layer", "1", "--n-head", "2",
             "--num-scales", "2", "--window", "4", "--steps", "2", "--eval-every", "0",
             "--eval-sequences", "1", "--device", "cpu",
             "--checkpoint-dir", {str(tmp_path / "run")!r}]) == 0
assert main(["generate", "--checkpoint", {str(tmp_path / "run")!r}, "--prompt", "ab",
             "--max-new-tokens", "4", "--seed", "0"]) == 0
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert b"maha-nash" in done.stderr  # the progress bar (tqdm, a core dependency)
    assert done.stdout.decode("utf-8").splitlines()[-1].startswith("ab")
