"""Test-session settings, inherited by the notebook kernels nbval starts.

Stored notebook outputs are made with exactly these settings (``tools/regenerate_notebooks.py``
imports them from here), so a comparison fails when the code changes, not the machine or network.
"""

import os

import pytest

NOTEBOOK_ENV = {
    "LESSONS_OFFLINE": "1",  # PyPI-carried assets only: the same data with or without internet
    "LESSONS_SIZE": "ci",  # stored outputs are the CI size
    "LESSONS_DEVICE": "cpu",  # ... made on a CPU
    "PYTHONHASHSEED": "0",
}
os.environ.update(NOTEBOOK_ENV)
if "PYTEST_XDIST_WORKER" in os.environ:
    # `pytest -n auto` (the README's command): one process per core, so one thread per kernel,
    # inherited by the notebook kernels; a thread count set by the caller stands.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The notebooks that take longest, slowest first. Where pytest-xdist runs test files side by side
# (`-n auto`; `--dist loadfile --no-loadscope-reorder` in pyproject.toml keeps each file, so each
# notebook's kernel, in one worker), they start first, so the workers finish together.
SLOWEST_NOTEBOOKS = ["11_fine_tuning", "05_training_loop", "09_visualising_training", "08_optimisation",
                     "06_generating_text", "10_scaling_up"]  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ:  # one at a time: the lessons' own order
        return
    first = {name: i for i, name in enumerate(SLOWEST_NOTEBOOKS)}
    items.sort(key=lambda item: first.get(item.path.stem, len(first)))  # stable: cells stay in order
