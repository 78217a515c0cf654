"""The version of Mest: its one source (read by the package build, the CLI and the V2 server metadata)."""

__version__ = "0.1.0"
