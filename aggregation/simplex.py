"""Euclidean projection onto the probability simplex, batched and differentiable.

    Pi(v) = argmin_{w in Delta} ||w - v||^2,   Delta = {w >= 0, sum_l w_l = 1} ,

has the closed form ``w = max(v - tau, 0)`` where the threshold ``tau`` is found
by sorting (Held, Wolfe & Crowder 1974; Duchi et al. 2008): with ``u`` the
entries sorted in decreasing order,

    rho = max{ j : u_j - (sum_{i <= j} u_i - 1) / j > 0 },   tau = (sum_{i <= rho} u_i - 1) / rho .

Derivative: on the support ``s = 1[w > 0]`` the map is
``w = (v - (s^T v - 1)/|s|) * s``, so its Jacobian is
``diag(s) - s s^T / |s|`` (symmetric, piecewise constant). The implementation
computes ``s`` without a graph and ``w`` from that formula, so autograd returns
exactly this Jacobian (and zero second derivatives).

References: Held, Wolfe & Crowder, "Validation of subgradient optimization",
Math. Programming 1974; Duchi, Shalev-Shwartz, Singer & Chandra, "Efficient
projections onto the l1-ball", ICML 2008; Martins & Astudillo, "From softmax
to sparsemax", ICML 2016 (the Jacobian).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .validation import as_tensor, compute_dtype, describe

__all__ = ["all_supports", "project_simplex", "simplex_support"]


def all_supports(L: int, device: torch.device | str | None = None) -> Tensor:
    """``(2^L, L)`` bool: every support (face) of the simplex over ``L`` coordinates.

    Row ``k`` is the subset whose members are the set bits of ``k``
    (``S[k, l] = (k >> l) & 1``), so row 0 is the empty set and ``[1:]`` the
    ``2^L - 1`` nonempty supports. The support-enumeration solvers of
    :mod:`aggregation.scale` (exact, enumeration, welfare) enumerate these.
    """
    codes = torch.arange(1 << L, device=device)  # (2^L,)
    return (codes.unsqueeze(-1) >> torch.arange(L, device=device)) & 1 == 1  # (2^L, L)


def simplex_support(v: Tensor, mask: Tensor | None = None) -> Tensor:
    """``(*batch, L)`` bool support of ``Pi(v)`` (no graph, no validation)."""
    with torch.no_grad():
        L = v.shape[-1]
        if mask is not None:
            v = torch.where(mask, v, torch.full((), -torch.inf, dtype=v.dtype, device=v.device))
        u = torch.sort(v, dim=-1, descending=True).values  # (*batch, L)
        finite = torch.isfinite(u)
        css = torch.where(finite, u, torch.zeros((), dtype=u.dtype, device=u.device)).cumsum(-1)
        ind = torch.arange(1, L + 1, dtype=v.dtype, device=v.device)
        cond = finite & (u * ind - (css - 1) > 0)  # (*batch, L), a prefix of True
        rho = cond.sum(-1, keepdim=True).clamp_min(1)  # (*batch, 1)
        tau = (css.gather(-1, rho - 1) - 1) / rho.to(v.dtype)  # (*batch, 1)
        s = v > tau
        # at least the largest entry: guards ties and rounding
        top = torch.nn.functional.one_hot(v.argmax(-1), L).bool()
        s = s | (top & ~s.any(-1, keepdim=True))
        if mask is not None:
            s = s & mask
        return s


def project_simplex(v: Any, mask: Any = None) -> Tensor:
    """Batched Euclidean projection onto the probability simplex.

    Args:
        v: ``(*batch, L)`` points (finite).
        mask: optional ``(*batch, L)`` bool; False entries are excluded (they get
            weight 0 and the rest is projected onto the simplex of the present
            entries). Every batch element needs a present entry.

    Returns:
        ``(*batch, L)`` ``w = Pi(v)`` in ``v``'s dtype (half precision is computed
        in float32); differentiable with Jacobian ``diag(s) - s s^T / |s|``.

    Raises:
        ValueError: NaN/inf entries, a mask of the wrong shape or leaving no entry.
        TypeError: non-numeric ``v`` or a non-boolean mask.

    Example:
        >>> import torch
        >>> project_simplex(torch.tensor([0.5, 1.5, -1.0]))
        tensor([0., 1., 0.])
    """
    t = as_tensor(v, "v", min_dim=1)
    if t.shape[-1] < 1:
        raise ValueError(
            f"v must have at least one entry in its last dimension; received {describe(t)}"
        )
    m = None
    if mask is not None:
        m = mask if isinstance(mask, Tensor) else torch.as_tensor(mask)
        if m.dtype != torch.bool:
            raise TypeError(f"mask must be a boolean tensor; received {describe(mask)}")
        try:
            shape = torch.broadcast_shapes(m.shape, t.shape)
        except RuntimeError:
            shape = None
        if shape is None or shape != t.shape:
            raise ValueError(
                f"mask must broadcast to v's shape {tuple(t.shape)}; received {describe(m)}"
            )
        m = m.to(t.device).expand(t.shape)
        if m.numel() and not bool(m.any(-1).all()):
            raise ValueError("mask must leave at least one present entry in every batch element")
    dtype = compute_dtype(t.dtype)
    x = t.to(dtype)
    s = simplex_support(x, m)
    sf = s.to(dtype)
    tau = ((x * sf).sum(-1, keepdim=True) - 1) / sf.sum(-1, keepdim=True)  # (*batch, 1)
    w = torch.where(s, x - tau, torch.zeros((), dtype=dtype, device=x.device))
    return w.to(t.dtype)
