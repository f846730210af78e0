"""maha: Multiscale Aggregated Hierarchical Attention built on ``aggregation``."""
