"""The scale-game benchmark runs end to end (``--quick``) and writes its JSON and Markdown."""

import json

from _benchmark_run import run_benchmark


def test_scale_game_benchmark_quick(tmp_path):
    done = run_benchmark("scale_game", "--quick", "--out-dir", str(tmp_path))
    report = json.loads((tmp_path / "scale_game.json").read_text())
    assert report["machine"]["torch_threads"] >= 1 and report["quick"]
    methods = {row["method"]: row for row in report["ours"]}
    assert set(methods) == {"exact", "convex", "enumeration", "convex_enumeration"}
    for row in methods.values():
        assert row["games"] == 2000 and row["forward_backward_s"] > 0
        assert row["converged"] == 1.0 and row["finite_gradients"]
    assert methods["exact"]["max_regret"] <= 1e-5
    assert methods["enumeration"]["max_regret"] <= 1e-5
    peer = report["cvxpylayers"]
    if "skipped" not in peer:
        assert report["ratio_vs_cvxpylayers"] > 0
        assert peer["max_abs_weight_difference_vs_ours"] < 1e-2
    table = (tmp_path / "scale_game.md").read_text()
    assert "| method | games |" in table and "cvxpylayers" in table
    assert "forward+backward" in done.stdout
