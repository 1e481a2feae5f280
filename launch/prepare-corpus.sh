#!/usr/bin/env bash
# Prepares the default corpus: Czech speech of Fish Fillets NG (Debian package fillets-ng-data-cs,
# Ogg/Vorbis at 22.05/44.1 kHz, some stereo; GPL-2), as fairseq-style manifests for `w2vbert train`.
#   launch/prepare-corpus.sh [MANIFEST_DIR (default data/fillets-cs)] [extra `w2vbert prepare` options]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-data/fillets-cs}"
shift || true
SRC=/usr/share/games/fillets-ng/sound
if ! dpkg -s fillets-ng-data-cs >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq fillets-ng-data-cs
fi
source launch/lib.sh
BIN="$(w2v_build_bin)"
# The Czech voices live in <level>/cs/ folders; link only those into a staging folder so the manifest
# root is one folder and the other languages are left out.
STAGE="$OUT/audio"
mkdir -p "$STAGE"
find "$SRC" -type d -name cs | while read -r d; do
  level="$(basename "$(dirname "$d")")"
  ln -sfn "$d" "$STAGE/$level"
done
"$BIN" prepare "$STAGE" --out "$OUT" --extensions ogg "$@"
