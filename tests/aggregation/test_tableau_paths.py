"""The batched tableau engine of Lemke-Howson and linear_program: fast paths pinned to plain ones.

The pivoting steps index a contiguous tableau by flat ``index_select`` /
``index_copy_`` (column, pivot row, compaction); a non-contiguous tableau takes
the plain ``gather`` / ``scatter_`` path. Both must give bit-identical tableaux.
The ratio test is pinned to a per-game loop of the lexicographic rule, and the
compaction schedule of Lemke-Howson must not change any result.
"""

import importlib
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import NormalFormGame, lemke_howson, lemke_howson_enumeration
from aggregation.finite.exact import tableau as TB

LH = importlib.import_module("aggregation.finite.exact.lemke_howson")
DTYPES = [torch.float64, torch.float32]


def _strided_copy(T: torch.Tensor) -> torch.Tensor:
    """The same values as ``T`` in a non-contiguous layout (forces the plain path)."""
    out = torch.empty(T.shape[2], T.shape[1], T.shape[0], dtype=T.dtype).permute(2, 1, 0)
    out.copy_(T)
    assert not out.is_contiguous() or min(T.shape[1], T.shape[2]) <= 1 or T.shape[0] == 1
    return out


def _tableau(rng, R, C, N, dtype, integer):
    if integer:  # small integers: many exact ties in the ratio test
        T = rng.integers(-2, 3, (R, C, N)).astype(float)
        T[:, -1, :] = rng.integers(0, 3, (R, N))
    else:
        T = rng.standard_normal((R, C, N))
        T[:, -1, :] = np.abs(T[:, -1, :])
    return torch.from_numpy(T).to(dtype)


@pytest.mark.usefixtures("one_thread")
@settings(max_examples=40, deadline=None)
@given(
    R=st.integers(1, 6),
    C=st.integers(2, 9),
    N=st.integers(0, 7),
    dtype=st.sampled_from(DTYPES),
    integer=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_flat_paths_equal_gather_paths(R, C, N, dtype, integer, seed):
    rng = np.random.default_rng(seed)
    T = _tableau(rng, R, C, N, dtype, integer)
    S = _strided_copy(T)
    entering = torch.from_numpy(rng.integers(0, C - 1, N))
    col = TB.column(T, entering)
    assert torch.equal(col, TB.column(S, entering))
    assert torch.equal(col, T[:, entering, torch.arange(N)].reshape(R, N))
    keep = torch.from_numpy(np.sort(rng.choice(N, rng.integers(0, N + 1), replace=False)))
    kept = TB.compact(T, keep.long())
    assert kept.is_contiguous() and torch.equal(kept, T[:, :, keep.long()])
    assert torch.equal(kept, TB.compact(S, keep.long()))
    row, ok, _ = TB.ratio_test(T, col, list(range(C - 1)), torch.ones(N, dtype=torch.bool))
    active = ok & torch.from_numpy(rng.random(N) < 0.8)
    before = T.clone()
    TB.pivot_(T, row, col, active)
    TB.pivot_(S, row, col, active)
    assert torch.equal(T, S)
    assert torch.equal(T[:, :, ~active], before[:, :, ~active])  # frozen games untouched
    if bool(active.any()):  # the entering column became a unit column at the pivot row
        g = torch.nonzero(active).flatten()
        unit = T[:, entering[g], g]  # (R, G)
        want = torch.zeros_like(unit)
        want[row[g], torch.arange(g.numel())] = 1.0
        torch.testing.assert_close(unit, want, atol=1e-5, rtol=0)


def _ratio_reference(T, col, lex, active, piv_tol, tie_tol):
    """Per-game loop: the lexicographic ratio rule with tolerant ties, first row wins."""
    R, _, N = T.shape
    rows, oks, ties = [], [], []
    for g in range(N):
        cand = [r for r in range(R) if bool(active[g]) and float(col[r, g]) > piv_tol]
        oks.append(bool(cand))
        if not cand:
            rows.append(R - 1)
            ties.append(False)
            continue
        ratio = {r: max(float(T[r, -1, g]), 0.0) / float(col[r, g]) for r in cand}
        best = min(ratio.values())
        cand = [r for r in cand if ratio[r] <= best + tie_tol * (1 + best)]
        ties.append(len(cand) > 1)
        for j in lex if len(cand) > 1 else []:
            key = {r: float(T[r, j, g]) / float(col[r, g]) for r in cand}
            low = min(key.values())
            cand = [r for r in cand if key[r] <= low + tie_tol * (1 + abs(low))]
            if len(cand) == 1:
                break
        rows.append(cand[0])
    return rows, oks, ties


@pytest.mark.usefixtures("one_thread")
@settings(max_examples=40, deadline=None)
@given(
    R=st.integers(1, 6),
    C=st.integers(2, 8),
    N=st.integers(1, 6),
    integer=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_ratio_test_equals_per_game_rule(R, C, N, integer, seed):
    rng = np.random.default_rng(seed)
    T = _tableau(rng, R, C, N, torch.float64, integer)
    col = T[:, int(rng.integers(0, C - 1)), :].clone()
    active = torch.from_numpy(rng.random(N) < 0.8)
    lex = list(rng.permutation(C - 1))
    row, ok, tie = TB.ratio_test(T, col, lex, active, tie_tol=1e-9)
    rows, oks, ties = _ratio_reference(T, col, lex, active, 1e-11, 1e-9)
    assert ok.tolist() == oks and tie.tolist() == ties
    assert [r for r, o in zip(row.tolist(), oks) if o] == [r for r, o in zip(rows, oks) if o]


def _games(rng, m, n, count, dtype, integer):
    if integer:  # degenerate: ties everywhere
        A, B = rng.integers(0, 2, (2, count, m, n)).astype(float)
    else:
        A, B = rng.random((2, count, m, n))
    return NormalFormGame.bimatrix(torch.from_numpy(A).to(dtype), torch.from_numpy(B).to(dtype))


def _lh_outputs(game, lab):
    res = lemke_howson(game, label=lab)
    return [*res.strategies, res.regret, res.converged, res.iterations, *res.info.values()]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.usefixtures("one_thread")
def test_compaction_schedule_does_not_change_results(dtype, integer, monkeypatch):
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for m, n in [(3, 4), (6, 6)]:
            game = _games(rng, m, n, 60, dtype, integer)
            runs = []
            for schedule in (0.0, LH._COMPACT, 1.0):  # never, default, as soon as one finishes
                monkeypatch.setattr(LH, "_COMPACT", schedule)
                outs = [_lh_outputs(game, lab) for lab in range(m + n)]
                enum = lemke_howson_enumeration(game)
                outs.append([*enum.strategies, enum.valid, enum.count, enum.info["rejected"]])
                runs.append(outs)
            for other in runs[1:]:
                for a, b in zip(runs[0], other):
                    assert all(torch.equal(x, y) for x, y in zip(a, b)), (m, n)
