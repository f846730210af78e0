"""Fused CPU kernels of the layer, compiled by numba (optional: ``pip install .[fast]``).

Two families: the fusion step's Gram matrices and mix (below), and the decomposition
chain's levels and their adjoint (``chain_forward``, ``chain_backward``: the formulas of
:class:`maha.decomposition._DepthwiseChain`, each level one parallel pass over its rows,
where PyTorch runs an op per tap and chunked reductions for the weight gradients).

The Gram matrices and the mix of the scale outputs (:mod:`maha.fusion_ops`) are short
products over ``d_h`` at every position, head and pair of scales: in PyTorch every pass
over the ``(B, n, H, L, ...)`` operands is a memory-bound sweep of its own, and the
fusion then costs a fifth of the layer's time. Here each is one loop nest that reads
the scales' own rows once and writes its result once:

- ``gram_forward``: ``G[b, t, h, l, k] = <o_l(t), o_k(t)>`` and the utilities' scores
  ``s[b, t, h, l] = <u[h, l], o_l(t)>``. For ``l <= k`` the pair depends on position
  ``t`` only through the row ``j_l(t)`` of the finer scale (the block rule below), so it
  is computed once per row of scale ``l`` and written to the ``r^l`` positions of its
  block: ``sum_l n_l (L - l + 1)`` products of ``d_h`` instead of ``n L (L + 1)``.
- ``gram_backward``: with ``S = dG + dG^T``, ``S_lk`` summed over the positions of each
  row ``j`` of scale ``l`` (``sigma``), then ``dO_l[j] += sigma o_k[j_k]`` and
  ``dO_k[j_k] += sigma o_l[j]`` (for ``l = k`` the first alone: ``S_ll = 2 dG_ll``); the
  score cotangents summed likewise (``own``) give ``dO_l[j] += own u[h, l]`` and
  ``du[h, l] += own o_l[j]`` (per (batch, head) pair, summed over the batch after).
  Every term of row ``j_k`` of scale ``k`` comes from the positions of its block, so it
  is summed in a row-sized buffer and written once when the block ends.
- ``mix_forward``: ``y[b, t, h] = sum_l w[b, t, h, l] o_l(t)``.
- ``mix_backward``: ``dw[b, t, h, l] = <dy[b, t, h], o_l(t)>`` and
  ``dO_l[j] = sum_{t in block j} w[b, t, h, l] dy[b, t, h]``, summed in a row-sized
  buffer and written once when the block ends (rows no position reads are zero), so the
  gradients need no zero fill first. When the Gram matrices of the same outputs are in
  the graph, the mix writes ``dw`` alone and ``gram_backward`` adds the mix's term
  ``w_l(t) dy(t)`` to the same row buffers (its ``mix_term``): one write of every scale's
  rows instead of two and autograd's sum of them (:class:`maha.fusion_ops._MixLink`
  wires the two backward passes).

Block rule (:func:`maha.scales.block_span`): row ``j`` of scale ``l`` (``f = r^l``
positions per block) serves the positions ``[s + j f, s + (j + 1) f)`` with
``s = f - 1`` in causal mode and ``0`` otherwise; before ``s`` the scale is absent
(its row reads as zero). For ``k >= l`` and ``m = r^(k - l)`` the row of scale ``k``
at those positions is ``j_k = (j + c) // m - c`` with ``c = 1`` causal, ``0`` otherwise.
The kernels walk the positions in order and keep, per scale, the current row ``j_l`` and
the position inside its block (``t - s - j f``, negative while the scale is absent) as
counters, so no position costs a division; the row of a coarser scale ``k`` at a block of
scale ``l`` is then simply its current row.

The scale outputs are passed head-major, ``(B, H, n_l, d_h)`` (the blocked attention's
own layout; :func:`maha.fusion_ops.scale_rows` lays out once, with :func:`head_major`, a
scale that is not, such as the SDPA output of the coarsest scale, rather than each kernel
copying it), so consecutive rows of one head are adjacent in memory. The mix's cotangent
``dy`` is read as the output projection's backward leaves it, ``(B, n, H, d_h)``
(a head's rows ``H d_h`` apart), with no head-major copy of the whole cotangent. The loops run in
parallel over the ``B H`` (batch, head) pairs, whose outputs are disjoint. Products
accumulate in the operands' dtype, as PyTorch's products do.

:mod:`maha.fusion_ops` uses these kernels for CPU tensors of float32 or float64 when
numba is installed, outside ``torch.compile`` tracing and outside a double backward;
the PyTorch loops there stay the reference and the fallback
(``tests/maha/test_fused_cpu.py`` pins the two to each other), and
:func:`use_fused_cpu` switches the kernels off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from aggregation.accel import KernelSwitch, numba, numba_threads  # numba: None if absent

__all__ = [
    "CHAIN_ROWS",
    "MAX_SCALES",
    "applies",
    "available",
    "chain_backward",
    "chain_forward",
    "gram_backward",
    "gram_forward",
    "head_major",
    "mix_backward",
    "mix_forward",
    "use_fused_cpu",
]

#: The kernels take the scales as a tuple of this many arrays (padded with empty ones), so
#: that one compiled signature per dtype serves every number of scales; more fall back.
MAX_SCALES = 8

_SWITCH = KernelSwitch("MAHA_FUSED_CPU")
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}  # the dtypes the kernels take


def available() -> bool:
    """Whether the kernels can run: numba is installed and they are not switched off."""
    return _SWITCH.available()


def use_fused_cpu(enabled: bool) -> contextlib.AbstractContextManager[None]:
    """Switch the numba kernels on or off inside the ``with`` block (for tests and timings).

    The environment variable ``MAHA_FUSED_CPU=0`` switches them off for a whole process.

    Raises:
        TypeError: ``enabled`` is not a bool (when the block is entered).
    """
    return _SWITCH.use(enabled)


def applies(num_scales: int, *tensors: Tensor) -> bool:
    """Whether the kernels serve these tensors: available, at most :data:`MAX_SCALES` scales,
    CPU, float32/float64, not traced by ``torch.compile``."""
    if not available() or num_scales > MAX_SCALES or torch.compiler.is_compiling():
        return False
    return all(t.device.type == "cpu" and t.dtype in _NUMPY for t in tensors)


if numba is not None:
    # reassociation lets the d_h loops vectorise; no flag that changes NaN or inf handling
    _jit = numba.njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc", "contract"})

    @numba.njit(cache=True, nogil=True)
    def _geometry(L, ratio, causal):  # pragma: no cover - compiled
        """Per scale: positions per block ``f_l`` and the first served position ``s_l``."""
        f = np.empty(L, np.int64)
        s = np.empty(L, np.int64)
        for l in range(L):
            f[l] = ratio**l
            s[l] = f[l] - 1 if causal else 0
        return f, s

    @numba.njit(cache=True, nogil=True)
    def _start(s, phase, row):  # pragma: no cover - compiled
        """The counters before position 0: scale ``l`` is ``-s_l`` positions from its first
        block (``phase < 0``: absent), at row 0."""
        for l in range(s.shape[0]):
            phase[l] = -s[l]
            row[l] = 0

    @numba.njit(cache=True, nogil=True)
    def _advance(f, phase, row):  # pragma: no cover - compiled
        """Move the counters one position on: ``phase_l`` runs ``0 .. f_l - 1`` inside
        a block, then the row ``j_l`` moves on (no division per position)."""
        for l in range(f.shape[0]):
            phase[l] += 1
            if phase[l] == f[l]:
                phase[l] = 0
                row[l] += 1

    @numba.njit(cache=True, nogil=True)
    def _zero_unread(grads, L, b, h, phase, row, zero):  # pragma: no cover - compiled
        """Zero the rows that no position reads (past the last block), given the counters
        after the last position."""
        for l in range(L):
            first = row[l] + 1 if phase[l] > 0 else row[l]  # the last block was partial
            for j in range(first, grads[l].shape[2]):
                gj = grads[l][b, h, j]
                for d in range(gj.shape[0]):
                    gj[d] = zero

    @_jit
    def _gram_forward(outs, u, L, n, ratio, causal, score, gram, zero):  # pragma: no cover
        B, H, _, dh = outs[0].shape
        f, s = _geometry(L, ratio, causal)
        for bh in numba.prange(B * H):
            b, h = bh // H, bh % H
            pair = np.zeros((L, L), gram.dtype)  # the pairs of the current blocks
            own = np.zeros(L, gram.dtype)  # the scores of the current blocks
            phase = np.empty(L, np.int64)  # position inside the current block (< 0: absent)
            row = np.empty(L, np.int64)  # the current block j_l(t)
            _start(s, phase, row)
            for t in range(n):
                g = gram[b, t, h]  # (L, L)
                for l in range(L):
                    if phase[l] < 0:  # scale l absent, and so every coarser one
                        score[b, t, h, l] = zero
                        for k in range(l, L):
                            g[l, k] = zero
                            g[k, l] = zero
                        continue
                    if phase[l] == 0:  # the first position of block j
                        ol = outs[l][b, h, row[l]]
                        ul = u[h, l]
                        acc = zero
                        for d in range(dh):
                            acc += ul[d] * ol[d]
                        own[l] = acc
                        for k in range(l, L):  # scale k's row is fixed over the block
                            acc = zero
                            if phase[k] >= 0:
                                ok = outs[k][b, h, row[k]]
                                for d in range(dh):
                                    acc += ol[d] * ok[d]
                            pair[l, k] = acc
                    score[b, t, h, l] = own[l]
                    for k in range(l, L):
                        g[l, k] = pair[l, k]
                        g[k, l] = pair[l, k]
                _advance(f, phase, row)

    @_jit
    def _gram_backward(
        outs, u, L, grad_score, grad, w, dy, mixed, n, ratio, causal, grads, grad_u, zero
    ):  # pragma: no cover - compiled
        B, H, _, dh = outs[0].shape
        f, s = _geometry(L, ratio, causal)
        for bh in numba.prange(B * H):
            b, h = bh // H, bh % H
            sigma = np.zeros((L, L), grad.dtype)  # S summed over the current blocks
            own = np.zeros(L, grad.dtype)  # the score cotangents summed likewise
            acc = np.zeros((L, dh), grad.dtype)  # the gradient of each scale's current row
            phase = np.empty(L, np.int64)
            row = np.empty(L, np.int64)
            _start(s, phase, row)
            for t in range(n):
                gt = grad[b, t, h]  # (L, L)
                for l in range(L):  # finer scales first: their blocks end with coarser ones
                    if phase[l] < 0:
                        continue
                    own[l] += grad_score[b, t, h, l]
                    for k in range(l, L):
                        sigma[l, k] += gt[l, k] + gt[k, l]
                    if mixed:  # the mix's term w_l(t) dy(t) of the same row
                        wt, dyt, al = w[b, t, h, l], dy[b, t, h], acc[l]
                        for d in range(dh):
                            al[d] += wt * dyt[d]
                    if phase[l] != f[l] - 1 and t != n - 1:
                        continue
                    # the last position of block j: apply its sums
                    j = row[l]
                    ol, al = outs[l][b, h, j], acc[l]
                    ul, gul = u[h, l], grad_u[bh, l]
                    so = own[l]
                    own[l] = zero
                    for d in range(dh):
                        al[d] += so * ul[d]
                        gul[d] += so * ol[d]
                    for k in range(l, L):
                        sg = sigma[l, k]
                        sigma[l, k] = zero
                        if phase[k] < 0:
                            continue
                        if k == l:
                            for d in range(dh):
                                al[d] += sg * ol[d]
                        else:  # row[k]'s block holds this one: it ends here or later
                            ok, ak = outs[k][b, h, row[k]], acc[k]
                            for d in range(dh):
                                al[d] += sg * ok[d]
                                ak[d] += sg * ol[d]
                    gl = grads[l][b, h, j]  # every term of row j is in: write it once
                    for d in range(dh):
                        gl[d] = al[d]
                        al[d] = zero
                _advance(f, phase, row)
            _zero_unread(grads, L, b, h, phase, row, zero)

    @_jit
    def _mix_forward(outs, L, w, n, ratio, causal, y, zero):  # pragma: no cover - compiled
        B, H, _, dh = outs[0].shape
        f, s = _geometry(L, ratio, causal)
        for bh in numba.prange(B * H):
            b, h = bh // H, bh % H
            phase = np.empty(L, np.int64)
            row = np.empty(L, np.int64)
            _start(s, phase, row)
            for t in range(n):
                yt = y[b, t, h]  # (d_h,)
                for d in range(dh):
                    yt[d] = zero
                for l in range(L):
                    if phase[l] < 0:
                        break  # absent here, and so every coarser scale
                    ol = outs[l][b, h, row[l]]
                    wt = w[b, t, h, l]
                    for d in range(dh):
                        yt[d] += wt * ol[d]
                _advance(f, phase, row)

    @_jit
    def _mix_backward(
        outs, L, w, grad, n, ratio, causal, grad_w, grads, write, zero
    ):  # pragma: no cover - compiled
        B, H, _, dh = outs[0].shape
        f, s = _geometry(L, ratio, causal)
        for bh in numba.prange(B * H):
            b, h = bh // H, bh % H
            acc = np.zeros((L, dh), grad.dtype)  # sum of w dy over the current blocks
            phase = np.empty(L, np.int64)
            row = np.empty(L, np.int64)
            _start(s, phase, row)
            for t in range(n):
                dy = grad[b, t, h]  # (d_h,): the cotangent's own layout (B, n, H, d_h)
                for l in range(L):
                    if phase[l] < 0:
                        grad_w[b, t, h, l] = zero
                        continue
                    ol = outs[l][b, h, row[l]]
                    dot = zero
                    for d in range(dh):
                        dot += dy[d] * ol[d]
                    grad_w[b, t, h, l] = dot
                    if not write:  # the Gram's backward adds w dy to the rows instead
                        continue
                    al, wt = acc[l], w[b, t, h, l]
                    for d in range(dh):
                        al[d] += wt * dy[d]
                    if phase[l] == f[l] - 1 or t == n - 1:  # block j ends: write its row
                        gl = grads[l][b, h, row[l]]
                        for d in range(dh):
                            gl[d] = al[d]
                            al[d] = zero
                _advance(f, phase, row)
            if write:
                _zero_unread(grads, L, b, h, phase, row, zero)

    @_jit
    def _chain_forward(
        x, weight, bias, has_bias, masks, has_masks, ratio, chunk, outs
    ):  # pragma: no cover - compiled
        B, n, d = x.shape
        for level in range(weight.shape[0]):  # level by level; rows in parallel
            rows = n if level == 0 else outs[level - 1].shape[1]
            m = outs[level].shape[1]
            tasks = -(-m // chunk)
            w0 = weight[level, 0]
            for task in numba.prange(B * tasks):
                b, j0 = task // tasks, (task % tasks) * chunk
                src = x[b] if level == 0 else outs[level - 1][b]  # (n_l, d)
                dst = outs[level][b]  # (n_{l+1}, d)
                for j in range(j0, min(m, j0 + chunk)):  # bias + w_0 x_0 + w_1 x_1 + ...
                    first = j * ratio
                    for c in range(d):
                        dst[j, c] = w0[c] * src[first, c]
                    if has_bias:
                        for c in range(d):
                            dst[j, c] = bias[level, c] + dst[j, c]
                    for k in range(1, ratio):
                        if first + k < rows:  # the zero-padded tail adds nothing
                            for c in range(d):
                                dst[j, c] += weight[level, k, c] * src[first + k, c]
                    if has_masks:
                        mj = masks[level][b, j]
                        for c in range(d):
                            dst[j, c] *= mj

    @_jit
    def _chain_backward(
        x, weight, masks, has_masks, ratio, chunk, levels_in, grads, spread, grad_w, grad_b, one
    ):  # pragma: no cover - compiled
        B, n, d = x.shape
        levels = weight.shape[0]
        for level in range(levels - 1, -1, -1):  # the adjoint, coarsest level first
            cur = grads[levels - 1] if level == levels - 1 else spread[level + 1]
            rows = n if level == 0 else levels_in[level - 1].shape[1]
            m = cur.shape[1]
            tasks = -(-m // chunk)
            for task in numba.prange(B * tasks):
                b, j0 = task // tasks, (task % tasks) * chunk
                src = x[b] if level == 0 else levels_in[level - 1][b]  # X_level
                gw, gb = grad_w[level, task], grad_b[level, task]  # (r, d), (d,)
                out = spread[level][b]  # dX_level (n_l, d)
                own = grads[level - 1][b] if level > 0 else out
                for j in range(j0, min(m, j0 + chunk)):
                    mj = masks[level][b, j] if has_masks else one
                    first = j * ratio
                    for c in range(d):
                        gb[c] += cur[b, j, c] * mj
                    for k in range(ratio):
                        row = first + k
                        if row < rows:
                            for c in range(d):
                                g = cur[b, j, c] * mj
                                gw[k, c] += g * src[row, c]
                                spread_c = g * weight[level, k, c]
                                out[row, c] = spread_c if level == 0 else own[row, c] + spread_c


def _padded(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    filler = np.empty((0, 0, 0, 0), dtype=arrays[0].dtype)
    return (*arrays, *([filler] * (MAX_SCALES - len(arrays))))


def head_major(out: Tensor) -> Tensor:
    """``out`` ``(B, n_l, H, d_h)`` with head-major storage (the kernels' layout, a
    ``(B, H, n_l, d_h)`` contiguous buffer seen through a transpose): ``out`` itself
    where it is laid out so already, else one differentiable copy. Laying every scale
    out once per layer call saves the kernels a copy each (:func:`maha.fusion_ops.scale_rows`).
    """
    return out.transpose(1, 2).contiguous().transpose(1, 2)


def _head_major(outs: Sequence[Tensor]) -> tuple[np.ndarray, ...]:
    """The scale outputs ``(B, n_l, H, d_h)`` as numpy arrays ``(B, H, n_l, d_h)`` (views
    where the storage is head-major already, as the attention writes it)."""
    return tuple(o.detach().permute(0, 2, 1, 3).contiguous().numpy() for o in outs)


def _zero(t: Tensor) -> np.floating:
    """A zero of ``t``'s dtype: the kernels' accumulators take its type."""
    return _NUMPY[t.dtype](0)


def gram_forward(
    outs: Sequence[Tensor], u: Tensor, length: int, ratio: int, causal: bool
) -> tuple[Tensor, Tensor]:
    """The scores ``s[b, t, h, l] = <u[h, l], o_l(t)>`` ``(B, n, H, L)`` and the Gram
    matrices ``G[b, t, h, l, k] = <o_l(t), o_k(t)>`` ``(B, n, H, L, L)`` of the scale
    outputs ``O_l`` ``(B, n_l, H, d_h)``, ``u`` ``(H, L, d_h)`` (see the module docstring
    for the block rule; both are zero where a scale is absent)."""
    batch, _, heads, _ = outs[0].shape
    L = len(outs)
    dtype = outs[0].dtype
    score = torch.empty(batch, length, heads, L, dtype=dtype)  # (B, n, H, L)
    gram = torch.empty(batch, length, heads, L, L, dtype=dtype)  # (B, n, H, L, L)
    heads_first = _padded(_head_major(outs))
    u_np = u.detach().contiguous().numpy()
    with numba_threads():
        _gram_forward(
            heads_first, u_np, L, length, ratio, causal, score.numpy(), gram.numpy(), _zero(gram)
        )
    return score, gram


def gram_backward(
    outs: Sequence[Tensor],
    u: Tensor,
    grad_score: Tensor,
    grad: Tensor,
    length: int,
    ratio: int,
    causal: bool,
    mix_term: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """The gradients ``(du, [dO_l])`` of :func:`gram_forward` for the cotangents
    ``grad_score`` ``(B, n, H, L)`` and ``grad`` ``(B, n, H, L, L)``: ``(H, L, d_h)`` and
    ``(B, n_l, H, d_h)`` each.

    ``mix_term``: optional ``(w, dy)``, the weights ``(B, n, H, L)`` and cotangent
    ``(B, n, H, d_h)`` of a :func:`mix_forward` of the same outputs; its gradient with
    respect to them (``dO_l[j] += sum_{t in block j} w_l(t) dy(t)``) is then added in the
    same pass (see :func:`mix_backward`'s ``write_grads``)."""
    heads_first = _head_major(outs)
    batch, heads = heads_first[0].shape[:2]
    grads = [np.empty_like(o) for o in heads_first]  # (B, H, n_l, d_h), written by the kernel
    L, zero = len(outs), _zero(grad)
    grad_u = np.zeros((batch * heads, L, u.shape[-1]), heads_first[0].dtype)  # per (b, h)
    if mix_term is None:
        w_np = dy_np = np.empty((0, 0, 0, 0), heads_first[0].dtype)
    else:
        w_np = mix_term[0].detach().contiguous().numpy()
        dy_np = mix_term[1].detach().contiguous().numpy()  # (B, n, H, d_h)
    with numba_threads():
        _gram_backward(
            _padded(heads_first),
            u.detach().contiguous().numpy(),
            L,
            grad_score.detach().contiguous().numpy(),
            grad.detach().contiguous().numpy(),
            w_np,
            dy_np,
            mix_term is not None,
            length,
            ratio,
            causal,
            _padded(grads),
            grad_u,
            zero,
        )
    du = torch.from_numpy(grad_u).view(batch, heads, L, -1).sum(0)  # (H, L, d_h)
    return du, [torch.from_numpy(g).permute(0, 2, 1, 3) for g in grads]


def mix_forward(outs: Sequence[Tensor], w: Tensor, length: int, ratio: int, causal: bool) -> Tensor:
    """``y[b, t, h] = sum_l w[b, t, h, l] o_l(t)``, ``(B, n, H, d_h)``; ``w`` ``(B, n, H, L)``."""
    batch, _, heads, dh = outs[0].shape
    y = torch.empty(batch, length, heads, dh, dtype=outs[0].dtype)  # (B, n, H, d_h)
    w_np = w.detach().contiguous().numpy()
    heads_first = _padded(_head_major(outs))
    with numba_threads():
        _mix_forward(heads_first, len(outs), w_np, length, ratio, causal, y.numpy(), _zero(y))
    return y


def mix_backward(
    outs: Sequence[Tensor],
    w: Tensor,
    grad: Tensor,
    length: int,
    ratio: int,
    causal: bool,
    write_grads: bool = True,
) -> tuple[Tensor, list[Tensor] | None]:
    """``(dw, [dO_l])`` of :func:`mix_forward` for ``grad`` ``(B, n, H, d_h)``:
    ``(B, n, H, L)`` and ``(B, n_l, H, d_h)`` each; ``[dO_l]`` is None without
    ``write_grads`` (the caller passes ``(w, grad)`` to :func:`gram_backward` instead)."""
    heads_first = _head_major(outs)
    filler = np.empty((0, 0, 0, 0), heads_first[0].dtype)
    # every row written by the kernel
    grads = [np.empty_like(o) if write_grads else filler for o in heads_first]
    grad_w = torch.empty(w.shape, dtype=w.dtype)  # (B, n, H, L)
    with numba_threads():
        _mix_backward(
            _padded(heads_first),
            len(outs),
            w.detach().contiguous().numpy(),
            grad.detach().contiguous().numpy(),  # (B, n, H, d_h)
            length,
            ratio,
            causal,
            grad_w.numpy(),
            _padded(grads),
            write_grads,
            _zero(grad_w),
        )
    if not write_grads:
        return grad_w, None
    return grad_w, [torch.from_numpy(g).permute(0, 2, 1, 3) for g in grads]


#: Output rows per task of the decomposition kernels (tasks run in parallel over the batch
#: rows and these chunks, level by level).
CHAIN_ROWS = 64


def _chain_arrays(tensors: Sequence[Tensor], dims: int, like: Tensor) -> tuple[np.ndarray, ...]:
    """``tensors`` as contiguous numpy arrays, padded to :data:`MAX_SCALES` with empty ones
    of ``like``'s dtype."""
    arrays = [t.detach().contiguous().numpy() for t in tensors]
    filler = np.empty((0,) * dims, dtype=_NUMPY[like.dtype])
    return (*arrays, *([filler] * (MAX_SCALES - len(arrays))))


def chain_forward(
    x: Tensor, weight: Tensor, bias: Tensor | None, masks: Sequence[Tensor], ratio: int
) -> list[Tensor]:
    """The levels ``X_1 .. X_{L-1}`` of the depthwise decomposition chain, ``(B, n_l, d)``.

    ``X_{l+1}[j] = m_{l+1}[j] (b_l + sum_k w_l[k] X_l[j r + k])`` per channel (rows past the
    end of ``X_l`` count as zero), accumulated in the order of
    :func:`maha.decomposition._depthwise`. ``x`` ``(B, n, d)``, ``weight`` ``(L-1, r, d)``,
    ``bias`` ``(L-1, d)`` or None, ``masks``: none, or ``L-1`` tensors ``(B, n_l, 1)``.
    """
    batch, n, d = x.shape
    lengths = [n]
    for _ in range(weight.shape[0]):
        lengths.append(-(-lengths[-1] // ratio))
    outs = [torch.empty(batch, m, d, dtype=x.dtype) for m in lengths[1:]]
    if not outs:
        return outs
    x_np = x.detach().contiguous().numpy()
    w_np = weight.detach().contiguous().numpy()
    b_np = w_np[:, 0] if bias is None else bias.detach().contiguous().numpy()
    with numba_threads():
        _chain_forward(
            x_np,
            w_np,
            b_np,
            bias is not None,
            _chain_arrays([m.squeeze(-1) for m in masks], 2, x),
            len(masks) > 0,
            ratio,
            CHAIN_ROWS,
            _chain_arrays(outs, 3, x),
        )
    return outs


def chain_backward(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    masks: Sequence[Tensor],
    ratio: int,
    grads: Sequence[Tensor],
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dX_0, dw, db)`` of :func:`chain_forward` for the cotangents ``grads`` of
    ``X_1 .. X_{L-1}``: ``(B, n, d)``, ``(L-1, r, d)``, ``(L-1, d)``.

    The chain's adjoint from the coarsest level down, with the levels recomputed from
    ``x``: ``g_l = m_{l+1} dX_{l+1}``, ``dw_l[k] = sum_j g_l[j] X_l[j r + k]``,
    ``db_l = sum_j g_l[j]``, ``dX_l = dX_l^{ext} + crop(w_l g_l)`` (the formulas of
    :class:`maha.decomposition._DepthwiseChain`), one task per batch row and channel block,
    whose weight and bias sums are added over the batch after.
    """
    batch, n, d = x.shape
    levels = weight.shape[0]
    inner = chain_forward(x, weight[:-1], None if bias is None else bias[:-1], masks[:-1], ratio)
    lengths = [n, *(t.shape[1] for t in inner)]  # n_0 .. n_{L-2}
    grad_x = torch.empty(x.shape, dtype=x.dtype)  # contiguous: the kernel writes it
    # dX_0 .. dX_{L-2}: each level's full gradient, written by the level above it
    spread = [grad_x, *(torch.empty(batch, m, d, dtype=x.dtype) for m in lengths[1:])]
    tasks = batch * -(-max(t.shape[1] for t in grads) // CHAIN_ROWS)
    dtype = _NUMPY[x.dtype]
    grad_w = np.zeros((levels, tasks, ratio, d), dtype=dtype)  # per task, summed after
    grad_b = np.zeros((levels, tasks, d), dtype=dtype)
    with numba_threads():
        _chain_backward(
            x.detach().contiguous().numpy(),
            weight.detach().contiguous().numpy(),
            _chain_arrays([m.squeeze(-1) for m in masks], 2, x),
            len(masks) > 0,
            ratio,
            CHAIN_ROWS,
            _chain_arrays(inner, 3, x),
            _chain_arrays(grads, 3, x),
            _chain_arrays(spread, 3, x),
            grad_w,
            grad_b,
            dtype(1),
        )
    dw = torch.from_numpy(grad_w).sum(1)  # (L-1, r, d)
    db = torch.from_numpy(grad_b).sum(1)  # (L-1, d)
    return grad_x, dw, db
