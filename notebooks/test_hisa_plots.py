#!/usr/bin/env python3
"""Checks the notebooks' helpers: max-pooling keeps isolated tokens, masks match selections."""
import sys
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import hisa_plots as hp  # noqa: E402


def test_max_pool_keeps_an_isolated_token():
    mask = np.zeros((300, 100_003), dtype=bool)
    mask[123, 54_321] = True
    pooled = hp.max_pool_2d(mask, 100, 800)
    assert pooled.shape == (100, 800)
    assert pooled.sum() == 1
    r, c = np.argwhere(pooled)[0]
    assert r == 123 * 100 // 300 and abs(c - 54_321 * 800 // 100_003) <= 1


def test_max_pool_1d_keeps_peaks_and_small_inputs():
    row = np.zeros(10_000)
    row[7] = 3.0
    pooled = hp.max_pool_1d(row, 50)
    assert pooled.shape == (50,) and pooled[0] == 3.0 and pooled[1:].max() == 0
    assert hp.max_pool_1d(np.arange(5.0), 50).tolist() == [0, 1, 2, 3, 4]
    assert hp.pool_starts(10_000, 50)[1] == 200 and len(hp.pool_starts(5, 50)) == 5


def test_selection_mask_ignores_padding():
    idx = np.array([[0, 3, -1], [2, -1, -1]], dtype=np.int32)
    m = hp.selection_mask(idx, 5)
    assert m.tolist() == [[True, False, False, True, False], [False, False, True, False, False]]


def test_distance_buckets():
    assert hp.distance_bucket_range("0") == (0, 0)
    assert hp.distance_bucket_range("4-7") == (4, 7)


if __name__ == "__main__":
    for name, fn in sorted(globals().items()):
        if name.startswith("test_"):
            fn()
            print("ok", name)
