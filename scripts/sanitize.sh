#!/usr/bin/env bash
# The sanitizer job: builds everything CPU-only with AddressSanitizer (with LeakSanitizer) and
# UndefinedBehaviorSanitizer into ./build-asan and runs the CPU test suite there. Any report fails the run:
# the build has -fno-sanitize-recover=all, and ASan's exit code is set below.
# Needs what scripts/setup.sh installs (nothing more: gcc ships libasan and libubsan).
#
# Tests left out, by ctest label, and why:
#   memory   hisa_memory_test asserts the loader's peak RSS (datasets/FORMAT.md, "Memory"); ASan's shadow
#            memory and quarantine make every RSS figure meaningless, and it runs in the plain build.
#   gpu      the CUDA tests; this build has no CUDA (nvcc takes no -fsanitize), so none exist here anyway.
# Everything else runs, including the notebook and headless-Chromium tests: they drive the instrumented
# `hisa` binary (synth, audit, explain, select, sweep, report), which is what matters here.
#
# usage: scripts/sanitize.sh [extra ctest arguments, e.g. -R Cli]
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# -O1 -g: fast enough to run the suite, whole stack traces. No NDEBUG, and libstdc++'s own bounds checks
# (_GLIBCXX_ASSERTIONS) on, so an out-of-range operator[] inside a vector's capacity (which ASan cannot see)
# fails too.
cmake -S . -B build-asan -DHISA_ENABLE_CUDA=OFF -DHISA_ENABLE_MPI=OFF -DHISA_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g -D_GLIBCXX_ASSERTIONS" -DCMAKE_C_FLAGS_DEBUG="-O1 -g"
cmake --build build-asan -j"$(nproc)"

# ASan: every finding is an error (exit 1); detect_leaks runs LeakSanitizer at exit; the suppressions file
# names the few leaks of system libraries (not ours) and says why each is there.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

ctest --test-dir build-asan --output-on-failure -LE 'memory|gpu' -j"$(nproc)" "$@"
echo "sanitize.sh: ASan+UBSan build and tests passed in $(( $(date +%s) - start )) s"
