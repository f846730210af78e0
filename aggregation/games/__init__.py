"""Game definitions: finite normal-form games and the continuous scale game."""

from .normal_form import (
    NormalFormGame,
    exploitability,
    is_nash,
    nash_conv,
    regret,
    validate_profile,
)
from .scale_game import ScaleGame

__all__ = [
    "NormalFormGame",
    "ScaleGame",
    "exploitability",
    "is_nash",
    "nash_conv",
    "regret",
    "validate_profile",
]
