"""The app the Ray Serve tests deploy: every answer says which process and network namespace served it.

Routes (all POST):
    /where    answers at once
    /batched  max_batch_size=8, max_batch_delay_ms=1000: a batch closes when 8 requests are in it (or after
              1 s), so under 32 concurrent clients batches fill whatever the machine's speed
    /slow     takes 0.3 s, for the autoscaling test's load
"""

from __future__ import annotations

import os
import time
from typing import Any

from mest import Mest
from mest.predictors import PredictorBase


def _where() -> dict[str, Any]:
    # The network namespace tells the nodes apart: the second Ray node runs in its own namespace.
    return {"pid": os.getpid(), "netns": os.readlink("/proc/self/ns/net")}


class Where(PredictorBase):
    def infer(self, processed_data: Any) -> Any:
        return {"id": processed_data.get("id"), **_where()}


class Batched(PredictorBase):
    def infer(self, processed_data: Any) -> Any:
        return [{"id": item.get("id"), "batch": len(processed_data), **_where()} for item in processed_data]


class Slow(PredictorBase):
    def infer(self, processed_data: Any) -> Any:
        time.sleep(0.3)
        return _where()


app = Mest()
app.add_inference_handler(Where(), "/where")
app.add_inference_handler(Batched(), "/batched", max_batch_size=8, max_batch_delay_ms=1000)
app.add_inference_handler(Slow(), "/slow")
