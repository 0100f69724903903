"""Helpers shared by the notebooks: where the inputs are, how to read hisa's outputs, and max-pooling.

Large 0/1 selection masks (queries x positions) lose isolated tokens when matplotlib shrinks them to the
screen: it samples, so a single selected token among thousands usually vanishes. Every mask and every long
score row is therefore max-pooled to about the number of pixels first (`max_pool_2d`, `max_pool_1d`) and
drawn with interpolation='nearest'.

Runs on Debian's /usr/bin/python3 with apt packages only (python3-numpy, -pandas, -matplotlib, -h5py).
"""
import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

# Miss causes in the order of hisa's tables, with the colours of `hisa report`.
CAUSES = ["dilution", "near_cutoff", "forced", "near_tie"]
CAUSE_COLORS = {"dilution": "#c9483c", "near_cutoff": "#e0b04a", "forced": "#8e6bbf", "near_tie": "#9e9e9e"}
HISA_COLOR, BLOCK_COLOR, DSA_COLOR = "#3b6fb6", "#d9822b", "#2f7d3b"


def inputs_dir():
    """The folder make_inputs.py filled: $HISA_NOTEBOOK_INPUTS, else build/notebook-inputs."""
    return Path(os.environ.get("HISA_NOTEBOOK_INPUTS", HERE.parent / "build" / "notebook-inputs"))


def hisa_binary():
    """The hisa tool: $HISA_BINARY, else build/cli/hisa."""
    return str(os.environ.get("HISA_BINARY", HERE.parent / "build" / "cli" / "hisa"))


def run_hisa(*args):
    """Runs hisa with the given arguments; raises with its stderr when it fails. Returns stdout."""
    done = subprocess.run([hisa_binary(), *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"hisa {' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def load_audit(path):
    """`hisa audit --json` output: (the whole document, one row per layer with the main numbers)."""
    doc = json.loads(Path(path).read_text())
    rows = []
    for layer in doc["layers"]:
        row = {"layer": layer["layer"], "queries": layer["queries"]}
        for method in ("hisa", "block"):
            m = layer[method]
            for metric in ("iou", "recall", "coverage_ratio"):
                for stat in ("mean", "p5", "min"):
                    row[f"{method}_{metric}_{stat}"] = m[metric][stat]
            row[f"{method}_needle_recall"] = m["needle_recall_mean"]
        row["dsa_needle_recall"] = layer["flat"]["needle_recall_mean"]
        row["certified_share"] = layer["certified_share"]
        for cause in CAUSES:
            row[f"miss_{cause}"] = layer["miss_causes"][cause]
        rows.append(row)
    return doc, pd.DataFrame(rows).set_index("layer")


def read_selection(path, sample, layer):
    """`hisa select -o` output for one layer: (indices [Nq, width] with -1 padding, q_pos, query rows)."""
    with h5py.File(path, "r") as f:
        g = f[f"{sample}/layer_{layer}"]
        return g["indices"][()], g["q_pos"][()], g["query"][()]


def selection_mask(indices, length):
    """Boolean [Nq, length] mask of a padded selection."""
    mask = np.zeros((indices.shape[0], length), dtype=bool)
    rows, cols = np.nonzero(indices >= 0)
    mask[rows, indices[rows, cols]] = True
    return mask


def _pool_axis(values, size, axis, reduce):
    n = values.shape[axis]
    if n <= size:
        return values
    starts = (np.arange(size) * n) // size  # even split; every input lands in exactly one output
    return reduce.reduceat(values, starts, axis=axis)


def max_pool_1d(values, size):
    """Maximum of `values` over `size` (or fewer) equal runs, so isolated peaks survive downsampling."""
    return _pool_axis(np.asarray(values), size, 0, np.maximum)


def pool_starts(n, size):
    """Index of the first element of each run `max_pool_1d(values of length n, size)` takes."""
    return (np.arange(min(n, size)) * n) // min(n, size)


def max_pool_2d(mask, rows, cols):
    """Max-pools a 2-D array (e.g. a selection mask) down to at most rows x cols."""
    a = np.asarray(mask)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    return _pool_axis(_pool_axis(a, rows, 0, np.maximum), cols, 1, np.maximum)


def distance_bucket_range(label):
    """The inclusive distance range of one of hisa's distance buckets ('0', '1', '2-3', '4-7', ...)."""
    lo, _, hi = label.partition("-")
    return int(lo), int(hi or lo)
