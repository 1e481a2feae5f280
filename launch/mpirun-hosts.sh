#!/usr/bin/env bash
# Runs w2vbert with RANKS MPI ranks spread over the hosts of an Open MPI hostfile.
#   bash launch/mpirun-hosts.sh HOSTFILE RANKS [w2vbert args...]
# HOSTFILE lines look like `node01 slots=32` (one slot per core: one rank per core, one BLAS thread each).
# The executable and the run folder must be at the same path on every host (shared file system), and
# mpirun must reach the hosts (passwordless ssh by default; W2V_MPIRUN_ARGS="--mca plm_rsh_agent X" otherwise).
# Environment:
#   W2VBERT_BIN        executable (default: `swift build -c release --show-bin-path`/w2vbert)
#   OMP_NUM_THREADS    threads per rank (default 1; OPENBLAS_NUM_THREADS follows it unless set)
#   W2V_BIND           --bind-to value (default core; `none` for emulated hosts sharing one machine)
#   W2V_MPIRUN_ARGS    extra mpirun arguments, word-split (e.g. "--mca btl self,tcp --mca btl_tcp_if_include eth0")
# Exported to every rank: OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, PATH, LD_LIBRARY_PATH (when set).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ $# -lt 2 ] || ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: launch/mpirun-hosts.sh HOSTFILE RANKS [w2vbert args...]" >&2; exit 2
fi
HOSTFILE="$1"; RANKS="$2"; shift 2
[ -r "$HOSTFILE" ] || { echo "hostfile '$HOSTFILE' not readable" >&2; exit 2; }
BIN="$(w2v_bin)" || exit 2
w2v_threads
ARGS=(--hostfile "$HOSTFILE" -np "$RANKS" $(w2v_root_args) --mca btl_vader_single_copy_mechanism none
      -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x PATH --bind-to "${W2V_BIND:-core}")
[ -z "${LD_LIBRARY_PATH:-}" ] || ARGS+=(-x LD_LIBRARY_PATH)
if [ "$OMP_NUM_THREADS" -gt 1 ] && [ "${W2V_BIND:-core}" != none ]; then
  ARGS+=(--map-by "slot:PE=$OMP_NUM_THREADS")
fi
# shellcheck disable=SC2206
ARGS+=(${W2V_MPIRUN_ARGS:-})
w2v_describe_resume "$(w2v_run_dir "$@")"
w2v_show mpirun "${ARGS[@]}" "$BIN" "$@"
exec mpirun "${ARGS[@]}" "$BIN" "$@"
