#!/usr/bin/env bash
# Fuzzes the parsers of outside data with libFuzzer (docs/robustness.md): builds Tests/Fuzz/Targets.swift with the
# project sources it exercises, instrumented (-sanitize=fuzzer,address; swift -O, so overflow and bounds
# checks trap), then runs one target for a given time on a copy of its seed corpus.
#   bash launch/fuzz.sh TARGET SECONDS     TARGET: safetensors checkpoint manifest config npy audio sequences, or all
#   bash launch/fuzz.sh build              only build
# A crash, a sanitizer report, a hang (> 10 s on one input) or an allocation over 256 MB is a failure:
# the reproducer is left in $W2V_FUZZ_DIR/artifacts and the script exits 1. Prints the executions done.
# Environment: W2V_FUZZ_DIR (default .build-fuzz), W2V_SCRATCH (the SwiftPM scratch path holding the Yams
# checkout; default .build).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS="safetensors checkpoint manifest config npy audio sequences"
O="${W2V_FUZZ_DIR:-.build-fuzz}"
SCRATCH="${W2V_SCRATCH:-.build}"
mkdir -p "$O/lib" "$O/artifacts"
SAN=(-sanitize=fuzzer,address -O -parse-as-library -g)
INC=(-I "$O/lib" -I "$O/lib/CCompute" -I Sources/CBLAS -I Sources/CSndFile -I Sources/CSampleRate)

build() {
  local stamp="$O/w2v-fuzz.stamp" srcs
  srcs=$(ls Sources/CCompute/*.c Sources/CCompute/include/*.h Sources/Tensor/*.swift Sources/Audio/*.swift $(find Sources/W2VBert -name '*.swift' | sort) \
         Sources/Training/SafeTensors.swift \
         Sources/Training/Checkpoint.swift Sources/Training/TrainerState.swift Tests/Fuzz/*.swift launch/fuzz.sh)
  if [ -x "$O/w2v-fuzz" ] && [ -f "$stamp" ] && [ "$(cat $srcs | sha256sum)" = "$(cat "$stamp")" ]; then return; fi
  [ -d "$SCRATCH/checkouts/Yams" ] || swift package resolve --scratch-path "$SCRATCH" >&2
  local yams="$SCRATCH/checkouts/Yams/Sources"
  echo "[fuzz] building the instrumented targets in $O" >&2
  module() {  # NAME SOURCES...
    local name="$1"; shift
    swiftc "${SAN[@]}" "${INC[@]}" -I "$yams/CYaml/include" -module-name "$name" -emit-module -emit-module-path "$O/lib/$name.swiftmodule" \
      -emit-library -static -o "$O/lib/lib$name.a" "$@"
  }
  # CCompute (the GEMM engine's C part): a module map for swiftc and an instrumented static library.
  mkdir -p "$O/lib/CCompute"
  printf 'module CCompute {\n  header "%s"\n  export *\n}\n' "$PWD/Sources/CCompute/include/ccompute.h" > "$O/lib/CCompute/module.modulemap"
  for c in Sources/CCompute/*.c; do
    clang -c -O1 -g -fsanitize=fuzzer-no-link,address -I Sources/CCompute/include "$c" -o "$O/lib/ccompute-$(basename "$c" .c).o"
  done
  ar rcs "$O/lib/libCCompute.a" "$O"/lib/ccompute-*.o
  module Tensor -I "$O/lib/CCompute" Sources/Tensor/*.swift
  module Audio Sources/Audio/*.swift
  for c in "$yams"/CYaml/src/*.c; do
    clang -c -O1 -g -fsanitize=fuzzer-no-link,address -DYAML_DECLARE_EXPORT -I "$yams/CYaml/include" "$c" -o "$O/lib/cyaml-$(basename "$c" .c).o"
  done
  ar rcs "$O/lib/libCYaml.a" "$O"/lib/cyaml-*.o
  module Yams -D SWIFT_PACKAGE -Xcc -DYAML_DECLARE_EXPORT "$yams"/Yams/*.swift
  module W2VBert $(find Sources/W2VBert -name '*.swift' | sort)   # with its Options/ folder
  swiftc "${SAN[@]}" "${INC[@]}" -I "$yams/CYaml/include" -module-name W2VFuzz -o "$O/w2v-fuzz" \
    Tests/Fuzz/Targets.swift Sources/Training/SafeTensors.swift Sources/Training/Checkpoint.swift Sources/Training/TrainerState.swift \
    -L "$O/lib" -lW2VBert -lAudio -lTensor -lCCompute -lYams -lCYaml -lopenblas -lsndfile -lsamplerate -ldnnl -lgomp -lpthread
  cat $srcs | sha256sum > "$stamp"
}

run() {  # TARGET SECONDS
  local t="$1" s="$2" work="$O/corpus-$1"
  mkdir -p "$work"
  local log="$O/fuzz-$t.log"
  echo "[fuzz] $t for $s s (seeds Tests/Fuzz/corpus/$t, new inputs in $work)" >&2
  if ! W2V_FUZZ_TARGET="$t" ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=0" "$O/w2v-fuzz" \
      -max_total_time="$s" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$O/artifacts/$t-" "$work" "Tests/Fuzz/corpus/$t" > "$log" 2>&1; then
    tail -60 "$log" >&2
    echo "[fuzz] $t: FAILED (reproducer in $O/artifacts/; log $log)" >&2
    return 1
  fi
  local execs; execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "[fuzz] $t: $execs executions in $s s, no crash, hang or oversized allocation"
}

[ $# -ge 1 ] || { echo "usage: launch/fuzz.sh TARGET|all SECONDS | build" >&2; exit 2; }
build
[ "$1" = build ] && exit 0
[ $# -ge 2 ] || { echo "usage: launch/fuzz.sh TARGET|all SECONDS" >&2; exit 2; }
if [ "$1" = all ]; then
  status=0
  for t in $TARGETS; do run "$t" "$2" || status=1; done
  exit $status
fi
case " $TARGETS " in *" $1 "*) run "$1" "$2" ;; *) echo "unknown target '$1' (one of: $TARGETS, all)" >&2; exit 2 ;; esac
