"""Byte-level data: the by-file split, packing, bad input and the sharded resumable sampler."""

from __future__ import annotations

import hashlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maha.training.data import (
    SEPARATOR,
    ShardedBatchSampler,
    discover_text_files,
    load_corpus,
    stdlib_root,
)


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _files(n, size=300):
    return {f"pkg{i % 3}/mod_{i}.py": f"# module {i}\n" + "x = 1\n" * (size // 6) for i in range(n)}


def test_split_is_by_file_and_independent_of_listing_order(tmp_path):
    files = _files(12)
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, files)
    _write(b, dict(reversed(list(files.items()))))  # created in the opposite order
    ca = load_corpus(a, val_fraction=0.25)
    cb = load_corpus(b, val_fraction=0.25)
    assert ca.train.documents == cb.train.documents
    assert ca.val.documents == cb.val.documents
    assert torch.equal(ca.train.data, cb.train.data) and torch.equal(ca.val.data, cb.val.data)
    assert len(ca.val.documents) == 3  # equal sizes: 3 of 12 files hold 25% of the bytes
    assert set(ca.train.documents).isdisjoint(ca.val.documents)
    assert set(ca.train.documents) | set(ca.val.documents) == set(files)
    # the order is the SHA-256 of the relative path, written out independently here
    order = sorted(files, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    assert ca.val.documents + ca.train.documents == tuple(order)


@settings(max_examples=15, deadline=None)
@given(
    names=st.sets(st.text("abcdefgh", min_size=1, max_size=6), min_size=2, max_size=8),
    frac=st.floats(0.05, 0.95),
)
def test_split_property(tmp_path_factory, names, frac):
    root = tmp_path_factory.mktemp("corpus")
    texts = {f"{n}.txt": f"text of {n}\n" for n in names}
    _write(root, texts)
    c = load_corpus(root, val_fraction=frac)
    n = len(names)
    # the validation split is the shortest prefix (in split order) holding >= frac of the bytes
    order = c.val.documents + c.train.documents
    sizes = [len(texts[d]) for d in order]
    k = len(c.val.documents)
    assert 1 <= k <= n - 1
    assert k == 1 or sum(sizes[: k - 1]) < frac * sum(sizes)
    assert k == n - 1 or sum(sizes[:k]) >= frac * sum(sizes)
    assert sorted(c.val.documents + c.train.documents) == sorted(texts)
    for split in (c.train, c.val):  # packing: every document followed by the separator
        expected = b"".join(texts[d].encode() + bytes([SEPARATOR]) for d in split.documents)
        assert split.data.numpy().tobytes() == expected


def test_packing_windows_tile_the_stream(tmp_path):
    _write(tmp_path, _files(5, size=200))
    split = load_corpus(tmp_path, val_fraction=0.2).train
    T = 37
    S = split.num_sequences(T)
    assert S == (split.num_bytes - 1) // T and S > 3
    x, y = split.batch(torch.arange(S), T)
    assert x.shape == y.shape == (S, T) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the next bytes
    assert torch.equal(y[:-1, -1], x[1:, 0])  # windows abut without gaps or overlaps
    stream = split.data[: S * T + 1].long()
    assert torch.equal(torch.cat([x.flatten(), y[-1, -1:]]), stream)
    with pytest.raises(ValueError, match="indices"):
        split.batch(torch.tensor([S]), T)


def test_single_file_is_split_at_a_line_break(tmp_path):
    path = tmp_path / "book.txt"
    lines = [f"line {i} of the book" for i in range(200)]
    path.write_text("\n".join(lines) + "\n")
    c = load_corpus(path, val_fraction=0.1)
    train = c.train.data[:-1].numpy().tobytes()
    val = c.val.data[:-1].numpy().tobytes()
    assert train + val == path.read_bytes()
    assert train.endswith(b"\n")
    assert abs(len(val) - 0.1 * len(path.read_bytes())) < 25


def test_stdlib_corpus_is_deterministic_and_excludes_site_packages():
    root, files = discover_text_files(None)
    assert root == stdlib_root() and len(files) > 100
    assert all("site-packages" not in f.parts and f.suffix == ".py" for f in files)
    a = load_corpus("stdlib", max_bytes=150_000)
    b = load_corpus(None, max_bytes=150_000)
    assert a.train.documents == b.train.documents and a.val.documents == b.val.documents
    assert torch.equal(a.train.data, b.train.data)
    assert a.train.num_bytes + a.val.num_bytes >= 150_000
    assert set(a.train.documents).isdisjoint(a.val.documents)


def test_bad_data_paths_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="data path .* does not exist"):
        load_corpus(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        load_corpus(tmp_path / "empty")
    _write(tmp_path / "binary", {"a.bin": b"\x00\x01\x02", "b.txt": b"", "c.dat": b"\xff\xfe\x00"})
    with pytest.raises(ValueError, match="holds no text"):
        load_corpus(tmp_path / "binary")
    _write(tmp_path / "short", {"a.txt": "tiny\n", "b.txt": "also tiny\n"})
    corpus = load_corpus(tmp_path / "short")
    with pytest.raises(ValueError, match="seq_len=64 is too long"):
        corpus.check_seq_len(64)
    with pytest.raises(ValueError, match="val_fraction"):
        load_corpus(tmp_path / "short", val_fraction=1.0)
    with pytest.raises(ValueError, match="max_bytes"):
        load_corpus(tmp_path / "short", max_bytes=0)


def test_binary_files_are_skipped_not_read(tmp_path):
    _write(tmp_path, {"a.txt": "hello\n", "b.txt": "world\n", "c.bin": b"\x00abc"})
    c = load_corpus(tmp_path, val_fraction=0.5)
    assert c.skipped == 1
    assert sorted(c.train.documents + c.val.documents) == ["a.txt", "b.txt"]


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 40),
    world=st.sampled_from([1, 2, 4]),
    local=st.integers(1, 5),
    seed=st.integers(0, 10),
    resume=st.integers(0, 12),
)
def test_sampler_shards_union_and_resume(n, world, local, seed, resume):
    batch = world * local
    single = ShardedBatchSampler(n, batch, seed=seed)
    ranks = [
        ShardedBatchSampler(n, batch, rank=r, world_size=world, seed=seed) for r in range(world)
    ]
    steps = 12
    for s in range(steps):
        joined = torch.cat([r.indices(s) for r in ranks])
        assert torch.equal(joined, single.indices(s))  # ranks split the single-process batch
    # the stream visits every window once per epoch
    stream = torch.cat([single.indices(s) for s in range(steps)])
    for e in range(stream.numel() // n):
        assert torch.equal(stream[e * n : (e + 1) * n].sort().values, torch.arange(n))
    # resuming at step `resume` continues the same stream, via iteration and state_dict
    it = iter(ShardedBatchSampler(n, batch, seed=seed))
    first = [next(it) for _ in range(resume)]
    state = ShardedBatchSampler(n, batch, seed=seed, step=resume).state_dict()
    again = ShardedBatchSampler(n, batch, seed=seed)
    again.load_state_dict(state)
    rest = [next(iter(again)) for _ in range(steps - resume)]
    assert torch.equal(torch.cat(first + rest), stream)


def test_sampler_rejects_bad_settings():
    with pytest.raises(ValueError, match="divisible"):
        ShardedBatchSampler(10, 3, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        ShardedBatchSampler(10, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="num_sequences"):
        ShardedBatchSampler(0, 4)
    other = ShardedBatchSampler(10, 4, seed=1)
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(ShardedBatchSampler(10, 4, seed=2).state_dict())
