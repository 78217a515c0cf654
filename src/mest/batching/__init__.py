"""Queueing, deadlines and adaptive batching in front of a predictor's ``infer``."""

from ._batcher import Batcher, BatcherStats, BatchObserver, BatchSizeMismatch

__all__ = ["BatchObserver", "BatchSizeMismatch", "Batcher", "BatcherStats"]
