"""Start and stop `streamlit run` for the browser benchmarks and tests (one place instead of four).

A server listens on a free loopback port, in a process group of its own (so stopping it also stops the jobs it
started), with its output in a log file; `start` returns once `/_stcore/health` answers, and names the log's tail
when the server exits or does not answer in time.

    from _server import running                      # a script under benchmarks/
    from benchmarks._server import running           # a test (the project root is on the path)

    with running("app.py", cwd=ROOT, env={"WINNOW_HOME": str(ws)}, log_path=tmp / "streamlit.log") as (proc, url):
        ...
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Mapping, Sequence

__all__ = ["free_port", "start", "stop", "running"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(script: str, *, cwd: Path, env: Mapping[str, str] | None = None, log_path: Path,
          args: Sequence[str] = (), address: str | None = "127.0.0.1", timeout: float = 120.0
          ) -> tuple[subprocess.Popen, str]:
    """`streamlit run SCRIPT` (headless, no usage statistics) on a free port; returns (process, base url).

    Args:
        cwd: The folder the script is run from (its `.streamlit/config.toml` applies).
        env: Variables added to this process's environment (offline Hugging Face is always set).
        args: Further `streamlit run` options, e.g. ("--server.fileWatcherType", "none").
        address: `--server.address`; None leaves the app's own setting.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true", "--server.port", str(port),
           "--browser.gatherUsageStats", "false"]
    if address is not None:
        cmd += ["--server.address", address]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **dict(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*cmd, *args], cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.3)
        if proc.poll() is not None:
            break
    stop(proc)
    tail = Path(log_path).read_text(errors="replace")[-2000:]
    raise RuntimeError(f"streamlit run {script} did not start within {timeout:.0f} s; its log ends: {tail}")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a server started by `start` and everything in its process group (TERM, then KILL)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@contextlib.contextmanager
def running(script: str, **kwargs) -> Iterator[tuple[subprocess.Popen, str]]:
    """`start` ... `stop` around a block; yields (process, base url)."""
    proc, url = start(script, **kwargs)
    try:
        yield proc, url
    finally:
        stop(proc)
