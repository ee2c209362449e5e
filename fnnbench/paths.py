"""Where fnnbench's files are: one place for every path the package knows about.

``conf/`` (the Hydra config groups) and ``sweeps/`` (the claim files) are package data, read
through :mod:`importlib.resources`, so a wheel or ``pip install .`` runs from any directory.
``CHECKOUT_DIR`` is the git checkout that holds this package when it runs from one (an
editable install, ``make``), else None: then the reports go to ``./reports`` in the working
directory and there is no commit to record.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib import resources
from pathlib import Path

PACKAGE_DIR = Path(str(resources.files("fnnbench")))
CONF_DIR = PACKAGE_DIR / "conf"
SWEEPS_DIR = PACKAGE_DIR / "sweeps"


def _checkout() -> Path | None:
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / ".git").exists():
        return root
    return None


CHECKOUT_DIR: Path | None = _checkout()


def default_reports_dir() -> Path:
    """The checkout's ``reports/`` (where the reference report lives), else ``./reports``."""
    return CHECKOUT_DIR / "reports" if CHECKOUT_DIR is not None else Path("reports")


def _git(*args: str) -> str | None:
    if CHECKOUT_DIR is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(CHECKOUT_DIR), *args], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache
def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the checkout holding this package, or None (cached)."""
    commit = _git("rev-parse", "HEAD")
    return commit if commit is not None and len(commit) == 40 else None


def git_dirty() -> bool:
    """True when tracked files of the checkout have uncommitted changes."""
    return bool(_git("status", "--porcelain", "--untracked-files=no"))


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes (a claim file's version, for provenance)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
