"""Web-framework adapters. ``WebFramework`` is the interface; falcon is the default implementation."""

from .base import Responder, WebFramework, WSGIApplication

__all__ = ["Responder", "WSGIApplication", "WebFramework"]
