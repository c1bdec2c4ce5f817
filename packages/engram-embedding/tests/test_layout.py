"""PEP 420: ``engram`` and ``engram.embedding`` are namespace folders shared with other distributions."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def test_no_init_in_namespace_folders():
    assert not (SRC / "engram" / "__init__.py").exists()
    assert not (SRC / "engram" / "embedding" / "__init__.py").exists()


def test_each_provider_is_a_typed_package():
    for name in ("hash", "local", "openai"):
        pkg = SRC / "engram" / "embedding" / name
        assert (pkg / "__init__.py").is_file() and (pkg / "py.typed").is_file(), name
