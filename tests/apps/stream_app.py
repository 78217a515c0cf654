"""The app the streaming tests serve on every server: one route per streaming behaviour under test.

Routes:
    POST /count    ``{"n", "delay_ms"}`` streams ``{"i", "of"}`` items (examples/streaming's predictor); its
                   generator's ``finally`` writes ``<request id> <items sent>`` to ``$STREAM_MARKS/<id>``.
    POST /fail     ``{"after": K}``: K items, then a RuntimeError (K = 0: before the first item).
    POST /lines    ``stream_format = "ndjson"``, str items.
    POST /plain    an ordinary JSON answer, to show the queue serves others while streams run.

``MEST_STREAM_TIME_LIMIT_S`` sets the stream time limit (a Mest setting from the environment).
"""

import os
import time
from pathlib import Path

from mest import Mest
from mest.predictors import PredictorBase

MARKS = os.environ.get("STREAM_MARKS")


class Count(PredictorBase):
    def pre_process(self, input_data, req):
        return int(input_data["n"]), float(input_data.get("delay_ms", 0)) / 1000.0

    def infer(self, processed_data):
        return processed_data

    def post_process(self, prediction, req):
        n, delay_s = prediction

        def events():
            sent = 0
            try:
                for i in range(n):
                    if i and delay_s:
                        time.sleep(delay_s)
                    yield {"i": i, "of": n}
                    sent += 1
            finally:
                if MARKS:
                    Path(MARKS, req.request_id).write_text(f"{req.request_id} {sent}")

        return events()


class Fail(PredictorBase):
    def infer(self, processed_data):
        return int(processed_data["after"])

    def post_process(self, after, req):
        def events():
            yield from range(after)
            raise RuntimeError("/secret/weights/model.bin exploded")

        return events()


class Lines(PredictorBase):
    stream_format = "ndjson"

    def infer(self, processed_data):
        return processed_data["words"]

    def post_process(self, words, req):
        return iter(words)


class Plain(PredictorBase):
    def infer(self, processed_data):
        return {"ok": True}


app = Mest()
app.add_inference_handler(Count(), "/count")
app.add_inference_handler(Fail(), "/fail")
app.add_inference_handler(Lines(), "/lines")
app.add_inference_handler(Plain(), "/plain")

if __name__ == "__main__":
    app.run()
