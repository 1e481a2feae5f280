#!/usr/bin/env bash
# Installs the system packages the project needs (Debian 12, as root or with sudo).
set -euo pipefail
# fillets-ng-data-cs: the default corpus (Czech speech), which the tests read too; fillets-ng-data: its
# transcripts (the game's dialog scripts).
# python3: the corpus transcripts script and the source checks of launch/test.sh.
PKGS=(libopenmpi-dev openmpi-bin libopenblas-dev libdnnl-dev libsndfile1-dev libsamplerate0-dev pkg-config
  fillets-ng-data-cs fillets-ng-data python3)
source "$(dirname "$0")/lib.sh"
w2v_install "${PKGS[@]}"
