"""Write the README's "Results" section from the benchmarks' own outputs.

Each benchmark script writes ``benchmarks/results/<name>.json`` and a Markdown
table ``<name>.md`` (with the date and the machine it ran on), and some a
``<name>.png`` plot. This script copies those tables and plots, with the command
that reproduces each, between the ``<!-- results:start -->`` and
``<!-- results:end -->`` markers of README.md. No figure is typed by hand:
``tests/docs/test_readme.py`` fails if the README and this script's output differ.

Usage: ``python benchmarks/report.py`` (rewrites README.md) or
``python benchmarks/report.py --check`` (exit 1 if README.md is stale).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- results:start -->", "<!-- results:end -->"

# name -> (title, command that reproduces it)
SECTIONS = {
    "solvers": ("Finite-game solvers against nashpy and Gambit", "python benchmarks/solvers.py"),
    "scale_game": (
        "Scale game and convex aggregator (1,000,000 games) against cvxpylayers",
        "python benchmarks/scale_game.py",
    ),
    "attention": (
        "The MAHA layer against standard attention (SDPA): FLOPs, time, memory",
        "python benchmarks/attention.py",
    ),
    "attention_breakdown": (
        "Where the MAHA layer's time goes at length 4096",
        "python benchmarks/attention_breakdown.py --compile",
    ),
    "lm_quality": (
        "Language-model quality on the Python standard library",
        "python benchmarks/lm_quality.py",
    ),
    "throughput": (
        "Training throughput at length 4096",
        "python benchmarks/throughput.py",
    ),
    "generation": (
        "Generation with a cache: per-token latency and cache memory against context",
        "python benchmarks/generation.py",
    ),
}


def _command(name: str, default: str) -> str:
    """The command recorded by the benchmark itself, if any, else the default."""
    path = RESULTS / f"{name}.json"
    if path.exists():
        try:
            recorded = json.loads(path.read_text()).get("command")
        except (json.JSONDecodeError, AttributeError):
            recorded = None
        if isinstance(recorded, str) and recorded.strip():
            return recorded.strip()
    return default


def _body(markdown: str) -> str:
    """A benchmark's Markdown table with its title dropped and headings demoted."""
    lines = markdown.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    out = []
    for line in lines:
        if re.match(r"^#{1,4} ", line):
            line = "##" + line
        out.append(line)
    return "\n".join(out).strip()


def render() -> str:
    """The Results section's content (between the markers)."""
    parts = [
        "Every table and plot below is written by the script named above it "
        "(`python benchmarks/report.py` copies them here); each states the date and the "
        "machine it ran on. Speed ratios compare against peers timed in the same run."
    ]
    for name, (title, default_command) in SECTIONS.items():
        table = RESULTS / f"{name}.md"
        if not table.exists():
            continue
        parts.append(f"### {title}")
        parts.append(f"Reproduce: `{_command(name, default_command)}`")
        parts.append(_body(table.read_text()))
        plot = RESULTS / f"{name}.png"
        if plot.exists():
            parts.append(f"![{title}](benchmarks/results/{name}.png)")
    return "\n\n".join(parts)


def updated_readme(readme: str) -> str:
    """README text with the Results section replaced by :func:`render`."""
    if START not in readme or END not in readme:
        raise ValueError(f"README.md must contain the markers {START} and {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    args = parser.parse_args(argv)
    path = ROOT / "README.md"
    current = path.read_text()
    new = updated_readme(current)
    if args.check:
        if new != current:
            print("README.md's Results section is stale: run python benchmarks/report.py")
            return 1
        print("README.md's Results section is up to date")
        return 0
    path.write_text(new)
    print(f"wrote the Results section of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
