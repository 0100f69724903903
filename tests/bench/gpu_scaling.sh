#!/usr/bin/env bash
# Multi-GPU scaling benchmark (docs/long-runs.md): speedup of `hisa sweep` and `hisa audit` over one GPU when the (sample, layer) units are spread over
# 2 and 4 GPUs (--gpus), on a many-layer 128K dump; outputs must be byte-identical whatever the GPU count.
# Usage: tests/bench/gpu_scaling.sh HISA [DIR]   (the dump is dump_61_layers.sh's, shared with the other benchmarks)
set -euo pipefail
hisa=${1:?usage: gpu_scaling.sh HISA [DIR]}
dir=${2:-/tmp/hisa-bench}
dump=$("$(dirname "$0")/dump_61_layers.sh" "$hisa" "$dir" 2>/dev/null)
n=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
echo "GPUs: $n x $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
run() {  # run NAME GPUS ARGS...: wall seconds of one run, outputs kept as NAME.*
  local name=$1 gpus=$2
  shift 2
  local t0 t1
  t0=$(date +%s.%N)
  "$hisa" "$@" --device cuda --gpus "$gpus" --json "$dir/$name.json" --csv "$dir/$name.csv" >"$dir/$name.txt" 2>"$dir/$name.err"
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
sweep=(sweep "$dump" --block-sizes 32,64,128,256 --max-queries 1024 --no-kernel-times)
audit=(audit "$dump" --block-size 128 --blocks 64 --max-queries 256)
cat "$dump" >/dev/null  # the file in the page cache for every run alike
for cmd in sweep audit; do
  declare -n args=$cmd
  base=""
  for gpus in 0 0,1 0,1,2,3; do
    count=$(( $(echo "$gpus" | tr -cd , | wc -c) + 1 ))
    [ "$count" -le "$n" ] || continue
    secs=$(run "$cmd-$count" "$gpus" "${args[@]}" --timings)
    [ -n "$base" ] || base=$secs
    same=identical
    for f in csv txt; do cmp -s "$dir/$cmd-1.$f" "$dir/$cmd-$count.$f" || same="DIFFERENT ($f)"; done
    # The JSON holds the run's timings (--timings): everything else must match.
    python3 -c 'import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
for j in (a, b): j.pop("timings_seconds", None)
sys.exit(a != b)' "$dir/$cmd-1.json" "$dir/$cmd-$count.json" || same="DIFFERENT (json)"
    printf "%-5s %d GPU(s): %7.2f s  speedup %.2fx  outputs vs 1 GPU: %s\n" "$cmd" "$count" "$secs" \
      "$(awk -v a="$base" -v b="$secs" 'BEGIN { print a / b }')" "$same"
    grep -E "I/O: |compute: all|summed over workers: " "$dir/$cmd-$count.err" | sed 's/^/      /' || true
  done
done
