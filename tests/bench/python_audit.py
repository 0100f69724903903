#!/usr/bin/env python3
"""import hisa against the command line on the same layers: `hisa audit DUMP --json` (a process that reads the
file itself) beside h5py reading the same file into arrays and `hisa.Audit` auditing them (what a notebook does),
side by side in one run on one machine. Checks that both give the same JSON (but the source's name) and prints
the wall clocks and their ratio, so that the Python path's overhead (array checks, decoding, the copy into the
engine) stays visible. Not a timed test: a benchmark (docs/benchmarks.md).

usage: PYTHONPATH=build/python python3 tests/bench/python_audit.py [--hisa build/cli/hisa] [--device cpu]
           [--seq-len 16384] [--layers 4] [--queries sample:256] [--dir /tmp/hisa-python-bench]
"""
import argparse
import json
import os
import subprocess
import time

import h5py
import numpy as np

import hisa


def layer_arrays(group):
    """A layer group as a user reads it with h5py (which reads the dump's bfloat16 as float32, exactly)."""
    arrays = {name: np.asarray(group[name][...], dtype=np.float32) for name in ("q", "k")}
    for name in ("w", "q_pos", "k_start", "k_scale"):
        if name in group:
            arrays[name] = group[name][...]
    return arrays


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hisa", default="build/cli/hisa")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seq-len", type=int, default=16384)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--queries", default="sample:256")
    ap.add_argument("--dir", default="/tmp/hisa-python-bench")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    dump = os.path.join(a.dir, f"niah-{a.seq_len}-{a.layers}.h5")
    if not os.path.exists(dump):
        subprocess.run([a.hisa, "synth", "-o", dump, "--profile", "niah", "--seq-len", str(a.seq_len), "--layers",
                        str(a.layers), "--queries", a.queries], check=True, capture_output=True)
    with open(dump, "rb") as fh:  # the page cache warm for both
        while fh.read(1 << 24):
            pass
    flags = ["--device", a.device, "--block-size", "128", "--blocks", "64"]
    cli_json = os.path.join(a.dir, "cli.json")
    start = time.perf_counter()
    subprocess.run([a.hisa, "audit", dump, *flags, "--json", cli_json], check=True, capture_output=True)
    cli_s = time.perf_counter() - start

    start = time.perf_counter()
    with h5py.File(dump, "r") as f:
        topk = int(f.attrs["index_topk"])
        # worst=0, pictures=0: `hisa audit`'s defaults (hisa.Audit's are the report's).
        audit = hisa.Audit(topk=topk, block_size=128, blocks=64, device=a.device, worst=0, pictures=0)
        layers = sorted({int(name.split("_")[1]) for s in f.values() for name in s})
        for layer in layers:
            for sample_name, s in f.items():
                if f"layer_{layer}" not in s:
                    continue
                needle = None
                if "needle_begin" in s.attrs:
                    needle = (int(s.attrs["needle_begin"]), int(s.attrs["needle_end"]))
                audit.add(**layer_arrays(s[f"layer_{layer}"]), layer=layer, sample=sample_name, needle=needle)
    got = audit.result()
    py_s = time.perf_counter() - start

    with open(cli_json) as fh:
        want = json.load(fh)
    got.pop("files"), want.pop("files")
    same = got == want
    print(f"dump: {dump} ({os.path.getsize(dump) / 2**20:.0f} MiB, {len(layers)} layers)")
    print(f"hisa audit --device {a.device}: {cli_s:.2f} s (a process: reads, decodes, audits, writes JSON)")
    print(f"h5py + hisa.Audit: {py_s:.2f} s (reads with h5py, checks and decodes the arrays, audits)")
    print(f"ratio (Python / CLI): {py_s / cli_s:.2f}; same JSON but the source's name: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
