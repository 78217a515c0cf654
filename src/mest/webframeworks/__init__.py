"""Web-framework adapters. ``WebFramework`` is the interface; falcon is the default implementation."""

from .base import Handler, WebFramework, WSGIApplication

__all__ = ["Handler", "WSGIApplication", "WebFramework"]
