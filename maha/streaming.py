"""Streaming inference: the caches of the causal layers, blocks and language models.

A causal MAHA layer has a natural streaming form. Feed a sequence in chunks of
any sizes; for a chunk at positions ``p0 .. p0 + c - 1`` (``p0`` tokens seen):

- scale 0's rows are the chunk itself; scale ``l``'s new rows are the blocks
  of ``r`` rows of scale ``l - 1`` that the chunk *completes*
  (``HierarchicalDecomposition.level`` on the complete blocks alone, the rows
  of a partial block wait in the cache), so block ``j`` of scale ``l`` is
  computed once, when its ``r^l`` tokens have arrived;
- each new row attends, with the layer's own projections, the keys it may see
  (:func:`maha.attention.cached_attention`): on a windowed scale only the last
  ``w - 1`` earlier rows, on a global one all earlier rows;
- position ``t`` reads scale ``l``'s latest complete block
  ``floor((t + 1) / r^l) - 1`` (:mod:`maha.scales`, the same block rule as the
  parallel path), and the layer's fusion solves the game of each new position.

Every step computes exactly what the parallel causal forward computes for
those positions (only the floating-point order of the attention's sums may
differ), so the outputs agree to rounding (``tests/maha/test_streaming.py``: max abs
difference <= 1e-10 in float64 for every strategy, ratio, number of scales,
window and decomposition).

Cache of one layer and one row, after ``n`` tokens, in numbers (``d`` = d_model,
``F = r^{L-1}``, ``w`` the window): the last ``w - 1`` keys and values of each
windowed scale, all ``floor(n / r^l)`` keys and values of each global scale
(the coarsest only, by default), the inputs and values of the partial block of
each level (``< r`` rows each) and the output of each scale's latest block:

    2 d [ (L - 1) (w - 1) + floor(n / F) + (L - 1)(r - 1) ] + L d     numbers

against ``2 n d`` for the key/value cache of full attention. With
``window=None`` every scale is global and the cache is ``~2 n d r / (r - 1)``.
A token then costs ``O(L w + n / F)`` attention per layer.

A cache is the state of *one* stream: each call continues it (``position``
counts the columns fed so far). It records the module that built it, its
batch size, dtype and device, and refuses another module, batch size, dtype or
device, a chunk that would run past the module's ``max_length``, and any use
after a call that failed part-way. Feeding one cache two different sequences
(instead of building a new cache with ``init_cache``) is not detectable and is
undefined: the second is treated as the continuation of the first.

Left padding (prompts of different lengths in one batch): the *first* chunk
may come with a ``key_padding_mask`` whose padding is a prefix of every row.
The layer cache then splits the rows into groups with the same number of
leading pads and streams each group without its pads (so every row is aligned
at its first real token, the alignment of :mod:`maha.padding`); the outputs at
padded positions are zero. A batch of prompts with ``g`` different lengths
costs ``g`` sub-steps per layer call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from aggregation.validation import check_int, describe

from .attention import cached_attention
from .fusion_ops import scale_rows
from .padding import left_padding_offsets
from .scales import upsample

if TYPE_CHECKING:
    from .decoding import TokenDecoder
    from .layer import MAHAAttention

__all__ = ["BlockCache", "KVCache", "MAHACache", "ModelCache", "StreamCache"]


class StreamCache:
    """What every cache records: the module that built it and where the stream is.

    Attributes:
        batch_size: B, the rows of every chunk.
        dtype: the floating dtype of the chunks and of the cached tensors.
        device: where the chunks and the cached tensors live.
        position: how many columns (tokens, padding included) were fed so far.
    """

    def __init__(
        self,
        owner: nn.Module,
        batch_size: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        self._owner = weakref.ref(owner)
        self._owner_name = type(owner).__name__
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype; received {describe(dtype)}")
        self.dtype = dtype
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.position = 0
        self._failed: str | None = None

    def check(self, owner: nn.Module, x: Tensor, name: str, *, floating: bool = True) -> None:
        """Refuse a chunk ``x`` that does not belong to this cache (ValueError / TypeError)."""
        if self._failed is not None:
            raise ValueError(
                f"cache is unusable: an earlier call failed part-way ({self._failed}); "
                f"build a new one with init_cache"
            )
        if self._owner() is not owner:
            raise ValueError(
                f"cache was built by init_cache of another {self._owner_name}; a cache belongs "
                f"to the module that built it"
            )
        if x.shape[0] != self.batch_size:
            raise ValueError(
                f"{name} has batch size {x.shape[0]} but the cache was built for "
                f"batch_size={self.batch_size}"
            )
        if x.device != self.device:
            raise ValueError(
                f"{name} is on {x.device} but the cache was built for device {self.device}"
            )
        if floating and x.dtype != self.dtype:
            raise TypeError(
                f"{name} has dtype {x.dtype} but the cache was built for dtype {self.dtype}"
            )

    def check_room(self, length: int, max_length: int | None, name: str) -> None:
        """Refuse a chunk of ``length`` columns that would run past ``max_length``."""
        if max_length is not None and self.position + length > max_length:
            raise ValueError(
                f"{name} of length {length} after the {self.position} tokens in the cache "
                f"would exceed max_length={max_length}"
            )

    def check_mask(
        self, key_padding_mask: Tensor | None, batch: int, length: int
    ) -> list[int] | None:
        """Validate the ``key_padding_mask`` of a chunk: left padding, first chunk only.

        Returns:
            Each row's number of leading pads (:func:`maha.padding.left_padding_offsets`),
            or None without a mask.
        """
        if key_padding_mask is None:
            return None
        if self.position:
            raise ValueError(
                f"key_padding_mask is accepted only with the first chunk of a cache (the left "
                f"padding of the prompts); this cache has already seen {self.position} tokens"
            )
        return left_padding_offsets(key_padding_mask, batch, length)

    @contextmanager
    def updating(self, length: int) -> Iterator[None]:
        """Advance ``position`` by ``length``; a failure inside marks the cache unusable."""
        try:
            yield
        except BaseException as err:
            self._failed = f"{type(err).__name__}: {err}"
            raise
        self.position += length


class _Rows:
    """Rows kept along dim 2 of ``(B, H, k, d_h)`` keys or values.

    ``keep`` rows (a window) or all of them (``keep`` None). The kept rows are
    ``buf[:, :, start:stop]`` of a buffer with spare capacity: appending writes
    after ``stop`` (a window then only moves ``start``), so a step copies its
    new rows alone. A full buffer is replaced (the kept rows copied once) by one
    of ``max(m + c, 2 m)`` rows for a global scale (its capacity doubles) or
    ``2 keep`` rows for a window (compacted every ``keep`` rows or more). A chunk
    longer than the window is concatenated to the kept rows instead, and the last
    ``keep`` copied into a new buffer. Under autograd (a ``new`` that requires
    grad) the rows are concatenated and kept as they are (a window's last ``keep``
    cloned), never written in place: the buffer is full, the next write goes to
    a new one.
    """

    def __init__(self, keep: int | None) -> None:
        self.keep = keep
        self.buf: Tensor | None = None
        self.start = 0
        self.stop = 0

    @property
    def length(self) -> int:
        """The number of kept rows."""
        return self.stop - self.start

    def extend(self, new: Tensor) -> Tensor:
        """The kept rows followed by ``new`` ``(B, H, c, d_h)``: ``(B, H, m + c, d_h)``."""
        c, m, keep = new.shape[2], self.stop - self.start, self.keep
        grad = torch.is_grad_enabled() and new.requires_grad
        if grad or (keep is not None and c > keep):
            rows = new if m == 0 else torch.cat([self.view(), new], dim=2)
            total = rows.shape[2]
            kept = total if keep is None else min(keep, total)
            if grad:  # a full buffer (the next write goes to a new one), with its history
                self.buf = rows if keep is None else rows[:, :, total - kept :].clone()
            elif kept:  # a window after a long chunk: its last rows in a buffer of 2 keep rows
                self.buf = rows.new_empty(*rows.shape[:2], max(2 * keep, 16), rows.shape[3])
                self.buf[:, :, :kept] = rows[:, :, total - kept :]
            else:  # window 1: no earlier row is ever read again
                self.buf = None
            self.start, self.stop = 0, kept
            return rows
        buf = self.buf
        if buf is None or self.stop + c > buf.shape[2]:
            spare = 2 * m if keep is None else 2 * keep
            fresh = new.new_empty(*new.shape[:2], max(m + c, spare, 16), new.shape[3])
            if m:
                fresh[:, :, :m] = self.view()
            self.buf, self.start, self.stop = fresh, 0, m
            buf = fresh
        stop = self.stop + c
        buf[:, :, self.stop : stop] = new
        rows = buf[:, :, self.start : stop]  # (B, H, m + c, d_h)
        self.stop = stop
        if keep is not None:  # only the last keep rows are ever needed again
            self.start = max(self.start, stop - keep)
        return rows

    def view(self) -> Tensor:
        """The kept rows ``(B, H, m, d_h)`` (called only once rows exist)."""
        buf = self.buf
        if buf is None:
            raise RuntimeError("no rows kept yet")
        return buf[:, :, self.start : self.stop]

    @property
    def nbytes(self) -> int:
        """Bytes of the kept rows (a buffer reserves up to twice that)."""
        return 0 if self.buf is None else self.view().numel() * self.buf.element_size()


class _ScaleState:
    """The streaming state of one layer for rows without padding (see the module docstring)."""

    def __init__(self, layer: MAHAAttention) -> None:
        L = layer.num_scales
        self.length = 0  # tokens seen
        windows = [layer.attention.scale_window(l) for l in range(L)]
        keep = [None if w is None else w - 1 for w in windows]
        self.windows = windows
        self.keys = [_Rows(k) for k in keep]
        self.values = [_Rows(k) for k in keep]
        # the partial block of each level: its inputs over its values, (2B, < r, d)
        self.pending: list[Tensor | None] = [None] * (L - 1)
        self.last: list[Tensor | None] = [None] * L  # (B, 1, H, d_h), the latest block's output
        self._present: dict[tuple[bool, ...], Tensor] = {}

    def present(self, flags: list[bool], x: Tensor) -> Tensor:
        """The presence mask ``(B, 1, L)`` of one position, built once per pattern."""
        key = tuple(flags)
        mask = self._present.get(key)
        if mask is None:
            mask = torch.tensor(key, device=x.device).expand(x.shape[0], 1, len(key))
            self._present[key] = mask
        return mask

    @property
    def nbytes(self) -> int:
        total = sum(rows.nbytes for rows in self.keys + self.values)
        for pending in self.pending:
            if pending is not None:
                total += pending.numel() * pending.element_size()
        for last in self.last:
            if last is not None:
                total += last.numel() * last.element_size()
        return total


def _fuse_one(layer: MAHAAttention, stack: Tensor, present: Tensor) -> Tensor:
    """The fused, projected output ``(B, 1, d)`` of one position (what a decoding step compiles).

    ``layer.fuse(stack, present)[0]`` for ``stack`` ``(B, 1, H, L, d_h)`` and
    ``present`` ``(B, 1, L)``.
    """
    return layer.fuse(stack, present)[0]


FuseStep = Callable[["MAHAAttention", Tensor, Tensor], Tensor]


def _stream_rows(
    layer: MAHAAttention, x: Tensor, state: _ScaleState, step: FuseStep = _fuse_one
) -> Tensor:
    """One chunk ``x`` ``(B, c, d)`` of rows without padding through the layer: ``(B, c, d)``.

    ``step`` fuses a chunk of one token after the first (:func:`_fuse_one`, or its
    compiled form); every other chunk is fused eagerly.
    """
    batch, c, _ = x.shape
    L, r, H, dh = layer.num_scales, layer.ratio, layer.num_heads, layer.head_dim
    p0 = state.length
    # the new rows of scale 0 and their values, stacked along the batch: (2B, c, d),
    # so that each level decomposes both in one call (the operators act per row)
    xv = torch.cat([x, layer.attention.value(x)], dim=0)
    rows: list[Tensor] = []  # per scale (B, k_l, H, d_h): the blocks the chunk's positions read
    absent = False
    for l in range(L):
        f = r**l
        parts: list[Tensor] = []
        last = state.last[l]
        if (p0 + 1) % f and last is not None:  # position p0 still reads the latest earlier block
            parts.append(last)
        new = xv.shape[1]
        if new:  # the blocks this chunk completes (Q_l, K_l, V_l and attention)
            # the chunk's first new block of scale l has index p0 // f (its RoPE position)
            q, k, v = layer.attention.project(
                l, xv[:batch], xv[batch:], p0 // f
            )  # (B, H, c_l, d_h)
            keys, values = state.keys[l].extend(k), state.values[l].extend(v)
            out, _ = cached_attention(q, keys, values, state.windows[l])  # (B, H, c_l, d_h)
            parts.append(out.transpose(1, 2))  # (B, c_l, H, d_h)
        if parts:
            rows_l = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            # the latest block's output (a copy when a slice: the chunk's rows can go)
            state.last[l] = rows_l[:, -1:] if rows_l.shape[1] == 1 else rows_l[:, -1:].clone()
        else:  # no block of this scale has ended yet: absent at every position
            rows_l, absent = x.new_zeros(batch, 0, H, dh), True
        rows.append(rows_l)
        if l < L - 1 and new:  # complete blocks of r rows: the next scale's new rows
            pending = state.pending[l]
            if pending is not None:
                xv = torch.cat([pending, xv], dim=1)
            full = xv.shape[1] // r * r
            rest = xv[:, full:]  # the partial block (a copy when a slice, as above)
            if rest.shape[1] and full:
                rest = rest.clone()
            state.pending[l] = rest if rest.shape[1] else None
            xv = layer.decomposition.level(xv[:, :full], l) if full else xv[:, :0]
    state.length = p0 + c
    if p0 == 0:  # the parallel geometry: blocks counted from position 0
        srows, present = scale_rows(rows, [None] * L, c, r, causal=True)
        return layer.fuse(srows, present)[0]
    if c == 1:  # one position: rows_l is the block it reads, or empty where l is absent
        present = state.present([r_l.shape[1] > 0 for r_l in rows], x)  # (B, 1, L)
        if absent:
            zero = x.new_zeros(batch, 1, H, dh)
            rows = [r_l if r_l.shape[1] else zero for r_l in rows]
        return step(layer, torch.stack(rows, dim=3), present)  # stack: (B, 1, H, L, d_h)
    ups = [upsample(rows[l], None, c, r**l, causal=True, start=p0) for l in range(L)]
    stack = torch.stack([up for up, _ in ups], dim=3)  # (B, c, H, L, d_h)
    present = torch.stack([p for _, p in ups], dim=-1)  # (B, c, L)
    return layer.fuse(stack, present)[0]


#: The strategies whose decoding step :func:`fuse_step` compiles: their solvers have a
#: path with no host reads under ``torch.compile`` (support enumeration, see
#: :mod:`maha.fusion`). The others ("mean", "softmax": no game; "logit" and the iterative
#: game methods: convergence loops read the host) stay eager.
COMPILED_STRATEGIES = ("nash", "convex")


def check_compile(compile: bool, backend: str) -> None:
    """Refuse a non-bool ``compile`` or a ``compile_backend`` that is not a name (TypeError)."""
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be a bool; received {describe(compile)}")
    if not isinstance(backend, str) or not backend:
        raise TypeError(
            f"compile_backend must be a torch.compile backend name (str); received "
            f"{describe(backend)}"
        )


def fuse_step(layer: MAHAAttention, compile: bool, backend: str = "inductor") -> FuseStep:
    """The function that fuses a decoding step of ``layer``: :func:`_fuse_one` or its compiled form.

    With ``compile=True``, a layer with ``L >= 2`` scales and a strategy in
    :data:`COMPILED_STRATEGIES` gets ``torch.compile(_fuse_one, backend=backend,
    dynamic=False)``: the fusion (game inputs ``a, C``, the equilibrium ``x*`` of
    ``x >= 0, C x - a >= 0, x^T (C x - a) = 0`` by support enumeration, ``w = x* /
    sum x*``) and the output projection of one position, ``(B, 1, H, L, d_h) ->
    (B, 1, d)``. Shapes are static: the first decoding step compiles (with
    ``backend="inductor"`` on a CPU, measured 20-45 s for d=256, 4 heads, L=4; a
    Python-only backend such as ``"aot_eager"`` takes seconds), and every later step
    with the same batch size reuses the compiled code: torch.compile keeps it with
    :func:`_fuse_one`, guarded on the layer's configuration and the shapes, so one
    compilation serves every layer of a model with the same configuration and later
    caches too (``tests/maha/test_streaming_compile.py`` counts one graph). A batch
    of left-padded prompts with ``g`` different lengths streams ``g`` row groups, each
    compiled once for its number of rows; past torch's recompile limit
    (``torch._dynamo.config.recompile_limit`` variants) torch warns and runs the
    function eagerly, with the same outputs. Other layers get :func:`_fuse_one`
    (eager; compiling them would gain nothing). Under compile the fusion skips its
    host-side finiteness check of the games (:mod:`maha.fusion`).

    Args:
        layer: the causal layer the cache streams.
        compile: whether to compile.
        backend: a ``torch.compile`` backend name (``torch._dynamo.list_backends()``).

    Returns:
        A function ``(layer, stack (B, 1, H, L, d_h), present (B, 1, L)) -> (B, 1, d)``.
    """
    check_compile(compile, backend)
    if not compile or layer.num_scales == 1 or layer.fusion.strategy not in COMPILED_STRATEGIES:
        return _fuse_one
    return compile_step(_fuse_one, backend, dynamic=False)


def compile_step(
    fn: Callable, backend: str, *, skip_module_guards: bool = False, **kwargs: Any
) -> Callable:
    """``torch.compile(fn, backend=backend, **kwargs)`` for a decoding step.

    A decoding step's kernels are tiny (B * H games of L <= 4 players, rows of
    one token): inductor's parallel loops cost more than they gain (measured, one
    d=256 layer, 2 threads on a loaded 2-core CPU: 22.4 ms per step with them,
    7.9 ms without; eager 9.7 ms), so with ``"inductor"`` its generated loops run
    on one thread (the matrix products keep torch's threads).
    ``skip_module_guards`` drops the guards on the modules passed to ``fn``
    (``torch.compiler.skip_guard_on_all_nn_modules_unsafe``: checking every
    parameter's metadata is a large part of a small graph's call); the caller then
    guarantees that calls which may share a graph pass modules of one structure
    (:class:`maha.decoding.TokenDecoder` compiles a code object of its own per
    model). An unknown backend is a ValueError naming ``compile_backend``.
    """
    options: dict[str, Any] = {"cpp.threads": 1} if backend == "inductor" else {}
    if skip_module_guards:
        options["guard_filter_fn"] = torch.compiler.skip_guard_on_all_nn_modules_unsafe
    try:
        return torch.compile(fn, backend=backend, options=options or None, **kwargs)
    except Exception as err:  # torch._dynamo.exc.InvalidBackend
        raise ValueError(
            f"compile_backend must be one of torch._dynamo.list_backends(); received {backend!r}"
        ) from err


class MAHACache(StreamCache):
    """Streaming state of one causal :class:`maha.MAHAAttention` (``layer.init_cache``).

    Holds, per group of rows with the same number of leading pads (one group
    without padding), the state described in :mod:`maha.streaming`: the last
    ``w - 1`` keys/values of each windowed scale, all keys/values of each global
    scale, the inputs and values of each level's partial block and each
    scale's latest block output. Use::

        cache = layer.init_cache(batch_size)
        y1 = layer(x[:, :7], cache=cache)   # rows 0..6 of layer(x, is_causal=True)
        y2 = layer(x[:, 7:8], cache=cache)  # row 7

    Compiled decoding (``compile=True``): the fusion and output projection of every
    one-token chunk after the first (a decoding step: the game of one position per row
    and head, then ``W_O``) run through ``torch.compile(..., backend=compile_backend,
    dynamic=False)`` (:func:`fuse_step`); the prompt and any longer chunk are fused
    eagerly. The compiled solve is support enumeration
    (``aggregation.scale_game_enumeration``, or ``convex_aggregate_enumeration``; see
    :mod:`maha.fusion`), which returns the same equilibria as the eager solvers, so the
    outputs agree with the eager cache to rounding (``tests/maha/test_streaming_compile.py``).

    Attributes (besides :class:`StreamCache`'s):
        nbytes: bytes of the tensors held.
        compiled: whether decoding steps run the compiled fusion.
    """

    def __init__(
        self,
        layer: MAHAAttention,
        batch_size: int,
        dtype: torch.dtype,
        device: torch.device | str,
        *,
        compile: bool = False,
        compile_backend: str = "inductor",
    ) -> None:
        super().__init__(layer, batch_size, dtype, device)
        self._groups: list[tuple[Tensor | None, int, _ScaleState]] | None = None
        self._step = fuse_step(layer, compile, compile_backend)
        self.compiled = self._step is not _fuse_one

    @property
    def nbytes(self) -> int:
        """Bytes of the cached tensors (keys, values, partial blocks, latest outputs)."""
        return 0 if self._groups is None else sum(g[2].nbytes for g in self._groups)

    def run(self, layer: MAHAAttention, x: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """Feed the chunk ``x`` ``(B, c, d)``: its output rows ``(B, c, d)`` (validated before)."""
        batch, c, _ = x.shape
        offsets = self.check_mask(key_padding_mask, batch, c)
        if self._groups is None:
            if offsets is None:
                self._groups = [(None, 0, _ScaleState(layer))]
            else:
                groups = []
                for s in sorted(set(offsets)):
                    rows = [b for b, o in enumerate(offsets) if o == s]
                    index = torch.tensor(rows, device=x.device)
                    groups.append((None if len(rows) == batch else index, s, _ScaleState(layer)))
                self._groups = groups
        p0 = self.position
        groups = self._groups
        if len(groups) == 1 and groups[0][1] == 0:
            return _stream_rows(layer, x, groups[0][2], self._step)
        out = x.new_zeros(batch, c, layer.d_model)  # padded positions stay zero
        for members, offset, state in groups:
            skip = max(0, offset - p0)  # this group's padding columns in the chunk
            if skip >= c:
                continue
            sub = x[:, skip:] if members is None else x.index_select(0, members)[:, skip:]
            y = _stream_rows(layer, sub, state, self._step)  # (B_g, c - skip, d)
            if members is None:
                out[:, skip:] = y
            else:
                out[members, skip:] = y
        return out


class KVCache(StreamCache):
    """The key/value cache of one causal :class:`maha.StandardAttention` (``init_cache``).

    Keeps the keys and values of every token seen, ``2 n d`` numbers per row
    after ``n`` tokens, in buffers whose capacity doubles; with a left-padded
    first chunk it also keeps which keys are padding (they are never attended).

    Attributes (besides :class:`StreamCache`'s):
        nbytes: bytes of the keys and values held.
    """

    def __init__(
        self,
        owner: nn.Module,
        batch_size: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        super().__init__(owner, batch_size, dtype, device)
        self.keys, self.values = _Rows(None), _Rows(None)
        self._valid: Tensor | None = None  # (B, n) bool, only after a padded first chunk

    @property
    def nbytes(self) -> int:
        """Bytes of the cached keys and values."""
        return self.keys.nbytes + self.values.nbytes

    def attend(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """Append ``k, v`` ``(B, H, c, d_h)`` and attend with ``q``: ``(B, H, c, d_h)``."""
        batch, _, c, _ = q.shape
        if key_padding_mask is not None:
            self.check_mask(key_padding_mask, batch, c)
            self._valid = ~key_padding_mask.to(q.device)  # (B, c)
        elif self._valid is not None:
            self._valid = torch.cat([self._valid, self._valid.new_ones(batch, c)], dim=1)
        keys, values = self.keys.extend(k), self.values.extend(v)  # (B, H, n, d_h)
        return cached_attention(q, keys, values, None, valid=self._valid)[0]


class BlockCache(StreamCache):
    """Streaming state of one transformer block (``block.init_cache``).

    Holds the last ``(k - 1) delta`` inputs of the block's causal dilated
    convolution (``history``, ``(B, (k - 1) delta, d)``, zeros before the start)
    and the cache of its attention layer (``attention``: a :class:`MAHACache` or
    a :class:`KVCache`).
    """

    def __init__(
        self,
        owner: nn.Module,
        batch_size: int,
        dtype: torch.dtype,
        device: torch.device | str,
        *,
        span: int,
        width: int,
        attention: MAHACache | KVCache,
    ) -> None:
        super().__init__(owner, batch_size, dtype, device)
        self.history = torch.zeros(batch_size, span, width, dtype=dtype, device=self.device)
        self.attention = attention

    @property
    def nbytes(self) -> int:
        """Bytes of the convolution history and of the attention's cache."""
        return self.history.numel() * self.history.element_size() + self.attention.nbytes


class ModelCache(StreamCache):
    """Streaming state of a language model (``model.init_cache``), a :class:`BlockCache` per block.

    ``position`` counts the columns fed (padding included); ``offsets`` ``(B,)``
    holds each row's number of leading pads (from the first chunk's
    ``key_padding_mask``; None without padding), from which the positions of the
    positional embedding are counted; ``decoder`` the compiled one-token step
    (:class:`maha.decoding.TokenDecoder`, from ``init_cache(..., compile=True)``)
    or None.
    """

    def __init__(
        self,
        owner: nn.Module,
        batch_size: int,
        dtype: torch.dtype,
        device: torch.device | str,
        *,
        blocks: list[BlockCache],
        decoder: TokenDecoder | None = None,
    ) -> None:
        super().__init__(owner, batch_size, dtype, device)
        self.blocks = blocks
        self.offsets: Tensor | None = None
        self.decoder = decoder

    @property
    def nbytes(self) -> int:
        """Bytes of every block's cache."""
        return sum(block.nbytes for block in self.blocks)
