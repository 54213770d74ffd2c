"""Background jobs: any CLI step run as `python -m core --job ID <step> ...` in its own process session.

The job's status, progress, message, pid and log live in the workspace, so a closed browser tab, a reloaded page
or a restarted server loses nothing. A job whose process vanished (kill -9, reboot) reads as "dead"; `resume`
starts the same command again, and the step picks up its last checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from core import procs
from core.errors import JobError
from core.workspace import Workspace, atomic_write

FINAL = ("done", "failed", "cancelled", "dead")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Job:
    id: str
    argv: list[str]
    label: str
    status: str  # queued, running, done, failed, cancelled, dead
    progress: float  # 0..1
    message: str
    pid: int | None
    created: float
    started: float | None
    finished: float | None
    log_path: str | None
    run_id: int | None
    error: str | None

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def command(self) -> str:
        return "python -m core " + " ".join(self.argv)


_alive = procs.alive  # the liveness test (kept under this name for callers of core.jobs)


def _job(ws: Workspace, row: Any) -> Job:
    status = row["status"]
    if status in ("queued", "running") and row["pid"] is not None and not procs.alive(row["pid"], row["pid_start"]):
        # The process is gone without saying so: killed, crashed hard, or the machine restarted.
        msg = f"the process (pid {row['pid']}) vanished; resume to continue from the last checkpoint"
        if ws.read_only:  # say so all the same
            row = {**dict(row), "status": "dead", "message": msg}
        else:
            ws._job_update(row["id"], status="dead", finished=time.time(), message=msg)
            row = ws._job_row(row["id"])
        status = "dead"
    return Job(id=row["id"], argv=json.loads(row["argv"]), label=row["label"], status=row["status"],
               progress=float(row["progress"]), message=row["message"], pid=row["pid"], created=row["created"],
               started=row["started"], finished=row["finished"], log_path=row["log_path"], run_id=row["run_id"],
               error=row["error"])


def start(ws: Workspace, argv: Sequence[str], *, label: str = "") -> str:
    """Start `python -m core <argv>` in the background; returns the job id at once.

    Args:
        argv: The step and its arguments, exactly as typed after `python -m core`, e.g. ["embed", "demo"].
        label: A short name shown in job lists (defaults to the step name).
    """
    job_id = uuid.uuid4().hex[:12]
    log_path = ws.path / "jobs" / f"{job_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    ws._job_insert(job_id, list(argv), label or (argv[0] if argv else ""), str(log_path))
    cmd = [sys.executable, "-m", "core", "--workspace", str(ws.path.resolve()), "--job", job_id, *argv]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=str(PROJECT_ROOT), env=env)
    ws._job_update(job_id, pid=proc.pid, pid_start=procs.start_time(proc.pid), status="running", started=time.time(),
                   message="starting")
    return job_id


def get(ws: Workspace, job_id: str) -> Job:
    row = ws._job_row(job_id)
    if row is None:
        raise JobError(f"no job {job_id} in the workspace {ws.path}; `python -m core jobs list` lists them")
    return _job(ws, row)


def list_jobs(ws: Workspace, limit: int | None = None) -> list[Job]:
    rows = ws._job_rows()
    return [_job(ws, r) for r in (rows[:limit] if limit else rows)]


def cancel(ws: Workspace, job_id: str, timeout: float = 10.0) -> Job:
    """Stop a running job (SIGTERM to its process group, SIGKILL after `timeout` s) and mark it cancelled."""
    job = get(ws, job_id)
    if not job.active:
        return job
    if job.pid:
        try:
            os.killpg(job.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.time() + timeout
        while time.time() < deadline and procs.alive(job.pid, None):
            time.sleep(0.1)
        if procs.alive(job.pid, None):
            try:
                os.killpg(job.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            deadline = time.time() + 10.0  # SIGKILL is delivered asynchronously: return once it is gone
            while time.time() < deadline and _alive(job.pid, None):
                time.sleep(0.05)
    row = ws._job_row(job_id)
    if row["status"] in ("queued", "running", "dead"):
        ws._job_update(job_id, status="cancelled", finished=time.time(), message="cancelled")
    return get(ws, job_id)


def resume(ws: Workspace, job_id: str) -> str:
    """Start a stopped job's command again (a new job); the step continues from its checkpoints."""
    job = get(ws, job_id)
    if job.active:
        raise JobError(f"job {job_id} is still {job.status}; cancel it first or wait for it")
    return start(ws, job.argv, label=job.label)


def wait(ws: Workspace, job_id: str, timeout: float = 600.0, poll: float = 0.2) -> Job:
    """Block until the job ends (for tests and scripts); raises JobError on timeout."""
    deadline = time.time() + timeout
    while True:
        job = get(ws, job_id)
        if not job.active:
            return job
        if time.time() > deadline:
            raise JobError(f"job {job_id} still {job.status} after {timeout:.0f} s ({job.message})")
        time.sleep(poll)


def log_tail(job: Job, lines: int = 20) -> str:
    if not job.log_path or not Path(job.log_path).exists():
        return ""
    with open(job.log_path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64_000))
        text = f.read().decode("utf-8", "replace")
    # tqdm redraws with carriage returns: keep the last state of each line
    out = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
    return "\n".join([ln for ln in out if ln.strip()][-lines:])


# ---------------------------------------------------------------------------- inside the job's own process
def mark_running(ws: Workspace, job_id: str) -> None:
    ws._job_update(job_id, status="running", pid=os.getpid(), pid_start=procs.start_time(os.getpid()),
                   started=time.time(), message="running")


class _Throttle:
    last: dict[str, float] = {}


def report(ws: Workspace, job_id: str | None, fraction: float, message: str, *, force: bool = False) -> None:
    """Record a job's progress (at most twice a second unless forced). No-op when job_id is None."""
    if job_id is None:
        return
    now = time.time()
    if not force and now - _Throttle.last.get(job_id, 0.0) < 0.5:
        return
    _Throttle.last[job_id] = now
    ws._job_update(job_id, progress=float(min(max(fraction, 0.0), 1.0)), message=str(message)[:500])


def attach_run(ws: Workspace, job_id: str | None, run_id: int) -> None:
    if job_id is not None:
        ws._job_update(job_id, run_id=int(run_id))
        ws.update_run(run_id, job_id=job_id)


def finish(ws: Workspace, job_id: str, status: str, message: str = "", error: str | None = None) -> None:
    fields: dict[str, Any] = {"status": status, "finished": time.time(), "message": message or status}
    if status == "done":
        fields["progress"] = 1.0
    if error is not None:
        fields["error"] = error[-4000:]
    ws._job_update(job_id, **fields)


# ---------------------------------------------------------------------------- one computation per input
_COUNT = re.compile(r"([\d,]+)\s*/\s*([\d,]+)")


def _lock_paths(ws: Workspace, name: str) -> tuple[Path, Path]:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:150]
    folder = ws.path / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{safe}.lock", folder / f"{safe}.json"


def _holder_line(ws: Workspace, state: dict[str, Any], what: str) -> str:
    """'waiting for the embedding job 3f2a… (12,000/38,158)' from the holder's state (its job's message if any)."""
    who = f"job {state['job']}" if state.get("job") else f"process {state.get('pid', '?')}"
    done, total = state.get("done"), state.get("total")
    if state.get("job"):
        row = ws._job_row(state["job"])
        m = _COUNT.search(row["message"]) if row is not None else None
        if m is not None:
            done, total = int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))
    count = f" ({done:,}/{total:,})" if isinstance(done, int) and isinstance(total, int) and total else ""
    return f"waiting for the {what} job{count}; {who} computes it, this one reuses it"


class SharedStep:
    """The holder's handle inside `exclusive`: `track(on_progress)` mirrors its progress for waiting jobs."""

    def __init__(self, state_path: Path, state: dict[str, Any]) -> None:
        self.state_path, self.state, self.waited = state_path, state, 0.0
        self._last = 0.0

    def track(self, on_progress: Callable[..., None] | None) -> Callable[..., None]:
        def fn(fraction: float, message: str = "", partial: Any = None) -> None:
            m = _COUNT.search(message or "")
            now = time.time()
            if m is not None and now - self._last >= 0.5:
                self._last = now
                self.state.update(done=int(m.group(1).replace(",", "")), total=int(m.group(2).replace(",", "")))
                with contextlib.suppress(OSError):
                    atomic_write(self.state_path, lambda tmp: Path(tmp).write_text(json.dumps(self.state)))
            if on_progress is not None:
                on_progress(fraction, message, partial)
        return fn


@contextlib.contextmanager
def exclusive(ws: Workspace, name: str, *, what: str = "embedding", job_id: str | None = None,
              on_wait: Callable[..., None] | None = None, poll: float = 0.5,
              timeout: float | None = None) -> Iterator[SharedStep]:
    """Run a step's block in one process at a time per `name` (e.g. one embedding per dataset and model).

    Two jobs that need the same output (the value and the project job both embedding a dataset, or two tabs) must
    not compute it twice: the first takes an OS file lock (`ws/locks/<name>.lock`, released by the kernel when the
    process dies, so a killed job never leaves a stale lock); the second waits for it, reporting
    "waiting for the embedding job (12,000/38,158)" through `on_wait(fraction, message)`, then runs the block,
    which finds the output stored and reuses it.
    """
    import fcntl

    lock_path, state_path = _lock_paths(ws, name)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        t0 = time.time()
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            try:
                state = json.loads(state_path.read_text())
            except (OSError, ValueError):
                state = {}
            line = _holder_line(ws, state, what)
            if not told:
                print(f"winnow: {line}", file=sys.stderr, flush=True)
                told = True
            if on_wait is not None:
                done, total = state.get("done"), state.get("total")
                on_wait((done / total) if isinstance(done, int) and total else 0.0, line, None)
            if timeout is not None and time.time() - t0 > timeout:
                raise JobError(f"still waiting for the {what} job after {timeout:.0f} s ({line}); "
                               f"cancel it or remove {lock_path}")
            time.sleep(poll)
        state = {"job": job_id, "pid": os.getpid(), "since": time.time()}
        with contextlib.suppress(OSError):
            state_path.write_text(json.dumps(state))
        step = SharedStep(state_path, state)
        step.waited = time.time() - t0
        try:
            yield step
        finally:
            with contextlib.suppress(OSError):
                state_path.unlink()
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
