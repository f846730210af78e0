"""Game definitions: finite normal-form games and the continuous scale game.

Constructors: the classic games of the literature (:mod:`.classic`), random
games (:mod:`.random_games`) and symmetric games (``symmetric_game``,
``is_symmetric``).
"""

from ..finite.game import (
    NormalFormGame,
    exploitability,
    is_nash,
    nash_conv,
    regret,
    validate_profile,
)
from ..scale.game import ScaleGame
from .classic import (
    anti_coordination_game,
    battle_of_the_sexes,
    coordination_game,
    is_symmetric,
    matching_pennies,
    prisoners_dilemma,
    rock_paper_scissors,
    shapley_game,
    symmetric_game,
)
from .random_games import covariance_game, random_game

__all__ = [
    "NormalFormGame",
    "ScaleGame",
    "anti_coordination_game",
    "battle_of_the_sexes",
    "coordination_game",
    "covariance_game",
    "is_symmetric",
    "matching_pennies",
    "prisoners_dilemma",
    "random_game",
    "rock_paper_scissors",
    "shapley_game",
    "symmetric_game",
    "exploitability",
    "is_nash",
    "nash_conv",
    "regret",
    "validate_profile",
]
