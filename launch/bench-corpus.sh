#!/usr/bin/env bash
# Corpus-scale benchmarks (docs/performance.md, "Data"), printing every number:
#  1. `prepare` on 100,000 files (links to the default corpus's 1,881 Ogg files, 100 folders × 1,000):
#     header-only with 1 job, --jobs 2 and mpirun -np 2 (time; the three manifests must be byte-identical),
#     and decoding (--verify --jobs 2) the 1,881 real files for comparison;
#  2. one 15 s crop of a one-hour recording (WAV and Ogg/Vorbis, 22.05 kHz, made with sox from the default
#     corpus) against a whole 20 s file of the same format: wall time and peak RSS of `w2vbert features`
#     (and, for contrast, decoding the whole hour as before);
#  3. start-up of training (tiny preset, 2 ranks, 1 step) from a 2,000,000-line manifest against a
#     2,000-line one: wall time and peak RSS per rank;
#  4. the loader (`w2vbert bench data`, 15.6 s crops, 1 and 2 decoding threads) on the 20 s file and on
#     the one-hour recordings: audio seconds delivered per second;
#  5. training (tiny, 1 rank, 30 steps) from those crops: audio s/s and data wait per step.
#   launch/bench-corpus.sh [WORK_DIR (default /tmp/w2v-bench-corpus; several GB)]
# Needs sox (`apt-get install sox`; only this script does) and the default corpus (launch/setup.sh).
# On a shared machine run it under a lock so benchmarks do not overlap: flock /tmp/bench.lock bash launch/bench-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
W="${1:-/tmp/w2v-bench-corpus}"
SRC=/usr/share/games/fillets-ng/sound
BIN="${W2VBERT_BIN:-}"
if [ -z "$BIN" ]; then
  swift build -c release --product w2vbert >&2
  BIN="$(swift build -c release --show-bin-path)/w2vbert"
fi
command -v sox >/dev/null || { echo "bench-corpus: needs sox (apt-get install sox)" >&2; exit 2; }
[ -d "$SRC" ] || { echo "bench-corpus: $SRC missing (bash launch/setup.sh)" >&2; exit 2; }
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_btl_vader_single_copy_mechanism=none OPENBLAS_NUM_THREADS=1
MPIRUN=(mpirun -np 2 --oversubscribe --bind-to none)
mkdir -p "$W"
TIME=(/usr/bin/time -f "%e s wall, peak RSS %M kB")
echo "# bench-corpus on $(hostname), $(nproc) cores; load: $(uptime | sed 's/.*load/load/')"

# ---- 1. prepare on 100,000 files ------------------------------------------------------------------
if [ ! -f "$W/corpus100k/.done" ]; then
  rm -rf "$W/corpus100k"
  python3 - "$SRC" "$W/corpus100k" <<'PY'
import os, sys
src, dst = sys.argv[1], sys.argv[2]
files = sorted(os.path.join(r, f) for r, _, fs in os.walk(src) if os.sep + "cs" in r for f in fs if f.endswith(".ogg"))
for d in range(100):
    os.makedirs(f"{dst}/d{d:02d}", exist_ok=True)
for i in range(100_000):
    os.symlink(files[i % len(files)], f"{dst}/d{i // 1000:02d}/c{i:06d}.ogg")
open(f"{dst}/.done", "w").close()
print(f"made {dst}: 100000 links to {len(files)} files")
PY
fi
echo "## prepare, 100,000 files (links to the default corpus), header-only"
for run in 1 2; do
  echo "-- 1 job (run $run)";  "${TIME[@]}" "$BIN" prepare "$W/corpus100k" --out "$W/m-j1" 2>&1 | grep -E "^prepare: 100000 audio|wall"
done
echo "-- --jobs 2";          "${TIME[@]}" "$BIN" prepare "$W/corpus100k" --out "$W/m-j2" --jobs 2 2>&1 | grep -E "^prepare: 100000 audio|wall"
echo "-- mpirun -np 2";      "${TIME[@]}" "${MPIRUN[@]}" "$BIN" prepare "$W/corpus100k" --out "$W/m-np2" 2>&1 | grep -E "^prepare: 100000 audio|wall"
for m in m-j2 m-np2; do
  if cmp -s "$W/m-j1/train.tsv" "$W/$m/train.tsv" && cmp -s "$W/m-j1/valid.tsv" "$W/$m/valid.tsv"; then
    echo "$m: train.tsv and valid.tsv byte-identical to 1 job ($(sha256sum < "$W/m-j1/train.tsv" | cut -c1-16))"
  else
    echo "$m: MANIFESTS DIFFER from 1 job"; exit 1
  fi
done
mkdir -p "$W/default"
find "$SRC" -type d -name cs | while read -r d; do ln -sfn "$d" "$W/default/$(basename "$(dirname "$d")")"; done
echo "## prepare, the 1,881 default-corpus files: header-only vs decoding every file (--verify --jobs 2)"
"${TIME[@]}" "$BIN" prepare "$W/default" --out "$W/m-def-h" 2>&1 | grep -E "^prepare: 1882 audio|wall"
"${TIME[@]}" "$BIN" prepare "$W/default" --out "$W/m-def-v" --verify --jobs 2 2>&1 | grep -E "^prepare: 1882 audio|wall"
cmp -s "$W/m-def-h/train.tsv" "$W/m-def-v/train.tsv" && cmp -s "$W/m-def-h/valid.tsv" "$W/m-def-v/valid.tsv" \
  && echo "header-only and decoded manifests byte-identical" || { echo "HEADER-ONLY AND DECODED MANIFESTS DIFFER"; exit 1; }

# ---- 2. a 15 s crop of a one-hour recording --------------------------------------------------------
if [ ! -f "$W/hour.wav" ]; then
  find "$SRC" -path '*/cs/*.ogg' | sort | while read -r f; do
    sox "$f" -t raw -r 22050 -c 1 -b 16 -e signed-integer - 2>/dev/null
  done > "$W/hour.raw"
  sox -t raw -r 22050 -c 1 -b 16 -e signed-integer "$W/hour.raw" "$W/hour.wav" trim 0 3600
  rm -f "$W/hour.raw"
  sox "$W/hour.wav" "$W/hour.ogg"
  sox "$W/hour.wav" "$W/twenty.wav" trim 1800 20
  sox "$W/twenty.wav" "$W/twenty.ogg"
fi
echo "## one 15 s crop of a one-hour recording vs a whole 20 s file (w2vbert features; 3 runs each, interleaved)"
for ext in wav ogg; do
  echo "-- $ext: $(soxi -d "$W/hour.$ext") hour, $(soxi -d "$W/twenty.$ext") file"
  for run in 1 2 3; do
    printf "20 s file          "; "${TIME[@]}" "$BIN" features "$W/twenty.$ext" --out "$W/f.npy" 2>&1 >/dev/null | tail -1
    printf "15 s crop of 1 h   "; "${TIME[@]}" "$BIN" features "$W/hour.$ext" --offset 1803.7 --duration 15 --out "$W/f.npy" 2>&1 >/dev/null | tail -1
  done
  printf "whole hour (before) "; "${TIME[@]}" "$BIN" features "$W/hour.$ext" --out "$W/f.npy" 2>&1 >/dev/null | tail -1
done

# ---- 3. start-up with a 2,000,000-line manifest ----------------------------------------------------
awk 'NR == 1 { print; next } { a[n++] = $0 } END { for (i = 0; i < 2000000; i++) print a[i % n] }' "$W/m-j1/train.tsv" > "$W/m2M.tsv"
head -n 2001 "$W/m2M.tsv" > "$W/m2k.tsv"
echo "## training start-up, tiny preset, 2 ranks, 1 step (wall time and peak RSS per rank)"
for run in 1 2; do
  for m in m2k m2M; do
    rm -rf "$W/run-$m"
    echo "-- $m ($(($(wc -l < "$W/$m.tsv") - 1)) lines, $(du -h "$W/$m.tsv" | cut -f1)), run $run"
    "${TIME[@]}" "${MPIRUN[@]}" "${TIME[@]}" "$BIN" train --preset tiny --train "$W/$m.tsv" --run-dir "$W/run-$m" --max-steps 1 2>&1 \
      | grep -E "wall|error" || true
  done
done

# ---- 4. loader throughput: crops of 20 s files vs one-hour recordings, 1 and 2 workers --------------
mkdir -p "$W/long"
for f in hour.wav hour.ogg twenty.wav; do ln -sf "$W/$f" "$W/long/$f"; done
"$BIN" prepare "$W/long" --out "$W/m-long" --valid-percent 0 --min-seconds 1 >/dev/null 2>&1
echo "## loader (bench data: 15.6 s crops, 30 micro-batches of 3, no simulated compute)"
for f in twenty.wav hour.wav hour.ogg; do
  awk -v f="$f" 'NR == 1 { print; next } $1 == f { for (i = 0; i < 20; i++) print }' "$W/m-long/train.tsv" > "$W/m-loader-$f.tsv"
  for w in 1 2; do
    printf "%-10s workers %d: " "$f" "$w"
    "$BIN" bench data --manifest "$W/m-loader-$f.tsv" --seconds 10 --batches 30 --workers "$w" | grep "^loader:" | sed 's/.*of audio in/audio in/'
  done
done

# ---- 5. training (tiny, 1 rank, 30 steps) from crops of 20 s files vs one-hour recordings -----------
echo "## training, tiny preset, 1 rank, 30 steps, log every 10: audio s/s and data wait per step"
for f in twenty.wav hour.wav hour.ogg; do
  rm -rf "$W/tr-$f"
  "$BIN" train --preset tiny --train "$W/m-loader-$f.tsv" --run-dir "$W/tr-$f" --max-steps 30 --set train.log_interval=10 >/dev/null 2>&1
  printf "%-10s " "$f"
  python3 -c "
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if '\"train\"' in l]
print(' | '.join('to step %d: %.0f audio s/s, data wait %.3f s/step' % (r['step'], r['audio_seconds_per_second'], r['data_wait_seconds']) for r in rs))" "$W/tr-$f/metrics.jsonl"
done
echo "# load at the end: $(uptime | sed 's/.*load/load/')"
