"""Model artifacts and how to load them, so a predictor can be handed a model instead of loading it itself.

Loading happens in :meth:`BaseModel.load`, which Mest calls from the predictor's ``setup()`` once per worker
process, after gunicorn forks: heavy weights are never loaded in the master nor shared across a fork.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any

__all__ = ["BaseModel", "JoblibModel"]


class BaseModel(ABC):
    """The artifacts a predictor needs and the recipe to load them.

    Subclass it for your own format and implement :meth:`load`; pass an instance to your predictor's
    constructor (``MyPredictor(JoblibModel("models/lr.pkl"))``). After ``setup()`` the loaded object is the
    predictor's ``self.model``.
    """

    @abstractmethod
    def load(self) -> Any:
        """Load the artifacts and return the object ``infer`` will use (an estimator, a session, ...)."""
        raise NotImplementedError("BaseModel.load")


class JoblibModel(BaseModel):
    """A model saved with ``joblib.dump`` (scikit-learn estimators, pipelines, ...).

    Args:
        path: Path of the saved file; relative paths are resolved against the working directory at load time.
        mmap_mode: Passed to ``joblib.load`` (``"r"`` shares large numpy arrays between workers via the page
            cache instead of copying them into each process).

    Warning:
        joblib files are pickles, and loading a pickle runs whatever code its author put in it (in ``mest
        check``, at ``mest serve`` start-up and in every worker). Load only files you produced; prefer ONNX
        or skops files and the built-in runtimes (:mod:`mest.runtimes`), which refuse pickles unless allowed.
    """

    def __init__(self, path: str | os.PathLike[str], *, mmap_mode: str | None = None) -> None:
        self.path = os.fspath(path)
        self.mmap_mode = mmap_mode

    def load(self) -> Any:
        try:
            import joblib
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("JoblibModel needs joblib: pip install 'mest[examples]' or pip install joblib") from exc
        return joblib.load(self.path, mmap_mode=self.mmap_mode)

    def __repr__(self) -> str:
        return f"JoblibModel({self.path!r})"
