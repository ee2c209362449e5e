"""docs/internals.md states the contracts between modules; the code must say the same.

Every line of a ```python block in docs/internals.md that reads
``fnnbench.module.name(params) -> ...`` is a signature: the object must exist, and its
parameters (names, kinds, defaults) must be those of ``inspect.signature``. The README's layout
block must name exactly the folders and modules of the package.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "internals.md"
SIGNATURE = re.compile(r"^(fnnbench(?:\.\w+)+)\((.*)\)(?:\s*->.*)?$")


def documented() -> list[tuple[str, str]]:
    out, in_block = [], False
    for line in DOC.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```python"
            continue
        m = SIGNATURE.match(line.split("#")[0].strip()) if in_block else None
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def resolve(dotted: str):
    """Attribute first, as ``from a.b import c`` reads: fnnbench.job.build is the function
    the package exports, not its module of the same name."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        if not hasattr(obj, part):
            importlib.import_module(".".join(parts[:i]))
        obj = getattr(obj, part)
    return obj


NOT_LITERAL = object()  # a documented default that is an expression (np.float64, ...)


def _default(node: ast.expr | None) -> object:
    if node is None:
        return inspect.Parameter.empty
    try:
        return ast.literal_eval(node)
    except ValueError:
        return NOT_LITERAL


def doc_params(params: str) -> list[tuple[str, str, object]]:
    """(name, kind, default) of a documented parameter list, read with ast."""
    fn = ast.parse(f"def f({params}): pass").body[0].args
    out = []
    positional = fn.posonlyargs + fn.args
    defaults = [None] * (len(positional) - len(fn.defaults)) + list(fn.defaults)
    for a, d in zip(positional, defaults, strict=True):
        kind = "POSITIONAL_ONLY" if a in fn.posonlyargs else "POSITIONAL_OR_KEYWORD"
        out.append((a.arg, kind, _default(d)))
    if fn.vararg:
        out.append((fn.vararg.arg, "VAR_POSITIONAL", inspect.Parameter.empty))
    for a, d in zip(fn.kwonlyargs, fn.kw_defaults, strict=True):
        out.append((a.arg, "KEYWORD_ONLY", _default(d)))
    if fn.kwarg:
        out.append((fn.kwarg.arg, "VAR_KEYWORD", inspect.Parameter.empty))
    return out


def code_params(obj) -> list[tuple[str, str, object]]:
    """(name, kind, default) of the code; methods are documented without ``self``."""
    params = list(inspect.signature(obj).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return [(p.name, p.kind.name, p.default) for p in params]


def same(doc: list, code: list) -> bool:
    """Names and kinds equal; defaults equal where the doc gives a literal, present otherwise."""
    if [(n, k) for n, k, _ in doc] != [(n, k) for n, k, _ in code]:
        return False
    for (_, _, d), (_, _, c) in zip(doc, code, strict=True):
        if d is NOT_LITERAL:
            if c is inspect.Parameter.empty:
                return False
        elif d != c or type(d) is not type(c):
            return False
    return True


def test_the_doc_states_signatures():
    assert len(documented()) >= 20


@pytest.mark.parametrize(("name", "params"), documented(), ids=[n for n, _ in documented()])
def test_documented_signature_matches_the_code(name, params):
    obj = resolve(name)
    assert same(doc_params(params), code_params(obj)), f"code: {name}{inspect.signature(obj)}"


def test_readme_layout_names_every_part_of_the_package():
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Layout"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    listed = set(re.findall(r"^  (\S+?)/?\s", block, re.M))
    package = ROOT / "fnnbench"
    actual = {p.name for p in package.iterdir()
              if not p.name.startswith((".", "_")) or p.name == "__main__.py"}
    actual = {n for n in actual if n not in ("__pycache__", "__init__.py")}
    actual = {n.removesuffix("/") for n in actual}
    assert listed == actual, listed ^ actual
    top = set(re.findall(r"^(\S+?)/\s", block, re.M))
    assert top <= {p.name for p in ROOT.iterdir()}, top
