"""Exact equilibrium methods for finite games.

Two-player: Lemke-Howson (complementary pivoting), support and vertex enumeration,
the zero-sum linear program, pure equilibria; N-player: the logit quantal-response
homotopy (``logit_qre``) whose limit is a Nash equilibrium, and Lyapunov-function
minimisation (``liapunov``, Gambit's ``liap``).
"""

from .lemke_howson import lemke_howson, lemke_howson_enumeration
from .liapunov import liapunov
from .linear_program import linear_program
from .logit_qre import QuantalResponseResult, logit_qre, logit_qre_at
from .pure_equilibria import pure_equilibria
from .support_enumeration import support_enumeration
from .vertex_enumeration import vertex_enumeration

__all__ = [
    "QuantalResponseResult",
    "lemke_howson",
    "lemke_howson_enumeration",
    "liapunov",
    "linear_program",
    "logit_qre",
    "logit_qre_at",
    "pure_equilibria",
    "support_enumeration",
    "vertex_enumeration",
]
