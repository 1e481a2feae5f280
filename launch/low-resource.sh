#!/usr/bin/env bash
# The low-resource table (docs/finetuning.md): CTC fine-tuning of a pre-trained encoder and of the same
# architecture from random initialisation on 10 min, 30 min and all of the labelled training audio of the
# default corpus, at least two seeds each, scored on its held-out test split (CER, WER of greedy decoding).
#   bash launch/low-resource.sh PRETRAINED_RUN [OUT (default runs/low-resource)]
# Environment: PRESET (tiny: the preset of the README's main job), SEEDS ("1 2"), INITS ("pretrained random"),
# STEPS (2000 updates), RANKS (1 or 2; every update is 2 micro-batches of at most 4000 frames: 2 ranks, or 1 rank
# with train.update_freq 2, which gives the same bits), DATA (data/fillets-cs), W2VBERT_BIN. Two instances with
# different SEEDS and RANKS=1 share a 2-core machine; the table is printed once every run it lists is done. Every run gets the same recipe (RECIPE below: updates, learning rate and
# schedule, masking, dropout), so only the starting point differs. The subsets are nested (10 min within 30 min)
# and fixed by launch/label-subsets.py --seed 1; the letter dictionary is built from all of train.wrd, so every
# run has the same outputs. Each run is a run folder OUT/LABELS-INIT-sSEED (running the script again resumes or
# skips finished runs); its test score is OUT/LABELS-INIT-sSEED/test.json, the last line of `w2vbert evaluate`
# on the last checkpoint. The table is printed and written to OUT/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: launch/low-resource.sh PRETRAINED_RUN [OUT]" >&2; exit 2; }
PRETRAINED="$1"
OUT="${2:-runs/low-resource}"
PRESET="${PRESET:-tiny}"; SEEDS="${SEEDS:-1 2}"; STEPS="${STEPS:-2000}"; RANKS="${RANKS:-2}"
INITS="${INITS:-pretrained random}"
case "$RANKS" in 1|2) ;; *) echo "low-resource: RANKS must be 1 or 2" >&2; exit 2 ;; esac
DATA="${DATA:-data/fillets-cs}"
source launch/lib.sh
BIN="$(w2v_build_bin)"
export W2VBERT_BIN="$BIN"
[ -d "$PRETRAINED" ] || { echo "low-resource: $PRETRAINED: no such run or checkpoint folder" >&2; exit 2; }
[ -s "$DATA/test.tsv" ] || bash launch/prepare-corpus.sh "$DATA"
RECIPE=(--set optimizer.schedule=tri_stage --set optimizer.lr=5e-4 --set train.max_frames=4000
        --set train.update_freq=$((2 / RANKS)) --set finetune.freeze_updates=0 --set finetune.mask_time_prob=0.5 --set finetune.mask_time_span=5
        --set finetune.mask_channel_prob=0.25 --set finetune.mask_channel_span=16
        --set model.dropout=0.1 --set model.final_dropout=0.1 --set compute.precision=bf16
        --set train.valid_interval=500 --set train.save_interval=500)
mkdir -p "$OUT/labels"
python3 launch/label-subsets.py "$DATA/train.tsv" "$OUT/labels" 10 30 --seed 1
if [ ! -s "$OUT/dict.ltr.txt" ]; then
  rm -rf "$OUT/.dict"
  "$BIN" init-ctc --preset "$PRESET" --transcripts "$DATA/train.wrd" --run-dir "$OUT/.dict" >/dev/null
  mv "$OUT/.dict/dict.ltr.txt" "$OUT/dict.ltr.txt"
  rm -rf "$OUT/.dict"
fi
for labels in 10min 30min all; do
  train="$OUT/labels/train-$labels.tsv"
  [ "$labels" = all ] && train="$DATA/train.tsv"
  for init in $INITS; do
    for seed in $SEEDS; do
      run="$OUT/$labels-$init-s$seed"
      [ -s "$run/test.json" ] && continue
      mkdir -p "$run"
      from=()
      [ "$init" = pretrained ] && from=(--init-from "$PRETRAINED")
      echo "== $run"
      bash launch/local.sh "$RANKS" finetune --preset "$PRESET" --train "$train" --valid "$DATA/valid.tsv" \
        --dict "$OUT/dict.ltr.txt" --run-dir "$run" --max-steps "$STEPS" --set train.seed="$seed" \
        "${RECIPE[@]}" "${from[@]}" --quiet
      "$BIN" evaluate --checkpoint "$run" --manifest "$DATA/test.tsv" | tail -n 1 > "$run/test.json.tmp"
      mv "$run/test.json.tmp" "$run/test.json"
      cat "$run/test.json"
    done
  done
done
for labels in 10min 30min all; do
  for init in pretrained random; do
    for seed in $SEEDS; do [ -s "$OUT/$labels-$init-s$seed/test.json" ] || exit 0; done
  done
done
python3 - "$OUT" "$SEEDS" "$STEPS" "$PRESET" <<'PY' | tee "$OUT/table.md"
import json, statistics, sys
out, seeds, steps, preset = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
names = {"10min": "10 min", "30min": "30 min", "all": "all (90.6 min)"}
print(f"| labels | init | CER per seed ({', '.join(seeds)}) | CER mean | WER mean | pre-trained CER vs random |")
print("|---|---|---|---|---|---|")
for labels in ("10min", "30min", "all"):
    mean = {}
    for init in ("pretrained", "random"):
        r = [json.load(open(f"{out}/{labels}-{init}-s{s}/test.json")) for s in seeds]
        cer = [x["cer"] for x in r]
        mean[init] = (statistics.mean(cer), statistics.mean(x["wer"] for x in r))
        cut = ""
        if init == "random":
            change = 100 * (mean["pretrained"][0] / mean["random"][0] - 1)
            cut = f"{change:+.1f} % ({'better' if change < 0 else 'worse'})"
        print(f"| {names[labels]} | {init} | {' / '.join(f'{c:.3f}' for c in cer)} | {mean[init][0]:.3f} | "
              f"{mean[init][1]:.3f} | {cut} |")
print(f"\n{preset} preset, {steps} updates per run, test split of the default corpus, greedy CTC decoding.")
PY
