"""The dependency direction of GUIDE.md, checked on the source: no module imports "upward", not even for type
checking or inside a function.

Each top-level part of the package has a layer; a module may import its own part and lower layers only, and
the providers of one layer (protocol, observability, openapi, health) do not import one another: they receive
what they need from the app. A new top-level module must be given a layer here, on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

LAYERS: dict[str, int] = {
    # records and primitives
    "api": 0, "errors": 0, "endpoints": 0, "tensors": 0, "config": 0, "_version": 0, "_hosting": 0,
    "_process": 0, "_connection": 0,
    # the user's contract and the codecs
    "predictors": 1, "models": 1, "codecs": 1, "security": 1, "streaming": 1, "settings": 1,
    # ready predictors and the queue
    "runtimes": 2, "batching": 2,
    "pipeline": 3,
    # endpoint providers
    "protocol": 4, "observability": 4, "openapi": 4, "_health": 4,
    "webframeworks": 5, "_wrap": 5, "_registration": 5,
    "app": 6,
    # what runs, deploys or tests an app
    "": 7, "__main__": 7, "repository": 7, "server": 7, "deploy": 7, "cli": 7, "cli_nginx": 7, "testing": 7,
    "_conformance": 7, "loadgen": 7,
    # app.run() starts it: a WSGI server for any app, which needs nothing above the providers
    "server.dev": 5,
}
PROVIDERS = {"protocol", "observability", "openapi", "_health"}


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _imports(path: Path) -> set[str]:
    """Every ``mest`` module (or name in one) imported anywhere in the file."""
    name, is_package = _module_name(path)
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "mest" or target.startswith("mest."):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "mest")
    return found


def _part(module: str) -> str:
    """The key of ``LAYERS`` a module belongs to: its longest listed prefix, else its top-level part."""
    parts = module.split(".")[1:]
    for end in range(len(parts), 1, -1):
        if ".".join(parts[:end]) in LAYERS:
            return ".".join(parts[:end])
    return parts[0] if parts else ""


FILES = sorted((SOURCE / "mest").rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SOURCE)))
def test_no_module_imports_upward(path: Path) -> None:
    module, _ = _module_name(path)
    own = _part(module)
    assert own in LAYERS, f"{module}: give its part {own!r} a layer in tests/test_layers.py"
    upward = []
    for target in sorted(_imports(path)):
        if target == "mest":  # ``from . import x``: each x is checked as mest.x
            continue
        part = _part(target)
        layer = LAYERS.get(part, LAYERS[""])  # not a part: a name from the package facade (mest.Mest)
        if part == own:
            continue
        if layer > LAYERS[own] or (own in PROVIDERS and part in PROVIDERS):
            upward.append(target)
    assert not upward, f"{module} imports upward or sideways: {upward}"


def test_every_part_has_a_layer() -> None:
    parts = {_part(_module_name(path)[0]) for path in FILES}
    assert parts <= set(LAYERS), sorted(parts - set(LAYERS))
