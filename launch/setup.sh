#!/usr/bin/env bash
# Installs the system packages the project needs (Debian 12, as root or with sudo).
set -euo pipefail
# fillets-ng-data-cs: the default corpus (Czech speech), which the tests read too; fillets-ng-data: its
# transcripts (the game's dialog scripts).
# python3: the corpus transcripts script and the source checks of launch/test.sh.
PKGS=(libopenmpi-dev openmpi-bin libopenblas-dev libdnnl-dev libsndfile1-dev libsamplerate0-dev pkg-config
  fillets-ng-data-cs fillets-ng-data python3)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
