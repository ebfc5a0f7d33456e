"""Test-session settings, inherited by the notebook kernels nbval starts.

Stored notebook outputs are made with exactly these settings (``tools/regenerate_notebooks.py``
imports them from here), so a comparison fails when the code changes, not the machine or network.
"""

import os

NOTEBOOK_ENV = {
    "LESSONS_OFFLINE": "1",  # PyPI-carried assets only: the same data with or without internet
    "LESSONS_SIZE": "ci",  # stored outputs are the CI size
    "LESSONS_DEVICE": "cpu",  # ... made on a CPU
    "PYTHONHASHSEED": "0",
}
os.environ.update(NOTEBOOK_ENV)
