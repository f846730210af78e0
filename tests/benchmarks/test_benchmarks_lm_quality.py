"""The LM-quality benchmark: its run cache, its report and its two-standard-deviation claims."""

import json
import math
from pathlib import Path

import pytest
from _benchmark_run import load_benchmark, run_benchmark

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def lmq():
    return load_benchmark("lm_quality")


def _runs(out: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "lm_runs").glob("*.json")}


def test_quick_runs_are_cached_and_summarised(tmp_path, lmq):
    args = ("--quick", "--variants", "full", "maha-nash", "--seeds", "0", "1")
    first = run_benchmark("lm_quality", *args, "--out-dir", str(tmp_path))
    assert "4 runs to train" in first.stderr and "4/4 maha-nash seed 1" in first.stderr
    runs = _runs(tmp_path)
    assert len(runs) == 4 and not list((tmp_path / "lm_runs").glob(".*"))  # no temporary left
    report = json.loads((tmp_path / "lm_quality.json").read_text())
    short, long = report["sections"].values()
    s = short["settings"]
    key = lmq.settings_key(s)
    assert set(runs) == {f"{v}_seed{k}_{key}.json" for v in ("full", "maha-nash") for k in (0, 1)}
    rows = short["variants"]
    assert list(rows) == ["full", "maha-nash"] and not long["variants"]
    for name, row in rows.items():
        records = [
            json.loads((tmp_path / "lm_runs" / f"{name}_seed{k}_{key}.json").read_text())
            for k in (0, 1)
        ]
        values = [r["val_bpb"] for r in records]
        assert row["val_bpb_mean"] == pytest.approx(sum(values) / 2)
        assert row["val_bpb_sd"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
        for r in records:
            assert r["settings"] == s and r["val_curve"][-1][0] == s["steps"] == 4
            assert r["tokens_per_s"] > 0 and r["peak_mem_mb"] > 0 and r["wall_seconds"] > 0
            assert r["machine"]["cpu"] and r["train_config"]["seed"] == r["seed"]
            assert len(r["code"]) == 12 and r["load_average_before"] >= 0  # source fingerprint
        assert [r["val_curve"][0][2] for r in records] != [records[0]["val_curve"][0][2]] * 2
    # parameter matching: full is no further from maha-nash than one FFN step
    step = 2 * s["d_model"] ** 2 * s["n_layer"]
    assert abs(rows["full"]["num_parameters"] - rows["maha-nash"]["num_parameters"]) <= step
    # the grids' missing runs are listed, the cached ones are not
    assert short["missing"]["local"] == [0, 1] and "full" not in short["missing"]
    assert long["missing"]["maha-nash"] == [0, 1]
    claim = next(c for c in short["claims"] if c["claim"] == "maha-nash beats full")
    assert claim["outcome"] in ("met", "missed", "not distinguishable") and claim["n"] == [2, 2]
    table = (tmp_path / "lm_quality.md").read_text()
    assert "| full | 0,1 |" in table and "| maha-nash | 0,1 |" in table
    assert "**Missing:** local seeds 0, 1" in table and "No run of this grid" in table
    codes = {json.loads(p.read_text())["code"] for p in (tmp_path / "lm_runs").glob("*.json")}
    assert all(f"`{c}` (" in table for c in codes) and "Library source fingerprint" in table
    assert (tmp_path / "lm_quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the same settings again: nothing trains, the runs are untouched, the same report
    again = run_benchmark("lm_quality", *args, "--out-dir", str(tmp_path))
    assert "0 runs to train" in again.stderr and _runs(tmp_path) == runs
    rebuilt = json.loads((tmp_path / "lm_quality.json").read_text())
    assert rebuilt["sections"] == report["sections"]

    # a changed setting is another key: one new run, the old ones kept and still reported
    changed = run_benchmark(
        "lm_quality", *args[:2], "full", "--seeds", "0", "--lr", "0.002", "--out-dir", str(tmp_path)
    )
    assert "1 runs to train" in changed.stderr
    new = set(_runs(tmp_path)) - set(runs)
    assert len(new) == 1 and key not in next(iter(new)) and new.pop().startswith("full_seed0_")
    assert all(_runs(tmp_path)[name] == t for name, t in runs.items())
    only = run_benchmark("lm_quality", "--quick", "--seeds", "0", "1", "--report-only",
                         "--out-dir", str(tmp_path))  # fmt: skip
    assert "0 runs to train" in only.stderr
    assert json.loads((tmp_path / "lm_quality.json").read_text())["sections"] == report["sections"]


def test_settings_key_covers_every_setting(lmq):
    args = lmq.parse_args([])
    base = lmq.grid_settings(args, False)
    assert lmq.settings_key(base) == lmq.settings_key(dict(reversed(base.items())))
    assert (base["steps"], base["batch_size"], base["seq_len"]) == (1500, 4, 1024)
    long = lmq.grid_settings(args, True)
    assert (long["steps"], long["batch_size"], long["seq_len"]) == (1500, 1, 4096)  # same bytes
    for flag, value in [("--lr", "0.01"), ("--steps", "5"), ("--window", "8"), ("--mu", "2"),
                        ("--eval-sequences", "3"), ("--max-bytes", "90000")]:  # fmt: skip
        other = lmq.grid_settings(lmq.parse_args([flag, value]), False)
        assert lmq.settings_key(other) != lmq.settings_key(base), flag
    threads = lmq.grid_settings(lmq.parse_args(["--threads", "2"]), False)
    assert threads == base  # threads change the speed, not the result


def test_bad_options_are_named(tmp_path):
    safe = ("--report-only", "--out-dir", str(tmp_path))  # never trains, even if parsing passed
    bad = run_benchmark("lm_quality", "--variants", "nope", *safe, ok=False)
    assert bad.returncode == 2 and "--variants" in bad.stderr and "'nope'" in bad.stderr
    bad = run_benchmark("lm_quality", "--long-seq-len", "3000", *safe, ok=False)
    assert bad.returncode == 2 and "--long-seq-len" in bad.stderr
    bad = run_benchmark("lm_quality", "--seeds", "-1", *safe, ok=False)
    assert bad.returncode == 2 and "--seeds" in bad.stderr
    assert not list(tmp_path.iterdir())


def test_quick_defaults_to_a_temporary_folder(lmq):
    args = lmq.parse_args(["--quick"])
    assert args.out_dir != lmq.RESULTS and args.out_dir.is_dir()
    args.out_dir.rmdir()
    assert lmq.parse_args([]).out_dir == lmq.RESULTS


def test_claim_beats_two_standard_deviations(lmq):
    a, b = [1.00, 1.02, 0.98], [1.10, 1.12, 1.08]  # sd 0.02 each: 2 s = 2 sqrt(2 * 0.02^2 / 3)
    two_sd = 2 * math.sqrt(2 * 0.02**2 / 3)
    met = lmq.claim_beats(a, b)
    assert met["outcome"] == "met" and met["two_sd"] == pytest.approx(two_sd)
    assert met["difference"] == pytest.approx(0.10)
    assert lmq.claim_beats(b, a)["outcome"] == "missed"
    close = [1.01, 1.03, 0.99]  # difference 0.01 < 2 s = 0.0327
    assert lmq.claim_beats(a, close)["outcome"] == "not distinguishable"
    just = [v + 1.01 * two_sd for v in a]
    assert lmq.claim_beats(a, just)["outcome"] == "met"
    assert lmq.claim_beats(a, [v + 0.99 * two_sd for v in a])["outcome"] == "not distinguishable"
    assert lmq.claim_beats([1.0], b)["outcome"] == "insufficient seeds"
    assert lmq.claim_beats(a, [1.2])["two_sd"] is None


def test_claim_within_tolerance(lmq):
    a = [1.00, 1.02, 0.98]
    two_sd = 2 * math.sqrt(2 * 0.02**2 / 3)  # 0.0327
    assert lmq.claim_within(a, [v + 0.005 for v in a], 0.05)["outcome"] == "met"
    assert lmq.claim_within(a, [v + 0.005 for v in a], 0.02)["outcome"] == "not distinguishable"
    assert lmq.claim_within(a, [v - 0.2 for v in a], 0.1)["outcome"] == "missed"
    assert lmq.claim_within(a, [v + 0.1 for v in a], 0.1 - two_sd + 1e-9)["outcome"] == (
        "not distinguishable"
    )
    assert lmq.claim_within(a, [1.0], 0.5)["outcome"] == "insufficient seeds"


def test_mean_sd_and_curve_reading(lmq):
    assert lmq.mean_sd([2.0]) == (1, 2.0, None)
    n, mean, sd = lmq.mean_sd([1.0, 2.0, 3.0])
    assert (n, mean) == (3, 2.0) and sd == pytest.approx(1.0)
    curve = {"tokens": [100, 200, 300], "mean": [3.0, 2.5, 2.0]}
    assert lmq.bytes_to_reach(curve, 2.5) == 200 and lmq.bytes_to_reach(curve, 1.0) is None


def test_write_atomic_leaves_no_temporary(tmp_path, lmq):
    path = tmp_path / "d" / "run.json"
    lmq.write_atomic(path, "first")
    lmq.write_atomic(path, "second")
    assert path.read_text() == "second" and [p.name for p in path.parent.iterdir()] == ["run.json"]
    assert path.stat().st_mode & 0o044  # readable by others, unlike mkstemp's 0600


def test_a_failed_run_is_reported_and_not_cached(tmp_path):
    missing = tmp_path / "no_such_corpus.txt"
    done = run_benchmark(
        "lm_quality", "--quick", "--variants", "full", "--seeds", "0", "--data", str(missing),
        "--out-dir", str(tmp_path / "out"), ok=False,
    )  # fmt: skip
    assert done.returncode == 1 and "1/1 FAILED: full seed 0 failed" in done.stderr
    assert "failed runs: full seed 0" in done.stderr
    assert not list((tmp_path / "out" / "lm_runs").glob("*.json"))


def test_claims_compare_each_family_with_its_own_baselines(lmq):
    def row(values):
        curve = {"tokens": [10, 20], "mean": [max(values) + 1, sum(values) / len(values)]}
        return {"val_bpb": values, "val_bpb_mean": sum(values) / len(values), "curve": curve}

    rows = {
        "maha-nash": row([2.30, 2.31, 2.29]),
        "full": row([2.70, 2.71, 2.69]),
        "maha-nash-rope": row([2.00, 2.01, 1.99]),
        "full-rope": row([2.10, 2.11, 2.09]),
        "maha-softmax-rope": row([2.20, 2.21, 2.19]),
    }
    out = {c["claim"]: c["outcome"] for c in lmq.claims(rows, 20)}
    assert out["maha-nash beats full"] == "met"
    assert out["maha-nash-rope beats full-rope"] == "met"
    assert out["best game fusion (maha-nash-rope) beats maha-softmax-rope"] == "met"
    assert "maha-nash beats full-rope" not in out  # no cross-family claim
    assert "maha-nash-rope reaches full-rope's final bits/byte with at most half the bytes" in out
    assert out["full-rope beats full"] == "met" and out["maha-nash-rope beats maha-nash"] == "met"
    assert "local-rope beats local" not in out  # only where both runs exist


def test_config_variants_train_with_their_options(tmp_path):
    """A rotary, anchored variant trains through the CLI with its options and is summarised
    over its players (the anchored finest scale has weight 0 there, never a player)."""
    args = ("--quick", "--variants", "maha-nash-anchor-rope", "--seeds", "0")
    run_benchmark("lm_quality", *args, "--out-dir", str(tmp_path))
    (path,) = (tmp_path / "lm_runs").glob("maha-nash-anchor-rope_seed0_*.json")
    record = json.loads(path.read_text())
    model = record["train_config"]["model"]
    assert model["rotary"] is True and model["anchor_fine"] is True
    for layer in record["fusion"]:
        weights = layer["mean_weight_per_scale"]
        assert weights[0] == 0.0 and sum(weights[1:]) == pytest.approx(1.0, abs=1e-3)
        assert 0.0 <= layer["normalised_entropy"] <= 1.0 and layer["max_regret"] < 1e-6
