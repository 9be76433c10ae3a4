"""Builds the fair ONNX Runtime baselines from the same safetensors bertlite compiles:

    python3 tools/reference/make_onnx.py models/all-MiniLM-L6-v2 OUT_DIR

OUT_DIR/minilm-fp32.onnx  the true fp32 weights, a plain BERT graph (opset 17)
OUT_DIR/minilm-int8.onnx  onnxruntime.quantization.quantize_dynamic(per_channel=True,
                          weight_type=QInt8, reduce_range=False, MatMul nodes only) of it

Inputs input_ids / attention_mask / token_type_ids (int64 [batch, seq]); output last_hidden_state.
The fp32 graph is checked against the float64 numpy reference before it is written.
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).parent))
import reference  # noqa: E402


def build(model_dir):
    d = Path(model_dir)
    cfg = json.loads((d / "config.json").read_text())
    w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in load_file(str(d / "model.safetensors")).items() if v.dtype != np.int64}
    h, heads, layers = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    dh = h // heads
    eps = cfg.get("layer_norm_eps", 1e-12)
    nodes, inits = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def linear(x, prefix, name):
        wt = init(prefix + ".weight.T", w[prefix + ".weight"].T.copy())
        y = node("MatMul", [x, wt], name + ".mm")
        return node("Add", [y, init(prefix + ".bias", w[prefix + ".bias"])], name)

    def ln(x, prefix, name):
        return node("LayerNormalization", [x, init(prefix + ".weight", w[prefix + ".weight"]), init(prefix + ".bias", w[prefix + ".bias"])], name, axis=-1, epsilon=eps)

    # Embeddings; position ids = 0..seq from the input's shape.
    shape = node("Shape", ["input_ids"], "shape")
    seq = node("Gather", [shape, init("one_i", np.array(1, dtype=np.int64))], "seq")
    pos = node("Range", [init("zero_i", np.array(0, dtype=np.int64)), seq, init("step_i", np.array(1, dtype=np.int64))], "pos")
    x = node("Gather", [init("word", w["embeddings.word_embeddings.weight"]), "input_ids"], "word_emb")
    p = node("Gather", [init("position", w["embeddings.position_embeddings.weight"]), pos], "pos_emb")
    t = node("Gather", [init("type", w["embeddings.token_type_embeddings.weight"]), "token_type_ids"], "type_emb")
    x = node("Add", [x, p], "emb_add1")
    x = node("Add", [x, t], "emb_add2")
    x = ln(x, "embeddings.LayerNorm", "emb_ln")
    # Additive mask [b, 1, 1, s].
    m = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    m = node("Sub", [init("one_f", np.array(1.0, dtype=np.float32)), m], "mask_inv")
    m = node("Mul", [m, init("big", np.array(-10000.0, dtype=np.float32))], "mask_add")
    m = node("Unsqueeze", [m, init("axes12", np.array([1, 2], dtype=np.int64))], "mask4")
    split = init("split_shape", np.array([0, 0, heads, dh], dtype=np.int64))
    merge = init("merge_shape", np.array([0, 0, h], dtype=np.int64))
    scale = init("scale", np.array(1 / math.sqrt(dh), dtype=np.float32))
    for i in range(layers):
        pr = f"encoder.layer.{i}"
        q = node("Transpose", [node("Reshape", [linear(x, pr + ".attention.self.query", f"l{i}.q"), split], f"l{i}.qr")], f"l{i}.qt", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(x, pr + ".attention.self.key", f"l{i}.k"), split], f"l{i}.kr")], f"l{i}.kt", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(x, pr + ".attention.self.value", f"l{i}.v"), split], f"l{i}.vr")], f"l{i}.vt", perm=[0, 2, 1, 3])
        s = node("Mul", [node("MatMul", [q, k], f"l{i}.qk"), scale], f"l{i}.scaled")
        s = node("Softmax", [node("Add", [s, m], f"l{i}.masked")], f"l{i}.probs", axis=-1)
        c = node("Transpose", [node("MatMul", [s, v], f"l{i}.ctx")], f"l{i}.ctxt", perm=[0, 2, 1, 3])
        c = node("Reshape", [c, merge], f"l{i}.merged")
        a = linear(c, pr + ".attention.output.dense", f"l{i}.attn_out")
        x = ln(node("Add", [a, x], f"l{i}.res1"), pr + ".attention.output.LayerNorm", f"l{i}.ln1")
        f = linear(x, pr + ".intermediate.dense", f"l{i}.ffn_in")
        g = node("Erf", [node("Mul", [f, init(f"l{i}.isq2", np.array(1 / math.sqrt(2), dtype=np.float32))], f"l{i}.gdiv")], f"l{i}.erf")
        g = node("Add", [g, "one_f"], f"l{i}.erf1")
        g = node("Mul", [node("Mul", [f, g], f"l{i}.gmul"), init(f"l{i}.half", np.array(0.5, dtype=np.float32))], f"l{i}.gelu")
        o = linear(g, pr + ".output.dense", f"l{i}.ffn_out")
        x = ln(node("Add", [o, x], f"l{i}.res2"), pr + ".output.LayerNorm", f"l{i}.ln2")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="out"))
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids", "attention_mask", "token_type_ids")]
    out = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", h])]
    graph = helper.make_graph(nodes, "bert", ins, out, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def mean_pool(hidden, mask):
    m = mask[..., None].astype(np.float32)
    v = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def main(model_dir, out_dir):
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "minilm-fp32.onnx"
    onnx.save(build(model_dir), str(fp32))
    # Check against the float64 reference on a few sentences.
    texts = ["Hello, World!", "Shares in the carmaker fell after a profit warning.", "東京は日本の首都です。"]
    sess = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    for t, ref in zip(texts, reference.embed(model_dir, texts)):
        ids = np.array([ref["ids"]], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        v = mean_pool(sess.run(None, feed)[0], feed["attention_mask"])[0]
        cos = float(np.dot(v, ref["embedding"]) / np.linalg.norm(ref["embedding"]))
        assert cos > 0.99999, f"fp32 ONNX differs from the reference on {t!r}: cosine {cos}"
    int8 = out / "minilm-int8.onnx"
    quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8, reduce_range=False, op_types_to_quantize=["MatMul"])
    print(f"wrote {fp32} and {int8} (fp32 checked against the numpy reference)", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
