#!/usr/bin/env bash
# The Hugging Face check of a CTC fine-tuned model (docs/huggingface.md), where transformers is installed:
# export-hf writes Wav2Vec2BertForCTC with its tokenizer; transformers loads it (model, Wav2Vec2BertProcessor,
# the automatic-speech-recognition pipeline) with no missing or unexpected weight and the dictionary's ids;
# Wav2Vec2BertForCTC's logits on w2vbert's fbank features of real audio (a padded batch) are compared with
# `w2vbert transcribe --logits` (≤ 1e-4 relative); the greedy texts of the processor and of the pipeline (fed
# w2vbert's features) must equal `w2vbert transcribe`'s for every file; the pipeline with its own feature
# extractor on the raw audio is measured.
#   launch/check-hf-ctc.sh [WORKDIR (default: a temporary folder)] [CHECKPOINT [AUDIO...]]
# Without CHECKPOINT: a tiny2 CTC model with its initial (random) parameters and the dictionary of the default
# corpus's train.wrd (`w2vbert init-ctc`). Without AUDIO: four files of the default corpus. Each audio file is
# converted to 16 kHz 16-bit mono WAV with sox first (no dither: the same samples every run), so both sides
# read the same samples.
# Environment: PYTHON (a Python with torch, transformers and safetensors, e.g. a virtualenv's;
# default python3), W2VBERT_BIN. Needs sox and, without
# CHECKPOINT or AUDIO, fillets-ng-data-cs (launch/prepare-corpus.sh installs it). Exit 0 also when transformers
# is missing (says SKIPPED); 1 when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source launch/lib.sh
w2v_hf_python check-hf-ctc
BIN="$(w2v_build_bin)"
W="${1:-$(mktemp -d /tmp/check-hf-ctc.XXXXXX)}"
shift || true
CK="${1:-}"
shift || true
mkdir -p "$W"
HF="$PY $ROOT/Tests/W2VBertTests/twin/hf_ctc_check.py"
export TRANSFORMERS_VERBOSITY=error PYTHONWARNINGS=ignore HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1
say() { echo "== $*"; }
"$PY" -c "import transformers, torch; print(f'check-hf-ctc: transformers {transformers.__version__}, torch {torch.__version__}')"

if [ -z "$CK" ] || [ $# -eq 0 ]; then
  [ -f "$W/data/train.tsv" ] || W2VBERT_BIN="$BIN" bash launch/prepare-corpus.sh "$W/data" >/dev/null
fi
if [ -z "$CK" ]; then
  say "tiny2 CTC model, initial parameters, dictionary of the default corpus's train.wrd"
  rm -rf "$W/run"
  "$BIN" init-ctc --preset tiny2 --transcripts "$W/data/train.wrd" --run-dir "$W/run"
  CK="$W/run"
fi
if [ $# -eq 0 ]; then
  S=/usr/share/games/fillets-ng/sound
  set -- "$S/airplane/cs/let-m-divna.ogg" "$S/bathroom/cs/br-m-bavi.ogg" "$S/cabin2/cs/ka2-m-chapadlo.ogg" \
    "$S/atlantis/cs/sp-v-vratit1.ogg"
fi

say "export-hf $CK"
rm -rf "$W/hf"
"$BIN" export-hf "$CK" --out "$W/hf"
# The dictionary as transcribe finds it: in the folder given, else in the run folder of a checkpoint folder.
DICT="$CK/dict.ltr.txt"
[ -f "$DICT" ] || DICT="$(dirname "$(dirname "$CK")")/dict.ltr.txt"
$HF load "$W/hf" "$DICT"

say "real audio (16 kHz 16-bit mono WAV via sox): w2vbert transcribe, its logits and features"
rm -rf "$W/wav"
mkdir -p "$W/wav"
i=0
for f in "$@"; do
  i=$((i + 1)); sox -q -V1 -D "$f" -r 16000 -c 1 -b 16 -e signed-integer "$W/wav/$i.wav"
done
"$BIN" transcribe --checkpoint "$CK" "$W"/wav/*.wav --out "$W/texts.tsv" --logits "$W/logits.npy" \
  --save-features "$W/feats.npy"
say "Wav2Vec2BertForCTC logits and the processor's greedy texts on w2vbert's features"
$HF compare "$W/hf" "$W/feats.npy" "$W/logits.npy" "$W/texts.tsv"
say "pipeline('automatic-speech-recognition') texts"
$HF pipeline "$W/hf" "$W/feats.npy" "$W/logits.npy" "$W/texts.tsv"
say "check-hf-ctc: all checks passed ($W)"
