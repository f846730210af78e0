"""The example trainer and the LM benchmarks run end to end (``--quick``), so they cannot rot."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _run(*args, timeout=300):
    proc = subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_example_trains_checkpoints_and_resumes(tmp_path):
    common = [
        ROOT / "examples" / "train_lm.py", "--variant", "maha-softmax", "--max-bytes", "60000",
        "--seq-len", "48", "--d-model", "16", "--n-layer", "1", "--n-head", "2",
        "--num-scales", "3", "--window", "8", "--batch-size", "2", "--eval-sequences", "2",
        "--eval-every", "2", "--checkpoint-dir", tmp_path, "--checkpoint-every", "2",
    ]  # fmt: skip
    proc = _run(*common, "--steps", "4")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["variant"] == "maha-softmax" and summary["step"] == 4
    assert math.isfinite(summary["val_bpb"]) and summary["tokens_seen"] == 4 * 2 * 48
    assert "val" in proc.stderr and "bits/byte" in proc.stderr  # the progress report
    state = torch.load(tmp_path / "ckpt_00000004.pt", weights_only=True)
    assert state["step"] == 4 and len(state["history"]["train_loss"]) == 4
    # a different configuration is refused before training, naming the option
    bad = subprocess.run(
        [sys.executable, *map(str, common), "--steps", "4", "--lr", "0.5", "--resume"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "--lr: 0.002 (checkpoint) vs 0.5" in bad.stderr


def test_throughput_quick(tmp_path):
    _run(ROOT / "benchmarks" / "throughput.py", "--quick", "--variants", "full", "maha-nash",
         "--out-dir", tmp_path)  # fmt: skip
    report = json.loads((tmp_path / "throughput.json").read_text())
    rows = report["variants"]
    assert rows["full"]["speedup_vs_full"] == 1.0
    assert rows["maha-nash"]["tokens_per_s"] > 0 and "maha-nash trains" in report["target"]
    assert "| maha-nash |" in (tmp_path / "throughput.md").read_text()
