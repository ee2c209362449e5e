"""Where a run's writer lives, and whether it still does: host, pid, process start time.

Every job run (and a sweep's parent run) is tagged with the host, the pid and the start time
of the process writing it (`fnnbench.host`, `fnnbench.pid`, `fnnbench.pid_start`) and a
heartbeat (`fnnbench.heartbeat`, unix seconds, refreshed with the metric flushes at most every
HEARTBEAT_SECONDS). A RUNNING run is *orphaned* when, on the same host, its pid is gone, a
zombie, or reused by a process with another start time; on another host (or without a pid),
when its last heartbeat is older than the staleness limit. No MLflow import here.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from fnnbench.tracking.names import TAG_HEARTBEAT, TAG_HOST, TAG_PID, TAG_PID_START


def host() -> str:
    return socket.gethostname()


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0]), None if absent."""
    try:
        text = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - tiny, read at once
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' when unknown: not Linux)."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else ""


def identity(pid: int | None = None) -> dict[str, str]:
    """The liveness tags of process `pid` (default: this process), heartbeat now."""
    pid = os.getpid() if pid is None else pid
    return {TAG_HOST: host(), TAG_PID: str(pid), TAG_PID_START: start_time(pid),
            TAG_HEARTBEAT: str(int(time.time()))}


def encode(pid: int | None = None) -> str:
    """'<host> <pid> <start>' of a process, as handed to the jobs in FNNBENCH_LAUNCHER."""
    pid = os.getpid() if pid is None else pid
    return f"{host()} {pid} {start_time(pid)}".strip()


def decode(text: str | None) -> tuple[str, int, str] | None:
    parts = (text or "").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""


def pid_alive(pid: int, start: str = "") -> bool:
    """True while process `pid` runs (not a zombie) with the same start time (when known)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _stat_fields(pid)
    if fields is None:
        return not os.path.isdir("/proc")  # no procfs: os.kill said it exists
    if fields[0] in ("Z", "X"):
        return False
    return not start or len(fields) <= 19 or fields[19] == start


def why_dead(tags: Mapping[str, str], start_ms: int | None, stale_seconds: float,
             now: float | None = None) -> str | None:
    """Why the writer of a RUNNING run with these tags is gone, or None while it may live."""
    now = time.time() if now is None else now
    run_host, pid = tags.get(TAG_HOST), tags.get(TAG_PID, "")
    if run_host == host() and pid.isdigit():
        start = tags.get(TAG_PID_START, "")
        if pid_alive(int(pid), start):
            return None
        try:
            os.kill(int(pid), 0)
            reused = _stat_fields(int(pid)) is not None and start_time(int(pid)) != start
        except OSError:
            reused = False
        return (f"its process {pid} on {run_host} was replaced by another (pid reused)"
                if reused else f"its process {pid} on {run_host} is gone")
    beats = [float(tags[TAG_HEARTBEAT])] if _is_float(tags.get(TAG_HEARTBEAT)) else []
    if start_ms:
        beats.append(start_ms / 1000.0)
    last = max(beats, default=None)
    if last is None or now - last <= stale_seconds:
        return None
    where = f" on {run_host}" if run_host else ""
    return (f"no heartbeat from its process{where} for {int(now - last)} s "
            f"(> {int(stale_seconds)} s)")


def _is_float(text: str | None) -> bool:
    try:
        float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True
