"""Finite N-player games: the game (:mod:`.game`), exact methods (:mod:`.exact`),
learning dynamics (:mod:`.learning`), differentiable equilibria
(:mod:`.differentiable`) and dominance (:mod:`.dominance`)."""

from .exact import (
    QuantalResponseResult,
    lemke_howson,
    lemke_howson_enumeration,
    liapunov,
    linear_program,
    logit_qre,
    logit_qre_at,
    pure_equilibria,
    support_enumeration,
    vertex_enumeration,
)
from .learning import (
    best_response_dynamics,
    fictitious_play,
    regret_matching,
    replicator_dynamics,
)

__all__ = [
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
]
