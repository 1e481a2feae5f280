#!/usr/bin/env bash
# DNA for the `tokens` input kind, from Debian packages (GPL-3+): kaptive-data, the reference capsule (K) and
# O-antigen (O, OC) loci of Klebsiella and Acinetobacter baumannii that Kaptive types genomes against (GenBank,
# 464 loci, 11.1 Mb), and kleborate-examples, four complete Klebsiella pneumoniae genome assemblies
# (chromosomes and plasmids, 22.2 Mb).
#   launch/prepare-dna-data.sh [OUT (default data/dna-kaptive)] [extra launch/kaptive-dna.py options]
# Writes the pre-training corpus OUT/pretrain/*.fa (one record per locus; genome sequences cut into pieces of
# at most 25 kb, the size of a locus, so that a corpus sampled record by record sees the genomes in proportion
# to their length) and the probe set OUT/probe/windows.fa with OUT/probe/labels.tsv (record index TAB gene):
# one 512-base window per Klebsiella K locus and conserved capsule gene (galF, cpsACP, wzi, wza, wzc, wzx,
# gnd, ugd), read 5' to 3' along the gene. launch/kaptive-dna.py tells the details and options. OUT/pretrain
# and OUT/probe are replaced. Python: $PYTHON with Biopython, else Debian's python3 with python3-biopython.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-data/dna-kaptive}"
shift || true
source launch/lib.sh
w2v_install kaptive-data kleborate-examples
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"; else PY=/usr/bin/python3; w2v_install python3-biopython; fi
rm -rf "$OUT/pretrain" "$OUT/probe"
"$PY" launch/kaptive-dna.py /usr/share/kaptive/reference_database "$OUT" \
  --genomes /usr/share/doc/kleborate/examples/data "$@"
