"""The attention breakdown benchmark runs end to end (``--quick``), its stages add up, and
its saved-for-backward measure counts each storage once."""

import json

import torch
from _benchmark_run import load_benchmark, run_benchmark


def test_saved_mib_counts_each_saved_storage_once():
    breakdown = load_benchmark("attention_breakdown")
    x = torch.randn(1024, 256, requires_grad=True)  # 1 MiB
    w = torch.randn(256, 256, requires_grad=True)  # 0.25 MiB

    def job():
        y = x @ w  # saves x and w
        (y * x[:, :256]).sum().backward()  # saves y (1 MiB) and a view of x (counted once)

    assert breakdown.saved_mib(job) == 2.25
    assert breakdown.saved_mib(lambda: None) == 0.0


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
    saved, stage_saved = report["saved_mib"], report["stage_saved_mib"]
    assert set(saved) == {"sdpa", "maha-mean", "maha-nash"} and min(saved.values()) > 0
    assert set(stage_saved) == set(st) - {"layer", "rest"}  # the layer's is saved["maha-nash"]
    # stages keep their own inputs too, so their sum is at least the layer's own
    assert sum(stage_saved.values()) >= saved["maha-nash"]
