#!/usr/bin/env bash
# Data-parallel scaling on this machine: `w2vbert bench scaling` runs `bench dist` under mpirun with 1 rank
# and with N ranks (one thread each), synthetic features, the given preset, and prints both JSON lines and
# the throughput ratio.
#   bash launch/bench-scaling.sh [RANKS=2] [PRESET=small] [extra bench scaling options, e.g. --batch 2]
set -euo pipefail
cd "$(dirname "$0")/.."
RANKS="${1:-2}"; PRESET="${2:-small}"; shift 2 || true
source launch/lib.sh
BIN="$(w2v_bin)"
export OMPI_MCA_btl_vader_single_copy_mechanism=none
exec "$BIN" bench scaling --ranks "$RANKS" --preset "$PRESET" "$@"
