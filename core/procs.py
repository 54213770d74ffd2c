"""Is a process still alive? One answer (psutil) for jobs, runs and exports, robust to a reused pid."""
from __future__ import annotations

import os

import psutil


def start_time(pid: int) -> str | None:
    """The process's start time (to tell a reused pid apart), or None when it is gone or a zombie."""
    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
        return f"{proc.create_time():.2f}"
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def alive(pid: int | None, started: str | None = None) -> bool:
    """True while process `pid` runs (and, when `started` is given, is the same process that started then).

    A start recorded in the older clock-tick form (no decimal point) is not compared: the pid alone decides.
    """
    if not pid:
        return False
    try:  # reap it if it is our own finished child, so it does not linger as a zombie
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass
    now = start_time(pid)
    if now is None:
        return False
    return started is None or "." not in str(started) or now == started
