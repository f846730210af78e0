"""Training and evaluation of the byte-level language models, with exact resumption.

The objective is the mean next-byte cross-entropy over a global batch of ``B`` packed windows
of ``T`` bytes,

    L(θ) = -(1 / (B T)) Σ_b Σ_t log p_θ(y_{b,t} | x_{b,≤t}),

minimised by AdamW (decoupled weight decay on matrices and embeddings only; Loshchilov &
Hutter, 2019) with the gradient's global norm clipped to ``grad_clip`` (Pascanu et al., 2013)
and the learning rate following a linear warm-up and a cosine decay (Loshchilov & Hutter, 2017):

    lr(s) = lr · (s + 1) / S_w                                             s < S_w
    lr(s) = lr · (ρ + (1 - ρ) · ½ (1 + cos(π (s - S_w) / (S - S_w))))    S_w ≤ s < S

with ``S`` steps, ``S_w`` warm-up steps and floor ratio ``ρ = min_lr_ratio``. Validation reports
*bits per byte*, the cross-entropy in base 2 per predicted byte,

    bpb = (1 / (N ln 2)) Σ_{n<N} -ln p_θ(y_n | context_n),

over a fixed, evenly spaced set of validation windows (the separator byte that ends each
document counts as one predicted byte).

Reproducibility and resumption: the model is initialised from ``seed``; before step ``s`` the
global RNG is reseeded from ``(seed, rank, s)``, and the data of step ``s`` is a pure function
of ``(seed, s)`` (:class:`~maha.training.data.ShardedBatchSampler`). A checkpoint stores the
model, the optimizer, the scheduler, the RNG states (torch, CUDA, Python), the sampler
position and the history, so ``N`` steps in one run and ``N/2 + N/2`` steps across a resume
give identical parameters.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aggregation.validation import check_choice, check_int, check_nonnegative, check_positive

from ..config import MAHAConfig
from ..model import VARIANTS, build_model
from .data import ByteCorpus, ByteSplit, ShardedBatchSampler, load_corpus
from .distributed import (
    DistributedContext,
    all_reduce_sum,
    init_distributed,
    wrap_model,
)

__all__ = [
    "DTYPES",
    "TrainConfig",
    "TrainResult",
    "build_optimizer",
    "checkpoint_path",
    "cosine_lr_lambda",
    "evaluate_bpb",
    "latest_checkpoint",
    "load_checkpoint",
    "prepare",
    "PreparedRun",
    "train",
]

#: Parameter dtypes a run may use (float64 for tests that compare runs bit for bit).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}

# Options that may change between a checkpoint and the run that resumes it: they do not
# change the parameters after a given step.
_RESUMABLE_CHANGES = frozenset(
    {
        "device",
        "checkpoint_dir",
        "checkpoint_every",
        "keep_checkpoints",
        "resume",
        "progress",
        "eval_every",
        "json_out",
    }
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the model's shape lives in ``model``).

    Attributes:
        variant: one of :data:`maha.model.VARIANTS`.
        model: the :class:`~maha.config.MAHAConfig` (its ``strategy`` is set by ``variant``).
        data: ``None``/``"stdlib"`` for the standard library, or a text file or folder.
        val_fraction: share of the bytes held out for validation (whole files).
        max_bytes: read at most about this many bytes of the corpus (a sample), or all.
        seq_len: window length ``T``; at most ``model.block_size``.
        steps: optimizer steps ``S``.
        batch_size: global batch ``B`` (windows per step, summed over processes).
        lr: peak learning rate.
        min_lr_ratio: ``ρ``, the final learning rate as a share of ``lr``.
        warmup_steps: ``S_w``; ``None`` means 5% of ``steps`` (at least 1).
        weight_decay: AdamW decoupled weight decay on matrices and embeddings.
        beta1, beta2: AdamW moment decay rates.
        grad_clip: clip the global gradient norm to this (0 disables clipping).
        eval_every: evaluate every this many steps (0: only after the last step).
        eval_sequences: validation windows per evaluation (evenly spaced, fixed).
        checkpoint_dir: where checkpoints go (``None``: no checkpoints).
        checkpoint_every: write a checkpoint every this many steps (0: only at the end).
        keep_checkpoints: keep this many most recent checkpoints.
        resume: ``None``, ``"latest"`` (newest in ``checkpoint_dir``) or a checkpoint path.
        seed: seed of initialisation, data order and dropout.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:K"``.
        dtype: parameter dtype, a key of :data:`DTYPES`.
        progress: show a tqdm progress bar (rank 0 only).
        json_out: write the run's summary (:meth:`TrainResult.to_dict`) to this path.
        compile: ``None`` (eager) or a ``torch.compile`` backend (``"inductor"``, or
            ``"aot_eager"`` to check a graph without code generation) for the training
            forward and backward; evaluation and checkpoints use the eager module (same
            parameters, same state-dict keys). Under compilation the game fusions solve
            by support enumeration (no host reads), which returns the same equilibria.
    """

    variant: str = "maha-nash"
    model: MAHAConfig = field(default_factory=lambda: MAHAConfig(n_layer=2, d_model=128))
    data: str | None = None
    val_fraction: float = 0.1
    max_bytes: int | None = None
    seq_len: int = 1024
    steps: int = 200
    batch_size: int = 8
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int | None = None
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_sequences: int = 64
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    resume: str | None = None
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    progress: bool = True
    json_out: str | None = None
    compile: str | None = None

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the option of any bad value."""
        check_choice(self.variant, "variant", VARIANTS)
        if not isinstance(self.model, MAHAConfig):
            raise TypeError(f"model must be a MAHAConfig; received {type(self.model).__name__}")
        check_int(self.seq_len, "seq_len", minimum=1)
        if self.seq_len > self.model.block_size:
            raise ValueError(
                f"seq_len={self.seq_len} exceeds the model's maximum length "
                f"block_size={self.model.block_size}; lower --seq-len or raise --block-size"
            )
        check_int(self.steps, "steps", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_positive(self.lr, "lr")
        check_nonnegative(self.min_lr_ratio, "min_lr_ratio")
        if self.min_lr_ratio > 1:
            raise ValueError(f"min_lr_ratio must lie in [0, 1]; received {self.min_lr_ratio!r}")
        if self.warmup_steps is not None:
            check_int(self.warmup_steps, "warmup_steps", minimum=0)
        check_nonnegative(self.weight_decay, "weight_decay")
        for name in ("beta1", "beta2"):
            value = check_nonnegative(getattr(self, name), name)
            if value >= 1:
                raise ValueError(f"{name} must lie in [0, 1); received {value!r}")
        check_nonnegative(self.grad_clip, "grad_clip")
        check_int(self.eval_every, "eval_every", minimum=0)
        check_int(self.eval_sequences, "eval_sequences", minimum=1)
        check_int(self.checkpoint_every, "checkpoint_every", minimum=0)
        check_int(self.keep_checkpoints, "keep_checkpoints", minimum=1)
        check_int(self.seed, "seed", minimum=0)
        check_choice(self.dtype, "dtype", tuple(DTYPES))
        if self.resume is not None and self.resume == "latest" and self.checkpoint_dir is None:
            raise ValueError("resume='latest' needs checkpoint_dir (--checkpoint-dir) to be set")
        if self.max_bytes is not None:
            check_int(self.max_bytes, "max_bytes", minimum=1)
        if self.compile is not None:
            backends = tuple(torch.compiler.list_backends(exclude_tags=()))
            check_choice(self.compile, "compile", backends)

    @property
    def total_warmup(self) -> int:
        """``S_w``: ``warmup_steps``, or 5% of ``steps`` (at least 1) when unset."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return max(1, round(0.05 * self.steps))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields, the model config as a nested dict."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["model"] = self.model.to_dict()
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        values = dict(values)
        values["model"] = MAHAConfig.from_dict(values["model"])
        return cls(**values)


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        model: the trained model (unwrapped from DDP), in eval mode.
        config: the run's configuration.
        num_parameters: trainable parameters (tied weights counted once).
        step: steps completed.
        tokens_seen: bytes trained on, summed over processes.
        train_loss: per step ``[step, loss in nats]`` (mean over processes).
        val_curve: per evaluation ``[step, tokens_seen, bits per byte]``.
        val_bpb: bits per byte of the last evaluation.
        tokens_per_s: training bytes per second (all processes) over this invocation's steps.
        peak_mem_mb: peak memory: CUDA allocator peak, or the process's peak resident set.
        start_mem_mb: the same measure's current value just before the first step (CUDA:
            allocated; CPU: resident set), so ``peak - start`` is what training added.
        train_seconds: wall time of this invocation's training steps (evaluation excluded).
        step_seconds: wall time of each of this invocation's steps.
    """

    model: nn.Module
    config: TrainConfig
    num_parameters: int
    step: int
    tokens_seen: int
    train_loss: list[list[float]]
    val_curve: list[list[float]]
    val_bpb: float
    tokens_per_s: float
    peak_mem_mb: float
    start_mem_mb: float
    train_seconds: float
    step_seconds: list[float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (without the model)."""
        return {
            "variant": self.config.variant,
            "config": self.config.to_dict(),
            "num_parameters": self.num_parameters,
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "train_loss": self.train_loss,
            "val_curve": self.val_curve,
            "val_bpb": self.val_bpb,
            "tokens_per_s": self.tokens_per_s,
            "peak_mem_mb": self.peak_mem_mb,
            "start_mem_mb": self.start_mem_mb,
            "train_seconds": self.train_seconds,
            "step_seconds": self.step_seconds,
        }


def cosine_lr_lambda(step: int, *, steps: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine decay to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on parameters of two or more dimensions only.

    Biases, norm gains and other vectors are not decayed (GPT-2/nanoGPT practice).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def _step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729) % (2**63 - 1)


def evaluate_bpb(
    model: nn.Module,
    split: ByteSplit,
    *,
    seq_len: int,
    batch_size: int,
    num_sequences: int,
    context: DistributedContext | None = None,
) -> float:
    """Bits per byte of ``model`` on ``num_sequences`` evenly spaced windows of ``split``.

    The windows are ``round(linspace(0, S - 1, k))`` (deduplicated) of the split's ``S``
    windows; under DDP rank ``r`` evaluates every ``W``-th of them and the sums are reduced.

    Returns:
        ``Σ -ln p / (N ln 2)`` over the ``N = k T`` predicted bytes.
    """
    ctx = context or DistributedContext(0, 1, 0, torch.device("cpu"))
    total = split.num_sequences(seq_len)
    k = min(num_sequences, total)
    picks = torch.linspace(0, total - 1, k).round().long().unique()  # (k,)
    mine = picks[ctx.rank :: ctx.world_size]
    device = next(model.parameters()).device
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # (nats, bytes)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, mine.numel(), batch_size):
            x, y = split.batch(mine[start : start + batch_size], seq_len)  # (b, T) each
            logits = model(x.to(device))  # (b, T, 256)
            nats = F.cross_entropy(
                logits.flatten(0, 1).double(), y.to(device).flatten(), reduction="sum"
            )
            sums += torch.stack([nats, torch.tensor(float(y.numel()), device=device).double()])
    model.train(was_training)
    sums = all_reduce_sum(sums, ctx)
    return float(sums[0] / sums[1]) / math.log(2.0)


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    """Path of the checkpoint written after ``step`` steps."""
    return Path(directory) / f"ckpt_{step:08d}.pt"


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint with the most steps in ``directory``, or ``None``."""
    found = sorted(Path(directory).glob("ckpt_*.pt")) if Path(directory).is_dir() else []
    return found[-1] if found else None


def load_checkpoint(
    path: str | os.PathLike[str], *, label: str = "resume checkpoint"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train` (on the CPU).

    Args:
        path: the checkpoint file.
        label: how error messages name it (the caller's option or argument).

    Returns:
        The dict :func:`train` saved: ``train_config`` (:meth:`TrainConfig.to_dict`, which
        is all :func:`maha.load_model` needs to rebuild the model), ``model`` (its
        ``state_dict``), ``optimizer``, ``scheduler``, ``sampler``, ``rng``, ``history``,
        ``step``.

    Raises:
        ValueError: the file does not exist or is not a checkpoint of this trainer.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{label} {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is bad input
        raise ValueError(f"{label} {str(path)!r} could not be read: {err}") from None
    if not isinstance(state, dict) or "train_config" not in state or "model" not in state:
        raise ValueError(f"{label} {str(path)!r} was not written by maha.training")
    return state


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_compatible(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """Raise ``ValueError`` listing every option in which ``config`` differs from the checkpoint."""
    now = config.to_dict()
    diffs = []
    for key in sorted(set(saved) | set(now)):
        if key in _RESUMABLE_CHANGES:
            continue
        if key == "model":
            old_m, new_m = saved.get("model", {}), now["model"]
            for sub in sorted(set(old_m) | set(new_m)):
                if old_m.get(sub) != new_m.get(sub):
                    diffs.append(
                        f"{_option(sub)}: {old_m.get(sub)!r} (checkpoint) vs {new_m.get(sub)!r}"
                    )
        elif saved.get(key) != now.get(key):
            diffs.append(f"{_option(key)}: {saved.get(key)!r} (checkpoint) vs {now.get(key)!r}")
    if diffs:
        raise ValueError(
            f"resume checkpoint {str(path)!r} was written with a different configuration; "
            "resume with the same options or start a new run. Differences: " + "; ".join(diffs)
        )


def _unused_parameters(model: nn.Module) -> list[str]:
    """Names of parameters that receive no gradient from a tiny forward/backward pass."""
    if not any(p.requires_grad for p in model.parameters()):
        return []
    device = next(model.parameters()).device
    length = min(8, getattr(getattr(model, "config", None), "block_size", 8))
    probe = torch.zeros(1, length, dtype=torch.long, device=device)  # (1, n)
    grads = torch.autograd.grad(
        model(probe).sum(),
        [p for p in model.parameters() if p.requires_grad],
        allow_unused=True,
    )
    named = [n for n, p in model.named_parameters() if p.requires_grad]
    return [name for name, grad in zip(named, grads) if grad is None]


def _current_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    try:
        with open("/proc/self/statm") as fh:  # Linux: pages resident is the second field
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _peak_mem_mb(device)


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Generator states as tensors and plain tuples (loadable with ``weights_only=True``)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    random.setstate(state["python"])


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: an interruption never leaves a half-written checkpoint


def _prune(directory: Path, keep: int) -> None:
    for old in sorted(directory.glob("ckpt_*.pt"))[:-keep]:
        old.unlink()


@dataclass
class PreparedRun:
    """A run whose input has been checked: its data, its (seeded) model and resume state."""

    config: TrainConfig
    corpus: ByteCorpus
    model: nn.Module
    saved: dict[str, Any] | None


def prepare(config: TrainConfig) -> PreparedRun:
    """Check every input of a run and build its model, before any training starts.

    Checks the options, the checkpoint to resume (it must exist and come from the same
    configuration), the data (the path must exist and hold text, both splits must hold a
    window of ``seq_len``) and builds the model from ``seed``.

    Raises:
        ValueError, TypeError: the message names the offending option.
    """
    config.validate()
    resume_path: Path | None = None
    saved: dict[str, Any] | None = None
    if config.resume is not None:
        if config.resume == "latest":
            resume_path = latest_checkpoint(config.checkpoint_dir or ".")
            if resume_path is None:
                raise ValueError(
                    f"--resume found no checkpoint in --checkpoint-dir {config.checkpoint_dir!r}"
                )
        else:
            resume_path = Path(config.resume)
        saved = load_checkpoint(resume_path)
        _check_compatible(saved["train_config"], config, resume_path)
    corpus = load_corpus(config.data, val_fraction=config.val_fraction, max_bytes=config.max_bytes)
    corpus.check_seq_len(config.seq_len)
    num_train = corpus.train.num_sequences(config.seq_len)
    if saved is not None and saved["sampler"]["num_sequences"] != num_train:
        raise ValueError(
            f"resume checkpoint {str(resume_path)!r} was trained on data with "
            f"{saved['sampler']['num_sequences']} windows, but --data now gives {num_train}; "
            "the data changed since the checkpoint was written"
        )
    torch.manual_seed(config.seed)
    model = build_model(config.variant, config.model).to(dtype=DTYPES[config.dtype])
    if saved is not None:
        model.load_state_dict(saved["model"])
    return PreparedRun(config, corpus, model, saved)


def train(config: TrainConfig | PreparedRun) -> TrainResult:
    """Train ``config.variant`` on ``config.data``; single process or one rank under torchrun.

    Every check of the input (see :func:`prepare`) runs before the first step. Under
    ``torchrun`` each rank calls this with the same config; rank 0 prints, writes checkpoints
    and the JSON summary. The process group is joined on the first call and kept for later
    calls; leave it with :func:`~maha.training.distributed.cleanup_distributed` when done.

    Returns:
        A :class:`TrainResult` (every rank gets the same numbers).

    Raises:
        ValueError, TypeError: bad options, a data path without text, ``seq_len`` above the
            model's ``block_size`` or the data's length, or a checkpoint of another config.
    """
    run = config if isinstance(config, PreparedRun) else prepare(config)
    return _train(run, init_distributed(run.config.device))


def _train(run: PreparedRun, ctx: DistributedContext) -> TrainResult:
    from tqdm.auto import tqdm

    config, corpus, saved = run.config, run.corpus, run.saved
    model = run.model.to(device=ctx.device)
    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: cosine_lr_lambda(
            s, steps=config.steps, warmup=config.total_warmup, min_ratio=config.min_lr_ratio
        ),
    )
    sampler = ShardedBatchSampler(
        corpus.train.num_sequences(config.seq_len),
        config.batch_size,
        rank=ctx.rank,
        world_size=ctx.world_size,
        seed=config.seed,
    )
    train_loss: list[list[float]] = []
    val_curve: list[list[float]] = []
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        sampler.load_state_dict(saved["sampler"])
        _set_rng_state(saved["rng"], ctx.device)
        train_loss = [list(item) for item in saved["history"]["train_loss"]]
        val_curve = [list(item) for item in saved["history"]["val_curve"]]
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    num_parameters = sum(p.numel() for p in model.parameters())
    unused = ctx.is_distributed and bool(_unused_parameters(model))
    ddp_model = wrap_model(model, ctx, find_unused_parameters=unused)
    ddp_model.train()
    step_model = (
        ddp_model if config.compile is None else torch.compile(ddp_model, backend=config.compile)
    )
    tokens_per_step = config.batch_size * config.seq_len
    start = sampler.step
    start_mem_mb = _current_mem_mb(ctx.device)

    def evaluate() -> float:
        return evaluate_bpb(
            model,
            corpus.val,
            seq_len=config.seq_len,
            batch_size=sampler.local_batch_size,
            num_sequences=config.eval_sequences,
            context=ctx,
        )

    def save(step: int) -> None:
        if config.checkpoint_dir is None or not ctx.is_main:
            return
        rng = _rng_state(ctx.device)
        state = {
            "train_config": config.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "sampler": sampler.state_dict(),
            "rng": rng,
            "history": {"train_loss": train_loss, "val_curve": val_curve},
            "step": step,
        }
        directory = Path(config.checkpoint_dir)
        _save(checkpoint_path(directory, step), state)
        _prune(directory, config.keep_checkpoints)

    bar = tqdm(
        total=config.steps,
        initial=start,
        desc=config.variant,
        disable=not (config.progress and ctx.is_main),
        dynamic_ncols=True,
        file=sys.stderr,
    )
    step_seconds: list[float] = []
    train_seconds = 0.0
    for step in range(start, config.steps):
        tick = time.perf_counter()
        torch.manual_seed(_step_seed(config.seed, ctx.rank, step))
        indices = sampler.indices(step)  # (B/W,)
        x, y = corpus.train.batch(indices, config.seq_len)  # (B/W, T) each
        x, y = x.to(ctx.device), y.to(ctx.device)
        logits = step_model(x)  # (B/W, T, 256)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        sampler.step = step + 1
        loss_sum = all_reduce_sum(loss.detach().double().cpu().reshape(1), ctx)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        step_seconds.append(time.perf_counter() - tick)
        train_seconds += step_seconds[-1]
        mean_loss = float(loss_sum) / ctx.world_size
        if not math.isfinite(mean_loss):
            bar.close()
            raise FloatingPointError(
                f"training loss became {mean_loss} at step {step + 1}; lower --lr or check the data"
            )
        done = step + 1
        train_loss.append([done, mean_loss])
        done_here = done - start
        bar.update(1)
        bar.set_postfix(
            loss=f"{mean_loss:.3f}",
            tok_s=f"{done_here * tokens_per_step / max(train_seconds, 1e-9):,.0f}",
            refresh=False,
        )
        last = done == config.steps
        if (config.eval_every and done % config.eval_every == 0) or last:
            bpb = evaluate()
            val_curve.append([done, done * tokens_per_step, bpb])
            if ctx.is_main and config.progress:
                bar.write(f"{config.variant} step {done}: val {bpb:.4f} bits/byte", file=sys.stderr)
        if (config.checkpoint_every and done % config.checkpoint_every == 0) or last:
            save(done)
    bar.close()
    if not val_curve or val_curve[-1][0] != config.steps:  # resumed a finished run
        val_curve.append([config.steps, config.steps * tokens_per_step, evaluate()])
    steps_here = config.steps - start
    result = TrainResult(
        model=model.eval(),
        config=config,
        num_parameters=num_parameters,
        step=config.steps,
        tokens_seen=config.steps * tokens_per_step,
        train_loss=train_loss,
        val_curve=val_curve,
        val_bpb=val_curve[-1][2],
        tokens_per_s=steps_here * tokens_per_step / train_seconds if train_seconds else 0.0,
        peak_mem_mb=_peak_mem_mb(ctx.device),
        start_mem_mb=start_mem_mb,
        train_seconds=train_seconds,
        step_seconds=step_seconds,
    )
    if config.json_out is not None and ctx.is_main:
        out = Path(config.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result
