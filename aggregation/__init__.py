"""aggregation: batched, differentiable game-theoretic aggregation solvers.

Finite N-player games in normal form and their equilibrium solvers, the
continuous *scale game* in which attention scales are players, a
simplex-constrained convex aggregator, implicit differentiation through all
of them, and verification tools (regret, exploitability, hypothesis
strategies).
"""

from .games import (
    NormalFormGame,
    exploitability,
    is_nash,
    nash_conv,
    regret,
    validate_profile,
)
from .result import EquilibriumResult, EquilibriumSet

__version__ = "0.1.0"

__all__ = [
    "EquilibriumResult",
    "EquilibriumSet",
    "NormalFormGame",
    "exploitability",
    "is_nash",
    "nash_conv",
    "regret",
    "validate_profile",
]
