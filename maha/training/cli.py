"""Command line of the trainer: ``python -m maha.training`` or ``examples/train_lm.py``.

Single process::

    python examples/train_lm.py --variant maha-nash --steps 200 --seq-len 1024

Distributed data parallel (gloo on CPU, nccl on GPUs; ``--batch-size`` is the global batch)::

    torchrun --nproc_per_node=2 examples/train_lm.py --variant maha-nash --batch-size 8

Resume an interrupted run with the same options plus ``--resume`` (newest checkpoint in
``--checkpoint-dir``) or ``--resume PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

from ..config import DECOMPOSITIONS, MAHAConfig
from ..model import VARIANTS
from .distributed import cleanup_distributed
from .loop import DTYPES, TrainConfig, prepare, train

__all__ = ["build_parser", "config_from_args", "main"]


def _window(text: str) -> int | None:
    if text.lower() in ("none", "full"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'none'; received {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of :func:`main`."""
    p = argparse.ArgumentParser(
        prog="train_lm",
        description="Train a causal byte-level language model (MAHA or a baseline) on text.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--variant", default="maha-nash", help=f"one of {', '.join(VARIANTS)}")
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default="stdlib",
        help="'stdlib' (the Python standard library's source files), or a text file or folder",
    )
    g.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of bytes held out for validation, in whole files",
    )
    g.add_argument(
        "--max-bytes", type=int, default=None, help="read only a sample of about this many bytes"
    )
    g.add_argument("--seq-len", type=int, default=1024, help="bytes per training window")
    m = p.add_argument_group("model")
    m.add_argument("--d-model", type=int, default=128)
    m.add_argument("--n-layer", "--layers", dest="n_layer", type=int, default=2)
    m.add_argument("--n-head", "--heads", dest="n_head", type=int, default=4)
    m.add_argument("--num-scales", "--scales", dest="num_scales", type=int, default=4)
    m.add_argument("--ratio", type=int, default=2, help="downsampling ratio between scales")
    m.add_argument("--window", type=_window, default=64, help="local window, or 'none'")
    m.add_argument(
        "--block-size", type=int, default=None, help="model's maximum length (default: seq-len)"
    )
    m.add_argument("--decomposition", default="conv", choices=DECOMPOSITIONS)
    m.add_argument("--mu", type=float, default=1.0, help="diagonal shift of the scale game")
    m.add_argument("--gating", action="store_true", help="cross-scale gate (paper Eq. 12)")
    m.add_argument(
        "--solver-max-iter",
        type=int,
        default=None,
        help="iteration budget of the fusion's game solver (default: the solver's own)",
    )
    m.add_argument("--asymmetric", action="store_true", help="learned skew term in the game")
    m.add_argument("--learn-mu", action="store_true", help="learned per-head mu of the game")
    m.add_argument(
        "--rotary", action="store_true", help="rotary position embeddings of queries and keys"
    )
    m.add_argument(
        "--anchor-fine",
        action="store_true",
        help="the finest scale added with weight one; the fusion weighs the coarser scales",
    )
    m.add_argument(
        "--fine-bias",
        type=float,
        default=0.0,
        help="initial preference of the fusion for the finest scale (utility bias or logit)",
    )
    m.add_argument(
        "--shared-qk",
        action="store_true",
        help="one query/key projection for every scale (fewer parameters, same FLOPs)",
    )
    m.add_argument("--dropout", type=float, default=0.0)
    m.add_argument("--ffn-mult", type=int, default=4)
    o = p.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, default=200)
    o.add_argument("--batch-size", type=int, default=8, help="global batch (all processes)")
    o.add_argument("--lr", type=float, default=2e-3)
    o.add_argument("--min-lr-ratio", type=float, default=0.1)
    o.add_argument("--warmup-steps", type=int, default=None, help="default: 5%% of --steps")
    o.add_argument("--weight-decay", type=float, default=0.1)
    o.add_argument("--grad-clip", type=float, default=1.0, help="0 disables clipping")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:K")
    o.add_argument("--dtype", default="float32", choices=tuple(DTYPES))
    e = p.add_argument_group("evaluation and checkpoints")
    e.add_argument("--eval-every", type=int, default=50, help="0: only at the end")
    e.add_argument("--eval-sequences", type=int, default=64, help="validation windows per eval")
    e.add_argument("--checkpoint-dir", default=None)
    e.add_argument("--checkpoint-every", type=int, default=0, help="0: only at the end")
    e.add_argument("--keep-checkpoints", type=int, default=2)
    e.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        help="resume from the newest checkpoint in --checkpoint-dir, or from PATH",
    )
    e.add_argument("--json-out", default=None, help="write the run's summary as JSON here")
    e.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    o.add_argument(
        "--compile",
        nargs="?",
        const="inductor",
        default=None,
        metavar="BACKEND",
        help="train through torch.compile (default backend: inductor)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A validated :class:`TrainConfig` from parsed arguments (``ValueError`` names the option)."""
    model = MAHAConfig(
        block_size=args.block_size if args.block_size is not None else args.seq_len,
        n_layer=args.n_layer,
        n_head=args.n_head,
        d_model=args.d_model,
        num_scales=args.num_scales,
        ratio=args.ratio,
        window=args.window,
        decomposition=args.decomposition,
        mu=args.mu,
        gating=args.gating,
        solver_max_iter=args.solver_max_iter,
        asymmetric=args.asymmetric,
        learn_mu=args.learn_mu,
        rotary=args.rotary,
        anchor_fine=args.anchor_fine,
        fine_bias=args.fine_bias,
        shared_qk=args.shared_qk,
        dropout=args.dropout,
        ffn_mult=args.ffn_mult,
    )
    config = TrainConfig(
        variant=args.variant,
        model=model,
        data=None if args.data == "stdlib" else args.data,
        val_fraction=args.val_fraction,
        max_bytes=args.max_bytes,
        seq_len=args.seq_len,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr_ratio=args.min_lr_ratio,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        eval_every=args.eval_every,
        eval_sequences=args.eval_sequences,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        resume=args.resume,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        progress=not args.no_progress,
        json_out=args.json_out,
        compile=args.compile,
    )
    config.validate()
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, train, print a one-line JSON summary; bad input exits with status 2.

    Every input error (unknown variant, missing data, ``--seq-len`` above ``--block-size``, a
    checkpoint from another configuration, ...) is reported as ``train_lm: error: ...`` before
    any training starts.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run = prepare(config_from_args(args))
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    try:
        result = train(run)
    finally:
        cleanup_distributed()
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {
            k: v
            for k, v in result.to_dict().items()
            if k not in ("config", "train_loss", "val_curve", "step_seconds")
        }
        print(json.dumps(summary))
    return 0
