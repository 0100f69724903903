#!/usr/bin/env bash
# The sweep benchmark (docs/benchmarks.md): a 61-layer sweep over 4 block sizes of a 128K-token dump with 1,024 sampled queries
# per layer, file reading included (target: under 20 s on one H100/H200). Writes the dump once (about 3 GiB,
# bf16, H = 64, D = 128) and reports the sweep's wall clock, where it went, and peak memory.
# Usage: tests/bench/sweep_61_layers.sh HISA [DIR] [extra sweep flags...]
set -euo pipefail
hisa=${1:?usage: sweep_61_layers.sh HISA [DIR] [flags...]}
dir=${2:-/tmp/hisa-bench}
shift $(( $# >= 2 ? 2 : 1 ))
dump=$("$(dirname "$0")/dump_61_layers.sh" "$hisa" "$dir")
ls -l "$dump"
sync
/usr/bin/time -f "sweep: %e s wall, %M KiB peak RSS" \
  "$hisa" sweep "$dump" --block-sizes 32,64,128,256 --max-queries 1024 --timings --json "$dir/sweep.json" "$@" >"$dir/sweep.txt"
head -3 "$dir/sweep.txt"
grep -A3 "^Uniform" "$dir/sweep.txt" | head -4
