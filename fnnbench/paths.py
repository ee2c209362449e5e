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
import os
import re
import subprocess
from collections.abc import Sequence
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


# ----------------------------------------------------------------- claim files outside sweeps/
#
# A claim file may live anywhere: ``python -m fnnbench sweep=path/to/<name>.yaml``. Hydra only
# composes the ``sweep`` group from its search path, and the command line may not add search
# path entries (``fnnbench.cli.preflight``: a search path could bring in any config). So the
# file is copied, byte for byte, into a directory fnnbench generates and names by the file's
# sha256 -- ``<cache>/sweeps/<sha256[:16]>/sweep/<name>.yaml`` -- and the job runs
# ``sweep=<name>`` with that directory (and nothing else) on Hydra's search path. The copy is
# what preflight checks and what every job (and worker process) composes: it cannot change
# between the check and the run.

SWEEP_SUFFIXES = (".yaml", ".yml")
_SWEEP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_DIGEST_CHARS = 16


def cache_dir() -> Path:
    """$FNNBENCH_CACHE_DIR, else $XDG_CACHE_HOME/fnnbench, else ~/.cache/fnnbench (the same
    folder as ``fnnbench.data.cache_dir``)."""
    if os.environ.get("FNNBENCH_CACHE_DIR"):
        return Path(os.environ["FNNBENCH_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "fnnbench"
    return Path.home() / ".cache" / "fnnbench"


def generated_sweeps_dir() -> Path:
    """Where the copies of external claim files live: ``<cache>/sweeps``."""
    return cache_dir() / "sweeps"


def is_sweep_path(value: str) -> bool:
    """Does a ``sweep=`` value name a file (``x.yaml``, ``dir/x``) rather than a claim id?"""
    return value.endswith(SWEEP_SUFFIXES) or "/" in value or os.sep in value


def shipped_sweep(name: str) -> Path | None:
    """``sweeps/<name>.yaml`` when fnnbench ships a claim sweep of that name, else None."""
    path = SWEEPS_DIR / f"{name}.yaml"
    return path if _SWEEP_NAME.match(name) and path.is_file() else None


def sweep_override(claim_file: str | Path) -> str:
    """The override that runs a claim file: ``sweep=<id>`` for a file of the package's
    ``sweeps/``, ``sweep=<absolute path>`` for any other (``python -m fnnbench`` and
    ``fnnbench.cli.preflight.sweep_size`` accept both)."""
    path = Path(claim_file).expanduser().absolute()
    shipped = shipped_sweep(path.stem)
    if shipped is not None and path.resolve() == shipped.resolve():
        return f"sweep={path.stem}"
    return f"sweep={override_value(str(path))}"


def override_value(text: str) -> str:
    """``text`` as the value of a Hydra override: quoted when it has a character the
    override grammar reads (a space, a comma, brackets, quotes, ...)."""
    if any(c in text for c in " ,'\"\\[](){}=<>!#&;|*?$`"):
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return text


def external_sweep(path: str | Path) -> tuple[str, Path]:
    """Copy an external claim file into its generated directory; (name, directory).

    ``directory`` (``<cache>/sweeps/<sha256[:16]>``) holds exactly ``sweep/<name>.yaml``, the
    file's bytes; put it on Hydra's search path and compose ``sweep=<name>``. ValueError (one
    line) when the file is missing or unreadable, its name is not a valid option name or is the
    name of a shipped claim sweep (the shipped file would be composed instead), or the cache
    cannot be written.
    """
    path = Path(path).expanduser()
    if path.suffix not in SWEEP_SUFFIXES:
        raise ValueError(f"{path}: a claim file must end with .yaml")
    if not path.is_file():
        why = "is a directory, not a file" if path.is_dir() else "no such file"
        raise ValueError(f"{path}: {why}")
    name = path.stem
    if not _SWEEP_NAME.match(name):
        raise ValueError(f"{path}: the file name {name!r} must be letters, digits, _ and - "
                         "(it becomes the sweep's name)")
    if shipped_sweep(name) is not None:
        raise ValueError(f"{path}: {name!r} is the name of a claim sweep fnnbench ships "
                         f"(sweeps/{name}.yaml); rename the file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot read it ({err.strerror or type(err).__name__})") from None
    digest = hashlib.sha256(data).hexdigest()[:_DIGEST_CHARS]
    directory = generated_sweeps_dir() / digest
    target = directory / "sweep" / f"{name}.yaml"
    try:
        if not (target.is_file() and not target.is_symlink() and target.read_bytes() == data):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
    except OSError as err:
        raise ValueError(f"{path}: cannot copy it to {directory} "
                         f"({err.strerror or type(err).__name__}; set FNNBENCH_CACHE_DIR to a "
                         "writable folder)") from None
    return name, directory


def generated_sweep(directory: str | Path) -> Path | None:
    """The claim file of a directory :func:`external_sweep` generated, else None: the
    directory must be ``<cache>/sweeps/<digest>`` holding only ``sweep/<name>.yaml``, a
    regular file whose sha256 starts with ``<digest>``."""
    d = Path(directory)
    try:
        if d.resolve().parent != generated_sweeps_dir().resolve() or d.is_symlink():
            return None
        if [p.name for p in d.iterdir()] != ["sweep"] or (d / "sweep").is_symlink():
            return None
        files = [p for p in (d / "sweep").iterdir() if not p.name.startswith(".")]
    except OSError:
        return None
    if len(files) != 1 or files[0].suffix != ".yaml" or files[0].is_symlink():
        return None
    f = files[0]
    if not (f.is_file() and _SWEEP_NAME.match(f.stem)):
        return None
    return f if hashlib.sha256(f.read_bytes()).hexdigest()[:_DIGEST_CHARS] == d.name else None


def sweep_file(name: str | None, searchpath: Sequence[str] = ()) -> Path | None:
    """The claim file that ``sweep=<name>`` composes: ``sweeps/<name>.yaml``, else
    ``<dir>/sweep/<name>.yaml`` of the first ``file://<dir>`` entry of Hydra's search path
    (``hydra.searchpath``) that has it; None when there is none."""
    if not name:
        return None
    shipped = shipped_sweep(name)
    if shipped is not None:
        return shipped
    for entry in searchpath or ():
        entry = str(entry)
        if entry.startswith("file://"):
            path = Path(entry[len("file://"):]) / "sweep" / f"{name}.yaml"
            if path.is_file():
                return path
    return None
