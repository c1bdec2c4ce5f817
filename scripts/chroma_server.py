"""Start and stop a local Chroma server for engram's integration tests (standard library only).

Usage::

    python scripts/chroma_server.py start --state DIR   # prints ENGRAM_TEST_CHROMA_URL=http://127.0.0.1:PORT
    python scripts/chroma_server.py stop --state DIR

``start`` runs the ``chroma`` executable installed beside the running Python (it comes with
``pip install "engram[chroma]"``) as ``chroma run --host 127.0.0.1 --port PORT --path DIR/data``
on a free port, with Chroma's anonymized telemetry off, and waits until ``/api/v2/heartbeat``
answers. It writes ``DIR/chroma.env`` (the ``ENGRAM_TEST_CHROMA_URL=...`` line, ready for a
shell's ``export $(cat DIR/chroma.env)`` or nox's env), ``DIR/chroma.pid`` and the server's
output to ``DIR/chroma.log``, then prints the env line. When a server started from the same
state folder still answers, ``start`` prints its line again and starts nothing.

``stop`` terminates the server recorded in ``DIR/chroma.pid`` (SIGTERM, then SIGKILL after a
grace period) and removes the pid and env files; it does nothing, successfully, when no server
runs. Exit status: 0 on success, 1 on failure with the reason on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ENV_NAME = "ENGRAM_TEST_CHROMA_URL"
HOST = "127.0.0.1"


def chroma_executable() -> Path:
    """The ``chroma`` command installed beside this Python (``bin/`` or ``Scripts\\``)."""
    folder = Path(sys.executable).parent
    for name in ("chroma", "chroma.exe"):
        if (folder / name).exists():
            return folder / name
    raise SystemExit(
        f"error: no 'chroma' executable in {folder}; install the Chroma plugin into this environment "
        f'with: pip install "engram[chroma]" (or run this script with the Python that has it)'
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def heartbeat(url: str, timeout: float = 1.0) -> bool:
    """Whether a Chroma server answers ``GET {url}/api/v2/heartbeat`` with 200."""
    try:
        with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (and is not a zombie, where that can be told)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True
    return True


def is_chroma(pid: int) -> bool:
    """Whether ``pid`` still runs ``chroma run`` (guards against a recycled pid), where /proc tells."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return alive(pid)
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"chroma") for a in args) and b"run" in args


def read_pid(state: Path) -> int | None:
    try:
        return int((state / "chroma.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def read_url(state: Path) -> str | None:
    try:
        line = (state / "chroma.env").read_text().strip()
    except OSError:
        return None
    name, _, value = line.partition("=")
    return value if name == ENV_NAME and value else None


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def terminate(pid: int, grace: float = 10.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def start(state: Path, timeout: float) -> int:
    state.mkdir(parents=True, exist_ok=True)
    pid, url = read_pid(state), read_url(state)
    if pid is not None and url is not None and alive(pid) and is_chroma(pid) and heartbeat(url):
        print(f"{ENV_NAME}={url}")
        return 0
    exe = chroma_executable()
    port = free_port()
    url = f"http://{HOST}:{port}"
    data = state / "data"
    data.mkdir(exist_ok=True)
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
    log_path = state / "chroma.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(exe), "run", "--host", HOST, "--port", str(port), "--path", str(data)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # not killed by the caller's Ctrl-C; `stop` ends it
        )
    (state / "chroma.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            (state / "chroma.pid").unlink(missing_ok=True)
            print(f"error: chroma exited with status {proc.returncode}; log {log_path}:\n{tail(log_path)}",
                  file=sys.stderr)
            return 1
        if heartbeat(url, timeout=0.5):
            line = f"{ENV_NAME}={url}"
            (state / "chroma.env").write_text(line + "\n")
            print(line)
            return 0
        time.sleep(0.1)
    terminate(proc.pid)
    (state / "chroma.pid").unlink(missing_ok=True)
    print(f"error: chroma did not answer {url}/api/v2/heartbeat within {timeout:g} s; log {log_path}:\n"
          f"{tail(log_path)}", file=sys.stderr)
    return 1


def stop(state: Path) -> int:
    pid = read_pid(state)
    if pid is not None and alive(pid) and is_chroma(pid):
        terminate(pid)
        if alive(pid):
            print(f"error: chroma (pid {pid}) is still running", file=sys.stderr)
            return 1
    (state / "chroma.pid").unlink(missing_ok=True)
    (state / "chroma.env").unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start or stop a local Chroma server for engram's tests.")
    parser.add_argument("command", choices=("start", "stop"))
    parser.add_argument("--state", required=True, type=Path,
                        help="folder for the data, log, pid and env files")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the server to answer (start only; default 60)")
    args = parser.parse_args(argv)
    state = args.state.expanduser().resolve()
    return start(state, args.timeout) if args.command == "start" else stop(state)


if __name__ == "__main__":
    sys.exit(main())
