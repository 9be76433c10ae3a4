"""Task heads, x86_64 vs a board, both f32 compute on the same bundles: the answers are equal
and every score within 1e-4 relative (f32 summation order and FMA contraction differ, ~1e-6 on
the hidden states; tests/tasks.rs holds the host to the float64 reference with the same bound).
An answer may differ only where the host's own margin is below that bound (a tie).

    compare_tasks.py KIND HOST.jsonl BOARD.jsonl     KIND: fill-mask | ner | qa
"""
import json
import sys

TOL = 1e-4


def close(a, b):
    return abs(a - b) <= TOL * abs(b) + 1e-7


def main():
    kind, host, board = sys.argv[1], sys.argv[2], sys.argv[3]
    h = [json.loads(l) for l in open(host) if l.strip()]
    b = [json.loads(l) for l in open(board) if l.strip()]
    assert len(h) == len(b) and h, f"{kind}: {len(h)} host lines, {len(b)} board lines"
    for i, (x, y) in enumerate(zip(h, b)):
        if kind == "fill-mask":
            # One mask: a list of candidates; several: a list per mask.
            flat = lambda r: [p for m in r for p in m] if r and isinstance(r[0], list) else r
            x, y = flat(x), flat(y)
            assert len(x) == len(y), (i, x, y)
            for p, q in zip(x, y):
                assert p["token"] == q["token"] or close(p["score"], q["score"]), (i, p, q)
                assert close(q["score"], p["score"]), (i, p, q)
        elif kind == "ner":
            assert [(e["entity_group"], e["start"], e["end"]) for e in x] == \
                [(e["entity_group"], e["start"], e["end"]) for e in y], (i, x, y)
            assert all(close(f["score"], e["score"]) for e, f in zip(x, y)), (i, x, y)
        elif kind == "qa":
            assert (x["start"], x["end"]) == (y["start"], y["end"]), (i, x, y)
            assert close(y["score"], x["score"]), (i, x, y)
    print(f"{kind}: {len(h)} answers equal on the board")


if __name__ == "__main__":
    main()
