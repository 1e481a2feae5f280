#!/usr/bin/env bash
# Prepares the default corpus: Czech speech of Fish Fillets NG (Debian package fillets-ng-data-cs,
# Ogg/Vorbis at 22.05/44.1 kHz, some stereo; GPL-2), as fairseq-style manifests for `w2vbert train` with
# transcripts for fine-tuning and scoring.
#   launch/prepare-corpus.sh [MANIFEST_DIR (default data/fillets-cs)] [extra `w2vbert prepare` options]
# Writes MANIFEST_DIR/{train,valid,test}.tsv and beside each a .wrd file (one line per manifest row, same
# order: the line spoken, from the game's Czech dialog scripts in fillets-ng-data; an empty line when
# none is known), plus MANIFEST_DIR/audio, the folder of links the manifests' rows are relative to.
# The test split (about 10 % of the labelled files) is fixed, whatever prepare's options: a labelled file
# is in test iff the SHA-256 of its normalised line (lowercase, letters and digits only, single spaces) is
# 0 modulo 10, so a sentence spoken in several files (lines repeat across levels) is never on both sides.
# Unlabelled files and the rest go to train/valid as `w2vbert prepare` splits them (--valid-percent,
# --seed). launch/fillets-transcripts.py holds the rules and checks the result (exit 1 naming the file).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-data/fillets-cs}"
shift || true
GAME=/usr/share/games/fillets-ng
PKGS=(fillets-ng-data fillets-ng-data-cs)   # the dialog scripts; the Czech voices
source launch/lib.sh
w2v_install "${PKGS[@]}"
BIN="$(w2v_build_bin)"
# The Czech voices live in <level>/cs/ folders; link only those into a staging folder so the manifest
# root is one folder and the other languages are left out.
STAGE="$OUT/audio"
mkdir -p "$STAGE"
find "$GAME/sound" -type d -name cs | while read -r d; do
  level="$(basename "$(dirname "$d")")"
  ln -sfn "$d" "$STAGE/$level"
done
# prepare's train/valid go to a scratch folder; the transcripts step writes the final manifests.
PREPARED="$(mktemp -d "$OUT/.prepared.XXXXXX")"
trap 'rm -rf "$PREPARED"' EXIT
"$BIN" prepare "$STAGE" --out "$PREPARED" --extensions ogg "$@" | sed '/^  wrote /d'
python3 launch/fillets-transcripts.py "$PREPARED" "$OUT" "$GAME"
