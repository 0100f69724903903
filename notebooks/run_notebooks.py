#!/usr/bin/env python3
"""Executes every notebook against inputs made from the demo dumps; fails on any error.

usage: run_notebooks.py [--hisa build/cli/hisa] [--work build/notebooks] [NOTEBOOK.ipynb ...]

1. Checks that the committed notebooks carry no outputs (they are committed clean).
2. Builds the inputs (make_inputs.py) into WORK/inputs.
3. Runs each notebook in a fresh python3 kernel (Debian's ipykernel, /usr/bin/python3) with nbclient and
   writes the executed copy to WORK/executed/ — never into notebooks/. A notebook whose metadata
   {"hisa": {"requires": [...]}} names a module this Python cannot import is skipped, by name.
Exit status 1 when any notebook fails, with the failing cell's error.
"""
import argparse
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent
ANSI_COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # IPython colours tracebacks; logs read better without


def outputs_in(path):
    book = nbformat.read(path, as_version=4)
    return [i for i, c in enumerate(book.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hisa", default=str(HERE.parent / "build" / "cli" / "hisa"))
    ap.add_argument("--work", default=str(HERE.parent / "build" / "notebooks"))
    ap.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    ap.add_argument("notebooks", nargs="*", help="default: every notebooks/*.ipynb")
    a = ap.parse_args()
    books = [Path(p).resolve() for p in a.notebooks] or sorted(HERE.glob("*.ipynb"))
    work = Path(a.work).resolve()
    inputs, executed = work / "inputs", work / "executed"
    executed.mkdir(parents=True, exist_ok=True)

    failures = []
    for book in books:
        cells = outputs_in(book)
        if cells:
            failures.append(f"{book.name}: committed with outputs in cells {cells}; clear them before committing")

    subprocess.run([sys.executable, str(HERE / "make_inputs.py"), "--hisa", a.hisa, "--out", str(inputs)], check=True)
    # The kernel inherits this environment: hisa_plots finds the inputs and the binary through it.
    os.environ["HISA_NOTEBOOK_INPUTS"] = str(inputs)
    os.environ["HISA_BINARY"] = str(Path(a.hisa).resolve())
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # quiets ipykernel's debugger notice on every start
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # write nothing next to the notebooks
    for book in books:
        nb = nbformat.read(book, as_version=4)
        # A notebook that needs what this Python lacks (torch, transformers, the built module on PYTHONPATH)
        # is skipped, by name: tests/python/test_notebooks.py runs it where they are (the GPU machine).
        missing = [m for m in nb.metadata.get("hisa", {}).get("requires", []) if importlib.util.find_spec(m) is None]
        if missing:
            print(f"skip   {book.name} (needs {', '.join(missing)})", flush=True)
            continue
        start = time.monotonic()
        client = NotebookClient(nb, timeout=a.timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}})
        try:
            client.execute()
            status = "ok"
        except CellExecutionError as e:
            failures.append(f"{book.name}: {ANSI_COLOURS.sub('', str(e))}")
            status = "FAILED"
        except Exception as e:  # kernel died, timeout, bad JSON: a failure too
            failures.append(f"{book.name}: {type(e).__name__}: {e}")
            status = "FAILED"
        nbformat.write(nb, executed / book.name)
        print(f"{status:6s} {book.name} ({time.monotonic() - start:.1f} s) -> {executed / book.name}", flush=True)
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
