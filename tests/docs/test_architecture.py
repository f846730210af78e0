"""``docs/architecture.md`` stays true to the tree: what it names exists, what exists it names.

- Every file or folder the document names in backticks (``maha/scales.py``,
  ``aggregation/scale/``, ``_iterate.py``, ``_nplayer_*.py``) exists in the
  repository: a stale name fails.
- Every public module of ``aggregation/`` and ``maha/`` is on the package map:
  by its path, or by its file name where the map lists its folder's files one
  by one, or by its folder's row where the map describes the folder as a whole.
  A module added without a line on the map fails.
- The README links to the document.
"""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("aggregation", "maha")
SKIP = {".venv", "venv", ".git", "__pycache__", "build", "dist", "node_modules"}
NAMED = re.compile(r"`([\w*./-]+(?:\.py|\.md|/))`")


def _repo_files() -> list[str]:
    files = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in SKIP for part in rel.parts):
            continue
        files.append(rel.as_posix() + ("/" if path.is_dir() else ""))
    return files


def _names(text: str) -> set[str]:
    return set(NAMED.findall(text))


def _exists(name: str, files: list[str]) -> bool:
    """A repository path, or the tail of one (``scale/exact.py``, ``_iterate.py``, globs)."""
    return any(fnmatch(f, name) or fnmatch(f, "*/" + name) for f in files)


def test_every_named_path_exists():
    files = _repo_files()
    missing = sorted(name for name in _names(DOC.read_text()) if not _exists(name, files))
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_public_module_is_on_the_map():
    names = _names(DOC.read_text())
    unlisted = []
    for package in PACKAGES:
        for module in sorted((ROOT / package).rglob("*.py")):
            rel = module.relative_to(ROOT)
            if module.name.startswith("_") or "__pycache__" in rel.parts:
                continue
            folder = rel.parent.as_posix() + "/"
            files_listed = any(
                name.startswith(folder)
                and "/" not in name[len(folder) :].rstrip("/")
                and name != folder
                for name in names
            )  # the map lists this folder's files one by one
            if rel.as_posix() in names or (files_listed and module.name in names):
                continue
            if not files_listed and folder in names and folder not in ("aggregation/", "maha/"):
                continue
            unlisted.append(rel.as_posix())
    assert not unlisted, f"modules missing from docs/architecture.md's package map: {unlisted}"


def test_readme_links_the_architecture():
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()
