"""The generation benchmark runs end to end (``--quick``) and writes JSON, Markdown and PNG."""

import json

import pytest
from _benchmark_run import run_benchmark

pytest.importorskip("matplotlib")


def test_generation_benchmark_quick(tmp_path):
    done = run_benchmark(
        "generation", "--quick", "--compile", "--compile-backend", "aot_eager",
        "--out-dir", str(tmp_path),
    )  # fmt: skip
    report = json.loads((tmp_path / "generation.json").read_text())
    s = report["settings"]
    assert s["quick"] and report["environment"]["threads"] == 1
    # --compile adds a compiled row for the maha-* variant, after the others
    assert s["variants"] == ["maha-nash", "local", "full", "maha-nash (compiled)"]
    assert "load_average" in report["environment"] and report["environment"]["cpu"]
    rows = report["rows"]
    # batch 1 at every context, the larger batch only up to --batch-max-context
    expected = [
        (variant, batch, context)
        for batch in s["batches"]
        for variant in s["variants"]
        for context in s["contexts"]
        if batch == 1 or context <= s["batch_max_context"]
    ]
    assert [(r["variant"], r["batch"], r["context"]) for r in rows] == expected
    d, layers = s["d_model"], s["n_layer"]
    for r in rows:
        assert r["latency_ms"] > 0 and len(r["latency_ms_per_step"]) == s["new_tokens"]
        assert 0 < r["cache_bytes"] <= r["cache_allocated_bytes"]
        assert r["streamed_tokens"] + r["synthetic_tokens"] > 0
        if r["variant"] == "full":  # keys and values of every token, plus the conv history
            kv = 2 * layers * r["batch"] * r["context"] * d * 4
            assert kv <= r["cache_bytes"] <= kv + layers * r["batch"] * 8 * d * 4
        # only the compiled row reports a compilation time (excluded from its latency)
        compiled = r["variant"] == "maha-nash (compiled)"
        assert (r["compile_seconds"] is not None) == compiled
        if compiled:
            assert r["compile_seconds"] > 0
    by_key = {(r["variant"], r["batch"], r["context"]): r["cache_bytes"] for r in rows}
    small, large = min(s["contexts"]), max(s["contexts"])
    # the synthetic fill beyond --full-prefill-max was used, and MAHA's cache is smaller
    assert all(
        r["synthetic_tokens"] > 0
        for r in rows
        if r["variant"] == "full" and r["context"] > s["full_prefill_max"]
    )
    assert by_key["maha-nash", 1, large] < by_key["full", 1, large]
    assert by_key["local", 1, large] == by_key["local", 1, small]  # a window: constant
    table = (tmp_path / "generation.md").read_text()
    assert "| batch | context | variant |" in table and "(synthetic)" in table
    assert "Compiled rows: backend aot_eager" in table
    # the compiled cache holds what the eager one holds
    assert by_key["maha-nash (compiled)", 1, large] == by_key["maha-nash", 1, large]
    assert (tmp_path / "generation.png").stat().st_size > 1000
    assert "ms/token" in done.stderr
