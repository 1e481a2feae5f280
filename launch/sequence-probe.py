#!/usr/bin/env python3
"""Linear probes of frozen features for the series and tokens kinds (docs/sequences.md, "Generalisability").
Needs numpy and torch; the probe is launch/speaker-probe.py's (multinomial logistic regression, L-BFGS,
L2 1e-2, standardised on the training folds, 5-fold stratified cross-validation).

  sequence-probe.py files series LABELS.tsv ROOT OUT_DIR
      LABELS.tsv: path relative to ROOT TAB label → OUT_DIR/files.txt (absolute paths), OUT_DIR/labels.npy,
      OUT_DIR/classes.txt
  sequence-probe.py files tokens LABELS.tsv FASTA OUT_DIR
      LABELS.tsv: record index TAB label → OUT_DIR/files.txt (FASTA#index), labels.npy, classes.txt
  sequence-probe.py probe OUT_DIR NAME=FEATURES.npy ...
      FEATURES: `w2vbert embed` output ([N, T, d] with .lengths.npy) or `--save-features` output; prefix
      onehot:V: to turn token ids into one-hot vectors of V first. Each is mean-pooled over its frames (NaN,
      missing values, left out) and probed; prints one line per NAME and writes OUT_DIR/probe.json.
"""
import json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def files(argv):
    import numpy as np
    kind, labels, root, out = argv
    rows = [l.rstrip("\n").split("\t") for l in open(labels) if l.strip()]
    classes = sorted({r[1] for r in rows}, key=lambda c: (len(c), c) if c.isdigit() else (0, c))
    index = {c: i for i, c in enumerate(classes)}
    os.makedirs(out, exist_ok=True)
    if kind == "series":
        paths = [os.path.join(os.path.abspath(root), r[0]) for r in rows]
    else:
        paths = [f"{os.path.abspath(root)}#{int(r[0])}" for r in rows]
    open(os.path.join(out, "files.txt"), "w").write("\n".join(paths) + "\n")
    open(os.path.join(out, "classes.txt"), "w").write("\n".join(classes) + "\n")
    np.save(os.path.join(out, "labels.npy"), np.array([index[r[1]] for r in rows]))
    print(f"{len(rows)} sequences, {len(classes)} classes → {out}")


def pooled(spec):
    import numpy as np
    vocab = None
    if spec.startswith("onehot:"):
        _, v, spec = spec.split(":", 2)
        vocab = int(v)
    x = np.load(spec)
    lens = np.load(spec[:-4] + ".lengths.npy").astype(int) if x.ndim == 3 else None
    if x.ndim == 2:
        x, lens = x[None], np.array([x.shape[0]])
    out = []
    for i, n in enumerate(lens):
        f = x[i, :n]
        if vocab is not None:
            f = np.eye(vocab)[f[:, 0].astype(int)]
        out.append(np.nan_to_num(np.nanmean(f, 0)))
    return np.stack(out)


def probe(argv):
    import numpy as np
    import importlib
    sp = importlib.import_module("speaker-probe")
    out, specs = argv[0], argv[1:]
    y = np.load(os.path.join(out, "labels.npy"))
    print(f"{len(y)} sequences, classes {np.bincount(y).tolist()}, majority {np.bincount(y).max() / len(y):.3f}")
    results = {}
    for s in specs:
        name, path = s.split("=", 1)
        X = pooled(path)
        m, sd = sp.probe(X, y)
        results[name] = {"accuracy": m, "std": sd, "dim": int(X.shape[1])}
        print(f"{name:28s} dim {X.shape[1]:4d}  accuracy {m:.3f} ± {sd:.3f} (5-fold)")
    json.dump(results, open(os.path.join(out, "probe.json"), "w"), indent=1)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "files":
        files(sys.argv[2:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "probe":
        probe(sys.argv[2:])
    else:
        print(__doc__)
        sys.exit(2)
