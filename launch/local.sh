#!/usr/bin/env bash
# Runs w2vbert with RANKS MPI ranks on this machine.
#   bash launch/local.sh RANKS [w2vbert args...]
#   e.g. bash launch/local.sh 2 train --preset tiny --train data/fillets-cs/train.tsv --run-dir runs/tiny
# Environment:
#   W2VBERT_BIN        executable (default: `swift build -c release --show-bin-path`/w2vbert)
#   OMP_NUM_THREADS    threads per rank (default 1; OPENBLAS_NUM_THREADS follows it unless set)
#   W2V_MPIRUN_ARGS    extra mpirun arguments, word-split (e.g. "--mca btl self,tcp")
#   W2V_BIND           "none": ranks are not bound to cores (several jobs sharing one machine; bound ranks of
#                      two jobs would all start on the first cores)
# Ranks × threads above the physical core count: --oversubscribe and --bind-to none. Otherwise each rank
# is bound to its cores. As root, --allow-run-as-root is added. The exit status is mpirun's (the
# highest rank status: see README "Exit statuses"). SIGTERM to this script: the ranks checkpoint, status 75.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ $# -lt 1 ] || ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: launch/local.sh RANKS [w2vbert args...]" >&2; exit 2
fi
RANKS="$1"; shift
BIN="$(w2v_bin)" || exit 2
w2v_threads
CORES="$(w2v_cores)"
ARGS=(-np "$RANKS" $(w2v_root_args) --mca btl_vader_single_copy_mechanism none
      -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS)
if [ "${W2V_BIND:-}" = none ]; then
  ARGS+=(--bind-to none)
elif [ $((RANKS * OMP_NUM_THREADS)) -gt "$CORES" ]; then
  ARGS+=(--oversubscribe --bind-to none)
elif [ "$OMP_NUM_THREADS" -gt 1 ]; then
  ARGS+=(--map-by "slot:PE=$OMP_NUM_THREADS" --bind-to core)
else
  ARGS+=(--bind-to core)
fi
# shellcheck disable=SC2206
ARGS+=(${W2V_MPIRUN_ARGS:-})
w2v_describe_resume "$(w2v_run_dir "$@")"
w2v_show mpirun "${ARGS[@]}" "$BIN" "$@"
# SIGTERM/SIGINT/SIGUSR1 to this launcher ask the ranks to checkpoint and stop: mpirun forwards SIGUSR1 to
# them without aborting the job, so the status passed on is theirs (75). (A SIGTERM sent to mpirun itself
# also reaches the ranks, which checkpoint, but Open MPI then ends with its own status 1.)
mpirun "${ARGS[@]}" "$BIN" "$@" &
MPIRUN_PID=$!
trap 'kill -USR1 "$MPIRUN_PID" 2>/dev/null || true' TERM INT USR1
status=0
while :; do
  wait "$MPIRUN_PID" && status=0 || status=$?
  kill -0 "$MPIRUN_PID" 2>/dev/null || break   # wait returned for a trapped signal: mpirun still runs
done
exit "$status"
