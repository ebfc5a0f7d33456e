"""Re-execute every notebook in place, top to bottom, at CI size: the stored outputs nbval checks.

python tools/regenerate_notebooks.py                  # all notebooks
python tools/regenerate_notebooks.py notebooks/02_*   # some
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from conftest import NOTEBOOK_ENV  # noqa: E402  (one definition of the notebook environment)


def main(paths: list[str]) -> None:
    notebooks = [Path(p).resolve() for p in paths] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    env = {**os.environ, **NOTEBOOK_ENV}
    for nb in notebooks:
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
             "--ExecutePreprocessor.timeout=1200", "--ExecutePreprocessor.kernel_name=python3", str(nb)],
            check=True, env=env, cwd=nb.parent,
        )  # fmt: skip
        print(f"{nb.name}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
