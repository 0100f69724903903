#!/usr/bin/env bash
# `hisa sweep` and `hisa audit` as one process and as 3 MPI ranks (oversubscribed on the CPU): the table, the JSON and the CSV
# must be byte-identical. Usage: mpi_parity.sh HISA MPIRUN
set -euo pipefail
hisa=$1 mpirun=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Open MPI refuses to start as root (CI runs as root) unless told it is intended.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
"$hisa" synth -o "$dir/a.h5" --profile mixed --seq-len 4096 --layers 5 --heads 8 --head-dim 64 >/dev/null
"$hisa" synth -o "$dir/b.h5" --profile niah --seq-len 2048 --layers 3 --heads 8 --head-dim 64 --seed 3 >/dev/null
args=(sweep "$dir/a.h5" "$dir/b.h5" --device cpu --threads 1 --block-sizes 32-128 --blocks 4-64)
"$hisa" "${args[@]}" --json "$dir/one.json" --csv "$dir/one.csv" >"$dir/one.txt"
"$mpirun" -np 3 --oversubscribe "$hisa" "${args[@]}" --json "$dir/mpi.json" --csv "$dir/mpi.csv" >"$dir/mpi.txt"
for f in json csv txt; do
  cmp "$dir/one.$f" "$dir/mpi.$f"
done
# The audit too: per-layer statistics gathered from the ranks' accumulators.
audit=(audit "$dir/a.h5" "$dir/b.h5" --device cpu --threads 1 --block-size 32 --blocks 8 --worst 3)
"$hisa" "${audit[@]}" --json "$dir/audit1.json" --csv "$dir/audit1.csv" >"$dir/audit1.txt"
"$mpirun" -np 3 --oversubscribe "$hisa" "${audit[@]}" --json "$dir/auditn.json" --csv "$dir/auditn.csv" >"$dir/auditn.txt"
for f in json csv txt; do
  cmp "$dir/audit1.$f" "$dir/auditn.$f"
done
# The ranks really split the work: each computed some units (the timings count workers over ranks).
"$mpirun" -np 3 --oversubscribe "$hisa" "${args[@]}" --timings 2>"$dir/timings.txt" >/dev/null
grep -q "3 workers, 3 ranks" "$dir/timings.txt"
echo "mpi_parity: 1 process and 3 ranks gave identical tables, JSON and CSV (sweep: $(wc -l <"$dir/one.csv") CSV lines, audit: $(wc -l <"$dir/audit1.csv"))"
