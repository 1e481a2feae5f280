#!/usr/bin/env bash
# Open MPI "rsh agent" for the emulated hosts of cluster/netns-up.sh (--mca plm_rsh_agent THIS).
# mpirun calls it as `rsh-agent.sh HOST COMMAND...` (like ssh); it runs COMMAND in the network namespace
# of HOST (10.77.0.N → w2v-nsN) with its own UTS namespace whose hostname is nodeN.
set -eu
source "$(dirname "$0")/lib.sh"
host="$1"; shift
case "$host" in
  "$W2V_SUBNET".*) n="${host##*.}" ;;
  node[0-9]*)      n="${host#node}" ;;
  *) echo "rsh-agent: unknown emulated host '$host'" >&2; exit 255 ;;
esac
exec ip netns exec "$W2V_NS_PREFIX$n" unshare --uts sh -c "hostname node$n; $*"
