# shellcheck shell=bash
# Shared paths and helpers for the cluster scripts (sourced).
# Everything these scripts make lives under W2V_CLUSTER_STATE (default /tmp/w2v-cluster), except the
# network namespaces/bridge/veths (kernel objects, named below) and the Debian packages they install.
W2V_CLUSTER_STATE="${W2V_CLUSTER_STATE:-/tmp/w2v-cluster}"
W2V_SLURM_DIR="$W2V_CLUSTER_STATE/slurm"
W2V_NETNS_DIR="$W2V_CLUSTER_STATE/netns"
# Ports of the local Slurm cluster (away from the standard 6817/6818 so a real installation is untouched).
W2V_SLURMCTLD_PORT="${W2V_SLURMCTLD_PORT:-16817}"
W2V_SLURMD_PORT0="${W2V_SLURMD_PORT0:-17000}"     # node i listens on PORT0+i
# Network-namespace hosts (docs/clusters.md): names prefixed so nothing else on the machine is touched.
W2V_NS_PREFIX="w2v-ns"            # namespaces w2v-ns1, w2v-ns2
W2V_BRIDGE="w2v-br0"
W2V_VETH_PREFIX="w2v-v"           # w2v-v1 (inside w2v-ns1) <-> w2v-v1p (on the bridge)
W2V_SUBNET="10.77.0"              # hosts .1, .2; the bridge (where mpirun runs) .254

cl_log() { echo "[cluster] $*" >&2; }

# Is the pid in FILE alive?
cl_pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stop the processes whose pids are in FILES (together): TERM, wait up to W2V_STOP_WAIT s (default 10),
# then KILL. Removes the files.
cl_stop_pidfiles() {
  local f pids=() pid i alive
  for f in "$@"; do
    [ -s "$f" ] && pid="$(cat "$f")" && kill -0 "$pid" 2>/dev/null && { pids+=("$pid"); kill -TERM "$pid" 2>/dev/null; }
  done
  for ((i = 0; i < ${W2V_STOP_WAIT:-10} * 20 && ${#pids[@]} > 0; i++)); do
    alive=(); for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    pids=("${alive[@]+"${alive[@]}"}"); [ ${#pids[@]} = 0 ] && break; sleep 0.05
  done
  if [ ${#pids[@]} -gt 0 ]; then cl_log "pids ${pids[*]} ignored TERM: KILL"; kill -KILL "${pids[@]}" 2>/dev/null || true; fi
  rm -f "$@"
}

# Pids of every process (and its descendants) whose environment holds W2V_CLUSTER_OWNER=$1.
# The bring-up scripts start their daemons with that marker, and the daemons' children
# (slurmstepd, job tasks) inherit it, so tear-down can find exactly what this cluster started.
cl_owned_pids() { cl_env_pids W2V_CLUSTER_OWNER "$1"; }

# Pids of every process (and its descendants) whose environment holds VAR=VALUE.
cl_env_pids() {
  local var="$1" tag="$2" p roots=()
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    [ "$p" = "$$" ] && continue
    if { tr '\0' '\n' < "/proc/$p/environ"; } 2>/dev/null | grep -qxF "$var=$tag"; then roots+=("$p"); fi
  done
  [ ${#roots[@]} -gt 0 ] || return 0
  # add descendants (job tasks get the job's environment, not the daemon's)
  cl_tree_pids "${roots[@]}"
}

cl_kill_owned() { cl_kill_env W2V_CLUSTER_OWNER "$1"; }

# TERM, then (after 1 s) KILL every process found by cl_env_pids VAR VALUE.
cl_kill_env() {
  local pids
  pids="$(cl_env_pids "$1" "$2")"
  [ -n "$pids" ] || return 0
  cl_log "stopping leftover processes of $1=$2: $pids"
  kill -TERM $pids 2>/dev/null || true
  sleep 1
  pids="$(cl_env_pids "$1" "$2")"
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
}

# The PIDs given and all their descendants.
cl_tree_pids() {
  local all=" $* " changed=1 pid ppid
  while [ $changed = 1 ]; do
    changed=0
    while read -r pid ppid; do
      if [[ "$all" == *" $ppid "* && "$all" != *" $pid "* ]]; then all+="$pid "; changed=1; fi
    done < <(ps -e -o pid=,ppid=)
  done
  echo $all
}

cl_need_root() { [ "$(id -u)" = 0 ] || { echo "this script must run as root" >&2; exit 1; }; }

# apt-get install the packages that are missing (Debian archive).
cl_apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  cl_log "installing: ${missing[*]}"
  # Keep the packages from starting their system services (munge, slurmd, slurmctld) on install: these
  # scripts run their own daemons with their own files. policy-rc.d is honoured by invoke-rc.d and
  # deb-systemd-invoke; a temporary one is made only if the machine has none, and removed afterwards.
  local made_policy="" st=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from w2vbert-swift cluster/lib.sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || st=$?
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  return $st
}
