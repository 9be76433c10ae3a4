#!/usr/bin/env python3
"""The text the board counts run on: the longest BBC test article, on one line.

    cross/bench_text.py DATA_JSONL                    the text
    cross/bench_text.py DATA_JSONL TOKENIZER_JSON N   its token ids, truncated to N as Hugging
                                                      Face does, comma-separated (no padding)

cross/insn-count.sh and cross/insn-profile.sh give the text to `bertlite bench --truncate N`;
cross/ort-baseline.sh gives ONNX Runtime the same ids.
"""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1])]
text = max(rows, key=lambda r: len(r["text"]))["text"].replace("\n", " ")
if len(sys.argv) == 2:
    print(text)
else:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(sys.argv[2])
    tok.no_padding()  # the file pads to 128; count the text at its own length
    tok.enable_truncation(int(sys.argv[3]))
    print(",".join(map(str, tok.encode(text).ids)))
