#!/usr/bin/env bash
# Numeric sequences for the `series` input kind: a classification problem of the UEA/UCR time-series archive
# as bundled in the sktime wheel (version pinned below; the wheel is downloaded with pip and read as a zip
# file, not installed). The default, PLAID (plug load appliance identification), is the largest one it
# bundles: 1,074 recordings of 100 to 1,344 steps (349,431 steps), one channel, 11 appliance classes
# numbered 0 to 10 (26 to 175 sequences each), amplitudes four orders of magnitude apart between classes.
# BasicMotions (80 x 100 steps, 6 accelerometer and gyroscope channels, 4 activities) is its one
# multichannel problem with sequences long enough to mask; others: ACSF1 (200 x 1,460 steps), OSULeaf,
# GunPoint, ArrowHead, JapaneseVowels (12 channels, 7 to 29 steps), ItalyPowerDemand (24 steps).
#   launch/prepare-series-data.sh [OUT (default data/series-plaid)] [PROBLEM (default PLAID)]
# Writes OUT/files/{train,test}/NNNN.npy, one [T, C] float32 array per sequence (the archive's train and
# test cases alike, in archive order; missing values stay NaN), and OUT/labels.tsv: per sequence its path
# relative to OUT/files TAB its class label (for a probe; pre-training reads no label). OUT/files is
# replaced. Python: $PYTHON with numpy and pip, else Debian's python3 with python3-numpy and python3-pip.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-data/series-plaid}"
PROBLEM="${2:-PLAID}"
WHEEL_SPEC=sktime==1.2.0
source launch/lib.sh
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"; else PY=/usr/bin/python3; w2v_install python3-numpy python3-pip; fi
mkdir -p "$OUT"
WHEELS="$(mktemp -d "$OUT/.wheel.XXXXXX")"
trap 'rm -rf "$WHEELS"' EXIT
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$WHEELS" "$WHEEL_SPEC"
rm -rf "$OUT/files" "$OUT/labels.tsv"
"$PY" launch/ucr-series.py "$WHEELS"/*.whl "$PROBLEM" "$OUT"
echo "wrote $OUT/files ($(wc -l < "$OUT/labels.tsv") .npy files) and $OUT/labels.tsv"
