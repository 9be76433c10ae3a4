"""A valid ONNX file that is not a BERT: a two-layer MLP on [batch, 16] floats, for the host
tool's bad-input tests (tools/tests/compile.rs). Regenerate: python3 models/not-bert-onnx/make.py"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from pathlib import Path

rng = np.random.default_rng(0)
w1 = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w1")
w2 = numpy_helper.from_array(rng.standard_normal((8, 2)).astype(np.float32), "w2")
graph = helper.make_graph(
    [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ],
    "mlp",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
    [w1, w2],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
onnx.checker.check_model(model)
onnx.save(model, Path(__file__).parent / "model.onnx")
