"""Same bundle, x86_64 vs a board: labels identical (unless the x86 top-2 margin is under
MARGIN, a genuine tie) and embeddings within a cosine bound.

f32 (default): both run f32 kernels on the same dequantized weights; only summation order and
FMA contraction differ, so outputs agree to ~1e-6 relative; min cosine 0.99999 leaves room for
that and nothing else.

int8 (`--int8`): both quantize activations per token at run time. Integer sums are exact, but a
1e-7 difference upstream flips the rounding of an activation sitting on a rounding boundary, and
each flip moves it by a whole step (1/127 of its row's max), so the two sides differ by int8
noise, not f32 noise. Measured on the golden sentences, x86 vs Cortex-A76: mean 0.99954, min
0.99084 (smoothed bundle; 0.99961 / 0.99603 before smoothing). Each side is itself only within
min cosine 0.985 of fp64 (tests/fidelity.rs), so two int8 runs can sit further apart than f32
noise on a short text. Bounds: mean 0.999, min 0.98; labels identical unless the x86 top-2
margin is under INT8_MARGIN: int8 noise moves a near-tie's margin further than f32 noise does.
Measured (session 19): the URL line of the golden sentences, a business/tech tie with no topic,
x86 int8 (AVX-512) 0.501 / 0.488, Cortex-A76 0.494 / 0.495 (tech), embeddings at cosine
0.99964 or better on every line: a 0.014 swing; the bound leaves twice that."""
import json
import sys

COSINE = 0.99999
INT8_MEAN, INT8_MIN = 0.999, 0.98
MARGIN = 0.01
INT8_MARGIN = 0.03


def rows(path):
    return [json.loads(l) for l in open(path) if l.strip()]


def cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0


def main(xc, tc, xe, te, int8=False):
    xc, tc, xe, te = rows(xc), rows(tc), rows(xe), rows(te)
    margin = INT8_MARGIN if int8 else MARGIN
    assert len(xc) == len(tc) > 0 and len(xe) == len(te) > 0, "line counts differ"
    bad = []
    for a, b in zip(xc, tc):
        if "error" in a or "error" in b:
            if a.get("error") != b.get("error"):
                bad.append(("error", a, b))
            continue
        top = sorted(a["scores"].values(), reverse=True)
        if a["label"] != b["label"] and top[0] - top[1] >= margin:
            bad.append(("label", a["label"], b["label"]))
    cosines = [cos(a["embedding"], b["embedding"]) for a, b in zip(xe, te) if "embedding" in a and "embedding" in b]
    worst = min(cosines)
    print(f"compare: {len(xc)} labels, {sum(1 for a, b in zip(xc, tc) if a.get('label') == b.get('label'))} identical; "
          f"{len(cosines)} embeddings, min cosine {worst:.7f}")
    mean = sum(cosines) / len(cosines)
    ok = (mean >= INT8_MEAN and worst >= INT8_MIN) if int8 else worst >= COSINE
    print(f"compare: mean cosine {mean:.7f} ({'int8' if int8 else 'f32'} bounds)")
    if bad or not ok:
        print("FAIL", bad[:5], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--int8"]
    main(*args, int8="--int8" in sys.argv[1:])
