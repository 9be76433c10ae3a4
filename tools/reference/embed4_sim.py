"""What 4-bit word embeddings would cost (issue #15): the float64 reference forward pass with only
the word-embedding table quantized, per row (int8, what bundles store) or in groups of 16/32/64
values along a row (4-bit, symmetric or with a per-group minimum; the minimum and maximum as
they are, or searched per group for the least squared error; NF4's normal-quantile levels).
Prints each table's squared error relative to the rows' variance and 1 - cosine of the pooled
embedding to the unquantized model's, mean and max, on the golden sentences and on 16 BBC test
articles at 256 tokens. results/precision.md has the figures.

    python3 tools/reference/embed4_sim.py [NAME...]   (default: every table)
"""
import json, sys
import numpy as np
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools/reference"))
from reference import Bert, load_tokenizer
MODEL = ROOT / "models/all-MiniLM-L6-v2"
bert = Bert(MODEL); tok = load_tokenizer(MODEL)
W0 = bert.w["embeddings.word_embeddings.weight"].copy()
def q_rows8(w):
    s = np.abs(w).max(1, keepdims=True) / 127; s[s == 0] = 1
    return np.clip(np.round(w / s), -127, 127) * s
def q4(w, g, asym):
    v, h = w.shape; x = w.reshape(v, h // g, g)
    if asym:
        lo = x.min(-1, keepdims=True); hi = x.max(-1, keepdims=True)
        s = (hi - lo) / 15; s[s == 0] = 1
        return (np.clip(np.round((x - lo) / s), 0, 15) * s + lo).reshape(v, h)
    s = np.abs(x).max(-1, keepdims=True) / 7; s[s == 0] = 1
    return (np.clip(np.round(x / s), -7, 7) * s).reshape(v, h)
def q4_searched(w, g):
    """Groups of g with a minimum and a step, the two ends shrunk by whichever of 9 × 9 factors
    (0.6 to 1) gives the group the least squared error: a clipping search."""
    v, h = w.shape; x = w.reshape(v, h // g, g)
    lo0, hi0 = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
    best, err = None, None
    for a in np.linspace(0.6, 1.0, 9):
        for b in np.linspace(0.6, 1.0, 9):
            lo, hi = lo0 * a, hi0 * b
            s = (hi - lo) / 15; s[s == 0] = 1
            q = np.clip(np.round((x - lo) / s), 0, 15) * s + lo
            e = ((q - x) ** 2).sum(-1, keepdims=True)
            best, err = (q, e) if best is None else (np.where(e < err, q, best), np.minimum(e, err))
    return best.reshape(v, h)
# QLoRA's NF4 levels (quantiles of a normal), scaled by each group's largest magnitude.
NF4 = np.array([-1.0, -0.6961928, -0.5250731, -0.3949175, -0.2844414, -0.1847734, -0.0910500, 0.0,
                0.0795803, 0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.5626170, 0.7229568, 1.0])
def nf4(w, g):
    v, h = w.shape; x = w.reshape(v, h // g, g)
    s = np.abs(x).max(-1, keepdims=True); s[s == 0] = 1
    return (NF4[np.abs((x / s)[..., None] - NF4).argmin(-1)] * s).reshape(v, h)
def relative_error(q):
    c = W0 - W0.mean(1, keepdims=True)
    return np.mean((q - W0) ** 2) / np.mean(c ** 2)
def pooled(ids):
    h = bert.forward(ids, [0] * len(ids))
    v = h.mean(0); return v / np.linalg.norm(v)
golden = [json.loads(l) for l in open(ROOT / "tests/golden/embeddings.jsonl")]
bbc = [json.loads(l)["text"] for l in open(Path.home() / ".cache/bertlite/data/bbc/test.jsonl").read().splitlines()[:16]]
sets = {"golden": [tok.encode(g["text"]).ids for g in golden],
        "bbc16x256": [tok.encode(t).ids[:256] for t in bbc]}
ref = {k: [pooled(ids) for ids in v] for k, v in sets.items()}
tables = {"int8-rows": lambda: q_rows8(W0), "g32-sym": lambda: q4(W0, 32, False),
          "g32-asym": lambda: q4(W0, 32, True), "g16-asym": lambda: q4(W0, 16, True),
          "g64-asym": lambda: q4(W0, 64, True), "g32-asym-searched": lambda: q4_searched(W0, 32),
          "nf4-g32": lambda: nf4(W0, 32), "nf4-g16": lambda: nf4(W0, 16)}
for name in sys.argv[1:] or tables:
    table = tables[name]()
    bert.w["embeddings.word_embeddings.weight"] = table
    out = [f"relative squared error {relative_error(table):.5f}"]
    for k, v in sets.items():
        c = [float(pooled(ids) @ r) for ids, r in zip(v, ref[k])]
        out.append(f"{k} loss mean {1 - np.mean(c):.6f} max {1 - np.min(c):.6f}")
    print(f"{name:22}", "; ".join(out), flush=True)
