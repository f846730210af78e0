"""The solver benchmark runs end to end (``--quick``) and writes its JSON and Markdown."""

import json

import pytest
from _benchmark_run import load_benchmark, run_benchmark

pytest.importorskip("nashpy")
pytest.importorskip("pygambit")
pytest.importorskip("tqdm")


def test_solver_benchmark_quick(tmp_path):
    done = run_benchmark(
        "solvers", "--quick", "--no-progress", "--quantecon-sizes", "--out-dir", str(tmp_path)
    )  # the QuantEcon rows: the next test
    report = json.loads((tmp_path / "solvers.json").read_text())
    assert report["machine"]["torch_threads"] >= 1
    jobs = {(r["job"], r["size"]) for r in report["jobs"]}
    for job in ("one equilibrium", "all equilibria", "zero-sum"):
        assert (job, "3x3") in jobs and (job, "6x6") in jobs
    for row in report["jobs"]:
        assert row["ours"]["us_per_game"] > 0 and row["ratio_vs_fastest"] > 0
        assert row["fastest_peer"] in row["peers"]
    by_job = {(r["job"], r["size"]): r for r in report["jobs"]}
    assert by_job[("one equilibrium", "6x6")]["ours"]["converged"] == 1.0
    assert by_job[("zero-sum", "3x3")]["ours"]["converged"] == 1.0
    liap = by_job[("3-player: liapunov", "3x3x3")]  # certified by regret, against Gambit
    assert liap["ours"]["converged"] >= 0.9 and liap["ours"]["max_regret_converged"] <= 1e-6
    assert {"gambit.ipa_solve", "gambit.liap_solve"} <= set(liap["peers"])
    table = (tmp_path / "solvers.md").read_text()
    assert "| job | size |" in table and "gambit" in table
    assert "ratio" in done.stdout
    numba = pytest.importorskip("numba")
    assert report["machine"]["numba_kernels"] == numba.__version__  # the kernels ran
    assert f"our numba kernels: {numba.__version__}" in table


def test_no_numba_switches_the_kernels_off_for_the_run():
    from aggregation import accel

    solvers = load_benchmark("solvers")
    assert solvers.parse_args(["--no-numba"]).no_numba
    with accel.use_numba(False):  # what main does with --no-numba
        assert solvers.machine()["numba_kernels"] is None


def test_solver_benchmark_quantecon_rows(tmp_path):
    pytest.importorskip("quantecon")
    run_benchmark(
        "solvers", "--quick", "--no-progress", "--only-quantecon", "--out-dir", str(tmp_path)
    )
    report = json.loads((tmp_path / "solvers.json").read_text())
    rows = {r["job"]: r for r in report["jobs"]}
    assert set(rows) == {
        "QuantEcon: Lemke-Howson",
        "QuantEcon: support enumeration",
        "QuantEcon: vertex enumeration",
    }
    for row in rows.values():
        assert row["size"] == "3x3" and row["target"] == 3.0
        assert row["counts_identical"]  # random games: the same equilibria as QuantEcon
        assert row["met"] == (row["ratio_vs_fastest"] >= 3.0)


def test_time_peer_times_the_call_alone_and_counts_a_timeout_at_the_limit():
    import time

    solvers = load_benchmark("solvers")

    def spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    # a call that ends in time is charged its own duration (not the timer's arming) ...
    mean, failures = solvers.time_peer("spin", spin, [0.02, 0.04], False, 5.0)
    assert failures == 0 and 0.03 <= mean < 0.03 + 0.02  # slack: a busy machine
    # ... and one that runs past the limit is interrupted and counted at the limit
    mean, failures = solvers.time_peer("spin", spin, [10.0, 0.0], False, 0.05)
    assert failures == 1 and mean == pytest.approx(0.025, abs=1e-3)
