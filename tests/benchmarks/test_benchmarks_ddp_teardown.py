"""The DDP teardown diagnostic runs end to end; a launch left by cleanup_distributed exits 0."""

from _benchmark_run import run_benchmark


def test_ddp_teardown_one_launch_per_mode():
    done = run_benchmark("ddp_teardown", "--launches", "1")
    rows = [line for line in done.stdout.splitlines() if line.startswith("| cleanup")]
    assert rows == ["| cleanup_distributed() | 0 | 0 | 1 |"]


def test_ddp_teardown_rejects_a_nonpositive_count():
    done = run_benchmark("ddp_teardown", "--launches", "0", ok=False)
    assert done.returncode == 2
    assert "--launches must be a positive integer; received 0" in done.stderr
