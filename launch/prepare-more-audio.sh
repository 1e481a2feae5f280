#!/usr/bin/env bash
# More unlabelled audio for pre-training: the default corpus's train split plus every recording of the same
# game's Dutch voices (Debian package fillets-ng-data-nl, GPL-2; 1,614 files, about 1.6 h), which doubles the
# audio the encoder learns from. Labels, fine-tuning and scoring stay on the Czech corpus: its valid split is
# kept as the validation set and its test split is left out, as in the main job.
#   launch/prepare-more-audio.sh [OUT (default data/fillets-cs-nl)] [DATA (default data/fillets-cs)]
# Writes OUT/train.tsv (rows cs/LEVEL/FILE from DATA/train.tsv and nl/LEVEL/FILE, relative to OUT/audio, a
# folder of links) and OUT/valid.tsv (DATA/valid.tsv). Pre-train on it as in the main job:
#   bash launch/local.sh 2 train --preset tiny --train OUT/train.tsv --valid OUT/valid.tsv --run-dir RUN
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-data/fillets-cs-nl}"
DATA="${2:-data/fillets-cs}"
GAME=/usr/share/games/fillets-ng
source launch/lib.sh
w2v_install fillets-ng-data-nl
[ -s "$DATA/train.tsv" ] || bash launch/prepare-corpus.sh "$DATA"
BIN="$(w2v_build_bin)"
mkdir -p "$OUT/audio/nl"
ln -sfn "$(cd "$(head -n 1 "$DATA/train.tsv")" && pwd)" "$OUT/audio/cs"
find "$GAME/sound" -type d -name nl | while read -r d; do
  ln -sfn "$d" "$OUT/audio/nl/$(basename "$(dirname "$d")")"
done
PREPARED="$(mktemp -d "$OUT/.prepared.XXXXXX")"
trap 'rm -rf "$PREPARED"' EXIT
"$BIN" prepare "$OUT/audio/nl" --out "$PREPARED" --extensions ogg --valid-percent 0 | sed '/^  wrote /d'
{
  (cd "$OUT/audio" && pwd)
  tail -n +2 "$DATA/train.tsv" | sed 's|^|cs/|'
  tail -n +2 "$PREPARED/train.tsv" | sed 's|^|nl/|'
} > "$OUT/train.tsv"
cp "$DATA/valid.tsv" "$OUT/valid.tsv"
echo "wrote $OUT/train.tsv ($(($(wc -l < "$OUT/train.tsv") - 1)) files) and $OUT/valid.tsv"
