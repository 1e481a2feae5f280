#!/usr/bin/env bash
# Stand-in for `w2vbert train` (cluster/test-cluster.sh with W2V_TEST_PAYLOAD=check-mpi): it honours the
# parts of the trainer's contract that the launch scripts depend on, so the signal/requeue/restart paths
# can be tested without the trainer.
#   standin-payload.sh train [...] --run-dir DIR [--max-steps N] [...]   (other arguments are ignored)
# Behaviour (per rank; rank from OMPI_COMM_WORLD_RANK, SLURM_PROCID or PMIX_RANK):
#   - resumes from DIR/checkpoints/latest (a file holding a step number) if present, else starts at 0;
#   - "trains" one step per W2V_STANDIN_STEP_SECONDS (default 0.2) up to --max-steps (default 50);
#   - rank 0 "checkpoints" every W2V_STANDIN_CKPT_EVERY steps (default 10) and at the end;
#   - SIGUSR1/SIGTERM only set a flag; at the next step boundary rank 0 checkpoints and every rank
#     exits 75 (the trainer's "stopped after writing a checkpoint" status);
#   - finishing prints "standin rank R/N host H: finished at step S" and exits 0.
# It writes DIR/standin/pid-R (its pid), start-R (the step it started from) and step-R (its current
# step) for the tests.
set -u
# Handlers first: a signal that arrives before them would kill the process (status 128+signal).
stop=""
trap 'stop=USR1' USR1
trap 'stop=TERM' TERM
cmd="${1:-}"; shift || true
[ "$cmd" = train ] || { echo "standin: only 'train' is supported (got '$cmd')" >&2; exit 2; }
RUN=""; MAX=50; prev=""
for a in "$@"; do
  case "$prev" in --run-dir) RUN="$a" ;; --max-steps) MAX="$a" ;; esac
  case "$a" in --run-dir=*) RUN="${a#*=}" ;; --max-steps=*) MAX="${a#*=}" ;; esac
  prev="$a"
done
[ -n "$RUN" ] || { echo "standin: --run-dir is required" >&2; exit 2; }
RANK="${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-${PMIX_RANK:-0}}}"
SIZE="${OMPI_COMM_WORLD_SIZE:-${SLURM_NTASKS:-1}}"
HOST="${SLURMD_NODENAME:-$(hostname)}"
STEP_SECONDS="${W2V_STANDIN_STEP_SECONDS:-0.2}"
EVERY="${W2V_STANDIN_CKPT_EVERY:-10}"
mkdir -p "$RUN/standin" "$RUN/checkpoints"
echo $$ > "$RUN/standin/pid-$RANK"

checkpoint() {  # rank 0 only: write the step atomically, then replace `latest`
  [ "$RANK" = 0 ] || return 0
  local tmp="$RUN/checkpoints/.latest.$$"
  echo "$1" > "$tmp" && mv -f "$tmp" "$RUN/checkpoints/latest"
}

step=0
[ -s "$RUN/checkpoints/latest" ] && step="$(cat "$RUN/checkpoints/latest")"
echo "$step" > "$RUN/standin/start-$RANK"
rm -f "$RUN/standin/step-$RANK"
echo "standin rank $RANK/$SIZE host $HOST: start at step $step of $MAX (restart count ${SLURM_RESTART_COUNT:-0})"
while [ "$step" -lt "$MAX" ]; do
  sleep "$STEP_SECONDS" & wait $!   # `wait` returns at once on a trapped signal: the step boundary
  [ -n "$stop" ] && break
  step=$((step + 1))
  echo "$step" > "$RUN/standin/step-$RANK"
  if [ $((step % EVERY)) = 0 ]; then checkpoint "$step"; fi
done
if [ -n "$stop" ]; then
  checkpoint "$step"
  echo "standin rank $RANK/$SIZE host $HOST: SIG$stop at step $step: checkpoint written, exit 75"
  exit 75
fi
checkpoint "$step"
echo "standin rank $RANK/$SIZE host $HOST: finished at step $step"
exit 0
