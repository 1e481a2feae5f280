"""Nested labelled subsets of a manifest, as the low-resource splits of Libri-light (10 min within 1 h within
10 h): the labelled rows (non-empty line in NAME.wrd) in an order shuffled by --seed, each subset the shortest
prefix of that order with at least its minutes of audio, so every smaller subset lies within every larger one.
Writes OUT/NAME-<M>min.tsv and .wrd for each M (same root line, rows in manifest order) and prints their sizes.
  python3 launch/label-subsets.py data/fillets-cs/train.tsv OUT_DIR 10 30 [--seed 1]
Exit 1 naming the file: a missing .wrd, a .wrd whose line count differs from the manifest's rows, too little
labelled audio for a subset.
"""
import argparse
import os
import random
import sys


def fail(msg):
    print(f"label-subsets: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("out")
    ap.add_argument("minutes", type=float, nargs="+")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    wrd = os.path.splitext(a.manifest)[0] + ".wrd"
    try:
        lines = open(a.manifest, encoding="utf-8").read().splitlines()
        texts = open(wrd, encoding="utf-8").read().splitlines()
    except OSError as e:
        fail(f"{e.filename}: {e.strerror}")
    root, rows = lines[0], lines[1:]
    if len(texts) != len(rows):
        fail(f"{wrd}: {len(texts)} lines, but {a.manifest} has {len(rows)} rows")
    labelled = [i for i, t in enumerate(texts) if t.strip()]
    order = labelled[:]
    random.Random(a.seed).shuffle(order)
    samples = [int(r.split("\t")[1]) for r in rows]
    total = sum(samples[i] for i in labelled) / 16000 / 60
    name = os.path.splitext(os.path.basename(a.manifest))[0]
    os.makedirs(a.out, exist_ok=True)
    for m in sorted(a.minutes):
        chosen, seconds = [], 0.0
        for i in order:
            if seconds >= m * 60:
                break
            chosen.append(i)
            seconds += samples[i] / 16000
        if seconds < m * 60:
            fail(f"{a.manifest}: {total:.1f} min of labelled audio, fewer than the {m:g} min asked for")
        chosen.sort()
        base = os.path.join(a.out, f"{name}-{m:g}min")
        with open(base + ".tsv", "w", encoding="utf-8") as f:
            f.write(root + "\n" + "".join(rows[i] + "\n" for i in chosen))
        with open(base + ".wrd", "w", encoding="utf-8") as f:
            f.write("".join(texts[i] + "\n" for i in chosen))
        print(f"{base}.tsv: {len(chosen)} utterances, {seconds / 60:.2f} min")
    print(f"{a.manifest}: {len(labelled)} labelled utterances, {total:.2f} min")


if __name__ == "__main__":
    main()
