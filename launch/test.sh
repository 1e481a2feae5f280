#!/usr/bin/env bash
# Sets up a fresh Debian machine (apt packages) and runs the whole test suite:
# the text check, unit tests (swift test), the multi-rank tests under real mpirun, fuzzing and the
# local cluster tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
bash launch/check-text.sh     # no references outside the repository, to issue numbers or to history
python3 launch/check-swift.py Sources   # lines <= 120 characters, functions <= 80 lines, files <= 500 lines
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
swift build -c release --product w2vbert
swift test -c release 2>&1 | tee /tmp/w2vbert-swift-test.log
bash launch/fuzz.sh all 5      # libFuzzer + ASan on every parser of outside data, 5 s per target
bash cluster/test-cluster.sh   # Slurm (1 and 2 nodes, preemption/requeue), namespace hosts, crash/restart
