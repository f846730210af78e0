"""Compiled decoding: a MAHA language model's one-token step as one graph.

:mod:`maha.streaming` feeds any chunk through Python bookkeeping (growing
buffers, partial blocks, groups of left-padded rows) and a few dozen small
kernels per layer; for a decoding step of one token most of its time is that
overhead. This module writes the same step of the whole model (embeddings, every
block, the head) as a function of tensors alone, which
``torch.compile(fullgraph=True)`` turns into one graph per *phase*.

The phase of the token at position ``p`` is what the block rule of
:mod:`maha.scales` fixes for it: scale ``l`` gains a row iff ``r^l`` divides
``p + 1``, so the token *completes* the levels ``0 .. k - 1`` with

    k = 1 + max{ l < L : r^l | p + 1 }     (1 <= k <= L),

and level ``k - 1`` (if ``k < L``) holds ``m = ((p + 1) / r^(k-1)) mod r`` rows of
its partial block after the step. Given the phase, every shape is known on the host
(no value is read): the token's step, per layer,

1. ``u = LN_1(h) + GELU(conv(LN_1(h)))`` with the convolution's history;
2. for ``l < k``: the new row of scale ``l`` (``D_l`` of the ``r`` rows that its
   block now holds, for ``l >= 1``), its query, key and value, and its attention
   over the keys the cache kept plus itself,

       O_l = softmax([q K^T, <q, k>] / sqrt(d_h)) [V; v]

   (written in two parts, so that the kept keys are read in place, never copied);
3. for ``l >= k``: the output of scale ``l``'s latest complete block, unchanged;
4. the fusion of the ``L`` rows (the layer's strategy; its solver's sync-free
   path under compile), ``W_O``, the residual, ``FFN(LN_2(.))``;

then the final norm and the tied head. The graph returns the logits and what
each block's cache must append (new keys and values, partial blocks, latest
outputs, the convolution's history); :class:`TokenDecoder` writes those back
into the :class:`maha.ModelCache` eagerly, so the cache stays the one state of
the stream (a prompt, chunks and compiled steps mix freely).

Graphs: one per phase, ``(r - 1)(L - 1) + 1`` of them (4 for ``r = 2, L = 4``);
the keys of a global scale grow, so their length is a dynamic dimension (a phase
may compile once more when it turns dynamic). One graph for the whole model,
rather than one per block shared by the blocks, is one call per token instead of
``n_layer`` and lets inductor fuse across blocks: ``python benchmarks/generation.py
--compile`` (d=256, 4 layers, 16k context, 2 threads) went from 0.40x to 0.31x full
attention's per-token latency, at the price of a longer first compilation (minutes
on a 2-core CPU; inductor then caches it on disk). The
compiled step applies to steps of one token, rows without padding, no
autograd, strategies whose fusion has no host reads (:data:`STRATEGIES`), once
every scale has a complete block and every windowed scale a full window
(``p >= r^{L-1}`` and ``floor((p + 1) / r^l) >= w`` for windowed ``l``); any
other step runs the eager path of :mod:`maha.streaming`. Both compute the
same numbers up to floating-point order (``tests/maha/test_decoding.py``:
compiled == eager decoding, and == the parallel forward, 1e-10 in float64).
"""

from __future__ import annotations

import itertools
import types
import weakref
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .streaming import ModelCache, check_compile, compile_step

if TYPE_CHECKING:
    from .block import MAHABlock
    from .layer import MAHAAttention
    from .model import MAHATransformer

__all__ = ["STRATEGIES", "TokenDecoder", "attend_kept", "phase", "token_decoder"]

#: The fusion strategies whose decoding step compiles as one graph (no host reads
#: in their fusion under ``torch.compile``); "logit" and the iterative game methods
#: run convergence loops that read the host, so their steps stay eager.
STRATEGIES = ("mean", "softmax", "nash", "convex")


def phase(position: int, ratio: int, num_scales: int) -> tuple[int, int]:
    """``(k, m)`` of the token at ``position``: the levels it completes and the partial rows.

    ``k = 1 + max{l < L : r^l | position + 1}``; ``m`` is the number of rows the
    partial block of level ``k - 1`` holds *before* the token's row is added
    (``((position + 1) / r^{k-1} - 1) mod r``; 0 when ``k = L``, no partial block).
    """
    k, t = 1, position + 1
    while k < num_scales and t % ratio**k == 0:
        k += 1
    m = 0 if k == num_scales else (t // ratio ** (k - 1) - 1) % ratio
    return k, m


def attend_kept(q: Tensor, keys: Tensor, values: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """One query over the kept keys and its own: ``softmax([q K^T, <q,k>] / sqrt(d_h)) [V; v]``.

    Args:
        q, k, v: ``(B, H, 1, d_h)``, the new row's query, key and value.
        keys, values: ``(B, H, n, d_h)``, the keys and values the cache kept
            (``n >= 0``), every one of them allowed.

    Returns:
        ``(B, H, 1, d_h)``; the softmax runs in float32 for half-precision inputs.
    """
    scale = q.shape[-1] ** -0.5
    old = torch.matmul(q, keys.transpose(-1, -2))  # (B, H, 1, n)
    own = (q * k).sum(-1, keepdim=True)  # (B, H, 1, 1)
    scores = torch.cat([old, own], dim=-1) * scale  # (B, H, 1, n + 1)
    if scores.dtype in (torch.float16, torch.bfloat16):
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    else:
        probs = torch.softmax(scores, dim=-1)
    n = keys.shape[2]
    return torch.matmul(probs[..., :n], values) + probs[..., n:] * v  # (B, H, 1, d_h)


def _canonical(t: Tensor) -> Tensor:
    """``t`` with the strides of a fresh tensor of its shape (a copy when they differ).

    The graphs guard on the strides of their inputs; what one step returns is what the
    next one reads, so every carried tensor is kept in this one layout (size-1
    dimensions included), and the first compiled step normalises what the eager
    path left.
    """
    stride, expected = t.stride(), []
    step = 1
    for size in reversed(t.shape):
        expected.append(step)
        step *= size
    if stride == tuple(reversed(expected)):
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _layer_token(
    layer: MAHAAttention,
    x: Tensor,
    keys: list[Tensor],
    values: list[Tensor],
    pending: list[Tensor | None],
    last: list[Tensor],
    k: int,
    position: Tensor,
) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor | None], list[Tensor]]:
    """The attention layer's output ``(B, 1, d)`` for one token, and what its cache gains.

    Args:
        x: ``(B, 1, d)`` the layer's input at the token.
        keys, values: for ``l < k``, scale ``l``'s kept keys and values ``(B, H, n_l, d_h)``.
        pending: for ``l < min(k, L - 1)``, level ``l``'s partial block, inputs over
            values ``(2B, m_l, d)`` (None when empty).
        last: for ``l >= k``, scale ``l``'s latest block output ``(B, 1, H, d_h)``.
        k: the number of levels the token completes (:func:`phase`).
        position: ``(1, 1)`` the token's position p; the block it completes at scale
            ``l < k`` has index ``p // r^l`` (its rotary position).

    Returns:
        ``(out, new_keys, new_values, new_pending, new_last)``: the output, for
        ``l < k`` the new key and value ``(B, H, 1, d_h)`` and latest output
        ``(B, 1, H, d_h)`` of scale ``l``, for ``l < min(k, L - 1)`` level ``l``'s
        partial block after the token (None when its block completed).
    """
    batch = x.shape[0]
    L = layer.num_scales
    xv = torch.cat([x, layer.attention.value(x)], dim=0)  # (2B, 1, d): inputs over values
    rows: list[Tensor] = []
    new_keys: list[Tensor] = []
    new_values: list[Tensor] = []
    new_pending: list[Tensor | None] = []
    for l in range(k):
        start = position // layer.ratio**l  # (1, 1) the new block's index at scale l
        q, key, value = layer.attention.project(l, xv[:batch], xv[batch:], start)  # (B, H, 1, d_h)
        out = attend_kept(q, keys[l], values[l], key, value)  # (B, H, 1, d_h)
        rows.append(_canonical(out.transpose(1, 2)))  # (B, 1, H, d_h)
        new_keys.append(key)
        new_values.append(value)
        if l < L - 1:
            part = pending[l]
            block = xv if part is None else torch.cat([part, xv], dim=1)  # (2B, m + 1, d)
            if l + 1 < k:  # the block is complete: the next scale's new row
                xv = layer.decomposition.level(block, l)  # (2B, 1, d)
                new_pending.append(None)
            else:
                new_pending.append(block)
    stack = torch.stack(rows + last, dim=3)  # (B, 1, H, L, d_h)
    present = torch.ones(batch, 1, L, dtype=torch.bool, device=x.device)  # (B, 1, L)
    out = layer.dropout(layer.fuse(stack, present)[0])  # (B, 1, d)
    return out, new_keys, new_values, new_pending, rows


def _block_token(
    block: MAHABlock, h: Tensor, state: dict[str, Any], k: int, position: Tensor
) -> tuple[Tensor, dict[str, Any]]:
    """One block's output ``(B, 1, d)`` for the token's hidden state ``h`` and its cache update.

    ``state`` holds the block's convolution ``history`` ``(B, span, d)`` and its
    attention's ``keys``, ``values``, ``pending``, ``last`` (:func:`_layer_token`);
    the layout is :class:`maha.block.ResidualBlock`'s forward for one token.
    """
    u = block.ln_1(h)  # (B, 1, d)
    y, history = block.local.step(u, state["history"])  # (B, 1, d), (B, span, d)
    u = u + F.gelu(y)
    out, keys, values, pending, last = _layer_token(
        block.attn, u, state["keys"], state["values"], state["pending"], state["last"], k, position
    )
    h = h + out
    h = h + block.ffn(block.ln_2(h))  # (B, 1, d)
    update = {
        "history": _canonical(history),
        "keys": keys,
        "values": values,
        "pending": pending,
        "last": last,
    }
    return h, update


def _model_token(
    model: MAHATransformer, idx: Tensor, position: Tensor, states: list[dict[str, Any]], k: int
) -> tuple[Tensor, list[dict[str, Any]]]:
    """The logits ``(B, 1, vocab)`` of the token ``idx`` ``(B, 1)`` and every block's cache update.

    ``position`` ``(1, 1)`` is the token's position, a tensor, so that one graph
    serves every position of a phase; ``states`` holds one
    :func:`_block_token` state per block.
    """
    h = model.drop(model.wte(idx) + model.wpe(position))  # (B, 1, d)
    updates = []
    for block, state in zip(model.blocks, states):
        h, update = _block_token(block, h, state, k, position)  # (B, 1, d)
        updates.append(update)
    return model.lm_head(model.ln_f(h)), updates  # (B, 1, vocab)


_SERIAL = itertools.count()

#: The graphs :func:`_model_token` may hold (one per phase and model structure, a
#: second where a global scale's length turns dynamic; torch's default limit of 8
#: would send a model with ``r = 3, L = 4`` back to eager decoding).
RECOMPILE_LIMIT = 64


def _kept(rows: Any, none: Tensor) -> Tensor:
    """The rows a :mod:`maha.streaming` buffer kept ``(B, H, n, d_h)``, or ``none`` (n = 0)."""
    return rows.view() if rows.buf is not None and rows.length else none


class TokenDecoder:
    """The compiled one-token step of a :class:`maha.MAHATransformer` (see the module).

    ``torch.compile(_model_token, backend=backend, fullgraph=True)`` with one
    graph per phase for the whole model (embeddings, blocks, head; the
    parameters are graph inputs; :func:`maha.streaming.compile_step`:
    inductor's generated loops on one thread); the cache bookkeeping runs
    eagerly around it.
    :meth:`applies` says whether a chunk can take the compiled step; :meth:`step`
    runs it and writes the update into the cache. The graphs do not guard the
    model's modules (a per-call check of every parameter's metadata); each model
    compiles a code object of its own, so its graphs serve its blocks alone. Change
    a model's structure, parameter shapes or dtype after its first compiled step and
    its decoder must be rebuilt (``torch._dynamo.reset()``; a new model gets its own).

    Args:
        model: a MAHA language model whose strategy is in :data:`STRATEGIES`.
        backend: a ``torch.compile`` backend name.
    """

    def __init__(self, model: MAHATransformer, backend: str = "inductor") -> None:
        config = model.config
        self.ratio, self.num_scales = config.ratio, config.num_scales
        self.backend = backend
        # a code object of its own: torch.compile keeps graphs per code object, so this
        # model's graphs never serve another model (its modules' guards are skipped)
        serial = next(_SERIAL)
        code = _model_token.__code__
        own = types.FunctionType(
            code.replace(co_name=f"{code.co_name}_{serial}"), _model_token.__globals__
        )
        self._fn = compile_step(own, backend, skip_module_guards=True, fullgraph=True)
        layer = model.blocks[0].attn
        self._windows = [layer.attention.scale_window(l) for l in range(self.num_scales)]

    def applies(self, cache: ModelCache, idx: Tensor) -> bool:
        """Whether ``idx`` can take the compiled step (host-side bookkeeping only)."""
        if idx.shape[1] != 1 or cache.offsets is not None or torch.is_grad_enabled():
            return False
        p, r, L = cache.position, self.ratio, self.num_scales
        if p < r ** (L - 1):
            return False
        for l, window in enumerate(self._windows):
            if window is not None and (p + 1) // r**l < window:
                return False
        groups = cache.blocks[0].attention._groups
        return groups is not None and len(groups) == 1 and groups[0][:2] == (None, 0)

    def step(self, model: MAHATransformer, idx: Tensor, cache: ModelCache) -> Tensor:
        """Logits ``(B, 1, vocab)`` of the token ``idx`` ``(B, 1)``; advances every cache."""
        p = cache.position
        k, _ = phase(p, self.ratio, self.num_scales)
        layer = model.blocks[0].attn
        none = torch.empty(  # the kept rows of a window of 1: none, (B, H, 0, d_h)
            cache.batch_size,
            layer.num_heads,
            0,
            layer.head_dim,
            dtype=cache.dtype,
            device=idx.device,
        )
        states = []
        for block_cache in cache.blocks:
            scale_state = block_cache.attention._groups[0][2]
            keys = [_kept(scale_state.keys[l], none) for l in range(k)]
            values = [_kept(scale_state.values[l], none) for l in range(k)]
            for l in range(k):
                if self._windows[l] is None:  # a global scale grows: a dynamic length
                    torch._dynamo.maybe_mark_dynamic(keys[l], 2)
                    torch._dynamo.maybe_mark_dynamic(values[l], 2)
            pending = scale_state.pending[: min(k, self.num_scales - 1)]
            states.append(
                {
                    "history": _canonical(block_cache.history),
                    "keys": keys,
                    "values": values,
                    "pending": [None if t is None else _canonical(t) for t in pending],
                    "last": [_canonical(t) for t in scale_state.last[k:]],
                }
            )
        # the limit is read only when a graph would be added; raised for these calls alone
        # (set and restored directly: torch._dynamo.config.patch costs ~1 ms per call)
        config = torch._dynamo.config
        limit = config.recompile_limit
        config.recompile_limit = max(limit, RECOMPILE_LIMIT)
        try:
            position = torch.full((1, 1), p, device=idx.device)  # (1, 1)
            logits, updates = self._fn(model, idx.long(), position, states, k)
        finally:
            config.recompile_limit = limit
        for block_cache, update in zip(cache.blocks, updates):
            block_cache.history = update["history"]
            scale_state = block_cache.attention._groups[0][2]
            for l in range(k):
                scale_state.keys[l].extend(update["keys"][l])
                scale_state.values[l].extend(update["values"][l])
                scale_state.last[l] = update["last"][l]
            for l, part in enumerate(update["pending"]):
                scale_state.pending[l] = part
            scale_state.length += 1
            block_cache.attention.position += 1
            block_cache.position += 1
        return logits


def token_decoder(model: Any, compile: bool, backend: str = "inductor") -> TokenDecoder | None:
    """A :class:`TokenDecoder` for ``model`` when ``compile`` and it applies, else None.

    It applies to :class:`maha.MAHATransformer` models (``"local"`` included)
    whose strategy is in :data:`STRATEGIES`; other models decode eagerly.
    """
    check_compile(compile, backend)
    from .model import MAHATransformer  # the model module builds caches with this one

    if not compile or not isinstance(model, MAHATransformer):
        return None
    if model.config.strategy not in STRATEGIES:
        return None
    decoders = _DECODERS.setdefault(model, {})
    if backend not in decoders:
        decoders[backend] = TokenDecoder(model, backend)
    return decoders[backend]


#: One decoder per model and backend, so that every cache of a model reuses its graphs.
_DECODERS: weakref.WeakKeyDictionary[Any, dict[str, TokenDecoder]] = weakref.WeakKeyDictionary()
