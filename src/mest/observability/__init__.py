"""Metrics and logs around the pipeline, with zero configuration (docs/observability.md).

* ``GET /metrics``: Prometheus metrics, summed over gunicorn's worker processes.
* One access-log line per request on the ``mest.access`` logger, as text or JSON lines.

The app creates one :class:`Observability`; users meet :class:`JsonFormatter` and :class:`TextFormatter` when
they configure logging themselves.
"""

from ._endpoint import metrics_endpoint
from ._logging import (
    ACCESS_FIELDS,
    ACCESS_LOGGER,
    JsonFormatter,
    LogFormat,
    TextFormatter,
    configure_logging,
    safe_text,
)
from ._metrics import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS, STAGES, EndpointMetrics, Metrics, ModelMetrics
from ._multiprocess import MASTER_ENV
from ._observer import EndpointObserver, Observability
from ._repeats import RepeatFilter, fault_key
from ._request_ids import new_request_id
from ._stderr import StderrHandler

__all__ = [
    "ACCESS_FIELDS",
    "ACCESS_LOGGER",
    "BATCH_SIZE_BUCKETS",
    "LATENCY_BUCKETS",
    "MASTER_ENV",
    "STAGES",
    "EndpointMetrics",
    "EndpointObserver",
    "JsonFormatter",
    "LogFormat",
    "Metrics",
    "ModelMetrics",
    "Observability",
    "RepeatFilter",
    "StderrHandler",
    "TextFormatter",
    "configure_logging",
    "fault_key",
    "metrics_endpoint",
    "new_request_id",
    "safe_text",
]
