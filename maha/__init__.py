"""maha: Multiscale Aggregated Hierarchical Attention built on ``aggregation``."""

from .attention import MultiscaleAttention
from .block import MAHABlock
from .config import DECOMPOSITIONS, STRATEGIES, MAHAConfig
from .decomposition import HierarchicalDecomposition
from .fusion import FusionDiagnostics, FusionOutput, ScaleFusion
from .layer import MAHAAttention
from .model import (
    VARIANTS,
    FullAttentionTransformer,
    MAHATransformer,
    build_model,
)
from .standard import StandardAttention

__all__ = [
    "DECOMPOSITIONS",
    "STRATEGIES",
    "VARIANTS",
    "FullAttentionTransformer",
    "FusionDiagnostics",
    "FusionOutput",
    "HierarchicalDecomposition",
    "MAHAAttention",
    "MAHABlock",
    "MAHAConfig",
    "MAHATransformer",
    "MultiscaleAttention",
    "ScaleFusion",
    "StandardAttention",
    "build_model",
]
