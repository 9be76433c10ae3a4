"""What 4-bit word embeddings would cost (issue #15): the float64 reference forward pass with only
the word-embedding table quantized, per row (int8, what bundles store) or in groups of 16/32/64
values along a row (4-bit, symmetric or with a per-group minimum). Prints 1 - cosine of the
pooled embedding to the unquantized model's, mean and max, on the golden sentences and on 16 BBC
test articles at 256 tokens. results/compression-budget.md has the figures.

    python3 tools/reference/embed4_sim.py
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
def pooled(ids):
    h = bert.forward(ids, [0] * len(ids))
    v = h.mean(0); return v / np.linalg.norm(v)
golden = [json.loads(l) for l in open(ROOT / "tests/golden/embeddings.jsonl")]
bbc = [json.loads(l)["text"] for l in open(Path.home() / ".cache/bertlite/data/bbc/test.jsonl").read().splitlines()[:16]]
sets = {"golden": [tok.encode(g["text"]).ids for g in golden],
        "bbc16x256": [tok.encode(t).ids[:256] for t in bbc]}
ref = {k: [pooled(ids) for ids in v] for k, v in sets.items()}
for name, table in [("int8 rows (max scale)", q_rows8(W0)), ("4-bit g32 sym", q4(W0, 32, False)),
                    ("4-bit g32 asym", q4(W0, 32, True)), ("4-bit g16 asym", q4(W0, 16, True)),
                    ("4-bit g64 asym", q4(W0, 64, True))]:
    bert.w["embeddings.word_embeddings.weight"] = table
    out = []
    for k, v in sets.items():
        c = [float(pooled(ids) @ r) for ids, r in zip(v, ref[k])]
        out.append(f"{k} loss mean {1 - np.mean(c):.6f} max {1 - np.min(c):.6f}")
    print(f"{name:22}", "; ".join(out), flush=True)
