"""The attention benchmark runs end to end (``--quick``) and writes JSON, Markdown and PNG."""

import json

import pytest
from _benchmark_run import run_benchmark

pytest.importorskip("matplotlib")


def test_attention_benchmark_quick(tmp_path):
    done = run_benchmark("attention", "--quick", "--out-dir", str(tmp_path))
    report = json.loads((tmp_path / "attention.json").read_text())
    assert report["config"]["quick"] and report["config"]["strategy"] == "nash"
    rows = report["rows"]
    assert [r["length"] for r in rows] == [64, 256]
    for row in rows:
        flops = row["flops"]
        # the analytic count equals FlopCounterMode's (the script stops otherwise)
        assert flops["flop_counter"]["maha"] == flops["maha"]["counted"]
        assert flops["flop_counter"]["standard"] == flops["standard"]["counted"]
        assert flops["maha"]["solver"] > 0 and flops["maha"]["total"] > flops["maha"]["counted"]
        for key in ("maha_forward_ms", "sdpa_forward_backward_ms", "fusion_forward_backward_ms"):
            assert row[key] > 0
        assert 0 < row["fusion_share"] < 1
    assert rows[-1]["maha_peak_mib"] > 0 and rows[-1]["sdpa_peak_mib"] > 0
    assert rows[-1]["maha_live_mib"] > 0 and rows[-1]["sdpa_live_mib"] > 0
    assert rows[1]["flops"]["core_reduction"] > rows[0]["flops"]["core_reduction"]
    assert "fusion share < 15%" in report["targets"]
    load = report["load_average"]  # recorded with every run (the ratios move with it)
    assert load is None or (len(load) == 3 and min(load) >= 0)
    table = (tmp_path / "attention.md").read_text()
    assert load is None or "1-minute load" in table
    assert "| length |" in table and "| 256 |" in table
    assert (tmp_path / "attention.png").stat().st_size > 1000
    assert "fwd+bwd" in done.stdout and "x)" in done.stdout
    # without --compile: eager rows only, and the report names them as the recommended ones
    assert report["config"]["compile"] is None and report["recommended"] == "eager"
    assert not any("compiled" in key for row in rows for key in row)
    assert "Recommended: the eager layer" in table and "compiled speed-up" not in table


def test_attention_benchmark_compiled_rows(tmp_path):
    # dynamo's "eager" backend: the same fullgraph=True capture and timing rows, in seconds
    done = run_benchmark(
        "attention",
        "--quick",
        "--no-memory",
        "--compile",
        "--compile-backend",
        "eager",
        "--out-dir",
        str(tmp_path),
    )
    report = json.loads((tmp_path / "attention.json").read_text())
    assert report["config"]["compile"] == "eager" and report["config"]["compile_threads"] >= 1
    for row in report["rows"]:
        for who in ("maha", "sdpa"):
            assert row[f"{who}_compiled_forward_backward_ms"] > 0
            # the first call (compilation) is reported apart, not among the timings
            assert row[f"{who}_compile_s"] > 0
        speedup = (
            row["sdpa_compiled_forward_backward_ms"] / row["maha_compiled_forward_backward_ms"]
        )
        assert row["compiled_forward_backward_speedup"] == pytest.approx(speedup)
        assert row["maha_compiled_over_eager"] == pytest.approx(
            row["maha_compiled_forward_backward_ms"] / row["maha_forward_backward_ms"]
        )
    last = report["rows"][-1]
    faster = last["maha_compiled_forward_backward_ms"] < last["maha_forward_backward_ms"]
    assert report["recommended"] == ("compiled" if faster else "eager")
    table = (tmp_path / "attention.md").read_text()
    assert "compiled speed-up" in table and "fullgraph=True" in table
    assert f"Recommended: the {report['recommended']} layer" in table
    assert "compiled fwd+bwd" in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "cuda"], "--device cuda needs CUDA"),
        (["--local-path", "flex"], "--local-path flex needs --device cuda"),
        (["--compile", "--compile-backend", "no-such"], "--compile-backend must be one of"),
    ],
)
def test_attention_benchmark_without_cuda_is_one_clear_line(tmp_path, args, message):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available() and "--compile" not in args:
        pytest.skip("CUDA is available: --device cuda runs")
    done = run_benchmark("attention", *args, "--out-dir", str(tmp_path), ok=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert message in lines[0]
    assert not any(tmp_path.iterdir())  # nothing written
