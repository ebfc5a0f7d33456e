"""Re-execute every notebook in place, top to bottom, at CI size: the stored outputs nbval checks.

python tools/regenerate_notebooks.py                  # all notebooks
python tools/regenerate_notebooks.py notebooks/02_*   # some
"""

from __future__ import annotations

import json
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
        settle_progress_bars(nb)
        print(f"{nb.name}: {time.perf_counter() - t0:.0f} s", flush=True)


def settle_progress_bars(nb: Path) -> None:
    """Store each progress bar as its last state, the one JupyterLab shows: tqdm redraws a line with
    ``\r`` as often as the machine's speed lets it, and every redraw would be stored otherwise."""
    notebook = json.loads(nb.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        outputs = []
        for out in cell.get("outputs", []):
            prev = outputs[-1] if outputs else {}
            if out["output_type"] == prev.get("output_type") == "stream" and prev["name"] == out["name"]:
                prev["text"] = ["".join(prev["text"]) + "".join(out["text"])]
            else:
                outputs.append(out)
        for out in outputs:
            if out["output_type"] == "stream":
                lines = "".join(out["text"]).split("\n")
                text = "\n".join(([s for s in line.split("\r") if s] or [""])[-1] for line in lines)
                out["text"] = text.splitlines(keepends=True)
        if "outputs" in cell:
            cell["outputs"] = outputs
    nb.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
