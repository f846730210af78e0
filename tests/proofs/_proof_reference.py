"""Independent NumPy reference computations for the proofs' tests (not a test module).

Written from the statements in proofs/, without the library, so that the
library's outputs can be pinned to them.
"""

from __future__ import annotations

import itertools

import numpy as np


def lcp_solutions(a, C, tol: float = 1e-9) -> list[np.ndarray]:
    """Every solution of ``x >= 0, Cx - a >= 0, x^T(Cx - a) = 0`` (enumerating supports).

    Complete for nondegenerate data (each principal submatrix met is
    nonsingular); a singular ``C_SS`` is skipped.
    """
    a, C = np.asarray(a, float), np.asarray(C, float)
    L = len(a)
    found: list[np.ndarray] = []
    scale = 1.0 + np.abs(a).max() + np.abs(C).max()
    for k in range(L + 1):
        for S in map(list, itertools.combinations(range(L), k)):
            x = np.zeros(L)
            if S:
                block = C[np.ix_(S, S)]
                if abs(np.linalg.det(block)) < 1e-12:
                    continue
                x[S] = np.linalg.solve(block, a[S])
            w = C @ x - a
            if x.min() >= -tol * scale and w.min() >= -tol * scale and abs(x @ w) <= tol * scale:
                if not any(np.allclose(x, y, atol=1e-9) for y in found):
                    found.append(x)
    return found


def lcp_solve(a, C, mask=None) -> np.ndarray:
    """The unique LCP solution of a strongly monotone game (absent players play 0)."""
    a, C = np.asarray(a, float), np.asarray(C, float)
    present = np.ones(len(a), bool) if mask is None else np.asarray(mask, bool)
    idx = np.flatnonzero(present)
    sols = lcp_solutions(a[idx], C[np.ix_(idx, idx)])
    if len(sols) != 1:
        raise AssertionError(f"expected exactly one LCP solution, found {len(sols)}")
    x = np.zeros(len(a))
    x[idx] = sols[0]
    return x


def scale_regret(a, C, x) -> np.ndarray:
    """Per-player regret ``max_{y>=0} u_l(y, x_-l) - u_l(x)`` of the scale game."""
    a, C, x = (np.asarray(v, float) for v in (a, C, x))
    d = np.diag(C)
    b = a - C @ x + d * x
    best = np.maximum(b, 0.0) / d
    u = lambda t: b * t - 0.5 * d * t * t  # noqa: E731
    return np.maximum(u(best) - u(x), 0.0)


def welfare(a, C, x) -> float:
    """``W(x) = a^T x - 1/2 x^T (C + C^T - diag C) x``, the summed utility."""
    a, C, x = (np.asarray(v, float) for v in (a, C, x))
    M = C + C.T - np.diag(np.diag(C))
    return float(a @ x - 0.5 * x @ M @ x)


def social_optimum(a, C) -> float:
    """``max_{x >= 0} W(x)`` by enumerating the stationary points of every face.

    Assumes the maximum exists (``M`` copositive) and is attained at a
    nondegenerate KKT point (generic data).
    """
    a, C = np.asarray(a, float), np.asarray(C, float)
    M = C + C.T - np.diag(np.diag(C))
    best = 0.0  # x = 0
    L = len(a)
    for k in range(1, L + 1):
        for S in map(list, itertools.combinations(range(L), k)):
            block = M[np.ix_(S, S)]
            if abs(np.linalg.det(block)) < 1e-12:
                continue
            xs = np.linalg.solve(block, a[S])
            if xs.min() > 0:
                x = np.zeros(L)
                x[S] = xs
                best = max(best, welfare(a, C, x))
    return best


def gauss_seidel(a, C, x0, sweeps: int) -> list[np.ndarray]:
    """Iterates of Gauss-Seidel best response (one entry per sweep, x0 first)."""
    a, C = np.asarray(a, float), np.asarray(C, float)
    x = np.array(x0, float)
    out = [x.copy()]
    for _ in range(sweeps):
        for l in range(len(a)):
            b = a[l] - C[l] @ x + C[l, l] * x[l]
            x[l] = max(b, 0.0) / C[l, l]
        out.append(x.copy())
    return out


def extragradient(a, C, x0, eta: float, steps: int) -> list[np.ndarray]:
    """Iterates of projected extragradient with step ``eta`` (x0 first)."""
    a, C = np.asarray(a, float), np.asarray(C, float)
    x = np.array(x0, float)
    out = [x.copy()]
    for _ in range(steps):
        y = np.maximum(0.0, x - eta * (C @ x - a))
        x = np.maximum(0.0, x - eta * (C @ y - a))
        out.append(x.copy())
    return out


def fictitious_play(A, B, start, rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """Empirical frequencies of two-player fictitious play (lowest-index ties)."""
    A, B = np.asarray(A, float), np.asarray(B, float)
    m, n = A.shape
    x, y = np.eye(m)[start[0]], np.eye(n)[start[1]]
    for t in range(rounds):
        i, j = int(np.argmax(A @ y)), int(np.argmax(x @ B))
        x = x + (np.eye(m)[i] - x) / (t + 2)
        y = y + (np.eye(n)[j] - y) / (t + 2)
    return x, y


def bimatrix_regret(A, B, x, y) -> float:
    """``max(regret_1, regret_2)`` of ``(x, y)`` in the bimatrix game ``(A, B)``."""
    A, B = np.asarray(A, float), np.asarray(B, float)
    return float(max((A @ y).max() - x @ A @ y, (x @ B).max() - x @ B @ y))


def distance_from_regret(a, C, x) -> float:
    """Statement 1's bound on ``||x - x*||_D`` from the regrets of ``x``.

    ``sqrt(2 sum_l regret_l(x)) (1 + ||C^||) / lambda_min(sym C^)`` with
    ``C^ = D^{-1/2} C D^{-1/2}``, ``||v||_D^2 = sum_l C_ll v_l^2``.
    """
    a, C, x = (np.asarray(v, float) for v in (a, C, x))
    d = np.sqrt(np.diag(C))
    Ch = C / np.outer(d, d)
    mu = np.linalg.eigvalsh(0.5 * (Ch + Ch.T))[0]
    return float(np.sqrt(2 * scale_regret(a, C, x).sum()) * (1 + np.linalg.norm(Ch, 2)) / mu)


def d_norm(C, v) -> float:
    """``||v||_D = sqrt(sum_l C_ll v_l^2)``."""
    return float(np.sqrt(np.sum(np.diag(np.asarray(C, float)) * np.asarray(v, float) ** 2)))
