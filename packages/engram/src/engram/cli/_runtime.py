"""What every command shares: options, configuration, opening the memory, output and errors."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import anyio
import typer
from engram.core import AsyncMemory, MemoryConfig, Scope
from engram.core.errors import ConfigurationError, EngramError
from rich.console import Console

__all__ = [
    "AgentOpt",
    "ConfigOpt",
    "DbOpt",
    "EmbedderOpt",
    "JsonOpt",
    "LlmModelOpt",
    "LlmOpt",
    "Options",
    "OtlpEndpointOpt",
    "OtlpProtocolOpt",
    "RunOpt",
    "UserOpt",
    "console",
    "err_console",
    "fail",
    "handle_errors",
    "print_json",
]

P = ParamSpec("P")
T = TypeVar("T")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

UserOpt = Annotated[
    str | None, typer.Option("--user-id", "-u", help="Scope: the user the memories belong to.")
]
AgentOpt = Annotated[str | None, typer.Option("--agent-id", help="Scope: the agent.")]
RunOpt = Annotated[str | None, typer.Option("--run-id", help="Scope: the run or session.")]
DbOpt = Annotated[
    Path | None,
    typer.Option(
        "--db",
        envvar="ENGRAM_DB",
        dir_okay=False,
        help="SQLite database file (default: engram.db in your user data directory).",
        show_default=False,
    ),
]
EmbedderOpt = Annotated[
    str | None,
    typer.Option(
        "--embedder",
        help="Embedder name or URL: local, hash, openai, ... (default: from the configuration, else local).",
    ),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", dir_okay=False, help="An engram.toml configuration file.")
]
LlmOpt = Annotated[
    str | None,
    typer.Option(
        "--llm",
        help="The LLM that extracts facts: a provider name (openai, anthropic, scripted), a provider URL "
        "(openai://host/v1?model=...&tls=false) or an OpenAI-compatible base URL (http://localhost:11434/v1). "
        "Default: from the configuration (ENGRAM_LLM__*), else none (memories stored verbatim).",
        show_default=False,
    ),
]
LlmModelOpt = Annotated[
    str | None,
    typer.Option("--llm-model", help="The model the LLM provider asks for (its config's model).", show_default=False),
]
OtlpEndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--otlp-endpoint",
        help="Export traces and metrics over OTLP to this collector's base URL, e.g. http://127.0.0.1:4318 "
        "(HTTP) or http://127.0.0.1:4317 with --otlp-protocol grpc. Without it, the standard "
        "OTEL_EXPORTER_OTLP_* variables turn export on. Needs: pip install \"engram\\[otlp]\".",
        show_default=False,
    ),
]
OtlpProtocolOpt = Annotated[
    str | None,
    typer.Option(
        "--otlp-protocol",
        help="http/protobuf or grpc (default: OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf).",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print JSON on stdout (and nothing else), for scripts.")
]


class CliError(Exception):
    """A problem with the command line's input that is not an engram error (bad JSON in --filter, ...)."""


def fail(message: str) -> CliError:
    return CliError(message)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return "; ".join(lines) if lines else "unknown error"


def _report(exc: BaseException) -> None:
    err_console.print(f"[bold red]error:[/] [red]{_escape(_one_line(str(exc)))}[/]", soft_wrap=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def handle_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Run a command; an :class:`EngramError` (or a bad input file) prints one red line and exits 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/]")
            raise typer.Exit(130) from None
        except BaseException as exc:
            leaves = _leaves(exc)
            known = [
                e for e in leaves if isinstance(e, EngramError | CliError | OSError | UnicodeDecodeError)
            ]
            if not known or len(known) != len(leaves):
                raise
            _report(known[0])
            raise typer.Exit(2) from None

    return wrapper


def print_json(data: Any) -> None:
    """Clean JSON on stdout: no colour, no wrapping, one document."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def parse_json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise fail(f"{name} is not valid JSON: {exc}") from None


def parse_metadata(values: list[str] | None) -> dict[str, Any] | None:
    """``-m key=value`` pairs (values read as JSON when they parse) or ``-m '{"k": "v"}'`` objects."""
    if not values:
        return None
    out: dict[str, Any] = {}
    for raw in values:
        text = raw.strip()
        if text.startswith("{"):
            obj = parse_json_option(text, "--metadata")
            if not isinstance(obj, Mapping):
                raise fail("--metadata JSON must be an object")
            out.update(obj)
            continue
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise fail(f"--metadata expects key=value or a JSON object, got {raw!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


@dataclass
class Options:
    """The options every command takes."""

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    db: Path | None = None
    embedder: str | None = None
    config: Path | None = None
    json: bool = False
    llm: str | None = None
    llm_model: str | None = None
    graph_default: str | None = None  # the graph store to use when the configuration names none

    def scope(self) -> Scope | None:
        """The scope given, or ``None`` when no id was."""
        if self.user_id is None and self.agent_id is None and self.run_id is None:
            return None
        return Scope(self.user_id, self.agent_id, self.run_id)

    def require_scope(self) -> Scope:
        scope = self.scope()
        if scope is None:
            raise fail("this command needs a scope: --user-id/-u, --agent-id or --run-id")
        return scope

    def scope_kwargs(self) -> dict[str, str | None]:
        return {"user_id": self.user_id, "agent_id": self.agent_id, "run_id": self.run_id}

    def build(self) -> tuple[MemoryConfig, Path | None]:
        """The configuration (engram.toml, then ``ENGRAM_*``, then the flags) and the SQLite file, if any.

        Raises:
            ConfigurationError: an unreadable or invalid configuration.
        """
        environ = dict(os.environ)
        base = None
        if self.config is not None:
            environ.pop("ENGRAM_CONFIG", None)  # the flag wins over the variable
            base = MemoryConfig.from_toml(self.config)
        cfg = MemoryConfig.from_env(environ, base=base)
        data = cfg.model_dump(exclude_defaults=True)
        vs = cfg.vector_store
        db_path: Path | None = None
        if self.db is not None:
            db_path = _absolute(self.db)
            conf: dict[str, Any] = {}
            if isinstance(vs, Mapping) and vs.get("provider") == "sqlite":
                conf = dict(vs.get("config") or {})
            conf["path"] = str(db_path)
            data["vector_store"] = {"provider": "sqlite", "config": conf}
        else:
            db_path = _sqlite_path(vs)
            if vs == "sqlite" and db_path is not None:
                data["vector_store"] = {"provider": "sqlite", "config": {"path": str(db_path)}}
        if self.embedder is not None:
            if not self.embedder.strip():
                raise ConfigurationError("--embedder cannot be empty")
            data["embedder"] = self.embedder
        if self.llm is not None or self.llm_model is not None:
            data["llm"] = llm_spec(self.llm, self.llm_model, data.get("llm"))
        if self.graph_default is not None and cfg.graph_store is None:
            data["graph_store"] = self.graph_default
        if db_path is not None and str(db_path) != ":memory:":
            db_path.parent.mkdir(parents=True, exist_ok=True)
        return MemoryConfig.parse(data), db_path

    def run(self, fn: Callable[[AsyncMemory], Awaitable[T]]) -> T:
        """Open the memory, run ``fn`` with it on a fresh event loop, close it."""
        cfg, _ = self.build()

        async def main() -> T:
            async with AsyncMemory(cfg) as mem:
                return await fn(mem)

        return anyio.run(main)


def llm_spec(flag: str | None, model: str | None, configured: Any) -> Any:
    """The ``llm`` config field for ``--llm`` / ``--llm-model`` over what the configuration has.

    ``--llm`` is a provider name, a provider URL (``openai://...``), or an ``http(s)://`` base URL of
    an OpenAI-compatible server; ``--llm-model`` sets the provider config's ``model``.

    Raises:
        ConfigurationError: an empty ``--llm``, or ``--llm-model`` with no LLM to apply it to.
    """
    spec: Any = configured
    if flag is not None:
        flag = flag.strip()
        if not flag:
            raise ConfigurationError("--llm cannot be empty")
        if flag.startswith(("http://", "https://")):
            spec = {"provider": "openai", "config": {"base_url": flag}}
        else:
            spec = flag
    if model is None:
        return spec
    if not model.strip():
        raise ConfigurationError("--llm-model cannot be empty")
    if spec is None:
        raise ConfigurationError("--llm-model needs an LLM: give --llm too (or ENGRAM_LLM__PROVIDER)")
    if isinstance(spec, str):
        if "://" in spec:
            sep = "&" if "?" in spec else "?"
            return f"{spec}{sep}model={model}"
        spec = {"provider": spec}
    if isinstance(spec, Mapping):
        return {**spec, "config": {**dict(spec.get("config") or {}), "model": model}}
    raise ConfigurationError("--llm-model cannot be applied to an LLM instance")


def _absolute(path: Path) -> Path:
    if str(path) == ":memory:":
        return path
    return path.expanduser().resolve()


def _sqlite_path(spec: Any) -> Path | None:
    """The file a SQLite vector-store spec points to, or ``None`` for another store."""
    from engram.history.sqlite import default_db_path, path_from_url

    if isinstance(spec, str):
        if spec == "sqlite":
            return _absolute(default_db_path())
        if spec.startswith("sqlite://"):
            return _absolute(Path(path_from_url(spec)))
        return None
    if isinstance(spec, Mapping) and spec.get("provider") == "sqlite":
        path = (spec.get("config") or {}).get("path")
        return _absolute(Path(path)) if path else _absolute(default_db_path())
    return None
