"""The PEP 420 layout (DESIGN §1): ``engram`` and the kind folders stay namespace packages.

No ``__init__.py`` may exist in ``src/engram/`` of any package or plugin, nor in a kind folder that
several distributions share (``engram/vector/``, ``engram/graph/``, ...): one stray file there
would shadow every other distribution's providers. Every leaf package is a regular package with an
``__init__.py`` and ships ``py.typed``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Folders under ``engram/`` shared by many distributions: namespace packages, never ``__init__.py``.
KIND_FOLDERS = frozenset({"vector", "graph", "history", "embedding", "llm", "reranker"})


def _namespace_roots() -> list[Path]:
    roots = sorted(ROOT.glob("packages/*/src/engram")) + sorted(ROOT.glob("plugins/*/src/engram"))
    return [r for r in roots if r.is_dir()]


def _dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and p.name != "__pycache__" and not p.name.startswith("."))


def _leaf_packages() -> list[Path]:
    leaves = []
    for root in _namespace_roots():
        for top in _dirs(root):
            leaves.extend(_dirs(top) if top.name in KIND_FOLDERS else [top])
    return leaves


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def test_layout_found() -> None:
    roots = _namespace_roots()
    assert len(roots) >= 5, roots
    names = {p.name for p in _leaf_packages()}
    assert {"core", "testing", "memory", "sqlite", "hash"} <= names


def test_no_init_in_engram_namespace() -> None:
    bad = [_rel(r / "__init__.py") for r in _namespace_roots() if (r / "__init__.py").exists()]
    assert not bad, f"remove these: `engram` is a PEP 420 namespace package: {bad}"


def test_no_init_in_kind_folders() -> None:
    bad = [
        _rel(kind / "__init__.py")
        for root in _namespace_roots()
        for kind in _dirs(root)
        if kind.name in KIND_FOLDERS and (kind / "__init__.py").exists()
    ]
    assert not bad, f"remove these: kind folders are shared namespace packages: {bad}"


@pytest.mark.parametrize("leaf", _leaf_packages(), ids=_rel)
def test_leaf_is_a_regular_typed_package(leaf: Path) -> None:
    assert (leaf / "__init__.py").is_file(), f"{_rel(leaf)} needs an __init__.py (a public API with __all__)"
    assert (leaf / "py.typed").is_file(), f"{_rel(leaf)} needs a py.typed marker (PEP 561)"


def test_engram_imports_as_a_namespace() -> None:
    import engram
    import engram.vector

    assert getattr(engram, "__file__", None) is None, "engram resolved to a regular package"
    assert len(list(engram.__path__)) >= 5, list(engram.__path__)
    assert getattr(engram.vector, "__file__", None) is None
