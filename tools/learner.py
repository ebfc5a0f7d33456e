"""How a lesson runs in the tests and the regeneration: as a learner runs it (``conftest.py``,
``tools/regenerate_notebooks.py``): ``lessons_lib`` from a wheel of the checkout, no ``LESSONS_*``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def install_wheel(dest: Path) -> Path:
    """Build a wheel from a copy of the checkout (the build writes nothing here) and install it
    into ``dest`` without dependencies; returns ``dest``, the folder to put on ``PYTHONPATH``."""
    with tempfile.TemporaryDirectory(prefix="lessons-wheel-") as tmp:
        src = Path(tmp, "src")
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, src / name)
        skip = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / "lessons_lib", src / "lessons_lib", ignore=skip)
        pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp, str(src)],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        wheel = next(Path(tmp).glob("lessons_lib-*.whl"))
        subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(dest), str(wheel)],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return dest


def learner_env(site: str | Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a lesson runs in: ``base`` (default: this process's) without any ``LESSONS_*``
    variable or fixed hash seed, with the installed wheel first on the path."""
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if not k.startswith("LESSONS_") and k != "PYTHONHASHSEED"}
    env["PYTHONPATH"] = str(site)
    return env
