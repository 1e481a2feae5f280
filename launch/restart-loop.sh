#!/usr/bin/env bash
# Restart loop for plain mpirun (no scheduler to requeue the job): runs a launch command and, when it
# crashes, runs it again; `w2vbert train` resumes from the run folder's latest checkpoint by itself.
#   bash launch/restart-loop.sh LAUNCH-COMMAND...
#   e.g. bash launch/restart-loop.sh bash launch/mpirun-hosts.sh hosts 64 train --preset base ... --run-dir runs/base
#        bash launch/restart-loop.sh bash launch/local.sh 2 train --preset tiny ... --run-dir runs/tiny
# Statuses of the launch command (mpirun passes on the ranks' status; README "Exit statuses"):
#   0        finished                              → stop, exit 0
#   2        bad command line or configuration     → stop, exit 2 (running it again cannot help)
#   75       stopped by SIGTERM/SIGUSR1 after a checkpoint → stop, exit 75: without a scheduler such a
#            signal comes from an operator or the machine shutting down, who asked the run to stop.
#            Run the loop again to continue. (Slurm's script requeues on 75 instead.)
#   76       too many consecutive non-finite steps → stop, exit 76: the resumed run replays the same
#            batches with the same random streams and would fail the same way.
#   1 (runtime error: I/O, MPI, a file), 77 (divergence), 78 (watchdog timeout), > 128 (a rank or mpirun
#            killed by a signal, e.g. 137 = SIGKILL)   → restart, up to W2V_MAX_RESTARTS times (default 3),
#            after W2V_RESTART_DELAY seconds (default 10).
#   anything else (e.g. 64, 126, 127: not a w2vbert status, the launcher itself failed) → stop with it.
# W2V_STOP_STATUSES / W2V_RESTART_STATUSES override the two lists (defaults "0 2 75 76" and "1 77 78";
# statuses above 128 always restart unless listed in W2V_STOP_STATUSES).
# SIGINT/SIGTERM/SIGUSR1 sent to this loop are forwarded to the running command, and the loop then stops
# after it ends (no restart). Prints every command it runs.
set -u
source "$(dirname "$0")/lib.sh"
[ $# -ge 1 ] || { echo "usage: launch/restart-loop.sh LAUNCH-COMMAND..." >&2; exit 2; }
MAX="${W2V_MAX_RESTARTS:-3}"
DELAY="${W2V_RESTART_DELAY:-10}"
STOP_ON="${W2V_STOP_STATUSES:-0 2 75 76}"
RESTART_ON="${W2V_RESTART_STATUSES:-1 77 78}"
CHILD="" STOPPING=""
forward() {
  STOPPING="$1"
  echo "[restart-loop] got SIG$1: forwarding it to the run (pid $CHILD); no restart afterwards" >&2
  [ -z "$CHILD" ] || kill -s "$1" "$CHILD" 2>/dev/null || true
}
trap 'forward INT' INT
trap 'forward TERM' TERM
trap 'forward USR1' USR1

attempt=0
while :; do
  if [ $attempt = 0 ]; then echo "[restart-loop] start" >&2
  else echo "[restart-loop] restart $attempt/$MAX (resumes from the latest checkpoint)" >&2; fi
  w2v_show "$@"
  "$@" &
  CHILD=$!
  while :; do                    # a trapped signal interrupts `wait`: wait again while the run lives
    wait "$CHILD"; STATUS=$?
    kill -0 "$CHILD" 2>/dev/null || break
  done
  CHILD=""
  echo "[restart-loop] run ended with status $STATUS" >&2
  for s in $STOP_ON; do [ "$STATUS" = "$s" ] && exit "$STATUS"; done
  restartable=""
  for s in $RESTART_ON; do [ "$STATUS" = "$s" ] && restartable=1; done
  [ "$STATUS" -gt 128 ] && restartable=1
  if [ -z "$restartable" ]; then
    echo "[restart-loop] status $STATUS is not a w2vbert status (README \"Exit statuses\"): the launcher failed; not restarting" >&2
    exit "$STATUS"
  fi
  if [ -n "$STOPPING" ]; then echo "[restart-loop] stopping after SIG$STOPPING" >&2; exit "$STATUS"; fi
  if [ "$attempt" -ge "$MAX" ]; then
    echo "[restart-loop] giving up after $MAX restart(s); last status $STATUS" >&2; exit "$STATUS"
  fi
  attempt=$((attempt + 1))
  sleep "$DELAY" & wait $!
  if [ -n "$STOPPING" ]; then echo "[restart-loop] stopping after SIG$STOPPING" >&2; exit "$STATUS"; fi
done
