"""Generation with a cache: per-token latency and cache memory against context length.

For each variant (``maha-nash``, ``local``, ``full`` with its key/value cache; one
:class:`maha.MAHAConfig`: d=256, 4 layers, 4 heads, 4 scales, r=2, window 64) and each
batch size (1 and 16 rows), one cache is grown through the contexts in increasing order
(1k, 4k, 16k, 64k tokens). At each context ``C`` the cache holds exactly ``C`` tokens;
then the model decodes ``--warmup`` + ``--new-tokens`` tokens one at a time
(``logits = model(token, cache=cache)``, greedy), the variants taking turns token by
token (interleaved, so that load changes on a shared machine hit all of them), and the
latency of a token is the median over the ``--new-tokens`` timed steps. Cache memory is
``cache.nbytes``: the bytes of the tensors the cache holds after ``C`` tokens (keys,
values, partial blocks, the convolution's history); the buffers of the global scales and
of the key/value cache grow by doubling, so what is allocated is up to twice that
("allocated" in the JSON: the bytes of the distinct storages the cache's tensors live in).

How a cache reaches ``C`` tokens: MAHA and ``local`` stream random prompt bytes through
the model in chunks of ``--chunk`` tokens over all rows (``--chunk // B`` per row;
``model(chunk, cache=cache)``, exact), and the JSON records how long it took. ``full``
streams its prompt the same way up to ``--full-prefill-max`` tokens; beyond that a real
prefill costs ``O(C^2)`` (minutes at 64k on two cores), so the remaining rows of its
key/value cache are filled with random keys and values of the right shape, appended
directly to every layer's cache. A decode step's cost depends on the number of cached
rows only, not on their values; the table marks those rows ("synthetic").

``--compile`` adds, for every ``maha-*`` variant, a row ``"<variant> (compiled)"``: the
same model with ``model.init_cache(B, compile=True, compile_backend=--compile-backend)``,
whose one-token steps run through ``torch.compile`` (:mod:`maha.decoding`: the whole
model's step, one graph per phase of the block rule). Its
compilation happens in the untimed warm-up (``3 r^(L-1)`` decoding steps, every phase
met twice); the JSON reports the warm-up's time as ``compile_seconds`` and the
per-token latency excludes it.

Batch 16 stops at ``--batch-max-context`` (default 16384): the 64k key/value cache of 16
rows alone is 8 GiB, more than a shared 24 GiB machine should give one benchmark.

Writes ``generation.json``, ``generation.md`` and ``generation.png`` to
``benchmarks/results/``.

    python benchmarks/generation.py           # several minutes on a 2-core CPU
    python benchmarks/generation.py --quick   # seconds: a smoke test (tiny sizes)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_quality import RESULTS, machine  # noqa: E402

import maha  # noqa: E402
from maha.streaming import KVCache, ModelCache  # noqa: E402

DEFAULT_VARIANTS = ("maha-nash", "local", "full")
COMPILED = " (compiled)"  # the suffix of a variant decoded with compile=True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    p.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument(
        "--batch-max-context",
        type=int,
        default=16384,
        help="largest context for batches above 1 (memory and time)",
    )
    p.add_argument("--new-tokens", type=int, default=64, help="timed decode steps (median)")
    p.add_argument("--warmup", type=int, default=4, help="untimed decode steps first")
    p.add_argument(
        "--chunk", type=int, default=4096, help="prompt tokens per streamed chunk, all rows"
    )
    p.add_argument(
        "--full-prefill-max",
        type=int,
        default=4096,
        help="full attention: stream the prompt up to here, then fill its cache directly",
    )
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--num-scales", type=int, default=4)
    p.add_argument("--ratio", type=int, default=2)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--compile",
        action="store_true",
        help="add a '(compiled)' row for every maha-* variant (torch.compile'd decoding fusion)",
    )
    p.add_argument("--compile-backend", default="inductor", help="the backend of --compile")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = p.parse_args(argv)
    if args.quick:  # one thread: tiny ops do not gain from more, and contend on a busy CPU
        args.contexts, args.batches, args.batch_max_context = [64, 256], [1, 4], 64
        args.new_tokens, args.warmup, args.chunk, args.full_prefill_max = 6, 1, 100, 64
        args.d_model, args.n_layer, args.n_head, args.num_scales = 32, 2, 2, 3
        args.window, args.threads = 8, 1
    if args.compile:
        args.variants += [v + COMPILED for v in args.variants if v.startswith("maha-")]
    return args


def build(variant: str, args: argparse.Namespace) -> torch.nn.Module:
    """The variant, with a positional table long enough for the largest context."""
    torch.manual_seed(0)
    config = maha.MAHAConfig(
        block_size=max(args.contexts) + args.warmup + args.new_tokens,
        n_layer=args.n_layer,
        n_head=args.n_head,
        d_model=args.d_model,
        num_scales=args.num_scales,
        ratio=args.ratio,
        window=args.window,
    )
    return maha.build_model(variant.removesuffix(COMPILED), config).eval()


def allocated_bytes(cache: Any) -> int:
    """Bytes of the distinct storages behind every tensor reachable from ``cache``."""
    seen: dict[int, int] = {}
    visited: set[int] = set()

    def walk(obj: Any) -> None:
        if id(obj) in visited:
            return
        visited.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                walk(item)
        elif hasattr(obj, "__dict__") and not isinstance(obj, (torch.nn.Module, type)):
            for item in vars(obj).values():
                walk(item)

    walk(cache)
    return sum(seen.values())


def fill_synthetic(
    model: torch.nn.Module, cache: ModelCache, tokens: int, generator: torch.Generator
) -> None:
    """Append ``tokens`` random key/value rows to every layer of a full-attention cache.

    The stream then counts ``tokens`` more positions; a decode step's cost depends on the
    number of cached rows, not on their values (the module docstring says why this is used).
    """
    for layer, block in zip(model.blocks, cache.blocks):
        kv = block.attention
        if not isinstance(kv, KVCache):
            raise TypeError(f"fill_synthetic needs key/value caches; received {type(kv)}")
        heads = layer.attn.num_heads
        shape = (cache.batch_size, heads, tokens, layer.attn.d_model // heads)  # (B, H, n, d_h)
        kv.keys.extend(torch.randn(shape, generator=generator, dtype=cache.dtype))
        kv.values.extend(torch.randn(shape, generator=generator, dtype=cache.dtype))
        kv.position += tokens
        block.position += tokens
    cache.position += tokens


class _Stream:
    """One variant's model, its cache and where its greedy decoding stands."""

    def __init__(self, variant: str, batch: int, args: argparse.Namespace) -> None:
        self.variant, self.batch = variant, batch
        self.model = build(variant, args)
        self.gen = torch.Generator().manual_seed(batch)
        compiled = variant.endswith(COMPILED)
        options = {"compile": compiled, "compile_backend": args.compile_backend}
        # Warm-up on a throwaway cache (one-time allocations, thread pools, the solver's
        # setup, the compilation), so that one-time costs do not land on the first
        # context's figures. The compiled variant compiles one graph per phase of the
        # block rule (maha.decoding) in its first decoding steps: 3 r^(L-1) steps meet
        # every phase twice (a global scale's length turns dynamic on the second).
        warm = self.model.init_cache(batch, **options)
        prompt = torch.randint(0, 256, (batch, min(256, min(args.contexts))), generator=self.gen)
        self.model(prompt, cache=warm)
        config = self.model.config
        start = time.perf_counter()
        for _ in range(max(8, 3 * config.ratio ** (config.num_scales - 1))):
            self.model(torch.zeros(batch, 1, dtype=torch.long), cache=warm)
        # the warm-up steps, compilation included
        self.compile_seconds = time.perf_counter() - start if compiled else None
        self.cache = self.model.init_cache(batch, **options)
        self.token = torch.zeros(batch, 1, dtype=torch.long)  # (B, 1)

    def fill(self, context: int, args: argparse.Namespace) -> dict[str, Any]:
        """Bring the cache to ``context`` tokens; how long it took and how."""
        cache, start = self.cache, time.perf_counter()
        streamed, synthetic = 0, 0
        while cache.position < context:
            room = context - cache.position
            full = self.variant == "full"
            if full and cache.position >= args.full_prefill_max:
                fill_synthetic(self.model, cache, room, self.gen)
                synthetic += room
                continue
            limit = args.full_prefill_max - cache.position if full else room
            size = min(max(1, args.chunk // self.batch), room, max(limit, 1))
            idx = torch.randint(0, 256, (self.batch, size), generator=self.gen)  # (B, c)
            self.token = self.model(idx, cache=cache)[:, -1:].argmax(-1)  # (B, 1)
            streamed += size
        return {
            "fill_seconds": time.perf_counter() - start,
            "streamed_tokens": streamed,
            "synthetic_tokens": synthetic,
            "cache_bytes": cache.nbytes,  # exactly `context` tokens held
            "cache_allocated_bytes": allocated_bytes(cache),
        }

    def step(self) -> float:
        """One greedy decode step; its wall time in seconds."""
        start = time.perf_counter()
        self.token = self.model(self.token, cache=self.cache)[:, -1:].argmax(-1)  # (B, 1)
        return time.perf_counter() - start


@torch.no_grad()
def measure(batch: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Grow one cache per variant through the contexts; per context: fill, latency, memory.

    At each context the variants decode in turn, one token each (interleaved), so that
    changes in the machine's load hit every variant alike.
    """
    contexts = sorted(c for c in args.contexts if batch == 1 or c <= args.batch_max_context)
    streams = [_Stream(variant, batch, args) for variant in args.variants]
    rows = []
    for context in contexts:
        filled = {s.variant: s.fill(context, args) for s in streams}
        times: dict[str, list[float]] = {s.variant: [] for s in streams}
        for step in range(args.warmup + args.new_tokens):
            for s in streams:
                seconds = s.step()
                if step >= args.warmup:
                    times[s.variant].append(seconds)
        for s in streams:
            row = {
                "variant": s.variant,
                "batch": batch,
                "context": context,
                "latency_ms": 1e3 * statistics.median(times[s.variant]),
                "latency_ms_per_step": [1e3 * t for t in times[s.variant]],
                "compile_seconds": s.compile_seconds,
                **filled[s.variant],
            }
            rows.append(row)
            print(
                f"[generation] {s.variant:<9} batch {batch:>2} context {context:>6}: "
                f"{row['latency_ms']:7.2f} ms/token, cache {row['cache_bytes'] / 2**20:8.2f} "
                f"MiB, filled in {row['fill_seconds']:6.1f} s ({row['streamed_tokens']} streamed, "
                f"{row['synthetic_tokens']} synthetic)",
                file=sys.stderr,
                flush=True,
            )
    order = {v: k for k, v in enumerate(args.variants)}
    return sorted(rows, key=lambda r: (order[r["variant"]], r["context"]))


def _row(rows: list[dict], variant: str, batch: int, context: int) -> dict | None:
    for r in rows:
        if (r["variant"], r["batch"], r["context"]) == (variant, batch, context):
            return r
    return None


def targets(rows: list[dict], maha_variant: str = "maha-nash") -> dict[str, str]:
    """The issue's targets, each with its measured figure, for batch 1."""
    out: dict[str, str] = {}

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    ours, full = _row(rows, maha_variant, 1, 16384), _row(rows, "full", 1, 16384)
    compiled = _row(rows, maha_variant + COMPILED, 1, 16384)
    if compiled and full:
        ratio = compiled["latency_ms"] / full["latency_ms"]
        out[f"{maha_variant}{COMPILED} per-token latency at 16k <= 1/3 of full's (KV cache)"] = (
            f"{verdict(ratio <= 1 / 3)} ({ratio:.2f}x full's; compiled in "
            f"{compiled['compile_seconds']:.1f} s, not counted)"
        )
    if ours and full:
        ratio = ours["latency_ms"] / full["latency_ms"]
        out[f"{maha_variant} per-token latency at 16k <= 1/3 of full's (KV cache)"] = (
            f"{verdict(ratio <= 1 / 3)} ({ratio:.2f}x full's)"
        )
        mem = ours["cache_bytes"] / full["cache_bytes"]
        out[f"{maha_variant} cache memory at 16k <= 1/4 of full's KV cache"] = (
            f"{verdict(mem <= 1 / 4)} ({mem:.3f}x)"
        )
    short, long = _row(rows, maha_variant, 1, 1024), _row(rows, maha_variant, 1, 65536)
    if short and long:
        growth = long["latency_ms"] / short["latency_ms"]
        out[f"{maha_variant} per-token latency at 64k <= 2x its latency at 1k"] = (
            f"{verdict(growth <= 2)} ({growth:.2f}x)"
        )
    return out


def kv_bytes(settings: dict, batch: int, context: int) -> int:
    """Bytes of full attention's keys and values: ``2 n_layer B C d`` float32 numbers."""
    return 2 * settings["n_layer"] * batch * context * settings["d_model"] * 4


def _context(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def markdown(report: dict) -> str:
    s, env = report["settings"], report["environment"]
    rows = report["rows"]
    lines = [
        "# Generation with a cache: per-token latency and cache memory",
        "",
        f"d_model={s['d_model']}, {s['n_layer']} layers, {s['n_head']} heads, "
        f"{s['num_scales']} scales, r={s['ratio']}, window {s['window']}; median of "
        f"{s['new_tokens']} greedy decode steps after {s['warmup']} untimed ones, float32. "
        f"Environment: {env['threads']} torch threads"
        + "".join(f", {k}={v}" for k, v in env.get("omp_environment", {}).items())
        + ", load average "
        f"{', '.join(f'{x:.2f}' for x in env['load_average'])} at the start, "
        f"{env['cpu']} ({env['logical_cpus']} logical CPUs), torch {env['torch']}; "
        f"{report['generated']}; wall time {report['wall_seconds']:.0f} s.",
        "",
        "| batch | context | variant | ms/token | vs full | cache MiB | vs full | fill s |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        full = _row(rows, "full", r["batch"], r["context"])
        vs_t = f"{r['latency_ms'] / full['latency_ms']:.2f}x" if full else "-"
        vs_m = f"{r['cache_bytes'] / full['cache_bytes']:.3f}x" if full else "-"
        fill = f"{r['fill_seconds']:.1f}" + (" (synthetic)" if r["synthetic_tokens"] else "")
        lines.append(
            f"| {r['batch']} | {_context(r['context'])} | {r['variant']} | "
            f"{r['latency_ms']:.2f} | {vs_t} | {r['cache_bytes'] / 2**20:.2f} | {vs_m} | "
            f"{fill} |"
        )
    compiled = [r for r in rows if r.get("compile_seconds") is not None]
    if compiled:
        times = ", ".join(
            sorted(
                {
                    f"{r['variant']} batch {r['batch']}: {r['compile_seconds']:.1f} s"
                    for r in compiled
                }
            )
        )
        lines += [
            "",
            f"Compiled rows: backend {s['compile_backend']}; compilation (the first decoding "
            f"step of the untimed warm-up, not in ms/token): {times}.",
        ]
    lines += ["", "Targets (batch 1):", ""]
    lines += [f"- {k}: {v}" for k, v in report["targets"].items()] or ["- none at these contexts"]
    lines += [
        "",
        "Cache MiB: bytes of the tensors a cache holds after the context (keys, values, "
        "partial blocks, convolution history); the doubling buffers allocate up to twice "
        "that. Fill s: time to bring the cache to the context from the previous one, "
        f"streaming random bytes in chunks of {s['chunk']} tokens over all rows; full "
        "attention streams "
        f"up to {_context(s['full_prefill_max'])} and its cache is then filled with random "
        "keys and values of the right shape (synthetic: a decode step's cost depends on the "
        "number of cached rows only). Batches above 1 stop at "
        f"{_context(s['batch_max_context'])} tokens (the key/value cache of "
        f"{max(s['batches'])} rows at {_context(max(s['contexts']))} would be "
        f"{kv_bytes(s, max(s['batches']), max(s['contexts'])) / 2**30:.1f} GiB).",
        "",
    ]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    markers = {"full": "s", "local": "^"}
    for batch in sorted({r["batch"] for r in rows}):
        style = "-" if batch == 1 else "--"
        for index, variant in enumerate(report["settings"]["variants"]):
            mine = [r for r in rows if r["variant"] == variant and r["batch"] == batch]
            if not mine:
                continue
            n = [r["context"] for r in mine]
            look = {"label": f"{variant}, batch {batch}", "color": f"C{index}"}
            marker = markers.get(variant, "o")
            ax1.loglog(n, [r["latency_ms"] for r in mine], marker + style, **look)
            ax2.loglog(n, [r["cache_bytes"] / 2**20 for r in mine], marker + style, **look)
    for ax, ylabel in ((ax1, "per-token latency (ms)"), (ax2, "cache memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    s = report["settings"]
    fig.suptitle(
        f"Decoding with a cache: d={s['d_model']}, {s['n_layer']} layers, "
        f"w={s['window']}, {report['environment']['threads']} thread(s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _options(argv: list[str] | None) -> list[str]:
    """The command-line options that shape the results (``--out-dir`` left out)."""
    given = list(sys.argv[1:] if argv is None else argv)
    kept = []
    while given:
        item = given.pop(0)
        if item == "--out-dir":
            given = given[1:]
        elif not item.startswith("--out-dir="):
            kept.append(item)
    return kept


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        load = list(os.getloadavg())
    except OSError:
        load = [float("nan")] * 3
    omp = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ}
    environment = {
        **machine(),
        "threads": torch.get_num_threads(),
        "load_average": load,
        "omp_environment": omp,
    }
    rows: list[dict[str, Any]] = []
    for batch in args.batches:
        rows.extend(measure(batch, args))
    settings = {k: v for k, v in vars(args).items() if k != "out_dir"}
    report: dict[str, Any] = {
        "benchmark": "generation",
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/generation.py", *_options(argv)]),
        "environment": environment,
        "settings": settings,
        "rows": rows,
        "targets": targets(rows),
        "wall_seconds": time.perf_counter() - started,
    }
    for key, value in report["targets"].items():
        print(f"target: {key}: {value}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "generation.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out_dir / "generation.md").write_text(table)
    plot(report, args.out_dir / "generation.png")
    print(table)
    return report


if __name__ == "__main__":
    main()
