"""Byte-level text data: discovery, a by-file train/validation split, packing, sharded sampling.

The vocabulary is the 256 byte values, so no tokenizer is downloaded. A corpus is a list of
*documents* (text files). Each split concatenates its documents into one byte stream, every
document followed by the separator byte ``SEPARATOR`` (NUL, which a text file never holds):

    stream = doc_1 ++ [0] ++ doc_2 ++ [0] ++ ... ++ doc_D ++ [0]            (N,) uint8

and the stream is *packed* into ``S = (N - 1) // T`` non-overlapping windows of ``T + 1`` bytes
(window ``i`` covers ``stream[i T : i T + T + 1]``; input = its first ``T`` bytes, target = its
last ``T``), so no byte is padding and sequences cross document boundaries, as in GPT-2/3
pre-training.

The split is *by file*: files are ordered by the SHA-256 of their path relative to the data root
and the shortest prefix of that order that holds at least ``val_fraction`` of the bytes (at
least one file, never all) forms the validation split. The order depends only on the paths,
never on the file system's listing order or the clock, so the split is the same on every
machine that holds the same files. A single text file cannot be split by
file; its last ``val_fraction`` of bytes (cut at a line break) is the validation split.

:class:`ShardedBatchSampler` draws global batches of window indices from a sequence of seeded
epoch permutations, and hands rank ``r`` of ``W`` the ``r``-th contiguous slice of each global
batch. Batch ``s`` is a pure function of ``(seed, s)``, so a run that resumes at step ``s``
sees exactly the data an uninterrupted run would, with nothing lost or repeated, and the
union of the ranks' slices is exactly the single-process batch.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from aggregation.validation import check_int, describe

__all__ = [
    "SEPARATOR",
    "ByteCorpus",
    "ByteSplit",
    "ShardedBatchSampler",
    "discover_text_files",
    "load_corpus",
    "stdlib_root",
]

SEPARATOR = 0
"""Byte that ends every document in a packed stream (NUL never occurs in a text file)."""

_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})


def stdlib_root() -> Path:
    """The directory of the running interpreter's standard library source files."""
    return Path(sysconfig.get_paths()["stdlib"])


def _is_text(raw: bytes) -> bool:
    """True if ``raw`` is non-empty UTF-8 text without NUL bytes."""
    if not raw or b"\0" in raw:
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _split_key(relative: str) -> str:
    return hashlib.sha256(relative.encode("utf-8")).hexdigest()


def _walk(root: Path) -> list[Path]:
    """Files below ``root``, not descending into hidden or skipped directories."""
    found: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".")]
        found.extend(Path(folder, name) for name in names)
    return [p for p in found if p.is_file()]


def discover_text_files(path: str | os.PathLike[str] | None = None) -> tuple[Path, list[Path]]:
    """The root and candidate files of a corpus, in split order (SHA-256 of the relative path).

    ``path=None`` (or ``"stdlib"``) selects the ``*.py`` files of the standard library, without
    ``site-packages``/``dist-packages``/``__pycache__``. A file selects itself. A folder selects
    every file below it except hidden ones and those in the directories above; whether a file
    holds text is checked when it is read (:func:`load_corpus`).

    Raises:
        ValueError: ``path`` does not exist, or is a folder without any candidate file.
    """
    if path is None or str(path) == "stdlib":
        root = stdlib_root()
        files = [p for p in _walk(root) if p.suffix == ".py"]
        label = f"the standard library at {root}"
    else:
        root = Path(path).expanduser()
        if not root.exists():
            raise ValueError(f"data path {str(path)!r} does not exist")
        if root.is_file():
            return root.parent, [root]
        if not root.is_dir():
            raise ValueError(f"data path {str(path)!r} is neither a file nor a folder")
        files = [p for p in _walk(root) if not p.name.startswith(".")]
        label = f"data path {str(path)!r}"
    if not files:
        raise ValueError(f"{label} holds no files to read text from")
    files.sort(key=lambda p: _split_key(p.relative_to(root).as_posix()))
    return root, files


@dataclass(frozen=True)
class ByteSplit:
    """One split of a corpus: a packed byte stream and the documents it holds.

    Attributes:
        data: ``(N,)`` uint8 stream, every document followed by ``SEPARATOR``.
        documents: relative paths of the documents, in stream order.
    """

    data: Tensor
    documents: tuple[str, ...]

    @property
    def num_bytes(self) -> int:
        """Length ``N`` of the packed stream."""
        return int(self.data.numel())

    def num_sequences(self, seq_len: int) -> int:
        """Number ``(N - 1) // seq_len`` of packed windows of ``seq_len + 1`` bytes."""
        return max(0, (self.num_bytes - 1) // seq_len)

    def batch(self, indices: Tensor, seq_len: int) -> tuple[Tensor, Tensor]:
        """Inputs and next-byte targets of the windows ``indices``.

        Args:
            indices: ``(B,)`` integer window indices in ``[0, num_sequences(seq_len))``.
            seq_len: window length ``T``.

        Returns:
            ``(inputs, targets)``, each ``(B, T)`` int64, ``targets[:, t] = inputs[:, t + 1]``
            for ``t < T - 1``.
        """
        count = self.num_sequences(seq_len)
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= count):
            raise ValueError(
                f"indices must lie in [0, {count}) for seq_len={seq_len}; "
                f"received values in [{int(indices.min())}, {int(indices.max())}]"
            )
        offsets = indices.long()[:, None] * seq_len + torch.arange(seq_len + 1)  # (B, T+1)
        window = self.data[offsets].long()  # (B, T+1)
        return window[:, :-1], window[:, 1:]


@dataclass(frozen=True)
class ByteCorpus:
    """A train/validation pair of packed byte streams and where they came from."""

    train: ByteSplit
    val: ByteSplit
    source: str
    skipped: int

    def check_seq_len(self, seq_len: int) -> None:
        """Raise ``ValueError`` unless both splits hold at least one window of ``seq_len``."""
        for name, split in (("training", self.train), ("validation", self.val)):
            if split.num_sequences(seq_len) < 1:
                raise ValueError(
                    f"seq_len={seq_len} is too long for the {name} split of {self.source}, "
                    f"which holds {split.num_bytes} bytes (at least seq_len + 1 = "
                    f"{seq_len + 1} are needed); lower --seq-len or point --data at more text"
                )


def _pack(chunks: list[bytes]) -> Tensor:
    """Concatenate documents, each followed by ``SEPARATOR``, into a ``(N,)`` uint8 tensor."""
    sep = bytes([SEPARATOR])
    joined = b"".join(chunk + sep for chunk in chunks)
    return torch.from_numpy(np.frombuffer(joined, dtype=np.uint8).copy())


def load_corpus(
    path: str | os.PathLike[str] | None = None,
    *,
    val_fraction: float = 0.1,
    max_bytes: int | None = None,
) -> ByteCorpus:
    """Read a corpus and split it into training and validation streams by file.

    Files are read in split order (SHA-256 of the relative path); files that are empty, hold
    a NUL byte or are not UTF-8 are skipped (counted in ``skipped``). With ``max_bytes`` only
    the first files of that order are kept, until their total reaches ``max_bytes`` (a
    deterministic, path-hash-random sample). Of the ``D`` kept files, the shortest prefix
    ``1 <= k <= D - 1`` whose bytes reach ``val_fraction`` of the total forms the validation
    split, the rest the training split; with ``D = 1`` the file is cut at the last line break
    before ``(1 - val_fraction)`` of its length instead.

    Args:
        path: ``None`` or ``"stdlib"`` for the standard library, else a text file or folder.
        val_fraction: share of the bytes held out (in whole files), in ``(0, 1)``.
        max_bytes: optional budget on the bytes read (``>= 1``).

    Raises:
        ValueError: the path does not exist, holds no text, or the fraction is out of range.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
        raise TypeError(
            f"val_fraction must be a number in (0, 1); received {describe(val_fraction)}"
        )
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1); received {val_fraction!r}")
    if max_bytes is not None:
        max_bytes = check_int(max_bytes, "max_bytes", minimum=1)
    root, files = discover_text_files(path)
    source = "the standard library" if path is None or str(path) == "stdlib" else str(path)
    names: list[str] = []
    texts: list[bytes] = []
    skipped = 0
    total = 0
    for file in files:
        if max_bytes is not None and total >= max_bytes:
            break
        try:
            raw = file.read_bytes()
        except OSError:
            skipped += 1
            continue
        if not _is_text(raw):
            skipped += 1
            continue
        names.append(file.relative_to(root).as_posix())
        texts.append(raw)
        total += len(raw)
    if not texts:
        raise ValueError(
            f"data path {source!r} holds no text: none of its {len(files)} file(s) is non-empty "
            "UTF-8 without NUL bytes"
        )
    if len(texts) == 1:
        raw = texts[0]
        cut = int(len(raw) * (1.0 - val_fraction))
        newline = raw.rfind(b"\n", 0, cut)
        cut = newline + 1 if newline > 0 else cut
        train = ByteSplit(_pack([raw[:cut]]), (names[0],))
        val = ByteSplit(_pack([raw[cut:]]), (names[0],))
    else:
        sizes = np.cumsum([len(t) for t in texts])  # (D,)
        reach = int(np.searchsorted(sizes, val_fraction * sizes[-1])) + 1  # shortest prefix
        n_val = min(len(texts) - 1, max(1, reach))
        val = ByteSplit(_pack(texts[:n_val]), tuple(names[:n_val]))
        train = ByteSplit(_pack(texts[n_val:]), tuple(names[n_val:]))
    return ByteCorpus(train=train, val=val, source=source, skipped=skipped)


class ShardedBatchSampler:
    """Global batches of window indices, sharded by rank, resumable at any step.

    Epoch ``e`` is the permutation ``randperm(num_sequences)`` drawn from a generator seeded
    with ``(seed, e)``; the global index stream is the concatenation of epochs 0, 1, ..., and
    global batch ``s`` is its slice ``[s B, (s + 1) B)``. Rank ``r`` of ``W`` receives the
    contiguous part ``[r B / W, (r + 1) B / W)`` of each global batch. Within an epoch every
    window is seen exactly once; the state is the step counter alone.

    Args:
        num_sequences: number of windows ``S`` in the split (``>= 1``).
        batch_size: global batch size ``B``, divisible by ``world_size``.
        rank, world_size: this process's rank and the number of processes.
        seed: seed of the epoch permutations.
        step: first global batch to produce (resume point).
    """

    def __init__(
        self,
        num_sequences: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        step: int = 0,
    ) -> None:
        self.num_sequences = check_int(num_sequences, "num_sequences", minimum=1)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.world_size = check_int(world_size, "world_size", minimum=1)
        self.rank = check_int(rank, "rank", minimum=0, maximum=self.world_size - 1)
        self.seed = check_int(seed, "seed", minimum=0)
        self.step = check_int(step, "step", minimum=0)
        if self.batch_size % self.world_size:
            raise ValueError(
                f"batch_size (the global batch) must be divisible by the number of processes "
                f"{self.world_size}; received batch_size={self.batch_size}"
            )
        self._cache: dict[int, Tensor] = {}

    @property
    def local_batch_size(self) -> int:
        """Windows per rank and step, ``B / W``."""
        return self.batch_size // self.world_size

    def _epoch(self, epoch: int) -> Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._cache[epoch] = torch.randperm(self.num_sequences, generator=gen)  # (S,)
        return self._cache[epoch]

    def indices(self, step: int) -> Tensor:
        """Window indices ``(B / W,)`` int64 of this rank for global batch ``step``."""
        start = step * self.batch_size + self.rank * self.local_batch_size
        positions = torch.arange(start, start + self.local_batch_size)  # (B/W,)
        epochs = positions // self.num_sequences  # (B/W,)
        out = torch.empty_like(positions)
        for epoch in torch.unique(epochs).tolist():  # at most two epochs per batch
            mask = epochs == epoch
            out[mask] = self._epoch(epoch)[positions[mask] % self.num_sequences]
        return out

    def __iter__(self) -> Iterator[Tensor]:
        while True:
            batch = self.indices(self.step)
            self.step += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """The resume state: the next step and the settings that define the stream."""
        return {
            "step": self.step,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_sequences": self.num_sequences,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume at ``state["step"]``; the stream's settings must match this sampler's."""
        for key in ("seed", "batch_size", "num_sequences"):
            if int(state[key]) != getattr(self, key):
                raise ValueError(
                    f"sampler state has {key}={state[key]}, but this sampler has "
                    f"{key}={getattr(self, key)}; the data stream would differ"
                )
        self.step = check_int(state["step"], "step", minimum=0)
