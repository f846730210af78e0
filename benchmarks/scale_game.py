"""Scale game and convex aggregator at MAHA scale, against cvxpylayers.

Jobs, on ``--games`` games (default 1,000,000) with ``L = 4`` scales, float32,
CPU, built as MAHA builds them (``C = Gram(o) / d + 0.1 I`` of random scale
outputs ``o`` with ``d = 16``, ``a = softplus(N(0, 1)) + 0.01``):

* ``exact``: :func:`aggregation.solve_scale_game` (principal pivoting, support
  enumeration fallback), forward alone and forward + backward (implicit
  gradients with respect to ``a`` and ``C`` of ``sum(weights * g)``);
* ``convex``: :func:`aggregation.convex_aggregate` (active set), same two timings;
* ``enumeration`` / ``convex_enumeration``: the same two problems by support
  enumeration (:mod:`aggregation.scale.enumeration`: all ``2^L - 1`` supports at
  once, no host reads; the path that compiles), eager;
* peer: the same convex problem through ``cvxpylayers`` (``CvxpyLayer`` on
  ``max a^T w - 1/2 ||F w||^2, w in simplex``, ``Q = F^T F``), forward +
  backward on a sample of ``--peer-sample`` problems, batched in one call,
  float64 (what it supports); reported per problem. Skipped with a note when
  cvxpylayers is not installed (``pip install -e ".[peers]"``).

Times are the best of ``--repeats`` runs after a warm-up. Targets (issue 3):
forward + backward of 1,000,000 games under 1 s for each method, and at least
1,000 times less time per problem than cvxpylayers.

The machine's load average is recorded: on a shared 2-core machine, torch's
OpenMP threads wait on each other when other processes hold the cores, and
every timing here degrades (see ``--threads``).

Writes ``scale_game.json`` and ``scale_game.md`` to ``benchmarks/results/``.

    python benchmarks/scale_game.py            # about a minute on an idle 2-core CPU
    python benchmarks/scale_game.py --quick    # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import aggregation
from aggregation import ScaleGame, convex_aggregate, solve_scale_game

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SECONDS = 1.0
TARGET_RATIO = 1000.0


def make_games(n: int, L: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MAHA-like games: ``a (n, L)``, ``C (n, L, L)`` float32."""
    g = torch.Generator().manual_seed(seed)
    a = torch.nn.functional.softplus(torch.randn(n, L, generator=g)) + 0.01
    C = torch.empty(n, L, L)
    step = 1 << 17
    for s in range(0, n, step):  # build in slices: the Gram of (n, L, d) at once is large
        o = torch.randn(min(step, n - s), L, d, generator=g)
        C[s : s + step] = o @ o.mT / d
    C += 0.1 * torch.eye(L)
    return a, C


def best_time(fn: Any, repeats: int) -> tuple[float, Any]:
    fn()  # warm-up
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _solve(a: torch.Tensor, C: torch.Tensor, method: str) -> Any:
    if method in ("exact", "enumeration"):
        return solve_scale_game(ScaleGame(a, C), method)
    if method == "convex_enumeration":
        return aggregation.convex_aggregate_enumeration(a, C)
    return convex_aggregate(a, C)


def ours(a: torch.Tensor, C: torch.Tensor, method: str, repeats: int) -> dict[str, Any]:
    g = torch.randn_like(a)

    def forward():
        with torch.no_grad():
            return _solve(a, C, method)

    def forward_backward():
        a_ = a.detach().requires_grad_()
        C_ = C.detach().requires_grad_()
        out = _solve(a_, C_, method)
        (out.weights * g).sum().backward()
        return out, a_.grad, C_.grad

    t_fwd, res = best_time(forward, repeats)
    t_both, (res_g, grad_a, grad_C) = best_time(forward_backward, repeats)
    n = a.shape[0]
    row: dict[str, Any] = {
        "method": method,
        "games": n,
        "forward_s": t_fwd,
        "forward_backward_s": t_both,
        "us_per_game_forward_backward": 1e6 * t_both / n,
        "converged": float(res.converged.float().mean()),
        "mean_iterations": float(res.iterations.float().mean()),
        "finite_gradients": bool(torch.isfinite(grad_a).all() and torch.isfinite(grad_C).all()),
    }
    if method in ("exact", "enumeration"):
        row["max_regret"] = float(res.regret.max())
    else:
        row["max_kkt_residual"] = float(res.kkt_residual.max())
    if "enumerated" in res.info:
        row["enumerated"] = int(res.info["enumerated"].sum())
    return row


def cvxpylayers_peer(a: torch.Tensor, C: torch.Tensor, sample: int) -> dict[str, Any]:
    try:
        import cvxpy as cp
        from cvxpylayers.torch import CvxpyLayer
    except ImportError:
        return {"skipped": "cvxpylayers is not installed (pip install -e '.[peers]')"}
    L = a.shape[-1]
    w = cp.Variable(L)
    a_p = cp.Parameter(L)
    F_p = cp.Parameter((L, L))
    problem = cp.Problem(
        cp.Maximize(a_p @ w - 0.5 * cp.sum_squares(F_p @ w)), [w >= 0, cp.sum(w) == 1]
    )
    layer = CvxpyLayer(problem, parameters=[a_p, F_p], variables=[w])
    a64 = a[:sample].double()
    Q64 = C[:sample].double()
    F = torch.linalg.cholesky(0.5 * (Q64 + Q64.mT)).mT.contiguous()
    g = torch.randn_like(a64)

    def run():
        a_ = a64.clone().requires_grad_()
        F_ = F.clone().requires_grad_()
        (ws,) = layer(a_, F_)
        (ws * g).sum().backward()
        return ws.detach()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t, ws = best_time(run, 1)
    ref = convex_aggregate(a64, Q64).weights
    return {
        "problems": sample,
        "forward_backward_s": t,
        "us_per_problem_forward_backward": 1e6 * t / sample,
        "max_abs_weight_difference_vs_ours": float((ws - ref).abs().max()),
    }


def machine() -> dict[str, Any]:
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "aggregation": aggregation.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": list(load),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Scale game and convex aggregator (benchmarks/scale_game.py)",
        "",
        f"{report['date']}; {report['machine']['platform']}; torch "
        f"{report['machine']['torch']}, {report['machine']['torch_threads']} threads; load "
        f"average {report['machine']['load_average_1_5_15'][0]:.2f}.",
        "",
        "| method | games | L | forward (s) | forward+backward (s) | us/game (f+b) | "
        "converged | mean pivots | target < 1 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["ours"]:
        lines.append(
            f"| {r['method']} | {r['games']:,} | {report['L']} | {r['forward_s']:.3f} | "
            f"{r['forward_backward_s']:.3f} | {r['us_per_game_forward_backward']:.3f} | "
            f"{r['converged']:.4f} | {r['mean_iterations']:.2f} | "
            f"{'yes' if r['forward_backward_s'] < TARGET_SECONDS else 'no'} |"
        )
    peer = report["cvxpylayers"]
    lines.append("")
    if "skipped" in peer:
        lines.append(f"cvxpylayers: skipped ({peer['skipped']}).")
    else:
        lines += [
            "| peer | problems | us/problem (f+b) | ours us/problem (f+b) | ratio "
            "| target >= 1000x |",
            "|---|---|---|---|---|---|",
            f"| cvxpylayers | {peer['problems']} | {peer['us_per_problem_forward_backward']:.1f} | "
            f"{report['convex_us_per_problem']:.3f} | {report['ratio_vs_cvxpylayers']:,.0f} | "
            f"{'yes' if report['ratio_vs_cvxpylayers'] >= TARGET_RATIO else 'no'} |",
            "",
            f"Largest weight difference, cvxpylayers vs ours: "
            f"{peer['max_abs_weight_difference_vs_ours']:.2g} (cvxpylayers' solver tolerance).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=1_000_000)
    parser.add_argument("--L", type=int, default=4)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-sample", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.games, args.repeats, args.peer_sample = 2000, 1, 5
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    a, C = make_games(args.games, args.L, args.dim, args.seed)
    rows = []
    for method in ("exact", "convex", "enumeration", "convex_enumeration"):
        row = ours(a, C, method, args.repeats)
        rows.append(row)
        print(
            f"{method:18s} {args.games:>9,} games L={args.L}: forward {row['forward_s']:.3f} s, "
            f"forward+backward {row['forward_backward_s']:.3f} s "
            f"(target < {TARGET_SECONDS:g} s), converged {row['converged']:.4f}"
        )
    peer = cvxpylayers_peer(a, C, args.peer_sample)
    convex_us = rows[1]["us_per_game_forward_backward"]
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "L": args.L,
        "dim": args.dim,
        "quick": args.quick,
        "ours": rows,
        "cvxpylayers": peer,
        "convex_us_per_problem": convex_us,
        "targets": {"forward_backward_s": TARGET_SECONDS, "ratio_vs_cvxpylayers": TARGET_RATIO},
    }
    if "skipped" in peer:
        print(f"cvxpylayers: skipped ({peer['skipped']})")
    else:
        ratio = peer["us_per_problem_forward_backward"] / convex_us
        report["ratio_vs_cvxpylayers"] = ratio
        print(
            f"cvxpylayers: {peer['us_per_problem_forward_backward']:.1f} us/problem vs ours "
            f"{convex_us:.3f} us/problem: ratio {ratio:,.0f}x (target >= {TARGET_RATIO:,.0f}x)"
        )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "scale_game.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "scale_game.md").write_text(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
