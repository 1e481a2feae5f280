#!/usr/bin/env bash
# A CTC fine-tuning step in w2vbert-swift (`w2vbert bench finetune`) and in transformers' Wav2Vec2BertForCTC
# (launch/bench-finetune-pytorch.py), same model (the HF config.json w2vbert writes for the preset), same batch,
# same thread count, in both precisions: swift fp32 vs PyTorch eager fp32, swift bf16 vs PyTorch eager under
# bf16 autocast. Layer drop is off on both sides (a random number of blocks would make step times
# incomparable). ROUNDS rounds of the four runs, interleaved; prints every JSON line and, per precision, the
# median over rounds of each side's median step time and their ratio (> 1: swift is faster).
# Needs a Python with torch and transformers: PYTHON=/path/to/venv/bin/python (default python3).
#   bash launch/bench-finetune-vs-pytorch.sh [PRESET=small2] [THREADS=1] [STEPS=3] [ROUNDS=2] [BATCH=8] [SECONDS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET="${1:-small2}"; THREADS="${2:-1}"; STEPS="${3:-3}"; ROUNDS="${4:-2}"; BATCH="${5:-8}"; SECONDS_="${6:-10}"
PY="${PYTHON:-python3}"
source launch/lib.sh
BIN="$(w2v_bin)"
CFG="$(mktemp /tmp/bench-finetune.XXXXXX.json)"
trap 'rm -f "$CFG"' EXIT
OUT="$(mktemp /tmp/bench-finetune.XXXXXX.jsonl)"
for r in $(seq "$ROUNDS"); do
  for p in fp32 bf16; do
    s=$(set -x; "$BIN" bench finetune --preset "$PRESET" --batch "$BATCH" --seconds "$SECONDS_" --threads "$THREADS" \
      --steps "$STEPS" --hf-config "$CFG" --set model.layer_drop=0 --set compute.precision=$p | tail -n 1)
    echo "$s"; echo "swift $p $s" >> "$OUT"
    t=$(set -x; OMP_NUM_THREADS="$THREADS" "$PY" launch/bench-finetune-pytorch.py --config "$CFG" --batch "$BATCH" \
      --seconds "$SECONDS_" --threads "$THREADS" --steps "$STEPS" --precision $p | tail -n 1)
    echo "$t"; echo "torch $p $t" >> "$OUT"
  done
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    side, p, js = line.split(" ", 2)
    runs.setdefault((side, p), []).append(json.loads(js))
for p, name in (("fp32", "fp32 vs PyTorch eager fp32"), ("bf16", "bf16 vs PyTorch eager bf16 autocast")):
    s = statistics.median(r["step_time_median"] for r in runs[("swift", p)])
    t = statistics.median(r["step_time_median"] for r in runs[("torch", p)])
    r0 = runs[("swift", p)][0]
    print(f"{r0['preset']} CTC fine-tuning, {r0['batch']} x {r0['seconds_per_utterance']} s, {r0['threads']} thread(s), "
          f"{name}: swift {s:.3f} s/step, pytorch {t:.3f} s/step: swift is {t / s:.2f}x as fast")
PY
rm -f "$OUT"
