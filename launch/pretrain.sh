#!/usr/bin/env bash
# The main job: set up this machine, build, install and prepare the default corpus (Czech speech from
# Debian's fillets-ng-data-cs), then pre-train the `tiny` preset with several MPI ranks on this machine.
#   bash launch/pretrain.sh [RANKS (default 2)] [extra `w2vbert train` arguments, e.g. --max-steps 1000]
# Running it again resumes from runs/tiny-fillets/checkpoints. Metrics: runs/tiny-fillets/metrics.jsonl,
# TensorBoard: runs/tiny-fillets/tensorboard.
set -euo pipefail
cd "$(dirname "$0")/.."
RANKS="${1:-2}"; shift || true
bash launch/setup.sh
swift build -c release --product w2vbert
export W2VBERT_BIN="$(swift build -c release --show-bin-path)/w2vbert"
# Manifests without test.tsv hold no test split (pre-training would see the test files): prepare them again.
[ -s data/fillets-cs/train.tsv ] && [ -s data/fillets-cs/test.tsv ] || bash launch/prepare-corpus.sh data/fillets-cs
exec bash launch/local.sh "$RANKS" train --preset tiny --train data/fillets-cs/train.tsv --valid data/fillets-cs/valid.tsv \
  --run-dir runs/tiny-fillets --set train.max_frames=3000 --set train.valid_interval=500 --set train.save_interval=500 "$@"
