#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in BUILD_DIR/fuzz-build and runs each
# for SECONDS, starting from the seed corpus in fuzz/corpus/<target>/. Exits non-zero when a
# target crashes or violates an invariant; the reproducer is left in BUILD_DIR/fuzz-artifacts/.
# Usage: fuzz/run_fuzzers.sh BUILD_DIR SECONDS
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
SRC="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(mkdir -p "$1" && cd "$1" && pwd)"
SECONDS_PER_TARGET="$2"
FUZZ_BUILD="$BUILD/fuzz-build"
TARGETS=(core_ops_fuzzer spec_fuzzer)

CC=clang CXX=clang++ cmake -S "$SRC" -B "$FUZZ_BUILD" -DMSR_FUZZ=ON -DMSR_BUILD_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$BUILD/fuzz-configure.log" 2>&1 ||
  { cat "$BUILD/fuzz-configure.log" >&2; exit 1; }
# Only the fuzz targets (and the core sources they compile), nothing else of the tree.
cmake --build "$FUZZ_BUILD" -j"$(nproc)" --target "${TARGETS[@]}" >"$BUILD/fuzz-build.log" 2>&1 ||
  { tail -50 "$BUILD/fuzz-build.log" >&2; exit 1; }

ARTIFACTS="$BUILD/fuzz-artifacts"
mkdir -p "$ARTIFACTS"
status=0
for t in "${TARGETS[@]}"; do
  # Work on a copy of the seeds: new inputs go to the build dir, never the source tree.
  corpus="$BUILD/fuzz-corpus/$t"
  mkdir -p "$corpus"
  cp -n "$SRC/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null || true
  log="$BUILD/fuzz-$t.log"
  echo "== $t: ${SECONDS_PER_TARGET}s" >&2
  if "$FUZZ_BUILD/fuzz/$t" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
       -artifact_prefix="$ARTIFACTS/$t-" "$corpus" >"$log" 2>&1; then
    grep -E "^Done|stat::number_of_executed_units|stat::average_exec_per_sec|cov:" "$log" |
      tail -4 >&2
  else
    echo "FAIL: $t crashed; log $log, reproducer in $ARTIFACTS/" >&2
    grep -E "ERROR|runtime error|invariant violated|SUMMARY|Test unit written" "$log" >&2 || tail -30 "$log" >&2
    status=1
  fi
done
exit $status
