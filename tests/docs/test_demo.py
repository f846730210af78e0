"""The main job: ``maha demo`` and ``python -m aggregation`` run and say true things."""

import re

import torch

from aggregation import demo as games_demo
from maha.cli import main


def test_classic_games_rows_are_honest():
    rows = games_demo.run(print_fn=lambda line: None)
    games = games_demo.classic_games()
    by_game: dict[str, list] = {}
    for row in rows:
        by_game.setdefault(row.game, []).append(row)
        if row.converged:
            game = games[row.game]
            rounded = [torch.tensor(s, dtype=torch.float64) for s in row.strategies]
            profile = tuple(s / s.sum() for s in rounded)
            # Printed profiles are rounded to 4 decimals: allow for that, not more.
            assert float(game.regret(profile).max()) <= 1e-2, row
    bos = [r for r in by_game["battle of the sexes"] if r.solver == "support_enumeration"]
    assert len(bos) == 3 and all(r.converged for r in bos)
    shapley_fp = [r for r in by_game["Shapley's game"] if r.solver == "fictitious_play"]
    assert len(shapley_fp) == 1 and not shapley_fp[0].converged


def test_maha_demo_quick_runs_the_whole_pipeline(capsys):
    assert main(["demo", "--quick"]) == 0
    out = capsys.readouterr().out
    sections = ("1. Classic games", "2. The scale game", "3. A MAHA language model", "4. FLOPs")
    for section in sections:
        assert section in out
    regrets = [float(x) for x in re.findall(r"max regret ([0-9.e+-]+);", out)]
    assert regrets and max(regrets) <= 1e-6  # the scale games inside the model are solved
    assert "fewer)" in out
