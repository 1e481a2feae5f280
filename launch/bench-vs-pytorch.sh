#!/usr/bin/env bash
# A training step of a preset in w2vbert-swift and in the PyTorch twin, same config, same thread count, same
# synthetic shapes, in both precisions: swift fp32 vs PyTorch eager fp32, and swift bf16 vs PyTorch eager
# under torch.autocast("cpu", dtype=torch.bfloat16). The four runs are interleaved; prints every JSON line
# and the ratios (swift's speed over PyTorch's; > 1 means swift is faster).
# Needs a Python with torch, numpy and safetensors: PYTHON=/path/to/venv/bin/python (default python3).
#   bash launch/bench-vs-pytorch.sh [PRESET=small] [THREADS=1] [STEPS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET="${1:-small}"; THREADS="${2:-1}"; STEPS="${3:-3}"
PY="${PYTHON:-python3}"
source launch/lib.sh
BIN="$(w2v_bin)"
lines=()
for p in fp32 bf16; do
  s=$(set -x; "$BIN" bench model --preset "$PRESET" --threads "$THREADS" --steps "$STEPS" --set compute.precision=$p | tail -n 1)
  echo "$s"; lines+=("$s")
  t=$(set -x; OMP_NUM_THREADS="$THREADS" "$PY" Tests/W2VBertTests/twin/w2vbert_twin.py bench --preset "$PRESET" \
    --threads "$THREADS" --steps "$STEPS" --precision $p | tail -n 1)
  echo "$t"; lines+=("$t")
done
python3 - "${lines[@]}" <<'PY'
import json, sys
s32, t32, s16, t16 = (json.loads(x) for x in sys.argv[1:5])
for name, s, t in (("fp32 vs PyTorch fp32", s32, t32), ("bf16 vs PyTorch autocast bf16", s16, t16)):
    print(f"{s['preset']}, {s['threads']} thread(s), {name}: swift {s['step_time_median']:.3f} s/step, "
          f"pytorch {t['step_time_median']:.3f} s/step: swift is {t['step_time_median'] / s['step_time_median']:.2f}x as fast")
PY
