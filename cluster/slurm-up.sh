#!/usr/bin/env bash
# Brings up a local Slurm cluster on this machine (root, Debian 12); docs/clusters.md.
#   bash cluster/slurm-up.sh [NODES]      NODES = 1 (default: node named `hostname -s`, all cores)
#                                                 2 (nodes n1, n2: two slurmd on this host, 1 CPU each)
# Then, in your shell:  export SLURM_CONF=/tmp/w2v-cluster/slurm/slurm.conf   (printed on stdout too)
# Idempotent: a cluster already up with the same NODES is left as it is; one with another node count
# is torn down first. Everything lives under $W2V_CLUSTER_STATE/slurm (default /tmp/w2v-cluster/slurm):
# config, munge socket, spool, state, logs, pid files. Tear down with cluster/slurm-down.sh.
# Installs slurm-wlm, munge and slurm-client with apt-get if they are missing.
# Settings for fast tests (docs/clusters.md, "The local test cluster"):
#   AuthInfo=cred_expire=W2V_SLURM_REQUEUE_DELAY (default 5 s; Slurm's default 120 s is the wait before a
#   requeued job may start again), SchedulerParameters=sched_interval=2 (pending jobs retried every 2 s),
#   KillWait=10.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/lib.sh"
cl_need_root
NODES="${1:-1}"
case "$NODES" in 1|2) ;; *) echo "usage: cluster/slurm-up.sh [1|2]" >&2; exit 2 ;; esac
D="$W2V_SLURM_DIR"
CONF="$D/slurm.conf"
TAG="slurm:$D"

if [ -s "$D/nodes" ] && cl_pid_alive "$D/munged.pid" && cl_pid_alive "$D/slurmctld.pid"; then
  up=1
  for n in $(cat "$D/nodenames"); do cl_pid_alive "$D/slurmd-$n.pid" || up=0; done
  if [ $up = 1 ] && [ "$(cat "$D/nodes")" = "$NODES" ]; then
    cl_log "Slurm cluster ($NODES node(s)) already up"
    echo "export SLURM_CONF=$CONF"
    exit 0
  fi
fi
if [ -d "$D" ]; then cl_log "partial or different cluster found: tearing it down first"; bash "$HERE/slurm-down.sh"; fi

cl_apt_install slurm-wlm munge slurm-client
HOST="$(hostname -s)"
mkdir -p "$D"/{state,spool,log,munge}
chmod 755 "$D"
echo "$NODES" > "$D/nodes"

# --- munge: own socket, pid, log and seed files (the package's key /etc/munge/munge.key) --------------
[ -s /etc/munge/munge.key ] || { cl_log "creating /etc/munge/munge.key"; /usr/sbin/mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
chown munge:munge "$D/munge"; chmod 755 "$D/munge"   # clients must reach the socket
SOCK="$D/munge/munge.socket"
env W2V_CLUSTER_OWNER="$TAG" runuser -u munge -- /usr/sbin/munged --socket="$SOCK" \
  --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"
for _ in $(seq 50); do [ -S "$SOCK" ] && [ -s "$D/munge/munged.pid" ] && break; sleep 0.1; done
cp "$D/munge/munged.pid" "$D/munged.pid"

# --- slurm.conf ------------------------------------------------------------------------------------
CPUS="$(nproc)"
if [ "$NODES" = 1 ]; then
  NODENAMES="$HOST"
  NODELINES="NodeName=$HOST NodeAddr=127.0.0.1 Port=$((W2V_SLURMD_PORT0 + 1)) CPUs=$CPUS State=UNKNOWN"
else
  NODENAMES="n1 n2"
  NODELINES="NodeName=n1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((W2V_SLURMD_PORT0 + 1)) CPUs=1 State=UNKNOWN
NodeName=n2 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((W2V_SLURMD_PORT0 + 2)) CPUs=1 State=UNKNOWN"
fi
echo "$NODENAMES" > "$D/nodenames"
for n in $NODENAMES; do mkdir -p "$D/tmp-$n" "$D/spool/$n"; done
cat > "$CONF" <<CONF
# Written by cluster/slurm-up.sh ($NODES node(s)); removed by cluster/slurm-down.sh.
ClusterName=w2vlocal
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$W2V_SLURMCTLD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK,cred_expire=${W2V_SLURM_REQUEUE_DELAY:-5}
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd-%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
TmpFS=$D/tmp-%n
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=pmix
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
$NODELINES
PartitionName=debug Nodes=$(echo $NODENAMES | tr ' ' ',') Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
export SLURM_CONF="$CONF"

# --- daemons (started with the W2V_CLUSTER_OWNER marker, which slurm-down.sh uses as a last resort) ---
env W2V_CLUSTER_OWNER="$TAG" SLURM_CONF="$CONF" /usr/sbin/slurmctld -f "$CONF" -i
for n in $NODENAMES; do
  if [ "$NODES" = 1 ]; then
    env W2V_CLUSTER_OWNER="$TAG" SLURM_CONF="$CONF" /usr/sbin/slurmd -f "$CONF"
  else
    # Each node gets its own hostname (UTS namespace) so ranks report n1/n2 and Open MPI's shared-memory
    # segment names cannot collide; the network stays the host's (loopback).
    env W2V_CLUSTER_OWNER="$TAG" SLURM_CONF="$CONF" unshare --uts sh -c 'hostname "$1"; exec /usr/sbin/slurmd -f "$2" -N "$1"' sh "$n" "$CONF"
  fi
done

# --- wait until every node is idle ---------------------------------------------------------------
for i in $(seq 60); do
  states="$(sinfo -h -N -o '%N %t' 2>/dev/null || true)"
  idle="$(echo "$states" | awk '$2 == "idle"' | wc -l)"
  [ "$idle" = "$NODES" ] && break
  if [ "$i" = 60 ]; then
    cl_log "nodes not idle after 30 s:"; echo "$states" >&2; tail -n 20 "$D"/log/*.log >&2; exit 1
  fi
  sleep 0.5
done
cl_log "Slurm cluster up: $NODES node(s) ($NODENAMES), config $CONF"
echo "export SLURM_CONF=$CONF"
