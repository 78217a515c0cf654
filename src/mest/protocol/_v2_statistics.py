"""The statistics extension of the Open Inference Protocol, in Triton's JSON shape.

``GET /v2/models/stats`` and ``GET /v2/models/NAME[/versions/VERSION]/stats`` answer what tritonclient's
``get_inference_statistics`` reads, built from the metrics Mest already keeps (so summed over gunicorn's workers
exactly as ``/metrics`` is). How each field maps (docs/v2.md):

* ``inference_count``: requests that reached the model (``queue_wait`` observations); ``execution_count``:
  ``infer`` calls (batches); ``last_inference``: when the last batch started, in ms since the epoch;
* ``inference_stats``: ``queue``, ``compute_input`` (``pre_process``), ``compute_infer`` (``infer``, per batch) and
  ``compute_output`` (``post_process``) as the stage histograms' count and total time; ``success`` counts the
  requests that finished ``post_process`` with the time of all four stages; ``fail`` counts rejections (503,
  504) and failed stages (Mest does not time failures separately: ``ns`` is 0); no response cache (0);
* ``batch_stats``: per batch size, how many ``infer`` calls: exact for an unbatched model (size 1, with the
  stage times); for a batched one, per bucket of ``mest_batch_size`` (1, 2, 4, …: ``batch_size`` is the bucket's
  upper bound), counts only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["statistics_document"]

_ZERO = {"count": 0, "ns": 0}


def _duration(count: float, seconds: float) -> dict[str, int]:
    return {"count": int(count), "ns": round(seconds * 1e9)}


def _model_entry(name: str, version: str, batched: bool, stats: Any) -> dict[str, Any]:
    if stats is None:
        stages: Mapping[str, Sequence[float]] = {}
        rejected = failed = last = 0.0
        batch_sizes: Mapping[float, float] = {}
    else:
        stages, rejected, failed = stats.stages, stats.rejected, stats.failed
        last, batch_sizes = stats.last_inference, stats.batch_sizes
    queue, pre, infer, post = (stages.get(stage, (0.0, 0.0)) for stage in ("queue_wait", "pre_process", "infer",
                                                                          "post_process"))
    if batched:
        batch_stats, previous = [], 0.0
        for bound in sorted(batch_sizes):  # cumulative bucket counts
            count = batch_sizes[bound] - previous
            previous = batch_sizes[bound]
            if count > 0:
                batch_stats.append({"batch_size": int(bound), "compute_infer": {"count": int(count), "ns": 0}})
    else:
        batch_stats = [] if infer[0] == 0 else [{
            "batch_size": 1,
            "compute_input": _duration(*pre),
            "compute_infer": _duration(*infer),
            "compute_output": _duration(*post),
        }]
    return {
        "name": name,
        "version": version,
        "last_inference": int(last * 1000),
        "inference_count": int(queue[0]),
        "execution_count": int(infer[0]),
        "inference_stats": {
            "success": _duration(post[0], queue[1] + pre[1] + infer[1] + post[1]),
            "fail": {"count": int(rejected + failed), "ns": 0},
            "queue": _duration(*queue),
            "compute_input": _duration(*pre),
            "compute_infer": _duration(*infer),
            "compute_output": _duration(*post),
            "cache_hit": dict(_ZERO),
            "cache_miss": dict(_ZERO),
        },
        "batch_stats": batch_stats,
    }


def statistics_document(
    models: Sequence[tuple[str, str | None, bool]], statistics: Mapping[tuple[str, str], Any]
) -> dict[str, Any]:
    """The ``{"model_stats": [...]}`` body for the given registrations.

    Args:
        models: ``(name, version, batched)`` of each registration to report, in order.
        statistics: Totals by ``(name, version or "")``, as :meth:`mest.observability.Metrics.statistics` gives.
    """
    return {
        "model_stats": [
            _model_entry(name, version or "", batched, statistics.get((name, version or "")))
            for name, version, batched in models
        ]
    }
