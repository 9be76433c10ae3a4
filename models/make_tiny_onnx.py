"""Makes models/tiny-bert-cls-onnx: the tiny-bert-cls fixture as an ONNX
BertForSequenceClassification (logits output), laid out as optimum writes it (model.onnx +
config.json + tokenizer.json), for the tool's `--onnx` tests that need no fetched model.

    python3 models/make_tiny_onnx.py models/tiny-bert-cls models/tiny-bert-cls-onnx

The encoder is tools/reference/make_onnx.py's graph (embedding tables not named like PyTorch's,
MatMul + Add linears); the head is CLS → Gemm(pooler, transB=1) → Tanh → Gemm(classifier,
transB=1), so the import's Gemm path is covered too. Checked against the float64 reference
(tests/golden/tiny-classify.jsonl) with ONNX Runtime before it is written.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools/reference"))
import make_onnx  # noqa: E402


def main(src, out):
    src, out = Path(src), Path(out)
    model = make_onnx.build(src)
    g = model.graph
    w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in load_file(str(src / "model.safetensors")).items()}
    for name in ["pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias"]:
        g.initializer.append(numpy_helper.from_array(w[name], name))
    g.initializer.append(numpy_helper.from_array(np.array(0, dtype=np.int64), "cls_index"))
    hidden = g.node[-1].input[0]
    del g.node[-1]  # the Identity to last_hidden_state
    g.node.extend([
        helper.make_node("Gather", [hidden, "cls_index"], ["cls"], name="cls", axis=1),
        helper.make_node("Gemm", ["cls", "pooler.dense.weight", "pooler.dense.bias"], ["pooled_lin"], name="pooler", transB=1),
        helper.make_node("Tanh", ["pooled_lin"], ["pooled"], name="pooler_tanh"),
        helper.make_node("Gemm", ["pooled", "classifier.weight", "classifier.bias"], ["logits"], name="classifier", transB=1),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", w["classifier.bias"].shape[0]]))
    onnx.checker.check_model(model)

    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    texts = [json.loads(line) for line in (ROOT / "tests/golden/tiny-texts.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (ROOT / "tests/golden/tiny-classify.jsonl").read_text().splitlines()]
    for text, ref in zip(texts, want):
        ids = np.array([ref["ids"]], dtype=np.int64)
        # Pairs: type 1 after the first [SEP] (id 3).
        first_sep = ref["ids"].index(3)
        types = np.array([[0 if i <= first_sep else 1 for i in range(len(ref["ids"]))]], dtype=np.int64)
        logits = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": types})[0][0]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        assert np.abs(probs - np.array(ref["probs"])).max() < 1e-5, (text, probs, ref["probs"])

    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "model.onnx"))
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(src / f, out / f)
    print(f"wrote {out}/model.onnx, checked against the float64 reference on {len(want)} texts")


if __name__ == "__main__":
    main(*sys.argv[1:3])
