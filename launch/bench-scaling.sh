#!/usr/bin/env bash
# Data-parallel scaling on this machine: bench-dist with 1 rank and with N ranks (one BLAS thread each),
# synthetic features, the given preset. Prints both JSON lines and the throughput ratio.
#   bash launch/bench-scaling.sh [RANKS=2] [PRESET=small] [extra bench-dist options]
set -euo pipefail
cd "$(dirname "$0")/.."
RANKS="${1:-2}"; PRESET="${2:-small}"; shift 2 || true
source launch/lib.sh
BIN="$(w2v_bin)"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
one=$(set -x; mpirun -np 1 --bind-to none "$BIN" bench-dist --preset "$PRESET" "$@")
echo "$one"
many=$(set -x; mpirun -np "$RANKS" --oversubscribe --bind-to none "$BIN" bench-dist --preset "$PRESET" "$@")
echo "$many"
python3 - "$one" "$many" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"scaling: {b['ranks']} ranks reach {b['audio_seconds_per_second'] / a['audio_seconds_per_second']:.2f}x the throughput of 1 rank; "
      f"{100 * b['allreduce_hidden_fraction']:.0f}% of all-reduce time hidden behind backward")
PY
