"""The DDP teardown diagnostic runs end to end; a launch left by cleanup_distributed exits 0."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ddp_teardown.py"


def test_ddp_teardown_one_launch_per_mode():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--launches", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| cleanup")]
    assert rows == ["| cleanup_distributed() | 0 | 0 | 1 |"]


def test_ddp_teardown_rejects_a_nonpositive_count():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--launches", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "--launches must be a positive integer; received 0" in done.stderr
