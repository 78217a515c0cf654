"""Servers that run a Mest app: the development server (and, later, the production one behind ``mest serve``)."""
