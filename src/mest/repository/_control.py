"""Model control: which repository models are loaded in this worker, and the V2 repository extension.

The extension (Triton's shapes, which tritonclient's ``get_model_repository_index``, ``load_model`` and
``unload_model`` call)::

    POST /v2/repository/index                  [{"name", "version", "state": "READY"|"UNAVAILABLE", "reason"}]
    POST /v2/repository/models/NAME/load       load (or reload from its files) every served version of NAME
    POST /v2/repository/models/NAME/unload     unload NAME: its routes and V2 endpoints answer 404

A load runs in the worker that receives it (a model that fails to load answers 400 and changes nothing),
then is recorded in the :class:`~._state.SharedState`; every other worker sees it on its next request to
that model (:meth:`Controller.gate`, run before every request) and loads or releases its own copy then.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..api import Request, Response
from ..codecs import json
from ..errors import BadRequest, NotFound, ServiceUnavailable
from ..pipeline import read_body
from ..runtimes import RuntimePredictor
from ._state import ModelState, SharedState

__all__ = ["Controller", "Served"]

logger = logging.getLogger("mest.repository")

Endpoint = tuple[str, str, Callable[[Request], Response]]


@dataclass(frozen=True)
class Served:
    """One registered version of a repository model."""

    name: str
    version: str
    route: str
    predictor: RuntimePredictor


class Controller:
    """Keeps this worker's copies of the repository models in the state every worker shares.

    Args:
        served: Every registered version.
        state: The shared wanted state.
    """

    def __init__(self, served: Sequence[Served], state: SharedState) -> None:
        self._versions: dict[str, list[Served]] = {}
        for item in served:
            self._versions.setdefault(item.name, []).append(item)
        self._route_names = {item.route: item.name for item in served}
        self._state = state
        self._generation = dict.fromkeys(self._versions, 0)  # what this worker holds
        self._released: set[str] = set()
        self._lock = threading.Lock()

    # -- per request -----------------------------------------------------------------------------------

    def _model_of(self, path: str) -> str | None:
        if path.startswith("/v2/models/"):
            name = path[len("/v2/models/"):].split("/", 1)[0]
            return name if name in self._versions else None
        return self._route_names.get(path)

    def gate(self, req: Request) -> None:
        """Before a request to a repository model: 404 if it is unloaded, else bring this worker up to date.

        Raises:
            NotFound: The model is unloaded.
            ServiceUnavailable: This worker could not load it.
        """
        name = self._model_of(req.path)
        if name is None:
            return
        wanted = self._state.get(name)
        if not wanted.loaded:
            if name not in self._released:
                self._release(name)
            raise NotFound(f"Model {name!r} is not loaded; POST /v2/repository/models/{name}/load loads it.")
        if name in self._released or self._generation[name] != wanted.generation:
            try:
                self._load(name, wanted.generation)
            except Exception as exc:
                raise ServiceUnavailable(f"Model {name!r} failed to load in this worker: {exc}") from exc

    def _load(self, name: str, generation: int) -> None:
        with self._lock:
            if name not in self._released and self._generation[name] == generation:
                return  # another request of this worker did it meanwhile
            for item in self._versions[name]:
                item.predictor.load()
            self._generation[name] = generation
            self._released.discard(name)
        logger.info("model %r loaded in this worker (generation %d)", name, generation)

    def _release(self, name: str) -> None:
        with self._lock:
            for item in self._versions[name]:
                item.predictor.release()
            self._released.add(name)
        logger.info("model %r unloaded in this worker", name)

    # -- the extension ---------------------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        """The V2 repository extension's endpoints."""
        return [
            ("POST", "/v2/repository/index", self.index),
            *(("POST", f"/v2/repository/models/{name}/load", self._action(name, self.load)) for name in self._versions),
            *(("POST", f"/v2/repository/models/{name}/unload", self._action(name, self.unload))
              for name in self._versions),
        ]

    @staticmethod
    def _action(name: str, action: Callable[[str, Request], Response]) -> Callable[[Request], Response]:
        def endpoint(req: Request) -> Response:
            return action(name, req)

        return endpoint

    def index(self, req: Request) -> Response:
        ready_only = bool(_body(req).get("ready", False))
        rows = []
        for name, versions in self._versions.items():
            loaded = self._state.get(name).loaded
            if ready_only and not loaded:
                continue
            for item in versions:
                rows.append({"name": name, "version": item.version, "state": "READY" if loaded else "UNAVAILABLE",
                             "reason": "" if loaded else "unloaded"})
        return Response(rows)

    def load(self, name: str, req: Request) -> Response:
        parameters = _body(req).get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadRequest("'parameters' must be a JSON object.")
        unsupported = sorted(k for k in parameters if k == "config" or k.startswith("file:"))
        if unsupported:
            raise BadRequest(f"Load parameter {unsupported[0]!r} is not supported: the model's files are read "
                             "from the repository.")
        generation = self._state.get(name).generation + 1
        try:
            with self._lock:
                for item in self._versions[name]:
                    item.predictor.load()
                self._generation[name] = generation
                self._released.discard(name)
        except Exception as exc:
            logger.warning("loading model %r failed: %s", name, exc)
            raise BadRequest(f"Failed to load model {name!r}: {type(exc).__name__}: {exc}") from exc
        self._state.set(name, ModelState(loaded=True, generation=generation))
        logger.info("model %r loaded (generation %d)", name, generation)
        return Response({})

    def unload(self, name: str, req: Request) -> Response:
        _body(req)
        self._state.set(name, ModelState(loaded=False, generation=self._state.get(name).generation))
        self._release(name)
        return Response({})


def _body(req: Request) -> dict[str, object]:
    raw = read_body(req)
    if not raw.strip():
        return {}
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise BadRequest("The request body must be a JSON object.")
    return doc
