"""Input validation for every public entry point (public: use it in your own solvers too).

Every check raises a ``ValueError`` or ``TypeError`` whose message names the
argument, what was expected and what was received. Nothing here uses
``assert``; nothing silently converts bad input into NaN. The solvers of
:mod:`aggregation`, the :mod:`maha` layer and models, and a user's own solver
built on :class:`aggregation.NormalFormGame` or :class:`aggregation.ScaleGame`
validate their arguments with these helpers, so that every error reads alike.

What each helper checks:

* :func:`as_tensor`: a tensor, NumPy array or rectangular nested sequence of
  real numbers (not complex, not ragged), with at least ``min_dim`` dimensions
  and (by default) finite entries; returns a floating tensor.
* :func:`check_finite`: a tensor holds no NaN or infinite entry (:func:`all_finite`
  answers the same question without raising).
* :func:`check_real`: a finite real Python number (``int`` or ``float``, not ``bool``).
* :func:`check_nonnegative`: a finite real number ``>= 0`` (a tolerance).
* :func:`check_positive`: a finite real number ``> 0`` (a temperature, a step size).
* :func:`check_int`: an integer (not ``bool``) in ``[minimum, maximum]``.
* :func:`check_choice`: a string among the allowed choices.
* :func:`check_float_dtype`: a floating-point ``torch.dtype`` (None: the default dtype).
* :func:`compute_dtype`: the dtype solvers compute in (half precision -> float32).
* :func:`describe`: the short description of a received value used in every message.

These read values on the host (``bool(tensor)``), so they belong at the public
boundary of a function, not inside a hot loop.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "as_tensor",
    "check_choice",
    "all_finite",
    "check_finite",
    "check_float_dtype",
    "check_int",
    "check_nonnegative",
    "check_positive",
    "check_real",
    "compute_dtype",
    "describe",
]

_HALF = (torch.float16, torch.bfloat16)


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype solvers compute in: half precision is promoted to float32."""
    return torch.float32 if dtype in _HALF else dtype


def _ragged(value: Any) -> bool:
    """True if a nested Python sequence has rows of different lengths."""
    if not isinstance(value, (list, tuple)):
        return False
    lengths = set()
    for item in value:
        if isinstance(item, (list, tuple)):
            lengths.add(len(item))
            if _ragged(item):
                return True
        elif isinstance(item, (Tensor, np.ndarray)):
            lengths.add(tuple(np.shape(item)))
        else:
            lengths.add(None)
    return len(lengths) > 1


def as_tensor(
    value: Any,
    name: str,
    *,
    min_dim: int = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
    finite: bool = True,
) -> Tensor:
    """Convert ``value`` to a floating-point tensor, validating it.

    Accepts tensors, NumPy arrays and (non-ragged) nested sequences of numbers.
    Integer and boolean inputs are promoted to ``torch.get_default_dtype()``
    (tensors) or float64 (NumPy arrays and Python lists, which are float64 at
    heart); floating tensors keep their dtype unless ``dtype`` is given. The
    caller's tensor is never modified in place.

    Raises:
        TypeError: ``value`` is not numeric, or is complex.
        ValueError: ragged nesting, fewer than ``min_dim`` dimensions, or (with
            ``finite=True``) NaN or infinite entries.
    """
    if isinstance(value, Tensor):
        tensor = value
    elif isinstance(value, np.ndarray):
        if value.dtype == object or not (
            np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_
        ):
            raise TypeError(f"{name} must be numeric; received {describe(value)}")
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        if not tensor.is_floating_point():
            tensor = tensor.to(torch.float64)
    elif isinstance(value, (list, tuple, numbers.Number)):
        if _ragged(value):
            raise ValueError(
                f"{name} must be a rectangular (non-ragged) nested sequence; "
                f"received rows of different lengths: {describe(value)}"
            )
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{name} could not be read as an array: {err}") from None
        if array.dtype == object or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
        ):
            raise TypeError(f"{name} must hold numbers; received {describe(value)}")
        tensor = torch.from_numpy(array.astype(np.float64, copy=False))
    else:
        raise TypeError(
            f"{name} must be a tensor, an array or a nested sequence of numbers; "
            f"received {describe(value)}"
        )
    if tensor.is_complex():
        raise TypeError(f"{name} must be real; received {describe(tensor)}")
    if dtype is not None:
        tensor = tensor.to(dtype)
    elif not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    if device is not None:
        tensor = tensor.to(device)
    if tensor.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimensions; received {describe(tensor)}"
        )
    if finite:
        check_finite(tensor, name)
    return tensor


def all_finite(*tensors: Tensor) -> bool:
    """Whether every entry of every tensor is finite (one host read when they are).

    A finite sum proves every entry finite (NaN and inf propagate through it): the sums
    of all the tensors are added on the device and read once, one vectorised reduction
    each with no temporary. Only a total that is not finite (a bad entry, or a sum that
    overflows) falls back to the elementwise test, tensor by tensor.
    """
    floats = [t.detach() for t in tensors if t.numel() and t.is_floating_point()]
    if not floats:
        return True
    total = sum(t.sum() for t in floats)  # a 0-dim tensor on the device
    if bool(torch.isfinite(total)):
        return True
    return all(bool(torch.isfinite(t).all()) for t in floats)


def check_finite(tensor: Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``tensor`` holds NaN or infinite entries."""
    if not all_finite(tensor):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"{name} must be finite; received {bad} NaN or infinite "
            f"entr{'y' if bad == 1 else 'ies'} in {describe(tensor)}"
        )


def _is_real_number(value: Any) -> bool:
    """True for a real number that is not a bool (``numbers.Real``: also NumPy scalars)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_real(value: Any, name: str) -> float:
    """Validate a finite real Python number (``int`` or ``float``, not ``bool``) as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number; received {describe(value)}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite; received {value!r}")
    return float(value)


def check_nonnegative(value: Any, name: str) -> float:
    """Validate a nonnegative finite real number (a tolerance, say)."""
    if not _is_real_number(value):
        raise TypeError(f"{name} must be a real number; received {describe(value)}")
    if not math.isfinite(float(value)) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; received {value!r}")
    return float(value)


def check_positive(value: Any, name: str) -> float:
    """Validate a strictly positive finite real number (a temperature, say)."""
    if not _is_real_number(value):
        raise TypeError(f"{name} must be a real number; received {describe(value)}")
    if not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; received {value!r}")
    return float(value)


def check_int(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Validate an integer in ``[minimum, maximum]`` (an iteration count, say)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer; received {describe(value)}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{name} must be an integer >= {minimum}{upper}; received {value}")
    return value


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Validate that ``value`` is one of ``choices``."""
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a string, one of {list(choices)}; received {describe(value)}"
        )
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; received {value!r}")
    return value


def check_float_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    """Validate a floating-point ``torch.dtype``; None means ``torch.get_default_dtype()``."""
    if dtype is None:
        return torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point torch.dtype; received {describe(dtype)}")
    return dtype
