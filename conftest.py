"""How the test suite runs the lessons: as a learner does.

Each notebook is copied alone into an empty folder outside the checkout and run there by nbval, with
``lessons_lib`` installed from a wheel built from the checkout (not the editable install) and no
``LESSONS_*`` variable set: what Colab or a downloaded notebook sees. So a lesson that reads or
writes a path relative to the checkout, or needs a file the wheel does not ship, fails here.
``tools/regenerate_notebooks.py`` makes the stored outputs the same way (``tools/learner.py``).

After the session, the checkout must be as it was: a test or lesson that wrote into the repository
fails the run (``git status`` before and after).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from nbval.kernel import CURRENT_ENV_KERNEL_NAME, RunningKernel
from nbval.plugin import IPyNbFile

from tools.learner import install_wheel, learner_env

ROOT = Path(__file__).resolve().parent
SITE_ENV = "NOTEBOOK_SITE"  # where the wheel is installed (notebook_site)
STARTUP_ENV = "NOTEBOOK_IPYTHONDIR"  # set by `--simulate-mac` / `--simulate-cuda`: the kernels' startup

# Unit tests never wait for the network (assets.py); the notebook kernels do not get this.
os.environ.setdefault("LESSONS_OFFLINE", "1")
if "PYTEST_XDIST_WORKER" in os.environ:
    # `pytest -n auto` (the README's command): one process per core, so one thread per kernel,
    # inherited by the notebook kernels; a thread count set by the caller stands.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The notebooks that take longest, slowest first. Where pytest-xdist runs test files side by side
# (`-n auto`; `--dist loadfile --no-loadscope-reorder` in pyproject.toml keeps each file, so each
# notebook's kernel, in one worker), they start first, so the workers finish together.
SLOWEST_NOTEBOOKS = ["11_fine_tuning", "05_training_loop", "09_visualising_training", "08_optimisation",
                     "06_generating_text", "10_scaling_up"]  # fmt: skip

# Kernel startup code that makes a notebook run as on another machine, without its hardware. A tensor
# really sent to "mps" or "cuda" still raises here, so a lesson that sends one at CI size fails, and
# so does one that `spawn` (how macOS and Windows start processes) breaks.
SIMULATE = {
    "--simulate-mac": "an Apple GPU (MPS) reported present, processes started by spawn",
    "--simulate-cuda": "an NVIDIA GPU (CUDA) reported present",
}
SIMULATE_CODE = {
    "--simulate-mac": "import multiprocessing\nimport torch\ntorch.backends.mps.is_available = lambda: True\n"
                      "multiprocessing.set_start_method('spawn', force=True)\n",
    "--simulate-cuda": "import torch\ntorch.cuda.is_available = lambda: True\n",
}  # fmt: skip


def pytest_addoption(parser: pytest.Parser) -> None:
    for flag, what in SIMULATE.items():
        parser.addoption(flag, action="store_true", help=f"notebook kernels start with {what}")


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has set everything up
        return
    config._learner_tmp = tmp = Path(tempfile.mkdtemp(prefix="lessons-learner-"))
    code = "".join(SIMULATE_CODE[flag] for flag in SIMULATE if config.getoption(flag))
    if code:
        startup = tmp / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00_simulate.py").write_text(code)
        os.environ[STARTUP_ENV] = str(tmp / "ipython")
    config._git_status_before = _git_status()


def pytest_unconfigure(config: pytest.Config) -> None:
    for tmp in (getattr(config, "_learner_tmp", None), _built.get("site")):
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


_built: dict[str, Path] = {}


def notebook_site() -> str:
    """The wheel's install folder: built on the first notebook a process runs (not for unit tests)."""
    if SITE_ENV not in os.environ:
        _built["site"] = Path(tempfile.mkdtemp(prefix="lessons-wheel-site-"))
        os.environ[SITE_ENV] = str(install_wheel(_built["site"]))
    return os.environ[SITE_ENV]


def _git_status() -> set[str] | None:
    """``git status`` of the checkout, each changed file with a hash of its content (so a file that was
    already modified and is written again counts too); None outside a git checkout."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                              capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None  # not a git checkout (an sdist, say): nothing to compare
    status = set()
    for line in done.stdout.splitlines():
        path = ROOT / line[3:].split(" -> ")[-1]
        digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12] if path.is_file() else "gone"
        status.add(f"{line} ({digest})")
    return status


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if it changed the checkout: running lessons and tests writes nothing there."""
    before = getattr(session.config, "_git_status_before", None)
    after = _git_status() if before is not None else None
    if after is not None and after != before:
        session.config._repo_written = sorted(after - before)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for line in getattr(config, "_repo_written", []):
        terminalreporter.write_line(f"FAILED: the run wrote into the repository: {line}", red=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> LearnerNotebook | None:
    if file_path.suffix == ".ipynb" and file_path.parent.name == "notebooks":
        parent.config.option.nbval = False  # nbval's own collector would run it in the checkout
        return LearnerNotebook.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ:  # one at a time: the lessons' own order
        return
    first = {name: i for i, name in enumerate(SLOWEST_NOTEBOOKS)}
    items.sort(key=lambda item: first.get(item.path.stem, len(first)))  # stable: cells stay in order


class LearnerNotebook(IPyNbFile):
    """nbval's notebook, with its kernel started as a learner's: in an empty folder of its own, on
    the installed wheel, without ``LESSONS_*`` variables (``learner_env``)."""

    def setup(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=f"{self.path.stem}-"))
        shutil.copy(self.path, self.folder / self.path.name)
        env = learner_env(notebook_site())
        if STARTUP_ENV in os.environ:
            env["IPYTHONDIR"] = os.environ[STARTUP_ENV]
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)  # the kernel process inherits this process's environment
        try:
            timeout = self.config.option.nbval_kernel_startup_timeout
            self.kernel = RunningKernel(CURRENT_ENV_KERNEL_NAME, str(self.folder), timeout)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.setup_sanitize_files()

    def teardown(self) -> None:
        super().teardown()
        shutil.rmtree(self.folder, ignore_errors=True)
