"""Run a script of ``benchmarks/`` in a fresh interpreter, as its smoke tests do."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_benchmark(
    name: str, *args: str, timeout: float = 600, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    """``python benchmarks/<name>.py args...``, output captured as text.

    With ``ok`` (the default) a nonzero exit fails the test with the script's own output.
    """
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if ok:
        assert done.returncode == 0, done.stdout[-1000:] + done.stderr[-3000:]
    return done


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (its ``peers`` package importable)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
