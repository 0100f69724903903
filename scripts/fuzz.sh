#!/usr/bin/env bash
# Builds the libFuzzer target (tests/fuzz/fuzz_dump.cpp: the loader, `hisa inspect --check` and a small
# `hisa audit` on each input) with clang, ASan and UBSan into build-fuzz/, CPU only, and fuzzes it for a bounded
# time. Exit status 0: no finding. Otherwise the input that crashed, hung or leaked is in build-fuzz/findings/;
# make it a regression file (tests/fuzz/regressions/, docs/testing.md, "Fuzzing"), fix the cause, and run again.
#
#   bash scripts/fuzz.sh [SECONDS]      default 120 (or HISA_FUZZ_SECONDS); the build comes on top
#
# Needs clang and libFuzzer's runtime (Debian: clang, libclang-rt-14-dev, libomp-dev; scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-${HISA_FUZZ_SECONDS:-120}}"
build=build-fuzz

CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHISA_ENABLE_CUDA=OFF -DHISA_ENABLE_MPI=OFF \
  -DHISA_BUILD_TESTS=OFF -DHISA_FUZZ=ON >/dev/null
cmake --build "$build" --target hisa_fuzz_dump -j"$(nproc)"

# The working corpus (libFuzzer adds what it finds to the first directory) starts from the committed seeds, the
# h5py fixtures and every regression file, so each past finding is replayed first.
corpus="$build/corpus"
findings="$build/findings"
mkdir -p "$corpus" "$findings"
rm -f "$findings"/*

status=0
# -timeout: a single input taking longer is a hang finding. -rss_limit_mb/-malloc_limit_mb: an input that makes
# the tool allocate this much is an out-of-memory finding (the entry skips layers too big to decode, see
# dump_entry.cpp).
# allocator_may_return_null: a failed allocation inside libhdf5 becomes an HDF5 error, as without ASan.
# lsan.supp: libhdf5 leaks on its own error paths (see the file).
ASAN_OPTIONS="allocator_may_return_null=1:${ASAN_OPTIONS:-}" \
LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp:${LSAN_OPTIONS:-}" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}" \
  "$build/tests/fuzz/hisa_fuzz_dump" "$corpus" tests/fuzz/seeds datasets/fixtures tests/fuzz/regressions \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=65536 \
    -artifact_prefix="$findings/" -print_final_stats=1 || status=$?

# libFuzzer exits non-zero on a finding; any input left in the findings folder counts too. (A crash in the
# loader's attribute probe, a child process, is an InputError by design and leaves nothing: attribute_probe.cpp.)
if compgen -G "$findings/*" >/dev/null; then
  echo "fuzz: findings in $findings/:" >&2
  ls -l "$findings" >&2
  [ "$status" = 0 ] && status=1
fi
if [ "$status" != 0 ]; then
  echo "fuzz: FAILED (status $status); replay one input with: $build/tests/fuzz/hisa_fuzz_dump FILE" >&2
else
  echo "fuzz: no finding in ${seconds}s"
fi
exit "$status"
