#!/usr/bin/env bash
# Long-run memory benchmark (docs/long-runs.md, "Memory"): peak host and GPU memory of `hisa sweep` and `hisa audit` on a dump of at least SIZE_GB (many layers,
# L = 131,072), against the bound stated in docs/long-runs.md ("Memory"). The same runs on a dump of a
# few layers show that the peak does not grow with the file.
# Usage: tests/bench/memory_bound.sh HISA [DIR] [SIZE_GB] [DEVICE]
set -euo pipefail
hisa=${1:?usage: memory_bound.sh HISA [DIR] [SIZE_GB] [DEVICE]}
dir=${2:-/tmp/hisa-mem}
size_gb=${3:-20}
device=${4:-cuda}
mkdir -p "$dir"
# One layer is 32 MiB of bf16 keys plus 4,096 queries × 64 heads × 128 dims of bf16 (64 MiB): 96 MiB.
layers=$(( (size_gb * 1024 + 95) / 96 ))
big=$dir/big-${layers}x128k.h5 small=$dir/small-4x128k.h5
for spec in "$big:$layers" "$small:4"; do
  f=${spec%:*} l=${spec#*:}
  [ -s "$f" ] || /usr/bin/time -f "synth $l layers: %e s" "$hisa" synth -o "$f" --profile mixed --seq-len 131072 \
    --layers "$l" --heads 64 --head-dim 128 --queries sample:4096 >/dev/null
done
ls -l "$big" "$small"
gpu_peak() {  # polls nvidia-smi while PID lives; prints the largest memory.used in MiB
  local pid=$1 peak=0 v
  while kill -0 "$pid" 2>/dev/null; do
    v=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | sort -n | tail -1)
    [ -n "$v" ] && [ "$v" -gt "$peak" ] && peak=$v
    sleep 0.2
  done
  echo "$peak"
}
for f in "$small" "$big"; do
  for cmd in "sweep $f --block-sizes 32,64,128,256 --max-queries 512 --no-kernel-times" \
             "audit $f --block-size 128 --blocks 64 --max-queries 64"; do
    # shellcheck disable=SC2086
    /usr/bin/time -f "%M" -o "$dir/rss.txt" "$hisa" $cmd --device "$device" --prefetch-mb "${PREFETCH_MB:-512}" --timings \
      >/dev/null 2>"$dir/err.txt" &
    pid=$!
    gpu=$(command -v nvidia-smi >/dev/null && gpu_peak $pid || echo "-")
    wait $pid
    printf "%-5s %-32s peak RSS %6d MiB  peak GPU memory used %s MiB  (%s)\n" "${cmd%% *}" "$(basename "$f")" \
      $(( $(cat "$dir/rss.txt") / 1024 )) "$gpu" "$(grep -m1 -E 'timings' "$dir/err.txt" | sed 's/ timings//')"
  done
done
