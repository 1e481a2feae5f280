#!/usr/bin/env bash
# Peak resident memory of one training step, w2vbert-swift against the PyTorch twin in eager mode, at long
# utterances: base preset, bf16 (swift's compute.precision=bf16, PyTorch's autocast), 1 thread, batch 1,
# 60 s and 180 s; swift with and without train.checkpoint_activations=blocks; PyTorch with its fused
# scaled_dot_product_attention (sdpa: what a PyTorch user writes, no T×T matrix kept) and with the twin's
# explicit softmax. The runs go one at a time, a length's PyTorch runs right after its swift runs. Prints every
# JSON line, then per length the peak RSS of each run and the ratios against the leaner PyTorch run (sdpa):
# swift ÷ PyTorch without checkpointing, with checkpointing, and swift's activation bytes at 180 s ÷ 60 s.
# Needs a Python with torch, numpy and safetensors: PYTHON=/path/to/venv/bin/python (default python3).
#   bash launch/bench-memory.sh [SECONDS="60 180"] [PRESET=base]
set -euo pipefail
cd "$(dirname "$0")/.."
LENGTHS="${1:-60 180}"; PRESET="${2:-base}"
PY="${PYTHON:-python3}"
source launch/lib.sh
BIN="$(w2v_bin)"
lines=()
for s in $LENGTHS; do
  for ck in none blocks; do
    l=$(set -x; "$BIN" bench model --preset "$PRESET" --batch 1 --seconds "$s" --steps 1 --threads 1 \
      --set compute.precision=bf16 --set train.checkpoint_activations=$ck | tail -n 1)
    echo "$l"; lines+=("swift $s $ck $l")
  done
  for att in sdpa explicit; do
    l=$(set -x; OMP_NUM_THREADS=1 "$PY" Tests/W2VBertTests/twin/w2vbert_twin.py bench --preset "$PRESET" --batch 1 \
      --seconds "$s" --steps 1 --threads 1 --precision bf16 --attention $att | tail -n 1)
    echo "$l"; lines+=("pytorch $s $att $l")
  done
done
python3 - "${lines[@]}" <<'PY'
import json, sys
runs = {}
for arg in sys.argv[1:]:
    impl, seconds, ck, line = arg.split(" ", 3)
    runs[(impl, float(seconds), ck)] = json.loads(line)
gb = lambda b: f"{b / 1e9:.2f} GB"
lengths = sorted({k[1] for k in runs})
for s in lengths:
    torch, off, on = runs[("pytorch", s, "sdpa")], runs[("swift", s, "none")], runs[("swift", s, "blocks")]
    t = torch["peak_rss_bytes"]
    print(f"1 x {s:g} s: peak RSS pytorch {gb(t)} (explicit softmax {gb(runs[('pytorch', s, 'explicit')]['peak_rss_bytes'])}), "
          f"swift {gb(off['peak_rss_bytes'])} "
          f"(activations {gb(off['activation_bytes'])}), swift checkpointed {gb(on['peak_rss_bytes'])} "
          f"(activations {gb(on['activation_bytes'])}); swift / pytorch {off['peak_rss_bytes'] / t:.2f}, "
          f"checkpointed / pytorch {on['peak_rss_bytes'] / t:.2f}")
if 60.0 in lengths and 180.0 in lengths:
    a60, a180 = runs[("swift", 60.0, "none")]["activation_bytes"], runs[("swift", 180.0, "none")]["activation_bytes"]
    print(f"activation bytes 180 s / 60 s (no checkpointing): {a180 / a60:.2f}")
PY
