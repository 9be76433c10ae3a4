"""How much of the pruned bundles' accuracy change in results/compression.md is the head's L2
choice: the sweep's bundles re-headed in float64 numpy (the same logistic regression as
tools/src/train.rs: standardized features, 500 steps of momentum gradient descent, L2 on the
standardized weights), with L2 chosen on one held-out fifth (`cv1`, as `compile` does), on five
folds (`cv5`), or fixed (a number), and a head distilled from the int8 bundle's (`kd0.5`).
Prints each split's accuracy and each point's change against int8 under the same head rule.

    python3 tools/reference/head_study.py cv1,cv5,0.01,0.03 int8,flops50,lat55 1,2

Embeds every train and test article of each split with `bertlite embed` (newlines as spaces,
which WordPiece treats alike) once, into $BERTLITE_CACHE/study/.
"""
import json
import os
import subprocess
import sys

import numpy as np

CACHE = os.environ.get("BERTLITE_CACHE", os.path.expanduser("~/.cache/bertlite"))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", f"{CACHE}/target"), "release/bertlite")


def embeddings(s, b):
    out = f"{CACHE}/study/s{s}-{b}.jsonl"
    if not os.path.exists(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        d = f"{CACHE}/sweep/split-{s}"
        texts = [json.loads(l)["text"].replace("\n", " ").replace("\r", " ")
                 for f in ("train", "test") for l in open(f"{d}/{f}.jsonl")]
        got = subprocess.run([BIN, "embed", "--json", "--threads", "1", "-m", f"{d}/{b}.blt"],
                             input="\n".join(texts) + "\n", capture_output=True, text=True,
                             check=True).stdout
        with open(out + ".tmp", "w") as f:
            f.write(got)
        os.replace(out + ".tmp", out)
    return out


L2S = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]
def load(s, b):
    d = f"{CACHE}/sweep/split-{s}"
    lab = [json.loads(l)["label"] for f in ("train", "test") for l in open(f"{d}/{f}.jsonl")]
    X = np.array([json.loads(l)["embedding"] for l in open(embeddings(s, b))], dtype=np.float64)
    ntr = sum(1 for _ in open(f"{d}/train.jsonl"))
    labels = sorted(set(lab)); y = np.array([labels.index(v) for v in lab])
    return X[:ntr], y[:ntr], X[ntr:], y[ntr:]
def softmax(z):
    z = z - z.max(1, keepdims=True); e = np.exp(z); return e / e.sum(1, keepdims=True)
def train(X, y, l2, iters=500, lr=0.5, T=None):
    m, s = X.mean(0), X.std(0) + 1e-12
    Z = (X - m) / s; n, d = Z.shape
    k = int(y.max()) + 1 if T is None else T.shape[1]
    T = np.eye(k)[y] if T is None else T; W = np.zeros((k, d)); b = np.zeros(k); vW = np.zeros_like(W); vb = np.zeros(k)
    for _ in range(iters):
        P = softmax(Z @ W.T + b); G = (P - T) / n
        gW = G.T @ Z; gb = G.sum(0)
        vW = 0.9 * vW - lr * (gW + l2 * W); W += vW
        vb = 0.9 * vb - lr * gb; b += vb
    W2 = W / s; b2 = b - W2 @ m
    return W2, b2
def logloss(W, b, X, y):
    P = softmax(X @ W.T + b); return -np.log(np.clip(P[np.arange(len(y)), y], 1e-12, 1)).mean()
def acc(W, b, X, y): return ((X @ W.T + b).argmax(1) == y).mean()
def choose(X, y, folds, T=None):
    idx = np.arange(len(y)); losses = np.zeros(len(L2S))
    for f in range(folds):
        va = idx % 5 == (4 - f); tr = ~va
        for i, l2 in enumerate(L2S):
            W, b = train(X[tr], y[tr], l2, T=None if T is None else T[tr]); losses[i] += logloss(W, b, X[va], y[va])
    return L2S[int(losses.argmin())]


def main():
    variants = sys.argv[1].split(",")
    bundles = sys.argv[2].split(",")
    splits = [int(s) for s in sys.argv[3].split(",")]
    res = {}
    for s in splits:
        for b in bundles:
            Xtr, ytr, Xte, yte = load(s, b)
            k = int(max(ytr.max(), yte.max())) + 1
            for v in variants:
                if v.startswith("kd"):
                    # Soft targets: the int8 bundle's head, cross-fitted on five folds.
                    alpha = float(v[2:])
                    tX = load(s, "int8")[0]
                    tl2 = choose(tX, ytr, 1)
                    P = np.zeros((len(ytr), k))
                    idx = np.arange(len(ytr))
                    for f in range(5):
                        va = idx % 5 == f
                        W, bb = train(tX[~va], ytr[~va], tl2)
                        P[va] = softmax(tX[va] @ W.T + bb)
                    T = alpha * np.eye(k)[ytr] + (1 - alpha) * P
                    l2 = choose(Xtr, ytr, 1, T)
                    W, bb = train(Xtr, ytr, l2, T=T)
                else:
                    l2 = {"cv1": lambda: choose(Xtr, ytr, 1), "cv5": lambda: choose(Xtr, ytr, 5)}.get(
                        v, lambda: float(v))()
                    W, bb = train(Xtr, ytr, l2)
                a = acc(W, bb, Xte, yte)
                res[(s, b, v)] = a
                print(s, b, v, l2, f"{a:.4f}", flush=True)
    print()
    for v in variants:
        for b in bundles:
            if b == "int8":
                continue
            ds = [100 * (res[(s, b, v)] - res[(s, "int8", v)]) for s in splits]
            sd = np.std(ds, ddof=1) if len(ds) > 1 else 0.0
            print(f"{v:6} {b:16} mean {np.mean(ds):+.2f} sd {sd:.2f} per split "
                  + " ".join(f"{d:+.2f}" for d in ds))


if __name__ == "__main__":
    main()
