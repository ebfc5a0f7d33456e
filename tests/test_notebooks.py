"""Structure of every lesson notebook (nbval separately re-executes them and compares outputs)."""

import itertools
import json
import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_uncompared_cells_say_why(path):
    """A cell nbval does not compare starts with a comment giving the reason (timings, hardware facts)."""
    for c in cells(path):
        if "nbval-ignore-output" in c.get("metadata", {}).get("tags", []):
            first = source(c).lstrip().splitlines()[0]
            assert first.startswith("# ") and "not compared" in first, source(c)[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lessons_do_not_read_test_fixtures(path):
    """Lesson data lives in notebooks/data/; tests/data/ belongs to the tests."""
    code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
    assert not [i for i, s in enumerate(code) if "tests/data" in s]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_progress_bars_are_stored_as_their_last_state(path):
    """A stored ``\\r`` is a tqdm redraw: how many there are depends on the machine's speed."""
    for c in cells(path):
        outs = c.get("outputs", [])
        assert not any("\r" in "".join(o.get("text", "")) for o in outs), source(c)[:80]
        kinds = [(o["output_type"], o.get("name")) for o in outs]
        split = [a for a, b in itertools.pairwise(kinds) if a == b and a[0] == "stream"]
        assert not split, f"one stream stored in parts: {source(c)[:80]!r}"
