"""Where the MAHA layer's forward + backward time goes, against SDPA, at one length.

Complements ``benchmarks/attention.py`` (which sweeps lengths) with the figures behind
its verdicts, all from one run:

* fwd+bwd time (median of interleaved repetitions) of standard attention (SDPA) and of
  the MAHA layer with the ``"mean"`` fusion (no game) and with the ``"nash"`` fusion:
  ``nash - mean`` is what solving the scale game (utilities, Gram matrices, the exact
  solve, its implicit backward) costs on top of a plain average of the scales;
* the ``"nash"`` layer's forward + backward split into its stages, each timed on its own
  (its inputs computed once, fixed random cotangents, repetitions interleaved with the
  whole layer's): the decomposition of ``x``, the value projection and its decomposition,
  every scale's query/key projection with its attention (blocked local windows, or SDPA
  for the coarsest), and the fusion with the output projection; what the stages do not
  account for (autograd's sums of the gradients that meet, memory no longer in cache) is
  reported as the rest. No profiler: ``torch.profiler`` inflates small ops and, on the
  machines we measured, changes the allocator's state (thousands of page faults per step
  where the unprofiled layer has none);
* what each module and each stage keeps for its backward: the distinct storages that go
  through ``save_for_backward`` in one forward (``torch.autograd.graph.saved_tensors_hooks``;
  tensors that a backward closure holds otherwise are not seen), in MiB;
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
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_quality import machine  # noqa: E402  (the one home of the CPU model lookup)

import maha  # noqa: E402
from maha.fusion_ops import scale_rows  # noqa: E402

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


def saved_mib(job) -> float:
    """MiB of the distinct storages that one run of ``job`` saves for backward."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        job()
    return sum(storages.values()) / 2**20


def _backward(outs, cotangents) -> None:
    torch.autograd.backward(list(outs), list(cotangents))


def stage_jobs(layer: maha.MAHAAttention, x: torch.Tensor, grad: torch.Tensor) -> dict:
    """One fwd+bwd job per stage of ``layer`` on ``x`` (see the module docstring)."""
    att, gen = layer.attention, torch.Generator().manual_seed(1)
    with torch.no_grad():  # every stage's inputs, computed once
        scales = [t.detach() for t in layer.decomposition(x, None)]  # L x (B, n_l, d)
        values = [t.detach() for t in layer.decomposition(att.value(x), None)]
        outs = [o.detach() for o, _ in att(scales, values, None, causal=True)]

    def like(ts):  # fixed cotangents
        return [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in ts]

    d_scales, d_outs = like(scales), like(outs)

    def chain() -> None:
        _backward(layer.decomposition(x.detach().requires_grad_(), None), d_scales)

    def value_chain() -> None:
        xg = x.detach().requires_grad_()
        _backward(layer.decomposition(att.value(xg), None), d_scales)

    def scale(l: int):
        def run() -> None:
            x_l = scales[l].detach().requires_grad_()
            v_l = values[l].detach().requires_grad_()
            out, _ = att.scale_attention(l, x_l, v_l, None, causal=True)  # (B, n_l, H, d_h)
            _backward([out], [d_outs[l]])

        return run

    def fusion() -> None:
        leaves = [o.detach().requires_grad_() for o in outs]
        rows, present = scale_rows(leaves, [None] * len(leaves), x.shape[1], layer.ratio,
                                   causal=True)  # fmt: skip
        out, _ = layer.fuse(rows, present)  # (B, n, d)
        out.backward(grad)

    jobs = {"decomposition of x": chain, "value projection + its decomposition": value_chain}
    for l, out in enumerate(outs):
        local = att.is_local(l, out.shape[1])
        what = "local attention" if local else "SDPA"
        jobs[f"scale {l} ({out.shape[1]:,} rows): Q/K projection + {what}"] = scale(l)
    jobs["fusion + output projection"] = fusion
    return jobs


def stages(
    layer: maha.MAHAAttention, x: torch.Tensor, grad: torch.Tensor, reps: int
) -> tuple[dict, dict]:
    """Median fwd+bwd ms of the whole layer and of each stage, and the rest; and the MiB
    that each stage saves for its backward (:func:`saved_mib`; the whole layer's is the
    module table's)."""
    jobs = {"layer": _step(layer, x, grad), **stage_jobs(layer, x, grad)}
    times = timings(jobs, reps)
    total = times.pop("layer")
    saved = {name: saved_mib(job) for name, job in jobs.items() if name != "layer"}
    return {"layer": total, **times, "rest": total - sum(times.values())}, saved


def markdown(report: dict) -> str:
    cfg, t = report["config"], report["time_ms"]
    lines = [
        f"# Where the time goes: MAHA fwd+bwd at length {cfg['length']}",
        "",
        f"d={cfg['d_model']}, heads={cfg['heads']}, scales={cfg['scales']}, r={cfg['ratio']}, "
        f"window={cfg['window']}, causal, batch 1, threads={cfg['threads']}. Generated "
        f"{report['generated']} on {report['machine']}"
        + (
            f", 1-minute load {report['load_average'][0]:.2f} before the run."
            if report.get("load_average")
            else "."
        ),
        "",
        "| module | fwd+bwd (ms) | vs SDPA | saved for backward (MiB) |",
        "| --- | ---: | ---: | ---: |",
    ]
    saved, stage_saved = report["saved_mib"], report["stage_saved_mib"]
    for name, ms in t.items():
        lines.append(f"| {name} | {ms:.1f} | {t['sdpa'] / ms:.2f}x | {saved[name]:.1f} |")
    lines += [
        "",
        f"Solving the scale game costs {t['maha-nash'] - t['maha-mean']:.1f} ms on top of the "
        f"mean of the scales ({100 * (t['maha-nash'] - t['maha-mean']) / t['maha-nash']:.0f}% "
        "of the nash layer).",
        "",
        "The maha-nash layer's forward + backward by stage (each timed on its own, no "
        "profiler; the rest is what the stages do not account for: autograd's sums of the "
        "gradients that meet, inputs no longer in cache). Saved: what the stage keeps for its "
        "backward, its own inputs included (a tensor that two stages keep counts in both, once "
        "in the layer):",
        "",
        "| stage | fwd+bwd ms | share of the layer | saved MiB |",
        "| --- | ---: | ---: | ---: |",
    ]
    st = report["stages_ms"]
    for name, ms in st.items():
        if name not in ("layer", "rest"):
            share = 100 * ms / st["layer"]
            lines.append(f"| {name} | {ms:.1f} | {share:.0f}% | {stage_saved[name]:.1f} |")
    lines.append(f"| rest | {st['rest']:.1f} | {100 * st['rest'] / st['layer']:.0f}% | |")
    lines.append(f"| the layer | {st['layer']:.1f} | 100% | {saved['maha-nash']:.1f} |")
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
        "machine": f"{platform.machine()} ({machine()['cpu']}), torch {torch.__version__}, "
        f"python {sys.version.split()[0]}",
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
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
        report["saved_mib"] = {name: saved_mib(job) for name, job in jobs.items()}
        report["stages_ms"], report["stage_saved_mib"] = stages(
            modules["maha-nash"], x, grad, args.reps
        )
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
