"""The proofs/ folder: every statement names existing tests and its examples run.

Each ``proofs/NN_*.md`` must have the sections Statement, Assumptions, Proof,
at least one ``Checked by: tests/<file>.py::<test>`` line naming a test
function that exists (found with ``ast``, not by importing), and ``python``
code blocks whose ``>>>`` examples run as doctests (blocks of one file share
one namespace, in order). ``proofs/README.md`` must link every statement.
"""

from __future__ import annotations

import ast
import doctest
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROOFS = ROOT / "proofs"
STATEMENTS = sorted(p for p in PROOFS.glob("[0-9][0-9]_*.md"))
CHECKED_BY = re.compile(r"^Checked by: (tests/[\w/]+\.py)::([\w:]+)\s*$", re.MULTILINE)
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _test_names(path: Path) -> set[str]:
    """``name`` for module-level test functions and ``Class::name`` for methods."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(f"{node.name}::{item.name}")
    return {n for n in names if n.split("::")[-1].startswith("test")}


def test_there_are_at_least_nine_statements():
    assert len(STATEMENTS) >= 9, [p.name for p in STATEMENTS]


@pytest.mark.parametrize("path", STATEMENTS, ids=lambda p: p.stem)
def test_statement_has_sections(path):
    text = path.read_text()
    for section in ("## Statement", "## Assumptions", "## Proof"):
        assert section in text, f"{path.name} lacks a '{section}' section"
    assert BLOCK.search(text), f"{path.name} has no ```python example block"


@pytest.mark.parametrize("path", STATEMENTS, ids=lambda p: p.stem)
def test_checked_by_names_existing_tests(path):
    refs = CHECKED_BY.findall(path.read_text())
    assert refs, f"{path.name} has no 'Checked by: tests/<file>.py::<test>' line"
    for file, name in refs:
        target = ROOT / file
        assert target.is_file(), f"{path.name} names {file}, which does not exist"
        names = _test_names(target)
        assert name in names, f"{path.name} names {file}::{name}, not among {sorted(names)}"


def test_readme_indexes_every_statement():
    readme = (PROOFS / "README.md").read_text()
    for path in STATEMENTS:
        assert f"]({path.name})" in readme, f"proofs/README.md does not link {path.name}"


def test_checked_by_parser_rejects_missing_tests(tmp_path):
    """The check above can fail: a reference to a missing test is caught."""
    fake = tmp_path / "test_fake.py"
    fake.write_text(
        "def test_real():\n    pass\n\nclass TestBox:\n    def test_inner(self):\n        pass\n"
    )
    assert _test_names(fake) == {"test_real", "TestBox::test_inner"}
    text = "Checked by: tests/test_fake.py::test_missing\n"
    ((_, name),) = CHECKED_BY.findall(text)
    assert name not in _test_names(fake)


def run_markdown_doctests(path: Path) -> doctest.TestResults:
    """Run the ``>>>`` examples of every ```python block of ``path``, in one namespace."""
    text = path.read_text()
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs: dict = {"__name__": f"proofs.{path.stem}"}
    for match in BLOCK.finditer(text):
        lineno = text[: match.start()].count("\n") + 1
        test = parser.get_doctest(match.group(1), globs, f"{path.name}:{lineno}", str(path), lineno)
        runner.run(test, clear_globs=False)
        globs = test.globs  # DocTest copies its globals: carry them to the next block
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("path", STATEMENTS, ids=lambda p: p.stem)
def test_numeric_examples_run(path):
    result = run_markdown_doctests(path)
    assert result.attempted > 0, f"{path.name} has no >>> examples"
    assert result.failed == 0, (
        f"{result.failed} doctest example(s) of {path.name} failed (see above)"
    )


def test_doctest_runner_catches_a_wrong_example(tmp_path):
    """The doctest check can fail: a wrong expected value is reported."""
    bad = tmp_path / "99_bad.md"
    bad.write_text("```python\n>>> 1 + 1\n3\n\n```\n")
    result = run_markdown_doctests(bad)
    assert result.attempted == 1 and result.failed == 1
