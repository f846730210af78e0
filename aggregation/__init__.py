"""aggregation: batched, differentiable game-theoretic aggregation solvers.

Finite N-player games in normal form and their equilibrium solvers, the
continuous *scale game* in which attention scales are players, a
simplex-constrained convex aggregator, implicit differentiation through all
of them, and verification tools (regret, exploitability, hypothesis
strategies).
"""

from .algorithms.best_response_dynamics import best_response_dynamics
from .algorithms.fictitious_play import fictitious_play
from .algorithms.lemke_howson import lemke_howson, lemke_howson_enumeration
from .algorithms.linear_program import linear_program
from .algorithms.logit_qre import QuantalResponseResult, logit_qre, logit_qre_at
from .algorithms.pure_equilibria import pure_equilibria
from .algorithms.regret_matching import regret_matching
from .algorithms.replicator_dynamics import replicator_dynamics
from .algorithms.support_enumeration import support_enumeration
from .algorithms.vertex_enumeration import vertex_enumeration
from .convex import ConvexAggregateResult, convex_aggregate
from .differentiable import (
    BimatrixNashResult,
    differentiable_bimatrix_nash,
    differentiable_logit_qre,
)
from .games import (
    NormalFormGame,
    exploitability,
    is_nash,
    nash_conv,
    regret,
    validate_profile,
)
from .games.scale_game import ScaleGame
from .implicit_diff import (
    custom_fixed_point,
    custom_root,
    implicit_fixed_point,
    implicit_root,
)
from .result import EquilibriumResult, EquilibriumSet
from .scale import ScaleGameResult, solve_scale_game
from .simplex import project_simplex
from .welfare import PriceOfAnarchyResult, price_of_anarchy, welfare

__version__ = "0.1.0"

__all__ = [
    "BimatrixNashResult",
    "ConvexAggregateResult",
    "PriceOfAnarchyResult",
    "ScaleGame",
    "ScaleGameResult",
    "convex_aggregate",
    "custom_fixed_point",
    "custom_root",
    "differentiable_bimatrix_nash",
    "differentiable_logit_qre",
    "implicit_fixed_point",
    "implicit_root",
    "price_of_anarchy",
    "project_simplex",
    "solve_scale_game",
    "welfare",
    "EquilibriumResult",
    "EquilibriumSet",
    "NormalFormGame",
    "QuantalResponseResult",
    "best_response_dynamics",
    "fictitious_play",
    "lemke_howson",
    "lemke_howson_enumeration",
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
]
