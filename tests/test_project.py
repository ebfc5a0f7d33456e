"""Project hygiene: environment.yml and pyproject.toml list the same dependencies; commands run cleanly."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    wanted = {_name(r): r for r in project["dependencies"] + extras}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r): r for r in pip if not r.startswith("-e")}
    assert listed == wanted
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.replace("python", "") == project["requires-python"]


def test_ci_runs_the_readme_commands():
    """CI (.ci/run) runs the README's setup and test commands as written, so the README's test
    command cannot drift from what CI checks."""
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    setup_and_test = blocks[1]  # the README's second command: set up, then the whole test suite
    assert setup_and_test.startswith("bash tools/bootstrap.sh && ")
    ci = (ROOT / ".ci" / "run").read_text()
    for command in setup_and_test.split(" && "):
        assert re.search(rf"^{re.escape(command)}( 2>&1|$)", ci, re.M), command  # not a longer command


def _library_imports() -> dict[str, set[str]]:
    """Each lessons_lib module and the lessons_lib modules it imports (anywhere in its code)."""
    import ast

    graph = {}
    for path in sorted((ROOT / "lessons_lib").glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names |= {node.module} if node.module else {a.name for a in node.names}
        graph[path.stem] = names
    return graph


def test_every_module_has_its_test_file():
    missing = [
        m for m in _library_imports() if m != "__init__" and not (ROOT / "tests" / f"test_{m}.py").is_file()
    ]
    assert not missing


def test_no_library_module_imports_the_course_harness():
    assert [m for m, deps in _library_imports().items() if "course" in deps] == []


def test_library_modules_import_each_other_without_cycles():
    graph = {m: deps - {"__init__"} for m, deps in _library_imports().items() if m != "__init__"}
    done, path = set(), []

    def visit(m):
        assert m not in path, " -> ".join([*path[path.index(m) :], m])
        if m in done:
            return
        path.append(m)
        for d in sorted(graph[m]):
            visit(d)
        path.pop()
        done.add(m)

    for m in graph:
        visit(m)


@pytest.mark.parametrize("module", ["fineweb", "hellaswag"])
def test_command_modules_are_not_imported_twice(module):
    """``python -m lessons_lib.X`` warns (runpy) when importing the package already imported X."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-W", "error::RuntimeWarning", "-m", f"lessons_lib.{module}", "--help"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "usage:" in run.stdout, run.stderr
    assert "Warning" not in run.stderr
