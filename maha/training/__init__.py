"""Training, evaluation and distributed training of the byte-level language models.

- :mod:`~maha.training.data`: the corpus (the standard library's source files or any text),
  the by-file train/validation split, packing, and the rank-sharded resumable sampler.
- :mod:`~maha.training.loop`: AdamW, cosine schedule, clipping, checkpoints that resume
  exactly, evaluation in bits per byte.
- :mod:`~maha.training.distributed`: DDP under ``torchrun`` (gloo on CPU, nccl on GPUs).
- :func:`main`: the command line (``python -m maha.training`` or ``examples/train_lm.py``).
"""

from .cli import build_parser, config_from_args, main
from .data import (
    SEPARATOR,
    ByteCorpus,
    ByteSplit,
    ShardedBatchSampler,
    discover_text_files,
    load_corpus,
    stdlib_root,
)
from .distributed import DistributedContext, init_distributed, resolve_device, wrap_model
from .loop import (
    DTYPES,
    PreparedRun,
    TrainConfig,
    TrainResult,
    build_optimizer,
    cosine_lr_lambda,
    evaluate_bpb,
    latest_checkpoint,
    load_checkpoint,
    prepare,
    train,
)

__all__ = [
    "DTYPES",
    "SEPARATOR",
    "ByteCorpus",
    "ByteSplit",
    "DistributedContext",
    "PreparedRun",
    "ShardedBatchSampler",
    "TrainConfig",
    "TrainResult",
    "build_optimizer",
    "build_parser",
    "config_from_args",
    "cosine_lr_lambda",
    "discover_text_files",
    "evaluate_bpb",
    "init_distributed",
    "latest_checkpoint",
    "load_checkpoint",
    "load_corpus",
    "main",
    "prepare",
    "resolve_device",
    "stdlib_root",
    "train",
    "wrap_model",
]
