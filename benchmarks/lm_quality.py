"""Language-model quality on real text: MAHA's fusion strategies against full, local attention
and H-Transformer-1D, over seeds, at 1,024 and 4,096 bytes per window.

Every run trains a causal byte-level model on the Python standard library's source files
(split into train and validation by file, :mod:`maha.training.data`) and is evaluated on the
same validation windows in bits per byte. Within a seed every variant sees the same batches in
the same order; seeds change the initialisation and the data order. Each run trains in its
own process (``python -m maha.training``; the peer through ``benchmarks/peers/h_transformer.py``
with the library's training loop), so its peak memory is its own.

Grids: at 1,024 bytes per window, 1,500 steps x 4 windows (6.1M training bytes) for
``full``, ``local``, ``maha-nash``, ``maha-convex``, ``maha-softmax`` and
``peer-htransformer``, seeds 0, 1, 2; with ``--long``, 4,096 bytes per window with the same
number of steps and of training bytes (batch 4 x 1,024 / 4,096 = 1 window per step) for
``full``, ``local``, ``maha-nash``, ``maha-softmax`` and ``peer-htransformer``, seeds 0, 1, 2
(the report lists the runs still missing; the first two seeds of each were trained first).

Variants beyond the grids (``--variants``, :data:`CONFIG_VARIANTS`): ``maha-nash-learnmu``
(learned diagonal shift), and the rotary family ``full-rope``, ``local-rope``,
``maha-nash-rope``, ``maha-softmax-rope`` (``MAHAConfig.rotary``: rotary position embeddings
of queries and keys, at every MAHA scale by its block index); ``peer-htransformer-norope`` is
the peer without its rotary embeddings. The claims compare each family with the baselines of
its own position scheme (:data:`FAMILIES`): the default models and the norope peer have learned
absolute positions only, the rope family and the published peer rotate queries and keys.

Parameter matching: every variant gets the feed-forward width (``--ffn-mult``) whose parameter
count is closest to ``maha-nash``'s (disable with ``--no-match-params``). The MAHA variants with
per-scale projections have ``maha-nash``'s architecture, so theirs is 4; ``full``, ``local`` and
the peer have no per-scale projections, decomposition or fusion, and ``maha-nash-shared-rope``
(``MAHAConfig.shared_qk``: one query/key projection for every scale) has no per-scale
projections, so theirs is wider: the parameters go to the feed-forward network instead.

Cache: every finished run is written (atomically) to
``<out-dir>/lm_runs/<variant>_seed<k>_<key>.json``, where ``key`` is a hash of every setting
that changes a run's result (the ``settings`` stored in the file); a run whose file exists is
never trained again (``--retrain`` forces it). The report (``lm_quality.md``, ``.json``,
``.png``) is rebuilt from the cached runs after each run and with ``--report-only``; the runs of
the grids that are not cached yet are listed as missing.

Statistics: per variant the mean and the sample standard deviation (``n - 1``) over seeds. A
claim "A beats B" (lower bits per byte) is *met* when ``mean_B - mean_A > 2 s`` with
``s = sqrt(sd_A^2 / n_A + sd_B^2 / n_B)``, *missed* when ``mean_A - mean_B > 2 s``, *not
distinguishable* otherwise, and *insufficient seeds* when ``n_A < 2`` or ``n_B < 2``; "A within
``tol`` of B" is met when ``|mean_A - mean_B| + 2 s <= tol`` and missed when
``|mean_A - mean_B| - 2 s > tol``.

    python benchmarks/lm_quality.py                 # the 1,024 grid: about 10 min a run, 1 core
    python benchmarks/lm_quality.py --long          # the 4,096 grid
    python benchmarks/lm_quality.py --variants maha-nash full --seeds 0    # a subset
    python benchmarks/lm_quality.py --report-only   # rebuild the report from the cache
    python benchmarks/lm_quality.py --quick         # seconds: a smoke test on a tiny model
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
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

from maha import MAHAConfig, build_model, load_model
from maha.model import VARIANTS
from maha.training import TrainConfig, load_checkpoint, load_corpus

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import h_transformer as peer  # noqa: E402

#: Training order of the 1,024 grid (priority: the layer's default first).
DEFAULT_VARIANTS = ("maha-nash", "full", "maha-softmax", "local", "maha-convex", peer.VARIANT)
LONG_VARIANTS = ("maha-nash", "full", "maha-softmax", "local", peer.VARIANT)
DEFAULT_SEEDS = (0, 1, 2)
LONG_SEEDS = (0, 1, 2)
#: Row order of the tables.
TABLE_ORDER = ("full", "local", peer.VARIANT, "maha-nash", "maha-convex", "maha-softmax",
               "maha-logit", "maha-nash-learnmu", peer.VARIANT_NO_ROTARY, "full-rope",
               "local-rope", "maha-nash-rope", "maha-softmax-rope", "maha-nash-anchor-rope",
               "maha-softmax-anchor-rope", "maha-nash-shared-rope",
               "maha-nash-fine-rope")  # fmt: skip
GAME_FUSIONS = ("maha-nash", "maha-convex", "maha-fictitious_play", "maha-best_response",
                "maha-logit", "maha-nash-learnmu")  # fmt: skip
#: Benchmark variants that are a library variant with config changes (trained explicitly,
#: ``--variants``; not in the default grids): name -> (library variant, MAHAConfig changes).
CONFIG_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "maha-nash-learnmu": ("maha-nash", {"learn_mu": True}),
    "full-rope": ("full", {"rotary": True}),
    "local-rope": ("local", {"rotary": True}),
    "maha-nash-rope": ("maha-nash", {"rotary": True}),
    "maha-softmax-rope": ("maha-softmax", {"rotary": True}),
    "maha-nash-anchor-rope": ("maha-nash", {"rotary": True, "anchor_fine": True}),
    "maha-softmax-anchor-rope": ("maha-softmax", {"rotary": True, "anchor_fine": True}),
    "maha-nash-shared-rope": ("maha-nash", {"rotary": True, "shared_qk": True}),
    "maha-nash-fine-rope": ("maha-nash", {"rotary": True, "fine_bias": 4.0}),
}
#: Tolerance of the "within" claim between the best game fusion and the softmax fusion.
WITHIN_BPB = 0.02
#: Version of the cached-run format and of the grid's meaning; part of every key.
SCHEMA = 1
RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "python benchmarks/lm_quality.py && python benchmarks/lm_quality.py --long"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--variants", nargs="+", default=None, help="default: the grid's (training order)"
    )
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the grid's")
    p.add_argument("--long", action="store_true", help="train the --long-seq-len grid")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument(
        "--long-seq-len",
        type=int,
        default=4096,
        help="window of the long grid; its batch is batch-size x seq-len / long-seq-len",
    )
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
    p.add_argument(
        "--peer-block-size",
        type=int,
        default=None,
        help="H-Transformer-1D's diagonal block N_r (default: --window)",
    )
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-sequences", type=int, default=32)
    p.add_argument("--max-bytes", type=int, default=None, help="sample of the corpus")
    p.add_argument("--data", default="stdlib")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per training process (measured here: 2 threads ran 6x slower per step "
        "than 1 whenever another process shared the 2 cores)",
    )
    p.add_argument("--no-match-params", action="store_true")
    p.add_argument("--retrain", action="store_true", help="train selected runs even if cached")
    p.add_argument("--report-only", action="store_true", help="train nothing; rebuild the report")
    p.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help=f"default: {RESULTS} (with --quick: a new temporary folder)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = p.parse_args(argv)
    if args.quick:  # one thread: tiny ops do not gain from more, and contend on a busy CPU
        args.threads = 1
        args.steps, args.batch_size, args.seq_len, args.warmup_steps = 4, 2, 64, 1
        args.long_seq_len = 128
        args.d_model, args.n_layer, args.n_head, args.window = 32, 1, 2, 16
        args.num_scales, args.eval_every, args.eval_sequences = 3, 2, 4
        args.max_bytes = args.max_bytes or 100_000
        args.seeds = args.seeds or [0]
        if args.out_dir is None:  # a smoke test never touches the committed results
            args.out_dir = Path(tempfile.mkdtemp(prefix="lm_quality_quick_"))
    args.out_dir = RESULTS if args.out_dir is None else args.out_dir
    known = (*VARIANTS, *CONFIG_VARIANTS, *peer.VARIANTS)
    for name in args.variants or ():
        if name not in known:
            p.error(f"--variants: expected names among {', '.join(known)}; received {name!r}")
    if args.seeds is not None and any(s < 0 for s in args.seeds):
        p.error(f"--seeds: expected integers >= 0; received {args.seeds}")
    if (args.batch_size * args.seq_len) % args.long_seq_len:
        p.error(
            "--long-seq-len must divide --batch-size x --seq-len (the same training bytes per "
            f"step); received {args.long_seq_len} for {args.batch_size} x {args.seq_len}"
        )
    return args


# -- settings and the cache ----------------------------------------------------------------


def grid_settings(args: argparse.Namespace, long: bool) -> dict[str, Any]:
    """Every setting that changes a run's result, for the 1,024 (or the ``long``) grid."""
    seq_len = args.long_seq_len if long else args.seq_len
    corpus = "stdlib" if args.data == "stdlib" else str(Path(args.data).resolve())
    return {
        "schema": SCHEMA,
        "data": corpus,
        "python": ".".join(platform.python_version_tuple()[:2]) if corpus == "stdlib" else None,
        "max_bytes": args.max_bytes,
        "steps": args.steps,
        "batch_size": args.batch_size * args.seq_len // seq_len,
        "seq_len": seq_len,
        "d_model": args.d_model,
        "n_layer": args.n_layer,
        "n_head": args.n_head,
        "num_scales": args.num_scales,
        "window": args.window,
        "mu": args.mu,
        "gating": args.gating,
        "solver_max_iter": args.solver_max_iter,
        "peer_block_size": args.peer_block_size or args.window,
        "lr": args.lr,
        "warmup_steps": args.warmup_steps,
        "eval_every": args.eval_every,
        "eval_sequences": args.eval_sequences,
        "match_params": not args.no_match_params,
    }


def settings_key(settings: dict[str, Any]) -> str:
    """A stable 12-hex-digit hash of ``settings`` (sorted JSON)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_path(out_dir: Path, variant: str, seed: int, settings: dict[str, Any]) -> Path:
    return out_dir / "lm_runs" / f"{variant}_seed{seed}_{settings_key(settings)}.json"


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``path`` through a temporary file in its folder and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the results from others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_runs(out_dir: Path, settings: dict[str, Any]) -> dict[str, dict[int, dict]]:
    """The cached runs of ``settings``: ``{variant: {seed: record}}``."""
    key = settings_key(settings)
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted((out_dir / "lm_runs").glob(f"*_seed*_{key}.json")):
        record = json.loads(path.read_text())
        if record.get("settings") == settings:  # a hash collision never mixes grids
            runs.setdefault(record["variant"], {})[record["seed"]] = record
    return runs


# -- models ----------------------------------------------------------------------------------


def model_config(settings: dict[str, Any], ffn_mult: int = 4) -> MAHAConfig:
    return MAHAConfig(
        block_size=settings["seq_len"],
        n_layer=settings["n_layer"],
        n_head=settings["n_head"],
        d_model=settings["d_model"],
        num_scales=settings["num_scales"],
        window=settings["window"],
        ffn_mult=ffn_mult,
        mu=settings["mu"],
        gating=settings["gating"],
        solver_max_iter=settings["solver_max_iter"],
    )


def library_variant(variant: str, config: MAHAConfig) -> tuple[str, MAHAConfig]:
    """The :data:`maha.model.VARIANTS` name and config that train ``variant``."""
    if variant in CONFIG_VARIANTS:
        base, changes = CONFIG_VARIANTS[variant]
        return base, config.replace(**changes)
    return variant, config


def count_parameters(variant: str, config: MAHAConfig, peer_block_size: int) -> int:
    if variant in peer.VARIANTS:
        rotary = variant != peer.VARIANT_NO_ROTARY
        return peer.count_parameters(config, peer_block_size, rotary)
    with torch.device("meta"):
        model = build_model(*library_variant(variant, config))
    return sum(p.numel() for p in model.parameters())


def ffn_mult_for(variant: str, settings: dict[str, Any]) -> int:
    """When matching, the multiplier in 1..16 whose parameter count is closest to
    ``maha-nash``'s at the default 4 (so 4 for the variants of its architecture); else 4."""
    if variant == "maha-nash" or not settings["match_params"]:
        return 4
    block = settings["peer_block_size"]
    target = count_parameters("maha-nash", model_config(settings), block)
    return min(
        range(1, 17),
        key=lambda m: abs(count_parameters(variant, model_config(settings, m), block) - target),
    )


def train_config(variant: str, seed: int, settings: dict[str, Any], ffn_mult: int) -> TrainConfig:
    """The run's :class:`TrainConfig` (the peer trains the ``full`` backbone's config)."""
    name, model = library_variant(variant, model_config(settings, ffn_mult))
    return TrainConfig(
        variant="full" if variant in peer.VARIANTS else name,
        model=model,
        data=None if settings["data"] == "stdlib" else settings["data"],
        max_bytes=settings["max_bytes"],
        seq_len=settings["seq_len"],
        steps=settings["steps"],
        batch_size=settings["batch_size"],
        lr=settings["lr"],
        warmup_steps=settings["warmup_steps"],
        eval_every=settings["eval_every"],
        eval_sequences=settings["eval_sequences"],
        seed=seed,
        device="cpu",
        progress=False,
    )


#: TrainConfig fields that do not change a run's result.
_NOT_RESULT = ("device", "checkpoint_dir", "checkpoint_every", "keep_checkpoints", "resume",
               "progress", "json_out")  # fmt: skip


def _result_fields(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _NOT_RESULT}


def _cli_args(config: TrainConfig) -> list[str]:
    m = config.model
    return [
        "--variant", config.variant, "--data", "stdlib" if config.data is None else config.data,
        "--val-fraction", str(config.val_fraction), "--seq-len", str(config.seq_len),
        "--d-model", str(m.d_model), "--n-layer", str(m.n_layer), "--n-head", str(m.n_head),
        "--num-scales", str(m.num_scales), "--ratio", str(m.ratio), "--window", str(m.window),
        "--block-size", str(m.block_size), "--decomposition", m.decomposition,
        "--mu", str(m.mu), "--solver-max-iter", str(m.solver_max_iter),
        "--dropout", str(m.dropout), "--ffn-mult", str(m.ffn_mult),
        "--steps", str(config.steps), "--batch-size", str(config.batch_size),
        "--lr", str(config.lr), "--min-lr-ratio", str(config.min_lr_ratio),
        "--warmup-steps", str(config.warmup_steps), "--weight-decay", str(config.weight_decay),
        "--grad-clip", str(config.grad_clip), "--seed", str(config.seed), "--device", "cpu",
        "--dtype", config.dtype, "--eval-every", str(config.eval_every),
        "--eval-sequences", str(config.eval_sequences), "--no-progress",
    ] + (["--max-bytes", str(config.max_bytes)] if config.max_bytes else []) + (
        ["--gating"] if m.gating else []
    ) + (["--asymmetric"] if m.asymmetric else []) + (
        ["--learn-mu"] if m.learn_mu else []
    ) + (["--rotary"] if m.rotary else []) + (
        ["--anchor-fine"] if m.anchor_fine else []
    ) + (["--shared-qk"] if m.shared_qk else []) + (
        ["--fine-bias", str(m.fine_bias)] if m.fine_bias else []
    )  # fmt: skip


def train_run(
    variant: str, seed: int, settings: dict[str, Any], threads: int, workdir: Path
) -> dict[str, Any]:
    """Train one run in a subprocess; the record that the cache stores."""
    ffn = ffn_mult_for(variant, settings)
    config = train_config(variant, seed, settings, ffn)
    out, ckpt = workdir / "run.json", workdir / "ckpt"
    if variant in peer.VARIANTS:
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps(config.to_dict()))
        script = Path(peer.__file__).resolve()
        block = str(settings["peer_block_size"])
        cmd = [sys.executable, str(script), "--train-config", str(config_path),
               "--json-out", str(out), "--peer-block-size", block]  # fmt: skip
        if variant == peer.VARIANT_NO_ROTARY:
            cmd.append("--no-rotary")
    else:
        cmd = [sys.executable, "-m", "maha.training", *_cli_args(config),
               "--json-out", str(out), "--checkpoint-dir", str(ckpt)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    code = code_fingerprint()  # the library as the subprocess imports it
    started = time.perf_counter()
    done = subprocess.run(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{variant} seed {seed} failed:\n{done.stderr[-3000:]}")
    child = json.loads(out.read_text())
    if _result_fields(child["config"]) != _result_fields(config.to_dict()):
        raise RuntimeError(
            f"{variant} seed {seed}: the trainer ran another configuration than the key's:\n"
            f"{_result_fields(child['config'])}\nvs\n{_result_fields(config.to_dict())}"
        )
    fusion = None
    if variant.startswith("maha-"):
        fusion = fusion_summary(sorted(ckpt.glob("ckpt_*.pt"))[-1], settings)
    return {
        "schema": SCHEMA,
        "variant": variant,
        "seed": seed,
        "settings_key": settings_key(settings),
        "settings": settings,
        "train_config": child["config"],
        "ffn_mult": ffn,
        "num_parameters": child["num_parameters"],
        "val_bpb": child["val_bpb"],
        "val_curve": child["val_curve"],
        "train_loss": child["train_loss"],
        "tokens_seen": child["tokens_seen"],
        "tokens_per_s": child["tokens_per_s"],
        "peak_mem_mb": child["peak_mem_mb"],
        "start_mem_mb": child["start_mem_mb"],
        "train_seconds": child["train_seconds"],
        "wall_seconds": wall,
        "threads": threads,
        "load_average_before": load_before,
        "machine": machine(),
        "code": code,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "fusion": fusion,
    }


@torch.no_grad()
def fusion_summary(checkpoint: Path, settings: dict[str, Any]) -> list[dict[str, object]] | None:
    """Per layer: how the trained model fuses its scales on validation text.

    Over the positions where every scale is present and every head: the mean weight of each
    scale, the mean normalised entropy ``H(w) / ln L`` (1: uniform, 0: one scale), the share
    of weights that are exactly zero, and for game strategies the largest regret and the
    share of solves flagged converged. ``None`` for models without a multiscale fusion.
    """
    variant = load_checkpoint(checkpoint)["train_config"]["variant"]
    if not variant.startswith("maha-"):
        return None
    model: Any = load_model(checkpoint)  # in eval mode
    data = None if settings["data"] == "stdlib" else settings["data"]
    corpus = load_corpus(data, max_bytes=settings["max_bytes"])
    total = corpus.val.num_sequences(settings["seq_len"])
    picks = torch.linspace(0, total - 1, min(2, total)).round().long().unique()
    x, _ = corpus.val.batch(picks, settings["seq_len"])  # (b, T)
    h = model.drop(model.wte(x) + model.wpe(torch.arange(x.shape[1])))  # (b, T, d)
    layers = []
    for block in model.blocks:
        h, diag = block.forward_with_diagnostics(h)
        # the players: every scale, or the coarser ones where the finest is anchored (added
        # with weight one, never a player: its weight reads 0)
        first = 1 if getattr(block.attn.fusion, "anchor_fine", False) else 0
        full = diag.present[..., first:].all(-1)  # (b, T): positions where every player plays
        w = diag.weights[full]  # (P, H, L)
        wp = w[..., first:]  # (P, H, players)
        L = wp.shape[-1]
        entropy = -(wp * wp.clamp_min(1e-30).log()).sum(-1) / max(math.log(L), 1e-30)  # (P, H)
        row: dict[str, object] = {
            "mean_weight_per_scale": [round(float(v), 4) for v in w.mean((0, 1))],
            "normalised_entropy": round(float(entropy.mean()), 4),
            "zero_weight_share": round(float((wp == 0).double().mean()), 4),
        }
        if diag.regret is not None:
            row["max_regret"] = float(diag.regret[full].max())
        if diag.converged is not None:
            row["converged_share"] = float(diag.converged[full].double().mean())
        if diag.residual is not None:
            row["max_residual"] = float(diag.residual[full].max())
        fusion = block.attn.fusion
        if hasattr(fusion, "tau_raw"):
            row["temperature"] = [round(float(v), 4) for v in fusion.temperature(torch.float64)]
        if getattr(fusion, "learn_mu", False):
            row["mu"] = [round(float(v), 4) for v in fusion.mu_per_head(torch.float64)]
        layers.append(row)
    return layers


def code_fingerprint() -> str:
    """A hash of the library's and the peer's sources (``maha``, ``aggregation``, ``peers``).

    Stored with each run, not part of its key: a change of the code does not retrain the
    cache, but the report can tell runs of different code apart.
    """
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for folder in (root / "maha", root / "aggregation", Path(peer.__file__).parent):
        for path in sorted(folder.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


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


def peer_checks(settings: dict[str, Any]) -> dict[str, Any]:
    """H-Transformer-1D at the grid's length: causality (float64, a small width) and reach.

    ``max_logit_change``: the largest change of the logits at positions ``<= t`` when the
    tokens after ``t`` change, over 64 evenly spaced ``t`` and the block boundaries.
    """
    if not peer.available():
        return {"available": False}
    key = settings_key(settings)
    if key not in _PEER_CHECKS:  # tens of seconds at 4,096: once per process
        _PEER_CHECKS[key] = _peer_checks(settings)
    return _PEER_CHECKS[key]


_PEER_CHECKS: dict[str, dict[str, Any]] = {}


def _peer_checks(settings: dict[str, Any]) -> dict[str, Any]:
    n, block = settings["seq_len"], settings["peer_block_size"]
    config = MAHAConfig(block_size=n, n_layer=1, n_head=2, d_model=32, num_scales=1, window=block)
    torch.manual_seed(0)
    model = peer.build_peer_model(config, block).double().eval()
    spaced = torch.linspace(0, n - 2, min(64, n - 1)).round().long().tolist()
    edges = [t for b in range(block, n, block) for t in (b - 1, b) if t < n - 1]
    leak = peer.causal_leak(model, n, positions=sorted({*spaced, *edges}))
    return {
        "available": True,
        "max_logit_change": leak,
        "causal": leak <= 1e-9,
        "receptive_field": peer.receptive_field(config, block),
    }


# -- statistics and claims -------------------------------------------------------------------


def mean_sd(values: list[float]) -> tuple[int, float, float | None]:
    """``(n, mean, sample standard deviation)``; the deviation is ``None`` when ``n < 2``."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return n, mean, None
    return n, mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def claim_beats(a: list[float], b: list[float]) -> dict[str, Any]:
    """Does A beat B (lower bits per byte) beyond two standard deviations?

    ``d = mean_B - mean_A``, ``s = sqrt(sd_A^2 / n_A + sd_B^2 / n_B)``: "met" when ``d > 2 s``,
    "missed" when ``-d > 2 s``, "not distinguishable" otherwise, "insufficient seeds" when
    either side has fewer than 2 runs.
    """
    (na, ma, sa), (nb, mb, sb) = mean_sd(a), mean_sd(b)
    out: dict[str, Any] = {"difference": mb - ma, "n": [na, nb]}
    if sa is None or sb is None:
        return {**out, "outcome": "insufficient seeds", "two_sd": None}
    two_sd = 2 * math.sqrt(sa**2 / na + sb**2 / nb)
    d = mb - ma
    outcome = "met" if d > two_sd else "missed" if -d > two_sd else "not distinguishable"
    return {**out, "outcome": outcome, "two_sd": two_sd}


def claim_within(a: list[float], b: list[float], tol: float) -> dict[str, Any]:
    """Is A within ``tol`` bits per byte of B beyond two standard deviations?

    "met" when ``|mean_A - mean_B| + 2 s <= tol``, "missed" when ``|mean_A - mean_B| - 2 s >
    tol``, "not distinguishable" otherwise, "insufficient seeds" below 2 runs a side.
    """
    (na, ma, sa), (nb, mb, sb) = mean_sd(a), mean_sd(b)
    out: dict[str, Any] = {"difference": mb - ma, "n": [na, nb], "tolerance": tol}
    if sa is None or sb is None:
        return {**out, "outcome": "insufficient seeds", "two_sd": None}
    two_sd = 2 * math.sqrt(sa**2 / na + sb**2 / nb)
    gap = abs(ma - mb)
    outcome = (
        "met"
        if gap + two_sd <= tol
        else "missed"
        if gap - two_sd > tol
        else ("not distinguishable")
    )
    return {**out, "outcome": outcome, "two_sd": two_sd}


def bytes_to_reach(curve: dict[str, list[float]], level: float) -> int | None:
    """The training bytes at the first evaluation where the mean curve is ``<= level``."""
    for tokens, bpb in zip(curve["tokens"], curve["mean"]):
        if bpb <= level:
            return int(tokens)
    return None


# -- the report ------------------------------------------------------------------------------


def summarise(runs: dict[int, dict]) -> dict[str, Any]:
    """Mean and deviation over the seeds of one variant; the mean validation curve."""
    records = [runs[s] for s in sorted(runs)]
    n, mean, sd = mean_sd([r["val_bpb"] for r in records])
    steps = [row[0] for row in records[0]["val_curve"]]
    curves = [[row[2] for row in r["val_curve"]] for r in records]
    if any([row[0] for row in r["val_curve"]] != steps for r in records):
        raise ValueError("cached runs of one variant have different evaluation steps")
    points = [mean_sd(list(col)) for col in zip(*curves)]
    return {
        "seeds": sorted(runs),
        "n": n,
        "val_bpb_mean": mean,
        "val_bpb_sd": sd,
        "val_bpb": [r["val_bpb"] for r in records],
        "num_parameters": records[0]["num_parameters"],
        "ffn_mult": records[0]["ffn_mult"],
        "tokens_per_s_mean": sum(r["tokens_per_s"] for r in records) / n,
        "peak_mem_mb_mean": sum(r["peak_mem_mb"] for r in records) / n,
        "added_mem_mb_mean": sum(r["peak_mem_mb"] - r["start_mem_mb"] for r in records) / n,
        "wall_seconds_mean": sum(r["wall_seconds"] for r in records) / n,
        "load_average_mean": sum(r.get("load_average_before") or 0.0 for r in records) / n,
        "curve": {
            "steps": steps,
            "tokens": [row[1] for row in records[0]["val_curve"]],
            "mean": [p[1] for p in points],
            "sd": [p[2] for p in points],
        },
        "fusion": records[0].get("fusion"),
        "machines": sorted({r["machine"]["cpu"] for r in records}),
        "code": sorted({r.get("code", "unrecorded") for r in records}),
    }


#: The comparisons that the claims make, per position scheme: the layer's default, the
#: baselines it must beat, the softmax fusion and the game fusions to weigh against it, and the
#: baseline whose final loss it must reach with half the bytes. Without rotary embeddings the
#: published peer is compared as published (with its rotary embeddings) and without them.
FAMILIES: tuple[tuple[str, tuple[str, ...], str, tuple[str, ...], str], ...] = (
    ("maha-nash", ("full", "local", peer.VARIANT, peer.VARIANT_NO_ROTARY), "maha-softmax",
     GAME_FUSIONS, "full"),
    ("maha-nash-rope", ("full-rope", "local-rope", peer.VARIANT), "maha-softmax-rope",
     ("maha-nash-rope",), "full-rope"),
    ("maha-nash-anchor-rope", ("full-rope", "local-rope", peer.VARIANT, "maha-nash-rope"),
     "maha-softmax-anchor-rope", ("maha-nash-anchor-rope",), "full-rope"),
    ("maha-nash-shared-rope", ("full-rope", "local-rope", peer.VARIANT, "maha-nash-rope"),
     "maha-softmax-rope", ("maha-nash-shared-rope",), "full-rope"),
    ("maha-nash-fine-rope", ("full-rope", "local-rope", peer.VARIANT, "maha-nash-rope"),
     "maha-softmax-rope", ("maha-nash-fine-rope",), "full-rope"),
)  # fmt: skip


#: What the rotary embeddings change: (with, without) pairs of one model.
ROTARY_PAIRS: tuple[tuple[str, str], ...] = (
    ("full-rope", "full"),
    ("local-rope", "local"),
    ("maha-nash-rope", "maha-nash"),
    ("maha-softmax-rope", "maha-softmax"),
    (peer.VARIANT, peer.VARIANT_NO_ROTARY),
)


def claims(rows: dict[str, dict], total_bytes: int) -> list[dict[str, Any]]:
    """The issue's targets, each with its outcome (see :func:`claim_beats`), per family;
    then the effect of the rotary embeddings on each model that has both runs."""
    out = []
    for default, baselines, softmax, fusions, reference in FAMILIES:
        out += _family_claims(rows, total_bytes, default, baselines, softmax, fusions, reference)
    for with_rope, without in ROTARY_PAIRS:
        if with_rope in rows and without in rows:
            c = claim_beats(rows[with_rope]["val_bpb"], rows[without]["val_bpb"])
            out.append({"claim": f"{with_rope} beats {without}", **c})
    return out


def _family_claims(
    rows: dict[str, dict],
    total_bytes: int,
    default: str,
    baselines: tuple[str, ...],
    softmax: str,
    fusions: tuple[str, ...],
    reference: str,
) -> list[dict[str, Any]]:
    out = []
    for other in baselines:
        if default in rows and other in rows:
            c = claim_beats(rows[default]["val_bpb"], rows[other]["val_bpb"])
            out.append({"claim": f"{default} beats {other}", **c})
    games = [g for g in fusions if g in rows]
    if games and softmax in rows:
        best = min(games, key=lambda g: rows[g]["val_bpb_mean"])
        soft = rows[softmax]["val_bpb"]
        out.append(
            {
                "claim": f"best game fusion ({best}) beats {softmax}",
                **claim_beats(rows[best]["val_bpb"], soft),
            }  # fmt: skip
        )
        out.append(
            {
                "claim": f"best game fusion ({best}) within {WITHIN_BPB} bits/byte of {softmax}",
                **claim_within(rows[best]["val_bpb"], soft, WITHIN_BPB),
            }  # fmt: skip
        )
    if default in rows and reference in rows:
        level = rows[reference]["val_bpb_mean"]
        reached = bytes_to_reach(rows[default]["curve"], level)
        share = None if reached is None else reached / total_bytes
        outcome = "missed" if share is None or share > 0.5 else "met"
        out.append(
            {
                "claim": f"{default} reaches {reference}'s final bits/byte with at most half "
                "the bytes",
                "outcome": outcome,
                "bytes": reached,
                "share": share,
                "statistic": f"first evaluation of the mean curve at or below {reference}'s "
                "final mean (a point estimate, not a two-sd test)",
            }  # fmt: skip
        )
    return out


def section(
    out_dir: Path, settings: dict[str, Any], expected: tuple[str, ...], seeds: tuple[int, ...]
) -> dict[str, Any]:
    runs = load_runs(out_dir, settings)
    order = [v for v in TABLE_ORDER if v in runs or v in expected]
    order += sorted(v for v in {*runs, *expected} if v not in order)
    rows = {v: summarise(runs[v]) for v in order if v in runs}
    missing = {
        v: [s for s in seeds if s not in runs.get(v, {})]
        for v in order
        if any(s not in runs.get(v, {}) for s in seeds)
    }
    total = settings["steps"] * settings["batch_size"] * settings["seq_len"]
    out: dict[str, Any] = {
        "settings": settings,
        "runs_expected": sum(len({*seeds, *runs.get(v, {})}) for v in order),
        "runs_cached": sum(len(r) for r in runs.values()),
        "code_versions": _count(
            r.get("code", "unrecorded") for v in runs.values() for r in v.values()
        ),
        "settings_key": settings_key(settings),
        "expected_seeds": list(seeds),
        "variants": rows,
        "missing": missing,
        "claims": claims(rows, total),
    }
    if any(v in expected for v in peer.VARIANTS):
        out["peer_checks"] = peer_checks(settings)
    return out


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def _fmt_claim(c: dict[str, Any]) -> str:
    if "share" in c:
        got = "never" if c["bytes"] is None else f"at {c['bytes']:,} bytes ({c['share']:.0%})"
        return f"{c['claim']}: **{c['outcome']}** (reached {got}; {c['statistic']})"
    n = f"n = {c['n'][0]}, {c['n'][1]}"
    if c["two_sd"] is None:
        return f"{c['claim']}: **{c['outcome']}** ({n}; difference of means {c['difference']:+.4f})"
    return (
        f"{c['claim']}: **{c['outcome']}** (mean_B - mean_A = {c['difference']:+.4f} bits/byte, "
        f"2 s = {c['two_sd']:.4f}; {n})"
    )


def section_markdown(title: str, sec: dict[str, Any]) -> list[str]:
    s, rows = sec["settings"], sec["variants"]
    total = s["steps"] * s["batch_size"] * s["seq_len"]
    lines = [
        f"## {title}",
        "",
        f"{s['steps']:,} steps x {s['batch_size']} x {s['seq_len']:,} bytes ({total:,} training "
        f"bytes per run), d_model={s['d_model']}, {s['n_layer']} layers, {s['n_head']} heads, "
        f"{s['num_scales']} scales, window {s['window']}, H-Transformer-1D block "
        f"{s['peer_block_size']}, lr {s['lr']} ({s['warmup_steps']} warm-up steps, cosine decay), "
        f"validation on {s['eval_sequences']} fixed windows every {s['eval_every']} steps; "
        f"cache key `{sec['settings_key']}`.",
        "",
    ]
    done, expected = sec["runs_cached"], sec["runs_expected"]
    if sec["missing"]:
        missing = "; ".join(
            f"{v} seed{'s' if len(m) > 1 else ''} {', '.join(map(str, m))}"
            for v, m in sec["missing"].items()
        )
        lines += [f"Runs cached: {done} of {expected}. **Missing:** {missing}.", ""]
    else:
        lines += [f"Runs cached: {done}; none missing.", ""]
    if not rows:
        return [*lines, "No run of this grid is cached yet.", ""]
    versions = ", ".join(f"`{c}` ({n} runs)" for c, n in sorted(sec["code_versions"].items()))
    lines += [f"Library source fingerprint of the runs (`maha`, `aggregation`): {versions}.", ""]
    full = rows.get("full")
    lines += [
        "| variant | seeds | parameters | val bits/byte (mean ± sd) | vs full | tokens/s | "
        "peak RSS MB | added MB | min/run | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        sd = "n/a" if r["val_bpb_sd"] is None else f"{r['val_bpb_sd']:.4f}"
        vs = f"{100 * (r['val_bpb_mean'] / full['val_bpb_mean'] - 1):+.2f}%" if full else "-"
        lines.append(
            f"| {name} | {','.join(map(str, r['seeds']))} | {r['num_parameters']:,} | "
            f"{r['val_bpb_mean']:.4f} ± {sd} | {vs} | {r['tokens_per_s_mean']:,.0f} | "
            f"{r['peak_mem_mb_mean']:.0f} | {r['added_mem_mb_mean']:.0f} | "
            f"{r['wall_seconds_mean'] / 60:.1f} | {r['load_average_mean']:.1f} |"
        )
    lines += [
        "",
        "tokens/s and min/run depend on what else ran: `load` is the machine's 1-minute load "
        f"average as each run started (mean over seeds; {os.cpu_count()} logical CPUs here).",
        "",
        "Claims (A beats B: mean_B - mean_A > 2 s, s = sqrt(sd_A²/n_A + sd_B²/n_B)):",
        "",
    ]
    lines += [f"- {_fmt_claim(c)}" for c in sec["claims"]] or ["- none: too few variants"]
    checks = sec.get("peer_checks")
    if checks:
        lines.append("")
        if not checks["available"]:
            lines.append("H-Transformer-1D: the `h-transformer-1d` package is not installed.")
        else:
            rf = checks["receptive_field"]
            verdict = "causal" if checks["causal"] else "**NOT causal: its runs are not trained**"
            lines.append(
                f"H-Transformer-1D (`CausalHAttention1D`) at length {s['seq_len']:,}: {verdict} "
                f"(largest change of a logit at positions <= t when the bytes after t change: "
                f"{checks['max_logit_change']:.1e}, float64). Its attention output at a position "
                f"depends on {rf['mean_prefix_share_seen']:.0%} of the prefix on average "
                f"({rf['mean_prefix_share_seen_after_first_block']:.0%} past the first block); "
                f"{rf['share_seeing_only_own_block']:.0%} of positions see only their own "
                f"block of {rf['peer_block_size']} (gradient support, {rf['positions_sampled']} "
                "positions)."
            )
    fused = {k: r["fusion"] for k, r in rows.items() if r.get("fusion")}
    if fused:
        lines += [
            "",
            "Fusion on validation text (seed of the first cached run; positions where all",
            "scales are present; scale 0 is the finest): mean weight per scale, normalised",
            "entropy (1 = uniform), share of exact zeros, largest regret of the scale game.",
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
    return [*lines, ""]


def write_markdown(report: dict, path: Path) -> None:
    lines = [
        "# Language-model quality (bytes of the Python standard library)",
        "",
        "Causal byte-level models, parameter-matched (full, local and H-Transformer-1D get the "
        "feed-forward width closest to maha-nash's parameter count), one CPU thread per run; "
        "mean ± sample standard deviation over seeds. Rebuilt from the cached runs on "
        f"{report['date']}; machines: {', '.join(report['machines']) or 'none yet'}.",
        "",
    ]
    for title, sec in report["sections"].items():
        lines += section_markdown(title, sec)
    lines += [f"Reproduce: `{report['command']}` (each run is cached; see the script).", ""]
    write_atomic(path, "\n".join(lines))


#: One colour per model, shared by its position schemes (:func:`_line_style`).
_MODELS = ("full", "local", peer.VARIANT, "maha-nash", "maha-convex", "maha-softmax",
           "maha-logit", "maha-nash-learnmu", "maha-nash-anchor",
           "maha-softmax-anchor", "maha-nash-shared")  # fmt: skip


def _line_style(variant: str) -> tuple[str, str]:
    """``(colour, line style)``: the model's colour; dashed with rotary embeddings."""
    rotary = variant.endswith("-rope") or variant == peer.VARIANT
    model = variant.removesuffix("-norope").removesuffix("-rope")
    index = _MODELS.index(model) if model in _MODELS else len(_MODELS)
    return f"C{index % 10}", "--" if rotary else "-"


def write_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = {t: s for t, s in report["sections"].items() if s["variants"]}
    fig, axes = plt.subplots(1, max(1, len(sections)), figsize=(5.8 * max(1, len(sections)), 4.3))
    axes = [axes] if not hasattr(axes, "__len__") else list(axes)
    for ax, (title, sec) in zip(axes, sections.items()):
        for name, r in sec["variants"].items():
            c = r["curve"]
            x = [t / 1e6 for t in c["tokens"]]
            color, style = _line_style(name)
            (line,) = ax.plot(
                x, c["mean"], style, marker="o", ms=2.5, color=color, label=f"{name} (n={r['n']})"
            )
            if r["n"] >= 2:
                lo = [m - s for m, s in zip(c["mean"], c["sd"])]
                hi = [m + s for m, s in zip(c["mean"], c["sd"])]
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
        ax.set(xlabel="training bytes (millions)", ylabel="validation bits per byte", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    if not sections:
        axes[0].text(0.5, 0.5, "no cached runs", ha="center", va="center")
    fig.suptitle(
        "Byte-level LM on the standard library: mean and ± 1 sd over seeds "
        "(dashed: rotary position embeddings)"
    )
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def build_report(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Rebuild ``lm_quality.{json,md,png}`` in ``args.out_dir`` from the cached runs."""
    grids = {
        f"{args.seq_len:,} bytes per window": (grid_settings(args, False), DEFAULT_VARIANTS,
                                               DEFAULT_SEEDS),
        f"{args.long_seq_len:,} bytes per window": (grid_settings(args, True), LONG_VARIANTS,
                                                    LONG_SEEDS),
    }  # fmt: skip
    sections = {}
    for title, (settings, variants, seeds) in grids.items():
        seeds = tuple(args.seeds) if args.quick else seeds
        sections[title] = section(args.out_dir, settings, variants, seeds)
    machines = sorted({m for s in sections.values() for r in s["variants"].values()
                       for m in r["machines"]})  # fmt: skip
    report = {
        "benchmark": "lm_quality",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machines": machines,
        "statistic": "A beats B: mean_B - mean_A > 2 sqrt(sd_A^2/n_A + sd_B^2/n_B), sample sd",
        "sections": sections,
    }
    write_atomic(args.out_dir / "lm_quality.json", json.dumps(report, indent=2) + "\n")
    write_markdown(report, args.out_dir / "lm_quality.md")
    write_plot(report, args.out_dir / "lm_quality.png")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = COMMAND + (" (--quick)" if args.quick else "")
    settings = grid_settings(args, args.long)
    variants = tuple(args.variants or (LONG_VARIANTS if args.long else DEFAULT_VARIANTS))
    seeds = tuple(args.seeds or (LONG_SEEDS if args.long else DEFAULT_SEEDS))
    todo = [
        (v, s)
        for s in seeds
        for v in variants
        if args.retrain or not run_path(args.out_dir, v, s, settings).exists()
    ]
    if args.report_only:
        todo = []
    if any(v in peer.VARIANTS for v, _ in todo):
        checks = peer_checks(settings)
        if not checks["available"] or not checks["causal"]:
            why = "not installed" if not checks["available"] else "not causal"
            print(f"[lm_quality] skipping {'/'.join(peer.VARIANTS)}: {why}", file=sys.stderr)
            todo = [(v, s) for v, s in todo if v not in peer.VARIANTS]
    cached = len(variants) * len(seeds) - len(todo)
    print(f"[lm_quality] {len(todo)} runs to train, {cached} cached or skipped (key "
          f"{settings_key(settings)})", file=sys.stderr)  # fmt: skip
    started = time.perf_counter()
    failed = []
    for i, (variant, seed) in enumerate(todo, 1):
        try:
            with tempfile.TemporaryDirectory() as tmp:
                record = train_run(variant, seed, settings, args.threads, Path(tmp))
        except RuntimeError as err:  # one failed run does not stop an unattended grid
            print(f"[lm_quality] {i}/{len(todo)} FAILED: {err}", file=sys.stderr, flush=True)
            failed.append(f"{variant} seed {seed}")
            continue
        path = run_path(args.out_dir, variant, seed, settings)
        write_atomic(path, json.dumps(record, indent=1) + "\n")
        elapsed = time.perf_counter() - started
        left = elapsed / i * (len(todo) - i)
        print(
            f"[lm_quality] {i}/{len(todo)} {variant} seed {seed}: val {record['val_bpb']:.4f} "
            f"bits/byte, {record['wall_seconds'] / 60:.1f} min; elapsed {elapsed / 60:.1f} min, "
            f"about {left / 60:.0f} min left -> {path.name}",
            file=sys.stderr,
            flush=True,
        )
        build_report(args, command)
    build_report(args, command)
    print((args.out_dir / "lm_quality.md").read_text())
    print(f"[lm_quality] report in {args.out_dir}", file=sys.stderr)
    if failed:
        print(f"[lm_quality] failed runs: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
