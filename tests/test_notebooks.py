"""Structure of every lesson notebook (nbval separately re-executes them and compares outputs)."""

import json
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
    assert any("run_size()" in source(c) for c in nb if c["cell_type"] == "code")
    assert any("Exercises" in source(c) for c in nb if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_are_a_baseline(path):
    code = [c for c in cells(path) if c["cell_type"] == "code" and source(c).strip()]
    counts = [c["execution_count"] for c in code]
    assert None not in counts, "a code cell was never executed: nbval would compare nothing there"
    assert counts == list(range(1, len(code) + 1)), "not executed top to bottom in one kernel"
    for c in code:
        assert not any(o["output_type"] == "error" for o in c["outputs"]), source(c)[:80]
