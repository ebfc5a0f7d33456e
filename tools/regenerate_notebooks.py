"""Re-execute every notebook at CI size, as a learner runs it, and store its outputs: the baseline
nbval checks. Then write the files made from those outputs: the README's figures and lesson 07's
precision table (``EXPORTS``). Nothing else writes them; running a lesson writes nothing here.

python tools/regenerate_notebooks.py                  # all notebooks
python tools/regenerate_notebooks.py notebooks/02_*   # some

Each notebook runs alone in an empty temporary folder, on ``lessons_lib`` installed from a wheel of
this checkout, without ``LESSONS_*`` variables (``tools/learner.py``, the settings nbval uses).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools.learner import install_wheel, learner_env  # noqa: E402  (one definition of the lessons' setting)

# file under the repository -> (notebook stem, id of the cell whose output it is)
EXPORTS = {
    "images/02_attention_weights.png": ("02_attention", "c45ece20"),
    "images/04_residual_std.png": ("04_blocks_and_gpt", "b609cfca"),
    "images/05_loss.png": ("05_training_loop", "ed32582f"),
    "images/07_float_formats.png": ("07_loving_the_floats", "fddf94a8"),
    "images/07_precision_summary.md": ("07_loving_the_floats", "eab9808a"),
    "images/08_lr_schedule.png": ("08_optimisation", "5a090a27"),
    "images/09_logit_waterfall.png": ("09_visualising_training", "4df6f579"),
}


# Where the lessons point at the course's own repository: the Colab badge, the Colab install cell,
# links to CONTRIBUTING.md. `[project.urls] Repository` in pyproject.toml is the one place it is set.
REPO_LINKS = re.compile(r"(colab\.research\.google\.com/github/|git\+https://github\.com/|https://github\.com/)"
                        r"[\w.-]+/[\w.-]+(?=/blob/main/(?:notebooks|CONTRIBUTING)|\")")  # fmt: skip


def set_repository(nb: Path) -> None:
    """Point ``nb``'s links to the course at the repository named in pyproject.toml."""
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    slug = url.removeprefix("https://github.com/")
    notebook = json.loads(nb.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        cell["source"] = [REPO_LINKS.sub(lambda m: m[1] + slug, line) for line in cell["source"]]
    nb.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(paths: list[str]) -> None:
    notebooks = [Path(p).resolve() for p in paths] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    with tempfile.TemporaryDirectory(prefix="regenerate-") as tmp:
        env = learner_env(install_wheel(Path(tmp, "site")))
        for nb in notebooks:
            t0 = time.perf_counter()
            folder = Path(tmp, nb.stem)
            folder.mkdir()
            set_repository(nb)
            shutil.copy(nb, folder / nb.name)
            subprocess.run(
                [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                 "--ExecutePreprocessor.timeout=1200", "--ExecutePreprocessor.kernel_name=python3", nb.name],
                check=True, env=env, cwd=folder,
            )  # fmt: skip
            settle_progress_bars(folder / nb.name)
            shutil.copy(folder / nb.name, nb)
            export(nb)
            print(f"{nb.name}: {time.perf_counter() - t0:.0f} s", flush=True)


def export(nb: Path) -> None:
    """Write the ``EXPORTS`` that come from ``nb``'s stored outputs (a PNG, or a cell's printed text)."""
    cells = {cell.get("id"): cell for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]}
    for target, (stem, cell_id) in EXPORTS.items():
        if stem != nb.stem:
            continue
        outputs = cells[cell_id]["outputs"]
        if target.endswith(".png"):
            png = next(o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {}))
            (ROOT / target).write_bytes(base64.b64decode(png))
        else:
            streams = ["".join(o["text"]) for o in outputs if o["output_type"] == "stream"]
            (ROOT / target).write_text("".join(streams))


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
