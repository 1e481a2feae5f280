#!/usr/bin/env bash
# Emulates two hosts on this machine for mpirun over TCP (docs/clusters.md): network namespaces
# w2v-ns1 (10.77.0.1) and w2v-ns2 (10.77.0.2) joined by the bridge w2v-br0 (10.77.0.254, where mpirun
# runs). Writes $W2V_CLUSTER_STATE/netns/hostfile and prints the mpirun settings to use:
#   bash cluster/netns-up.sh
#   W2V_BIND=none W2V_MPIRUN_ARGS="$(cat /tmp/w2v-cluster/netns/mpirun-args)" \
#     bash launch/mpirun-hosts.sh /tmp/w2v-cluster/netns/hostfile 2 check mpi
# The rsh agent (cluster/rsh-agent.sh) starts Open MPI's daemon inside the namespace of the host it is
# given, under `unshare --uts` with the hostname node1/node2. Idempotent; cluster/netns-down.sh removes
# the namespaces, bridge, veths and state files. No traffic leaves the bridge (no route, no NAT).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/lib.sh"
cl_need_root
command -v ip >/dev/null || cl_apt_install iproute2
command -v unshare >/dev/null || cl_apt_install util-linux
D="$W2V_NETNS_DIR"
mkdir -p "$D"
# `ip netns add` creates /run/netns (a bind mount) when missing: remember, so netns-down removes it again.
if [ ! -d /run/netns ] && [ ! -e "$D/made-run-netns" ]; then touch "$D/made-run-netns"; fi
if ! ip link show "$W2V_BRIDGE" >/dev/null 2>&1; then
  ip link add "$W2V_BRIDGE" type bridge
fi
ip addr replace "$W2V_SUBNET.254/24" dev "$W2V_BRIDGE"
ip link set "$W2V_BRIDGE" up
for i in 1 2; do
  ns="$W2V_NS_PREFIX$i" v="$W2V_VETH_PREFIX$i"
  [ -e "/var/run/netns/$ns" ] || ip netns add "$ns"
  if ! ip netns exec "$ns" ip link show "$v" >/dev/null 2>&1; then
    ip link del "${v}p" 2>/dev/null || true
    ip link add "$v" type veth peer name "${v}p"
    ip link set "$v" netns "$ns"
  fi
  ip link set "${v}p" master "$W2V_BRIDGE"
  ip link set "${v}p" up
  ip netns exec "$ns" ip addr replace "$W2V_SUBNET.$i/24" dev "$v"
  ip netns exec "$ns" ip link set "$v" up
  ip netns exec "$ns" ip link set lo up
done
printf '%s slots=1\n' "$W2V_SUBNET.1" "$W2V_SUBNET.2" > "$D/hostfile"
cat > "$D/mpirun-args" <<ARGS
--mca plm_rsh_agent $HERE/rsh-agent.sh --mca plm_rsh_no_tree_spawn 1 --mca btl self,tcp --mca btl_tcp_if_include $W2V_SUBNET.0/24 --mca oob_tcp_if_include $W2V_SUBNET.0/24
ARGS
# reachability check when ping exists (fails loudly instead of letting mpirun wait)
if command -v ping >/dev/null; then
  for i in 1 2; do
    ping -c 1 -W 2 "$W2V_SUBNET.$i" >/dev/null 2>&1 || { cl_log "host $W2V_SUBNET.$i not reachable"; exit 1; }
  done
fi
cl_log "emulated hosts up: $W2V_SUBNET.1 ($W2V_NS_PREFIX""1), $W2V_SUBNET.2 ($W2V_NS_PREFIX""2); hostfile $D/hostfile"
echo "hostfile=$D/hostfile"
echo "mpirun-args=$(cat "$D/mpirun-args")"
