"""maha: Multiscale Aggregated Hierarchical Attention built on ``aggregation``."""

from .attention import MultiscaleAttention
from .block import MAHABlock
from .config import DECOMPOSITIONS, STRATEGIES, MAHAConfig
from .decomposition import HierarchicalDecomposition
from .fusion import FusionDiagnostics, FusionOutput, ScaleFusion
from .layer import MAHAAttention
from .loading import load_model
from .model import (
    VARIANTS,
    FullAttentionTransformer,
    MAHATransformer,
    build_model,
)
from .multihead import MAHAMultiheadAttention
from .standard import StandardAttention
from .streaming import BlockCache, KVCache, MAHACache, ModelCache

__all__ = [
    "BlockCache",
    "DECOMPOSITIONS",
    "STRATEGIES",
    "VARIANTS",
    "FullAttentionTransformer",
    "FusionDiagnostics",
    "FusionOutput",
    "HierarchicalDecomposition",
    "KVCache",
    "MAHAAttention",
    "MAHABlock",
    "MAHACache",
    "MAHAConfig",
    "MAHAMultiheadAttention",
    "MAHATransformer",
    "ModelCache",
    "MultiscaleAttention",
    "ScaleFusion",
    "StandardAttention",
    "build_model",
    "load_model",
]
