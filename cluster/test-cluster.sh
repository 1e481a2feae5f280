#!/usr/bin/env bash
# Cluster integration tests (root, Debian 12; about 1-2 minutes). Run by launch/test.sh after swift test.
#   bash cluster/test-cluster.sh [TEST...]        tests: slurm1 slurm2 preempt netns crash (default: all)
# Each test runs under `timeout`, brings up what it needs (cluster/slurm-up.sh, cluster/netns-up.sh) and
# tears it down through a trap, even on failure; the runner tears down again after every test. The last
# line is exactly "N passed, N failed"; the exit status is non-zero when any test failed.
# Environment: W2VBERT_BIN (executable), W2V_TEST_PAYLOAD (below), W2V_TEST_KEEP=1 keeps the work folder,
# W2V_TEST_TIMEOUT=S replaces every test's time limit (debugging).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO="$(pwd)"
source launch/lib.sh
source cluster/lib.sh

# ======================================================================================================
# The payload: `train` (the default) runs a short real training everywhere. `check-mpi` runs the MPI
# collectives check (`w2vbert check mpi`) in tests slurm1/slurm2/netns and the stand-in trainer
# (cluster/standin-payload.sh) in the signal/crash tests preempt/crash.
W2V_TEST_PAYLOAD="${W2V_TEST_PAYLOAD:-train}"
# Training data for W2V_TEST_PAYLOAD=train: the first 120 utterances of the default corpus (prepared by
# launch/prepare-corpus.sh when missing), written afresh for every run of this script unless W2V_TEST_TRAIN_TSV
# names a manifest; tiny preset with short crops so a step takes a fraction of a second.
W2V_TEST_TRAIN_TSV="${W2V_TEST_TRAIN_TSV:-}"
W2V_TEST_TRAIN_ARGS="${W2V_TEST_TRAIN_ARGS:---preset tiny --set train.max_frames=1200 --set train.max_samples=48000 --set train.save_interval=5 --set train.log_interval=1 --set dist.timeout=60 --set optimizer.warmup=10}"

# shellcheck disable=SC2206  # (W2V_TEST_TRAIN_ARGS is word-split on purpose)
# payload_short RUN_DIR: sets P_BIN and P_ARGS for a run that simply completes (slurm1, slurm2, netns).
payload_short() {
  case "$W2V_TEST_PAYLOAD" in
    check-mpi) P_BIN="$W2V_REAL_BIN"; P_ARGS=(check mpi) ;;
    train) P_BIN="$W2V_REAL_BIN"; P_ARGS=(train $W2V_TEST_TRAIN_ARGS --train "$W2V_TEST_TRAIN_TSV" --run-dir "$1" --max-steps 4) ;;
  esac
}
# shellcheck disable=SC2206
# payload_long RUN_DIR: a run long enough to be interrupted (preempt, crash); it must checkpoint
# periodically, checkpoint and exit 75 on SIGUSR1/SIGTERM, and resume from RUN_DIR when started again.
payload_long() {
  case "$W2V_TEST_PAYLOAD" in
    check-mpi) P_BIN="$REPO/cluster/standin-payload.sh"; P_ARGS=(train --run-dir "$1" --max-steps 40)
               export W2V_STANDIN_STEP_SECONDS=0.2 W2V_STANDIN_CKPT_EVERY=5 ;;
    train) P_BIN="$W2V_REAL_BIN"; P_ARGS=(train $W2V_TEST_TRAIN_ARGS --train "$W2V_TEST_TRAIN_TSV" --run-dir "$1" --max-steps 40) ;;
  esac
}
# payload_progress RUN_DIR: true once the long run (its current start) has done a few steps, so an
# interruption falls mid-run.
payload_progress() {
  case "$W2V_TEST_PAYLOAD" in
    check-mpi) local s0 s1
               s0="$(cat "$1/standin/start-0" 2>/dev/null)" s1="$(cat "$1/standin/step-0" 2>/dev/null)"
               [ -n "$s0" ] && [ -n "$s1" ] && [ $((s1 - s0)) -ge 3 ] ;;
    # train: at least 3 logged steps more than when payload_reset_progress last looked
    train) local n base
           n="$(grep -c '"kind":"train"' "$1/metrics.jsonl" 2>/dev/null)"; base="$(cat "$1/.progress-base" 2>/dev/null || echo 0)"
           [ -n "$n" ] && [ $((n - base)) -ge 3 ] && [ -e "$1/checkpoints/latest" ] ;;
  esac
}
# payload_reset_progress RUN_DIR: forget the progress markers of the previous start (job is pending).
payload_reset_progress() {
  case "$W2V_TEST_PAYLOAD" in
    check-mpi) rm -f "$1"/standin/start-* "$1"/standin/step-* ;;
    train) grep -c '"kind":"train"' "$1/metrics.jsonl" > "$1/.progress-base" 2>/dev/null || echo 0 > "$1/.progress-base" ;;
  esac
}
# check_short LOG RANKS: the short run's output proves RANKS ranks ran and finished.
check_short() {
  case "$W2V_TEST_PAYLOAD" in
    check-mpi) expect_count "$1" ': ok$' "$2" "check mpi ranks reporting ok"
               ! grep -q FAILED "$1" || fail "a collective failed (see the log)" ;;
    train) expect_count "$1" '^finished at step 4$' 1 "finished runs"
           expect_count "$1" '^rank [0-9] of 2 on host ' 2 "ranks reporting their host" ;;
  esac
}
# check_long LOG RUN_DIR RANKS: the interrupted run resumed from its checkpoint and finished.
check_long() {
  case "$W2V_TEST_PAYLOAD" in
    check-mpi) expect_count "$1" 'finished at step 40$' "$3" "ranks finishing at step 40"
               grep -qE 'start at step [1-9][0-9]* of' "$1" || fail "no rank resumed from a checkpoint"
               [ "$(cat "$2/checkpoints/latest")" = 40 ] || fail "final checkpoint is not step 40" ;;
    train) [ "$(cat "$2/checkpoints/latest")" = step-00000040 ] || fail "final checkpoint is not step 40"
           grep -q '^resumed from .*checkpoints/step-' "$1" || fail "no start resumed from a checkpoint"
           grep -q '"event":"finished"' "$2/metrics.jsonl" || fail "the run did not finish" ;;
  esac
}
# host names printed by the payload (two distinct ones expected across nodes), empty if it prints none.
payload_hosts() {
  case "$W2V_TEST_PAYLOAD" in
    check-mpi) sed -n 's/^check mpi: rank .* host \(.*\): ok$/\1/p' "$1" | sort -u ;;
    train) sed -n 's/^rank [0-9]* of [0-9]* on host \(.*\)$/\1/p' "$1" | sort -u ;;
  esac
}
# ======================================================================================================

TESTS_ALL=(slurm1 slurm2 preempt netns crash)
declare -A LIMIT=([slurm1]=120 [slurm2]=90 [preempt]=150 [netns]=60 [crash]=90)

fail() { echo "FAIL: $*"; FAILED=1; }
expect_count() {  # LOG REGEX N WHAT
  local n; n="$(grep -cE "$2" "$1")"
  [ "$n" = "$3" ] || fail "expected $3 $4, found $n"
}
# wait_job JOB SECONDS: poll until the job is in a final state; prints "STATE EXITCODE RESTARTS".
wait_job() {
  local j="$1" t="$2" info state i
  for ((i = 0; i < t * 2; i++)); do
    info="$(scontrol -o show job "$j" 2>/dev/null)"
    state="$(sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' <<<"$info")"
    case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED)
      echo "$state $(sed -n 's/.* ExitCode=\([0-9:]*\).*/\1/p' <<<"$info") $(sed -n 's/.* Restarts=\([0-9]*\).*/\1/p' <<<"$info")"
      return 0 ;;
    esac
    sleep 0.5
  done
  echo "TIMEOUT-WAITING $(sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' <<<"$info")"
}
# wait_until SECONDS CMD...: poll CMD every 0.25 s.
wait_until() { local t="$1" i; shift; for ((i = 0; i < t * 4; i++)); do "$@" && return 0; sleep 0.25; done; return 1; }
job_field() { scontrol -o show job "$1" 2>/dev/null | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }
job_requeued() { [ "$(job_field "$1" Restarts)" = "$2" ] && [ "$(job_field "$1" JobState)" != RUNNING ]; }
job_running_again() { [ "$(job_field "$1" JobState)" = RUNNING ] && [ "$(job_field "$1" Restarts)" = "$2" ]; }
slurm_logs() { echo "--- Slurm logs (tail)"; tail -n 15 "$W2V_SLURM_DIR"/log/*.log 2>/dev/null; }
show_log() { echo "--- $1"; cat "$1" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------------
# 1. Slurm, one node: launch/slurm.sbatch runs a 2-rank job (srun --mpi=pmix), then the mpirun variant.
test_slurm1() {
  trap 'bash cluster/slurm-down.sh >/dev/null 2>&1' EXIT
  eval "$(bash cluster/slurm-up.sh 1)" || { fail "slurm-up 1"; return; }
  payload_short "$RUNS/slurm1"
  local j r
  j="$(W2VBERT_BIN="$P_BIN" sbatch --parsable -n 2 -o "$WORK/slurm1.out" launch/slurm.sbatch "${P_ARGS[@]}")" || { fail "sbatch"; return; }
  r="$(wait_job "$j" 60)"; echo "srun job $j: $r"
  [ "$r" = "COMPLETED 0:0 0" ] || { fail "srun job: $r"; slurm_logs; }
  show_log "$WORK/slurm1.out"; check_short "$WORK/slurm1.out" 2
  [ "$W2V_TEST_PAYLOAD" != train ] || [ "$(cat "$RUNS/slurm1/checkpoints/latest" 2>/dev/null)" = step-00000004 ] || fail "no checkpoint of step 4 in $RUNS/slurm1"
  grep -q '^+ srun --mpi=pmix' "$WORK/slurm1.out" || fail "the script did not print its srun command"

  payload_short "$RUNS/slurm1-mpirun"
  j="$(W2V_LAUNCHER=mpirun W2VBERT_BIN="$P_BIN" sbatch --parsable -n 2 -o "$WORK/slurm1m.out" launch/slurm.sbatch "${P_ARGS[@]}")" || { fail "sbatch"; return; }
  r="$(wait_job "$j" 60)"; echo "mpirun-variant job $j: $r"
  [ "$r" = "COMPLETED 0:0 0" ] || { fail "mpirun-variant job: $r"; slurm_logs; }
  show_log "$WORK/slurm1m.out"; check_short "$WORK/slurm1m.out" 2
  grep -q '^+ mpirun ' "$WORK/slurm1m.out" || fail "the script did not print its mpirun command"
}

# 2. Slurm, two nodes (two slurmd on this host, hostnames n1/n2): one rank lands on each node.
test_slurm2() {
  trap 'bash cluster/slurm-down.sh >/dev/null 2>&1' EXIT
  eval "$(bash cluster/slurm-up.sh 2)" || { fail "slurm-up 2"; return; }
  payload_short "$RUNS/slurm2"
  local j r hosts
  j="$(W2VBERT_BIN="$P_BIN" sbatch --parsable -N 2 -n 2 -o "$WORK/slurm2.out" launch/slurm.sbatch "${P_ARGS[@]}")" || { fail "sbatch"; return; }
  r="$(wait_job "$j" 60)"; echo "job $j: $r"
  [ "$r" = "COMPLETED 0:0 0" ] || { fail "job: $r"; slurm_logs; }
  show_log "$WORK/slurm2.out"; check_short "$WORK/slurm2.out" 2
  [ "$W2V_TEST_PAYLOAD" != train ] || [ "$(cat "$RUNS/slurm2/checkpoints/latest" 2>/dev/null)" = step-00000004 ] || fail "no checkpoint of step 4 in $RUNS/slurm2"
  [ "$(job_field "$j" NodeList)" = "n[1-2]" ] || fail "job NodeList is '$(job_field "$j" NodeList)', expected n[1-2]"
  hosts="$(payload_hosts "$WORK/slurm2.out" | tr '\n' ' ')"
  [ "$hosts" = "n1 n2 " ] || fail "ranks ran on hosts '$hosts', expected 'n1 n2'"
}

# 3. Preemption: SIGUSR1 to the batch shell (the path --signal=B:USR1@N takes) is forwarded to the step;
#    the ranks checkpoint and exit 75; the script requeues; the job resumes. Then SIGUSR1 straight to the
#    ranks (scancel --signal=USR1) does the same. The job must finish after two restarts.
test_preempt() {
  trap 'bash cluster/slurm-down.sh >/dev/null 2>&1' EXIT
  eval "$(bash cluster/slurm-up.sh 1)" || { fail "slurm-up 1"; return; }
  local run="$RUNS/preempt" j r
  payload_long "$run"
  j="$(W2VBERT_BIN="$P_BIN" sbatch --parsable -n 2 -o "$WORK/preempt.out" launch/slurm.sbatch "${P_ARGS[@]}")" || { fail "sbatch"; return; }
  wait_until 30 payload_progress "$run" || { fail "payload made no progress"; show_log "$WORK/preempt.out"; slurm_logs; return; }
  echo "preempting job $j through the batch shell: scancel --batch --signal=USR1 $j"
  scancel --batch --signal=USR1 "$j"
  wait_until 20 job_requeued "$j" 1 || { fail "job not requeued after the first signal"; show_log "$WORK/preempt.out"; slurm_logs; return; }
  payload_reset_progress "$run"   # the job is pending: no rank runs; progress must come from the restart
  wait_until 40 job_running_again "$j" 1 || { fail "job not running again after the first requeue"; show_log "$WORK/preempt.out"; slurm_logs; return; }
  wait_until 30 payload_progress "$run" || { fail "no progress after the first requeue"; show_log "$WORK/preempt.out"; return; }
  echo "preempting job $j at the ranks: scancel --signal=USR1 $j"
  scancel --signal=USR1 "$j"
  wait_until 20 job_requeued "$j" 2 || { fail "job not requeued after the second signal"; show_log "$WORK/preempt.out"; slurm_logs; return; }
  wait_until 40 job_running_again "$j" 2 || { fail "job not running again after the second requeue"; show_log "$WORK/preempt.out"; slurm_logs; return; }
  r="$(wait_job "$j" 60)"; echo "job $j: $r"
  [ "$r" = "COMPLETED 0:0 2" ] || { fail "job: $r (expected COMPLETED 0:0 after 2 restarts)"; slurm_logs; }
  show_log "$WORK/preempt.out"
  grep -q 'batch shell got SIGUSR1: forwarding' "$WORK/preempt.out" || fail "the batch shell did not forward SIGUSR1"
  expect_count "$WORK/preempt.out" 'status 75: requeueing' 2 "requeues"
  expect_count "$WORK/preempt.out" '^\[slurm\] step ended with status 0$' 1 "final steps with status 0"
  check_long "$WORK/preempt.out" "$run" 2
}

# 4. Two emulated hosts (network namespaces, TCP over a bridge): mpirun with a hostfile.
test_netns() {
  trap 'bash cluster/netns-down.sh >/dev/null 2>&1' EXIT
  bash cluster/netns-up.sh >/dev/null || { fail "netns-up"; return; }
  payload_short "$RUNS/netns"
  local st hosts
  W2VBERT_BIN="$P_BIN" W2V_BIND=none W2V_MPIRUN_ARGS="$(cat "$W2V_NETNS_DIR/mpirun-args")" \
    timeout -k 5 45 bash launch/mpirun-hosts.sh "$W2V_NETNS_DIR/hostfile" 2 "${P_ARGS[@]}" > "$WORK/netns.out" 2>&1
  st=$?
  show_log "$WORK/netns.out"
  [ $st = 0 ] || fail "mpirun over the emulated hosts exited $st"
  check_short "$WORK/netns.out" 2
  hosts="$(payload_hosts "$WORK/netns.out" | tr '\n' ' ')"
  [ "$hosts" = "node1 node2 " ] || fail "ranks ran on hosts '$hosts', expected 'node1 node2'"
  if [ "$W2V_TEST_PAYLOAD" = train ]; then
    # The same short training on one host must give the same parameters (within 1e-5 relative).
    payload_short "$RUNS/netns-local"
    W2VBERT_BIN="$P_BIN" timeout -k 5 60 bash launch/local.sh 2 "${P_ARGS[@]}" > "$WORK/netns-local.out" 2>&1 || { fail "the one-host run failed"; show_log "$WORK/netns-local.out"; return; }
    "$P_BIN" compare "$RUNS/netns" "$RUNS/netns-local" --rtol 1e-5 || fail "namespace hosts and one host differ"
  fi
}

# 5. Crash: kill -9 of one rank mid-run; mpirun aborts; launch/restart-loop.sh relaunches; the run resumes
#    from its checkpoint and completes.
test_crash() {
  local run="$RUNS/crash" loop mp ranks st
  payload_long "$run"
  W2VBERT_BIN="$P_BIN" W2V_RESTART_DELAY=1 W2V_MAX_RESTARTS=2 \
    bash launch/restart-loop.sh bash launch/local.sh 2 "${P_ARGS[@]}" > "$WORK/crash.out" 2>&1 &
  loop=$!
  trap 'pids="$(cl_tree_pids '"$loop"')"; kill -TERM $pids 2>/dev/null; sleep 1; kill -KILL $pids 2>/dev/null' EXIT
  wait_until 30 payload_progress "$run" || { fail "payload made no progress"; show_log "$WORK/crash.out"; return; }
  # mpirun runs under launch/local.sh, which the loop started: look for it among the loop's descendants.
  mp="$(ps -o pid=,comm= -p "$(cl_tree_pids "$loop" | tr ' \n' ',,' | sed 's/,*$//')" | awk '$2 == "mpirun" {print $1}')"
  ranks="$(ps -e -o pid=,ppid= | awk -v p="$mp" '$2 == p {print $1}' | sort -n)"
  [ -n "$mp" ] && [ "$(wc -w <<<"$ranks")" = 2 ] || { fail "could not find mpirun ($mp) and its 2 ranks ($ranks)"; show_log "$WORK/crash.out"; return; }
  echo "kill -9 of rank process $(tail -n 1 <<<"$ranks") (mpirun $mp)"
  kill -KILL "$(tail -n 1 <<<"$ranks")"
  wait "$loop"; st=$?
  trap - EXIT
  show_log "$WORK/crash.out"
  [ $st = 0 ] || fail "restart loop exited $st"
  expect_count "$WORK/crash.out" '^\[restart-loop\] restart 1/2' 1 "restarts"
  check_long "$WORK/crash.out" "$run" 2
}

# ---------------------------------------------------------------------------------------------------
if [ "${1:-}" = --run-one ]; then          # internal: one test in its own process (under timeout)
  FAILED=0
  trap 'exit 124' TERM INT
  "test_$2"
  exit $FAILED
fi

[ "$(id -u)" = 0 ] || { echo "cluster tests need root (Slurm daemons, network namespaces)"; echo "0 passed, 1 failed"; exit 1; }
W2V_REAL_BIN="$(w2v_bin)" || { echo "0 passed, 1 failed"; exit 1; }
# Packages first, outside the per-test time limits (a fresh machine installs Slurm and munge here).
if ! timeout -k 10 600 bash -c 'source cluster/lib.sh; cl_apt_install slurm-wlm slurm-client munge iproute2 procps'; then
  echo "installing the cluster packages failed (apt-get)"; echo "0 passed, 1 failed"; exit 1
fi
export W2V_REAL_BIN W2V_TEST_PAYLOAD
if [ "$W2V_TEST_PAYLOAD" = train ] && [ -z "$W2V_TEST_TRAIN_TSV" ]; then
  W2V_TEST_TRAIN_TSV="$(mktemp /tmp/w2v-cluster-slice.XXXXXX.tsv)"
  trap 'rm -f "$W2V_TEST_TRAIN_TSV"' EXIT
  [ -s "$REPO/data/fillets-cs/train.tsv" ] || W2VBERT_BIN="$W2V_REAL_BIN" timeout -k 10 600 bash launch/prepare-corpus.sh "$REPO/data/fillets-cs" > /dev/null \
    || { echo "preparing the default corpus failed"; echo "0 passed, 1 failed"; exit 1; }
  head -n 121 "$REPO/data/fillets-cs/train.tsv" > "$W2V_TEST_TRAIN_TSV"
fi
export W2V_TEST_TRAIN_TSV
# Keep MPI traffic on loopback or in the namespaces (the netns test sets its own interfaces).
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_btl_vader_single_copy_mechanism=none
WORK="$(mktemp -d /tmp/w2v-cluster-test.XXXXXX)"; RUNS="$WORK/runs"; mkdir -p "$RUNS"; export WORK RUNS
TESTS=("$@"); [ ${#TESTS[@]} -gt 0 ] || TESTS=("${TESTS_ALL[@]}")
passed=0 failed=0 summary=() T0=$(date +%s)
echo "cluster tests (payload: $W2V_TEST_PAYLOAD, executable: $W2V_REAL_BIN)"
for t in "${TESTS[@]}"; do
  [ -n "${LIMIT[$t]:-}" ] || { echo "unknown test '$t' (${TESTS_ALL[*]})"; failed=$((failed + 1)); continue; }
  echo "=== $t (limit ${W2V_TEST_TIMEOUT:-${LIMIT[$t]}} s)"
  start=$(date +%s%N)
  # W2V_TEST_TAG marks every process the test starts (Slurm jobs inherit it through sbatch), so whatever
  # survives the test — even one killed by `timeout` — is found and stopped below.
  W2V_TEST_TAG="$WORK/$t" timeout -k 10 "${W2V_TEST_TIMEOUT:-${LIMIT[$t]}}" bash "$0" --run-one "$t" > "$WORK/$t.log" 2>&1
  st=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 )); secs="$((ms / 1000)).$(( (ms % 1000) / 100 ))"
  # belt and braces: whatever the test left (it may have been killed by timeout)
  bash cluster/slurm-down.sh >/dev/null 2>&1; bash cluster/netns-down.sh >/dev/null 2>&1
  cl_kill_env W2V_TEST_TAG "$WORK/$t" 2>/dev/null
  if [ $st = 0 ]; then
    passed=$((passed + 1)); summary+=("PASS $t (${secs} s)")
    echo "PASS $t (${secs} s)"
  else
    failed=$((failed + 1)); summary+=("FAIL $t (${secs} s, status $st)")
    sed 's/^/    /' "$WORK/$t.log"
    echo "FAIL $t (${secs} s, status $st$([ $st = 124 ] && echo ': timed out'))"
  fi
done
printf '%s\n' "${summary[@]}"
echo "total $(( ($(date +%s) - T0) )) s"
if [ "${W2V_TEST_KEEP:-0}" = 1 ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
