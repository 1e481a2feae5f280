#!/usr/bin/env bash
# A training step of a preset in w2vbert-swift and in the PyTorch twin (eager, float32), same config,
# same thread count, same synthetic shapes; prints both JSON lines and the speed ratio.
# Needs a Python with torch, numpy and safetensors: PYTHON=/path/to/venv/bin/python (default python3).
#   bash launch/bench-vs-pytorch.sh [PRESET=small] [THREADS=1] [STEPS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET="${1:-small}"; THREADS="${2:-1}"; STEPS="${3:-3}"
PY="${PYTHON:-python3}"
source launch/lib.sh
BIN="$(w2v_bin)"
swift_line=$(set -x; "$BIN" bench --preset "$PRESET" --threads "$THREADS" --steps "$STEPS" | tail -n 1)
echo "$swift_line"
torch_line=$(set -x; OMP_NUM_THREADS="$THREADS" "$PY" Tests/W2VBertTests/twin/w2vbert_twin.py bench --preset "$PRESET" \
  --threads "$THREADS" --steps "$STEPS" | tail -n 1)
echo "$torch_line"
python3 - "$swift_line" "$torch_line" <<'PY'
import json, sys
s, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{s['preset']}: swift {s['step_time_median']:.3f} s/step, pytorch {t['step_time_median']:.3f} s/step: "
      f"swift is {t['step_time_median'] / s['step_time_median']:.2f}x as fast")
PY
