"""Equilibrium solvers for finite games (two-player exact and N-player iterative)."""

from .best_response_dynamics import best_response_dynamics
from .fictitious_play import fictitious_play
from .lemke_howson import lemke_howson, lemke_howson_enumeration
from .linear_program import linear_program
from .logit_qre import QuantalResponseResult, logit_qre, logit_qre_at
from .pure_equilibria import pure_equilibria
from .regret_matching import regret_matching
from .replicator_dynamics import replicator_dynamics
from .support_enumeration import support_enumeration
from .vertex_enumeration import vertex_enumeration

__all__ = [
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
]
