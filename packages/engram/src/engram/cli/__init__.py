"""engram.cli: the ``engram`` command line (typer + rich) over :class:`engram.core.AsyncMemory`.

``engram --help`` lists the commands; ``docs/cli.md`` describes each one.
"""

from ._app import app, main

__all__ = ["app", "main"]
