"""Left padding: aligning every row of a padded batch at its first real token.

The scales of a MAHA layer cut a sequence into blocks of ``r^l`` tokens counted
from its first position, so a sequence preceded by ``s`` padding tokens is cut
differently from the same sequence alone unless ``r^l`` divides ``s``. The
layer therefore *aligns* each row at its first real token before decomposing
it: with ``s_b`` the number of leading padding tokens of row ``b``, row ``b`` is
rotated left by ``s_b`` (:func:`roll_rows`), so that its real tokens start at
index 0 and its leading padding becomes trailing padding, which the layer
already handles exactly (a right-padded sequence gives the outputs of the
unpadded one); the outputs are rotated back. For right padding ``s_b = 0`` and
nothing moves. The language models count the positions of ``E_pos`` from the
first real token of each row as well (:func:`leading_padding`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from aggregation.validation import describe

__all__ = ["check_padding_mask", "leading_padding", "left_padding_offsets", "roll_rows"]


def leading_padding(key_padding_mask: Tensor) -> Tensor:
    """``s_b``: the number of padding tokens before the first real token of each row.

    Args:
        key_padding_mask: ``(B, n)`` bool, True at padding.

    Returns:
        ``(B,)`` int64 (``n`` for a row that is all padding); no host read.
    """
    return key_padding_mask.long().cumprod(dim=1).sum(dim=1)  # (B,)


def roll_rows(t: Tensor, shift: Tensor) -> Tensor:
    """``out[b, i] = t[b, (i + shift[b]) mod n]``: rotate each row left by its shift.

    Args:
        t: ``(B, n, ...)``.
        shift: ``(B,)`` integer shifts (negative: rotate right; ``roll_rows(roll_rows(t,
            s), -s) == t``).

    Returns:
        ``(B, n, ...)``, a gather (differentiable in ``t``).
    """
    batch, n = t.shape[:2]
    index = torch.remainder(torch.arange(n, device=t.device) + shift.unsqueeze(1), n)  # (B, n)
    index = index.view(batch, n, *([1] * (t.dim() - 2))).expand_as(t)
    return t.gather(1, index)


def check_padding_mask(key_padding_mask: object, batch: int, length: int) -> Tensor:
    """Return ``key_padding_mask`` if it is a ``(batch, length)`` bool tensor, else raise."""
    if not isinstance(key_padding_mask, Tensor) or key_padding_mask.dtype != torch.bool:
        raise TypeError(
            f"key_padding_mask must be a bool tensor (True = padding); "
            f"received {describe(key_padding_mask)}"
        )
    if tuple(key_padding_mask.shape) != (batch, length):
        raise ValueError(
            f"key_padding_mask must have shape (batch, length) = ({batch}, {length}); "
            f"received {describe(key_padding_mask)}"
        )
    return key_padding_mask


def left_padding_offsets(key_padding_mask: object, batch: int, length: int) -> list[int]:
    """Validate a left-padding mask and return each row's number of leading pads.

    Used at the public boundary of the streaming path (it reads the mask on the
    host once, for the first chunk of a cache).

    Args:
        key_padding_mask: ``(batch, length)`` bool, True at padding, the padding
            of every row a prefix (``False`` never followed by ``True``).
        batch, length: the chunk's shape.

    Returns:
        ``[s_0, ..., s_{B-1}]`` Python ints in ``[0, length]``.

    Raises:
        TypeError / ValueError naming ``key_padding_mask``.
    """
    mask = check_padding_mask(key_padding_mask, batch, length).cpu()
    if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError(
            "key_padding_mask of a streamed chunk must be left padding (in every row the "
            "padding tokens come before the real ones); received padding after a real token"
        )
    return [int(s) for s in mask.long().sum(dim=1).tolist()]
