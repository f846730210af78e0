"""``load_model``: a trained language model back from a ``maha train`` checkpoint.

A checkpoint (:func:`maha.training.loop.checkpoint_path`, ``ckpt_<step>.pt``) holds the
run's whole :class:`~maha.training.TrainConfig` (the variant, the
:class:`~maha.MAHAConfig`, the parameter dtype) next to the model's ``state_dict``, so the
model is rebuilt as training built it, ``build_model(variant, config).to(dtype)``, and the
weights are loaded strictly (every key present, no key left over).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from aggregation.validation import describe

__all__ = ["load_model"]


def load_model(path: str | os.PathLike[str], *, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a language model with its configuration and weights from a checkpoint.

    Args:
        path: a checkpoint file written by ``maha train`` (``ckpt_<step>.pt``), or the
            ``--checkpoint-dir`` directory of a run: its checkpoint with the most steps is
            read.
        device: where the model goes (the file is read on the CPU first).

    Returns:
        The model of the run's variant (:func:`maha.build_model`), in the run's dtype, in
        eval mode; ``model.config`` is its :class:`~maha.MAHAConfig`. The run's whole
        :class:`~maha.training.TrainConfig` is
        ``TrainConfig.from_dict(maha.training.load_checkpoint(file)["train_config"])``.

    Raises:
        TypeError: ``path`` is not a path.
        ValueError: ``path`` does not exist, is a directory without a checkpoint, or is not
            a checkpoint written by :mod:`maha.training`.
    """
    from .model import build_model
    from .training.loop import DTYPES, TrainConfig, latest_checkpoint, load_checkpoint

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a checkpoint file or directory; received {describe(path)}")
    where = Path(path)
    if where.is_dir():
        found = latest_checkpoint(where)
        if found is None:
            raise ValueError(
                f"path {str(where)!r} is a directory without a checkpoint (ckpt_*.pt); pass the "
                "--checkpoint-dir of a finished 'maha train' run or a checkpoint file"
            )
        where = found
    elif not where.exists():
        raise ValueError(f"path {str(where)!r} does not exist (expected a checkpoint or its dir)")
    state = load_checkpoint(where, label="checkpoint")
    config = TrainConfig.from_dict(state["train_config"])
    model = build_model(config.variant, config.model).to(dtype=DTYPES[config.dtype])
    model.load_state_dict(state["model"])
    return model.to(device=device).eval()
