#!/usr/bin/env python3
"""Speaker-identity linear probe (docs/options.md, "Speaker probe"). Needs numpy and torch
(`label` needs neither).

  speaker-probe.py label IN.tsv OUT.tsv
      adds the speaker column (adapter.speaker = table) to a manifest of the default corpus: from the file name
      LEVEL/PREFIX-CHAR-word.ogg, CHAR m (small fish) and v (big fish) are the labels `m` and `v` (one voice each
      throughout the game); any other CHAR is the level's character `LEVEL/CHAR`; names without a CHAR field
      (e.g. help12.ogg) stay unlabelled (unknown speaker)
  speaker-probe.py files MANIFEST... --out DIR [--per-class 200]
      labels from Fish Fillets NG file names LEVEL/PREFIX-CHAR-word.ogg (CHAR m = small fish, v = big fish):
      writes DIR/files.txt (absolute paths), DIR/labels.npy and DIR/speakers.txt (m or v per file, for
      `w2vbert embed --speaker`), a seeded balanced sample
  speaker-probe.py probe LABELS.npy FEATURES.npy...   (prefix a path with pca8: for its top-8 principal components)
      FEATURES: `w2vbert embed` output ([N, T, d] with .lengths.npy, mean-pooled here) or `--layer speaker` [N, S];
      multinomial logistic regression (L-BFGS, L2 1e-2, standardised on the training folds), 5-fold stratified CV
"""
import os, sys, random


def speaker_label(path):
    """The speaker of a default-corpus file LEVEL/PREFIX-CHAR-word.ogg, or None."""
    parts = os.path.basename(path).split("-")
    if len(parts) < 3:
        return None
    return parts[1] if parts[1] in ("m", "v") else f"{os.path.basename(os.path.dirname(path))}/{parts[1]}"


def label(argv):
    src, dst = argv
    lines = open(src).read().split("\n")
    out, n, known = [lines[0]], 0, set()
    for line in lines[1:]:
        if not line.strip():
            continue
        cols = line.split("\t")[:2]
        spk = speaker_label(cols[0])
        if spk is not None:
            cols.append(spk)
            n += 1
            known.add(spk)
        out.append("\t".join(cols))
    open(dst, "w").write("\n".join(out) + "\n")
    print(f"{dst}: {n} of {len(out) - 1} rows labelled, {len(known)} speakers")


def files(argv):
    import numpy as np
    out = argv[argv.index("--out") + 1]
    per = int(argv[argv.index("--per-class") + 1]) if "--per-class" in argv else 200
    manifests = [a for a in argv if a.endswith(".tsv")]
    rows = []
    for f in manifests:
        lines = open(f).read().split("\n")
        for line in lines[1:]:
            if not line.strip():
                continue
            p = line.split("\t")[0]
            parts = os.path.basename(p).split("-")
            if len(parts) >= 3 and parts[1] in ("m", "v"):
                rows.append((os.path.join(lines[0], p), parts[1]))
    random.seed(0)
    sel = random.sample([r for r in rows if r[1] == "m"], per) + random.sample([r for r in rows if r[1] == "v"], per)
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "files.txt"), "w").write("\n".join(r[0] for r in sel) + "\n")
    np.save(os.path.join(out, "labels.npy"), np.array([0 if r[1] == "m" else 1 for r in sel]))
    open(os.path.join(out, "speakers.txt"), "w").write("\n".join(r[1] for r in sel) + "\n")
    print(f"{len(sel)} files ({per} per class) of {len(rows)} labelled → {out}")


def load_pooled(path):
    import numpy as np
    x = np.load(path)
    if x.ndim == 2:
        return x
    lens = np.load(path[:-4] + ".lengths.npy").astype(int)
    return np.stack([x[i, :lens[i]].mean(0) for i in range(len(lens))])


def probe(X, y, folds=5, seed=0, l2=1e-2, iters=300):
    import numpy as np
    import torch
    rng = np.random.default_rng(seed)
    f = np.zeros(len(y), int)
    for c in np.unique(y):
        ci = rng.permutation(np.flatnonzero(y == c))
        f[ci] = np.arange(len(ci)) % folds
    accs = []
    for k in range(folds):
        tr, te = f != k, f == k
        mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-6
        Xtr = torch.tensor((X[tr] - mu) / sd, dtype=torch.float64)
        Xte = torch.tensor((X[te] - mu) / sd, dtype=torch.float64)
        ytr = torch.tensor(y[tr])
        C = int(y.max()) + 1
        W = torch.zeros(X.shape[1], C, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([W, b], max_iter=iters, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(Xtr @ W + b, ytr) + l2 * (W ** 2).sum()
            loss.backward()
            return loss
        opt.step(closure)
        accs.append(float(((Xte @ W + b).argmax(1).numpy() == y[te]).mean()))
    return float(np.mean(accs)), float(np.std(accs))


def main(argv):
    import numpy as np
    y = np.load(argv[0])
    print(f"{len(y)} utterances, classes {np.bincount(y).tolist()}, majority {np.bincount(y).max() / len(y):.3f}")
    for p in argv[1:]:
        pca = p.startswith("pca8:")
        X = load_pooled(p[5:] if pca else p)
        if pca:   # unsupervised 8-dim baseline (fit on all utterances, no labels)
            Xc = X - X.mean(0)
            X = Xc @ np.linalg.svd(Xc, full_matrices=False)[2][:8].T
            p = f"pca8({os.path.basename(p[5:])})"
        m, s = probe(X, y)
        print(f"{os.path.basename(p):32s} dim {X.shape[1]:4d}  accuracy {m:.3f} ± {s:.3f} (5-fold)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "label":
        label(sys.argv[2:])
    elif len(sys.argv) >= 2 and sys.argv[1] == "files":
        files(sys.argv[2:])
    elif len(sys.argv) >= 2 and sys.argv[1] == "probe":
        main(sys.argv[2:])
    else:
        print(__doc__)
        sys.exit(2)
