"""The `engram` distribution's extras, the first-party plugins in `plugins/` and the registry's
FIRST_PARTY_EXTRAS table stay in step: every extra names an existing plugin, every plugin has its
extra, and the provider names the registry promises are the entry points the plugins declare."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from engram.core import Registry
from engram.core._registry import FIRST_PARTY_EXTRAS, KINDS

ROOT = Path(__file__).resolve().parents[3]
ENGRAM = tomllib.loads((ROOT / "packages" / "engram" / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = ENGRAM["project"]["optional-dependencies"]
PLUGINS = {
    p.name: tomllib.loads((p / "pyproject.toml").read_text())
    for p in sorted((ROOT / "plugins").glob("engram-*"))
    if (p / "pyproject.toml").is_file()
}
# Extras that install something other than one plugin: the REST/MCP servers (engram-server), OTLP
# export (engram-telemetry[otlp]), and everything.
NON_PLUGIN_EXTRAS = {"server", "otlp", "all"}
GROUP_KIND = {k.group: key for key, k in KINDS.items()}


def _dist(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def test_the_extras_the_design_promises() -> None:
    assert set(EXTRAS) == {"qdrant", "chroma", "kuzu", "neo4j", "cohere", "fastembed", "server", "otlp", "all"}


@pytest.mark.parametrize("extra", sorted(set(EXTRAS) - NON_PLUGIN_EXTRAS))
def test_every_plugin_extra_names_an_existing_plugin(extra: str) -> None:
    (req,) = EXTRAS[extra]
    dist = _dist(req)
    assert dist in PLUGINS, f"engram[{extra}] installs {dist!r}, which is not a folder under plugins/"
    assert dist.rsplit("-", 1)[1] == extra, f"one name everywhere: engram[{extra}] -> {dist}"
    assert PLUGINS[dist]["project"]["name"] == dist


def test_every_plugin_has_an_extra() -> None:
    named = {_dist(r) for e in set(EXTRAS) - NON_PLUGIN_EXTRAS for r in EXTRAS[e]}
    assert set(PLUGINS) - named == set(), "plugins without an engram[...] extra"


def test_all_is_every_other_extra() -> None:
    (req,) = EXTRAS["all"]
    listed = set(re.fullmatch(r"engram\[([\w,]+)\]", req).group(1).split(","))  # type: ignore[union-attr]
    assert listed == set(EXTRAS) - {"all"}


PACKAGES = {
    p.name: tomllib.loads((p / "pyproject.toml").read_text())
    for p in sorted((ROOT / "packages").glob("engram-*"))
    if (p / "pyproject.toml").is_file()
}


def test_server_and_otlp_extras_install_their_packages() -> None:
    """engram[server] is the engram-server package (FastAPI, uvicorn, the MCP SDK); engram[otlp] is
    engram-telemetry's own otlp extra (the OpenTelemetry SDK and both OTLP exporters)."""
    assert EXTRAS["server"] == ["engram-server"]
    assert {_dist(r) for r in PACKAGES["engram-server"]["project"]["dependencies"]} >= {"fastapi", "uvicorn", "mcp"}
    assert EXTRAS["otlp"] == ["engram-telemetry[otlp]"]
    telemetry = PACKAGES["engram-telemetry"]["project"]
    assert {_dist(r) for r in telemetry["optional-dependencies"]["otlp"]} >= {
        "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http", "opentelemetry-exporter-otlp-proto-grpc",
    }
    # the library itself needs the API only: without the extra every span and metric is a no-op
    assert [_dist(r) for r in telemetry["dependencies"]] == ["opentelemetry-api"]


def _entry_points(dist: str) -> set[tuple[str, str]]:
    eps = PLUGINS[dist]["project"].get("entry-points", {})
    return {(GROUP_KIND[group], name) for group, names in eps.items() if group in GROUP_KIND for name in names}


def test_registry_table_matches_the_plugins() -> None:
    """FIRST_PARTY_EXTRAS (what the "not installed" error tells users to install) lists exactly the
    providers the first-party plugins declare, each with its plugin's extra."""
    declared = {}
    for extra in set(EXTRAS) - NON_PLUGIN_EXTRAS:
        for kind_name in _entry_points(_dist(EXTRAS[extra][0])):
            declared[kind_name] = extra
    assert declared == FIRST_PARTY_EXTRAS


@pytest.mark.parametrize(("kind", "name"), sorted(FIRST_PARTY_EXTRAS))
def test_each_plugin_is_found_by_name_in_the_dev_environment(kind: str, name: str) -> None:
    """The dev environment installs engram[all]: every first-party provider loads through its
    entry point and is a provider of its kind (the registry checks the protocol on load)."""
    cls = Registry().load(kind, name)
    assert isinstance(cls, type)
