"""Solvers for the scale game (see :class:`aggregation.ScaleGame`), one per module."""

from .best_response import solve_best_response
from .enumeration import (
    convex_aggregate_enumeration,
    scale_game_enumeration,
    solve_enumeration,
)
from .exact import solve_exact
from .extragradient import solve_extragradient
from .fictitious_play import solve_fictitious_play
from .logit import LogitScaleResult, logit_scale_equilibrium
from .potential import solve_potential
from .result import ScaleGameResult, profile_weights
from .small_batch import scale_game_small_batch
from .solve import METHODS, check_monotone, solve_scale_game

__all__ = [
    "METHODS",
    "LogitScaleResult",
    "ScaleGameResult",
    "check_monotone",
    "convex_aggregate_enumeration",
    "logit_scale_equilibrium",
    "profile_weights",
    "scale_game_enumeration",
    "scale_game_small_batch",
    "solve_best_response",
    "solve_enumeration",
    "solve_exact",
    "solve_extragradient",
    "solve_fictitious_play",
    "solve_potential",
    "solve_scale_game",
]
