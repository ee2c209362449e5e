"""The folders are the architecture: imports follow the data direction, never upwards.

    nn, optim, data, seeding, paths  ->  train  ->  tracking  ->  job  ->  claims  ->  report
                                                                              cli (on top)

Read from the source with ``ast`` (nothing is imported): which fnnbench module imports which,
and which names it takes from another module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fnnbench"

GROUND = {"nn", "optim", "data", "seeding", "paths"}
# Each part of the package and the parts it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "paths": set(),
    "seeding": set(),
    "nn": set(),
    "optim": set(),
    "data": set(),
    "train": {"nn", "data", "optim"},
    "tracking": GROUND | {"train"},
    "job": GROUND | {"train", "tracking"},
    "claims": GROUND | {"train", "tracking"},
    "report": GROUND | {"train", "tracking", "claims"},
    "cli": GROUND | {"train", "tracking", "job", "claims", "report"},
    # the thin command-line shims: python -m fnnbench / python -m fnnbench.reproduce
    "__main__": {"cli"},
    "reproduce": {"cli"},
    "__init__": set(),
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def dotted(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


# Command-line shims inside a part (``python -m fnnbench.claims`` runs fnnbench.cli.check):
# they count as fnnbench/__main__.py does, and may import cli only.
SHIMS = {"fnnbench.claims.__main__"}


def part_of(module: str) -> str:
    """fnnbench.report.build -> report; fnnbench.__main__ -> __main__; fnnbench -> __init__."""
    if module in SHIMS:
        return "__main__"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every fnnbench import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = dotted(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("fnnbench")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("fnnbench"):
                out.append((mod, [a.name for a in node.names], node.lineno))
    return out


def test_the_package_has_the_parts_the_rules_name():
    found = {part_of(dotted(p)) for p in modules()}
    assert found == set(ALLOWED), found ^ set(ALLOWED)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_data_direction(path):
    me = part_of(dotted(path))
    bad = []
    for mod, names, line in imports(path):
        targets = [mod] if mod != "fnnbench" else [f"fnnbench.{n}" for n in names]
        for target in targets:
            other = part_of(target)
            if other != me and other not in ALLOWED[me]:
                bad.append(f"line {line}: {me} imports {target} ({other} is not below {me})")
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_command_line_from_below():
    bad = []
    for path in modules():
        me = part_of(dotted(path))
        if me in ("cli", "__main__", "reproduce"):
            continue
        for mod, _, line in imports(path):
            if mod.startswith(("fnnbench.cli", "fnnbench.__main__", "fnnbench.reproduce")):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def test_no_module_imports_another_modules_underscore_names():
    bad = []
    for path in [*modules(), *sorted((ROOT / "benchmarks").rglob("*.py"))]:
        me = dotted(path)
        for mod, names, line in imports(path):
            if mod == me:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private or any(p.startswith("_") for p in mod.split(".")[1:]
                              if p not in ("__main__", "__init__")):
                bad.append(f"{path.relative_to(ROOT)}:{line} from {mod} import {names}")
    assert not bad, "\n".join(bad)


def test_no_module_reaches_into_an_imported_modules_privates():
    """``import fnnbench.x as x; x._helper()`` is the same leak as ``from x import _helper``."""
    bad = []
    for path in modules():
        tree = ast.parse(path.read_text())
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                aliases |= {(a.asname or a.name).split(".")[0] for a in node.names
                            if a.name.startswith("fnnbench")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fnnbench"):
                aliases |= {a.asname or a.name for a in node.names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
    assert not bad, "\n".join(bad)


def test_the_trainer_drives_the_network_through_its_public_api():
    tree = ast.parse((PACKAGE / "train.py").read_text())
    private = sorted({f"line {n.lineno}: .{n.attr}" for n in ast.walk(tree)
                      if isinstance(n, ast.Attribute) and n.attr.startswith("_")
                      and not n.attr.startswith("__")})
    assert not private, private


def test_ground_floor_never_imports_omegaconf_or_hydra():
    bad = []
    for path in modules():
        if part_of(dotted(path)) not in GROUND | {"train"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                    if n.split(".")[0] in ("omegaconf", "hydra")]
    assert not bad, bad
