"""MAHA attention against standard attention (same projections + PyTorch SDPA): FLOPs, time, memory.

For every length (default 512 ... 16384; d=256, 4 heads, 4 scales, r=2, window 64, causal,
"nash" fusion) in one run:

* FLOPs, analytically (:mod:`maha.flops`) and with ``torch.utils.flop_counter.FlopCounterMode``
  on the meta device (SDPA there lowers to batched products the counter sees; the counts
  must agree, and the script stops if they do not). The scale-game solver is elementwise
  small linear algebra: it is reported as an analytic estimate, not counted.
* time of the forward pass (no grad) and of forward + backward, median over ``--reps``
  interleaved repetitions (MAHA and SDPA alternate, so load changes hit both);
* peak memory of one forward + backward (CPU: the peak resident set of a fresh
  subprocess, after one warm-up pass on 16 tokens, over its resident set just before,
  the kernel's peak mark being reset there;
  CUDA: ``max_memory_allocated`` over ``memory_allocated`` before, after a warm-up pass at
  the measured length, so that FlexAttention's compilation is not counted). On CPU it is
  measured twice: with glibc's default allocator ("RSS", which keeps freed heap memory
  resident, so many mid-sized temporaries raise the peak beyond what is ever alive at
  once), and with
  ``MALLOC_MMAP_THRESHOLD_=65536`` set in the subprocess ("live": every allocation of
  64 KiB or more is its own mapping, returned on free, so the resident set follows the
  live tensors, the CPU analogue of ``max_memory_allocated``);
* the share of the layer's forward + backward time spent in the fusion (utilities, Gram
  matrices, the equilibrium solve and its implicit backward), timed on the captured input
  of the fusion module (eager);
* with ``--compile``, forward + backward of both modules through
  ``torch.compile(module, fullgraph=True, dynamic=False)`` (``--compile-backend``, default
  inductor, whose C++ kernels use torch's threads), timed in the same interleaved
  repetitions; the compilation (the first call: tracing, code generation and one run) is
  reported apart and not counted. The game fusions then solve by support enumeration
  (no host reads), the eager layer by pivoting (``maha/fusion.py``).

On CUDA (``--device cuda``) every timing synchronises the device, the peer is SDPA's fused
kernel (FlashAttention where it applies) and MAHA's windowed scales run through
FlexAttention (``maha/flex.py``; ``--local-path blocked`` times the blocked path instead);
without CUDA the script stops with a one-line message.

Writes ``attention.json``, ``attention.md`` and ``attention.png`` to ``benchmarks/results/``.

    python benchmarks/attention.py                 # several minutes on a 2-core CPU
    python benchmarks/attention.py --quick         # seconds: a smoke test (tiny sizes)
    python benchmarks/attention.py --compile       # also torch.compile'd rows (minutes more)
    python benchmarks/attention.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_quality import machine  # noqa: E402

import maha  # noqa: E402
from maha import fused_cpu  # noqa: E402
from maha.flex import flex_enabled, use_flex  # noqa: E402
from maha.flops import count_flops, layer_flops, standard_attention_flops  # noqa: E402
from maha.fusion_ops import ScaleRows  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192, 16384])
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--scales", type=int, default=4)
    p.add_argument("--ratio", type=int, default=2)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--strategy", default="nash", choices=maha.STRATEGIES)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (median)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--local-path",
        default="auto",
        choices=["auto", "flex", "blocked"],
        help="windowed scales: auto = FlexAttention on CUDA, blocked elsewhere (maha/flex.py)",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument(
        "--no-fused-cpu",
        action="store_true",
        help="the fusion's PyTorch loops instead of its numba kernels (maha/fused_cpu.py)",
    )
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time fwd+bwd of both modules through torch.compile(fullgraph=True)",
    )
    p.add_argument(
        "--compile-backend",
        default="inductor",
        help="the torch.compile backend of --compile (aot_eager: the graphs without codegen)",
    )
    args = p.parse_args(argv)
    if args.compile and args.compile_backend not in torch.compiler.list_backends(exclude_tags=()):
        raise SystemExit(
            f"attention.py: --compile-backend must be one of "
            f"{', '.join(torch.compiler.list_backends(exclude_tags=()))}; "
            f"received {args.compile_backend!r}"
        )
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            f"attention.py: --device {args.device} needs CUDA, which this machine does not have "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False)"
        )
    if args.local_path == "flex" and not args.device.startswith("cuda"):
        raise SystemExit(
            "attention.py: --local-path flex needs --device cuda (FlexAttention has no "
            f"backward on {args.device} in torch {torch.__version__})"
        )
    if args.quick:  # one thread: tiny ops do not gain from more, and contend on a busy CPU
        args.lengths, args.d_model, args.heads, args.window = [64, 256], 32, 2, 16
        args.reps, args.threads = 1, 1
    return args


def local_path(args: argparse.Namespace):
    """The context forcing ``--local-path`` (``use_flex``); a no-op for ``auto``."""
    return use_flex({"auto": None, "flex": True, "blocked": False}[args.local_path])


def local_path_name(args: argparse.Namespace) -> str:
    """Which path the windowed scales take: ``"flex"`` (FlexAttention) or ``"blocked"``."""
    with local_path(args):
        head_dim = args.d_model // args.heads
        return "flex" if flex_enabled(args.device, head_dim=head_dim) else "blocked"


def build(args: argparse.Namespace, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    ours = maha.MAHAAttention(
        args.d_model, args.heads, args.scales, args.ratio, args.window, args.strategy, True
    )
    peer = maha.StandardAttention(args.d_model, args.heads, causal=True)
    return ours.to(args.device), peer.to(args.device)


# ----------------------------------------------------------------------- FLOPs
def flops(args: argparse.Namespace, n: int) -> dict[str, object]:
    """Analytic and FlopCounterMode counts; raises if they disagree."""
    ours, peer = build(args)
    analytic = layer_flops(ours, n, batch=args.batch)
    std = standard_attention_flops(n, args.d_model, batch=args.batch)
    x = torch.empty(args.batch, n, args.d_model, device="meta")
    # The solver validates values, so it cannot run on meta tensors: count the layer with
    # "mean" fusion and add the game strategies' extra products (utilities, Gram) counted
    # on the fusion module itself.
    mean = maha.MAHAAttention(
        args.d_model, args.heads, args.scales, args.ratio, args.window, "mean", True
    ).to("meta")
    counted = count_flops(mean, x)
    if ours.fusion.uses_game and args.scales > 1:
        o = torch.empty(args.batch, n, args.heads, args.scales, ours.head_dim, device="meta")
        counted += count_flops(ours.fusion.to("meta").game_inputs, o)
    counted_std = count_flops(peer.to("meta"), x)
    if counted != analytic.counted or counted_std != std.counted:
        raise RuntimeError(
            f"FLOP counts disagree at n={n}: MAHA analytic {analytic.counted} vs counter "
            f"{counted}; standard analytic {std.counted} vs counter {counted_std}"
        )
    return {
        "maha": analytic.as_dict(),
        "standard": std.as_dict(),
        "flop_counter": {"maha": counted, "standard": counted_std},
        "core_reduction": 1 - analytic.core / std.core,
        "layer_reduction": 1 - analytic.total / std.total,
    }


# ------------------------------------------------------------------------ time
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def timings(args: argparse.Namespace, n: int) -> dict[str, float]:
    """Median ms of every job (``*_ms``), and with ``--compile`` the compile seconds (``*_s``)."""
    ours, peer = build(args)
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(args.batch, n, args.d_model, generator=gen).to(args.device)
    grad = torch.randn(args.batch, n, args.d_model, generator=gen).to(args.device)
    captured: dict[str, torch.Tensor] = {}

    def capture(module, inputs):
        captured["o"], captured["present"] = inputs

    handle = ours.fusion.register_forward_pre_hook(capture)

    def forward(module):
        def run():
            with torch.no_grad():
                module(x)

        return run

    def forward_backward(module):
        def run():
            xg = x.detach().requires_grad_()
            module(xg).backward(grad)

        return run

    def fusion_fb():
        rows = captured["o"]  # the per-scale outputs (maha.fusion_ops.ScaleRows)
        leaves = [out.detach().requires_grad_() for out in rows.outs]
        o = ScaleRows(leaves, rows.length, rows.ratio, rows.causal)
        out = ours.fusion(o, captured["present"]).output
        if "grad" not in captured:  # one fixed cotangent, as the layer's `grad`
            captured["grad"] = torch.randn(out.shape, generator=gen).to(out.device)
        out.backward(captured["grad"])

    def fusion_f():
        with torch.no_grad():
            ours.fusion(captured["o"], captured["present"])

    jobs = {
        "maha_forward": forward(ours),
        "sdpa_forward": forward(peer),
        "maha_forward_backward": forward_backward(ours),
        "sdpa_forward_backward": forward_backward(peer),
        "fusion_forward": fusion_f,
        "fusion_forward_backward": fusion_fb,
    }
    warm_up = 1 if args.quick else 2
    compile_s: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(warm_up):  # warm-up (and capture the fusion's input)
            for job in jobs.values():
                job()
        handle.remove()  # before compiling: the hook is no part of the timed layer
        if args.compile:
            torch._dynamo.reset()  # a fresh graph per length (static shapes)
            for name, module in (("maha", ours), ("sdpa", peer)):
                compiled = torch.compile(
                    module, backend=args.compile_backend, fullgraph=True, dynamic=False
                )
                job = forward_backward(compiled)
                compile_s[f"{name}_compile_s"] = _timed(job, args.device)  # the first call
                for _ in range(warm_up):
                    job()
                jobs[f"{name}_compiled_forward_backward"] = job
        samples: dict[str, list[float]] = {k: [] for k in jobs}
        for _ in range(args.reps):  # interleaved repetitions
            for name, job in jobs.items():
                samples[name].append(_timed(job, args.device))
    return {k + "_ms": 1e3 * statistics.median(v) for k, v in samples.items()} | compile_s


# ---------------------------------------------------------------------- memory
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak_child(args: argparse.Namespace, n: int, which: str, queue) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    ours, peer = build(args)
    module = ours if which == "maha" else peer
    # One small warm-up pass first, so that one-time library state (thread pools, BLAS and
    # LAPACK workspaces, the solver's worker threads) is not counted as the layer's memory;
    # on CUDA at the measured length, so that FlexAttention compiles before the measurement.
    cuda = args.device.startswith("cuda")
    warm = torch.randn(
        args.batch, n if cuda else 16, args.d_model, device=args.device, requires_grad=True
    )
    with warnings.catch_warnings(), local_path(args):
        warnings.simplefilter("ignore", RuntimeWarning)
        module(warm).sum().backward()
    module.zero_grad(set_to_none=True)
    del warm
    x = torch.randn(args.batch, n, args.d_model, device=args.device, requires_grad=True)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
        _reset_peak_rss()  # else the peak of the imports would count
    with warnings.catch_warnings(), local_path(args):
        warnings.simplefilter("ignore", RuntimeWarning)
        module(x).sum().backward()
    if args.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _peak_rss_bytes() - base
    queue.put(peak)


@contextlib.contextmanager
def _environment(name: str, value: str | None):
    """Set (``value`` not None) an environment variable for the enclosed block only."""
    saved = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if value is not None:
            if saved is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = saved


def peak_memory(args: argparse.Namespace, n: int) -> dict[str, float]:
    """``{maha,sdpa}_peak_mib`` (default allocator) and, on CPU, ``{maha,sdpa}_live_mib``."""
    ctx = mp.get_context("spawn")
    out = {}
    modes = [("peak", None)]
    if not args.device.startswith("cuda"):
        modes.append(("live", "65536"))  # glibc reads it when the subprocess starts
    for label, threshold in modes:
        for which in ("maha", "sdpa"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_peak_child, args=(args, n, which, queue))
            with _environment("MALLOC_MMAP_THRESHOLD_", threshold):  # the child inherits it
                proc.start()
            value = queue.get(timeout=600)
            proc.join()
            out[f"{which}_{label}_mib"] = value / 2**20
    return out


# ---------------------------------------------------------------------- report
def recommended(report: dict) -> str:
    """Which MAHA row to use: the faster fwd+bwd (eager or compiled) at the longest length."""
    last = report["rows"][-1]
    if "maha_compiled_forward_backward_ms" not in last:
        return "eager"
    eager, compiled = last["maha_forward_backward_ms"], last["maha_compiled_forward_backward_ms"]
    return "compiled" if compiled < eager else "eager"


def recommendation_text(report: dict) -> str:
    """One sentence naming the recommended row and why (the README follows it)."""
    last = report["rows"][-1]
    if "maha_compiled_forward_backward_ms" not in last:
        return (
            "Recommended: the eager layer (these rows; `--compile` adds torch.compile'd rows "
            "to compare)."
        )
    eager, compiled = last["maha_forward_backward_ms"], last["maha_compiled_forward_backward_ms"]
    choice = recommended(report)
    return (
        f"Recommended: the {choice} layer, the faster MAHA fwd+bwd at length "
        f"{last['length']} ({min(eager, compiled):.1f} ms {choice} vs "
        f"{max(eager, compiled):.1f} ms {'eager' if choice == 'compiled' else 'compiled'})."
    )


def markdown(report: dict) -> str:
    cfg = report["config"]
    compiled = any("maha_compiled_forward_backward_ms" in row for row in report["rows"])
    extra_head = (
        " fwd+bwd compiled MAHA / SDPA (ms) | compiled speed-up | MAHA compiled / eager |"
        if compiled
        else ""
    )
    lines = [
        "# MAHA attention vs standard attention (SDPA)",
        "",
        f"d={cfg['d_model']}, heads={cfg['heads']}, scales={cfg['scales']}, r={cfg['ratio']}, "
        f"window={cfg['window']}, strategy={cfg['strategy']}, causal, batch={cfg['batch']}, "
        f"device={cfg['device']}{' (' + cfg['gpu'] + ')' if cfg.get('gpu') else ''}, "
        f"local windows: {cfg['local_path']}, "
        + (f"fusion kernels: {cfg['fusion_kernels']}, " if cfg.get("fusion_kernels") else "")
        + f"threads={cfg['threads']}. "
        f"Generated {report['generated']} on {report['machine']}"
        + (
            f", 1-minute load {report['load_average'][0]:.2f} before the run."
            if report.get("load_average")
            else "."
        ),
        "",
        "| length | core FLOPs saved | layer FLOPs saved | fwd MAHA / SDPA (ms) | fwd speed-up "
        "| fwd+bwd MAHA / SDPA (ms) | fwd+bwd speed-up | peak MiB MAHA / SDPA (RSS) "
        "| live MiB MAHA / SDPA | fusion share |" + extra_head,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        + (" ---: | ---: | ---: |" if compiled else ""),
    ]
    for row in report["rows"]:
        mem = (
            f"{row['maha_peak_mib']:.0f} / {row['sdpa_peak_mib']:.0f}"
            if "maha_peak_mib" in row
            else "n/a"
        )
        live = (
            f"{row['maha_live_mib']:.0f} / {row['sdpa_live_mib']:.0f}"
            if "maha_live_mib" in row
            else "n/a"
        )
        lines.append(
            f"| {row['length']} | {100 * row['flops']['core_reduction']:.1f}% "
            f"| {100 * row['flops']['layer_reduction']:.1f}% "
            f"| {row['maha_forward_ms']:.1f} / {row['sdpa_forward_ms']:.1f} "
            f"| {row['forward_speedup']:.2f}x "
            f"| {row['maha_forward_backward_ms']:.1f} / {row['sdpa_forward_backward_ms']:.1f} "
            f"| {row['forward_backward_speedup']:.2f}x | {mem} | {live} "
            f"| {100 * row['fusion_share']:.1f}% |"
            + (
                f" {row['maha_compiled_forward_backward_ms']:.1f} / "
                f"{row['sdpa_compiled_forward_backward_ms']:.1f} "
                f"| {row['compiled_forward_backward_speedup']:.2f}x "
                f"| {row['maha_compiled_over_eager']:.2f} |"
                if compiled
                else ""
            )
        )
    lines += ["", recommendation_text(report)]
    if compiled:
        times = ", ".join(
            f"{row['length']}: {row['maha_compile_s']:.1f} s MAHA, {row['sdpa_compile_s']:.1f} s "
            "SDPA"
            for row in report["rows"]
        )
        lines += [
            "",
            f"Compiled rows: `torch.compile(module, backend={cfg['compile']!r}, fullgraph=True, "
            f"dynamic=False)`, inductor C++ threads {cfg['compile_threads']}; the game fusion "
            "solves by support enumeration there (pivoting in eager); compiled speed-up is "
            "against SDPA compiled the same way. Compilation (the first fwd+bwd call, with the "
            f"on-disk caches as found; not in the timings): {times}.",
        ]
    lines += ["", "Targets:", ""]
    lines += [f"- {k}: {v}" for k, v in report["targets"].items()]
    lines += [
        "",
        "FLOPs: analytic formulas of `maha/flops.py`, equal to `FlopCounterMode` on the meta "
        "device (matrix-class work; the solver estimate is added analytically). Time: median "
        "of interleaved repetitions. Memory: peak resident set of one forward + backward in a "
        "fresh process over the resident set before it; RSS with glibc's default allocator "
        "(freed heap memory stays resident), live with `MALLOC_MMAP_THRESHOLD_=65536` (every "
        "allocation of 64 KiB or more returned to the system on free, so the peak follows "
        "the live tensors). Fusion share: forward + backward time of the fusion module "
        "(utilities, Gram, equilibrium, implicit backward) over the layer's (both eager).",
        "",
    ]
    return "\n".join(lines)


def targets(rows: list[dict]) -> dict[str, str]:
    by_n = {row["length"]: row for row in rows}
    out = {}

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if 4096 in by_n:
        r = by_n[4096]
        core, layer = r["flops"]["core_reduction"], r["flops"]["layer_reduction"]
        out["core FLOPs >= 90% fewer at 4096"] = f"{verdict(core >= 0.9)} ({100 * core:.1f}%)"
        out["layer FLOPs >= 75% fewer at 4096"] = f"{verdict(layer >= 0.75)} ({100 * layer:.1f}%)"
        s = r["forward_backward_speedup"]
        out["fwd+bwd >= 2x faster at 4096"] = f"{verdict(s >= 2)} ({s:.2f}x)"
    if 16384 in by_n:
        s = by_n[16384]["forward_backward_speedup"]
        out["fwd+bwd >= 5x faster at 16384"] = f"{verdict(s >= 5)} ({s:.2f}x)"
    for n, goal in ((4096, 2), (16384, 5)):
        if "compiled_forward_backward_speedup" in by_n.get(n, {}):
            s = by_n[n]["compiled_forward_backward_speedup"]
            out[f"fwd+bwd >= {goal}x faster at {n}, compiled (vs SDPA compiled)"] = (
                f"{verdict(s >= goal)} ({s:.2f}x)"
            )
    mem_rows = [r for r in rows if "maha_peak_mib" in r]
    if mem_rows:
        parts, ok = [], True
        for label in ("peak", "live"):
            have = [r for r in mem_rows if f"maha_{label}_mib" in r]
            if not have:
                continue
            ok = ok and all(r[f"maha_{label}_mib"] <= r[f"sdpa_{label}_mib"] for r in have)
            worst = max(r[f"maha_{label}_mib"] / max(r[f"sdpa_{label}_mib"], 1e-9) for r in have)
            parts.append(f"worst ratio {'RSS' if label == 'peak' else label} {worst:.2f}")
        out["peak memory <= SDPA's"] = f"{verdict(ok)} ({', '.join(parts)})"
    share = max(r["fusion_share"] for r in rows)
    out["fusion share < 15%"] = f"{verdict(share < 0.15)} (largest {100 * share:.1f}%)"
    return out


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    n = [r["length"] for r in rows]
    mem = [r for r in rows if "maha_peak_mib" in r]
    panels = 3 if mem else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    ax1, ax2 = axes[0], axes[1]
    ax1.loglog(n, [r["flops"]["maha"]["total"] for r in rows], "o-", label="MAHA layer")
    ax1.loglog(n, [r["flops"]["maha"]["core"] for r in rows], "o--", label="MAHA core")
    ax1.loglog(n, [r["flops"]["standard"]["total"] for r in rows], "s-", label="standard layer")
    ax1.loglog(n, [r["flops"]["standard"]["core"] for r in rows], "s--", label="standard core")
    ax1.set_xlabel("length")
    ax1.set_ylabel("forward FLOPs")
    ax1.set_xscale("log", base=2)
    ax1.legend()
    ax2.loglog(n, [r["maha_forward_backward_ms"] for r in rows], "o-", label="MAHA fwd+bwd")
    ax2.loglog(n, [r["sdpa_forward_backward_ms"] for r in rows], "s-", label="SDPA fwd+bwd")
    ax2.loglog(n, [r["maha_forward_ms"] for r in rows], "o--", label="MAHA fwd")
    ax2.loglog(n, [r["sdpa_forward_ms"] for r in rows], "s--", label="SDPA fwd")
    if all("maha_compiled_forward_backward_ms" in r for r in rows):
        for who, style in (("maha", "o:"), ("sdpa", "s:")):
            ax2.loglog(
                n,
                [r[f"{who}_compiled_forward_backward_ms"] for r in rows],
                style,
                label=f"{'MAHA' if who == 'maha' else 'SDPA'} fwd+bwd compiled",
            )
    ax2.set_xlabel("length")
    ax2.set_ylabel("time (ms)")
    ax2.set_xscale("log", base=2)
    ax2.legend()
    if mem:
        ax3 = axes[2]
        m = [r["length"] for r in mem]
        for key, style, label in (
            ("maha_peak_mib", "o-", "MAHA (RSS)"),
            ("sdpa_peak_mib", "s-", "SDPA (RSS)"),
            ("maha_live_mib", "o--", "MAHA (live)"),
            ("sdpa_live_mib", "s--", "SDPA (live)"),
        ):
            if all(key in r for r in mem):
                ax3.loglog(m, [r[key] for r in mem], style, label=label)
        ax3.set_xlabel("length")
        ax3.set_ylabel("peak memory of fwd+bwd (MiB)")
        ax3.set_xscale("log", base=2)
        ax3.legend()
    cfg = report["config"]
    fig.suptitle(
        f"MAHA vs SDPA: d={cfg['d_model']}, H={cfg['heads']}, L={cfg['scales']}, "
        f"r={cfg['ratio']}, w={cfg['window']}, {cfg['strategy']}, {cfg['device']}, "
        f"{cfg['threads']} thread(s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _inductor_threads() -> int:
    """The threads of inductor's C++ kernels: ``cpp.threads``, or torch's when it is -1."""
    from torch._inductor import config as inductor_config

    threads = inductor_config.cpp.threads
    return torch.get_num_threads() if threads < 1 else threads


def fusion_kernels_name() -> str:
    """Which kernels the CPU fusion runs: numba's (with its version) or PyTorch's loops."""
    if fused_cpu.available():
        return f"numba {fused_cpu.numba.__version__}"
    return "PyTorch loops"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_fused_cpu:  # here and in the memory subprocesses (they inherit the variable)
        os.environ["MAHA_FUSED_CPU"] = "0"
    with fused_cpu.use_fused_cpu(fused_cpu.available() and not args.no_fused_cpu):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> dict:
    # the machine's 1-, 5- and 15-minute load before the run: on a shared machine the
    # ratios move with it (see the README)
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    rows = []
    for n in args.lengths:
        row: dict[str, object] = {"length": n, "flops": flops(args, n)}
        with local_path(args):
            row.update(timings(args, n))
        if not args.no_memory and (not args.quick or n == args.lengths[-1]):
            row.update(peak_memory(args, n))
        row["forward_speedup"] = row["sdpa_forward_ms"] / row["maha_forward_ms"]
        row["forward_backward_speedup"] = (
            row["sdpa_forward_backward_ms"] / row["maha_forward_backward_ms"]
        )
        row["fusion_share"] = row["fusion_forward_backward_ms"] / row["maha_forward_backward_ms"]
        if args.compile:
            row["compiled_forward_backward_speedup"] = (
                row["sdpa_compiled_forward_backward_ms"] / row["maha_compiled_forward_backward_ms"]
            )
            row["maha_compiled_over_eager"] = (
                row["maha_compiled_forward_backward_ms"] / row["maha_forward_backward_ms"]
            )
        rows.append(row)
        f = row["flops"]
        mem = (
            f", peak MiB {row['maha_peak_mib']:.0f} vs {row['sdpa_peak_mib']:.0f}"
            if "maha_peak_mib" in row
            else ""
        )
        if "maha_live_mib" in row:
            mem += f" (live {row['maha_live_mib']:.0f} vs {row['sdpa_live_mib']:.0f})"
        print(
            f"n={n:6d}  FLOPs saved: core {100 * f['core_reduction']:.1f}%, layer "
            f"{100 * f['layer_reduction']:.1f}%  |  fwd {row['maha_forward_ms']:.1f} vs "
            f"{row['sdpa_forward_ms']:.1f} ms ({row['forward_speedup']:.2f}x)  fwd+bwd "
            f"{row['maha_forward_backward_ms']:.1f} vs {row['sdpa_forward_backward_ms']:.1f} ms "
            f"({row['forward_backward_speedup']:.2f}x){mem}  |  fusion share "
            f"{100 * row['fusion_share']:.1f}%",
            flush=True,
        )
        if args.compile:
            print(
                f"         compiled fwd+bwd {row['maha_compiled_forward_backward_ms']:.1f} vs "
                f"{row['sdpa_compiled_forward_backward_ms']:.1f} ms "
                f"({row['compiled_forward_backward_speedup']:.2f}x)  |  compile "
                f"{row['maha_compile_s']:.1f} s MAHA, {row['sdpa_compile_s']:.1f} s SDPA",
                flush=True,
            )
    config = {
        "d_model": args.d_model,
        "heads": args.heads,
        "scales": args.scales,
        "ratio": args.ratio,
        "window": args.window,
        "strategy": args.strategy,
        "batch": args.batch,
        "device": args.device,
        "local_path": local_path_name(args),
        "fusion_kernels": fusion_kernels_name() if args.device == "cpu" else None,
        "gpu": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None,
        "threads": torch.get_num_threads(),
        "reps": args.reps,
        "quick": args.quick,
        "compile": args.compile_backend if args.compile else None,
        "compile_threads": _inductor_threads() if args.compile else None,
    }
    report = {
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        # the CPU model: SDPA's speed, and so every ratio, differs between models
        "machine": f"{platform.machine()} ({machine()['cpu']})"
        + f", torch {torch.__version__}, python {sys.version.split()[0]}",
        "load_average": load_before,
        "command": "python benchmarks/attention.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "config": config,
        "rows": rows,
        "targets": targets(rows),
    }
    report["recommended"] = recommended(report)
    for key, value in report["targets"].items():
        print(f"target: {key}: {value}")
    print(recommendation_text(report))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "attention.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "attention.md").write_text(markdown(report))
    plot(report, args.out_dir / "attention.png")
    return report


if __name__ == "__main__":
    main()
