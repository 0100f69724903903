#!/usr/bin/env bash
# CPU thread scaling of the audit (docs/benchmarks.md, target of the audit-speed issue): README command one's 32K
# demo dump audited with --threads 1 and --threads 2, alternately, REPS times each, on two cores only (taskset, so a
# larger machine stands in for a 2-core one), and the ratio of the median wall clocks. Target: >= 1.8.
# Usage: tests/bench/cpu_thread_scaling.sh HISA [CORES (default 0,1)] [REPS (default 9)] [HISA_BASELINE]
# With HISA_BASELINE (another build), both binaries are timed in the same loop and both ratios printed.
set -euo pipefail
hisa=${1:?usage: cpu_thread_scaling.sh HISA [CORES] [REPS] [HISA_BASELINE]}
cores=${2:-0,1}
reps=${3:-9}
baseline=${4:-}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$hisa" synth -o "$dir/niah-32k.h5" --profile niah --seq-len 32768 >/dev/null 2>&1
cat "$dir/niah-32k.h5" >/dev/null
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
binaries=("$hisa")
[ -n "$baseline" ] && binaries+=("$baseline")
taskset -c "$cores" "$hisa" audit "$dir/niah-32k.h5" --threads 2 >/dev/null 2>&1  # warm-up
for ((r = 0; r < reps; ++r)); do
  for b in "${!binaries[@]}"; do
    for t in 1 2; do
      /usr/bin/time -f "%e" -o "$dir/t" taskset -c "$cores" "${binaries[$b]}" audit "$dir/niah-32k.h5" --threads $t >/dev/null 2>&1
      cat "$dir/t" >>"$dir/times_${b}_$t"
    done
  done
done
for b in "${!binaries[@]}"; do
  one=$(median <"$dir/times_${b}_1")
  two=$(median <"$dir/times_${b}_2")
  echo "${binaries[$b]} on cores $cores: --threads 1 median $one s, --threads 2 median $two s ($reps runs each): $(awk "BEGIN{printf \"%.2f\", $one / $two}")x"
  echo "  --threads 1: $(tr '\n' ' ' <"$dir/times_${b}_1")"
  echo "  --threads 2: $(tr '\n' ' ' <"$dir/times_${b}_2")"
done
