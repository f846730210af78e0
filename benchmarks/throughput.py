"""Training throughput at long context: MAHA against full attention, tokens per second.

Each variant trains for a few steps on real text (the standard library) at ``--seq-len``
(default 4096) through the real trainer (``python -m maha.training``, one process per
variant, the same model widths as ``benchmarks/lm_quality.py``). The first ``--warmup``
steps are discarded; the throughput is ``B T / median(step time)`` over the rest, one step
being forward, backward, clipping and the AdamW update. Ratios are against ``full`` measured
in the same run. No parameter matching here: ``full`` keeps the default FFN width, so it has
fewer parameters than MAHA, which favours ``full``.

Writes ``throughput.json`` and ``throughput.md`` to ``benchmarks/results/``.

    python benchmarks/throughput.py            # about 2 minutes on an idle 2-core CPU
    python benchmarks/throughput.py --quick    # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_quality import RESULTS, machine  # noqa: E402

DEFAULT_VARIANTS = ("full", "local", "maha-nash", "maha-convex", "maha-softmax")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--steps", type=int, default=4, help="timed steps after the warm-up")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--num-scales", type=int, default=4)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-bytes", type=int, default=2_000_000, help="sample of the corpus")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = p.parse_args(argv)
    if args.quick:  # one thread: tiny ops do not gain from more, and contend on a busy CPU
        args.threads = 1
        args.seq_len, args.steps, args.d_model, args.n_layer = 128, 2, 32, 1
        args.n_head, args.num_scales, args.window, args.max_bytes = 2, 3, 16, 100_000
    return args


def measure(variant: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    out = workdir / f"{variant}.json"
    steps = args.warmup + args.steps
    cmd = [
        sys.executable, "-m", "maha.training", "--variant", variant,
        "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size),
        "--d-model", str(args.d_model), "--n-layer", str(args.n_layer),
        "--n-head", str(args.n_head), "--num-scales", str(args.num_scales),
        "--window", str(args.window), "--steps", str(steps), "--eval-every", "0",
        "--eval-sequences", "1", "--max-bytes", str(args.max_bytes), "--device", "cpu",
        "--no-progress", "--json-out", str(out),
    ]  # fmt: skip
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    run = json.loads(out.read_text())
    timed = run["step_seconds"][args.warmup :]
    median = statistics.median(timed)
    return {
        "tokens_per_s": args.batch_size * args.seq_len / median,
        "median_step_s": median,
        "step_seconds": run["step_seconds"],
        "peak_mem_mb": run["peak_mem_mb"],
        "start_mem_mb": run["start_mem_mb"],
        "num_parameters": run["num_parameters"],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            print(f"[throughput] {variant} at length {args.seq_len}", file=sys.stderr)
            rows[variant] = measure(variant, args, Path(tmp))
    full = rows.get("full")
    for r in rows.values():
        r["speedup_vs_full"] = r["tokens_per_s"] / full["tokens_per_s"] if full else None
    report: dict[str, Any] = {
        "benchmark": "throughput",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", "benchmarks/throughput.py", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out_dir", "variants")},
        "variants": rows,
        "wall_seconds": time.perf_counter() - started,
    }
    if full and "maha-nash" in rows:
        ratio = rows["maha-nash"]["speedup_vs_full"]
        verdict = "met" if ratio > 1 else "missed"
        report["target"] = f"maha-nash trains faster than full at {args.seq_len}: {verdict}"
        report["target"] += f" ({ratio:.2f}x)"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Training throughput at length {args.seq_len}",
        "",
        f"Batch {args.batch_size} x {args.seq_len} bytes, d_model={args.d_model}, "
        f"{args.n_layer} layers, {args.n_head} heads, {args.num_scales} scales, window "
        f"{args.window}; median of {args.steps} steps after {args.warmup} warm-up; "
        f"{args.threads} CPU threads. Machine: {report['machine']['cpu']}, torch "
        f"{report['machine']['torch']}; date {report['date']}.",
        "",
        "| variant | parameters | step s | tokens/s | vs full | peak RSS MB | added MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        vs = f"{r['speedup_vs_full']:.2f}x" if full else "-"
        lines.append(
            f"| {name} | {r['num_parameters']:,} | {r['median_step_s']:.3f} | "
            f"{r['tokens_per_s']:,.0f} | {vs} | {r['peak_mem_mb']:.0f} | "
            f"{r['peak_mem_mb'] - r['start_mem_mb']:.0f} |"
        )
    lines += ["", f"Command: `{report['command']}`"]
    if "target" in report:
        lines += ["", f"- {report['target']}"]
    (args.out_dir / "throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
