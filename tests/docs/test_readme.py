"""The README's promises: two commands first, and every Python snippet runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_exactly_two_commands_that_install_the_cpu_torch():
    first = _blocks("bash")[0].strip().splitlines()
    assert len(first) == 2, first
    install_and_demo, install_and_test = first
    for command in first:
        assert "torch==2.13.0" in command
        assert command.startswith("python3 -m venv .venv")
    assert install_and_demo.endswith("maha demo")
    assert "pytest" in install_and_test


def test_readme_test_command_is_what_ci_runs():
    test_command = _blocks("bash")[0].strip().splitlines()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    pytest_call = test_command.split("&&")[-1].strip()
    install = re.search(r"pip install (.*?) &&", test_command).group(1).strip()
    assert pytest_call in ci
    assert install in ci


def test_pyproject_declares_a_torch_range_for_users():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=2.2"' in pyproject


def test_python_snippets_run_top_to_bottom(tmp_path, monkeypatch):
    blocks = _blocks("python")
    assert blocks, "the README's API tour has no Python snippets"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    # Snippets build on each other, as a reader would run them top to bottom.
    for index, code in enumerate(blocks):
        exec(compile(code, f"README.md[python block {index}]", "exec"), namespace)


def test_results_section_is_written_by_the_report_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    assert report.updated_readme(README) == README, (
        "README.md's Results section differs from the benchmarks' outputs: "
        "run python benchmarks/report.py"
    )
