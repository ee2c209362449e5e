"""SIGINT / SIGTERM during a job: a KeyboardInterrupt, but never inside MLflow store code.

A KeyboardInterrupt raised inside an MLflow / SQLAlchemy call can leave a sqlite write
transaction open, and then closing the run as KILLED fails with "database is locked" (and the
sweep goes on as if a job had failed). So a signal that arrives in store code is held and
re-checked every 50 ms (SIGALRM); the write completes and the job's run is closed as KILLED
right after. A second signal while one is held is delivered at once (a user who presses
Ctrl-C twice wants out).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

STORE_MODULES = ("fnnbench.tracking", "mlflow", "sqlalchemy", "sqlite3", "alembic")
RECHECK_SECONDS = 0.05
_pending_signal: int | None = None


def _in_store_code(frame: Any) -> bool:
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(STORE_MODULES):
            return True
        frame = frame.f_back
    return False


def _interrupt(signum: int, frame: Any) -> None:
    global _pending_signal
    if _pending_signal is None and _in_store_code(frame):
        _pending_signal = signum
        signal.setitimer(signal.ITIMER_REAL, RECHECK_SECONDS)
        return
    _pending_signal = None
    raise KeyboardInterrupt(f"signal {signum}")


def _deliver_held(signum: int, frame: Any) -> None:
    global _pending_signal
    if _pending_signal is None:
        return
    if _in_store_code(frame):
        signal.setitimer(signal.ITIMER_REAL, RECHECK_SECONDS)
        return
    held, _pending_signal = _pending_signal, None
    raise KeyboardInterrupt(f"signal {held}")


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM end the job as KeyboardInterrupt, outside store code (main thread)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "setitimer"):
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    signal.signal(signal.SIGALRM, _deliver_held)
