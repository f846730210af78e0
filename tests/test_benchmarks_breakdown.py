"""The attention breakdown benchmark runs end to end (``--quick``) and its parts add up."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "attention_breakdown.py"


def test_attention_breakdown_quick(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "attention_breakdown.json").read_text())
    assert set(report["time_ms"]) == {"sdpa", "maha-mean", "maha-nash"}
    assert all(ms > 0 for ms in report["time_ms"].values())
    prof = report["profile_ms"]
    parts = [ms for name, ms in prof.items() if name != "profiled total"]
    assert all(ms >= 0 for ms in parts)
    assert abs(sum(parts) - prof["profiled total"]) < 1e-6 * max(prof["profiled total"], 1)
    assert prof["local attention"] > 0 and prof["projections"] > 0
    assert "| maha-nash |" in (tmp_path / "attention_breakdown.md").read_text()
