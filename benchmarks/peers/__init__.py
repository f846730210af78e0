"""Published attention mechanisms, wrapped as variants of the benchmarks (not of the library).

- :mod:`peers.h_transformer`: H-Transformer-1D's causal hierarchical attention (Zhu & Soricut,
  2021; the ``h-transformer-1d`` package) in the backbone of
  :class:`maha.model.FullAttentionTransformer`.
"""
