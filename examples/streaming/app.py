"""A streaming predictor: ``POST /count`` with ``{"n": N, "delay_ms": D}`` streams N events, one every D ms.

Run it with ``python examples/streaming/app.py`` (or ``mest serve examples/streaming/app.py``, or
``gunicorn -k gevent --chdir examples/streaming app:app``) and watch the events arrive one by one::

    curl -N -X POST localhost:5000/count -H 'Content-Type: application/json' -d '{"n": 5, "delay_ms": 200}'

``post_process`` returns a generator: Mest sends each item as it is yielded, as Server-Sent Events, or as
NDJSON for a client that sends ``Accept: application/x-ndjson``. See docs/streaming.md.
"""

import logging
import time

from mest import Mest
from mest.predictors import PredictorBase

logger = logging.getLogger("count")

MAX_N = 100_000
MAX_DELAY_MS = 10_000


class Count(PredictorBase):
    """Counts to ``n``; ``infer`` runs through the model queue once, the generator outside it."""

    example = {"n": 3, "delay_ms": 0}

    def pre_process(self, input_data, req):
        n, delay_ms = int(input_data["n"]), float(input_data.get("delay_ms", 0))
        if not 0 <= n <= MAX_N or not 0 <= delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"n must be in [0, {MAX_N}] and delay_ms in [0, {MAX_DELAY_MS}]")
        return n, delay_ms / 1000.0

    def infer(self, processed_data):
        return processed_data

    def post_process(self, prediction, req):
        n, delay_s = prediction

        def events():
            sent = 0
            try:
                for i in range(n):
                    if i and delay_s:
                        time.sleep(delay_s)  # cooperative under gevent (gunicorn patches time.sleep)
                    yield {"i": i, "of": n}
                    sent += 1
            finally:  # runs when the stream ends, and when the client goes away mid-stream
                logger.info("count stream over after %d of %d [request_id=%s]", sent, n, req.request_id)

        return events()


app = Mest()
app.add_inference_handler(Count(), "/count")

if __name__ == "__main__":
    app.run()
