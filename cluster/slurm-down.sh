#!/usr/bin/env bash
# Tears down the local Slurm cluster made by cluster/slurm-up.sh: cancels its jobs, stops slurmd(s),
# slurmctld and munged by their pid files, kills anything left that those daemons started (found by the
# W2V_CLUSTER_OWNER marker in their environment), and removes $W2V_CLUSTER_STATE/slurm.
# Safe to run when nothing is up. The Debian packages stay installed.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/lib.sh"
cl_need_root
D="$W2V_SLURM_DIR"
TAG="slurm:$D"
export SLURM_CONF="$D/slurm.conf"
if [ -s "$SLURM_CONF" ] && cl_pid_alive "$D/slurmctld.pid"; then
  if [ -n "$(timeout 10 squeue -h -o %i 2>/dev/null)" ]; then
    cl_log "cancelling jobs"
    timeout 10 scancel --full --signal=KILL --user=root >/dev/null 2>&1 || true
    timeout 10 scancel --user=root >/dev/null 2>&1 || true
    for _ in $(seq 40); do [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.25; done
  fi
fi
shopt -s nullglob
cl_stop_pidfiles "$D"/slurmd-*.pid "$D/slurmctld.pid"
cl_stop_pidfiles "$D/munged.pid"
rm -f "$D/munge/munged.pid"
cl_kill_owned "$TAG"
rm -rf "$D"
rmdir "$W2V_CLUSTER_STATE" 2>/dev/null || true
cl_log "Slurm cluster down"
