"""Differentiable equilibria of finite games (implicit differentiation).

The scale game and the convex aggregator are differentiable directly
(:func:`aggregation.solve_scale_game`, :func:`aggregation.convex_aggregate`);
this subpackage covers finite games: the logit QRE at a fixed precision and a
Nash equilibrium of a nondegenerate bimatrix game.
"""

from .bimatrix import BimatrixNashResult, differentiable_bimatrix_nash, support_search
from .qre import differentiable_logit_qre

__all__ = [
    "BimatrixNashResult",
    "differentiable_bimatrix_nash",
    "differentiable_logit_qre",
    "support_search",
]
