#!/usr/bin/env bash
# The real Hugging Face round trip (docs/huggingface.md), where transformers is installed: train tiny2 a few steps on
# the default corpus, export-hf, load it with transformers (Wav2Vec2BertModel, AutoFeatureExtractor,
# Wav2Vec2BertForCTC), compare HF's last_hidden_state with `w2vbert embed` on real audio in a padded batch
# (≤ 1e-4 relative), measure HF's own feature extractor on the raw audio (mono and stereo), round-trip
# export → import → export bit-identically, and import folders written by transformers itself for every
# preset size (tiny2, small2, base2, w2v-bert-2.0; the last also checked numerically, ~10 GB of memory).
#   launch/check-hf.sh [WORKDIR (default: a temporary folder)]
# Environment: PYTHON (a Python with torch, transformers and safetensors, e.g. a virtualenv's;
# default python3), W2VBERT_BIN, HF_CHECK_PRESETS.
# Needs sox and fillets-ng-data-cs (launch/prepare-corpus.sh installs it). Exit 0 also when transformers
# is missing (says SKIPPED); 1 when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source launch/lib.sh
w2v_hf_python check-hf
BIN="$(w2v_build_bin)"
W="${1:-$(mktemp -d /tmp/check-hf.XXXXXX)}"
mkdir -p "$W"
HF="$PY $ROOT/Tests/W2VBertTests/twin/hf_check.py"
export TRANSFORMERS_VERBOSITY=error PYTHONWARNINGS=ignore HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1
say() { echo "== $*"; }
"$PY" -c "import transformers, torch; print(f'check-hf: transformers {transformers.__version__}, torch {torch.__version__}')"

say "tiny2, trained 30 steps on the default corpus"
[ -f "$W/data/train.tsv" ] || W2VBERT_BIN="$BIN" bash launch/prepare-corpus.sh "$W/data" >/dev/null
rm -rf "$W/run"
"$BIN" train --preset tiny2 --train "$W/data/train.tsv" --run-dir "$W/run" --max-steps 30 --quiet \
  --set optimizer.warmup=5 --set train.save_interval=30 --set train.max_frames=8000
"$BIN" export-hf "$W/run" --out "$W/tiny2-hf"
$HF load "$W/tiny2-hf" --trained

say "real audio (16 kHz 16-bit WAV via sox), padded batch of 4"
S=/usr/share/games/fillets-ng/sound
mkdir -p "$W/wav"
i=0
for f in airplane/cs/let-m-divna.ogg bathroom/cs/br-m-bavi.ogg cabin2/cs/ka2-m-chapadlo.ogg atlantis/cs/sp-v-vratit1.ogg; do
  i=$((i + 1)); sox -q -V1 "$S/$f" -r 16000 -c 1 -b 16 -e signed-integer "$W/wav/$i.wav"
done
sox -q -V1 "$S/fdto/cs/ted6-m.ogg" -r 16000 -b 16 -e signed-integer "$W/wav/stereo.wav"   # a stereo recording of the corpus
"$BIN" embed --checkpoint "$W/run" "$W"/wav/[1-4].wav --out "$W/states.npy" --batch --save-features "$W/feats.npy"
$HF compare "$W/tiny2-hf" "$W/feats.npy" "$W/states.npy"
say "HF's own feature extractor on the raw audio (measured)"
$HF extractor "$W/tiny2-hf" "$W/feats.npy" "$W/states.npy" "$W"/wav/[1-4].wav
say "stereo: w2vbert averages the channels, HF's extractor keeps channel 0 (measured)"
"$BIN" embed --checkpoint "$W/run" "$W/wav/stereo.wav" "$W/wav/1.wav" --out "$W/st.npy" --batch --save-features "$W/stf.npy"
$HF extractor "$W/tiny2-hf" "$W/stf.npy" "$W/st.npy" "$W/wav/stereo.wav" "$W/wav/1.wav"

say "round trip: export → import-hf → export is bit-identical"
rm -rf "$W/tiny2-ck" "$W/tiny2-hf2"
"$BIN" import-hf "$W/tiny2-hf" --out "$W/tiny2-ck"
"$BIN" export-hf "$W/tiny2-ck" --out "$W/tiny2-hf2"
$HF same "$W/tiny2-hf" "$W/tiny2-hf2"

for p in ${HF_CHECK_PRESETS:-tiny2 small2 base2 w2v-bert-2.0}; do
  say "$p: a folder written by transformers (Wav2Vec2BertModel(config).save_pretrained) → import-hf → export-hf"
  rm -rf "$W/$p-t" "$W/$p-ck" "$W/$p-back"
  $HF write "$p" "$W/$p-t"
  "$BIN" import-hf "$W/$p-t" --out "$W/$p-ck"
  "$BIN" export-hf "$W/$p-ck" --out "$W/$p-back"
  $HF same "$W/$p-t" "$W/$p-back"
  if [ "$p" = w2v-bert-2.0 ] || [ "$p" = tiny2 ]; then
    "$BIN" embed --checkpoint "$W/$p-ck" "$W"/wav/[1-3].wav --out "$W/$p-states.npy" --batch --save-features "$W/$p-feats.npy"
    $HF compare "$W/$p-t" "$W/$p-feats.npy" "$W/$p-states.npy"
  fi
  rm -rf "$W/$p-t" "$W/$p-ck" "$W/$p-back" "$W/$p-states.npy"
done
say "check-hf: all checks passed ($W)"
