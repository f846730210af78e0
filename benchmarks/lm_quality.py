"""Language-model quality on real text: MAHA's fusion strategies against full and local attention.

Every variant trains a causal byte-level model on the Python standard library's source files
(split into train and validation by file, :mod:`maha.training.data`) for the same number of
steps on the same batches (same seed, same data order), at about the same parameter count, and
is evaluated on the same validation windows in bits per byte. Each variant runs in its own
process (``python -m maha.training``), so its peak memory is its own.

Parameter matching: the MAHA variants share one architecture; ``full`` and ``local`` have no
per-scale projections, decomposition or fusion, so their feed-forward width (``--ffn-mult``) is
raised to the integer that brings their parameter count closest to ``maha-nash``'s (disable
with ``--no-match-params``).

Writes ``lm_quality.json`` (one entry per variant: ``val_bpb``, ``tokens_per_s``,
``peak_mem_mb``, parameters, curves), ``lm_quality.md`` (a table with ratios against full
attention measured in the same run) and ``lm_quality.png`` (validation curves).

    python benchmarks/lm_quality.py            # about 10 minutes on an idle 2-core CPU
    python benchmarks/lm_quality.py --quick    # seconds: a smoke test on a tiny model
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from maha import MAHAConfig, build_model
from maha.training import load_checkpoint, load_corpus

DEFAULT_VARIANTS = (
    "full",
    "local",
    "maha-nash",
    "maha-softmax",
    "maha-convex",
    "maha-fictitious_play",
)
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--num-scales", type=int, default=4)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--mu", type=float, default=1.0, help="diagonal shift of the scale game")
    p.add_argument("--gating", action="store_true", help="cross-scale gate (paper Eq. 12)")
    p.add_argument(
        "--solver-max-iter",
        type=int,
        default=300,
        help="iteration budget of the fusion solvers: binds only for fictitious play, whose "
        "O(t^-lambda) convergence would otherwise take its default 20,000 iterations per step",
    )
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--eval-sequences", type=int, default=32)
    p.add_argument("--max-bytes", type=int, default=None, help="sample of the corpus")
    p.add_argument("--data", default="stdlib")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per training process (measured here: 2 threads ran 6x slower per step "
        "than 1 whenever another process shared the 2 cores)",
    )
    p.add_argument("--no-match-params", action="store_true")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = p.parse_args(argv)
    if args.quick:  # one thread: tiny ops do not gain from more, and contend on a busy CPU
        args.threads = 1
        args.steps, args.batch_size, args.seq_len, args.warmup_steps = 4, 2, 64, 1
        args.d_model, args.n_layer, args.n_head, args.window = 32, 1, 2, 16
        args.num_scales, args.eval_every, args.eval_sequences = 3, 2, 4
        args.max_bytes = args.max_bytes or 100_000
    return args


def model_config(args: argparse.Namespace, ffn_mult: int = 4) -> MAHAConfig:
    return MAHAConfig(
        block_size=args.seq_len,
        n_layer=args.n_layer,
        n_head=args.n_head,
        d_model=args.d_model,
        num_scales=args.num_scales,
        window=args.window,
        ffn_mult=ffn_mult,
        mu=args.mu,
        gating=args.gating,
        solver_max_iter=args.solver_max_iter,
    )


def count_parameters(variant: str, config: MAHAConfig) -> int:
    with torch.device("meta"):
        model = build_model(variant, config)
    return sum(p.numel() for p in model.parameters())


def matched_ffn_mult(variant: str, args: argparse.Namespace, target: int) -> int:
    """The FFN multiplier in 1..16 whose parameter count is closest to ``target``."""
    return min(
        range(1, 17),
        key=lambda m: abs(count_parameters(variant, model_config(args, m)) - target),
    )


def train_variant(
    variant: str, ffn_mult: int, args: argparse.Namespace, workdir: Path
) -> dict[str, object]:
    out = workdir / f"{variant}.json"
    ckpt = workdir / variant
    cmd = [
        sys.executable, "-m", "maha.training",
        "--variant", variant, "--data", args.data, "--seq-len", str(args.seq_len),
        "--d-model", str(args.d_model), "--n-layer", str(args.n_layer),
        "--n-head", str(args.n_head), "--num-scales", str(args.num_scales),
        "--window", str(args.window), "--ffn-mult", str(ffn_mult),
        "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
        "--warmup-steps", str(args.warmup_steps), "--mu", str(args.mu),
        "--solver-max-iter", str(args.solver_max_iter),
        "--eval-every", str(args.eval_every), "--eval-sequences", str(args.eval_sequences),
        "--seed", str(args.seed), "--device", "cpu", "--json-out", str(out),
        "--checkpoint-dir", str(ckpt),
    ]  # fmt: skip
    if args.max_bytes:
        cmd += ["--max-bytes", str(args.max_bytes)]
    if args.gating:
        cmd += ["--gating"]
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


@torch.no_grad()
def fusion_summary(checkpoint: Path, args: argparse.Namespace) -> list[dict[str, object]] | None:
    """Per layer: how the trained model fuses its scales on validation text.

    Over the positions where every scale is present and every head: the mean weight of each
    scale, the mean normalised entropy ``H(w) / ln L`` (1: uniform, 0: one scale), the share
    of weights that are exactly zero, and for game strategies the largest regret and the
    share of solves flagged converged. ``None`` for models without a multiscale fusion.
    """
    state = load_checkpoint(checkpoint)
    config = MAHAConfig.from_dict(state["train_config"]["model"])
    variant = state["train_config"]["variant"]
    if not variant.startswith("maha-"):
        return None
    model: Any = build_model(variant, config)
    model.load_state_dict(state["model"])
    model.eval()
    corpus = load_corpus(None if args.data == "stdlib" else args.data, max_bytes=args.max_bytes)
    total = corpus.val.num_sequences(args.seq_len)
    picks = torch.linspace(0, total - 1, min(2, total)).round().long().unique()
    x, _ = corpus.val.batch(picks, args.seq_len)  # (b, T)
    h = model.drop(model.wte(x) + model.wpe(torch.arange(x.shape[1])))  # (b, T, d)
    layers = []
    for block in model.blocks:
        h, diag = block.forward_with_diagnostics(h)
        full = diag.present.all(-1)  # (b, T): positions where every scale plays
        w = diag.weights[full]  # (P, H, L)
        L = w.shape[-1]
        entropy = -(w * w.clamp_min(1e-30).log()).sum(-1) / max(math.log(L), 1e-30)  # (P, H)
        row: dict[str, object] = {
            "mean_weight_per_scale": [round(float(v), 4) for v in w.mean((0, 1))],
            "normalised_entropy": round(float(entropy.mean()), 4),
            "zero_weight_share": round(float((w == 0).double().mean()), 4),
        }
        if diag.regret is not None:
            row["max_regret"] = float(diag.regret[full].max())
        if diag.converged is not None:
            row["converged_share"] = float(diag.converged[full].double().mean())
        layers.append(row)
    return layers


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def write_markdown(report: dict, path: Path) -> None:
    rows = report["variants"]
    full = rows.get("full")
    s = report["settings"]
    lines = [
        "# Language-model quality (bytes of the Python standard library)",
        "",
        f"{s['steps']} steps x {s['batch_size']} x {s['seq_len']} bytes "
        f"({s['steps'] * s['batch_size'] * s['seq_len']:,} training bytes per variant), "
        f"d_model={s['d_model']}, {s['n_layer']} layers, {s['n_head']} heads, "
        f"{s['num_scales']} scales, window {s['window']}, lr {s['lr']} "
        f"({s['warmup_steps']} warm-up steps, cosine decay), seed {s['seed']}, "
        f"{s['threads']} CPU threads per run.",
        "",
        f"Machine: {report['machine']['cpu']}, torch {report['machine']['torch']}; "
        f"date {report['date']}; total wall time {report['wall_seconds']:.0f} s.",
        "",
        "| variant | parameters | val bits/byte | vs full | tokens/s | vs full | peak RSS MB |"
        " added MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        dq = f"{100 * (r['val_bpb'] / full['val_bpb'] - 1):+.2f}%" if full else "-"
        dt_ = f"{r['tokens_per_s'] / full['tokens_per_s']:.2f}x" if full else "-"
        lines.append(
            f"| {name} | {r['num_parameters']:,} | {r['val_bpb']:.4f} | {dq} | "
            f"{r['tokens_per_s']:,.0f} | {dt_} | {r['peak_mem_mb']:.0f} | "
            f"{r['peak_mem_mb'] - r['start_mem_mb']:.0f} |"
        )
    fused = {k: r["fusion"] for k, r in rows.items() if r.get("fusion")}
    if fused:
        lines += [
            "",
            "Fusion on validation text (positions where all scales are present; scale 0 is",
            "the finest): mean weight per scale, normalised entropy (1 = uniform), share of",
            "exact zeros, largest regret of the scale game.",
            "",
            "| variant | layer | mean weights | entropy | zeros | max regret |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for name, per_layer in fused.items():
            for i, f in enumerate(per_layer):
                regret = f"{f['max_regret']:.1e}" if "max_regret" in f else "-"
                weights = ", ".join(f"{v:.3f}" for v in f["mean_weight_per_scale"])
                lines.append(
                    f"| {name} | {i} | {weights} | {f['normalised_entropy']:.3f} | "
                    f"{f['zero_weight_share']:.3f} | {regret} |"
                )
    lines += ["", f"Command: `{report['command']}`", ""]
    for key, value in report["targets"].items():
        lines.append(f"- {key}: {value}")
    path.write_text("\n".join(lines) + "\n")


def write_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_val, ax_train) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, r in report["variants"].items():
        steps, _, bpb = zip(*r["val_curve"])
        ax_val.plot(steps, bpb, marker="o", ms=3, label=name)
        loss = torch.tensor([v for _, v in r["train_loss"]]) / torch.log(torch.tensor(2.0))
        k = max(1, len(loss) // 20)
        smooth = torch.nn.functional.avg_pool1d(loss[None, None], k, 1).flatten()
        ax_train.plot(range(k, len(loss) + 1), smooth, label=name)
    ax_val.set(xlabel="step", ylabel="validation bits per byte", title="Validation")
    ax_train.set(xlabel="step", ylabel="training bits per byte (moving average)", title="Train")
    for ax in (ax_val, ax_train):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    s = report["settings"]
    fig.suptitle(
        f"Byte-level LM on the standard library: {s['steps']} steps x {s['batch_size']} x "
        f"{s['seq_len']}, d={s['d_model']}, {s['n_layer']} layers"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def targets(rows: dict) -> dict[str, str]:
    out = {}
    nash, full = rows.get("maha-nash"), rows.get("full")
    if nash and full:
        gap = 100 * (nash["val_bpb"] / full["val_bpb"] - 1)
        verdict = "met" if gap <= 2.0 else "missed"
        out["maha-nash within 2% of full attention"] = f"{verdict} ({gap:+.2f}%)"
    for peer in ("local", "maha-softmax"):
        if nash and peer in rows:
            diff = nash["val_bpb"] - rows[peer]["val_bpb"]
            verdict = "met" if diff < 0 else "missed"
            out[f"maha-nash beats {peer}"] = f"{verdict} ({diff:+.4f} bits/byte)"
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    base = model_config(args)
    reference = "maha-nash" if "maha-nash" in args.variants else args.variants[0]
    target = count_parameters(reference, base)
    report: dict = {
        "benchmark": "lm_quality",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", "benchmarks/lm_quality.py", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("out_dir", "variants")
        },
        "variants": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            ffn = 4
            if not args.no_match_params and not variant.startswith("maha-"):
                ffn = matched_ffn_mult(variant, args, target)
            print(f"[lm_quality] training {variant} (ffn_mult={ffn})", file=sys.stderr)
            run = train_variant(variant, ffn, args, Path(tmp))
            last = sorted((Path(tmp) / variant).glob("ckpt_*.pt"))[-1]
            report["variants"][variant] = {
                "val_bpb": run["val_bpb"],
                "tokens_per_s": run["tokens_per_s"],
                "peak_mem_mb": run["peak_mem_mb"],
                "start_mem_mb": run["start_mem_mb"],
                "num_parameters": run["num_parameters"],
                "ffn_mult": ffn,
                "train_seconds": run["train_seconds"],
                "tokens_seen": run["tokens_seen"],
                "val_curve": run["val_curve"],
                "train_loss": run["train_loss"],
                "fusion": fusion_summary(last, args),
            }
    report["wall_seconds"] = time.perf_counter() - started
    report["targets"] = targets(report["variants"])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "lm_quality.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, args.out_dir / "lm_quality.md")
    write_plot(report, args.out_dir / "lm_quality.png")
    print((args.out_dir / "lm_quality.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
