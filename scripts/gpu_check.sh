#!/usr/bin/env bash
# Builds hisa with CUDA, runs the GPU tests, the CUDA bench (BENCH=0 skips its matrix), each kernel family alone,
# a CPU-vs-CUDA audit of a synthetic dump, and import hisa's Python tests (tests/python, the capture tool), on a machine with a GPU. Logs go to $LOG (default /tmp/gpu_check); the main ones are copied to $OUT when that is
# set (the device tool brings back at most 8 files). A short summary is printed last.
set -u -o pipefail
RESULTS=${OUT:-}
OUT=${LOG:-/tmp/gpu_check}
mkdir -p "$OUT"
echo "build dependencies here: $(ls -d /usr/include/hdf5/serial /usr/include/eigen3 /usr/include/CLI /usr/include/gtest 2>/dev/null | tr '\n' ' ')"
JOBS=${JOBS:-16}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv | tee "$OUT/gpu.txt"
# HISA_PREBUILT=DIR: use DIR/bin/{hisa,hisa_gpu_tests} (with DIR/lib on the library path) built elsewhere, e.g.
# on a machine without a GPU, instead of building here (the GPU machine may lack the build dependencies).
if [ -n "${HISA_PREBUILT:-}" ] && LD_LIBRARY_PATH="$HISA_PREBUILT/lib" "$HISA_PREBUILT/bin/hisa" --version >/dev/null 2>&1; then
  export LD_LIBRARY_PATH="$HISA_PREBUILT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  HISA="$HISA_PREBUILT/bin/hisa"; GPU_TESTS="$HISA_PREBUILT/bin/hisa_gpu_tests"
  echo "using prebuilt binaries from $HISA_PREBUILT"
else
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
  t0=$(date +%s)
  cmake --build build -j"$JOBS" --target hisa hisa_gpu_tests >"$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -80; exit 1; }
  # import hisa, when this machine's Python has what it needs (the build says so): built here, tested below.
  cmake --build build -j"$JOBS" --target hisa_python >>"$OUT/build.log" 2>&1 && HISA_PYTHON_BUILT=1
  echo "build: $(( $(date +%s) - t0 )) s"
  HISA=./build/cli/hisa; GPU_TESTS=./build/tests/hisa_gpu_tests
fi
# Tensor-core instructions present in the scoring kernels?
if command -v cuobjdump >/dev/null; then
  cuobjdump --dump-sass "$GPU_TESTS" >"$OUT/sass.txt" 2>&1
  echo "SASS: $(grep -c HMMA "$OUT/sass.txt") HMMA, $(grep -cE '\bLDL|\bSTL' "$OUT/sass.txt") local-memory loads/stores"
fi
t0=$(date +%s)
timeout 420 "$GPU_TESTS" >"$OUT/gpu_tests.log" 2>&1
echo "gpu tests: exit $?, $(( $(date +%s) - t0 )) s"
# The whole benchmark matrix (sampled L = 8K..128K, full causal prefills at 32K and 64K) in one call.
if [ "${BENCH:-1}" != 0 ]; then
  timeout 300 "$HISA" bench --device cuda --json "$OUT/bench.json" >"$OUT/bench.log" 2>&1
  echo "bench: exit $?"
fi
# Each kernel family alone, at the sampled matrix's L.
for k in score topk choice masses; do
  timeout 60 "$HISA" bench --device cuda --kernel $k --keys 32768,131072 >>"$OUT/bench.log" 2>&1
  echo "bench --kernel $k: exit $?"
done
timeout 60 "$HISA" bench --device cuda --kernel score --dtype fp8 --keys 32768,131072 >>"$OUT/bench.log" 2>&1
echo "bench --kernel score --dtype fp8: exit $?"
# End to end: the same synthetic dump audited by both engines.
"$HISA" synth -o /tmp/niah.h5 --seq-len 32768 --layers 3 --queries sample:128 --heads 32 >/dev/null 2>&1
for d in cpu cuda; do
  t0=$EPOCHREALTIME
  timeout 200 "$HISA" audit /tmp/niah.h5 --device $d --verbose --json "$OUT/audit_$d.json" --per-query "$OUT/perq_$d.csv" >"$OUT/audit_$d.txt" 2>&1
  rc=$?
  echo "audit --device $d: exit $rc, $(awk "BEGIN{print $EPOCHREALTIME - $t0}") s"
done
python3 - "$OUT" <<'PY' 2>&1 | tee "$OUT/audit_compare.txt"
import json, sys, csv
out = sys.argv[1]
a = {d: json.load(open(f"{out}/audit_{d}.json")) for d in ("cpu", "cuda")}
print("engines:", a["cpu"]["config"].get("engine", a["cpu"].get("engine")), "|", a["cuda"]["config"].get("engine", a["cuda"].get("engine")))
rows = {d: list(csv.DictReader(open(f"{out}/perq_{d}.csv"))) for d in ("cpu", "cuda")}
same = sum(1 for x, y in zip(rows["cpu"], rows["cuda"]) if x["iou"] == y["iou"] and x["block_iou"] == y["block_iou"])
print(f"per-query rows: {len(rows['cpu'])} cpu, {len(rows['cuda'])} cuda; identical HISA and block IoU in {same}")
diff = max((abs(float(x["flat_coverage"]) - float(y["flat_coverage"])) for x, y in zip(rows["cpu"], rows["cuda"])), default=0)
print(f"max |flat_coverage cpu - cuda| = {diff:.3g}")
PY
# import hisa on this machine's Python (torch and transformers here): the module's tests with CUDA tensors and the
# live hook on tiny models, and the capture tool that shares the hook's derivations.
if [ -n "${HISA_PYTHON_BUILT:-}" ]; then
  PYTHONPATH=build/python HISA_BINARY=$HISA timeout 600 python3 -m pytest -q -p no:cacheprovider tests/python \
    >"$OUT/python.log" 2>&1
  echo "python tests: exit $? ($(tail -1 "$OUT/python.log"))"
  HISA_BINARY=$HISA timeout 600 python3 datasets/capture/test_capture.py >"$OUT/capture.log" 2>&1
  echo "capture tests: exit $? ($(tail -1 "$OUT/capture.log"))"
fi
if command -v compute-sanitizer >/dev/null; then
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 "$GPU_TESTS" \
    --gtest_filter='CudaTopK.*:CudaBlockChoice.*:CudaEngine.ManySmallChunksGiveTheSameResults:CudaEngine.QueriesOffTheBf16GridAreCaughtInAnyChunk:CudaEngine.WgmmaShapesMatchCpuAndReference:CudaEngine.ShapesThatNeedPadding:DeviceOperands.*:DeviceLayer.ACompressed*:DeviceLayer.BadValues*:DeviceLayer.AuditsAsTheSameLayerInHostMemory:CudaEngine.BlockBoundsAreTheCpusToTheLastBit:CudaEngine.ScoreRowIsTheCpusUpToRounding' \
    >"$OUT/memcheck.log" 2>&1
  echo "memcheck: exit $? ($(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1))"
fi
if [ -n "$RESULTS" ]; then
  cp "$OUT"/gpu_tests.log "$OUT"/python.log "$OUT"/bench.log "$OUT"/bench.json "$OUT"/audit_compare.txt "$OUT"/audit_cpu.txt "$OUT"/audit_cuda.txt "$RESULTS"/ 2>/dev/null
  [ -f "$OUT/memcheck.log" ] && tail -c 200000 "$OUT/memcheck.log" >"$RESULTS/memcheck.log"
fi
echo "==== summary ===="
cat "$OUT/gpu.txt"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests? from .* ran|^\[ +FAILED" "$OUT/gpu_tests.log" | tail -20
grep -E "Failure|error" -A4 "$OUT/gpu_tests.log" | head -60
cat "$OUT/bench.log"
head -16 "$OUT/audit_cuda.txt"
