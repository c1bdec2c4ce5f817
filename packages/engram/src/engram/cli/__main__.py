"""``python -m engram.cli``."""

from ._app import main

main()
