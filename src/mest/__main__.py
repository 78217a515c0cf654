"""``python -m mest``: the ``mest`` command, for when the console script is not on ``PATH``."""

from .cli import main

main(prog_name="mest")
