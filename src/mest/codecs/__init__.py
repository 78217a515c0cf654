"""Bytes ⇄ Python: JSON (numpy-aware, via orjson) and rendering of response bodies."""
