"""DNA for the `tokens` input kind: a pre-training corpus and a gene-identity probe set, from Kaptive's reference
loci (GenBank) and, optionally, complete Klebsiella genome assemblies (FASTA, .xz).

  python3 launch/kaptive-dna.py REFERENCE_DIR OUT [--genomes DIR] [--window 512] [--chunk 25000] [--seed 1]
      [--probe-file Klebsiella_k_locus_primary_reference.gbk] [--genes galF,cpsACP,wzi,wza,wzc,wzx,gnd,ugd]

Pre-training corpus, OUT/pretrain/:
  kaptive-STEM.fa    one record per locus of REFERENCE_DIR/STEM.gbk, header `>LOCUS ACCESSION`
  genome-NAME.fa     per DIR/NAME.fna.xz, its sequences cut into near-equal pieces of at most --chunk bases
                     (a 5.4 Mb chromosome becomes 216 records), header `>ACCESSION:START-END` (1-based)
  Sequences are upper-cased; letters other than A/C/G/T (IUPAC codes such as N, R, Y) are kept as they are.
Probe set, OUT/probe/:
  windows.fa         one record per window of --window bases, header `>INDEX LOCUS ACCESSION:START-END(STRAND)`
  labels.tsv         per window its record index (0-based) TAB its gene name
  From each locus of --probe-file and each gene of --genes, the first CDS with that /gene name and at least
  --window bases gives one window: read on the coding strand (a minus-strand CDS is reverse-complemented, so
  every window runs 5' to 3' along the gene), starting at a codon boundary drawn at random (--seed) among those
  that keep the window inside the CDS. The loci the windows come from are in the pre-training corpus too.
Prints per file the records, bases and letter counts, and per gene the windows. Needs Biopython. Exit 1 naming
the file: a missing reference folder or probe file, a gene with no window.
"""
import argparse
import collections
import glob
import lzma
import os
import random
import re
import sys

from Bio import SeqIO


def fail(msg):
    print(f"kaptive-dna: {msg}", file=sys.stderr)
    sys.exit(1)


def locus_name(record):
    """The locus a Kaptive reference record holds (KL1, OL101, OCL1...), from its source note; else its id."""
    for feature in record.features:
        if feature.type == "source":
            for note in feature.qualifiers.get("note", []):
                m = re.match(r"\s*(?:K|O|OC)\s*locus:\s*(\S+)", note)
                if m:
                    return m.group(1)
    return record.id


def write_fasta(f, header, seq, width=80):
    f.write(f">{header}\n")
    for i in range(0, len(seq), width):
        f.write(seq[i:i + width] + "\n")


def describe(name, records, letters):
    other = {k: v for k, v in sorted(letters.items()) if k not in "ACGT"}
    bases = sum(letters.values())
    acgt = " ".join(f"{k} {letters[k]}" for k in "ACGT")
    print(f"  {name}: {records} records, {bases} bases ({acgt}; other {sum(other.values())}"
          + (f": {' '.join(f'{k} {v}' for k, v in other.items())}" if other else "") + ")")


def pretrain_kaptive(reference_dir, out):
    total, records = collections.Counter(), 0
    for path in sorted(glob.glob(os.path.join(reference_dir, "*.gbk"))):
        stem = os.path.splitext(os.path.basename(path))[0]
        letters, n = collections.Counter(), 0
        with open(os.path.join(out, f"kaptive-{stem}.fa"), "w") as f:
            for record in SeqIO.parse(path, "genbank"):
                seq = str(record.seq).upper()
                letters.update(seq)
                write_fasta(f, f"{locus_name(record)} {record.id}", seq)
                n += 1
        describe(f"kaptive-{stem}.fa", n, letters)
        total += letters
        records += n
    return records, total


def pretrain_genomes(genome_dir, out, chunk):
    total, records = collections.Counter(), 0
    for path in sorted(glob.glob(os.path.join(genome_dir, "*.fna.xz"))):
        name = os.path.basename(path)[:-len(".fna.xz")]
        letters, n = collections.Counter(), 0
        with lzma.open(path, "rt") as src, open(os.path.join(out, f"genome-{name}.fa"), "w") as f:
            for record in SeqIO.parse(src, "fasta"):
                seq = str(record.seq).upper()
                letters.update(seq)
                pieces = -(-len(seq) // chunk)
                for k in range(pieces):
                    a, b = k * len(seq) // pieces, (k + 1) * len(seq) // pieces
                    write_fasta(f, f"{record.id}:{a + 1}-{b}", seq[a:b])
                    n += 1
        describe(f"genome-{name}.fa", n, letters)
        total += letters
        records += n
    return records, total


def probe(path, genes, window, seed, out):
    rng = random.Random(seed)
    rows, per_gene, other = [], collections.Counter(), collections.Counter()
    with open(os.path.join(out, "windows.fa"), "w") as f:
        for record in SeqIO.parse(path, "genbank"):
            seen = set()
            for feature in record.features:
                gene = feature.qualifiers.get("gene", [None])[0]
                if feature.type != "CDS" or gene not in genes or gene in seen or len(feature.location) < window:
                    continue
                seen.add(gene)
                cds = feature.location.extract(record.seq).upper()   # coding strand, 5' to 3'
                phase = int(feature.qualifiers.get("codon_start", ["1"])[0]) - 1
                start = phase + 3 * rng.randrange((len(cds) - window - phase) // 3 + 1)
                seq = str(cds[start:start + window])
                # Record coordinates (1-based, inclusive) of the window's bases.
                parts = list(feature.location.parts)
                if feature.location.strand == -1:
                    hi = int(parts[0].end) - start
                    where = f"{hi - window + 1}-{hi}(-)" if len(parts) == 1 else f"cds+{start}(-)"
                else:
                    lo = int(parts[0].start) + start
                    where = f"{lo + 1}-{lo + window}(+)" if len(parts) == 1 else f"cds+{start}(+)"
                write_fasta(f, f"{len(rows)} {locus_name(record)} {record.id}:{where}", seq)
                rows.append(f"{len(rows)}\t{gene}\n")
                per_gene[gene] += 1
                other.update(c for c in seq if c not in "ACGT")
    with open(os.path.join(out, "labels.tsv"), "w") as f:
        f.writelines(rows)
    missing = [g for g in genes if per_gene[g] == 0]
    if missing:
        fail(f"{path}: no CDS of at least {window} bases for {', '.join(missing)}")
    print(f"  windows.fa: {len(rows)} windows of {window} bases; other letters: {dict(other) or 'none'}")
    print("  per gene: " + ", ".join(f"{g} {per_gene[g]}" for g in genes))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("reference_dir")
    ap.add_argument("out")
    ap.add_argument("--genomes")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=25000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--probe-file", default="Klebsiella_k_locus_primary_reference.gbk")
    ap.add_argument("--genes", default="galF,cpsACP,wzi,wza,wzc,wzx,gnd,ugd")
    a = ap.parse_args()
    if not os.path.isdir(a.reference_dir):
        fail(f"{a.reference_dir}: no such folder")
    probe_path = os.path.join(a.reference_dir, a.probe_file)
    if not os.path.isfile(probe_path):
        fail(f"{probe_path}: no such file")
    for sub in ("pretrain", "probe"):
        os.makedirs(os.path.join(a.out, sub), exist_ok=True)
    print(f"{a.out}/pretrain:")
    records, total = pretrain_kaptive(a.reference_dir, os.path.join(a.out, "pretrain"))
    if a.genomes:
        more, letters = pretrain_genomes(a.genomes, os.path.join(a.out, "pretrain"), a.chunk)
        records, total = records + more, total + letters
    n_files = len(glob.glob(os.path.join(a.out, "pretrain", "*.fa")))
    describe(f"all {n_files} files", records, total)
    print(f"{a.out}/probe (from {a.probe_file}):")
    probe(probe_path, a.genes.split(","), a.window, a.seed, os.path.join(a.out, "probe"))


if __name__ == "__main__":
    main()
