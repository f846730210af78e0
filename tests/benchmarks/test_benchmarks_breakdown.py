"""The attention breakdown benchmark runs end to end (``--quick``) and its stages add up."""

import json

from _benchmark_run import run_benchmark


def test_attention_breakdown_quick(tmp_path):
    run_benchmark("attention_breakdown", "--quick", "--out-dir", str(tmp_path))
    report = json.loads((tmp_path / "attention_breakdown.json").read_text())
    assert set(report["time_ms"]) == {"sdpa", "maha-mean", "maha-nash"}
    assert all(ms > 0 for ms in report["time_ms"].values())
    st = report["stages_ms"]
    parts = [ms for name, ms in st.items() if name != "layer"]
    assert abs(sum(parts) - st["layer"]) < 1e-6 * max(st["layer"], 1)  # the rest closes the sum
    assert all(ms > 0 for name, ms in st.items() if name != "rest")
    scales = [name for name in st if name.startswith("scale ")]
    assert len(scales) == 4 and "SDPA" in scales[-1] and "local attention" in scales[0]
    assert "| maha-nash |" in (tmp_path / "attention_breakdown.md").read_text()
