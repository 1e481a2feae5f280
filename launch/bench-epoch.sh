#!/usr/bin/env bash
# 2 ranks × 1 thread against 1 rank, training the small preset on the default corpus: one whole epoch
# (epoch 1, the same utterances on both), total audio ÷ total time, rounds interleaved (1 rank, then 2).
# Prints one line per round and the median ratio. Each rank is bound to its own core (launch/local.sh).
#   bash launch/bench-epoch.sh [ROUNDS=3] [PRECISION=bf16] [MAX_FRAMES=8000]
# Run directories: runs/bench-epoch/{1,2}-ROUND (replaced). About 3 min per bf16 round on 2 Zen 5 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"; PRECISION="${2:-bf16}"; MAX_FRAMES="${3:-8000}"
[ -s data/fillets-cs/train.tsv ] || bash launch/prepare-corpus.sh data/fillets-cs
# Enough steps to finish epoch 1: the corpus is 82 micro-batches per epoch at max_frames 8000.
STEPS1=$((170 * 8000 / MAX_FRAMES + 5)); STEPS2=$((STEPS1 / 2 + 5))
OUT=runs/bench-epoch; mkdir -p "$OUT"
for round in $(seq 1 "$ROUNDS"); do
  for ranks in 1 2; do
    dir="$OUT/$ranks-$round"; rm -rf "$dir"
    bash launch/local.sh "$ranks" train --preset small --train data/fillets-cs/train.tsv --valid data/fillets-cs/valid.tsv \
      --run-dir "$dir" --quiet --set optimizer.max_steps=$((ranks == 1 ? STEPS1 : STEPS2)) --set train.max_frames="$MAX_FRAMES" \
      --set train.valid_interval=1000000 --set train.save_interval=1000000 --set train.log_interval=1 \
      --set compute.precision="$PRECISION" > "$dir.log" 2>&1 || { echo "round $round, $ranks rank(s) failed: see $dir.log" >&2; exit 1; }
  done
  python3 - "$OUT" "$round" "$PRECISION" <<'PY'
import json, sys
out, k, p = sys.argv[1:4]
def epoch1(d):
    T = [x for x in map(json.loads, open(d + '/metrics.jsonl')) if x.get('kind') == 'train']
    if T[-1]['epoch'] < 2: sys.exit(f"{d}: epoch 1 did not finish")
    audio = time = 0.0
    for prev, x in zip(T, T[1:]):
        if x['epoch'] == 1:
            dt = x['time'] - prev['time']; audio += x['audio_seconds_per_second'] * dt; time += dt
    return audio / time
one, two = epoch1(f'{out}/1-{k}'), epoch1(f'{out}/2-{k}')
print(f"round {k} {p}: epoch 1 on 1 rank {one:.1f} audio s/s, on 2 ranks {two:.1f}: {two / one:.3f}x", flush=True)
open(f'{out}/ratios-{p}', 'a' if k != '1' else 'w').write(f"{two / one}\n")
PY
done
python3 - "$OUT/ratios-$PRECISION" <<'PY'
import statistics, sys
r = [float(x) for x in open(sys.argv[1])]
print(f"median over {len(r)} round(s): {statistics.median(r):.3f}x (single rounds {min(r):.3f}-{max(r):.3f}x)")
PY
