#!/usr/bin/env bash
# Removes what cluster/netns-up.sh made: any process still inside the namespaces (by pid), the
# namespaces w2v-ns1/2, the veths, the bridge w2v-br0 and $W2V_CLUSTER_STATE/netns. Safe to re-run.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/lib.sh"
cl_need_root
for i in 1 2; do
  ns="$W2V_NS_PREFIX$i"
  if [ -e "/var/run/netns/$ns" ]; then
    pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
    if [ -n "${pids// }" ]; then
      cl_log "stopping processes left in $ns: $pids"; kill -TERM $pids 2>/dev/null; sleep 1
      pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"; [ -z "${pids// }" ] || kill -KILL $pids 2>/dev/null
    fi
    ip netns del "$ns"
  fi
  ip link del "$W2V_VETH_PREFIX${i}p" 2>/dev/null || true
done
ip link del "$W2V_BRIDGE" 2>/dev/null || true
if [ -e "$W2V_NETNS_DIR/made-run-netns" ] && [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then
  umount /run/netns 2>/dev/null; rmdir /run/netns 2>/dev/null || true
fi
rm -rf "$W2V_NETNS_DIR"
rmdir "$W2V_CLUSTER_STATE" 2>/dev/null || true
cl_log "emulated hosts down"
