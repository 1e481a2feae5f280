#!/usr/bin/env bash
# Repeated faults (docs/robustness.md): trains STEPS steps of the tiny preset on RANKS ranks under launch/restart-loop.sh
# while a killer SIGKILLs a random rank KILLS times at random moments — every other kill waits until a
# checkpoint is being written (a step-*.tmp folder exists) and kills rank 0, the writer, in the middle of it.
# Then it trains the same STEPS uninterrupted and checks with `w2vbert compare --rtol 0` that the final
# parameters are bit-identical. Exit 0 when they are (and every kill landed), 1 otherwise.
#   bash launch/repeated-faults.sh [KILLS (default 4)] [STEPS (default 16)] [RANKS (default 2)] [SEED (default: random)]
# Environment: W2VBERT_BIN (the executable), W2V_FAULT_DIR (work folder, default a new one under /tmp, removed
# on success), W2V_FAULT_MANIFEST (default: the first 120 utterances of data/fillets-cs/train.tsv).
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/lib.sh
KILLS="${1:-4}" STEPS="${2:-16}" RANKS="${3:-2}" SEED="${4:-$RANDOM}"
RANDOM="$SEED"
BIN="$(w2v_bin)" || exit 2
export W2VBERT_BIN="$BIN" OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
WORK="${W2V_FAULT_DIR:-$(mktemp -d /tmp/w2v-faults-XXXXXX)}"
mkdir -p "$WORK"
MANIFEST="${W2V_FAULT_MANIFEST:-}"
if [ -z "$MANIFEST" ]; then
  [ -f data/fillets-cs/train.tsv ] || bash launch/prepare-corpus.sh data/fillets-cs >&2
  MANIFEST="$WORK/slice.tsv"
  head -n 121 data/fillets-cs/train.tsv > "$MANIFEST"
fi
# Checkpoint every step, so many kills land during or right after a checkpoint write.
COMMON=(train --preset tiny --train "$MANIFEST" --max-steps "$STEPS"
        --set train.max_frames=1200 --set train.max_samples=48000 --set train.log_interval=1
        --set train.save_interval=1 --set train.keep_last=2 --set train.valid_interval=1000 --set dist.timeout=60)
MPI=(mpirun -np "$RANKS" --oversubscribe --bind-to none)
echo "[faults] seed $SEED: $KILLS SIGKILLs during $STEPS steps on $RANKS ranks under the restart loop ($WORK)"

# The ranks of the current run: w2vbert processes whose command line names this run folder.
ranks_of() { pgrep -f -- "--run-dir $1( |$)" | while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = w2vbert ] && echo "$p"; done || true; }
rank0_of() {  # the process that writes checkpoints: OMPI_COMM_WORLD_RANK=0 in its environment
  for p in $(ranks_of "$1"); do tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=0 && { echo "$p"; return; }; done
}

latest_step() { local l; l="$(cat "$1/checkpoints/latest" 2>/dev/null || true)"; l="${l#step-}"; echo $((10#${l:-0})); }
tmp_step() { local t; t="$(compgen -G "$1/checkpoints/step-*.tmp" | sort | tail -1 || true)"; [ -n "$t" ] || { echo -1; return; }
             t="$(basename "$t" .tmp)"; t="${t#step-}"; echo $((10#$t)); }

killer() {  # RUN_DIR: kill k waits for the run to reach step ≈ k·STEPS/(KILLS+1), so the kills spread over the run
  local run="$1" landed=0 midwrite=0 k victim deadline target what
  for k in $(seq 1 "$KILLS"); do
    victim="" target=$((k * STEPS / (KILLS + 1)))
    deadline=$((SECONDS + 300))
    if [ $((k % 2)) = 0 ]; then           # in the middle of a checkpoint write: a .tmp folder of step ≥ target
      # Rank 0 is found first, then the .tmp folder is polled; when it shows up rank 0 is frozen (SIGSTOP) and
      # killed only if the folder is still there, i.e. the write is really unfinished; else it goes on (SIGCONT).
      local ts=-1 r0=""
      while [ $SECONDS -lt $deadline ]; do
        [ -n "$r0" ] && [ -d "/proc/$r0" ] || { r0="$(rank0_of "$run")"; [ -n "$r0" ] || { sleep 0.02; continue; }; }
        ts="$(tmp_step "$run")"
        if [ "$ts" -ge "$target" ]; then
          kill -STOP "$r0" 2>/dev/null || continue
          if [ -d "$run/checkpoints/$(printf 'step-%08d.tmp' "$ts")" ]; then victim="$r0"; break; fi
          kill -CONT "$r0" 2>/dev/null || true
        fi
        sleep 0.002
      done
      what="rank 0 (pid $victim) in the middle of writing step $ts's checkpoint"
    else                                   # a random rank at a random moment after step target−1's checkpoint
      while [ $SECONDS -lt $deadline ] && [ "$(latest_step "$run")" -lt $((target > 0 ? target - 1 : 0)) ]; do sleep 0.02; done
      while [ $SECONDS -lt $deadline ] && [ -z "$(ranks_of "$run")" ]; do sleep 0.02; done
      sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"   # within about one step (tiny steps take ~0.1 s here)
      mapfile -t pids < <(ranks_of "$run")
      [ ${#pids[@]} -gt 0 ] && victim="${pids[$((RANDOM % ${#pids[@]}))]}"
      what="a random rank (pid $victim) at a random moment (latest checkpoint: step $(latest_step "$run"))"
    fi
    if [ -n "$victim" ] && kill -KILL "$victim" 2>/dev/null; then
      landed=$((landed + 1))
      [ $((k % 2)) = 0 ] && midwrite=$((midwrite + 1))   # its .tmp folder is left behind (and must never be read)
      echo "[faults] kill $k/$KILLS: SIGKILL to $what"
    else
      echo "[faults] kill $k/$KILLS: no rank to kill (the run had ended?)"
    fi
    # Wait until the killed run is gone before the next kill (the restart loop then starts a new one).
    deadline=$((SECONDS + 60))
    while [ $SECONDS -lt $deadline ] && [ -n "$(ranks_of "$run")" ]; do sleep 0.05; done
  done
  echo "$landed" > "$WORK/landed"; echo "$midwrite" > "$WORK/midwrite"
}

FAULTY="$WORK/faulty" REF="$WORK/reference"
killer "$FAULTY" &
KILLER=$!
status=0
W2V_RESTART_DELAY=1 W2V_MAX_RESTARTS=$((KILLS + 2)) bash launch/restart-loop.sh "${MPI[@]}" "$BIN" "${COMMON[@]}" --run-dir "$FAULTY" \
  > "$WORK/faulty.log" 2>&1 || status=$?
wait "$KILLER" || true
LANDED="$(cat "$WORK/landed" 2>/dev/null || echo 0)" MIDWRITE="$(cat "$WORK/midwrite" 2>/dev/null || echo 0)"
RESTARTS="$(grep -c '^\[restart-loop\] restart ' "$WORK/faulty.log" || true)"
echo "[faults] run under the restart loop ended with status $status after $RESTARTS restart(s); $LANDED of $KILLS kills landed, $MIDWRITE in the middle of a checkpoint write"
if [ "$status" != 0 ]; then tail -30 "$WORK/faulty.log"; exit 1; fi
"${MPI[@]}" "$BIN" "${COMMON[@]}" --run-dir "$REF" > "$WORK/reference.log" 2>&1 || { tail -20 "$WORK/reference.log"; exit 1; }
RESULT="$("$BIN" compare "$FAULTY" "$REF" --rtol 0)" || { echo "[faults] $RESULT"; echo "[faults] FAILED: parameters differ (logs in $WORK)"; exit 1; }
echo "[faults] $RESULT"
if [ "$LANDED" -lt "$KILLS" ] || [ "$RESTARTS" -lt "$LANDED" ] || [ "$MIDWRITE" -lt $((KILLS / 2)) ]; then echo "[faults] FAILED: not every kill landed (logs in $WORK)"; exit 1; fi
grep -h "unusable\|falling back" "$WORK/faulty.log" | sed 's/^/[faults] seen: /' | sort -u | head -5 || true
grep -h "resumed from" "$WORK/faulty.log" | sed 's/^/[faults] seen: /' | head -20 || true
echo "[faults] OK: $LANDED SIGKILLs survived ($MIDWRITE mid-write), final parameters bit-identical to the uninterrupted run"
[ -n "${W2V_FAULT_DIR:-}" ] || rm -rf "$WORK"
