"""An app whose model ``setup`` waits while ``$SETUP_DIR/gate-closed`` exists (at most 60 s), after writing
``$SETUP_DIR/setup-started.<pid>``: a test can signal a server while its workers are provably still starting."""

import os
import time
from pathlib import Path

from mest import Mest
from mest.predictors import PredictorBase

DIR = Path(os.environ["SETUP_DIR"])


class SlowToStart(PredictorBase):
    def setup(self):
        (DIR / f"setup-started.{os.getpid()}").touch()
        deadline = time.monotonic() + 60
        while (DIR / "gate-closed").exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def infer(self, processed_data):
        return processed_data


app = Mest()
app.add_inference_handler(SlowToStart(), "/echo")
