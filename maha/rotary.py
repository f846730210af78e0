"""Rotary position embeddings (RoPE) for queries and keys, at any scale.

RoPE (Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding",
2021) rotates each query and key of a head by an angle proportional to its
position, pairwise over the head width ``d_h`` (even): for position ``p`` and
``i < d_h / 2``, the pair ``(t_i, t_{i + d_h/2})`` is rotated by
``p * theta_i`` with ``theta_i = base^(-2 i / d_h)``::

    rot_p(t) = [t_a * cos(p theta) - t_b * sin(p theta),  t_b * cos(p theta) + t_a * sin(p theta)]

where ``t_a, t_b`` are the two halves of ``t`` (the "rotate-half" pairing).
Rotations compose, ``rot_p^T rot_s = rot_{s - p}``, so the score of a query at
``p`` and a key at ``s`` depends on the positions through ``s - p`` alone:

    <rot_p(q), rot_s(k)> = <q, rot_{s-p}(k)>.

MAHA applies it at every scale with the positions of that scale's rows (block
indices ``0, 1, ...`` of ``r^l`` tokens; :class:`maha.attention.MultiscaleAttention`),
so scale ``l`` sees relative offsets in units of its own blocks; full attention
(:class:`maha.StandardAttention`) uses the token positions. A constant shift of
every position changes no score, which is why padding (rows aligned at their
first real token) and streaming (positions counted from the stream's start)
agree with the parallel forward.

The angles are computed in float64 for float64 inputs and in float32 otherwise
(so bfloat16 and float16 inputs keep exact positions up to 2^24), then cast.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_BASE",
    "apply_rotary",
    "rotary_angles",
    "rotate_packed",
    "rotate_queries_keys",
]

#: The base of the frequencies ``theta_i = base^(-2 i / d_h)`` (RoFormer's 10,000).
DEFAULT_BASE = 10000.0


def rotary_angles(
    start: int | Tensor,
    length: int,
    head_dim: int,
    *,
    dtype: torch.dtype,
    device: torch.device,
    base: float = DEFAULT_BASE,
) -> tuple[Tensor, Tensor]:
    """``cos`` and ``sin`` of ``p * theta_i`` for ``p = start, ..., start + length - 1``.

    Args:
        start: the first position, an int or a one-element integer tensor (a
            compiled decoding step passes the position as a tensor, so that one
            graph serves every position).
        length: the number of positions n.
        head_dim: d_h, even.
        dtype: the dtype of the result (the angles themselves are computed in
            float64 for float64, float32 otherwise).
        device: where to build them.
        base: the frequency base.

    Returns:
        ``(cos, sin)``, each ``(n, d_h / 2)``.
    """
    work = torch.float64 if dtype == torch.float64 else torch.float32
    half = head_dim // 2
    inv_freq = base ** (-torch.arange(half, dtype=work, device=device) * (2.0 / head_dim))
    positions = torch.arange(length, device=device)  # (n,)
    if isinstance(start, Tensor):
        positions = positions + start.reshape(-1)[:1].to(device)  # (n,)
    elif start:
        positions = positions + start
    angles = positions.to(work)[:, None] * inv_freq  # (n, d_h/2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate(t: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``t`` ``(..., n, d_h)`` rotated pairwise by the angles whose ``cos``/``sin`` are given."""
    a, b = t.chunk(2, dim=-1)  # (..., n, d_h/2) each
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)  # (..., n, d_h)


def _angles_for(t: Tensor, start: int | Tensor, base: float) -> tuple[Tensor, Tensor]:
    n, head_dim = t.shape[-2], t.shape[-1]
    if head_dim % 2:
        raise ValueError(
            f"t must have an even last dimension (the head width d_h) for rotary embeddings; "
            f"received shape {tuple(t.shape)}"
        )
    return rotary_angles(start, n, head_dim, dtype=t.dtype, device=t.device, base=base)


def apply_rotary(t: Tensor, start: int | Tensor = 0, *, base: float = DEFAULT_BASE) -> Tensor:
    """``rot_p(t_p)`` for the rows ``p = start, start + 1, ...`` of ``t`` (a new tensor).

    Args:
        t: ``(..., n, d_h)`` queries or keys (head layout ``(B, H, n, d_h)``), d_h even.
        start: the position of the first row (int or one-element integer tensor).
        base: the frequency base.

    Returns:
        ``(..., n, d_h)``, ``t`` rotated pairwise (see the module docstring).
    """
    return _rotate(t, *_angles_for(t, start, base))


def rotate_queries_keys(
    q: Tensor, k: Tensor, start: int | Tensor = 0, *, base: float = DEFAULT_BASE
) -> tuple[Tensor, Tensor]:
    """``(apply_rotary(q, start), apply_rotary(k, start))`` with the angles computed once.

    Args:
        q, k: ``(..., n, d_h)`` queries and keys of the same rows (same shape and dtype).
        start: the position of the first row.
        base: the frequency base.

    Returns:
        The rotated ``(q, k)``.
    """
    cos, sin = _angles_for(q, start, base)  # (n, d_h/2) each
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


def rotate_packed(
    qk: Tensor, heads: int, start: int | Tensor = 0, *, base: float = DEFAULT_BASE
) -> Tensor:
    """:func:`rotate_queries_keys` of packed queries and keys, in their packed layout.

    Args:
        qk: ``(B, n, 2 H d_h)``, ``[Q | K]`` with head ``h`` in the ``d_h`` columns from
            ``h d_h`` of each half (:meth:`maha.MultiscaleAttention.project_packed`).
        heads: H.
        start: the position of the first row.
        base: the frequency base.

    Returns:
        ``(B, n, 2 H d_h)``: every head of ``Q`` and ``K`` rotated by its row's position
        (the same operations as :func:`rotate_queries_keys`, so the same values).
    """
    batch, n, width = qk.shape
    if width % (2 * heads):
        raise ValueError(
            f"qk must have a last dimension 2 * heads * d_h with heads={heads}; "
            f"received shape {tuple(qk.shape)}"
        )
    head_dim = width // (2 * heads)
    if head_dim % 2:
        raise ValueError(
            f"qk must have an even head width d_h for rotary embeddings; received d_h={head_dim} "
            f"(shape {tuple(qk.shape)}, heads={heads})"
        )
    cos, sin = rotary_angles(start, n, head_dim, dtype=qk.dtype, device=qk.device, base=base)
    t = qk.view(batch, n, 2, heads, head_dim)  # rows stay rows: the angles broadcast per row
    return _rotate(t, cos[:, None, None], sin[:, None, None]).view(batch, n, width)
