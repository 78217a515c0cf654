"""Mest: ML models on REST."""

from ._version import __version__ as __version__
from .api import Request, Response
from .app import Mest
from .models import BaseModel
from .predictors import BasePredictor, PredictorBase

__all__ = ["BaseModel", "BasePredictor", "Mest", "PredictorBase", "Request", "Response"]
