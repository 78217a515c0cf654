"""Queueing, deadlines and adaptive batching in front of a predictor's ``infer``."""

from ._batcher import Answer, Arrival, Batcher, BatcherStats, BatchSizeMismatch

__all__ = ["Answer", "Arrival", "BatchSizeMismatch", "Batcher", "BatcherStats"]
