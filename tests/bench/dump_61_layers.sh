#!/usr/bin/env bash
# The benchmarks' 61-layer dump: hisa synth --profile mixed, 128K tokens, H = 64, D = 128, 1,024 sampled queries
# per layer, bf16 (about 2.9 GiB). Written once into DIR; prints its path.
# Usage: tests/bench/dump_61_layers.sh HISA DIR
set -euo pipefail
hisa=${1:?usage: dump_61_layers.sh HISA DIR}
dir=${2:?usage: dump_61_layers.sh HISA DIR}
mkdir -p "$dir"
dump=$dir/deepseek-like-128k-61.h5
if [ ! -s "$dump" ]; then
  /usr/bin/time -f "synth: %e s wall, %M KiB peak RSS" \
    "$hisa" synth -o "$dump" --profile mixed --seq-len 131072 --layers 61 --heads 64 --head-dim 128 --queries sample:1024 >&2
fi
echo "$dump"
