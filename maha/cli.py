"""The ``maha`` command: ``maha demo`` (the whole pipeline), ``maha train``, ``maha generate``.

``maha demo`` runs, in under two minutes on a 2-core CPU:

1. the finite-game solvers on classic games (equilibria and their regrets);
2. the scale-game solvers on a batch of random monotone scale games, each
   checked against the exact solver;
3. a small causal MAHA language model ("nash" fusion) trained for a few steps
   on a sample of the Python standard library, then the per-scale
   equilibrium weights and their regret on held-out text;
4. the layer's FLOPs against standard attention at length 4096.

``maha train ...`` is :func:`maha.training.main` (see ``maha train --help``);
``maha generate ...`` is :func:`maha.generate_cli.main` (see ``maha generate --help``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence

import torch

__all__ = ["demo", "main"]


def _section(title: str) -> None:
    print(f"\n=== {title} ===")


def _scale_games(num_games: int, num_scales: int, seed: int) -> None:
    from aggregation import ScaleGame, solve_scale_game

    g = torch.Generator().manual_seed(seed)
    o = torch.randn(num_games, num_scales, 16, generator=g, dtype=torch.float64)  # (G, L, d)
    a = torch.nn.functional.softplus(torch.randn(num_games, num_scales, generator=g)) + 1e-3
    C = o @ o.transpose(-1, -2) / 16 + 0.5 * torch.eye(num_scales, dtype=torch.float64)
    game = ScaleGame(a.double(), C)  # a (G, L), C (G, L, L): monotone by construction
    start = time.perf_counter()
    exact = solve_scale_game(game, method="exact")
    seconds = time.perf_counter() - start
    print(
        f"{num_games:,} random scale games, L={num_scales}, float64. exact: "
        f"{seconds * 1e3:.1f} ms, max regret {float(exact.regret.max()):.2e}, "
        f"converged {int(exact.converged.sum()):,}/{num_games:,}"
    )
    print(f"{'method':<18}{'max regret':>12}{'max |x - x_exact|':>20}{'converged':>18}")
    for method in ("best_response", "fictitious_play", "extragradient", "potential"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = solve_scale_game(game, method=method, differentiable=False)
        gap = float((result.x - exact.x).abs().max())
        solved = f"{int(result.converged.sum()):,}/{num_games:,}"
        print(f"{method:<18}{float(result.regret.max()):>12.2e}{gap:>20.2e}{solved:>18}")
    mean_w = exact.weights.mean(0).tolist()
    print("mean fusion weights w = x*/sum(x*):", " ".join(f"{w:.3f}" for w in mean_w))


def _language_model(steps: int, seq_len: int, seed: int) -> None:
    from maha import MAHAConfig
    from maha.training import TrainConfig, train

    config = TrainConfig(
        variant="maha-nash",
        model=MAHAConfig(
            n_layer=2, n_head=4, d_model=64, num_scales=4, ratio=2, window=32, block_size=seq_len
        ),
        seq_len=seq_len,
        steps=steps,
        batch_size=8,
        lr=3e-3,
        max_bytes=2_000_000,
        eval_every=0,
        eval_sequences=8,
        seed=seed,
        device="cpu",
    )
    result = train(config)
    first = result.train_loss[0][1] / 0.6931471805599453
    last = result.train_loss[-1][1] / 0.6931471805599453
    print(
        f"maha-nash, {result.num_parameters:,} parameters: train loss {first:.2f} -> {last:.2f} "
        f"bits/byte in {result.step} steps ({result.tokens_per_s:,.0f} bytes/s); "
        f"validation {result.val_bpb:.3f} bits/byte"
    )
    model = result.model
    from maha.training import load_corpus

    corpus = load_corpus(None, max_bytes=2_000_000)
    window = corpus.val.data[:seq_len].long().unsqueeze(0)  # (1, T) held-out bytes
    with torch.no_grad():
        h = model.wte(window) + model.wpe(torch.arange(window.shape[1]))  # (1, T, d)
        for index, block in enumerate(model.blocks):
            h, diag = block.forward_with_diagnostics(h)
            weights = diag.weights.double()  # (1, T, H, L)
            mean = weights.mean(dim=(0, 1, 2)).tolist()
            print(
                f"layer {index}: mean equilibrium weight per scale (fine -> coarse) "
                + " ".join(f"{w:.3f}" for w in mean)
                + f"; max regret {float(diag.regret.max()):.1e}; "
                f"solved {int(diag.converged.sum()):,}/{diag.converged.numel():,} games"
            )


def _flops(length: int) -> None:
    from maha.flops import maha_flops, standard_attention_flops

    std = standard_attention_flops(length, 256)
    ours = maha_flops(length, 256, 4, num_scales=4, ratio=2, window=64, causal=True)
    print(f"length {length}, d=256, 4 heads, 4 scales, r=2, window 64 (causal):")
    print(
        f"  attention core: {ours.core / 1e9:.2f} GFLOP vs {std.core / 1e9:.2f} "
        f"({100 * (1 - ours.core / std.core):.1f}% fewer)"
    )
    print(
        f"  whole layer:    {ours.total / 1e9:.2f} GFLOP vs {std.total / 1e9:.2f} "
        f"({100 * (1 - ours.total / std.total):.1f}% fewer)"
    )


def demo(quick: bool = False, seed: int = 0) -> None:
    """Run the whole pipeline and print what each stage found."""
    from aggregation import demo as games_demo

    torch.manual_seed(seed)
    _section("1. Classic games, every solver (regret in payoff units)")
    games_demo.run()
    _section("2. The scale game: scales are players")
    _scale_games(2_000 if quick else 100_000, 4, seed)
    _section("3. A MAHA language model on the Python standard library")
    _language_model(steps=3 if quick else 60, seq_len=64 if quick else 256, seed=seed)
    _section("4. FLOPs against standard attention")
    _flops(4096)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``maha`` console script."""
    parser = argparse.ArgumentParser(prog="maha", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo_parser = sub.add_parser("demo", help="run the whole pipeline on small inputs")
    demo_parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    demo_parser.add_argument("--seed", type=int, default=0)
    sub.add_parser("train", help="train a language model (see 'maha train --help')", add_help=False)
    sub.add_parser(
        "generate",
        help="sample text from a trained checkpoint (see 'maha generate --help')",
        add_help=False,
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "train":
        from maha.training import main as train_main

        return int(train_main(rest) or 0)
    if args.command == "generate":
        from maha.generate_cli import main as generate_main

        return int(generate_main(rest) or 0)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    demo(quick=args.quick, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
