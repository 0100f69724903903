#!/usr/bin/env python3
"""Builds everything the notebooks read, from small synthetic demo dumps, into one folder.

usage: make_inputs.py [--hisa build/cli/hisa] [--out build/notebook-inputs]

  demo.h5                 `hisa synth` niah dump: 8K tokens, 3 layers (local, retrieval, spiky), 64 queries
  audit.json, layers.csv, queries.csv   `hisa audit` of it (--json, --csv, --per-query, --worst 5)
  explain.json            `hisa explain --json` of the worst query of its least faithful layer
  select_flat.h5, select_hisa.h5        `hisa select` of DSA and of HISA
  niah/manifest.csv       a grid of small niah dumps over context length x needle depth, each audited
  settings.json           the selection options used, for the notebooks to print

Takes a few seconds on two cores. To look at your own dumps, point the notebooks at a folder with the
same files (HISA_NOTEBOOK_INPUTS), or edit their first cell.
"""
import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

DEMO = ["--profile", "niah", "--seq-len", "8192", "--layers", "3", "--heads", "8", "--head-dim", "64",
        "--topk", "256", "--queries", "sample:64"]
SELECTION = ["--block-size", "64", "--blocks", "16"]
# The NIAH grid: small and fast; late queries (the last 8 positions) are the ones that look for the needle.
GRID_LENGTHS, GRID_DEPTHS = [2048, 4096, 8192], [10, 50, 90]
GRID_DUMP = ["--profile", "niah", "--layers", "3", "--heads", "8", "--head-dim", "128", "--topk", "256",
             "--queries", "last:8"]
GRID_SELECTION = ["--block-size", "64", "--blocks", "8"]


def run(hisa, *args):
    done = subprocess.run([hisa, *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"make_inputs: hisa {' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hisa", default=str(HERE.parent / "build" / "cli" / "hisa"))
    ap.add_argument("--out", default=str(HERE.parent / "build" / "notebook-inputs"))
    a = ap.parse_args()
    out = Path(a.out)
    (out / "niah").mkdir(parents=True, exist_ok=True)

    demo = out / "demo.h5"
    run(a.hisa, "synth", "-o", demo, *DEMO)
    run(a.hisa, "audit", demo, *SELECTION, "--device", "cpu", "--worst", "5", "--json", out / "audit.json",
        "--csv", out / "layers.csv", "--per-query", out / "queries.csv")
    audit = json.loads((out / "audit.json").read_text())
    worst_layer = min(audit["layers"], key=lambda l: l["hisa"]["iou"]["mean"])
    worst = worst_layer["worst"][0]
    run(a.hisa, "explain", demo, "--sample", worst["sample"], "--layer", worst_layer["layer"], "--query",
        worst["query"], *SELECTION, "--json", out / "explain.json")
    for method in ("flat", "hisa"):
        run(a.hisa, "select", demo, "--method", method, *SELECTION, "--device", "cpu", "-o", out / f"select_{method}.h5")

    rows = []
    for length in GRID_LENGTHS:
        for depth in GRID_DEPTHS:
            dump = out / "niah" / f"L{length}_d{depth}.h5"
            report = out / "niah" / f"L{length}_d{depth}.json"
            run(a.hisa, "synth", "-o", dump, "--seq-len", length, "--depth", depth, *GRID_DUMP)
            run(a.hisa, "audit", dump, *GRID_SELECTION, "--device", "cpu", "--json", report)
            rows.append({"context_length": length, "depth_percent": depth, "dump": dump.name, "audit_json": report.name})
    with open(out / "niah" / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    (out / "settings.json").write_text(json.dumps({
        "demo_dump": demo.name, "demo_synth": DEMO, "selection": SELECTION,
        "grid_dump": GRID_DUMP, "grid_selection": GRID_SELECTION}, indent=2))
    print(f"make_inputs: wrote the notebook inputs to {out}")


if __name__ == "__main__":
    main()
