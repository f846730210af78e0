"""The attention breakdown benchmark runs end to end (``--quick``) and its parts add up."""

import json

from _benchmark_run import run_benchmark


def test_attention_breakdown_quick(tmp_path):
    run_benchmark("attention_breakdown", "--quick", "--out-dir", str(tmp_path))
    report = json.loads((tmp_path / "attention_breakdown.json").read_text())
    assert set(report["time_ms"]) == {"sdpa", "maha-mean", "maha-nash"}
    assert all(ms > 0 for ms in report["time_ms"].values())
    prof = report["profile_ms"]
    parts = [ms for name, ms in prof.items() if name != "profiled total"]
    assert all(ms >= 0 for ms in parts)
    assert abs(sum(parts) - prof["profiled total"]) < 1e-6 * max(prof["profiled total"], 1)
    assert prof["local attention"] > 0 and prof["projections"] > 0
    assert "| maha-nash |" in (tmp_path / "attention_breakdown.md").read_text()
