"""aggregation: batched, differentiable game-theoretic aggregation solvers.

Finite N-player games in normal form and their equilibrium solvers, the
continuous *scale game* in which attention scales are players, a
simplex-constrained convex aggregator, implicit differentiation through all
of them, and verification tools (regret, exploitability, hypothesis
strategies).
"""

from .finite.differentiable import (
    BimatrixNashResult,
    differentiable_bimatrix_nash,
    differentiable_logit_qre,
)
from .finite.dominance import (
    EliminationResult,
    iterated_elimination,
    strictly_dominated_actions,
    weakly_dominated_actions,
)
from .finite.exact.lemke_howson import lemke_howson, lemke_howson_enumeration
from .finite.exact.liapunov import liapunov
from .finite.exact.linear_program import linear_program
from .finite.exact.logit_qre import QuantalResponseResult, logit_qre, logit_qre_at
from .finite.exact.pure_equilibria import pure_equilibria
from .finite.exact.support_enumeration import support_enumeration
from .finite.exact.vertex_enumeration import vertex_enumeration
from .finite.learning.best_response_dynamics import best_response_dynamics
from .finite.learning.fictitious_play import fictitious_play
from .finite.learning.regret_matching import regret_matching
from .finite.learning.replicator_dynamics import replicator_dynamics
from .games import (
    NormalFormGame,
    anti_coordination_game,
    battle_of_the_sexes,
    coordination_game,
    covariance_game,
    exploitability,
    is_nash,
    is_symmetric,
    matching_pennies,
    nash_conv,
    prisoners_dilemma,
    random_game,
    regret,
    rock_paper_scissors,
    shapley_game,
    symmetric_game,
    validate_profile,
)
from .implicit_diff import (
    custom_fixed_point,
    custom_root,
    implicit_fixed_point,
    implicit_root,
)
from .result import EquilibriumResult, EquilibriumSet
from .scale import (
    LogitScaleResult,
    ScaleGameResult,
    convex_aggregate_enumeration,
    logit_scale_equilibrium,
    scale_game_enumeration,
    solve_scale_game,
)
from .scale.convex import ConvexAggregateResult, convex_aggregate
from .scale.game import ScaleGame
from .scale.welfare import PriceOfAnarchyResult, price_of_anarchy, welfare
from .simplex import project_simplex
from .tolerance import default_tol

__version__ = "0.1.0"

__all__ = [
    "BimatrixNashResult",
    "ConvexAggregateResult",
    "LogitScaleResult",
    "PriceOfAnarchyResult",
    "ScaleGame",
    "ScaleGameResult",
    "convex_aggregate",
    "convex_aggregate_enumeration",
    "custom_fixed_point",
    "custom_root",
    "default_tol",
    "differentiable_bimatrix_nash",
    "differentiable_logit_qre",
    "implicit_fixed_point",
    "implicit_root",
    "logit_scale_equilibrium",
    "price_of_anarchy",
    "project_simplex",
    "solve_scale_game",
    "scale_game_enumeration",
    "welfare",
    "EquilibriumResult",
    "EquilibriumSet",
    "NormalFormGame",
    "QuantalResponseResult",
    "best_response_dynamics",
    "fictitious_play",
    "lemke_howson",
    "lemke_howson_enumeration",
    "liapunov",
    "linear_program",
    "logit_qre",
    "logit_qre_at",
    "pure_equilibria",
    "regret_matching",
    "replicator_dynamics",
    "support_enumeration",
    "vertex_enumeration",
    "exploitability",
    "is_nash",
    "nash_conv",
    "regret",
    "validate_profile",
    "EliminationResult",
    "iterated_elimination",
    "strictly_dominated_actions",
    "weakly_dominated_actions",
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
]
