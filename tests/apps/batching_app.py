"""The app the batching server tests drive (gunicorn gthread/gevent and the dev server).

Every input names itself (``{"id": "..."}``) and every answer says which request it answers and which batch it
was part of, so the tests can prove nobody got another's result and that batches formed. Gates let a test
hold a request inside ``pre_process`` or ``infer`` until it releases it through ``/control``, which makes
queueing, batching, overload and timeouts deterministic without any timing assumption. A gate never holds
longer than ``GATE_LIMIT_S``, so nothing hangs if a test fails half-way.

Routes (all POST):
    /batched   max_batch_size=8, max_batch_delay_ms=50
    /patient   max_batch_size=8, max_batch_delay_ms=60000 (the leader waits for announced requests)
    /limited   max_batch_size=1, max_queue=2
    /timed     max_batch_size=4, timeout_s=1
    /short     max_batch_size=4, infer returns one result too few
    /control   {"op": "release", "gate": g} | {"op": "state", "route": r}
"""

from __future__ import annotations

import os
import threading
from typing import Any

from mest import Mest
from mest.errors import BadRequest
from mest.predictors import PredictorBase

GATE_LIMIT_S = 30.0

_lock = threading.Lock()
_gates: dict[str, threading.Event] = {}
_waiting: set[str] = set()
_seen: dict[str, list[str]] = {}
_batches: dict[str, list[list[str]]] = {}


def _gate(name: str) -> threading.Event:
    # Created on first use, in the serving process (after gunicorn forks and gevent patches threading).
    with _lock:
        if name not in _gates:
            _gates[name] = threading.Event()
        return _gates[name]


def _wait_gate(name: str) -> None:
    event = _gate(name)
    with _lock:
        _waiting.add(name)
    try:
        if not event.wait(GATE_LIMIT_S):
            raise RuntimeError(f"gate {name!r} was never released")
    finally:
        with _lock:
            _waiting.discard(name)


class Echo(PredictorBase):
    """Answers each input with its own id and the ids of the batch it was inferred in."""

    def __init__(self, route: str, *, batched: bool, short: bool = False) -> None:
        super().__init__()
        self.route = route
        self.batched = batched
        self.short = short

    def pre_process(self, input_data: Any, req: Any) -> Any:
        ident = input_data["id"]
        if not isinstance(ident, str):
            raise BadRequest("'id' must be a string")
        if input_data.get("pre_gate"):
            _wait_gate(input_data["pre_gate"])
        return {"id": ident, "gate": input_data.get("gate"), "fail": bool(input_data.get("fail"))}

    def infer(self, processed_data: Any) -> Any:
        items = processed_data if self.batched else [processed_data]
        ids = [it["id"] for it in items]
        with _lock:
            _seen.setdefault(self.route, []).extend(ids)
            _batches.setdefault(self.route, []).append(ids)
        for it in items:
            if it["gate"]:
                _wait_gate(it["gate"])
        if any(it["fail"] for it in items):
            raise RuntimeError("the model exploded on purpose")
        answers = [{"id": it["id"], "batch": ids} for it in items]
        if self.short:
            return answers[:-1]
        return answers if self.batched else answers[0]

    def post_process(self, prediction: Any, req: Any) -> Any:
        return {**prediction, "pid": os.getpid()}


app = Mest()
_routes = {
    "/batched": (Echo("/batched", batched=True), {"max_batch_size": 8, "max_batch_delay_ms": 50}),
    "/patient": (Echo("/patient", batched=True), {"max_batch_size": 8, "max_batch_delay_ms": 60_000}),
    "/limited": (Echo("/limited", batched=False), {"max_batch_size": 1, "max_queue": 2}),
    "/timed": (Echo("/timed", batched=True), {"max_batch_size": 4, "timeout_s": 1.0}),
    "/short": (Echo("/short", batched=True, short=True), {"max_batch_size": 4}),
}
for _route, (_predictor, _options) in _routes.items():
    app.add_inference_handler(_predictor, _route, **_options)


class Control(PredictorBase):
    """Releases gates and reports what a route's ``infer`` saw and its batcher's counters."""

    def infer(self, processed_data: Any) -> Any:
        op = processed_data["op"]
        if op == "release":
            _gate(processed_data["gate"]).set()
            return {"released": processed_data["gate"]}
        if op == "state":
            route = processed_data["route"]
            pipeline = next(p for p in app.pipelines if p.config.route == route)
            with _lock:
                seen = list(_seen.get(route, []))
                batches = [list(b) for b in _batches.get(route, [])]
                waiting = sorted(_waiting)
            return {
                "pid": os.getpid(),
                "seen": seen,
                "batches": batches,
                "waiting": waiting,
                "stats": vars(pipeline.batcher.stats()),
            }
        raise BadRequest(f"unknown op {op!r}")


app.add_inference_handler(Control(), "/control")

if __name__ == "__main__":
    app.run()
