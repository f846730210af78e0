"""The verification kit: hypothesis strategies and assertion helpers.

Use it to test your own solver against the mathematics::

    from hypothesis import given
    from aggregation.testing import assert_nash, normal_form_games

    @given(normal_form_games(num_players=2, num_actions=3))
    def test_my_solver(game):
        assert_nash(game, my_solver(game), tol=1e-6)

The assertion helpers (:func:`assert_nash`, :func:`assert_scale_equilibrium`,
:func:`assert_kkt`, :func:`assert_strongly_monotone`, :func:`assert_causal`)
need only torch. The strategies need ``hypothesis``, an optional dependency
(``pip install "maha-aggregation[test]"``); importing ``aggregation`` never
imports this module or hypothesis.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from . import assertions
from .assertions import *  # noqa: F403  (the names of assertions.__all__, written there once)

__all__: list[str] = []
__all__ += assertions.__all__

try:
    from . import strategies
    from .strategies import *  # noqa: F403  (the names of strategies.__all__)
except ModuleNotFoundError as err:  # hypothesis is optional
    if err.name is None or err.name.split(".")[0] != "hypothesis":
        raise
    _MISSING = (
        "aggregation.testing.{name} needs the optional dependency 'hypothesis', which is not "
        'installed; install it with `pip install hypothesis` or `pip install "maha-aggregation'
        '[test]"`. The assertion helpers (assert_nash, ...) work without it.'
    )

    def _strategy_names() -> tuple[str, ...]:
        """``strategies.__all__``, read from its source (importing it needs hypothesis)."""
        tree = ast.parse(Path(__file__).with_name("strategies.py").read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                return tuple(ast.literal_eval(node.value))
        return ()

    def __getattr__(name: str) -> Any:
        if name in _strategy_names():
            raise ImportError(_MISSING.format(name=name))
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

else:
    __all__ += strategies.__all__
