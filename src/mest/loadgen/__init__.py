"""The load generator behind ``mest bench`` and ``bench/``: a closed loop over raw sockets, one thread, no
dependencies (docs/loadgen.md). Plots need matplotlib: ``pip install 'mest[bench]'``. Not part of serving: the
app, the pipeline and the servers never import it."""

from ._engine import Checker, LoadError, LoadResult, Progress, run_load

__all__ = ["Checker", "LoadError", "LoadResult", "Progress", "run_load"]
