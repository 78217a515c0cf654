"""Mest: ML models on REST."""

from .api import Request, Response
from .app import Mest
from .models import BaseModel
from .predictors import BasePredictor, PredictorBase

__all__ = ["BaseModel", "BasePredictor", "Mest", "PredictorBase", "Request", "Response"]
__version__ = "0.1.0"
