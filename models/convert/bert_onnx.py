"""BERT-style sentence encoder (all-MiniLM-L6-v2) safetensors -> ONNX.

The graph is built node by node with onnx.helper at opset 17:
inputs `input_ids`, `attention_mask`, `token_type_ids` ([batch, seq] int64);
outputs `last_hidden_state` [batch, seq, hidden] and `sentence_embedding`
[batch, hidden]: the attention-masked mean of the last hidden states,
L2-normalised, as sentence-transformers' Pooling + Normalize modules do.
GELU is the exact erf form; LayerNormalization is the fused opset-17 op.
Position ids are a slice of the position table by sequence length
(Shape -> Slice), which onnxruntime handles where Range did not.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import safetensors_np

OPSET = 17
MASK_NEG = -1e9  # added to attention scores at padding positions


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type, inputs, **attrs):
        self.n += 1
        out = f"{op_type.lower()}_{self.n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def linear(self, x, w, b, prefix):
        """x @ w.T + b, with w stored [out, in] as in PyTorch."""
        wt = self.const(f"{prefix}.weight_t", np.ascontiguousarray(w.T))
        return self.op("Add", [self.op("MatMul", [x, wt]), self.const(f"{prefix}.bias", b)])

    def layer_norm(self, x, w, eps, prefix):
        return self.op(
            "LayerNormalization",
            [x, self.const(f"{prefix}.gamma", w[f"{prefix}.weight"]), self.const(f"{prefix}.beta", w[f"{prefix}.bias"])],
            axis=-1,
            epsilon=eps,
        )


def build(weights, n_layers, n_heads, eps):
    w = weights
    hidden = w["embeddings.word_embeddings.weight"].shape[1]
    head = hidden // n_heads
    g = Graph()
    ids, mask, types = "input_ids", "attention_mask", "token_type_ids"

    seq_len = g.op("Shape", [ids], start=1, end=2)
    positions = g.op("Slice", [g.const("pos_table", w["embeddings.position_embeddings.weight"]), g.const("zero1", np.array([0], np.int64)), seq_len, g.const("axis0", np.array([0], np.int64))])
    emb = g.op("Add", [g.op("Gather", [g.const("word_table", w["embeddings.word_embeddings.weight"]), ids]), positions])
    emb = g.op("Add", [emb, g.op("Gather", [g.const("type_table", w["embeddings.token_type_embeddings.weight"]), types])])
    h = g.layer_norm(emb, w, eps, "embeddings.LayerNorm")

    mask_f = g.op("Cast", [mask], to=TensorProto.FLOAT)
    # [b, s] -> [b, 1, 1, s]; 0 where attended, MASK_NEG where padding.
    ext = g.op("Unsqueeze", [mask_f, g.const("axes12", np.array([1, 2], np.int64))])
    ext = g.op("Mul", [g.op("Sub", [g.const("one", np.array(1.0, np.float32)), ext]), g.const("mask_neg", np.array(MASK_NEG, np.float32))])
    split_heads = g.const("split_heads", np.array([0, 0, n_heads, head], np.int64))
    merge_heads = g.const("merge_heads", np.array([0, 0, hidden], np.int64))
    scale = g.const("scale", np.array(1.0 / np.sqrt(head), np.float32))

    for i in range(n_layers):
        p = f"encoder.layer.{i}"

        def proj(name):
            x = g.linear(h, w[f"{p}.attention.self.{name}.weight"], w[f"{p}.attention.self.{name}.bias"], f"{p}.{name}")
            return g.op("Reshape", [x, split_heads])

        q = g.op("Transpose", [proj("query")], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [proj("key")], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [proj("value")], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), ext])
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_heads])
        attn = g.linear(ctx, w[f"{p}.attention.output.dense.weight"], w[f"{p}.attention.output.dense.bias"], f"{p}.attn_out")
        h1 = g.layer_norm(g.op("Add", [attn, h]), w, eps, f"{p}.attention.output.LayerNorm")
        inter = g.linear(h1, w[f"{p}.intermediate.dense.weight"], w[f"{p}.intermediate.dense.bias"], f"{p}.inter")
        # Exact GELU: 0.5 x (1 + erf(x / sqrt 2)).
        erf = g.op("Erf", [g.op("Mul", [inter, g.const(f"{p}.inv_sqrt2", np.array(1 / np.sqrt(2), np.float32))])])
        gelu = g.op("Mul", [g.op("Mul", [inter, g.const(f"{p}.half", np.array(0.5, np.float32))]), g.op("Add", [erf, g.const(f"{p}.one", np.array(1.0, np.float32))])])
        out = g.linear(gelu, w[f"{p}.output.dense.weight"], w[f"{p}.output.dense.bias"], f"{p}.out")
        h = g.layer_norm(g.op("Add", [out, h1]), w, eps, f"{p}.output.LayerNorm")

    g.nodes.append(helper.make_node("Identity", [h], ["last_hidden_state"]))
    m = g.op("Unsqueeze", [mask_f, g.const("axis2", np.array([2], np.int64))])
    summed = g.op("ReduceSum", [g.op("Mul", [h, m]), g.const("axis1", np.array([1], np.int64))], keepdims=0)
    count = g.op("Max", [g.op("ReduceSum", [m, "axis1"], keepdims=0), g.const("tiny", np.array(1e-9, np.float32))])
    mean = g.op("Div", [summed, count])
    norm = g.op("Max", [g.op("ReduceL2", [mean], axes=[1], keepdims=1), g.const("eps12", np.array(1e-12, np.float32))])
    g.nodes.append(helper.make_node("Div", [mean, norm], ["sentence_embedding"]))

    dims = ["batch", "sequence"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in (ids, mask, types)]
    outputs = [
        helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden]),
        helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden]),
    ]
    graph = helper.make_graph(g.nodes, "sentence_encoder", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="vx-models")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def convert(inputs, out_path, n_layers=6, n_heads=12, eps=1e-12):
    """inputs: {"model.safetensors": path}."""
    weights = {k: v.astype(np.float32) if v.dtype != np.int64 else v for k, v in safetensors_np.load(inputs["model.safetensors"]).items()}
    onnx.save(build(weights, n_layers, n_heads, eps), out_path)
