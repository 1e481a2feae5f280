#!/usr/bin/env bash
# The generalisability table (docs/sequences.md): pre-train on sequences other than speech, then a linear
# probe of frozen `embed` features on a labelled task the model never saw labels for, against the same probe
# on the raw normalised input pooled the same way and on randomly initialised models of the same preset.
#   bash launch/beyond-speech.sh series|dna [OUT (default runs/beyond-speech-KIND)]
#     series: PLAID appliance current (launch/prepare-series-data.sh), preset series-tiny, probe: appliance class
#     dna:    Klebsiella/Acinetobacter loci and genomes (launch/prepare-dna-data.sh), preset tokens-tiny,
#             probe: which capsule-locus gene a window comes from
# Environment: SEEDS ("1 2": pre-training and random-initialisation seeds), STEPS (1000 updates), RANKS (2),
# WINDOW (dna probe windows, bases; 128), PYTHON (with numpy and torch, for the probe; default python3; the data
# scripts use Debian's python3),
# W2VBERT_BIN. Each model is a run folder OUT/pretrained-sSEED or OUT/random-sSEED (random: the initial
# weights, `train --max-steps 0`); running the script again skips what is done. Prints the table and writes
# OUT/probe/probe.json and OUT/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
KIND="${1:-}"
case "$KIND" in series|dna) ;; *) echo "usage: launch/beyond-speech.sh series|dna [OUT]" >&2; exit 2 ;; esac
OUT="${2:-runs/beyond-speech-$KIND}"
SEEDS="${SEEDS:-1 2}"; STEPS="${STEPS:-1000}"; RANKS="${RANKS:-2}"; WINDOW="${WINDOW:-128}"
PY="${PYTHON:-python3}"
source launch/lib.sh
BIN="$(w2v_build_bin)"
export W2VBERT_BIN="$BIN"
if [ "$KIND" = series ]; then
  DATA=data/series-plaid
  [ -s "$DATA/labels.tsv" ] || env -u PYTHON bash launch/prepare-series-data.sh "$DATA"
  PRESET=series-tiny; PREP=(--kind series); SRC="$DATA/files"; LABELS="$DATA/labels.tsv"; LROOT="$DATA/files"
  RECIPE=(--set train.max_frames=4096)
else
  DATA=data/dna-kaptive
  if [ ! -s "$DATA/probe-$WINDOW/labels.tsv" ]; then
    env -u PYTHON bash launch/prepare-dna-data.sh "$DATA" --window "$WINDOW"
    rm -rf "$DATA/probe-$WINDOW" && mv "$DATA/probe" "$DATA/probe-$WINDOW"
  fi
  PRESET=tokens-tiny; PREP=(--kind tokens); SRC="$DATA/pretrain"
  LABELS="$DATA/probe-$WINDOW/labels.tsv"; LROOT="$DATA/probe-$WINDOW/windows.fa"
  RECIPE=()
fi
mkdir -p "$OUT"
[ -s "$OUT/manifest/train.tsv" ] || "$BIN" prepare "$SRC" "${PREP[@]}" --out "$OUT/manifest" --jobs 2
"$PY" launch/sequence-probe.py files "$([ "$KIND" = series ] && echo series || echo tokens)" "$LABELS" "$LROOT" "$OUT/probe"
mapfile -t FILES < "$OUT/probe/files.txt"
COMMON=(--preset "$PRESET" --train "$OUT/manifest/train.tsv" --valid "$OUT/manifest/valid.tsv"
        --set train.valid_interval=250 --set train.save_interval=250 "${RECIPE[@]}" --quiet)
SPECS=()
for seed in $SEEDS; do
  for init in pretrained random; do
    run="$OUT/$init-s$seed"
    steps="$STEPS"; [ "$init" = random ] && steps=0
    if [ ! -s "$run/done" ]; then
      echo "== $run ($steps updates)"
      bash launch/local.sh "$RANKS" train "${COMMON[@]}" --run-dir "$run" --max-steps "$steps" --set train.seed="$seed"
      touch "$run/done"
    fi
    for layer in contrastive mlm; do
      f="$OUT/probe/$init-s$seed-$layer.npy"
      [ -s "$f" ] || "$BIN" embed --checkpoint "$run" --layer "$layer" --out "$f" "${FILES[@]}" >/dev/null
      SPECS+=("$init-s$seed-$layer=$f")
    done
  done
done
RAW="$OUT/probe/raw.npy"
[ -s "$RAW" ] || "$BIN" embed --checkpoint "$OUT/random-s${SEEDS%% *}" --save-features "$RAW" --out "$OUT/probe/.unused.npy" "${FILES[@]}" >/dev/null
if [ "$KIND" = dna ]; then V=$(grep -c . "$OUT/manifest/vocab.txt"); RAW="onehot:$V:$RAW"; fi
"$PY" launch/sequence-probe.py probe "$OUT/probe" "raw=$RAW" "${SPECS[@]}"
"$PY" - "$OUT" "$SEEDS" "$KIND" "$STEPS" <<'PY' | tee "$OUT/table.md"
import json, statistics, sys
out, seeds, kind, steps = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
r = json.load(open(f"{out}/probe/probe.json"))
def last_valid(run):
    v = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl") if '"kind":"valid"' in l.replace(" ", "")]
    return v[-1] if v else {}
print("| features | accuracy per seed (" + ", ".join(seeds) + ") | mean |")
print("|---|---|---|")
print(f"| raw input, pooled | {r['raw']['accuracy']:.3f} | {r['raw']['accuracy']:.3f} |")
for init in ("random", "pretrained"):
    for layer in ("contrastive", "mlm"):
        acc = [r[f"{init}-s{s}-{layer}"]["accuracy"] for s in seeds]
        print(f"| {init}, {layer} layer | {' / '.join(f'{a:.3f}' for a in acc)} | {statistics.mean(acc):.3f} |")
print()
for s in seeds:
    v = last_valid(f"pretrained-s{s}")
    keys = [k for k in v if "perplexity" in k or k.startswith("loss")]
    print(f"pretrained-s{s}, last validation: " + ", ".join(f"{k} {v[k]:.3f}" for k in sorted(keys)))
print(f"\n{kind}: {steps} updates of pre-training per seed; probe: 5-fold logistic regression on mean-pooled features.")
PY
