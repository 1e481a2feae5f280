"""One .npy per sequence from a UEA/UCR classification problem in .ts format, as bundled in a wheel.

  python3 launch/ucr-series.py WHEEL PROBLEM OUT
      reads PKG/datasets/data/PROBLEM/PROBLEM_TRAIN.ts and _TEST.ts from the wheel (a zip file) and writes
      OUT/files/train/NNNN.npy and OUT/files/test/NNNN.npy (archive order), each [T, C] float32 (little-endian,
      C order, .npy format 1.0), missing values ('?' or NaN in the .ts file) kept as NaN, and OUT/labels.tsv:
      one line per sequence, the path relative to OUT/files TAB the class label as the archive spells it.
      Prints the sizes: sequences, time steps, channels, length range, missing values, sequences per class.
Needs numpy. Exit 1 naming the file: a problem the wheel lacks, a time-stamped .ts file, a case whose
channels differ in length or whose dimension count differs from the header's.
"""
import collections
import os
import sys
import zipfile

import numpy as np


def fail(msg):
    print(f"ucr-series: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_ts(text, name):
    """[(array [T, C] float32, label)] of a .ts file with class labels (no time stamps)."""
    header, cases, in_data = {}, [], False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if line.lower() == "@data":
                in_data = True
            elif line.startswith("@"):
                key, _, value = line[1:].partition(" ")
                header[key.lower()] = value.strip()
            continue
        if header.get("timestamps", "false").lower() == "true":
            fail(f"{name}: time-stamped series are not supported")
        *channels, label = line.split(":")
        if not channels:
            fail(f"{name}:{n}: a case without values")
        values = [[float("nan") if v.strip() in ("?", "") else float(v) for v in c.split(",")] for c in channels]
        if len({len(v) for v in values}) != 1:
            fail(f"{name}:{n}: channels of unequal length {[len(v) for v in values]}")
        dims = header.get("dimensions")
        if dims is not None and int(dims) != len(values):
            fail(f"{name}:{n}: {len(values)} channels, header says {dims}")
        cases.append((np.array(values, dtype="<f4").T.copy(order="C"), label.strip()))
    if not in_data:
        fail(f"{name}: no @data line")
    return cases


def main():
    if len(sys.argv) != 4:
        fail("usage: ucr-series.py WHEEL PROBLEM OUT")
    wheel, problem, out = sys.argv[1:]
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        splits = []
        for split in ("TRAIN", "TEST"):
            suffix = f"/datasets/data/{problem}/{problem}_{split}.ts"
            found = [n for n in names if n.endswith(suffix)]
            if not found:
                fail(f"{os.path.basename(wheel)} has no {problem}_{split}.ts")
            splits.append((split.lower(), parse_ts(z.read(found[0]).decode("utf-8"), found[0])))
    rows, per_class, lengths, missing, channels = [], collections.Counter(), [], 0, set()
    for split, cases in splits:
        os.makedirs(os.path.join(out, "files", split), exist_ok=True)
        width = max(4, len(str(len(cases) - 1)))
        for i, (x, label) in enumerate(cases):
            rel = f"{split}/{i:0{width}d}.npy"
            np.save(os.path.join(out, "files", rel), x)
            rows.append(f"{rel}\t{label}\n")
            per_class[label] += 1
            lengths.append(x.shape[0])
            missing += int(np.isnan(x).sum())
            channels.add(x.shape[1])
    with open(os.path.join(out, "labels.tsv"), "w") as f:
        f.writelines(rows)
    numeric = all(k.lstrip("-").isdigit() for k in per_class)
    order = sorted(per_class, key=lambda k: int(k) if numeric else k)
    counts = ", ".join(f"{k}: {per_class[k]}" for k in order)
    print(f"{problem}: {len(rows)} sequences ({', '.join(f'{s} {len(c)}' for s, c in splits)}), "
          f"{sum(lengths)} time steps, {'/'.join(map(str, sorted(channels)))} channel(s), "
          f"length {min(lengths)}..{max(lengths)} (mean {sum(lengths) / len(lengths):.0f}), "
          f"{missing} missing values")
    print(f"{len(per_class)} classes: {counts}")


if __name__ == "__main__":
    main()
