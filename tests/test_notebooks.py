"""Structure of every lesson notebook (nbval separately re-executes them and compares outputs)."""

import itertools
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REPO = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_lessons_are_numbered_without_gaps():
    assert [int(p.name[:2]) for p in NOTEBOOKS] == list(range(len(NOTEBOOKS)))
    assert len(NOTEBOOKS) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_header_badge_setup_and_size(path):
    nb = cells(path)
    title = source(nb[0])
    slug = REPO.removeprefix("https://github.com/")
    assert title.startswith(f"# {path.name[:2]}")
    assert f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{path.name}" in title
    assert "CI size" in title and "full size" in title
    setup = next(source(c) for c in nb if c["cell_type"] == "code")
    assert f"git+{REPO}" in setup and "google.colab" in setup
    assert any("course.setup()" in source(c) for c in nb if c["cell_type"] == "code")
    assert any("Exercises" in source(c) for c in nb if c["cell_type"] == "markdown")
    text = "".join(map(source, nb))
    links = re.findall(r"https://github\.com/([\w.-]+/[\w.-]+)/blob/main/CONTRIBUTING", text)
    assert set(links) <= {slug}, "a link to another repository: run tools/regenerate_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_are_a_baseline(path):
    code = [c for c in cells(path) if c["cell_type"] == "code" and source(c).strip()]
    counts = [c["execution_count"] for c in code]
    assert None not in counts, "a code cell was never executed: nbval would compare nothing there"
    assert counts == list(range(1, len(code) + 1)), "not executed top to bottom in one kernel"
    for c in code:
        assert not any(o["output_type"] == "error" for o in c["outputs"]), source(c)[:80]


# plt.show(), a lessons_lib.viz plot_*(...) call, or a figure as the cell's value
DRAWS = re.compile(r"plt\.show\(\)|^(?!def ).*\bplot_\w+\(|^display\(fig|^fig$", re.M)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_is_stored_as_a_picture(path):
    """nbval never compares images, so a figure stored only as ``<Figure size ...>`` text goes unseen."""
    for c in cells(path):
        if c["cell_type"] != "code":
            continue
        shown = ("display_data", "execute_result")
        data = [o.get("data", {}) for o in c["outputs"] if o["output_type"] in shown]
        text_only = [d for d in data if "image/png" not in d]
        as_text = [d for d in text_only if "<Figure size" in "".join(d.get("text/plain", ""))]
        assert not as_text, f"a figure stored as text only: {source(c)[:80]!r}"
        if DRAWS.search(source(c)):
            assert any("image/png" in d for d in data), f"draws but stores no picture: {source(c)[:80]!r}"


# What a lesson cell must not do: save into the checkout, read a path relative to it, or carry the
# harness (figure metadata, environment variables of the tests, a device other than the lesson's).
HARNESS = re.compile(
    r"savefig|\.\./|[\"']data/|tests/data|metadata=|LESSONS_OFFLINE|environ\[|Generator\(device"
)
ONLY_IN = {"get_device(": "00"}  # lesson 00 shows the library's choice; lessons compute on course.device()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lesson_cells_hold_no_harness_and_no_paths_into_the_checkout(path):
    for c in cells(path):
        if c["cell_type"] != "code":
            continue
        assert not HARNESS.search(source(c)), f"{HARNESS.search(source(c))[0]!r} in {source(c)[:80]!r}"
        for call, lesson in ONLY_IN.items():
            assert call not in source(c) or path.name.startswith(lesson), f"{call} in {source(c)[:80]!r}"


def test_the_exports_of_the_regeneration_come_from_stored_outputs():
    """The README's figures (and lesson 07's table) are written by tools/regenerate_notebooks.py from
    the cells it names; each cell exists and holds that output, and every README figure is one."""
    from tools.regenerate_notebooks import EXPORTS

    readme_images = set(re.findall(r"\]\((images/[^)]+)\)", (ROOT / "README.md").read_text()))
    assert readme_images and readme_images <= set(EXPORTS)
    for target, (stem, cell_id) in EXPORTS.items():
        by_id = {c.get("id"): c for c in cells(ROOT / "notebooks" / f"{stem}.ipynb")}
        outputs = by_id[cell_id]["outputs"]
        kind = "image/png" if target.endswith(".png") else None
        stored = [kind in o.get("data", {}) if kind else o["output_type"] == "stream" for o in outputs]
        assert any(stored), target
        assert (ROOT / target).is_file(), f"{target}: run tools/regenerate_notebooks.py"
    assert {f"images/{f.name}" for f in (ROOT / "images").iterdir()} == set(EXPORTS)  # nothing stale


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_progress_bars_are_stored_as_their_last_state(path):
    """A stored ``\\r`` is a tqdm redraw: how many there are depends on the machine's speed."""
    for c in cells(path):
        outs = c.get("outputs", [])
        assert not any("\r" in "".join(o.get("text", "")) for o in outs), source(c)[:80]
        kinds = [(o["output_type"], o.get("name")) for o in outs]
        split = [a for a, b in itertools.pairwise(kinds) if a == b and a[0] == "stream"]
        assert not split, f"one stream stored in parts: {source(c)[:80]!r}"


def test_lessons_run_on_the_wheel_in_an_empty_folder_without_lessons_variables(tmp_path):
    """What a notebook kernel gets (conftest.py): lessons_lib from a wheel of this checkout, with its
    lesson data, imported in an empty folder, with no LESSONS_* variable and no fixed hash seed."""
    from tools.learner import install_wheel, learner_env

    site = install_wheel(tmp_path / "site")
    env = learner_env(site, {**os.environ, "LESSONS_SIZE": "ci", "PYTHONHASHSEED": "1"})
    assert not [k for k in env if k.startswith("LESSONS_") or k == "PYTHONHASHSEED"]
    (tmp_path / "empty").mkdir()
    code = (
        "import lessons_lib as L; print(L.__file__, len(L.load_shakespeare()), L.lesson_file('SOURCES.md'))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "empty", env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    module, chars, sources = done.stdout.split()
    assert Path(module).is_relative_to(site) and Path(sources).is_relative_to(site) and chars == "1115394"


def test_a_run_that_writes_into_the_checkout_fails(tmp_path):
    """conftest.py compares ``git status`` before and after a run: running tests and lessons writes
    nothing into the repository."""
    stray = ROOT / f"stray-{os.getpid()}.txt"
    (tmp_path / "test_writes.py").write_text(f"def test_writes():\n    open({str(stray)!r}, 'w').close()\n")
    try:
        args = ["-p", "conftest", "-p", "no:cacheprovider", "-q", str(tmp_path / "test_writes.py")]
        done = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=ROOT, capture_output=True,
                              text=True)  # fmt: skip
    finally:
        stray.unlink(missing_ok=True)
    assert done.returncode == 1 and f"the run wrote into the repository: ?? {stray.name}" in done.stdout
