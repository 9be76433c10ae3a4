"""Simulates bertlite's int8 compute in float64 numpy, to compare ways of quantizing activations
before writing kernels for one (results/precision.md, "outliers split off per token").

    python3 tools/reference/int8_sim.py [VARIANT ...]     # default: all of them

Weights are quantized as `bertlite-tool` does (symmetric int8 per output channel, the clipping
ratio of least squared error, query/key/value and FFN-in columns smoothed by the |γ| + |β| proxy
at α = ½); activations are fake-quantized per row as the runtime does (0..=127 with a zero point
from the row's min and max, zero always in range). Everything else is float64. Prints, per
variant, the cosine of the pooled embedding to the float64 reference over the golden sentences
(tests/golden/embeddings.jsonl), mean / min. The plain variant reproduced the runtime's
0.99552 / 0.98112 as 0.99554 / 0.98180.

Variants:
  ceiling   f32 compute on the int8 weights
  row7      7-bit rows (the runtime before session 12)
  bits8     8-bit rows
  clip90    7-bit rows clipped to 0.9 of their range
  static4   the 4 channels of each linear input with the largest calibrated max |x| (32 BBC
            training articles) kept in float, LLM.int8()-style
  top4      each row's 4 largest magnitudes kept in float (the runtime since session 12)
  top8      each row's 8 largest
"""
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools/reference"))
from reference import Bert, load_tokenizer  # noqa: E402

MODEL = ROOT / "models/all-MiniLM-L6-v2"
BBC = Path.home() / ".cache/bertlite/data/bbc/train.jsonl"


def erf(x):
    """erf to ~1e-7 (Numerical Recipes' erfc), vectorized: far below int8 effects."""
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = -a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    return np.sign(x) * (1 - t * np.exp(poly))


def quantize_rows(w):
    """bertlite-tool's weights: per row, the clipping ratio (1.00 down to 0.70) of least error."""
    out = np.empty_like(w)
    for i, row in enumerate(w):
        top = np.abs(row).max()
        if top == 0:
            out[i] = 0
            continue
        best = None
        for r in range(31):
            s = top * (1 - 0.01 * r) / 127
            q = np.clip(np.round(row / s), -127, 127) * s
            e = ((q - row) ** 2).sum()
            if best is None or e < best[0]:
                best = (e, q)
        out[i] = best[1]
    return out


def fake_quant(x, bits=7, clip=1.0):
    top = 2**bits - 1
    lo = np.minimum(x.min(-1, keepdims=True), 0) * clip
    hi = np.maximum(x.max(-1, keepdims=True), 0) * clip
    span = np.where(hi - lo == 0, 1, hi - lo)
    step = span / top
    zero = np.round(-lo / step)
    return (np.clip(np.round(x / step) + zero, 0, top) - zero) * step


def top_magnitudes(x, j):
    """Mask of each row's j largest magnitudes."""
    idx = np.argpartition(-np.abs(x), j, axis=1)[:, :j]
    mask = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask


class Sim:
    def __init__(self):
        self.bert = Bert(MODEL)
        self.tok = load_tokenizer(MODEL)
        w = self.w = self.bert.w
        self.layers = self.bert.cfg["num_hidden_layers"]
        self.q, self.smooth = {}, {}
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            prev = "embeddings.LayerNorm" if i == 0 else f"encoder.layer.{i - 1}.output.LayerNorm"
            groups = [("qkv", [f"{p}.attention.self.{n}" for n in ("query", "key", "value")], prev),
                      ("fi", [f"{p}.intermediate.dense"], f"{p}.attention.output.LayerNorm")]
            for slot, names, norm in groups:
                act = np.abs(w[norm + ".weight"]) + np.abs(w[norm + ".bias"])
                wmax = np.max([np.abs(w[n + ".weight"]).max(0) for n in names], axis=0)
                s = np.sqrt(act / wmax)
                self.smooth[(i, slot)] = s
                for n in names:
                    self.q[n] = quantize_rows(w[n + ".weight"] * s)
            for slot, n in (("o", f"{p}.attention.output.dense"), ("fo", f"{p}.output.dense")):
                self.smooth[(i, slot)] = np.ones(w[n + ".weight"].shape[1])
                self.q[n] = quantize_rows(w[n + ".weight"])
        self.words = quantize_rows(w["embeddings.word_embeddings.weight"])

    def linear(self, x, i, slot, name, variant, stats):
        xs = x / self.smooth[(i, slot)]
        if stats is not None:
            stats[(i, slot)] = np.maximum(stats.get((i, slot), 0), np.abs(xs).max(0))
        w = self.q[name]
        if variant == "ceiling" or stats is not None:
            y = xs @ w.T
        elif variant.startswith("top") or variant == "static4":
            if variant == "static4":
                keep = np.zeros(xs.shape, dtype=bool)
                keep[:, np.argsort(-self.static[(i, slot)])[:4]] = True
            else:
                keep = top_magnitudes(xs, int(variant[3:].split("b")[0]))
            # "top4b8": the rest on 8-bit rows (what SDOT could multiply exactly; AVX2's
            # vpmaddubsw and the SMULL kernel's i16 lanes need 7 bits).
            bits = 8 if variant.endswith("b8") else 7
            y = fake_quant(np.where(keep, 0, xs), bits) @ w.T + np.where(keep, xs, 0) @ w.T
        else:
            bits, clip = {"row7": (7, 1.0), "bits8": (8, 1.0), "clip90": (7, 0.9)}[variant]
            y = fake_quant(xs, bits, clip) @ w.T
        return y + self.w[name + ".bias"]

    def pooled(self, ids, variant, stats=None):
        w, n = self.w, len(ids)
        x = self.words[ids] + w["embeddings.position_embeddings.weight"][:n]
        x = self.bert.ln(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
        h = self.bert.heads
        dh = x.shape[-1] // h
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            qkv = [self.linear(x, i, "qkv", f"{p}.attention.self.{m}", variant, stats)
                   .reshape(n, h, dh).transpose(1, 0, 2) for m in ("query", "key", "value")]
            s = qkv[0] @ qkv[1].transpose(0, 2, 1) / math.sqrt(dh)
            s = np.exp(s - s.max(-1, keepdims=True))
            c = ((s / s.sum(-1, keepdims=True)) @ qkv[2]).transpose(1, 0, 2).reshape(n, h * dh)
            a = self.linear(c, i, "o", f"{p}.attention.output.dense", variant, stats)
            x = self.bert.ln(a + x, f"{p}.attention.output.LayerNorm")
            f = self.linear(x, i, "fi", f"{p}.intermediate.dense", variant, stats)
            f = 0.5 * f * (1 + erf(f / math.sqrt(2)))
            x = self.bert.ln(self.linear(f, i, "fo", f"{p}.output.dense", variant, stats) + x,
                             f"{p}.output.LayerNorm")
        v = x.mean(0)
        return v / np.linalg.norm(v)

    def calibrate(self):
        """Per linear input, max |x| per channel over 32 BBC training articles (≤ 128 tokens)."""
        stats = {}
        for line in BBC.read_text().splitlines()[:32]:
            ids = self.tok.encode(json.loads(line)["text"]).ids[:128]
            self.pooled(np.array(ids), "ceiling", stats)
        self.static = stats


def main():
    variants = sys.argv[1:] or [
        "ceiling", "row7", "bits8", "clip90", "static4", "top4", "top8", "top4b8", "top8b8"
    ]
    sim = Sim()
    if "static4" in variants:
        sim.calibrate()
    golden = [json.loads(line) for line in (ROOT / "tests/golden/embeddings.jsonl").open()]
    for variant in variants:
        cos = [sim.pooled(np.array(sim.tok.encode(g["text"]).ids), variant) @ np.array(g["embedding"])
               for g in golden]
        print(f"{variant:8} mean {np.mean(cos):.5f} min {np.min(cos):.5f}", flush=True)


if __name__ == "__main__":
    main()
