"""Developer sessions for the engram workspace: ``uv run nox -l`` lists them.

Sessions are discovered from the folders, never listed by hand: every ``packages/*`` and
``plugins/*`` folder with a ``pyproject.toml`` and a ``tests/`` folder gets a ``tests`` session.
Every session runs in the workspace environment that ``uv sync`` builds (one lock, one ``.venv``),
through ``uv run --frozen``, so nox creates no virtualenvs of its own and a session is as fast as
running the tool by hand.

    uv run nox -s lint                     ruff check + ruff format --check
    uv run nox -s "tests(engram-core)"     one package's tests
    uv run nox -s tests                    every package's tests
    uv run nox -s e2e                      cross-package tests in tests/
    uv run nox -s typecheck                pyright on packages/*/src (not run by CI)
    uv run nox -s plugins                  every plugin's unit and conformance tests
    uv run nox -s integration              start Qdrant and Chroma on 127.0.0.1, run the tests marked ``integration``
    uv run nox -s bench -- --quick         benchmarks/bench_ops.py, bench_infer.py, bench_graph.py, bench_telemetry.py, locomo_retrieval.py
    uv run nox -s docs                     every docs/*.md link and file reference resolves
"""

from __future__ import annotations

import re
from pathlib import Path

import nox
from nox.command import CommandFailed

ROOT = Path(__file__).resolve().parent
nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests", "e2e", "docs"]
nox.options.error_on_external_run = False

# pytest's exit code 5 means "no tests were collected": a suite that silently ran nothing fails.
PYTEST_NO_TESTS = 5


def _members(*kinds: str) -> list[str]:
    found = []
    for kind in kinds:
        base = ROOT / kind
        if not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            if d.is_dir() and not d.name.startswith((".", "_")) and (d / "pyproject.toml").is_file():
                found.append(f"{kind}/{d.name}")
    return found


MEMBERS = _members("packages", "plugins")
TESTED = [m for m in MEMBERS if (ROOT / m / "tests").is_dir()]


def _uv(session: nox.Session, *args: str, **kwargs: object) -> object:
    return session.run("uv", "run", "--frozen", *args, external=True, **kwargs)  # type: ignore[arg-type]


def _pytest(session: nox.Session, *args: str, allow_empty: bool = False) -> None:
    codes = [0, PYTEST_NO_TESTS] if allow_empty else [0]
    _uv(session, "pytest", *args, *session.posargs, success_codes=codes)


@nox.session
@nox.parametrize("member", TESTED, ids=[Path(m).name for m in TESTED])
def tests(session: nox.Session, member: str) -> None:
    """One workspace member's own tests (``packages/<name>/tests``)."""
    _pytest(session, f"{member}/tests")


@nox.session
def e2e(session: nox.Session) -> None:
    """Cross-package end-to-end tests in ``tests/``."""
    _pytest(session, "tests")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    _uv(session, "ruff", "check", ".")
    _uv(session, "ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """pyright (basic mode) on every member's ``src/``; nox-only, CI does not run it."""
    srcs = [f"{m}/src" for m in MEMBERS if (ROOT / m / "src").is_dir()]
    _uv(session, "pyright", "--pythonpath", str(ROOT / ".venv" / "bin" / "python"), *srcs, *session.posargs)


@nox.session
def plugins(session: nox.Session) -> None:
    """Every first-party plugin's own tests: unit tests and the conformance suites (server-mode
    classes skip here, naming their server; ``integration`` runs them)."""
    _pytest(session, *[f"{m}/tests" for m in TESTED if m.startswith("plugins/")])


# Servers the integration tests need, each started on 127.0.0.1 by ``scripts/<name>_server.py
# start --state DIR``, which writes the ENGRAM_TEST_* variables its tests read to DIR/<name>.env.
SERVERS = ["qdrant", "chroma"]


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


@nox.session
def integration(session: nox.Session) -> None:
    """Start the servers (Qdrant, Chroma) on 127.0.0.1, run every test marked ``integration``
    against them, stop them. Fails when a server does not start, when no test ran, or when a test
    was skipped for want of a server (a skip naming its ``ENGRAM_TEST_*`` variable)."""
    import tempfile
    import xml.etree.ElementTree as ET

    state = Path(tempfile.mkdtemp(prefix="engram-integration-"))
    env: dict[str, str] = {}
    started: list[str] = []
    try:
        for name in SERVERS:
            started.append(name)
            _uv(session, "python", f"scripts/{name}_server.py", "start", "--state", str(state / name))
            env.update(_read_env(state / name / f"{name}.env"))
        session.log("servers: " + ", ".join(f"{k}={v}" for k, v in sorted(env.items())))
        paths = [f"{m}/tests" for m in TESTED] + (["tests"] if (ROOT / "tests").is_dir() else [])
        report = state / "junit.xml"
        _uv(session, "pytest", "-m", "integration", "-p", "no:cacheprovider", f"--junitxml={report}",
            *paths, *session.posargs, env=env)
        cases = list(ET.parse(report).getroot().iter("testcase"))
        # A check skipped for a capability its store lacks is fine; one skipped for want of a
        # server ("needs a ... server", naming its ENGRAM_TEST_* variable) means the run missed it.
        missed = [c.get("name") for c in cases for s in c.iter("skipped")
                  if "ENGRAM_TEST_" in (s.get("message") or "")]
        if missed:
            session.error(f"{len(missed)} integration tests skipped for want of a server: {missed[:5]}")
        if not cases:
            session.error("no integration test ran")
        session.log(f"{len(cases)} integration tests ran against real servers")
    finally:
        for name in reversed(started):
            try:
                _uv(session, "python", f"scripts/{name}_server.py", "stop", "--state", str(state / name))
            except CommandFailed:
                session.warn(f"stopping the {name} server failed; see {state / name}")


# The benchmark scripts the bench session runs, in order; bench_mem0.py is left out (it runs in a
# separate environment that has mem0, see its docstring).
BENCHMARKS = ["bench_ops.py", "bench_infer.py", "bench_graph.py", "bench_telemetry.py", "locomo_retrieval.py"]


@nox.session
def bench(session: nox.Session) -> None:
    """The speed and retrieval-quality benchmarks; they rewrite their sections of docs/benchmarks.md.

    Arguments after ``--`` go to every script (``--quick`` is understood by all of them).
    """
    for script in BENCHMARKS:
        if (ROOT / "benchmarks" / script).is_file():
            _uv(session, "python", f"benchmarks/{script}", *session.posargs)


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE_PATH = re.compile(r"`((?:packages|plugins|benchmarks|docs|examples|tests)/[\w./-]+)`")


@nox.session(venv_backend="none")
def docs(session: nox.Session) -> None:
    """Every relative link in README.md and docs/*.md points at a file that exists, and so does
    every backticked repository path (``packages/...``, ``benchmarks/...``); anchors are checked
    against the target's headings."""
    pages = [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))] if p.is_file()]
    pages += sorted(p for p in (ROOT / "benchmarks").glob("*.md"))
    if not pages:
        session.error("no documentation found (README.md, docs/*.md)")
    problems: list[str] = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in _LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                problems.append(f"{page.relative_to(ROOT)}: broken link {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                problems.append(f"{page.relative_to(ROOT)}: no heading #{anchor} in {dest.relative_to(ROOT)}")
        for ref in _CODE_PATH.findall(text):
            ref = ref.rstrip(".")
            if "*" not in ref and not (ROOT / ref).exists():
                problems.append(f"{page.relative_to(ROOT)}: `{ref}` does not exist")
    for p in problems:
        session.log(p)
    if problems:
        session.error(f"{len(problems)} documentation problem(s)")
    session.log(f"{len(pages)} pages checked, links and paths resolve")


def _anchors(page: Path) -> set[str]:
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out
