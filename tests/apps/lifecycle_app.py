"""An app for the signal tests: every request is recorded when it starts, and can be held until the test opens
a gate, so tests know exactly which requests the server accepted and can signal while they are in flight.

Environment:
    LIFECYCLE_DIR: a directory; each request appends its id to ``started.log`` there on entry. Requests to
        ``/held`` wait in ``infer`` while ``gate-closed`` exists there (at most 60 s); ``/quick`` has its own
        model queue, so it keeps answering meanwhile.
    The module reads ``generation.txt`` from LIFECYCLE_DIR when it is imported and reports it in every answer,
    so a test can see that workers re-imported the code (SIGHUP).
"""

import os
import time
from pathlib import Path

from mest import Mest
from mest.predictors import PredictorBase

DIR = Path(os.environ["LIFECYCLE_DIR"])
GENERATION = (DIR / "generation.txt").read_text().strip() if (DIR / "generation.txt").exists() else "1"


class Recorded(PredictorBase):
    """Records the request, then answers at once, or (``holds``) once the gate is open.

    Batch size 1: while one held request is in ``infer``, the others wait in the model's queue.
    """

    def __init__(self, holds):
        super().__init__()
        self.holds = holds

    def pre_process(self, input_data, req):
        # One write() per line to an O_APPEND file: lines of concurrent workers never interleave.
        fd = os.open(DIR / "started.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{input_data['id']}\n".encode())
        finally:
            os.close(fd)
        return input_data["id"]

    def infer(self, processed_data):
        deadline = time.monotonic() + 60
        while self.holds and (DIR / "gate-closed").exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # cooperative under gevent (monkey-patched)
        return processed_data

    def post_process(self, prediction, req):
        return {"id": prediction, "pid": os.getpid(), "generation": GENERATION}


app = Mest()
app.add_inference_handler(Recorded(holds=True), "/held", max_batch_size=1)
app.add_inference_handler(Recorded(holds=False), "/quick", max_batch_size=1)
