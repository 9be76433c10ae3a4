#!/usr/bin/env python3
"""Pooled-embedding fidelity of bundles on three text sets, on this machine's CPU.

  python3 tools/fidelity.py [--bin BERTLITE] [--ref-bin BERTLITE] BUNDLE:PRECISION [...]

For each BUNDLE run at PRECISION (auto, f32, int8), the cosine of its pooled embedding to a
reference, mean and min over:
  - golden: the 56 golden sentences (tests/golden/embeddings.jsonl) against their float64
    reference (as tests/fidelity.rs and cross/fidelity.sh);
  - bbc-articles: every 4th BBC test article (100, full length up to the bundle's limit) and
  - bbc-sentences: 200 sentences drawn (seed 7) from the BBC test articles, both against the f32
    bundle minilm-f32.blt run at f32 (its cosine to float64 is 1.00000 on the golden set).
None of these texts is in the built-in calibration sample (tools/data/calibration.txt) or in
the BBC training split. results/precision.md quotes this script's output.

A board's CPU: --bin a wrapper running an aarch64 build under qemu-user (e.g. `qemu-aarch64
-cpu cortex-a76 -L /usr/aarch64-linux-gnu BIN "$@"`) and --ref-bin this machine's build, so
that only the bundles under test are emulated (the f32 reference is the same on every CPU to
the cosine's fifth decimal).
"""
import argparse, json, os, random, re, subprocess, sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("BERTLITE_CACHE", os.path.expanduser("~/.cache/bertlite"))


def texts():
    golden = [json.loads(l) for l in open(f"{ROOT}/tests/golden/embeddings.jsonl")]
    articles = [json.loads(l)["text"].replace("\n", " ") for l in open(f"{ROOT}/data/bbc/test.jsonl")]
    sentences = []
    for a in articles:
        sentences += [s for s in re.split(r"(?<=[.!?])\s+", a) if 3 < len(s.split()) < 40]
    random.seed(7)
    return golden, articles[::4][:100], random.sample(sentences, 200)


def embed(binary, bundle, precision, items, args=()):
    # Golden sentences hold line breaks: pass them as arguments, the BBC texts on stdin.
    cmd = [binary, "embed", "--json", "--threads", "1", "-m", bundle, "--precision", precision]
    if args:
        out = subprocess.run(cmd + list(items), check=True, capture_output=True, text=True).stdout
    else:
        out = subprocess.run(cmd, input="\n".join(items), check=True, capture_output=True,
                             text=True).stdout
    e = np.array([json.loads(l)["embedding"] for l in out.splitlines() if l.strip()], dtype=np.float64)
    assert len(e) == len(items), f"{len(e)} embeddings for {len(items)} texts"
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", f"{CACHE}/target"), "release/bertlite"))
    p.add_argument("--ref-bin", help="binary for the f32 reference (default: --bin)")
    p.add_argument("--reference", default=f"{CACHE}/bundles/minilm-f32.blt")
    p.add_argument("runs", nargs="+", help="BUNDLE:PRECISION")
    a = p.parse_args()
    golden, articles, sentences = texts()
    g_ref = np.array([r["embedding"] for r in golden], dtype=np.float64)
    g_ref /= np.linalg.norm(g_ref, axis=1, keepdims=True)
    ref_bin = a.ref_bin or a.bin
    a_ref = embed(ref_bin, a.reference, "f32", articles)
    s_ref = embed(ref_bin, a.reference, "f32", sentences)
    print(f"{'bundle':<28} {'precision':<9} {'golden (56)':>18} {'bbc-articles (100)':>20} {'bbc-sentences (200)':>20}")
    for run in a.runs:
        bundle, precision = run.rsplit(":", 1)
        cells = []
        for items, ref, as_args in [([r["text"] for r in golden], g_ref, True), (articles, a_ref, False),
                                    (sentences, s_ref, False)]:
            c = (embed(a.bin, bundle, precision, items, ("args",) if as_args else ()) * ref).sum(1)
            cells.append(f"{c.mean():.5f} / {c.min():.5f}")
        print(f"{os.path.basename(bundle):<28} {precision:<9} {cells[0]:>18} {cells[1]:>20} {cells[2]:>20}")


if __name__ == "__main__":
    sys.exit(main())
