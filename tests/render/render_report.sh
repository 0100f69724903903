#!/usr/bin/env bash
# Renders a `hisa report` page in headless Chromium and checks what it drew: a screenshot that is not blank
# and shows the charts, and a parsed DOM with every section heading (check_render.py).
# usage: render_report.sh HISA_BINARY OUT_DIR
# Chromium is required: scripts/setup.sh installs it; without it this test fails rather than skips.
set -euo pipefail
hisa=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "render_report: chromium not found; install it with scripts/setup.sh (Debian package chromium)" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

"$hisa" synth -o "$out/dump.h5" --profile niah --seq-len 8192 --layers 3 --heads 8 --head-dim 64 --topk 256 \
  --queries sample:48
"$hisa" report "$out/dump.h5" --block-size 64 --blocks 8 --worst 5 --pictures 3 --device cpu -o "$out/report.html"

# Every background service off: the page must render from the file alone.
flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$profile")
timeout 120 "$browser" "${flags[@]}" --screenshot="$out/report.png" --window-size=1280,2000 \
  "file://$out/report.html" >"$out/chromium-screenshot.log" 2>&1
timeout 120 "$browser" "${flags[@]}" --dump-dom "file://$out/report.html" >"$out/dom.html" 2>"$out/chromium-dom.log"
/usr/bin/python3 "$here/check_render.py" "$out/report.png" "$out/dom.html" \
  "Summary" "Per-layer fidelity" "IoU distributions" "Recall versus budget" "Block-size recommendation" "Reuse across layers" "Misses by cause" "Worst queries" \
  "Configuration"
echo "render_report: ok; screenshot in $out/report.png"
