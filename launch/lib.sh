# shellcheck shell=bash
# Shared helpers for the launch scripts (sourced, not run).
#   w2v_bin            the executable: $W2VBERT_BIN, else `swift build -c release --show-bin-path`/w2vbert
#   w2v_build_bin      the same, building it first unless $W2VBERT_BIN is set
#   w2v_show CMD...    print the command (shell-quoted) to stderr, prefixed with "+ "
#   w2v_threads        export OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (default 1 each; an existing value wins)
#   w2v_root_args      "--allow-run-as-root" when running as root (mpirun refuses root otherwise)
#   w2v_run_dir ARGS.. the value of --run-dir in a w2vbert argument list (empty if none)
#   w2v_install PKG... apt-get install the Debian packages not installed yet (as root, else with sudo)
W2V_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

w2v_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

w2v_bin() {
  local bin="${W2VBERT_BIN:-}"
  if [ -z "$bin" ]; then
    local dir
    dir="$(cd "$W2V_REPO" && swift build -c release --show-bin-path 2>/dev/null)" || dir=""
    bin="$dir/w2vbert"
  fi
  if [ ! -x "$bin" ]; then
    echo "w2vbert executable not found at '$bin': build it (swift build -c release --product w2vbert) or set W2VBERT_BIN" >&2
    return 1
  fi
  # Absolute path: ranks on other hosts resolve it themselves (shared file system assumed).
  case "$bin" in /*) ;; *) bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")" ;; esac
  printf '%s\n' "$bin"
}

# The Python of the Hugging Face checks in PY ($PYTHON, default python3): exits 0 saying SKIPPED when it lacks
# transformers, torch or safetensors, and 1 when sox (which converts their audio) is missing. NAME prefixes both.
w2v_hf_python() {  # NAME
  PY="${PYTHON:-python3}"
  [ -x "$PY" ] || PY=python3
  if ! "$PY" -c "import transformers, torch, safetensors" 2>/dev/null; then
    echo "$1: SKIPPED: $PY has no transformers/torch/safetensors"; exit 0
  fi
  command -v sox >/dev/null || { echo "$1: needs sox (apt-get install sox)" >&2; exit 1; }
}

w2v_build_bin() {
  [ -n "${W2VBERT_BIN:-}" ] || (cd "$W2V_REPO" && swift build -c release --product w2vbert >&2)
  w2v_bin
}

w2v_show() {
  local q
  q="$(printf '%q ' "$@")"
  printf '+ %s\n' "${q% }" >&2
}

w2v_threads() {
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-$OMP_NUM_THREADS}"
}

w2v_root_args() {
  if [ "$(id -u)" = 0 ]; then printf '%s\n' --allow-run-as-root; fi
}

w2v_run_dir() {
  local prev=""
  for a in "$@"; do
    case "$a" in --run-dir=*) printf '%s\n' "${a#--run-dir=}"; return ;; esac
    if [ "$prev" = "--run-dir" ]; then printf '%s\n' "$a"; return; fi
    prev="$a"
  done
}

# Physical cores of this machine (mpirun's default slot count), falling back to nproc.
w2v_cores() {
  local c
  c="$(lscpu -p=CORE,SOCKET 2>/dev/null | grep -v '^#' | sort -u | wc -l)"
  [ "${c:-0}" -gt 0 ] 2>/dev/null || c="$(nproc)"
  printf '%s\n' "$c"
}

# Describe the checkpoint a run folder holds (informational; `w2vbert train` resumes by itself).
w2v_describe_resume() {
  local dir="$1"
  [ -n "$dir" ] || return 0
  if [ -e "$dir/checkpoints/latest" ]; then
    echo "[launch] run folder $dir holds a checkpoint ($(readlink "$dir/checkpoints/latest" 2>/dev/null || echo latest)): the run resumes from it" >&2
  else
    echo "[launch] run folder ${dir}: no checkpoint yet, the run starts fresh" >&2
  fi
}
