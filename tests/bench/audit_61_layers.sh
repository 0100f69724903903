#!/usr/bin/env bash
# The audit benchmark (docs/benchmarks.md): one command on one file, run side by side on the same card. Writes a
# 61-layer 128K-token dump once (hisa synth --profile mixed, H = 64, D = 128, 1,024 sampled queries per layer, bf16,
# about 2.9 GiB), reads it once so the page cache is warm, then times
#   hisa audit --device cuda --timings                      (target: <= 6 s, and 2x faster than the script)
#   hisa sweep --block-sizes 32,64,128,256 --device cuda    (target: <= 5 s)
#   tests/bench/audit_torch.py: h5py + PyTorch, flat top-2048, HISA(128, 64) top-2048, per-query IoU
# and prints the wall clocks and their ratios.
# Usage: tests/bench/audit_61_layers.sh HISA [DIR] [extra audit flags...]
set -euo pipefail
hisa=${1:?usage: audit_61_layers.sh HISA [DIR] [flags...]}
dir=${2:-/tmp/hisa-bench}
shift $(( $# >= 2 ? 2 : 1 ))
here=$(cd "$(dirname "$0")" && pwd)
dump=$("$(dirname "$0")/dump_61_layers.sh" "$hisa" "$dir")
ls -l "$dump"
# timed OUT COMMAND...: runs COMMAND with stdout to OUT and stderr to OUT.err, and prints its wall seconds.
timed() {
  local out=$1
  shift
  /usr/bin/time -f "%e" -o "$dir/time.txt" "$@" >"$out" 2>"$out.err"
  cat "$dir/time.txt"
}
/usr/bin/time -f "%e" -o "$dir/time.txt" cat "$dump" >/dev/null
cat_s=$(cat "$dir/time.txt")
echo "cat of the file: $cat_s s"
audit_s=$(timed "$dir/audit.txt" "$hisa" audit "$dump" --device cuda --timings "$@")
cat "$dir/audit.txt.err"
head -5 "$dir/audit.txt"
echo "hisa audit: $audit_s s"
sweep_s=$(timed "$dir/sweep.txt" "$hisa" sweep "$dump" --block-sizes 32,64,128,256 --device cuda --no-kernel-times --timings)
tail -4 "$dir/sweep.txt.err"
echo "hisa sweep: $sweep_s s"
torch_s=$(timed "$dir/torch.txt" python3 "$here/audit_torch.py" "$dump")
head -3 "$dir/torch.txt"
tail -1 "$dir/torch.txt"
echo "torch script: $torch_s s"
awk -v c="$cat_s" -v a="$audit_s" -v s="$sweep_s" -v t="$torch_s" 'BEGIN {
  printf "summary (wall s): cat %.2f | hisa audit %.2f | hisa sweep %.2f | torch script %.2f | script / audit %.2fx\n", c, a, s, t, t / a }'
