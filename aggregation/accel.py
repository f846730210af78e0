"""Optional numba kernels for the CPU hot loops (``pip install .[fast]``).

Some loops are bound by memory traffic when written as batched PyTorch ops: every
elementwise pass over a large intermediate is a sweep of its own. Where that matters
on the CPU, the package carries a numba kernel that does the same arithmetic in one
pass and keeps the PyTorch path as the reference and fallback (the two are pinned to
each other by tests). This module is the one place that decides whether such kernels
run and how they use threads:

- :func:`available`: numba is installed and the kernels are not switched off
  (environment variable ``AGGREGATION_NUMBA=0``, or :func:`use_numba`).
- :func:`numba_threads`: run a kernel on torch's thread count and leave torch's count
  as it was (numba's OpenMP layer would otherwise change it for the whole process).

Kernels that use it: the vertex test of :func:`~aggregation.support_enumeration` and
:func:`~aggregation.vertex_enumeration`, the tableau pivot (one step of
:func:`~aggregation.linear_program`, the whole path of :func:`~aggregation.lemke_howson`), the scale
game's pivoting and implicit backward (:mod:`aggregation.scale.lcp_kernel`), and the
fusion kernels of ``maha.fused_cpu``
(which keep their own switch, ``MAHA_FUSED_CPU``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from .validation import describe

try:  # optional: every kernel has a PyTorch fallback
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

__all__ = ["KernelSwitch", "available", "numba", "numba_threads", "use_numba"]


class KernelSwitch:
    """Whether a family of numba kernels runs: on unless the environment variable
    ``env`` is ``"0"``, and switchable for a ``with`` block by :meth:`use`.

    One per family: :mod:`aggregation`'s (``AGGREGATION_NUMBA``) and ``maha``'s fusion
    kernels (``MAHA_FUSED_CPU``).
    """

    def __init__(self, env: str) -> None:
        self.env = env
        self.enabled = os.environ.get(env, "1") != "0"

    def available(self) -> bool:
        """numba is installed and the family is switched on."""
        return numba is not None and self.enabled

    @contextlib.contextmanager
    def use(self, enabled: bool) -> Iterator[None]:
        """Switch the family on or off inside the ``with`` block.

        Raises:
            TypeError: ``enabled`` is not a bool.
        """
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool; received {describe(enabled)}")
        previous, self.enabled = self.enabled, enabled
        try:
            yield
        finally:
            self.enabled = previous


_SWITCH = KernelSwitch("AGGREGATION_NUMBA")


def available() -> bool:
    """Whether the numba kernels of :mod:`aggregation` run: numba is installed and they are
    not switched off (``AGGREGATION_NUMBA=0`` or :func:`use_numba`)."""
    return _SWITCH.available()


def use_numba(enabled: bool) -> contextlib.AbstractContextManager[None]:
    """Switch the numba kernels of :mod:`aggregation` on or off inside the ``with`` block.

    Results do not depend on it (the PyTorch path computes the same tests); speed does.

    Raises:
        TypeError: ``enabled`` is not a bool (when the block is entered).
    """
    return _SWITCH.use(enabled)


@contextlib.contextmanager
def numba_threads(threads: int | None = None) -> Iterator[None]:
    """Run numba kernels on torch's thread count (or on ``threads``), and leave torch's
    count as it was.

    Numba's OpenMP threading layer sets the process's OpenMP thread count when it starts
    (to ``NUMBA_NUM_THREADS``), which torch reads as its own: without the restore, the
    first kernel call would silently change ``torch.get_num_threads()``.

    Args:
        threads: the kernels' thread count (default torch's; a kernel called inside
            :func:`~aggregation.small_linalg.serial_ops` passes
            :func:`~aggregation.small_linalg.outer_threads`).

    Raises:
        RuntimeError: numba is not installed.
    """
    if numba is None:
        raise RuntimeError("numba_threads needs numba: pip install 'maha-aggregation[fast]'")
    torch_threads = torch.get_num_threads()
    want = torch_threads if threads is None else threads
    numba.set_num_threads(max(1, min(want, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
