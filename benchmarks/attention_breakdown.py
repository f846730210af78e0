"""Where the MAHA layer's forward + backward time goes, against SDPA, at one length.

Complements ``benchmarks/attention.py`` (which sweeps lengths) with the figures behind
its verdicts, all from one run:

* fwd+bwd time (median of interleaved repetitions) of standard attention (SDPA) and of
  the MAHA layer with the ``"mean"`` fusion (no game) and with the ``"nash"`` fusion:
  ``nash - mean`` is what solving the scale game (utilities, Gram matrices, the exact
  solve, its implicit backward) costs on top of a plain average of the scales;
* a profile of one ``"nash"`` fwd+bwd (``torch.profiler``, so every figure carries the
  profiler's overhead; read them as shares): the linear projections (``aten::mm`` and
  ``aten::addmm``: Q_l, K_l, V and O), the blocked local attention (its autograd function,
  forward and backward), the coarsest scale's SDPA and the rest;
* with ``--compile``, the same fwd+bwd times after ``torch.compile`` (inductor; minutes).

Writes ``attention_breakdown.json`` and ``attention_breakdown.md`` to ``benchmarks/results/``.

    python benchmarks/attention_breakdown.py             # about 30 s on a 2-core CPU
    python benchmarks/attention_breakdown.py --compile   # adds inductor (several minutes)
    python benchmarks/attention_breakdown.py --quick     # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import maha

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--scales", type=int, default=4)
    p.add_argument("--ratio", type=int, default=2)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--reps", type=int, default=11, help="timed repetitions (median)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (inductor)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.length, args.d_model, args.heads, args.window, args.reps = 256, 32, 2, 16, 2
    return args


def _modules(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    layer = (args.d_model, args.heads, args.scales, args.ratio, args.window)
    return {
        "sdpa": maha.StandardAttention(args.d_model, args.heads, causal=True),
        "maha-mean": maha.MAHAAttention(*layer, "mean", True),
        "maha-nash": maha.MAHAAttention(*layer, "nash", True),
    }


def _step(module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor):
    def run() -> None:
        xg = x.detach().requires_grad_()
        module(xg).backward(grad)

    return run


def timings(jobs: dict, reps: int) -> dict[str, float]:
    """Median fwd+bwd milliseconds of every job, repetitions interleaved."""
    for job in jobs.values():  # warm-up
        job()
        job()
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(reps):
        for name, job in jobs.items():
            start = time.perf_counter()
            job()
            samples[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(v) for name, v in samples.items()}


def breakdown(job) -> dict[str, float]:
    """Profiled milliseconds of one fwd+bwd by component (see the module docstring)."""
    job()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        job()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e3

    def self_ms(*names: str) -> float:
        return sum(e.self_cpu_time_total for e in events if e.key in names) / 1e3

    def total_ms(*names: str) -> float:
        return sum(e.cpu_time_total for e in events if e.key in names) / 1e3

    parts = {
        "projections": self_ms("aten::mm", "aten::addmm"),
        "local attention": total_ms("_BlockedAttention", "_BlockedAttentionBackward"),
        "coarsest SDPA": self_ms(
            "aten::_scaled_dot_product_flash_attention_for_cpu",
            "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
        ),
    }
    parts["rest (fusion, decomposition, reshapes)"] = total - sum(parts.values())
    return {"profiled total": total, **parts}


def markdown(report: dict) -> str:
    cfg, t = report["config"], report["time_ms"]
    lines = [
        f"# Where the time goes: MAHA fwd+bwd at length {cfg['length']}",
        "",
        f"d={cfg['d_model']}, heads={cfg['heads']}, scales={cfg['scales']}, r={cfg['ratio']}, "
        f"window={cfg['window']}, causal, batch 1, threads={cfg['threads']}. Generated "
        f"{report['generated']} on {report['machine']}.",
        "",
        "| module | fwd+bwd (ms) | vs SDPA |",
        "| --- | ---: | ---: |",
    ]
    for name, ms in t.items():
        lines.append(f"| {name} | {ms:.1f} | {t['sdpa'] / ms:.2f}x |")
    lines += [
        "",
        f"Solving the scale game costs {t['maha-nash'] - t['maha-mean']:.1f} ms on top of the "
        f"mean of the scales ({100 * (t['maha-nash'] - t['maha-mean']) / t['maha-nash']:.0f}% "
        "of the nash layer).",
        "",
        "Profile of one maha-nash fwd+bwd (torch.profiler; the overhead inflates every part):",
        "",
        "| component | profiled ms | share |",
        "| --- | ---: | ---: |",
    ]
    prof = report["profile_ms"]
    for name, ms in prof.items():
        if name != "profiled total":
            lines.append(f"| {name} | {ms:.1f} | {100 * ms / prof['profiled total']:.0f}% |")
    if "compiled_time_ms" in report:
        lines += ["", "torch.compile (inductor):", "", "| module | eager ms | compiled ms |"]
        lines.append("| --- | ---: | ---: |")
        for name, ms in report["compiled_time_ms"].items():
            lines.append(f"| {name} | {t[name]:.1f} | {ms:.1f} |")
        lines.append("")
        lines.append(f"Compilation took {report['compile_s']:.0f} s in all.")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    modules = _modules(args)
    gen = torch.Generator().manual_seed(args.length)
    x = torch.randn(1, args.length, args.d_model, generator=gen)
    grad = torch.randn(1, args.length, args.d_model, generator=gen)
    report: dict = {
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip()
        + f", torch {torch.__version__}, python {sys.version.split()[0]}",
        "command": "python benchmarks/attention_breakdown.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "config": {
            "length": args.length,
            "d_model": args.d_model,
            "heads": args.heads,
            "scales": args.scales,
            "ratio": args.ratio,
            "window": args.window,
            "threads": torch.get_num_threads(),
            "reps": args.reps,
        },
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        jobs = {name: _step(m, x, grad) for name, m in modules.items()}
        report["time_ms"] = timings(jobs, args.reps)
        report["profile_ms"] = breakdown(jobs["maha-nash"])
        if args.compile:
            start = time.perf_counter()
            compiled = {name: _step(torch.compile(m), x, grad) for name, m in modules.items()}
            for job in compiled.values():  # compile outside the timed repetitions
                job()
            report["compile_s"] = time.perf_counter() - start
            report["compiled_time_ms"] = timings(compiled, args.reps)
    text = markdown(report)
    print(text)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "attention_breakdown.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "attention_breakdown.md").write_text(text)
    return report


if __name__ == "__main__":
    main()
