"""Build hook: ship the demo conversation (canonical copy in the repository's ``examples/``) in the
wheel as ``engram/cli/_data/demo_conversation.json``.

It is a hook rather than a static ``force-include`` because a wheel built from the sdist has no
``../../examples``: there the file already sits in ``src/engram/cli/_data/`` (the sdist got it
from this hook) and nothing needs forcing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

DEMO = "demo_conversation.json"


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":  # a source checkout reads examples/ directly
            return
        source = Path(self.root, "..", "..", "examples", DEMO).resolve()
        if not source.is_file():
            return
        if self.target_name == "sdist":
            build_data["force_include"][str(source)] = f"src/engram/cli/_data/{DEMO}"
        else:
            build_data["force_include"][str(source)] = f"engram/cli/_data/{DEMO}"
