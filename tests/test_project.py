"""Project hygiene: environment.yml and pyproject.toml list the same dependencies; commands run cleanly."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

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


@pytest.mark.parametrize("module", ["fineweb", "hellaswag"])
def test_command_modules_are_not_imported_twice(module):
    """``python -m lessons_lib.X`` warns (runpy) when importing the package already imported X."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-W", "error::RuntimeWarning", "-m", f"lessons_lib.{module}", "--help"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "usage:" in run.stdout, run.stderr
    assert "Warning" not in run.stderr
