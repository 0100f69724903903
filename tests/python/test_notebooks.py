"""The notebooks that need torch and transformers (metadata {"hisa": {"requires": [...]}}), which the notebook
runner (notebooks/run_notebooks.py, Debian's Python on CI) skips: their code cells run in order, as one script,
in a fresh interpreter with this one's PYTHONPATH, from notebooks/. Skipped where a requirement is missing."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def needs_modules(path):
    with open(path) as fh:
        return json.load(fh)["metadata"].get("hisa", {}).get("requires", [])


BOOKS = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if needs_modules(p))


def test_some_notebook_needs_torch():
    assert any("torch" in needs_modules(p) for p in BOOKS)


@pytest.mark.parametrize("book", BOOKS, ids=[p.name for p in BOOKS])
def test_notebook_runs(book):
    missing = [m for m in needs_modules(book) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    with open(book) as fh:
        cells = json.load(fh)["cells"]
    script = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    # The notebook runs from notebooks/: this interpreter's PYTHONPATH (often relative, build/python) made
    # absolute, so that it imports the same hisa.
    path = os.pathsep.join(os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)
    r = subprocess.run([sys.executable, "-c", script], cwd=NOTEBOOKS, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=path))
    assert r.returncode == 0, f"{book.name}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
