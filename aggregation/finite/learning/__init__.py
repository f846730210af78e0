"""Learning dynamics for finite games: the path of play, not only its end point.

Best-response dynamics, fictitious play, regret matching and the replicator
dynamics; each certifies its end point by its regret and can return its trajectory.
"""

from .best_response_dynamics import best_response_dynamics
from .fictitious_play import fictitious_play
from .regret_matching import regret_matching
from .replicator_dynamics import replicator_dynamics

__all__ = [
    "best_response_dynamics",
    "fictitious_play",
    "regret_matching",
    "replicator_dynamics",
]
