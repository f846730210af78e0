"""Nothing outside ``aggregation/`` reaches a private ``aggregation`` name.

What ``maha``, the benchmarks, the examples, the proofs and the tests need from
the solvers has a public, documented name (``aggregation.validation``,
``aggregation.small_linalg``, ``aggregation.scale.game.certify_profile``...).
This test parses (``ast``, nothing is imported) every ``.py`` file of the
repository outside ``aggregation/`` and fails on:

* a module path with a private component: ``import aggregation._x``,
  ``from aggregation.scale._common import y``;
* a private name taken from an ``aggregation`` module: ``from aggregation.result
  import _helper``;
* a private attribute of a name bound to an ``aggregation`` module:
  ``import aggregation.scale.game as g; g._helper``;
* a dotted string naming a private ``aggregation`` path (``monkeypatch.setattr``
  targets): ``"aggregation._x.CHUNK"``;
* a private name set or read by string on an ``aggregation`` module:
  ``monkeypatch.setattr(sys.modules["aggregation.scale.exact"], "_CHUNK", 2)``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {"__pycache__", "build", "dist", "node_modules", "venv"}  # at any depth
DOTTED = re.compile(r"^aggregation(\.[A-Za-z_]\w*)+$")
BY_NAME = {"setattr", "getattr", "delattr", "hasattr"}


def _private(part: str) -> bool:
    """A single-underscore name (``_x``); dunders (``__main__``) are public."""
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _aggregation_path(module: str) -> bool:
    return module == "aggregation" or module.startswith("aggregation.")


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Every reach into a private ``aggregation`` name in ``source``, as ``file:line: what``."""
    tree = ast.parse(source, filename=filename)
    found = []
    bound: set[str] = set()  # local names bound to aggregation modules (or their members)

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _aggregation_path(alias.name):
                    continue
                if any(_private(p) for p in alias.name.split(".")):
                    report(node, f"import {alias.name}")
                bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not _aggregation_path(node.module):
                continue
            if any(_private(p) for p in node.module.split(".")):
                report(node, f"from {node.module} import ...")
            for alias in node.names:
                if _private(alias.name):
                    report(node, f"from {node.module} import {alias.name}")
                bound.add(alias.asname or alias.name)

    def names_aggregation(node: ast.AST) -> bool:
        """``node`` is a name bound to aggregation, an attribute of one, or
        ``sys.modules["aggregation..."]``."""
        while isinstance(node, ast.Attribute):
            node = node.value
        if isinstance(node, ast.Name):
            return node.id in bound
        return (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
            and _aggregation_path(node.slice.value)
        )

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and len(node.args) >= 2:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            name = node.args[1]
            if (
                called in BY_NAME
                and isinstance(name, ast.Constant)
                and isinstance(name.value, str)
                and _private(name.value)
                and names_aggregation(node.args[0])
            ):
                report(node, f"{called}(..., {name.value!r})")
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and _private(node.attr)
        ):
            report(node, f"{node.value.id}.{node.attr}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and DOTTED.match(node.value)
            and any(_private(p) for p in node.value.split("."))
        ):
            report(node, repr(node.value))
    return found


def _outside_files() -> list[Path]:
    """Every ``.py`` file of the repository outside the top-level ``aggregation/`` package
    (``tests/aggregation/`` is outside it), hidden folders and build outputs."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0] == "aggregation":
            continue
        if any(p.startswith(".") or p in SKIP_DIRS or p.endswith(".egg-info") for p in parts[:-1]):
            continue
        out.append(path)
    return out


def test_no_module_outside_aggregation_imports_a_private_name():
    files = _outside_files()
    folders = {p.relative_to(ROOT).parts[0] for p in files}
    assert {"maha", "benchmarks", "tests"} <= folders, folders  # the walk saw the tree
    assert Path(__file__).resolve() in files
    assert ROOT / "tests" / "aggregation" / "test_result.py" in files
    bad = [v for p in files for v in violations(p.read_text(), str(p.relative_to(ROOT)))]
    assert not bad, "private aggregation names used outside aggregation/:\n" + "\n".join(bad)


def test_the_checker_catches_every_kind_of_reach():
    planted = {
        "import aggregation._small": 1,
        "import aggregation.scale._common as c": 1,
        "from aggregation._validation import describe": 1,
        "from aggregation.scale._common import prepare": 1,
        "from aggregation.result import _index_batch": 1,
        "from aggregation import _version": 1,
        "import aggregation.scale.game as g\ng._certify(1)": 1,
        "from aggregation.scale import game\ngame._others": 1,
        "m.setattr('aggregation._small.CHUNK', 6)": 1,
        "from aggregation.scale._x import _y": 2,
        "import sys\nm.setattr(sys.modules['aggregation.finite.exact.x'], '_MASK', 3)": 1,
        "import aggregation.small_linalg as s\nmonkeypatch.setattr(s, '_POOL', None)": 1,
        "from aggregation.finite import exact\ngetattr(exact.vertices, '_on')": 1,
    }
    for source, count in planted.items():
        assert len(violations(source)) == count, (source, violations(source))


def test_the_checker_passes_public_and_unrelated_names():
    clean = [
        "import aggregation\nimport aggregation.__main__",
        "from aggregation.validation import check_int, describe",
        "from aggregation.scale.game import certify_profile",
        "import aggregation.small_linalg as small\nsmall.CHUNK",
        "from maha._private import _helper",  # another package's business
        "from ._local import _x",  # a relative import inside a test folder
        "import torch\ntorch._C",
        "x = 'aggregation.small_linalg.CHUNK'",
        "from aggregation import scale\nscale.__doc__",
        "import aggregation.small_linalg as small\nmonkeypatch.setattr(small, 'CHUNK', 6)",
        "import torch\nmonkeypatch.setattr(torch, '_C', None)",
        "import sys\nm.setattr(sys.modules['maha.fusion_ops'], '_CHUNK_ELEMENTS', 1)",
    ]
    for source in clean:
        assert violations(source) == [], (source, violations(source))
