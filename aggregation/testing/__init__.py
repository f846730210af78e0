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

from typing import Any

from .assertions import (
    assert_causal,
    assert_kkt,
    assert_nash,
    assert_scale_equilibrium,
    assert_strongly_monotone,
)

_STRATEGIES = (
    "PlantedScaleGame",
    "ScaleGameParams",
    "SimplexQP",
    "degenerate_games",
    "mixed_profiles",
    "normal_form_games",
    "planted_scale_games",
    "potential_games",
    "profiles_for",
    "scale_game_params",
    "scale_games",
    "simplex_qps",
    "zero_sum_games",
)

__all__ = [
    "PlantedScaleGame",
    "ScaleGameParams",
    "SimplexQP",
    "assert_causal",
    "assert_kkt",
    "assert_nash",
    "assert_scale_equilibrium",
    "assert_strongly_monotone",
    "degenerate_games",
    "mixed_profiles",
    "normal_form_games",
    "planted_scale_games",
    "potential_games",
    "profiles_for",
    "scale_game_params",
    "scale_games",
    "simplex_qps",
    "zero_sum_games",
]

try:
    from .strategies import (
        PlantedScaleGame,
        ScaleGameParams,
        SimplexQP,
        degenerate_games,
        mixed_profiles,
        normal_form_games,
        planted_scale_games,
        potential_games,
        profiles_for,
        scale_game_params,
        scale_games,
        simplex_qps,
        zero_sum_games,
    )
except ModuleNotFoundError as err:  # hypothesis is optional
    if err.name is None or err.name.split(".")[0] != "hypothesis":
        raise
    _MISSING = (
        "aggregation.testing.{name} needs the optional dependency 'hypothesis', which is not "
        'installed; install it with `pip install hypothesis` or `pip install "maha-aggregation'
        '[test]"`. The assertion helpers (assert_nash, ...) work without it.'
    )

    def __getattr__(name: str) -> Any:
        if name in _STRATEGIES:
            raise ImportError(_MISSING.format(name=name))
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
