"""A WSGI wrapper that times the app call and the model call in a real worker (bench/worker_breakdown.py).

``TIMED_TARGET`` names the app module (``mest_app`` or ``falcon_app``); at exit the worker prints one line,
``TIMED <target> n=<requests> app_us=<mean µs in the WSGI call> model_us=<mean µs in predict_proba>``.
"""

import atexit
import importlib
import os
import sys
import time

from sklearn.linear_model import LogisticRegression

_model = [0, 0.0]
_app = [0, 0.0]
_predict_proba = LogisticRegression.predict_proba


def _timed_predict_proba(self, X):
    started = time.perf_counter()
    try:
        return _predict_proba(self, X)
    finally:
        _model[0] += 1
        _model[1] += time.perf_counter() - started


LogisticRegression.predict_proba = _timed_predict_proba
_target = os.environ["TIMED_TARGET"]
_inner = importlib.import_module(_target).app


def app(environ, start_response):
    started = time.perf_counter()
    try:
        return _inner(environ, start_response)
    finally:
        _app[0] += 1
        _app[1] += time.perf_counter() - started


@atexit.register
def _report():
    if _app[0]:
        print(f"TIMED {_target} n={_app[0]} app_us={_app[1] / _app[0] * 1e6:.1f} "
              f"model_us={_model[1] / max(_model[0], 1) * 1e6:.1f}", file=sys.stderr, flush=True)
