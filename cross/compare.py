"""Same bundle, x86_64 vs a board: labels identical (unless the x86 top-2 margin is under
MARGIN, a genuine tie) and embeddings within COSINE. Tolerances: both run f32 kernels on the
same dequantized weights; only summation order and FMA contraction differ, so outputs agree to
~1e-6 relative; 0.99999 leaves room for that and nothing else."""
import json
import sys

COSINE = 0.99999
MARGIN = 0.01


def rows(path):
    return [json.loads(l) for l in open(path) if l.strip()]


def cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0


def main(xc, tc, xe, te):
    xc, tc, xe, te = rows(xc), rows(tc), rows(xe), rows(te)
    assert len(xc) == len(tc) > 0 and len(xe) == len(te) > 0, "line counts differ"
    bad = []
    for a, b in zip(xc, tc):
        if "error" in a or "error" in b:
            if a.get("error") != b.get("error"):
                bad.append(("error", a, b))
            continue
        top = sorted(a["scores"].values(), reverse=True)
        if a["label"] != b["label"] and top[0] - top[1] >= MARGIN:
            bad.append(("label", a["label"], b["label"]))
    cosines = [cos(a["embedding"], b["embedding"]) for a, b in zip(xe, te) if "embedding" in a and "embedding" in b]
    worst = min(cosines)
    print(f"compare: {len(xc)} labels, {sum(1 for a, b in zip(xc, tc) if a.get('label') == b.get('label'))} identical; "
          f"{len(cosines)} embeddings, min cosine {worst:.7f}")
    if bad or worst < COSINE:
        print("FAIL", bad[:5], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(*sys.argv[1:])
