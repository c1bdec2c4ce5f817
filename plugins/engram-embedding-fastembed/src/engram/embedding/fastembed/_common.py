"""What the fastembed embedder and reranker share: fastembed's model lists and custom-model
registration, the model folder check, URL parsing, input checks, length-sorted batches, and lazy
loading in a worker thread."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

import anyio.to_thread
import numpy as np
from engram.core.errors import ConfigurationError, EngramError, InvalidInputError, ProviderError
from pydantic import BaseModel, ConfigDict, Field, field_validator

PROVIDER = "fastembed"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
"""Files fastembed's tokenizer loader requires beside the ONNX file (``config.json`` and
``special_tokens_map.json`` are read too when present)."""
CUSTOM_PREFIX = "engram-custom/"
"""Names under which engram registers model folders of the user's own with fastembed."""

# fastembed keeps its custom models in class attributes, i.e. per process; registering is
# check-then-append, so one process-wide lock makes it atomic.
_REGISTER_LOCK = threading.Lock()


def describe(listing: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The entry of ``name`` in a fastembed ``list_supported_models()`` listing (case-insensitive,
    as fastembed matches names), else ``None``."""
    low = name.lower()
    return next((d for d in listing if str(d["model"]).lower() == low), None)


def unknown_model(label: str, name: str, listing: list[dict[str, Any]], where: str) -> ConfigurationError:
    """The error for a model name fastembed does not know, with the closest known names."""
    names = [str(d["model"]) for d in listing if not str(d["model"]).startswith(CUSTOM_PREFIX)]
    by_low = {n.lower(): n for n in names}
    close = [by_low[c] for c in difflib.get_close_matches(name.lower(), list(by_low), n=3, cutoff=0.6)]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigurationError(
        f"fastembed {fastembed_version()} has no {label} model {name!r}.{hint} "
        f"The names it knows are listed by {where}; for a model of your own, point model_path at its folder."
    )


def fastembed_version() -> str:
    import fastembed

    return str(getattr(fastembed, "__version__", "?"))


def custom_name(kind: str, settings: dict[str, Any]) -> str:
    """A fastembed model name for a model of the user's own, derived from its settings: equal
    settings share one registration, different ones never clash."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return f"{CUSTOM_PREFIX}{kind}-{digest}"


def register_once(listing: Callable[[], list[dict[str, Any]]], name: str, register: Callable[[], None]) -> None:
    """Call ``register()`` unless fastembed already lists ``name``."""
    with _REGISTER_LOCK:
        if describe(listing(), name) is None:
            register()


def check_folder(folder: Path, model_file: str, additional_files: Sequence[str]) -> Path:
    """Check that ``folder`` holds what fastembed loads from a model folder (no hub access).

    Raises:
        ConfigurationError: it is not a folder, or a file is missing (all missing ones are named).
    """
    folder = folder.expanduser()
    needed = [model_file, *additional_files, *TOKENIZER_FILES]
    what = (
        f"the ONNX model ({model_file}{''.join(', ' + f for f in additional_files)}), tokenizer.json and "
        "tokenizer_config.json (with model_max_length and the pad token), optionally config.json and "
        "special_tokens_map.json"
    )
    if not folder.is_dir():
        raise ConfigurationError(f"model_path {folder} is not a folder; it must hold {what}")
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise ConfigurationError(f"model_path {folder} lacks {', '.join(missing)}; it must hold {what}")
    return folder


def find_model_file(folder: Path | None, configured: str | None) -> str:
    """The ONNX file of a model of the user's own: ``configured``, else ``model.onnx`` or
    ``onnx/model.onnx`` (the layouts of the local embedder's build and of most hub repositories),
    whichever the folder holds (``model.onnx`` when neither, for the error message)."""
    if configured is not None:
        return configured
    for candidate in ("model.onnx", "onnx/model.onnx"):
        if folder is not None and (folder.expanduser() / candidate).is_file():
            return candidate
    return "model.onnx"


def check_providers(providers: Sequence[str] | None) -> None:
    """Raises ConfigurationError when an onnxruntime execution provider asked for is not installed."""
    if not providers:
        return
    import onnxruntime

    available = onnxruntime.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise ConfigurationError(
            f"onnxruntime has no {', '.join(missing)} here; available execution providers: {', '.join(available)}"
        )


def cache_location(cache_dir: Path | None) -> str:
    """Where fastembed keeps downloaded models: ``cache_dir``, else ``FASTEMBED_CACHE_PATH``, else
    ``fastembed_cache`` in the system's temporary folder (fastembed's own rule)."""
    if cache_dir is not None:
        return str(cache_dir.expanduser())
    return os.environ.get("FASTEMBED_CACHE_PATH") or os.path.join(tempfile.gettempdir(), "fastembed_cache")


def offline_mode() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set, as fastembed reads it (at call time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "TRUE", "YES", "ON"}


def construct(factory: Callable[[], Any], *, name: str, folder: Path | None, cache_dir: str, local_only: bool) -> Any:
    """Run fastembed's constructor (which finds or downloads the files and opens the ONNX session)
    and translate its failures.

    Raises:
        ProviderError: the files cannot be loaded, or the hub model is neither in the cache nor
            downloadable (the message says which and how to fix it).
    """
    try:
        return factory()
    except EngramError:
        raise
    except Exception as exc:
        if folder is not None:
            msg = f"cannot load the fastembed model in {folder}: {type(exc).__name__}: {exc}"
        else:
            where = f"the fastembed cache {cache_dir}"
            if local_only or offline_mode():
                why = "local_files_only is set" if local_only else "HF_HUB_OFFLINE is set"
                fix = (
                    f"; downloads are off ({why}) and it is not in {where}: download it once online "
                    "with the same cache_dir, or set model_path to a folder holding its files"
                )
            else:
                fix = f" (from the Hugging Face hub into {where}); set model_path to load it from a folder instead"
            msg = f"cannot load the fastembed model {name!r}{fix}. {type(exc).__name__}: {exc}"
        raise ProviderError(msg, provider=PROVIDER) from exc


def check_texts(texts: Any, what: str) -> list[str]:
    """A list copy of ``texts``.

    Raises:
        InvalidInputError: ``texts`` is a single string, or an item is not a string.
    """
    if isinstance(texts, str):
        raise InvalidInputError(f"{what} takes a sequence of strings, not a single string")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise InvalidInputError(f"{what} takes strings; item {i} is a {type(t).__name__}")
    return items


def length_batches(texts: Sequence[str], size: int) -> list[np.ndarray]:
    """Indexes of ``texts`` in batches of at most ``size``, shortest texts first, so that a batch
    (padded to its longest member) carries little padding."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


def fields_from_url(url: str, scheme: str) -> dict[str, Any]:
    """Config fields from ``fastembed://ORG/NAME?field=value&...`` (a model name) or
    ``fastembed:///folder?field=value&...`` (a model folder, taken as written after ``//``).

    Raises:
        ConfigurationError: another scheme, or a field given twice.
    """
    parts = urlsplit(url)
    if parts.scheme != scheme:
        raise ConfigurationError(f"a fastembed URL starts with {scheme}://; got {url!r}")
    fields: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    path = unquote(parts.path)
    if parts.netloc:
        name = unquote(parts.netloc) + path
        if "model" in fields:
            raise ConfigurationError(f"{url!r} names the model twice (in the URL and as ?model=)")
        fields["model"] = name.rstrip("/")
    elif path and path != "/":
        if "model_path" in fields:
            raise ConfigurationError(f"{url!r} names the model folder twice (in the URL and as ?model_path=)")
        fields["model_path"] = path
    if isinstance(fields.get("providers"), str):
        fields["providers"] = [p for p in fields["providers"].split(",") if p]
    return fields


class SourceConfig(BaseModel):
    """The settings every fastembed provider has: where the model comes from and how it runs (the
    providers' ``Config`` docstrings describe each field)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model_path: Path | None = None
    model_file: str | None = None
    cache_dir: Path | None = None
    local_files_only: bool = False
    threads: int | None = Field(None, ge=1, le=256)
    batch_size: int = Field(64, ge=1, le=4096)
    providers: list[str] | None = None

    @field_validator("model_file")
    @classmethod
    def _inside_the_folder(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or Path(value).is_absolute() or ".." in Path(value).parts):
            raise ValueError(f"model_file must be a path inside model_path, like 'model.onnx'; got {value!r}")
        return value


@dataclass(frozen=True)
class Plan:
    """How to ask fastembed for the configured model."""

    name: str  # the name fastembed is asked for
    model_file: str  # the ONNX file, relative to the model folder
    additional_files: list[str]
    custom: bool  # a model of the user's own, registered with fastembed under ``name``
    dims: int | None = None  # the vector length, when known without running the model


class FastEmbedModel:
    """A provider on a fastembed model, opened on first use in a worker thread, once even when
    first calls race.

    Subclasses define ``Config`` (a :class:`SourceConfig` with ``model``) and the steps of :meth:`_open`:
    :meth:`_plan`, :meth:`_facade`, :meth:`_register` and :meth:`_check`.
    """

    Config: Any
    capabilities: frozenset[str] = frozenset()
    """What every instance can do; an instance adds ``"offline"`` when it never needs the network."""

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise ConfigurationError(f"pass either a {type(self).__name__}.Config or keyword fields, not both")
        self.config = config or self.Config(**kwargs)
        offline = self.config.model_path is not None or self.config.local_files_only
        self.capabilities = type(self).capabilities | ({"offline"} if offline else set())
        self._lock = threading.Lock()
        self._model: Any = None

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Build from ``fastembed://ORG/NAME?field=value&...`` (a model name) or
        ``fastembed:///folder?field=value&...`` (``model_path``); the fields are the config's.

        Raises:
            ConfigurationError: another scheme, a field the config does not have or a bad value.
        """
        fields = fields_from_url(url, "fastembed")
        try:
            return cls(cls.Config(**fields))
        except ValueError as exc:  # pydantic.ValidationError
            raise ConfigurationError(f"bad fastembed URL {url!r} for {cls.__name__}: {exc}") from exc

    def _plan(self) -> Plan:
        raise NotImplementedError

    def _facade(self) -> Any:
        """fastembed's class for this kind of model (``TextEmbedding``, ``TextCrossEncoder``)."""
        raise NotImplementedError

    def _register(self, plan: Plan) -> None:
        """Register a model of the user's own with fastembed under ``plan.name``."""
        raise NotImplementedError

    def _check(self, model: Any, plan: Plan, folder: Path | None) -> None:
        """Run the opened model once on a tiny input; raise if its output does not fit."""
        raise NotImplementedError

    def _open(self) -> Any:
        c = self.config
        plan = self._plan()
        check_providers(c.providers)
        folder = check_folder(c.model_path, plan.model_file, plan.additional_files) if c.model_path else None
        facade = self._facade()
        if plan.custom:
            register_once(facade.list_supported_models, plan.name, lambda: self._register(plan))
        kwargs: dict[str, Any] = {
            "cache_dir": str(c.cache_dir.expanduser()) if c.cache_dir else None,
            "threads": c.threads,
            "providers": c.providers,
            "local_files_only": c.local_files_only,
        }
        if folder is not None:
            kwargs["specific_model_path"] = str(folder)  # fastembed then never looks at the hub or its cache
        model = construct(
            lambda: facade(plan.name, lazy_load=False, **kwargs),
            name=c.model, folder=folder, cache_dir=cache_location(c.cache_dir), local_only=c.local_files_only,
        )
        self._check(model, plan, folder)
        return model

    def _load_sync(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._open()
            return self._model

    async def _loaded(self) -> Any:
        model = self._model
        if model is None:
            model = await anyio.to_thread.run_sync(self._load_sync)
        return model

    async def load(self) -> None:
        """Find (or download) and open the model now rather than on first use.

        Raises:
            ConfigurationError: an unknown model name, an incomplete ``model_path`` folder, or a
                model that does not fit the settings.
            ProviderError: the files cannot be loaded or downloaded.
        """
        await self._loaded()

    @property
    def loaded(self) -> bool:
        """Whether the model is open."""
        return self._model is not None

    async def aclose(self) -> None:
        """Release the ONNX session (a later call opens it again)."""
        self._model = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
